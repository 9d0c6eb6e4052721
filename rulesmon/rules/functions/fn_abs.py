"""`abs(x)`: Absolute value."""

from __future__ import annotations

from typing import Any

from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="abs",
    min_args=1,
    max_args=1,
    signature="abs(x)",
    doc='Absolute value.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _abs(x: Any) -> Any:
    return UNKNOWN if x is UNKNOWN else abs(x)


RUNTIME = {"_fn_abs": _abs}


def emit(args: list[Arg]) -> str:
    return "_fn_abs(" + ", ".join(a.code for a in args) + ")"
