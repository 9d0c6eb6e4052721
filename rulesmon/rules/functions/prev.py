"""`prev(x)`: The value of `x` at the previous tick (unknown on the first)."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="prev",
    min_args=1,
    max_args=1,
    signature="prev(x)",
    doc='The value of `x` at the previous tick (unknown on the first).',
    window_args=frozenset(),
    fact_args=frozenset({0}),
    stateful=True,
)
