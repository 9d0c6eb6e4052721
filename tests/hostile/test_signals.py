"""SIGINT and SIGTERM end `rulesmon run` whatever its tick is doing, and stop its workers.

Each test starts a real `rulesmon run` (a subprocess) whose tick is really stuck: a scheduler
command that hangs, a backtracking regex holding the interpreter on the main thread, or one
holding it on a probe thread (where no Python code can run any more). The waits are generous
(30 s) so that a loaded machine cannot fail them; how fast the run ends is measured in
benchmarks/signals.py, not asserted here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]

#: a launched local worker that records its pid and then sleeps
WORKER = """\
  train:
    local:
      command: ["{python}", "-c",
                "import os, time; open('worker.pid', 'w').write(str(os.getpid())); time.sleep(300)"]
"""

HUNG_SQUEUE = """\
version: 1
name: hung-probe
every: 10m
jobs:
{worker}  evals:
    slurm: {{ids: [12345]}}
rules:
  - name: failed
    when: job.state == "FAILED"
    do: [log]
"""

#: the state of the worker's launch is all the rules look at
WATCH = """\
version: 1
name: {name}
every: {every}
jobs:
{worker}  flags:
    files:
      flag: {{glob: "flag*"}}
rules:
  - name: flag-up
    when: files.flag.count > 0
    do: [log]
"""

#: `rulesmon run` with one step of its tick replaced by a real backtracking regex in C
#: (Python's own `re`, whatever engine rulesets use): argv = where, marker, rulesmon args
STUCK_RUN = """\
import re, sys
from pathlib import Path

from rulesmon import engine
from rulesmon.cli import main
from rulesmon.probes.files import FilesProbe

where, marker = sys.argv[1], Path(sys.argv[2])

def stuck(*_args, **_kwargs):
    marker.write_text("stuck")
    re.match(r"((a+))+$", "a" * 64 + "!")  # 2**64 steps: it never ends by itself
    raise AssertionError("the regex ended")

if where == "main":  # on the engine's own (main) thread: a step of the tick
    engine.Engine._derive = stuck
else:  # on a probe thread, holding the interpreter's lock: no Python code runs any more
    FilesProbe.collect = stuck
main(sys.argv[3:], prog_name="rulesmon")
"""


def _until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start processes in tmp_path; whatever they left running is killed afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    for name in ("worker.pid", "squeue.pid"):  # the test's own helpers, if still there
        pid = _pid(tmp_path / name)
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _ruleset(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _worker() -> str:
    return WORKER.format(python=sys.executable)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_ends_a_run_stuck_waiting_for_a_hung_scheduler_command(
        tmp_path: Path, started: Callable[..., subprocess.Popen[str]], sig: int) -> None:
    """A signal ends a run whose tick waits for an squeue that hangs (probe timeout 120 s,
    command timeout 600 s) with 128+signal; its launched worker and the hung squeue are
    stopped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text(f'#!/bin/sh\necho $$ > "{tmp_path}/squeue.pid"\nexec sleep 300\n')
    squeue.chmod(0o755)
    ruleset = _ruleset(tmp_path, HUNG_SQUEUE.format(worker=_worker()))
    proc = started([sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state",
                    str(tmp_path / "s.db")],
                   env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                        "RULESMON_SLURM_TIMEOUT": "600"})
    _until(lambda: _pid(tmp_path / "squeue.pid") is not None
           and _pid(tmp_path / "worker.pid") is not None, "the worker and the hung squeue")
    worker = _pid(tmp_path / "worker.pid")
    assert worker is not None and _alive(worker)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "run_finished" in out + err and f"interrupted by signal {int(sig)}" in out + err
    _until(lambda: not _alive(worker), "the worker to be stopped")
    hung = _pid(tmp_path / "squeue.pid")  # the command rulesmon ran ends with it
    assert hung is not None
    _until(lambda: not _alive(hung), "the hung squeue to be stopped")
    con = sqlite3.connect(str(tmp_path / "s.db"))
    try:
        assert list(con.execute("SELECT exit_code FROM runs")) == [(128 + sig,)]
    finally:
        con.close()


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_cuts_a_backtracking_regex_on_the_engine_thread(
        tmp_path: Path, started: Callable[..., subprocess.Popen[str]], sig: int) -> None:
    """A signal ends a run whose tick is inside a backtracking regex on the engine's thread:
    the regex is cut off, the shutdown runs as usual (128+signal, the run recorded as
    ended), and the launched worker is stopped."""
    ruleset = _ruleset(tmp_path, WATCH.format(name="stuck-main", every="10m",
                                              worker=_worker()))
    marker = tmp_path / "stuck"
    proc = started([sys.executable, "-c", STUCK_RUN, "main", str(marker), "run",
                    str(ruleset), "--state", str(tmp_path / "s.db")])
    _until(lambda: marker.exists() and _pid(tmp_path / "worker.pid") is not None,
           "the stuck tick")
    worker = _pid(tmp_path / "worker.pid")
    assert worker is not None and _alive(worker)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert f"interrupted by signal {int(sig)}" in out + err
    _until(lambda: not _alive(worker), "the worker to be stopped")
    con = sqlite3.connect(str(tmp_path / "s.db"))
    try:
        assert list(con.execute("SELECT exit_code, ended IS NOT NULL FROM runs")) == \
            [(128 + sig, 1)]
    finally:
        con.close()


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_ends_a_run_whose_interpreter_is_held_by_a_probe_thread(
        tmp_path: Path, started: Callable[..., subprocess.Popen[str]], sig: int) -> None:
    """A signal ends a run even when a probe thread holds the interpreter in C code (a
    backtracking regex) so that no Python code can run: the watchdog process stops the
    launched worker and kills rulesmon (SIGKILL: the exit status is the only thing it cannot
    choose)."""
    ruleset = _ruleset(tmp_path, WATCH.format(name="stuck-probe", every="10m",
                                              worker=_worker()))
    marker = tmp_path / "stuck"
    proc = started([sys.executable, "-c", STUCK_RUN, "probe", str(marker), "run",
                    str(ruleset), "--state", str(tmp_path / "s.db")])
    _until(lambda: marker.exists() and _pid(tmp_path / "worker.pid") is not None,
           "the stuck tick")
    worker = _pid(tmp_path / "worker.pid")
    assert worker is not None and _alive(worker)
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _until(lambda: not _alive(worker), "the worker to be stopped")


