"""Hostile parents: `extends:` can neither run code, send elsewhere, read secrets nor read files.

Each attack is a real ruleset written in tmp_path, run with the real CLI (`rulesmon run`,
`run --once`, `lint --strict`), asserting that the attack did nothing and that lint names it
with a stable code at the parent's file:line:col.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rulesmon.config.loader import builtin_names, load
from rulesmon.diagnostics import Severity
from rulesmon.lint import lint_file

from ..conftest import ROOT, run_cli
from ..receiver import Receiver
from .files import at as _at
from .files import write as _write

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RULESMON_EXTENDS_PATH"}
    return {**env, **extra}


# --- 1. code execution through extends ------------------------------------------------------------

COMMAND_PARENT = """\
version: 1
name: team
jobs:
  helper:
    local:
      command: [PYTHON, -c, "open(r'MARKER', 'w').write('ran')"]
rules:
  - name: helper-failed
    when: job.terminal and job.exit_code != 0
    do: [log]
"""

CHILD = """\
version: 1
name: mine
extends: EXTENDS
every: 1s
jobs:
  mine:
    local: {command: [PYTHON, -c, "pass"]}
rules:
  - {name: mine-done, when: job.terminal, do: [log]}
"""


def _command_attack(tmp_path: Path, entry: str) -> tuple[Path, Path, Path]:
    marker = tmp_path / "marker"
    parent = _write(tmp_path / "team" / "parent.yaml",
                    COMMAND_PARENT.replace("PYTHON", sys.executable)
                    .replace("MARKER", str(marker)))
    child = _write(tmp_path / "child.yaml", CHILD.replace("PYTHON", sys.executable)
                   .replace("EXTENDS", entry))
    return parent, child, marker


@pytest.mark.parametrize("once", [False, True], ids=["run", "run-once"])
def test_parent_command_is_never_launched(tmp_path: Path, once: bool) -> None:
    """An untrusted parent's local `command:` is refused: the run exits 2 naming it with
    RM650 at the parent's `command` key, and the command never runs."""
    parent, child, marker = _command_attack(tmp_path, "team/parent.yaml")
    args = ["run", str(child), "--state", str(tmp_path / "s.db"), *(["--once"] if once else [])]
    result = run_cli(*args, cwd=tmp_path, env=_env(), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    line, col = _at(parent, "command:")
    assert f"team/parent.yaml:{line}:{col}: error RM650 " in result.stderr
    assert "jobs.helper.local.command" in result.stderr
    assert not marker.exists()


def test_lint_strict_reports_the_parent_command(tmp_path: Path) -> None:
    """`rulesmon lint --strict` of the child fails with RM650 at the parent's file:line:col."""
    parent, child, marker = _command_attack(tmp_path, "team/parent.yaml")
    result = run_cli("lint", "--strict", str(child), cwd=tmp_path, env=_env())
    assert result.returncode == 1, result.stdout + result.stderr
    line, col = _at(parent, "command:")
    assert f"team/parent.yaml:{line}:{col}: error RM650 " in result.stdout
    assert "team/parent.yaml, trust: true" in result.stdout  # it says how to trust it
    assert not marker.exists()


def test_trusted_parent_command_runs(tmp_path: Path) -> None:
    """`extends: [{path: ..., trust: true}]` lets the parent launch its command, and lint
    lists it among what the trusted parent brings (RM655, info)."""
    entry = "[{path: team/parent.yaml, trust: true}]"
    _, child, marker = _command_attack(tmp_path, entry)
    lint = run_cli("lint", "--strict", str(child), cwd=tmp_path, env=_env())
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "info RM655 team/parent.yaml, trusted, brings" in lint.stdout
    assert "jobs.helper.local.command" in lint.stdout
    result = run_cli("run", str(child), "--state", str(tmp_path / "s.db"), cwd=tmp_path,
                     env=_env(), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.read_text(encoding="utf-8") == "ran"


def test_trust_does_not_pass_through_an_untrusted_parent(tmp_path: Path) -> None:
    """A parent's own `trust: true` counts only when that parent is trusted: a command in a
    grandparent reached through an untrusted parent is RM650 at the grandparent."""
    marker = tmp_path / "marker"
    grand = _write(tmp_path / "team" / "grand.yaml",
                   COMMAND_PARENT.replace("PYTHON", sys.executable)
                   .replace("MARKER", str(marker)))
    _write(tmp_path / "team" / "parent.yaml",
           "version: 1\nname: p\nextends: [{path: grand.yaml, trust: true}]\n")
    child = _write(tmp_path / "child.yaml", CHILD.replace("PYTHON", sys.executable)
                   .replace("EXTENDS", "team/parent.yaml"))
    diags = lint_file(child, env={})
    line, col = _at(grand, "command:")
    assert [(d.line, d.col, d.code) for d in diags] == [(line, col, "RM650")]
    assert diags[0].path.endswith("team/grand.yaml")
    result = run_cli("run", "--once", str(child), "--state", str(tmp_path / "s.db"),
                     cwd=tmp_path, env=_env(), timeout=60)
    assert result.returncode == 2 and not marker.exists(), result.stderr


@pytest.mark.parametrize(("snippet", "key"), [
    ("rules:\n  - name: r\n    when: job.terminal\n    do: [{exec: [touch, x]}]\n", "exec"),
    ("rules:\n  - name: r\n    when: job.terminal\n    do: [{control: cancel}]\n", "control"),
    ("jobs:\n  j:\n    slurm:\n      submit: {script: run.sbatch}\n", "submit"),
    ("jobs:\n  j:\n    htcondor:\n      submit: {file: run.sub}\n", "submit"),
    ("jobs:\n  j:\n    dagman: {dag: x.dag, submit: true}\n", "submit"),
], ids=["exec", "control", "sbatch", "condor_submit", "condor_submit_dag"])
def test_every_process_starting_key_is_refused(tmp_path: Path, snippet: str, key: str) -> None:
    """exec and control actions and every scheduler `submit` in an untrusted parent are RM650
    at the key in the parent."""
    parent = _write(tmp_path / "p.yaml", "version: 1\nname: p\n" + snippet)
    child = _write(tmp_path / "c.yaml", "version: 1\nname: c\nextends: p.yaml\n")
    diags = lint_file(child, env={})
    line, col = _at(parent, key + ":")
    assert [(d.line, d.col, d.code) for d in diags] == [(line, col, "RM650")]
    assert diags[0].path.endswith("p.yaml")


# --- 2. secret theft through extends: the parent's own target and ${VAR} --------------------------

THIEF = """\
version: 1
name: team
notify:
  theirs: URL
defaults:
  notify: [theirs]
rules:
  - name: anything-ends
    when: job.terminal
    do:
      - notify: theirs
        message: "key=${AWS_SECRET_ACCESS_KEY}"
summary: theirs
"""


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("once", [False, True], ids=["run", "run-once"])
def test_parent_target_and_env_reach_nobody(tmp_path: Path, once: bool) -> None:
    """A parent's own notify target and `${AWS_SECRET_ACCESS_KEY}` are refused (RM651,
    RM652): the run exits 2, the receiver gets nothing, and the secret is written nowhere."""
    with Receiver() as rx:
        _write(tmp_path / "team" / "parent.yaml", THIEF.replace("URL", rx.url()))
        child = _write(tmp_path / "child.yaml", CHILD.replace("PYTHON", sys.executable)
                       .replace("EXTENDS", "team/parent.yaml"))
        state = tmp_path / "state" / "s.db"
        args = ["run", str(child), "--state", str(state), *(["--once"] if once else [])]
        result = run_cli(*args, cwd=tmp_path, env=_env(AWS_SECRET_ACCESS_KEY=SECRET),
                         timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert rx.received == []
    assert "RM651" in result.stderr and "RM652" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert SECRET.encode() not in _all_bytes(tmp_path)  # state db, logs, outbox: anything


def test_lint_reports_parent_target_and_env_at_the_parent(tmp_path: Path) -> None:
    """Lint reports the parent's target (RM651), its `${VAR}` (RM652) and its summary (RM651)
    at their keys in the parent, and never prints the variable's value."""
    parent = _write(tmp_path / "team" / "parent.yaml", THIEF.replace("URL", "json://x/y"))
    child = _write(tmp_path / "child.yaml", CHILD.replace("PYTHON", sys.executable)
                   .replace("EXTENDS", "team/parent.yaml"))
    result = run_cli("lint", "--strict", str(child), cwd=tmp_path,
                     env=_env(AWS_SECRET_ACCESS_KEY=SECRET))
    assert result.returncode == 1
    for needle, code in (("theirs: ", "RM651"), ("key=${", "RM652"), ("summary:", "RM651")):
        line, col = _at(parent, needle)
        if code == "RM652":  # located at the value: the quoted message
            line, col = _at(parent, '"key=')
        assert f"team/parent.yaml:{line}:{col}: error {code} " in result.stdout, result.stdout
    assert "${AWS_SECRET_ACCESS_KEY}" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_parent_may_name_the_childs_targets(tmp_path: Path) -> None:
    """What a parent may bring still works: its rules and defaults notify the child's own
    target, which receives the parent's rule message."""
    with Receiver() as rx:
        _write(tmp_path / "team" / "parent.yaml", """\
version: 1
name: team
defaults:
  notify: [mine]
rules:
  - name: anything-ends
    when: job.terminal
    message: "{{ job.key }} ended"
""")
        child = _write(tmp_path / "child.yaml", CHILD.replace("PYTHON", sys.executable)
                       .replace("EXTENDS", "team/parent.yaml")
                       .replace("every: 1s\n", f"every: 1s\nnotify:\n  mine: {rx.url()}\n"))
        result = run_cli("run", str(child), "--state", str(tmp_path / "s.db"), cwd=tmp_path,
                         env=_env(), timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert [r["body"]["message"] for r in rx.received] == ["mine ended"]


# --- 3. extends reads any file -------------------------------------------------------------------

SHADOW = "root:$6$HASHEDSECRETVALUE$abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A password-file look-alike outside the project folder."""
    return _write(tmp_path / "etc" / "shadow", SHADOW)


def _project(tmp_path: Path, entry: str) -> Path:
    return _write(tmp_path / "proj" / "child.yaml",
                  f"version: 1\nname: c\nextends: {entry}\n")


def _symlink(tmp_path: Path, outside: Path) -> str:
    link = tmp_path / "proj" / "team.yaml"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    return "team.yaml"


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "etc-shadow"])
def test_paths_outside_the_folder_are_refused_unread(tmp_path: Path, outside: Path,
                                                     kind: str) -> None:
    """An absolute path, a `..` path or a symbolic link leading out of the ruleset's folder is
    RM653 at the entry, for lint and run, and the file's content is never printed."""
    entry = {"absolute": str(outside), "dotdot": "../etc/shadow", "etc-shadow": "/etc/shadow",
             "symlink": _symlink(tmp_path, outside) if kind == "symlink" else ""}[kind]
    if kind == "etc-shadow" and not Path("/etc/shadow").exists():
        pytest.skip("no /etc/shadow here")
    child = _project(tmp_path, entry)
    lint = run_cli("lint", str(child), cwd=tmp_path / "proj", env=_env())
    run = run_cli("run", "--once", str(child), "--state", str(tmp_path / "s.db"),
                  cwd=tmp_path / "proj", env=_env(), timeout=60)
    assert lint.returncode == 1 and run.returncode == 2
    line, col = _at(child, entry)
    assert lint.stdout.splitlines()[0].startswith(f"child.yaml:{line}:{col}: error RM653 ")
    assert f"child.yaml:{line}:{col}: error RM653 " in run.stderr
    for out in (lint.stdout, lint.stderr, run.stdout, run.stderr):
        assert "HASHEDSECRETVALUE" not in out and "daemon" not in out and "root:" not in out


def test_named_folders_may_be_extended(tmp_path: Path) -> None:
    """A folder named with --extends-path or RULESMON_EXTENDS_PATH may be extended, by a
    relative entry (looked up there) or an absolute one."""
    shared = _write(tmp_path / "shared" / "team.yaml", """\
version: 1
name: team
rules:
  - {name: t-ended, when: job.terminal, do: [log]}
""")
    for entry in ("team.yaml", str(shared), "../shared/team.yaml"):
        child = _project(tmp_path, entry)
        refused = run_cli("lint", str(child), cwd=tmp_path, env=_env())
        assert refused.returncode == 1 and (" RM653 " in refused.stdout
                                            or " RM302 " in refused.stdout), refused.stdout
        by_option = run_cli("lint", "--strict", "--extends-path", str(tmp_path / "shared"),
                            str(child), cwd=tmp_path, env=_env())
        by_env = run_cli("lint", "--strict", str(child), cwd=tmp_path,
                         env=_env(RULESMON_EXTENDS_PATH=os.pathsep.join(
                             ["/nonexistent", str(tmp_path / "shared")])))
        for result in (by_option, by_env):
            assert result.returncode == 0, result.stdout + result.stderr
            assert "RM655" in result.stdout and "1 rule (t-ended)" in result.stdout


@pytest.mark.parametrize(("text", "why"), [
    (SHADOW, "not a ruleset"),
    ("password: HASHEDSECRETVALUE\nuser: root\n", "no `version:` key"),
    ("\x00\x01binary HASHEDSECRETVALUE", "not UTF-8 text"),
], ids=["password-file", "mapping-without-version", "binary"])
def test_a_file_that_is_not_a_ruleset_is_one_finding(tmp_path: Path, text: str,
                                                     why: str) -> None:
    """A parent inside the folder that is not a ruleset is one RM654 at the extends entry,
    saying why, without its content (no "unknown key" per line)."""
    _write(tmp_path / "proj" / "notes.yaml", text)
    child = _project(tmp_path, "notes.yaml")
    diags = lint_file(child, env={})
    assert [d.code for d in diags] == ["RM654"]
    assert why in diags[0].message
    assert "HASHEDSECRETVALUE" not in diags[0].message and "root" not in diags[0].message


# --- what still works -----------------------------------------------------------------------------


def test_builtins_need_no_trust() -> None:
    """Every builtin ruleset, extended without trust, loads: none declares anything that
    only the user's own file may."""
    for name in builtin_names():
        loaded = load(ROOT / "rulesets" / f"{name}.yaml", env={})
        assert loaded.ruleset.notify == {} and loaded.ruleset.summary is None


EXTENDING_EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml")
                            if "extends:" in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", EXTENDING_EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_that_extend_lint_clean_and_list_their_parents(path: Path) -> None:
    """Each example that extends a builtin lints with no error or warning, and lint lists
    what each of its parents brings (RM655)."""
    diags = lint_file(path, env={})
    assert [d.render() for d in diags if d.severity is not Severity.INFO] == []
    assert any(d.code == "RM655" and "builtin:" in d.message for d in diags)


def test_gpu_workers_example_runs(tmp_path: Path) -> None:
    """The gpu-workers example, which extends builtin:gpu-training, still starts and ticks
    (one dry-run tick: nothing launched)."""
    example = ROOT / "examples" / "gpu-workers" / "ruleset.yaml"
    result = run_cli("run", "--once", "--dry-run", str(example), "--state",
                     str(tmp_path / "s.db"), env=_env(), timeout=60)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert "RM65" not in result.stderr


@pytest.mark.parametrize(("entry", "code"), [
    ("[{path: p.yaml, trust: yes-please}]", "RM203"),
    ("[{path: p.yaml, trusted: true}]", "RM201"),
    ("[{trust: true}]", "RM202"),
    ("[[p.yaml]]", "RM203"),
], ids=["trust-not-bool", "misspelt-trust", "no-path", "nested-list"])
def test_malformed_entries_are_located(tmp_path: Path, entry: str, code: str) -> None:
    """A malformed extends entry (in the file run or in a parent) is one located finding, and
    a misspelt `trust` never trusts."""
    _write(tmp_path / "p.yaml", "version: 1\nname: p\nnotify: {t: json://x/y}\n")
    for name in ("c.yaml", "via.yaml"):
        child = _write(tmp_path / name, f"version: 1\nname: c\nextends: {entry}\n")
        if name == "via.yaml":  # the same entry inside a trusted parent
            child = _write(tmp_path / "top.yaml", "version: 1\nname: top\n"
                           "extends: [{path: via.yaml, trust: true}]\n")
        diags = lint_file(child, env={})
        assert [d.code for d in diags] == [code], [d.render() for d in diags]
        assert diags[0].line == 3 and diags[0].path.endswith(name)


def test_facts_takes_extends_path(tmp_path: Path) -> None:
    """`rulesmon facts --extends-path DIR` reads a parent from DIR; without it the parent
    outside the ruleset's folder is not read and facts exits 2."""
    _write(tmp_path / "shared" / "team.yaml", "version: 1\nname: team\nrules:\n"
           "  - {name: t-ended, when: job.terminal, do: [log]}\n")
    child = _write(tmp_path / "proj" / "child.yaml", f"""\
version: 1
name: c
extends: team.yaml
jobs:
  me:
    local: {{pids: [{os.getpid()}]}}
""")
    ok = run_cli("facts", "--format", "json", "--extends-path", str(tmp_path / "shared"),
                 str(child), cwd=tmp_path, env=_env(), timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert '"me' in ok.stdout
    refused = run_cli("facts", str(child), cwd=tmp_path, env=_env(), timeout=60)
    assert refused.returncode == 2 and " RM302 " in refused.stderr
