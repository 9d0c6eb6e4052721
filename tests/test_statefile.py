"""`state_file:`: a JSON snapshot of every job written atomically each tick by a real
`rulesmon run`, readers never seeing half a file, failures as one log line, fields, dry runs
and lint."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from rulesmon.engine import TickReport
from rulesmon.statefile import StateFileWriter

from .conftest import run_cli

RULESET = """\
version: 1
name: state
every: 0.2s
{state_file}
jobs:
  ok:
    local: {{command: ["{python}", "-c", "import time; time.sleep(0.6)"]}}
  bad:
    local: {{command: ["{python}", "-c", "import sys, time; time.sleep(0.6); sys.exit(3)"]}}
"""


def _ruleset(tmp_path: Path, state_file: str) -> Path:
    path = tmp_path / "rs.yaml"
    path.write_text(RULESET.format(state_file=state_file, python=sys.executable),
                    encoding="utf-8")
    return path


def _by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(entry["job.key"]): entry for entry in doc["jobs"].values()}


def test_a_real_run_leaves_every_jobs_final_state(tmp_path: Path) -> None:
    """After `rulesmon run` the file holds each job's final state, exit code and previous
    state, and the run's counts; the folder is created and no temporary file is left."""
    ruleset = _ruleset(tmp_path, "state_file: out/run-experiment-state.json")
    result = run_cli("run", str(ruleset), cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]  # one job failed
    target = tmp_path / "out" / "run-experiment-state.json"
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert [p.name for p in target.parent.iterdir()] == ["run-experiment-state.json"]
    assert doc["ruleset"] == "state" and doc["tick"] >= 3
    assert doc["run"]["all_terminal"] is True
    assert (doc["run"]["total"], doc["run"]["succeeded"], doc["run"]["failed"]) == (2, 1, 1)
    jobs = _by_key(doc)
    assert jobs["ok"]["job.state"] == "COMPLETED" and jobs["ok"]["job.exit_code"] == 0
    assert jobs["bad"]["job.state"] == "FAILED" and jobs["bad"]["job.exit_code"] == 3
    assert jobs["bad"]["job.outcome"] == "failed" and jobs["bad"]["job.terminal"] is True
    assert jobs["bad"]["previous_state"] == "RUNNING"
    assert jobs["bad"]["state_since"] <= doc["updated"]


