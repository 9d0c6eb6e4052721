"""What lint and the engine know about a condition function."""

from __future__ import annotations

from dataclasses import dataclass, field


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
