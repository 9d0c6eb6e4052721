"""`int(x)`: `x` as an integer."""

from __future__ import annotations

from typing import Any

from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="int",
    min_args=1,
    max_args=1,
    signature="int(x)",
    doc='`x` as an integer.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _int(x: Any) -> Any:
    return UNKNOWN if x is UNKNOWN else int(x)


RUNTIME = {"_fn_int": _int}


def emit(args: list[Arg]) -> str:
    return "_fn_int(" + ", ".join(a.code for a in args) + ")"