def test_chosen_fields_only(tmp_path: Path) -> None:
    """`fields:` lists exactly the facts kept per instance (beside previous_state and
    state_since)."""
    ruleset = _ruleset(tmp_path, "state_file: {path: s.json, fields: [job.key, job.state]}")
    result = run_cli("run", str(ruleset), cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    doc = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    for entry in doc["jobs"].values():
        assert sorted(entry) == ["job.key", "job.state", "previous_state", "state_since"]


def test_dry_run_writes_no_state_file(tmp_path: Path) -> None:
    """A dry run launches nothing and writes no state file."""
    ruleset = _ruleset(tmp_path, "state_file: s.json")
    result = run_cli("run", str(ruleset), "--dry-run", "--once", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (tmp_path / "s.json").exists()


def test_an_unwritable_state_file_is_one_log_line_and_the_run_goes_on(tmp_path: Path) -> None:
    """When the path cannot be written (a folder is in the way) the run still watches its
    jobs to the end, and the log says so once, in one line, without a traceback."""
    (tmp_path / "s.json").mkdir()
    ruleset = _ruleset(tmp_path, "state_file: s.json")
    log = tmp_path / "run.jsonl"
    result = run_cli("run", str(ruleset), "--log-json", str(log), cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    failed = [e for e in events if e.get("event") == "observer_failed"]
    assert len(failed) == 1
    assert "cannot write the state file" in failed[0]["error"]
    assert "\n" not in failed[0]["error"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _report(tick: int, jobs: int, state: str) -> TickReport:
    instances = {f"train/{i}": {"job.key": "train", "job.id": str(i), "job.state": state,
                                "job.raw_state": "x" * 200} for i in range(jobs)}
    return TickReport(tick=tick, now=1000.0 + tick, duration=0.0, instances=instances,
                      run={"run.total": jobs, "run.all_terminal": False}, fired=[],
                      events=[], run_id=1)


def test_readers_never_see_half_a_file(tmp_path: Path) -> None:
    """A reader polling the file while 2,000-job snapshots are rewritten always parses a
    whole snapshot (the previous one or the new one)."""
    target = tmp_path / "state.json"
    writer = StateFileWriter(target, ("job.id", "job.state"), "r")
    writer(_report(0, 2000, "PENDING"))
    done = threading.Event()
    seen: set[int] = set()
    errors: list[str] = []

    def read() -> None:
        while not done.is_set():
            try:
                doc = json.loads(target.read_text(encoding="utf-8"))
            except (ValueError, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if len(doc["jobs"]) != 2000:  # asserted by the test: a thread's assert is lost
                errors.append(f"tick {doc['tick']}: {len(doc['jobs'])} jobs")
            seen.add(int(doc["tick"]))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for tick in range(1, 41):
            writer(_report(tick, 2000, "RUNNING" if tick % 2 else "PENDING"))
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert len(seen) > 1 and writer.writes == 41
    final = json.loads(target.read_text(encoding="utf-8"))
    assert final["tick"] == 40 and final["jobs"]["train/7"]["job.state"] == "PENDING"
    assert final["jobs"]["train/7"]["previous_state"] == "RUNNING"


def test_values_json_cannot_hold(tmp_path: Path) -> None:
    """NaN and infinity become null, other objects their text, so the file is strict JSON."""
    target = tmp_path / "state.json"
    report = TickReport(tick=1, now=5.0, duration=0.0, instances={
        "a/1": {"job.state": "RUNNING", "progress.pct": float("nan"),
                "job.elapsed": float("inf"), "job.labels": {"k": Path("/w")},
                "job.workdir": Path("/w/run")}},
        run={}, fired=[], events=[], run_id=1)
    StateFileWriter(target, ("job.state", "progress.pct", "job.elapsed", "job.labels",
                             "job.workdir"), "r")(report)
    entry = json.loads(target.read_text(encoding="utf-8"))["jobs"]["a/1"]
    assert entry["progress.pct"] is None and entry["job.elapsed"] is None
    assert entry["job.labels"] == {"k": str(Path("/w"))}
    assert entry["job.workdir"] == str(Path("/w/run"))


def _doc(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def test_a_run_writes_every_five_seconds_and_its_last_tick(tmp_path: Path) -> None:
    """At 1 s ticks the file is written on the first tick and then every 5 s, at once on the
    tick where every job has ended, and `flush` at the end of a run writes a tick the
    cadence held back; state changes between two writes still count."""
    target = tmp_path / "state.json"
    writer = StateFileWriter(target, ("job.state",), "r", every=1.0, min_gap=5.0)
    written = []
    for tick in range(12):
        writer(_report(tick, 3, "PENDING" if tick < 2 else "RUNNING"))
        written.append(_doc(target)["tick"])
    assert written == [0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 10, 10]
    assert writer.writes == 3
    entry = _doc(target)["jobs"]["train/1"]
    assert (entry["previous_state"], entry["state_since"]) == ("PENDING", 1002.0)
    done = _report(12, 3, "COMPLETED")
    done.run["run.all_terminal"] = True
    writer(done)
    assert _doc(target)["tick"] == 12 and writer.writes == 4
    writer.flush()  # nothing held back: nothing written
    assert writer.writes == 4
    writer(_report(13, 3, "RUNNING"))
    assert _doc(target)["tick"] == 12
    writer.flush()
    assert _doc(target)["tick"] == 13 and writer.writes == 5


def test_ticks_five_seconds_apart_are_all_written(tmp_path: Path) -> None:
    """With `every: 5s` or more, each tick is written, even when ticks drift a little early."""
    target = tmp_path / "state.json"
    writer = StateFileWriter(target, ("job.state",), "r", every=30.0, min_gap=5.0)
    for tick, now in enumerate((0.0, 29.9, 60.0, 89.95)):
        report = _report(tick, 1, "RUNNING")
        writer(TickReport(tick=tick, now=now, duration=0.0, instances=report.instances,
                          run=report.run, fired=[], events=[], run_id=1))
    assert writer.writes == 4


def test_an_interrupted_run_leaves_its_last_tick(tmp_path: Path) -> None:
    """A run that ends before its jobs do (here a tick limit) writes its last tick at the
    end, even when the cadence had held it back."""
    from rulesmon.config.loader import load_text
    from rulesmon.engine import Engine
    from rulesmon.testing import NullLog

    class Probe:
        name = "fake"

        def start(self, ctx: Any) -> None:
            return None

        def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
            return {"train/1": {"job.key": "train", "job.id": "1", "job.state": "RUNNING",
                                "job.terminal": False}}

        def close(self) -> None:
            return None

    text = ("version: 1\nname: cut\nevery: 0.05s\nstate_file: s.json\njobs:\n"
            "  train:\n    local: {command: [\"true\"]}\n")
    engine = Engine(load_text(text, str(tmp_path / "r.yaml")), state_path=tmp_path / "s.db",
                    log=NullLog(), probes=[Probe()])
    try:
        engine.run(max_ticks=3)
    finally:
        engine.close()
    doc = _doc(tmp_path / "s.json")
    assert doc["tick"] == 3 and doc["jobs"]["train/1"]["job.state"] == "RUNNING"


def test_lint_checks_the_state_file(tmp_path: Path) -> None:
    """Lint reports a misspelt key, a field that is not a fact name and an unknown fact,
    each at its line and column."""
    cases = {
        "typo.yaml": ("state_file: {paht: s.json}\n", "RM201"),
        "shape.yaml": ("state_file: {path: s.json, fields: ['not a fact']}\n", "RM211"),
        "unknown.yaml": ("state_file: {path: s.json, fields: [job.stat]}\n", "RM401"),
    }
    for name, (text, code) in cases.items():
        path = tmp_path / name
        path.write_text("version: 1\nname: lint\njobs:\n  a:\n    slurm: {ids: [1]}\n" + text,
                        encoding="utf-8")
        result = run_cli("lint", str(path), timeout=60)
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert f"{path}:6:" in result.stdout and code in result.stdout, (name, result.stdout)
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nname: lint\njobs:\n  a:\n    slurm: {ids: [1]}\n"
                    "state_file: {path: s.json, fields: [job.state, job.accounted]}\n",
                    encoding="utf-8")
    result = run_cli("lint", "--strict", str(good), timeout=60)
    assert result.returncode == 0, result.stdout
