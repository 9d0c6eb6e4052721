"""`age(t)`: Seconds since the timestamp `t` (a fact such as `files.checkpoints.newest_mtime`)."""

from __future__ import annotations

from typing import Any

from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="age",
    min_args=1,
    max_args=1,
    signature="age(t)",
    doc='Seconds since the timestamp `t` (a fact such as `files.checkpoints.newest_mtime`).',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _age(t: Any, now: float) -> Any:
    if t is UNKNOWN:
        return UNKNOWN
    return now - float(t)


RUNTIME = {"_fn_age": _age}


def emit(args: list[Arg]) -> str:
    return f"_fn_age({args[0].code}, now)"
