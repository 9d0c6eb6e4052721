"""`int(x)`: `x` as an integer."""

from __future__ import annotations

from .spec import FunctionSpec

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
