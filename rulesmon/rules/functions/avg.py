"""`avg(x, window)`: Mean of the known samples of `x` within the window."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="avg",
    min_args=2,
    max_args=2,
    signature="avg(x, window)",
    doc='Mean of the known samples of `x` within the window.',
    window_args=frozenset({1}),
    fact_args=frozenset({0}),
    stateful=True,
)
