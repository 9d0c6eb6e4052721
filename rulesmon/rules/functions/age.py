"""`age(t)`: Seconds since the timestamp `t` (a fact such as `files.checkpoints.newest_mtime`)."""

from __future__ import annotations

from .spec import FunctionSpec

SPEC = FunctionSpec(
    name="age",
    min_args=1,
    max_args=1,
    signature="age(t)",
    doc='Seconds since the timestamp `t` (a fact such as `files.checkpoints.newest_mtime`).',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)
