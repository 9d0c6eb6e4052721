"""`avg(x, window)`: Mean of the known samples of `x` within the window."""

from __future__ import annotations

from typing import Any

from ..history import History
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec, window_of

SPEC = FunctionSpec(
    name="avg",
    min_args=2,
    max_args=2,
    signature="avg(x, window)",
    doc='Mean of the known samples of `x` within the window.',
    window_args=frozenset({1}),
    fact_args=frozenset({0}),
    stateful=True,
)


def _avg(h: History, key: str, window: float, now: float) -> Any:
    samples = h.window(key, window, now)
    if not samples:
        return UNKNOWN
    return sum(v for _, v in samples) / len(samples)


RUNTIME = {"_fn_avg": _avg}


def emit(args: list[Arg]) -> str:
    return f"_fn_avg(h, {args[0].key!r}, {window_of(args[1])!r}, now)"
