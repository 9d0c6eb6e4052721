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


GROUPS = """\
version: 1
name: g
every: 1s
jobs:
  sweep:
    local: {command: ["true"]}
    group_by: [experiment]
  other:
    local: {command: ["true"]}
rules:
  - name: run-seen
    scope: group
    when: group.total > 0
    do: [log]
"""


class GroupProbe:
    """HTCondor-like instances: `+Experiment` spelt three ways, one without it, a DAG."""

    name = "fake"

    def start(self, ctx: Any) -> None:
        return None

    def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
        def job(key: str, state: str, **facts: Any) -> dict[str, Any]:
            return {"job.key": key, "job.source": "htcondor", "job.state": state,
                    "job.terminal": state == "COMPLETED",
                    "job.succeeded": state == "COMPLETED", **facts}

        return {"sweep/1": job("sweep", "RUNNING", **{"job.attrs.Experiment": "e1"}),
                "sweep/2": job("sweep", "COMPLETED", **{"job.attrs.EXPERIMENT": "e1"}),
                "sweep/3": job("sweep", "RUNNING", **{"job.attrs.experiment": "e2"}),
                "sweep/4": job("sweep", "RUNNING"),
                "sweep/dag": job("sweep", "RUNNING", **{"dag.file": "/w/a.dag",
                                                        "job.attrs.Experiment": "e1"}),
                "other/1": job("other", "RUNNING", **{"node.vars.run_uuid": "r1"})}

    def close(self) -> None:
        return None


def test_group_rules_facts_and_plain_lines_share_the_groups(tmp_path: Path) -> None:
    """Group-scope rules, `group_instances` (rulesmon facts) and the plain lines' RUN_PROGRESS
    group by each job's own `group_by` (an attribute found whatever its spelling, on every
    tick; the DAG itself left out); the plain lines group a job without one by run_uuid."""
    import io

    from rulesmon.display import for_run
    from rulesmon.display.plain import PlainLines

    loaded = load_text(GROUPS)
    printer = for_run(loaded, live=False, stdout=io.StringIO())
    assert isinstance(printer, PlainLines)
    engine = Engine(loaded, state_path=tmp_path / "s.db", log=NullLog(), probes=[GroupProbe()],
                    observers=printer.observers)
    try:
        fired = [[n.instance for n in engine.tick(1000.0 + t).fired] for t in range(2)]
        lines = printer.lines(printer.feed.take())
        groups = engine.group_instances()
    finally:
        engine.close()
    assert sorted(groups) == ["sweep/experiment=e1", "sweep/experiment=e2"]
    assert (groups["sweep/experiment=e1"]["group.total"],
            groups["sweep/experiment=e1"]["group.done"]) == (2, 1)
    assert sorted(fired[0]) == sorted(groups) and fired[1] == []
    assert engine.alerts["run-seen"].keys() == groups.keys()
    shown = [line.split("] ", 1)[1] for line in lines if "RUN_PROGRESS" in line]
    assert shown == ["RUN_PROGRESS: other/run_uuid=r1", "RUN_PROGRESS: sweep/experiment=e1",
                     "RUN_PROGRESS: sweep/experiment=e2"]


def test_every_option_has_the_rulesets_bounds(tmp_path: Path) -> None:
    """`--every` is refused where `every:` in a ruleset would be (2d: more than 1d; 0s), as a
    usage error naming the option."""
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text("version: 1\nname: e\njobs: {}\n", encoding="utf-8")
    for value, message in (("2d", "less than or equal to 86400"), ("0s", "greater than 0")):
        result = run_cli("run", str(ruleset), "--once", "--every", value, cwd=tmp_path)
        assert result.returncode == 2 and "--every" in result.stderr, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_a_repeated_probe_error_holds_the_failure_without_counting_it(tmp_path: Path) -> None:
    """A ProbeError marked `repeated` (the probe did not ask again) keeps the probe failed
    with the same count, and only the counted failure is logged."""
    from rulesmon.probes.base import ProbeError

    class Log(NullLog):
        def __init__(self) -> None:
            self.failed: list[int] = []

        def warning(self, event: str, **kw: Any) -> None:
            if event == "probe_failed":
                self.failed.append(kw["failures"])

    class Flaky(Probe):
        def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
            self.calls += 1
            raise ProbeError("squeue: timed out", repeated=self.calls > 1)

    log = Log()
    engine = Engine(load_text(BASE), state_path=tmp_path / "s.db", log=log,
                    probes=[Flaky("raise")])
    try:
        for t in range(3):
            engine.tick(1000.0 + t)
    finally:
        engine.close()
    assert engine.run_facts["probe.slurm.ok"] is False
    assert engine.run_facts["probe.slurm.failures"] == 1
    assert log.failed == [1]