def test_sigterm_ends_a_normal_run_cleanly_with_its_summary(
        tmp_path: Path, started: Callable[..., subprocess.Popen[str]]) -> None:
    """SIGTERM between ticks of a healthy run ends it as before: exit 143, the run_finished
    line and the STOPPED summary printed, the run recorded as ended, the worker stopped."""
    ruleset = _ruleset(tmp_path, WATCH.format(name="healthy", every="0.5s",
                                              worker=_worker()))
    db = tmp_path / "s.db"
    proc = started([sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state",
                    str(db)])

    def ticks() -> int:
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(str(db), timeout=5)
            try:
                return int(con.execute("SELECT max(ticks) FROM runs").fetchone()[0] or 0)
            finally:
                con.close()
        return 0

    _until(lambda: ticks() >= 2 and _pid(tmp_path / "worker.pid") is not None, "two ticks")
    worker = _pid(tmp_path / "worker.pid")
    assert worker is not None
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err[-2000:]
    assert "run_finished" in out + err and "interrupted by signal 15" in out + err
    assert "STOPPED: monitoring ended before every job finished (exit code 143)" in out
    _until(lambda: not _alive(worker), "the worker to be stopped")
    con = sqlite3.connect(str(db))
    try:
        rows = list(con.execute("SELECT exit_code, ended IS NOT NULL, ticks >= 2 FROM runs"))
    finally:
        con.close()
    assert rows == [(143, 1, 1)]


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_ends_a_live_dashboard_run_stuck_on_a_hung_probe(tmp_path: Path,
                                                                 sig: int) -> None:
    """`run --live` in a terminal, its tick waiting for a hung squeue, ends on a signal with
    128+signal, leaves the alternate screen, and stops its launched worker."""
    from tests.test_display_live import _read, in_pty

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text(f'#!/bin/sh\necho $$ > "{tmp_path}/squeue.pid"\nexec sleep 300\n')
    squeue.chmod(0o755)
    ruleset = _ruleset(tmp_path, HUNG_SQUEUE.format(worker=_worker()))
    argv = ["env", f"PATH={bin_dir}{os.pathsep}{os.environ['PATH']}",
            "RULESMON_SLURM_TIMEOUT=600", sys.executable, "-m", "rulesmon", "run", "--live",
            str(ruleset), "--state", str(tmp_path / "s.db")]
    try:
        with in_pty(argv, tmp_path) as (proc, master):
            out = b""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                    _pid(tmp_path / "squeue.pid") is None
                    or _pid(tmp_path / "worker.pid") is None or b"\x1b[?1049h" not in out):
                out += _read(master, time.monotonic() + 0.2)
            worker = _pid(tmp_path / "worker.pid")
            assert worker is not None and _alive(worker)
            proc.send_signal(sig)
            while proc.poll() is None and time.monotonic() < deadline + 30:
                out += _read(master, time.monotonic() + 0.2)
            out += _read(master, time.monotonic() + 0.5)
            code = proc.wait(timeout=10)
        assert code == 128 + sig, out[-2000:]
        assert b"\x1b[?1049l" in out  # the terminal is given back
        _until(lambda: not _alive(worker), "the worker to be stopped")
    finally:
        for name in ("worker.pid", "squeue.pid"):
            pid = _pid(tmp_path / name)
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
