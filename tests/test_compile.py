"""Compiled conditions agree with simpleeval and stay safe on hostile input."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simpleeval import EvalWithCompoundTypes

from rulesmon.rules.compile import EvalError, compile_condition
from rulesmon.rules.expressions import ExpressionError, parse
from rulesmon.rules.history import History
from rulesmon.rules.unknown import UNKNOWN

FACTS: dict[str, Any] = {
    "job.a": 3, "job.b": -2.5, "job.c": 0, "job.s": "RUNNING", "job.t": "", "job.ok": True,
    "gpu.x": 7.25, "gpu.n": 10**6, "gpu.flag": False, "gpu.name": "A100",
}
PATHS = sorted(FACTS)


def _names() -> dict[str, Any]:
    spaces: dict[str, dict[str, Any]] = {}
    for key, value in FACTS.items():
        ns, attr = key.split(".")
        spaces.setdefault(ns, {})[attr] = value
    return {ns: SimpleNamespace(**attrs) for ns, attrs in spaces.items()}


FUNCS = {"abs": abs, "round": round, "len": len, "int": int, "float": float, "str": str}

atoms = st.one_of(
    st.sampled_from(PATHS),
    st.integers(-20, 20).map(str),
    st.sampled_from(["0.5", "2.0", "1e3", "'RUNNING'", "'A100'", "''", "True", "False",
                     "None"]),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binop = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "//", "%"]), children)
    cmp = st.tuples(children, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), children)
    return st.one_of(
        binop.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        cmp.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, children).map(lambda t: f"({t[0]} and {t[1]})"),
        st.tuples(children, children).map(lambda t: f"({t[0]} or {t[1]})"),
        children.map(lambda c: f"(not {c})"),
        children.map(lambda c: f"({c} is None)"),
        children.map(lambda c: f"({c} is not None)"),
        children.map(lambda c: f"(-{c})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(children, st.lists(children, min_size=1, max_size=3)).map(
            lambda t: f"({t[0]} in ({', '.join(t[1])},))"),
        st.tuples(children, st.integers(0, 4)).map(lambda t: f"({t[0]} ** {t[1]})"),
        st.tuples(st.sampled_from(sorted(FUNCS)), children).map(lambda t: f"{t[0]}({t[1]})"),
    )


expressions = st.recursive(atoms, _combine, max_leaves=12)


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "value", fn()
    except Exception as exc:  # either side may fail; compare only that both did
        return "error", type(exc).__name__


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_compiled_agrees_with_simpleeval(text: str) -> None:
    """For random conditions over known facts, the compiled code gives simpleeval's result,
    or fails where simpleeval fails."""
    ours = _outcome(lambda: compile_condition(parse(text))(FACTS, History(), 0.0))
    theirs = _outcome(lambda: EvalWithCompoundTypes(names=_names(), functions=FUNCS).eval(text))
    assert ours[0] == theirs[0], (text, ours, theirs)
    if ours[0] == "value":
        assert _same(ours[1], theirs[1]), (text, ours, theirs)


@pytest.mark.parametrize("text", [
    "9 ** 9 ** 9",
    "3999999 ** 3999999",
    "'x' * 10 ** 9",
    "job.s * 10 ** 8",
    "[job.s] * 10 ** 8",
])
def test_hostile_arithmetic_is_refused_quickly(text: str) -> None:
    """Power towers and huge repetitions raise instead of running for ever or eating memory."""
    with pytest.raises(EvalError):
        compile_condition(parse(text))(FACTS, History(), 0.0)


@pytest.mark.parametrize("text", [
    "().__class__.__base__.__subclasses__()",
    "job.__dict__",
    "getattr(job, 'a')",
    "__import__('os').system('true')",
    "(" * 300 + "1" + ")" * 300,
    "[x for x in (1, 2)]",
    "(lambda: 1)()",
])
def test_escapes_never_compile(text: str) -> None:
    """Sandbox escapes are refused at parse time, before any code is generated."""
    with pytest.raises(ExpressionError):
        parse(text)


def test_generated_code_has_no_builtins() -> None:
    """The compiled lambda runs with empty builtins."""
    compiled = compile_condition(parse("job.a > 1"))
    assert compiled.fast.__globals__["__builtins"+"__"] == {}


def test_missing_facts_use_three_valued_logic() -> None:
    """Unknown data is neither true nor false; and/or decide when the known side suffices."""
    h = History()

    def ev(text: str, facts: dict[str, Any]) -> Any:
        return compile_condition(parse(text))(facts, h, 0.0)

    assert ev("job.a > 1 or gpu.missing > 1", {"job.a": 3}) is True
    assert ev("job.a > 5 and gpu.missing > 1", {"job.a": 3}) is False
    assert ev("job.a > 1 and gpu.missing > 1", {"job.a": 3}) is UNKNOWN
    assert ev("not gpu.missing", {}) is UNKNOWN
    assert ev("gpu.missing in (1, 2)", {}) is UNKNOWN
    assert ev("1 if gpu.missing else 2", {}) is UNKNOWN
    assert ev("known(gpu.missing)", {}) is False
    assert ev("coalesce(gpu.missing, job.a)", {"job.a": 3}) == 3
