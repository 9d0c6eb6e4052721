"""`rulesmon lint`: output formats, exit codes, strictness, secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import run_cli

BAD = """\
version: 1
name: demo
notify:
  team: ${HOOK}
jobs:
  train:
    slurm: {user: alice}
rules:
  - name: crashed
    when: job.stat == "FAILED"
    notify: team
  - name: quick
    when: job.state == "RUNNING"
    for: 5s
    notify: team
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_text_format_is_path_line_col_severity_code(write) -> None:  # type: ignore[no-untyped-def]
    """Text output is one `path:line:col: severity CODE message` line per finding."""
    path: Path = write("bad.yaml", BAD)
    result = run_cli("lint", str(path), env=_env(HOOK="json://127.0.0.1:1/x"))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines == [
        f"{path}:10:11: error RM401 unknown fact 'job.stat': job has no 'stat' "
        '(did you mean "state"?)',
        f"{path}:14:10: warning RM501 for: 5s is shorter than the tick interval every: 30s; "
        "the rule can only fire on a tick",
    ]


def test_strict_turns_warnings_into_errors(write) -> None:  # type: ignore[no-untyped-def]
    """With --strict a warning is reported as an error and fails the run."""
    path = write("warn.yaml", BAD.replace("job.stat ", "job.state "))
    env = _env(HOOK="json://127.0.0.1:1/x")
    plain = run_cli("lint", str(path), env=env)
    strict = run_cli("lint", "--strict", str(path), env=env)
    assert plain.returncode == 0 and " warning RM501 " in plain.stdout
    assert strict.returncode == 1 and " error RM501 " in strict.stdout


def test_json_format(write) -> None:  # type: ignore[no-untyped-def]
    """JSON output is a list of findings with path, line, col, code, name, severity."""
    path = write("bad.yaml", BAD)
    result = run_cli("lint", "--format", "json", str(path), env=_env(HOOK="json://h/x"))
    data = json.loads(result.stdout)
    assert data[0]["code"] == "RM401" and data[0]["line"] == 10 and data[0]["col"] == 11
    assert data[0]["name"] == "unknown-fact" and data[0]["severity"] == "error"


def test_github_format(write) -> None:  # type: ignore[no-untyped-def]
    """GitHub format emits workflow annotations with file, line and col."""
    path = write("bad.yaml", BAD)
    result = run_cli("lint", "--format", "github", str(path), env=_env(HOOK="json://h/x"))
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"::error file={path},line=10,col=11,title=RM401 unknown-fact::")


def test_sarif_format(write) -> None:  # type: ignore[no-untyped-def]
    """SARIF output is a 2.1.0 log whose results point at the region and name the rule."""
    path = write("bad.yaml", BAD)
    result = run_cli("lint", "--format", "sarif", str(path), env=_env(HOOK="json://h/x"))
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    res = log["runs"][0]["results"][0]
    assert res["ruleId"] == "RM401"
    assert res["locations"][0]["physicalLocation"]["region"] == {"startLine": 10,
                                                                 "startColumn": 11}
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert rules[res["ruleIndex"]]["id"] == "RM401"


def test_missing_path_exits_two() -> None:
    """An unreadable input is a usage problem: exit 2."""
    result = run_cli("lint", "does/not/exist.yaml")
    assert result.returncode == 2
    assert "RM001" in result.stdout


def test_secret_never_printed(write) -> None:  # type: ignore[no-untyped-def]
    """A secret from the environment never appears in lint output, even in a bad URL."""
    secret = "hunter2-super-secret-token"
    path = write("s.yaml", BAD)
    for fmt in ("text", "json", "github", "sarif"):
        result = run_cli("lint", "--format", fmt, str(path),
                         env=_env(HOOK=f"notaservice://{secret}@host/x"))
        assert "RM407" in result.stdout
        assert secret not in result.stdout + result.stderr


