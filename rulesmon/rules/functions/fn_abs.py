"""`abs(x)`: Absolute value."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="abs",
    min_args=1,
    max_args=1,
    signature="abs(x)",
    doc='Absolute value.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
