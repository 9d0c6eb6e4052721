"""What lint and the engine know about a condition function."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FunctionSpec:
    """A function's name, arity and documentation.

    `window_args` are positions that must be duration literals (`"5m"`), checked at lint time so
    a typo in a window never reaches the engine; `fact_args` are positions that must name a fact
    (a windowed function keeps that fact's history).
    """

    name: str
    min_args: int
    max_args: int
    doc: str
    signature: str
    window_args: frozenset[int] = field(default_factory=frozenset)
    fact_args: frozenset[int] = field(default_factory=frozenset)
    stateful: bool = False


NOCONST = object()


@dataclass(frozen=True)
class Arg:
    """One argument as the compiler sees it: code for its value, and what it statically is."""

    code: str
    key: str | None = None
    const: Any = NOCONST


def window_of(arg: Arg) -> float:
    """A window argument's seconds (lint has already checked it is a duration literal)."""
    from ...config.units import parse_duration

    if arg.const is NOCONST:
        raise ValueError("a window must be a duration literal such as \"5m\"")
    return parse_duration(arg.const)