def test_folder_is_searched_and_test_files_skipped(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A folder is searched recursively for *.yaml/*.yml, skipping *.test.yaml rule tests."""
    write("a/one.yaml", BAD)
    write("a/b/two.yml", BAD)
    write("a/one.test.yaml", "not: [a ruleset")
    result = run_cli("lint", str(tmp_path / "a"), env=_env(HOOK="json://h/x"))
    files = {line.split(":", 1)[0] for line in result.stdout.splitlines()}
    assert files == {str(tmp_path / "a" / "one.yaml"), str(tmp_path / "a" / "b" / "two.yml")}


def test_paths_are_relative_only_under_the_working_folder(tmp_path: Path) -> None:
    """Lint names a file under the working folder by its relative path and any other file
    (a sibling folder's too) by its absolute path, never by a `../` path that depends on
    where the command runs."""
    inside, sibling = tmp_path / "work", tmp_path / "other"
    for folder in (inside / "sub", sibling):
        folder.mkdir(parents=True)
        (folder / "r.yaml").write_text("version: 1\nname: r\nevry: 5s\nrules: []\n",
                                       encoding="utf-8")
    out = run_cli("lint", str(inside / "sub" / "r.yaml"), str(sibling / "r.yaml"),
                  cwd=inside).stdout
    starts = sorted(line.split(":")[0] for line in out.splitlines() if "RM201" in line)
    assert starts == sorted([os.path.join("sub", "r.yaml"), str(sibling / "r.yaml")]), out


def test_a_file_that_is_not_a_ruleset_is_never_quoted(tmp_path: Path) -> None:
    """Linting a file that is no ruleset (a password file's shape) gives one RM010 at 1:1 and
    none of its lines; a ruleset with a mistake still gets the usual findings."""
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n"
                      "daemon:*:19000:0:99999:7:::\n", encoding="utf-8")
    result = run_cli("lint", str(shadow))
    assert result.returncode == 1
    assert [line.split(" ")[2] for line in result.stdout.splitlines()] == ["RM010"]
    assert ":1:1: error RM010" in result.stdout
    assert "hashhash" not in result.stdout + result.stderr and "daemon" not in result.stdout
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: t\njobz: {}\n", encoding="utf-8")
    codes = {line.split(" ")[2] for line in run_cli("lint", str(typo)).stdout.splitlines()}
    assert codes == {"RM201", "RM202"}


REFUSED = """\
version: 1
name: refused
jobs:
  t: {local: {pids: [1]}}
rules:
  - {name: misspelt, when: job.stat == "FAILED", do: [log]}
  - {name: no-such-function, when: nosuchfn(job.state), do: [log]}
  - {name: bad-argument, when: "round(job.elapsed, 1, 2) > 1", do: [log]}
  - {name: string-duration, when: job.elapsed > "5m", do: [log]}
"""


@pytest.mark.parametrize("command", ["run", "facts", "test"])
def test_run_facts_and_test_refuse_what_lint_refuses(write, command: str) -> None:  # type: ignore[no-untyped-def]
    """`run`, `facts` and `test` apply lint's errors first: exit 2 with lint's located
    messages, no traceback, nothing run."""
    path: Path = write("refused.yaml", REFUSED)
    linted = run_cli("lint", str(path))
    errors = [line for line in linted.stdout.splitlines() if ": error RM" in line]
    assert [e.split(": error ")[1][:5] for e in errors] == ["RM401", "RM402", "RM403", "RM416"]
    args = [command, str(path)] + (["--once"] if command == "run" else [])
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for line in errors:
        assert line in result.stderr
    assert "nothing was run" in result.stderr or "not run" in result.stderr
    assert "STATUS_CHECK" not in result.stdout and not (path.parent / ".rulesmon").exists()


def test_a_number_compared_with_a_string_is_a_type_mismatch(write) -> None:  # type: ignore[no-untyped-def]
    """`job.elapsed > "5m"` is RM416 at its column, with the spelling that works."""
    path: Path = write("typed.yaml", REFUSED.replace("name: refused", "name: typed"))
    result = run_cli("lint", str(path))
    line = next(x for x in result.stdout.splitlines() if "RM416" in x)
    assert line.startswith(f"{path}:9:")
    assert 'seconds("5m")' in line


def test_an_inherited_group_rule_without_group_by_is_noted_not_refused(write) -> None:  # type: ignore[no-untyped-def]
    """A `scope: group` rule brought by `extends:` over jobs without group_by is RM417 (info,
    it never fires here), so `run` accepts the ruleset; the same rule in the file is RM412."""
    path: Path = write("d.yaml", "version: 1\nname: d\nextends: [builtin:dagman-training]\n"
                       "jobs:\n  pipeline:\n    dagman: {dag: p.dag}\n")
    result = run_cli("lint", str(path))
    assert result.returncode == 0, result.stdout
    inert = [x for x in result.stdout.splitlines() if "RM417" in x]
    assert len(inert) == 2 and all(x.startswith("builtin:dagman-training:") for x in inert)
    assert "RM412" not in result.stdout
    own = write("g.yaml", "version: 1\nname: g\njobs:\n  t: {local: {pids: [1]}}\nrules:\n"
                "  - {name: r, scope: group, when: group.failed > 0, do: [log]}\n")
    assert "error RM412" in run_cli("lint", str(own)).stdout
