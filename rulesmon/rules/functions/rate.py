"""`rate(x, window)`: per-second change of a fact over a window."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="rate",
    min_args=2,
    max_args=2,
    signature="rate(x, window)",
    doc=(
        'Change of `x` per second over the window (`"5m"`), from the oldest to '
        'the newest sample in it.'
    ),
    window_args=frozenset({1}),
    fact_args=frozenset({0}),
    stateful=True,
)
