"""`max(x, window)`: Largest known sample of `x` within the window."""

from __future__ import annotations

from typing import Any

from ..history import History
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec, window_of

SPEC = FunctionSpec(
    name="max",
    min_args=2,
    max_args=2,
    signature="max(x, window)",
    doc='Largest known sample of `x` within the window.',
    window_args=frozenset({1}),
    fact_args=frozenset({0}),
    stateful=True,
)


def _max(h: History, key: str, window: float, now: float) -> Any:
    samples = h.window(key, window, now)
    return max(v for _, v in samples) if samples else UNKNOWN


RUNTIME = {"_fn_max": _max}


def emit(args: list[Arg]) -> str:
    return f"_fn_max(h, {args[0].key!r}, {window_of(args[1])!r}, now)"
