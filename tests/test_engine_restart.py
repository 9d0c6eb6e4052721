"""`rulesmon run` survives kill -9 and signals: persisted state resumes exactly."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

RULESET = """\
version: 1
name: restart
every: 0.5s
jobs:
  watch:
    files:
      flag: {glob: "flag*"}
rules:
  - name: flag-up
    when: files.flag.count > 0
    for: 2s
    do: [log]
"""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path, Callable[[], subprocess.Popen[bytes]]]]:
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text(RULESET, encoding="utf-8")
    db = tmp_path / "state.db"
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "run", str(ruleset),
                                 "--state", str(db)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield tmp_path, db, start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    con = sqlite3.connect(str(db), timeout=5)
    try:
        return list(con.execute(sql))
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _wait(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _events(db: Path, kind: str) -> list[tuple[object, ...]]:
    return _rows(db, f"SELECT t FROM events WHERE kind = '{kind}' AND rule = 'flag-up'")


def test_firing_survives_kill9_and_resolves_after_recovery_while_down(setup) -> None:  # type: ignore[no-untyped-def]
    """A firing alert stays firing across kill -9 (no second notification), and a condition
    that cleared while rulesmon was down resolves on the next run."""
    folder, db, start = setup
    (folder / "flag1").write_text("x")
    proc = start()
    _wait(lambda: len(_events(db, "fire")) == 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = start()
    _wait(lambda: len(_rows(db, "SELECT id FROM runs WHERE ticks >= 4")) >= 1
          and len(_rows(db, "SELECT id FROM runs")) == 2
          and _rows(db, "SELECT ticks FROM runs ORDER BY id DESC LIMIT 1")[0][0] >= 4)  # type: ignore[operator]
    assert len(_events(db, "fire")) == 1
    assert _rows(db, "SELECT status FROM alerts WHERE rule = 'flag-up'") == [("firing",)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (folder / "flag1").unlink()
    proc = start()
    _wait(lambda: len(_events(db, "resolve")) == 1)
    assert len(_events(db, "fire")) == 1


def test_downtime_does_not_count_toward_for(setup) -> None:  # type: ignore[no-untyped-def]
    """Time held before a kill -9 is kept, but the time rulesmon was down is not credited."""
    folder, db, start = setup
    (folder / "flag1").write_text("x")
    proc = start()
    _wait(lambda: bool(_rows(db, "SELECT state FROM alerts WHERE status = 'pending'"))
          and json.loads(str(_rows(db, "SELECT state FROM alerts")[0][0]))["held_for"] >= 0.4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    held = json.loads(str(_rows(db, "SELECT state FROM alerts")[0][0]))["held_for"]
    assert held < 2.0 and not _events(db, "fire")
    time.sleep(3.0)  # longer than `for:`: must not count
    restarted = time.time()
    proc = start()
    _wait(lambda: len(_events(db, "fire")) == 1)
    fired_at = float(_events(db, "fire")[0][0])  # type: ignore[arg-type]
    # it needed the remaining (2 - held) seconds of running time, not zero
    assert fired_at - restarted >= (2.0 - held) - 0.1


def test_sigterm_flushes_and_exits_cleanly(setup) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM ends the run at once with exit code 143 and the run recorded as ended."""
    folder, db, start = setup
    proc = start()
    _wait(lambda: bool(_rows(db, "SELECT id FROM runs WHERE ticks >= 2")))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert _rows(db, "SELECT exit_code FROM runs") == [(143,)]
    del folder


UNKNOWN_RULESET = """\
version: 1
name: judged
every: 1s
jobs:
  train:
    slurm: {user: a}
rules:
  - name: bad-exit
    when: job.exit_code != 0
    do: [log]
"""


class _Scripted:
    """A source probe that returns the facts the test sets."""

    name = "slurm"

    def __init__(self) -> None:
        self.facts: dict[str, object] = {}

    def start(self, ctx: object) -> None:
        return None

    def collect(self, ctx: object) -> dict[str, dict[str, object]]:
        return {"train/1": {"job.key": "train", "job.source": "slurm", **self.facts}}

    def close(self) -> None:
        return None


def _engine(db: Path, probe: _Scripted):  # type: ignore[no-untyped-def]
    from rulesmon.config.loader import load_text
    from rulesmon.engine import Engine
    from rulesmon.testing import NullLog

    return Engine(load_text(UNKNOWN_RULESET), state_path=db, log=NullLog(), probes=[probe])


def _kinds(engine) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(e[1]) for e in reversed(engine.store.events()) if e[2] == "bad-exit"]


def test_an_alert_whose_facts_are_missing_after_a_restart_never_resolves(tmp_path: Path) -> None:
    """A firing alert resumed by a restart whose condition is unknown (its fact missing)
    stays firing, without a resolved message, until the fact is known again."""
    probe = _Scripted()
    probe.facts = {"job.state": "FAILED", "job.exit_code": 3}
    first = _engine(tmp_path / "s.db", probe)
    first.tick(1000.0)
    first.store.close()  # killed: the run never recorded its end
    probe.facts = {"job.state": "COMPLETED"}  # no exit code: unknown
    second = _engine(tmp_path / "s.db", probe)
    assert second.resume_plan == "resume"
    for i in range(5):
        second.tick(1010.0 + i)
    assert _kinds(second) == ["fire"]
    assert second.alerts["bad-exit"]["train/1"].status == "firing"
    probe.facts = {"job.state": "COMPLETED", "job.exit_code": 0}
    second.tick(1020.0)
    assert _kinds(second) == ["fire", "resolve"]
    second.close()


def test_a_rerun_after_a_finished_run_retires_old_alerts_silently(tmp_path: Path) -> None:
    """A run that ended with every job terminal is over: the next run retires its firing
    alert (a `retired` event, no resolved message) and a new firing notifies with a new id."""
    probe = _Scripted()
    probe.facts = {"job.state": "FAILED", "job.exit_code": 3}
    first = _engine(tmp_path / "s.db", probe)
    fired = first.tick(1000.0).fired
    first.store.end_run(first.run_id, 1001.0, 1, "", outcome="all jobs terminal")
    first.close()
    probe.facts = {"job.state": "RUNNING"}
    second = _engine(tmp_path / "s.db", probe)
    assert second.resume_plan == "new"
    second.tick(1010.0)
    assert _kinds(second) == ["fire", "retired"]
    probe.facts = {"job.state": "FAILED", "job.exit_code": 3}
    again = second.tick(1011.0).fired
    assert _kinds(second) == ["fire", "retired", "fire"]
    assert [n.id for n in again] != [n.id for n in fired]
    second.close()
