"""`delta(x)`: `x` now minus `x` at the previous tick."""

from __future__ import annotations

from typing import Any

from ..history import History
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="delta",
    min_args=1,
    max_args=1,
    signature="delta(x)",
    doc='`x` now minus `x` at the previous tick.',
    window_args=frozenset(),
    fact_args=frozenset({0}),
    stateful=True,
)


def _delta(h: History, key: str, current: Any) -> Any:
    if current is UNKNOWN or key not in h.prev:
        return UNKNOWN
    return current - h.prev[key]


RUNTIME = {"_fn_delta": _delta}


def emit(args: list[Arg]) -> str:
    return f"_fn_delta(h, {args[0].key!r}, {args[0].code})"
