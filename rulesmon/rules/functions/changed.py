"""`changed(x)`: did a fact change since the previous tick."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="changed",
    min_args=1,
    max_args=1,
    signature="changed(x)",
    doc=(
        'True when `x` differs from its value at the previous tick (false on '
        'the first tick it is known).'
    ),
    window_args=frozenset(),
    fact_args=frozenset({0}),
    stateful=True,
)
