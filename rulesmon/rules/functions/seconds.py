"""`seconds(d)`: A duration literal in seconds: `progress.age > seconds("10m")`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .spec import Arg, FunctionSpec, window_of

SPEC = FunctionSpec(
    name="seconds",
    min_args=1,
    max_args=1,
    signature="seconds(d)",
    doc='A duration literal in seconds: `progress.age > seconds("10m")`.',
    window_args=frozenset({0}),
    fact_args=frozenset(),
    stateful=False,
)


RUNTIME: dict[str, Callable[..., Any]] = {}


def emit(args: list[Arg]) -> str:
    return repr(window_of(args[0]))
