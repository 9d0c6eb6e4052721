"""`max(x, window)`: Largest known sample of `x` within the window."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="max",
    min_args=2,
    max_args=2,
    signature="max(x, window)",
    doc='Largest known sample of `x` within the window.',
    window_args=frozenset({1}),
    fact_args=frozenset({0}),
    stateful=True,
)
