"""`round(x, digits)`: `x` rounded to `digits` decimals (default 0)."""

from __future__ import annotations

from typing import Any

from ..bounds import rounded
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="round",
    min_args=1,
    max_args=2,
    signature="round(x, digits)",
    doc='`x` rounded to `digits` decimals (default 0).',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _round(*args: Any) -> Any:
    if any(a is UNKNOWN for a in args):
        return UNKNOWN
    return rounded(*args)  # round(5, -10**9) would build 10**10**9


RUNTIME = {"_fn_round": _round}


def emit(args: list[Arg]) -> str:
    return "_fn_round(" + ", ".join(a.code for a in args) + ")"
