"""`prev(x)`: The value of `x` at the previous tick (unknown on the first)."""

from __future__ import annotations

from typing import Any

from ..history import History
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="prev",
    min_args=1,
    max_args=1,
    signature="prev(x)",
    doc='The value of `x` at the previous tick (unknown on the first).',
    window_args=frozenset(),
    fact_args=frozenset({0}),
    stateful=True,
)


def _prev(h: History, key: str) -> Any:
    return h.prev.get(key, UNKNOWN)


RUNTIME = {"_fn_prev": _prev}


def emit(args: list[Arg]) -> str:
    return f"_fn_prev(h, {args[0].key!r})"
