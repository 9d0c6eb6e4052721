"""The functions a condition may call: one module each, registered here by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
from .spec import Arg, FunctionSpec

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

#: How each function is compiled: its module's `emit`, from argument code to call code.
EMITTERS: dict[str, Callable[[list[Arg]], str]] = {
    changed.SPEC.name: changed.emit,
    prev.SPEC.name: prev.emit,
    delta.SPEC.name: delta.emit,
    rate.SPEC.name: rate.emit,
    avg.SPEC.name: avg.emit,
    fn_min.SPEC.name: fn_min.emit,
    fn_max.SPEC.name: fn_max.emit,
    age.SPEC.name: age.emit,
    matches.SPEC.name: matches.emit,
    known.SPEC.name: known.emit,
    coalesce.SPEC.name: coalesce.emit,
    seconds.SPEC.name: seconds.emit,
    fn_abs.SPEC.name: fn_abs.emit,
    fn_round.SPEC.name: fn_round.emit,
    fn_len.SPEC.name: fn_len.emit,
    fn_int.SPEC.name: fn_int.emit,
    fn_float.SPEC.name: fn_float.emit,
    fn_str.SPEC.name: fn_str.emit,
}

#: Helpers the compiled code may call, by the names `emit` uses.
RUNTIME: dict[str, Callable[..., Any]] = {
    name: fn
    for module in (
        changed,
        prev,
        delta,
        rate,
        avg,
        fn_min,
        fn_max,
        age,
        matches,
        known,
        coalesce,
        seconds,
        fn_abs,
        fn_round,
        fn_len,
        fn_int,
        fn_float,
        fn_str,
    )
    for name, fn in module.RUNTIME.items()
}

__all__ = ["EMITTERS", "FUNCTIONS", "RUNTIME", "Arg", "FunctionSpec"]
