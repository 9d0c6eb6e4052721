"""ClassAd text as the node status file writes it (new layout) and as `-long` prints it (old
layout): values, comments, and located errors for malformed text."""

from __future__ import annotations

from pathlib import Path

import pytest

from rulesmon.probes.classads import ClassAdError, literal, parse_classads

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
