"""`min(x, window)`: Smallest known sample of `x` within the window."""

from __future__ import annotations

from typing import Any

from ..history import History
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec, window_of

SPEC = FunctionSpec(
    name="min",
    min_args=2,
    max_args=2,
    signature="min(x, window)",
    doc='Smallest known sample of `x` within the window.',
    window_args=frozenset({1}),
    fact_args=frozenset({0}),
    stateful=True,
)


def _min(h: History, key: str, window: float, now: float) -> Any:
    samples = h.window(key, window, now)
    return min(v for _, v in samples) if samples else UNKNOWN


RUNTIME = {"_fn_min": _min}


def emit(args: list[Arg]) -> str:
    return f"_fn_min(h, {args[0].key!r}, {window_of(args[1])!r}, now)"
