"""`changed(x)`: did a fact change since the previous tick."""

from __future__ import annotations

from typing import Any

from ..history import History
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="changed",
    min_args=1,
    max_args=1,
    signature="changed(x)",
    doc=(
        'True when `x` differs from its value at the previous tick (false on '
        'the first tick it is known).'
    ),
    window_args=frozenset(),
    fact_args=frozenset({0}),
    stateful=True,
)


def _changed(h: History, key: str, current: Any) -> Any:
    if current is UNKNOWN:
        return UNKNOWN
    if key not in h.prev:
        return False  # the first tick a fact is known is not a change
    return bool(h.prev[key] != current)


RUNTIME = {"_fn_changed": _changed}


def emit(args: list[Arg]) -> str:
    return f"_fn_changed(h, {args[0].key!r}, {args[0].code})"
