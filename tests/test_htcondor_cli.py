"""The condor tool runner: finding tools, running them, and reading recorded outputs of several
HTCondor versions and garbage."""

from __future__ import annotations

from pathlib import Path

import pytest

from rulesmon.probes import condor_cli as cli

from .htcondor_fakes import FakeCondor

FIXTURES = Path(__file__).parent / "fixtures" / "htcondor"


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCondor:
    """Scripted condor tools, found through RULESMON_CONDOR_BIN."""
    condor = FakeCondor(tmp_path)
    monkeypatch.setenv(cli.ENV_BIN, str(condor.bin))
    return condor


@pytest.mark.parametrize(("name", "count"), [
    ("condor_q-23.9.json", 3), ("condor_history-23.9.json", 4), ("condor_q-8.8.json", 1),
    ("condor_history-8.8.json", 2), ("condor_q-lowercase.json", 1),
    ("condor_q-two-schedds.txt", 2)])
def test_recorded_outputs_parse(name: str, count: int) -> None:
    """Every recorded shape, including two arrays from two schedds, reads as a list of ads."""
    assert len(cli.parse_ads(read(name))) == count


def test_empty_output_is_no_ads() -> None:
    """Some versions print nothing at all when no job matches: that is no ads, not an error."""
    assert cli.parse_ads("") == []
    assert cli.parse_ads("[\n]\n") == []


@pytest.mark.parametrize(("name", "expected"), [
    ("garbage-truncated.json", "not JSON (line 161"),
    ("garbage-html.txt", "not JSON (line 1, column 1"),
    ("garbage-number.json", "not a list of job ads (int)"),
    ("garbage-binary.bin", "not JSON")])
def test_garbage_is_one_line_error(name: str, expected: str) -> None:
    """Output that is not a list of ads gives one CondorError line naming where it broke."""
    with pytest.raises(cli.CondorError) as info:
        cli.parse_ads(read(name))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_values_normalised() -> None:
    """Unevaluated expressions and NaN are no value; names are case-insensitive; numbers in
    strings and booleans in strings are read."""
    ad = cli.lower_keys(cli.parse_ads(read("condor_q-8.8.json"))[0])
    assert cli.value(ad, "REQUESTMEMORY") is None
    assert cli.expression(ad["requestmemory"]).startswith("ifthenelse(")
    assert cli.integer(ad, "RequestCpus") == 4
    assert cli.number({"x": "12.5"}, "x") == 12.5
    assert cli.number({"x": float("nan")}, "x") is None
    assert cli.boolean({"x": "TRUE"}, "x") is True
    assert cli.boolean({"x": "maybe"}, "x") is None
    assert cli.normalise({"a": [1, "/Expr(x)/"]}) == {"a": [1, None]}


def test_id_constraint() -> None:
    """Job ids become one constraint: whole clusters, single procs and several procs."""
    assert cli.id_constraint([(3, None)]) == "ClusterId == 3"
    assert cli.id_constraint([(3, 0)]) == "(ClusterId == 3 && ProcId == 0)"
    assert cli.id_constraint([(3, 1), (3, 0), (4, None), (4, 2)]) == (
        "(ClusterId == 3 && (ProcId == 0 || ProcId == 1)) || ClusterId == 4")
    assert cli.id_constraint([]) == "false"


def test_quote_and_regex() -> None:
    """Constraint strings escape only quotes (backslashes stand for themselves); globs become
    anchored regexes with only regex metacharacters escaped."""
    assert cli.quote('a"b\\c') == '"a\\"b\\c"'
    assert cli.glob_regex("train-*") == "^train-.*$"
    assert cli.glob_regex("r[!0-9]?.log") == "^r[^0-9].\\.log$"
    assert cli.regex_literal("/a-b/c+d") == "/a-b/c\\+d"


def test_submitted_ids() -> None:
    """condor_submit's terse ranges and its plain summary both give the job ids."""
    assert cli.parse_submitted("7.0 - 7.2\n") == [(7, 0), (7, 1), (7, 2)]
    assert cli.parse_submitted("Submitting job(s).\n2 job(s) submitted to cluster 12.\n") == [
        (12, 0), (12, 1)]
    with pytest.raises(cli.CondorError, match="printed no job id"):
        cli.parse_submitted("something else\n")


def test_tool_missing_from_bin_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A RULESMON_CONDOR_BIN folder without the tool names the variable."""
    monkeypatch.setenv(cli.ENV_BIN, str(tmp_path))
    with pytest.raises(cli.CondorError, match=r"condor_q not found in RULESMON_CONDOR_BIN="):
        cli.tool("condor_q")


def test_tool_missing_from_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable, a tool missing from PATH says how to fix it."""
    monkeypatch.delenv(cli.ENV_BIN, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(cli.CondorError, match="not found on PATH"):
        cli.run(["condor_q", "-json"])


def test_failed_tool_reports_first_useful_stderr_line(fake: FakeCondor) -> None:
    """A non-zero exit gives the exit status and the first meaningful line of stderr."""
    fake.answer("condor_q", err="\n-- Failed to fetch ads from: <127.0.0.1:9618> : vm\n"
                "Error: Collector has no record of schedd/submitter\n", rc=1)
    with pytest.raises(cli.CondorError) as info:
        cli.query("true")
    assert str(info.value) == ("condor_q failed (exit 1): Error: Collector has no record of "
                               "schedd/submitter")


def test_timeout(fake: FakeCondor) -> None:
    """A tool that does not answer within the timeout is a one-line error."""
    fake.answer("condor_q", "[]", sleep=5)
    with pytest.raises(cli.CondorError, match=r"condor_q timed out after 0.3s"):
        cli.query(None, timeout=0.3)


def test_query_and_history_arguments(fake: FakeCondor) -> None:
    """condor_q asks for every user's jobs as JSON; condor_history stops after `match` ads."""
    fake.answer("condor_q", read("condor_q-23.9.json"))
    fake.answer("condor_history", read("condor_history-23.9.json"))
    assert len(cli.query("Owner == \"a\"", attributes=["ClusterId", "ProcId"])) == 3
    assert len(cli.history("ClusterId == 40", match=1)) == 4
    assert fake.calls() == [
        'condor_q -allusers -json -constraint Owner == "a" -attributes ClusterId,ProcId',
        "condor_history -json -constraint ClusterId == 40 -match 1"]


def test_submit_runs_in_folder_with_appends(fake: FakeCondor, tmp_path: Path) -> None:
    """condor_submit gets -terse, each -append line, and the file."""
    fake.answer("condor_submit", "15.0 - 15.1\n")
    ids = cli.submit(tmp_path / "a.sub", append=["batch_name = x"], cwd=tmp_path)
    assert ids == [(15, 0), (15, 1)]
    assert fake.calls("condor_submit") == [
        f"condor_submit -terse -append batch_name = x {tmp_path / 'a.sub'}"]
