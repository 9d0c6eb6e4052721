"""The functions a condition may call: one module each, registered here by name."""

from __future__ import annotations

from . import (
    age,
    avg,
    changed,
    coalesce,
    delta,
    fn_abs,
    fn_float,
    fn_int,
    fn_len,
    fn_max,
    fn_min,
    fn_round,
    fn_str,
    known,
    matches,
    prev,
    rate,
    seconds,
)
from .spec import FunctionSpec

FUNCTIONS: dict[str, FunctionSpec] = {
    changed.SPEC.name: changed.SPEC,
    prev.SPEC.name: prev.SPEC,
    delta.SPEC.name: delta.SPEC,
    rate.SPEC.name: rate.SPEC,
    avg.SPEC.name: avg.SPEC,
    fn_min.SPEC.name: fn_min.SPEC,
    fn_max.SPEC.name: fn_max.SPEC,
    age.SPEC.name: age.SPEC,
    matches.SPEC.name: matches.SPEC,
    known.SPEC.name: known.SPEC,
    coalesce.SPEC.name: coalesce.SPEC,
    seconds.SPEC.name: seconds.SPEC,
    fn_abs.SPEC.name: fn_abs.SPEC,
    fn_round.SPEC.name: fn_round.SPEC,
    fn_len.SPEC.name: fn_len.SPEC,
    fn_int.SPEC.name: fn_int.SPEC,
    fn_float.SPEC.name: fn_float.SPEC,
    fn_str.SPEC.name: fn_str.SPEC,
}

__all__ = ["FUNCTIONS", "FunctionSpec"]
