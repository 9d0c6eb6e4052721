"""Conditions: simpleeval's grammar behind a strict whitelist."""

from __future__ import annotations

import pytest

from rulesmon.rules.expressions import ExpressionError, parse


@pytest.mark.parametrize("text", [
    'job.state in ("FAILED", "TIMEOUT")',
    "avg(gpu.util, '5m') < 20 and job.state == 'RUNNING'",
    "progress.age > 300 or not job.terminal",
    "changed(group.done) and group.done == group.total",
    'node.vars["run_uuid"] == "abc"',
    "(job.elapsed / job.time_limit) * 100 > 90 if job.time_limit else False",
    "job.exit_code is not None and -job.exit_code < 0",
    "run.tick % 5 == 0",
])
def test_accepted(text: str) -> None:
    """Ordinary conditions over facts and functions are accepted."""
    assert parse(text).text == text


@pytest.mark.parametrize(("text", "fragment"), [
    ("lambda: 1", "lambda"),
    ("[x for x in run.counts]", "comprehensions"),
    ("job.__class__", "attribute '__class__'"),
    ("job.name.upper()", "only registered functions"),
    ("__import__('os')", "name '__import__'"),
    ("(x := 1)", "assignment"),
    ('f"{job.name}"', "f-strings"),
    ("{'a': 1}", "dict literals"),
    ("job.state = 'x'", "not an expression"),
    ("1; 2", "not a single expression"),
    ("job.state ==", "syntax error"),
    ("~job.exit_code", "Invert"),
    ("job.exit_code << 40", "LShift"),
    ("print(*run.counts)", "*args"),
    ("f(x=1)", "keyword arguments"),
    ("job.name[0:3]", "slices"),
    ("b'x' == job.name", "constant"),
    ("", "empty"),
])
def test_rejected_with_a_reason(text: str, fragment: str) -> None:
    """Constructs outside the whitelist are refused with a message naming them."""
    with pytest.raises(ExpressionError) as err:
        parse(text)
    assert fragment in str(err.value)


def test_paths_and_calls_are_collected() -> None:
    """Lint sees every dotted fact path and every call of a condition."""
    parsed = parse('rate(log.step, "5m") > 1 and node.vars["epoch"] == "3" and job.state')
    assert set(parsed.paths) == {("log", "step"), ("node", "vars", "epoch"), ("job", "state")}
    assert [c.name for c in parsed.calls] == ["rate"]


def test_long_and_complex_conditions_are_bounded() -> None:
    """Huge conditions are refused instead of costing unbounded time per tick."""
    with pytest.raises(ExpressionError):
        parse(" + ".join(["job.exit_code"] * 500))
