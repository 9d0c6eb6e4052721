"""`str(x)`: `x` as a string."""

from __future__ import annotations

from typing import Any

from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="str",
    min_args=1,
    max_args=1,
    signature="str(x)",
    doc='`x` as a string.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _str(x: Any) -> Any:
    return UNKNOWN if x is UNKNOWN else str(x)


RUNTIME = {"_fn_str": _str}


def emit(args: list[Arg]) -> str:
    return "_fn_str(" + ", ".join(a.code for a in args) + ")"
