"""`str(x)`: `x` as a string."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="str",
    min_args=1,
    max_args=1,
    signature="str(x)",
    doc='`x` as a string.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
