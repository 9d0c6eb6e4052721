"""`float(x)`: `x` as a number."""

from __future__ import annotations

from typing import Any

from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="float",
    min_args=1,
    max_args=1,
    signature="float(x)",
    doc='`x` as a number.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _float(x: Any) -> Any:
    return UNKNOWN if x is UNKNOWN else float(x)


RUNTIME = {"_fn_float": _float}


def emit(args: list[Arg]) -> str:
    return "_fn_float(" + ", ".join(a.code for a in args) + ")"
