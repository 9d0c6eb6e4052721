"""The engine: probes that fail or hang, overruns, run-level facts, exit codes, dry runs."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from rulesmon.config.loader import load_text
from rulesmon.engine import Engine
from rulesmon.testing import NullLog

from .conftest import run_cli

BASE = """\
version: 1
name: e
every: 0.2s
jobs:
  train:
    slurm: {user: a}
rules:
  - name: probe-down
    scope: run
    when: probe.slurm.failures >= 2
    do: [log]
  - name: running
    when: job.state == "RUNNING"
    do: [log]
"""


class Probe:
    name = "slurm"

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls = 0
        self.release = threading.Event()

    def start(self, ctx: Any) -> None:
        return None

    def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
        self.calls += 1
        if self.behaviour == "raise":
            raise RuntimeError("squeue: command not found\nsecond line")
        if self.behaviour == "hang":
            self.release.wait(5)
        return {"train/1": {"job.key": "train", "job.source": "slurm", "job.state": "RUNNING"}}

    def close(self) -> None:
        self.release.set()


def _engine(tmp_path: Path, probe: Probe, **kw: Any) -> Engine:
    return Engine(load_text(BASE), state_path=tmp_path / "s.db", log=NullLog(), probes=[probe],
                  **kw)


def test_a_failing_probe_becomes_facts_and_an_alert(tmp_path: Path) -> None:
    """A probe that raises never stops the tick: probe.<name>.* facts count the failures and
    a run-scope rule alerts on them."""
    engine = _engine(tmp_path, Probe("raise"))
    fired = []
    for i in range(3):
        fired += [n.rule for n in engine.tick(1000.0 + i).fired]
    assert engine.run_facts["probe.slurm.ok"] is False
    assert engine.run_facts["probe.slurm.failures"] == 3
    assert engine.run_facts["probe.slurm.error"] == "RuntimeError: squeue: command not found"
    assert fired == ["probe-down"]
    engine.close()


def test_a_hanging_probe_times_out_and_the_tick_goes_on(tmp_path: Path) -> None:
    """A probe that hangs is abandoned after its timeout; the next tick does not stack a
    second call on top of it."""
    probe = Probe("hang")
    engine = _engine(tmp_path, probe, probe_timeout=0.3)
    t0 = time.monotonic()
    engine.tick(1000.0)
    engine.tick(1001.0)
    assert time.monotonic() - t0 < 2.0
    assert probe.calls == 1
    assert engine.run_facts["probe.slurm.failures"] == 2
    assert "still running" in engine.run_facts["probe.slurm.error"]
    engine.close()


def test_run_facts_count_instances(tmp_path: Path) -> None:
    """run.* counts instances by state, and all_terminal waits for every one."""
    engine = _engine(tmp_path, Probe("ok"))
    engine.tick(1000.0)
    rf = engine.run_facts
    assert (rf["run.total"], rf["run.running"], rf["run.all_terminal"]) == (1, 1, False)
    assert rf["run.counts.RUNNING"] == 1
    assert "1 job instance(s): 1 RUNNING" in rf["run.summary"]
    engine.close()


def test_overruns_are_counted(tmp_path: Path) -> None:
    """A tick longer than the interval is an overrun, counted in run.overruns."""
    class Slow(Probe):
        def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
            time.sleep(0.35)
            return super().collect(ctx)

    engine = _engine(tmp_path, Slow("ok"), probe_timeout=2)
    code = engine.run(max_ticks=3)
    assert engine.overruns >= 2
    assert code == 0
    engine.close()


WORKERS = """\
version: 1
name: w
every: 0.3s
jobs:
  job:
    local:
      command: ["{python}", "-c", "import sys; sys.exit({{{{ worker }}}} * {code})"]
      workers: 2
rules:
  - {{name: crashed, when: job.terminal and job.exit_code != 0, do: [log]}}
"""


def test_run_exit_code_says_whether_all_jobs_succeeded(tmp_path: Path) -> None:
    """`rulesmon run` ends by itself once every job is terminal: exit 0 when all succeeded,
    1 when one failed, and the final summary is logged."""
    for code, expect in ((0, 0), (3, 1)):
        ruleset = tmp_path / f"w{code}.yaml"
        ruleset.write_text(WORKERS.format(python=sys.executable, code=code), encoding="utf-8")
        result = run_cli("run", str(ruleset), "--state", str(tmp_path / f"{code}.db"),
                         cwd=tmp_path, timeout=60)
        assert result.returncode == expect, result.stderr
        assert "run_finished" in result.stderr and "all jobs terminal" in result.stderr


def test_dry_run_launches_and_sends_nothing(tmp_path: Path) -> None:
    """--dry-run evaluates, prints what would happen, and launches no worker."""
    ruleset = tmp_path / "w.yaml"
    ruleset.write_text(WORKERS.format(python=sys.executable, code=0).replace(
        "job.terminal and job.exit_code != 0", 'job.state == "PENDING"'), encoding="utf-8")
    result = run_cli("run", str(ruleset), "--dry-run", "--once", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "alert_firing" in result.stderr and "crashed" in result.stderr
    assert not (tmp_path / ".rulesmon").exists()
    assert not (tmp_path / "logs").exists()


def test_facts_command_marks_unknown_facts(tmp_path: Path) -> None:
    """`rulesmon facts` prints each instance's facts and marks those the rules use but no
    probe provided as unknown."""
    ruleset = tmp_path / "f.yaml"
    ruleset.write_text(
        "version: 1\nname: f\njobs:\n  sim:\n    files:\n      out: {glob: '*.txt'}\n"
        "rules:\n  - {name: gpu-hot, when: gpu.temp > 80 and files.out.count > 0,"
        " do: [log]}\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("x")
    result = run_cli("facts", str(ruleset), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "== sim/-" in result.stdout
    assert "files.out.count = 1" in result.stdout
    assert "gpu.temp = unknown" in result.stdout


def test_observers_see_each_tick_and_a_failing_one_is_contained(tmp_path: Path) -> None:
    """Observers get the tick's facts and notifications; one that raises is logged once and
    the others and the tick go on."""
    from rulesmon.engine import TickReport

    seen: list[TickReport] = []

    def broken(report: TickReport) -> None:
        raise ValueError("display bug")

    engine = _engine(tmp_path, Probe("ok"), observers=[broken, seen.append])
    try:
        engine.tick(1000.0)
        engine.tick(1001.0)
    finally:
        engine.close()
    assert [r.tick for r in seen] == [1, 2]
    assert seen[0].instances["train/1"]["job.state"] == "RUNNING"
    assert seen[0].run["run.running"] == 1
    assert [n.rule for n in seen[0].fired] == ["running"]
    assert seen[1].fired == []
