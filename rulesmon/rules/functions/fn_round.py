"""`round(x, digits)`: `x` rounded to `digits` decimals (default 0)."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="round",
    min_args=1,
    max_args=2,
    signature="round(x, digits)",
    doc='`x` rounded to `digits` decimals (default 0).',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
