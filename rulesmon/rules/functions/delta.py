"""`delta(x)`: `x` now minus `x` at the previous tick."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="delta",
    min_args=1,
    max_args=1,
    signature="delta(x)",
    doc='`x` now minus `x` at the previous tick.',
    window_args=frozenset(),
    fact_args=frozenset({0}),
    stateful=True,
)
