"""`coalesce(x, y, ...)`: The first of its arguments that is known."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="coalesce",
    min_args=2,
    max_args=8,
    signature="coalesce(x, y, ...)",
    doc='The first of its arguments that is known.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
