"""`float(x)`: `x` as a number."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="float",
    min_args=1,
    max_args=1,
    signature="float(x)",
    doc='`x` as a number.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
