"""Actions: exec only with --allow-exec (no shell, output recorded), stop, the final summary,
and default messages."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .conftest import run_cli
from .receiver import Receiver

EXEC = """\
version: 1
name: x
every: 0.2s
notify:
  hook: "${{HOOK:-}}"
summary: {{notify: hook}}
jobs:
  sim:
    files:
      out: {{glob: "*.txt"}}
rules:
  - name: post-process
    when: files.out.count > 0
    resolve: false
    do:
      - exec:
          - "{python}"
          - "-c"
          - "import sys; print('processed', sys.argv[1])"
          - "{{{{ files.out.count }}}}; rm -rf /"
      - stop: 0
"""


def _write(tmp_path: Path) -> Path:
    ruleset = tmp_path / "x.yaml"
    ruleset.write_text(EXEC.format(python=sys.executable), encoding="utf-8")
    (tmp_path / "a.txt").write_text("x")
    return ruleset


def _exec_events(db: Path) -> list[tuple[str, str]]:
    import sqlite3

    con = sqlite3.connect(str(db))
    rows = list(con.execute("SELECT kind, body FROM events WHERE kind LIKE 'exec%'"))
    con.close()
    return rows


def test_exec_needs_allow_exec(tmp_path: Path) -> None:
    """Without --allow-exec the command is not run; the skip is logged and recorded."""
    ruleset = _write(tmp_path)
    result = run_cli("run", str(ruleset), "--state", str(tmp_path / "s.db"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exec_skipped" in result.stderr
    assert [k for k, _ in _exec_events(tmp_path / "s.db")] == ["exec_skipped"]


def test_exec_runs_argv_without_a_shell_and_records_output(tmp_path: Path) -> None:
    """With --allow-exec the templated argv runs as given (shell syntax stays literal text)
    and its exit code and output are recorded."""
    ruleset = _write(tmp_path)
    result = run_cli("run", str(ruleset), "--allow-exec", "--state", str(tmp_path / "s.db"),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _exec_events(tmp_path / "s.db"):
        time.sleep(0.1)
    kind, body = _exec_events(tmp_path / "s.db")[0]
    assert kind == "exec"
    assert body == "exit 0\nprocessed 1; rm -rf /\n"


SUMMARY = """\
version: 1
name: sum
every: 0.3s
notify:
  hook: "${HOOK}"
summary: {notify: hook, title: "{{ run.name }} done"}
jobs:
  w:
    local: {command: ["PYTHON", "-c", "pass"], workers: 2}
rules:
  - {name: failed, when: job.terminal and job.exit_code != 0}
"""


def test_final_summary_goes_to_the_chosen_targets(tmp_path: Path) -> None:
    """When every job has ended, the run's summary is delivered to `summary.notify`."""
    with Receiver() as rx:
        ruleset = tmp_path / "s.yaml"
        ruleset.write_text(SUMMARY.replace("PYTHON", sys.executable), encoding="utf-8")
        env = dict(os.environ, HOOK=rx.url())
        result = run_cli("run", str(ruleset), "--state", str(tmp_path / "s.db"), env=env,
                         cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        assert [r["body"]["title"] for r in rx.received] == ["sum done"]
        assert "2 job instance(s): 2 COMPLETED" in rx.received[0]["body"]["message"]
