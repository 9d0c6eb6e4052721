"""One `rulesmon run` per state file: a second refuses at once, a killed one's lock is taken.

Every test runs real `rulesmon run` processes on one state database, with a ruleset that
launches one local worker; each launch leaves a file named after the worker's pid, so the
launches are counted from the outside. Waits poll for what can be observed (a launch file, a
process's exit, a row); their deadlines only bound a hang.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.reliability.conftest import Procs, db_rows, wait_for

WORKER = """\
import os, sys, time
from pathlib import Path
Path(sys.argv[1], f"launched-{os.getpid()}").write_text("")
time.sleep(600)
"""

RULESET = """\
version: 1
name: locked
every: 0.2s
jobs:
  train:
    local:
      command: "{python} {folder}/worker.py {folder}/launches"
      workers: 1
rules:
  - name: worker-up
    when: job.state == "RUNNING"
    do: [log]
"""


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "worker.py").write_text(WORKER, encoding="utf-8")
    (tmp_path / "launches").mkdir()
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text(RULESET.format(python=sys.executable, folder=tmp_path),
                       encoding="utf-8")
    return ruleset, tmp_path / "state.db"


def _run(procs: Procs, ruleset: Path, db: Path, *extra: str) -> subprocess.Popen[bytes]:
    return procs.spawn([sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state",
                        str(db), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       cwd=ruleset.parent)


def _launches(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "launches").iterdir())


def _refused(proc: subprocess.Popen[bytes]) -> str:
    """The stderr of a run that must have refused: exit 2 and one line, no traceback."""
    _out, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text
    return text


def test_second_run_on_the_same_state_refuses_naming_the_holder(tmp_path: Path,
                                                                 procs: Procs) -> None:
    """A second run on a state file in use exits 2 with one line naming the first run's pid,
    host and start, and launches nothing."""
    import socket

    ruleset, db = _setup(tmp_path)
    first = _run(procs, ruleset, db)
    wait_for(lambda: len(_launches(tmp_path)) == 1, what="the first run's launch")
    second = _run(procs, ruleset, db)
    text = _refused(second)
    assert f"state state.db is in use by rulesmon pid {first.pid} on " \
           f"{socket.gethostname()} since " in text
    assert "give this run its own --state" in text
    assert first.poll() is None
    assert len(_launches(tmp_path)) == 1
    assert len(db_rows(db, "SELECT id FROM runs")) == 1  # the refused run recorded nothing


def test_views_and_dry_run_do_not_need_the_lock(tmp_path: Path, procs: Procs) -> None:
    """While a run holds the state, history, silence list and a dry run still work."""
    ruleset, db = _setup(tmp_path)
    _run(procs, ruleset, db)
    wait_for(lambda: len(_launches(tmp_path)) == 1, what="the run's launch")
    for argv in (["history", "--db", str(db)], ["silence", "list", str(ruleset), "--state",
                                                 str(db)],
                 ["run", str(ruleset), "--state", str(db), "--dry-run", "--once"]):
        done = subprocess.run([sys.executable, "-m", "rulesmon", *argv], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path, check=False)
        assert done.returncode == 0, (argv, done.stderr)
        assert "in use" not in done.stderr
    assert len(_launches(tmp_path)) == 1


def test_lock_of_a_killed_run_is_taken_over(tmp_path: Path, procs: Procs) -> None:
    """After kill -9 of the run holding the state, the next run takes the lock and runs,
    though the worker the killed run launched still runs (it never holds the lock)."""
    import psutil

    ruleset, db = _setup(tmp_path)
    first = _run(procs, ruleset, db)
    wait_for(lambda: len(_launches(tmp_path)) == 1, what="the first run's launch")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    worker = int(_launches(tmp_path)[0].name.split("-", 1)[1])
    assert psutil.pid_exists(worker)
    second = _run(procs, ruleset, db, "--once")
    _out, err = second.communicate(timeout=120)
    assert second.returncode != 2, err.decode()
    assert "in use" not in err.decode()
    assert len(db_rows(db, "SELECT id FROM runs")) == 2


def test_two_runs_started_together_exactly_one_runs(tmp_path: Path, procs: Procs) -> None:
    """Of two runs started at the same moment on one state, one refuses and one launches."""
    ruleset, db = _setup(tmp_path)
    both = [_run(procs, ruleset, db), _run(procs, ruleset, db)]
    wait_for(lambda: any(p.poll() is not None for p in both), timeout=120,
             what="one of the two runs to refuse")
    loser = next(p for p in both if p.poll() is not None)
    winner = next(p for p in both if p is not loser)
    assert f"in use by rulesmon pid {winner.pid}" in _refused(loser)
    wait_for(lambda: len(_launches(tmp_path)) >= 1, what="the winner's launch")
    assert winner.poll() is None
    assert len(_launches(tmp_path)) == 1
    assert len(db_rows(db, "SELECT id FROM runs")) == 1
