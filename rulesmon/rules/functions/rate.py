"""`rate(x, window)`: per-second change of a fact over a window."""

from __future__ import annotations

from typing import Any

from ..history import History
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec, window_of

SPEC = FunctionSpec(
    name="rate",
    min_args=2,
    max_args=2,
    signature="rate(x, window)",
    doc=(
        'Change of `x` per second over the window (`"5m"`), from the oldest to '
        'the newest sample in it.'
    ),
    window_args=frozenset({1}),
    fact_args=frozenset({0}),
    stateful=True,
)


def _rate(h: History, key: str, window: float, now: float) -> Any:
    samples = h.window(key, window, now)
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return UNKNOWN
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    return (v1 - v0) / (t1 - t0)


RUNTIME = {"_fn_rate": _rate}


def emit(args: list[Arg]) -> str:
    return f"_fn_rate(h, {args[0].key!r}, {window_of(args[1])!r}, now)"
