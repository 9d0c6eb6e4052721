"""ClassAd text as the node status file writes it (new layout) and as `-long` prints it (old
layout): values, comments, and located errors for malformed text; simple expressions
evaluated on a job ad, and constraints checked for balanced quotes and brackets."""

from __future__ import annotations

from pathlib import Path

import pytest

from rulesmon.probes.classads import (
    ClassAdError,
    constraint_problem,
    evaluate,
    literal,
    parse_classads,
)

FIXTURES = Path(__file__).parent / "fixtures" / "dagman"


def test_recorded_node_status_file() -> None:
    """A status file written by DAGMan 23.9 gives the DagStatus ad, one ad per node and the
    StatusEnd ad, with the comments DAGMan adds ignored."""
    ads = parse_classads((FIXTURES / "pipe" / "run1.status").read_text(encoding="utf-8"))
    assert [ad["Type"] for ad in ads] == ["DagStatus", *["NodeStatus"] * 4, "StatusEnd"]
    dag = ads[0]
    assert dag["DagFiles"] == ["pipe.dag"]
    assert (dag["DagStatus"], dag["NodesTotal"], dag["NodesDone"], dag["NodesFailed"],
            dag["NodesFutile"]) == (6, 4, 2, 1, 1)
    c = ads[3]
    assert (c["Node"], c["NodeStatus"], c["RetryCount"]) == ("C", 6, 1)
    assert c["StatusDetails"] == "Job proc (12.0.0) failed with status 3 (after 1 node retries)"


def test_values_of_every_kind() -> None:
    """Strings with escapes, integers, reals, booleans, undefined, lists, nested ads and
    expressions (kept as text)."""
    ads = parse_classads('[ S = "a \\"q\\" \\\\ b\\n"; I = -3; R = 2.5e3; B = TRUE; '
                         'U = undefined; L = { "x, y", 2, { 3 } }; N = [ A = 1; ]; '
                         'E = RequestMemory * 2; // trailing comment\n ]')
    assert ads == [{"S": 'a "q" \\ b\n', "I": -3, "R": 2500.0, "B": True, "U": None,
                    "L": ["x, y", 2, [3]], "N": {"A": 1}, "E": "RequestMemory * 2"}]
    assert literal("error") is None and literal("false") is False


def test_old_layout_ads_separated_by_blank_lines() -> None:
    """`Attr = value` lines, an empty line between ads, as condor_q -long prints them."""
    text = 'ClusterId = 42\nOwner = "alice"\nJobStatus = 5\n\nClusterId = 43\nDone = true\n'
    assert parse_classads(text) == [{"ClusterId": 42, "Owner": "alice", "JobStatus": 5},
                                    {"ClusterId": 43, "Done": True}]
    assert parse_classads("") == [] and parse_classads("  \n/* only a comment */\n") == []


def test_comment_markers_inside_strings_are_text() -> None:
    """`/*` and `//` inside a string are not comments."""
    ads = parse_classads('[ A = "http://x/*y*/"; /* real comment */ B = 1; ]')
    assert ads == [{"A": "http://x/*y*/", "B": 1}]


@pytest.mark.parametrize(("text", "line", "message"), [
    ('[ A = 1;\n B = 2;\n', 1, "ad is not closed with ']'"),
    ('[ A = 1; ]\n garbage', 2, "expected '[' to start an ad"),
    ('[ A = "open;\n]', 1, "string is not closed"),
    ('[ A = ; ]', 1, "attribute has no value"),
    ('[ A B = 1; ]', 1, "bad attribute name 'A B'"),
    ('[ novalue ]', 1, "expected Attr = value"),
    ('Owner "alice"\n', 1, "expected Attr = value"),
])
def test_malformed_text_raises_with_its_line(text: str, line: int, message: str) -> None:
    """Each malformed input raises ClassAdError naming the line."""
    with pytest.raises(ClassAdError) as err:
        parse_classads(text)
    assert err.value.line == line and message in str(err.value)


_AD = {"imagesize": 7500, "residentsetsize": 4000, "diskusage": 11, "requestmemory": 64,
       "memoryusage": "/Expr(((ResidentSetSize + 1023) / 1024))/", "owner": "Alice"}


@pytest.mark.parametrize(("expr", "value"), [
    ("ifthenelse(MemoryUsage isnt undefined,MemoryUsage,(ImageSize + 1023) / 1024)", 4),
    ("ifthenelse(Missing =!= undefined, Missing, 2048)", 2048),
    ("(ImageSize + 1023) / 1024", 8),
    ("-7 / 2", -3),
    ("7 % 3 + 0.5", 1.5),
    ("MAX({RequestMemory, MY.MemoryUsage * 100})", 400),
    ("min({RequestMemory, 100})", 64),
    ("min({Missing, 100, 2.5})", 2.5),  # undefined items are skipped
    ("min(RequestMemory, 100)", None),  # ClassAds' min takes one list: two arguments are error
    ("max(RequestMemory)", None),  # not a list: error
    ("1 == 1.0", True),
    ("1 =?= 1.0", False),  # `is` compares types too: no integer-to-real promotion
    ("1 is 1.0", False),
    ("1 isnt 1.0", True),
    ("\"a\" =?= \"A\"", False),  # case-sensitive, unlike ==
    ("error || true", None),  # a left error is error, whatever the right side says
    ("error && false", None),
    ("true || error", True),  # a left operand that decides wins
    ("false && error", False),
    ("undefined || true", True),
    ("undefined && false", False),
    ("isUndefined(undefined || false)", True),
    ("isUndefined(undefined && error)", False),  # the right side's error, not undefined
    ("RequestMemory || false", True),  # numbers count as booleans (non-strict evaluation)
    ("Owner || true", None),  # a string is no boolean: error, whatever the right side says
    ("true || Owner", True),  # ... unless the left side has decided already
    ("Owner == \"alice\" && Owner =!= \"alice\"", True),
    ("isUndefined(Missing) ? 1 : 2", 1),
    ("ceiling(real(DiskUsage) / 2)", 6),
    ("TARGET.Memory * 2", None),  # the machine's ad is not known
    ("1 / 0", None),
    ("Missing + 1", None),
    ("regexp(\"a\", Owner)", None),  # a function not covered: unknown, not a guess
    ("(1 + 2", None),
    ("1 +", None),
])
def test_simple_expressions_evaluate_on_an_ad(expr: str, value: object) -> None:
    """Request expressions evaluate on the job's own ad (nested expressions followed, integer
    division truncated); what cannot be known here is None, never a guess."""
    assert evaluate(expr, lambda name: _AD.get(name.lower())) == value


def test_self_referencing_expressions_stop() -> None:
    """An attribute whose expression refers to itself gives None instead of recursing."""
    ad = {"a": "/Expr(A + 1)/"}
    assert evaluate("A", lambda name: ad.get(name.lower())) is None


@pytest.mark.parametrize(("text", "problem"), [
    ('RunUUID == "abc', (11, 'the string opened here is never closed (a missing `"`)')),
    ("(JobPrio > 0))", (13, "`)` closes nothing")),
    ("member(1, {1, 2)", (15, "`)` closes nothing")),
    ("((ClusterId == 3)", (0, "`(` is never closed")),
    ('regexp("^a\\"(", Cmd) && (x == "])")', None),
    ("", None),
])
def test_constraint_quotes_and_brackets(text: str, problem: tuple[int, str] | None) -> None:
    """Unbalanced quotes or brackets in a constraint are found with their offset; brackets
    inside strings (escaped quotes too) do not count."""
    assert constraint_problem(text) == problem
