"""`len(x)`: Length of a list or string fact (for example `len(files.results.new)`)."""

from __future__ import annotations

from typing import Any

from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="len",
    min_args=1,
    max_args=1,
    signature="len(x)",
    doc='Length of a list or string fact (for example `len(files.results.new)`).',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _len(x: Any) -> Any:
    return UNKNOWN if x is UNKNOWN else len(x)


RUNTIME = {"_fn_len": _len}


def emit(args: list[Arg]) -> str:
    return "_fn_len(" + ", ".join(a.code for a in args) + ")"
