"""`coalesce(x, y, ...)`: The first of its arguments that is known."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..unknown import UNKNOWN, Missing
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="coalesce",
    min_args=2,
    max_args=8,
    signature="coalesce(x, y, ...)",
    doc='The first of its arguments that is known.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _coalesce(*thunks: Callable[[], Any]) -> Any:
    for thunk in thunks:
        try:
            value = thunk()
        except (KeyError, Missing):
            continue
        if value is not UNKNOWN:
            return value
    return UNKNOWN


RUNTIME = {"_fn_coalesce": _coalesce}


def emit(args: list[Arg]) -> str:
    return "_fn_coalesce(" + ", ".join(f"lambda: {a.code}" for a in args) + ")"
