"""`seconds(d)`: A duration literal in seconds: `progress.age > seconds("10m")`."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="seconds",
    min_args=1,
    max_args=1,
    signature="seconds(d)",
    doc='A duration literal in seconds: `progress.age > seconds("10m")`.',
    window_args=frozenset({0}),
    fact_args=frozenset(),
    stateful=False,
)
