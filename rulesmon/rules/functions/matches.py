"""`matches(text, regex)`: True when the regular expression finds a match in `text`."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="matches",
    min_args=2,
    max_args=2,
    signature="matches(text, regex)",
    doc='True when the regular expression finds a match in `text`.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
