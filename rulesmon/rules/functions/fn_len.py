"""`len(x)`: Length of a list or string fact (for example `len(files.results.new)`)."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="len",
    min_args=1,
    max_args=1,
    signature="len(x)",
    doc='Length of a list or string fact (for example `len(files.results.new)`).',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
