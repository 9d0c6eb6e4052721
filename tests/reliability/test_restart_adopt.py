"""A restart is normal: real `rulesmon run` processes killed with SIGKILL at chosen points,
restarted on the same state file, with real worker processes (issue 15 items 1, 2, 7)."""

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
from typing import Any

import psutil
import pytest

#: A worker that says it started (a file named after its pid), waits for its go file (`go`
#: unless named), then exits with the code it was given.
WORKER = """\
import os, pathlib, sys, time
folder = pathlib.Path(sys.argv[1])
(folder / f"started.{os.getpid()}").write_text("")
go = folder / (sys.argv[3] if len(sys.argv) > 3 else "go")
while not go.exists():
    time.sleep(0.05)
sys.exit(int(sys.argv[2]))
"""


class Scene:
    """A scratch folder with a ruleset, its state file, and every process the test started
    (rulesmon runs, watched processes, and the workers rulesmon launched for it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "state.db"
        self.registry = root / "state.local.db"
        self.ruleset = root / "r.yaml"
        (root / "worker.py").write_text(WORKER, encoding="utf-8")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.runs = 0

    def write(self, text: str) -> None:
        self.ruleset.write_text(text, encoding="utf-8")

    def worker(self, code: int = 0) -> str:
        """A YAML flow list launching the worker."""
        return f'["{sys.executable}", "{self.root / "worker.py"}", "{self.root}", "{code}"]'

    def spawn_worker(self, code: int = 0, go: str = "go") -> int:
        """A worker that is nobody's child here (a shell starts it and exits), as a job
        started outside rulesmon is: its end is never a zombie of the test's."""
        out = subprocess.run(["sh", "-c", '"$0" "$1" "$2" "$3" "$4" >/dev/null 2>&1 & echo $!',
                              sys.executable, str(self.root / "worker.py"), str(self.root),
                              str(code), go], capture_output=True, text=True, check=True)
        pid = int(out.stdout.strip())
        wait_for(lambda: pid in self.started(), "the watched worker to start")
        return pid

    def rulesmon(self, *args: str) -> subprocess.Popen[bytes]:
        self.runs += 1
        out = (self.root / f"run{self.runs}.out").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "run", str(self.ruleset),
                                 "--state", str(self.db), *args], stdout=out,
                                stderr=subprocess.STDOUT, cwd=self.root)
        out.close()
        self.procs.append(proc)
        return proc

    def output(self, run: int) -> str:
        return (self.root / f"run{run}.out").read_text(encoding="utf-8", errors="replace")

    def started(self) -> list[int]:
        """Pids of every worker that ever started (launched by rulesmon or by the test)."""
        return sorted(int(p.name.split(".")[1]) for p in self.root.glob("started.*"))

    def go(self) -> None:
        (self.root / "go").write_text("")

    def rows(self, sql: str, db: Path | None = None) -> list[tuple[Any, ...]]:
        path = db or self.db
        if not path.exists():
            return []
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error:
            return []
        try:
            return list(con.execute(sql))
        except sqlite3.Error:
            return []
        finally:
            con.close()

    def events(self, kind: str, rule: str) -> list[tuple[Any, ...]]:
        return self.rows(f"SELECT instance, title, body FROM events WHERE kind = '{kind}' "
                         f"AND rule = '{rule}' ORDER BY id")

    def running(self) -> list[str]:
        """Instances the history shows running (what a tick committed)."""
        return sorted(i for (i,) in self.rows("SELECT instance FROM jobs WHERE status = "
                                               "'running'"))

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        for pid in self.started():  # workers rulesmon launched for this test
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    s = Scene(tmp_path)
    try:
        yield s
    finally:
        s.cleanup()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until `cond` holds; the deadline only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def finish(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    return proc.wait(timeout=timeout)


ENDED_RULE = """
rules:
  - name: job-ended
    when: job.terminal
    message: "state={{ job.state }} raw={{ job.raw_state }} outcome={{ job.outcome }}"
    do: [log]
"""


def test_watched_job_that_ended_while_down_is_reported_ended(scene: Scene) -> None:
    """A pid_file job seen alive before a kill -9 and gone at the restart ends with "ended
    while rulesmon was down" (outcome unknown, never UNKNOWN), its ended alert fires, and the
    run ends."""
    worker = scene.spawn_worker(0)
    (scene.root / "w.pid").write_text(f"{worker}\n")
    scene.write("version: 1\nname: watch\nevery: 0.2s\njobs:\n  w:\n    local:\n"
                "      pid_file: w.pid\n" + ENDED_RULE)
    first = scene.rulesmon()
    wait_for(lambda: scene.running() == [f"w/{worker}"], "the watched pid seen running")
    kill9(first)
    scene.go()
    wait_for(lambda: not psutil.pid_exists(worker), "the worker to end while rulesmon is down")
    second = scene.rulesmon()
    assert finish(second) == 3, scene.output(2)  # ended, outcome unknown: not a success
    assert "Succeeded: 0, failed: 0, outcome unknown: 1" in scene.output(2)
    fired = scene.events("fire", "job-ended")
    assert len(fired) == 1
    assert fired[0][0] == f"w/{worker}"
    assert "state=COMPLETED raw=ended while rulesmon was down outcome=unknown" in fired[0][2]
    states = [s for (s,) in scene.rows("SELECT state FROM job_states ORDER BY t")]
    assert "UNKNOWN" not in states


def test_job_recorded_terminal_keeps_its_state_across_kill9(scene: Scene) -> None:
    """A watched job already COMPLETED before a kill -9 stays COMPLETED after the restart
    (no COMPLETED→UNKNOWN, its ended alert not sent twice) while another job still runs."""
    done = scene.spawn_worker(0)
    (scene.root / "done.pid").write_text(f"{done}\n")
    other = scene.spawn_worker(0, go="go-other")
    scene.write("version: 1\nname: watch2\nevery: 0.2s\njobs:\n  done:\n    local:\n"
                f"      pid_file: done.pid\n  other:\n    local:\n      pids: [{other}]\n"
                + ENDED_RULE)
    first = scene.rulesmon()
    wait_for(lambda: len(scene.running()) == 2, "both jobs seen running")
    scene.go()
    wait_for(lambda: len(scene.events("fire", "job-ended")) == 1, "the first job's end")
    kill9(first)
    second = scene.rulesmon()
    wait_for(lambda: scene.rows("SELECT count(*) FROM runs WHERE id = 2 AND ticks >= 3")
             == [(1,)], "three ticks of the restarted run")
    (scene.root / "go-other").write_text("")
    assert finish(second) == 0, scene.output(2)
    fired = scene.events("fire", "job-ended")
    assert [i for i, _t, _b in fired] == [f"done/{done}", f"other/{other}"]
    assert "state=COMPLETED" in fired[0][2]  # "exited 0" when seen as init's zombie
    done_states = [s for (s,) in scene.rows(
        f"SELECT s.state FROM job_states s JOIN jobs j ON j.id = s.job "
        f"WHERE j.instance = 'done/{done}' ORDER BY s.t")]
    assert done_states == ["RUNNING", "COMPLETED"]


LAUNCHED = """
rules:
  - name: worker-failed
    when: job.outcome == "failed"
    message: "exit {{ job.exit_code }} signal {{ job.signal }}"
    do: [log]
"""


def test_launched_workers_are_adopted_after_kill9_not_launched_again(scene: Scene) -> None:
    """After kill -9, a restart adopts the two running workers by pid and start time
    (launches none), follows them to their end (outcome unknown: no longer its children),
    and leaves no history row `running`."""
    scene.write("version: 1\nname: launch\nevery: 0.2s\njobs:\n  train:\n    local:\n"
                f"      command: {scene.worker(0)}\n      workers: 2\n" + LAUNCHED)
    first = scene.rulesmon()
    wait_for(lambda: len(scene.started()) == 2 and len(scene.running()) == 2,
             "two workers launched and seen running")
    pids = scene.started()
    kill9(first)
    second = scene.rulesmon()
    wait_for(lambda: scene.rows("SELECT count(*) FROM runs WHERE id = 2 AND ticks >= 3")
             == [(1,)], "three ticks of the restarted run")
    assert scene.started() == pids  # nothing launched again
    scene.go()
    assert finish(second) == 0, scene.output(2)
    assert scene.started() == pids
    rows = scene.rows("SELECT job_id, status FROM jobs ORDER BY job_id")
    assert sorted(int(j) for j, _s in rows) == pids  # the same rows, continued
    assert all(status != "running" for _j, status in rows)
    assert scene.events("fire", "worker-failed") == []  # an unknown exit is not a failure


def test_a_workers_exit_code_recorded_before_kill9_is_kept(scene: Scene) -> None:
    """A launched worker that exited 3 before a kill -9 stays FAILED with exit code 3 after
    the restart: its alert is neither sent again nor resolved, and the run ends with 1; the
    adopted worker's exit code is never a wrong one."""
    command = (f'["{sys.executable}", "{scene.root / "worker.py"}", "{scene.root}", "3", '
               '"go-{{ worker }}"]')
    scene.write("version: 1\nname: kept\nevery: 0.2s\njobs:\n  train:\n    local:\n"
                f"      command: {command}\n      workers: 2\n" + LAUNCHED)
    first = scene.rulesmon()
    wait_for(lambda: len(scene.started()) == 2, "two workers started")
    (scene.root / "go-0").write_text("")
    wait_for(lambda: len(scene.events("fire", "worker-failed")) == 1, "worker 0's failure")
    kill9(first)
    second = scene.rulesmon()
    wait_for(lambda: scene.rows("SELECT count(*) FROM runs WHERE id = 2 AND ticks >= 3")
             == [(1,)], "three ticks of the restarted run")
    (scene.root / "go-1").write_text("")
    assert finish(second) == 1, scene.output(2)
    assert len(scene.started()) == 2
    fired = [(i, b) for i, _t, b in scene.events("fire", "worker-failed")]
    assert fired[0] == ("train/0", "exit 3 signal 0")
    # worker 1 ended adopted: its exit code is known only when /proc showed it as a zombie
    # (init had not reaped it yet); then it is the true one, else unknown and not a failure
    assert fired[1:] in ([], [("train/1", "exit 3 signal 0")])
    assert scene.events("resolve", "worker-failed") == []


def test_once_twice_adopts_the_first_calls_workers(scene: Scene) -> None:
    """`rulesmon run --once` called twice launches the workers once: the second call adopts
    them; a plain run then follows them to their end."""
    scene.write("version: 1\nname: once\nevery: 0.2s\njobs:\n  train:\n    local:\n"
                f"      command: {scene.worker(0)}\n      workers: 3\n" + LAUNCHED)
    assert finish(scene.rulesmon("--once")) == 0, scene.output(1)
    wait_for(lambda: len(scene.started()) == 3, "three workers started")
    pids = scene.started()
    assert finish(scene.rulesmon("--once")) == 0, scene.output(2)
    assert scene.started() == pids
    assert all(psutil.pid_exists(p) for p in pids)
    last = scene.rulesmon()
    wait_for(lambda: scene.rows("SELECT count(*) FROM runs WHERE id = 3 AND ticks >= 2")
             == [(1,)], "two ticks of the third run")
    scene.go()
    assert finish(last) == 0, scene.output(3)
    assert scene.started() == pids


def test_dry_run_with_launched_jobs_ends(scene: Scene) -> None:
    """`rulesmon run --dry-run` on a ruleset with launched jobs launches nothing and ends
    after its first tick, its workers shown PENDING and not ended: a rule on the end of the
    run does not fire."""
    scene.write("version: 1\nname: dry\nevery: 0.2s\njobs:\n  train:\n    local:\n"
                f"      command: {scene.worker(0)}\n      workers: 2\n" + LAUNCHED +
                "  - {name: all-done, scope: run, when: run.all_terminal, do: [log]}\n")
    assert finish(scene.rulesmon("--dry-run"), timeout=60) == 0, scene.output(1)
    assert scene.started() == []
    out = scene.output(1)
    assert "Result: 0 PENDING, 2 RUNNING" not in out and "2 PENDING" in out, out
    assert "dry_run_one_tick" in out and "all-done" not in out, out


def test_rerun_of_a_finished_ruleset_is_a_new_run_without_stale_resolves(scene: Scene) -> None:
    """A run that ended with every job terminal is over: rerunning the ruleset launches again,
    retires the old alert silently (no "[RESOLVED] exit unknown"), and fires anew."""
    scene.write("version: 1\nname: rerun\nevery: 0.2s\njobs:\n  train:\n    local:\n"
                f"      command: {scene.worker(3)}\n" + LAUNCHED)
    scene.go()
    assert finish(scene.rulesmon()) == 1, scene.output(1)
    assert len(scene.started()) == 1
    assert [b for _i, _t, b in scene.events("fire", "worker-failed")] == ["exit 3 signal 0"]
    (scene.root / "go").unlink()
    second = scene.rulesmon()
    wait_for(lambda: len(scene.started()) == 2, "the worker launched again")
    scene.go()
    assert finish(second) == 1, scene.output(2)
    assert scene.events("resolve", "worker-failed") == []
    assert len(scene.events("retired", "worker-failed")) == 1
    assert [b for _i, _t, b in scene.events("fire", "worker-failed")] == \
        ["exit 3 signal 0", "exit 3 signal 0"]


# --- the probe itself, against records a killed run left -------------------------------------


def _probe(scene: Scene, jobs: str) -> tuple[Any, Any]:
    from rulesmon.config.loader import load_text
    from rulesmon.probes.local import LocalProbe

    rs = load_text("version: 1\nname: probe\njobs:\n" + jobs, base=scene.root).ruleset
    probe = LocalProbe(rs, scene.root)
    probe.use_state(scene.db)
    return probe, rs


def _ctx(scene: Scene, rs: Any) -> Any:
    from rulesmon.probes.base import TickContext

    return TickContext(now=time.time(), ruleset=rs, base_dir=scene.root)


def test_a_reused_pid_is_not_the_recorded_process(scene: Scene) -> None:
    """A recorded watched pid that now names a process with another start time is a reused
    pid: the job ended while rulesmon was down, and the new process is not followed."""
    from rulesmon.probes.local_state import Registry

    other = scene.spawn_worker(0)
    created = psutil.Process(other).create_time()
    registry = Registry(scene.registry)
    registry.proc("w", str(other), 0, other, created - 50.0, created - 50.0, {})
    registry.close()
    probe, rs = _probe(scene, f"  w:\n    local:\n      pids: [{other}]\n")
    facts = probe.collect(_ctx(scene, rs))[f"w/{other}"]
    probe.close()
    assert facts["job.state"] == "COMPLETED"
    assert facts["job.raw_state"] == "ended while rulesmon was down"
    assert facts["job.outcome"] == "unknown"
    assert "job.exit_code" not in facts
    assert "job.end_time" not in facts
    assert psutil.pid_exists(other)


def test_a_worker_spawned_before_its_record_is_found_by_its_marker(scene: Scene) -> None:
    """A kill between a worker's spawn and its record cannot cause a second launch: the
    restart finds the worker by the launch marker in its environment and adopts it."""
    from rulesmon.probes.local_state import MARKER, Registry

    registry = Registry(scene.registry)
    registry.launch("train", "tok123", time.time())
    registry.close()
    env = dict(os.environ, **{MARKER: "tok123:0"})
    proc = subprocess.Popen([sys.executable, str(scene.root / "worker.py"), str(scene.root),
                             "0"], env=env, start_new_session=True)
    scene.procs.append(proc)
    wait_for(lambda: proc.pid in scene.started(), "the worker to start")
    probe, rs = _probe(scene, f"  train:\n    local:\n      command: {scene.worker(0)}\n")
    probe.start(_ctx(scene, rs))
    facts = probe.collect(_ctx(scene, rs))["train/0"]
    assert facts["job.pid"] == proc.pid
    assert facts["job.state"] == "RUNNING"
    assert scene.started() == [proc.pid]
    probe.terminate(grace=5.0)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    wait_for(lambda: probe.collect(_ctx(scene, rs))["train/0"]["job.state"] == "CANCELLED",
             "the adopted worker stopped by rulesmon")
    probe.close()
