"""`known(x)`: test for missing data explicitly, since unknown is never false."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..unknown import UNKNOWN, Missing
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="known",
    min_args=1,
    max_args=1,
    signature="known(x)",
    doc=(
        'True when the fact `x` has a value this tick (missing data is '
        'otherwise unknown, never false).'
    ),
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


def _known(thunk: Callable[[], Any]) -> bool:
    try:
        return thunk() is not UNKNOWN
    except (KeyError, Missing):
        return False


RUNTIME = {"_fn_known": _known}


def emit(args: list[Arg]) -> str:
    if args[0].key is not None:
        return f"_has(s, {args[0].key!r})"
    return f"_fn_known(lambda: {args[0].code})"
