"""`known(x)`: test for missing data explicitly, since unknown is never false."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="known",
    min_args=1,
    max_args=1,
    signature="known(x)",
    doc=(
        'True when the fact `x` has a value this tick (missing data is '
        'otherwise unknown, never false).'
    ),
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
