"""The local probe against real processes: launching, watching, ends, preflight, dry run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext
from rulesmon.probes.local import LocalProbe

FIXTURES = Path(__file__).parent / "fixtures" / "local"
WORKER = str(FIXTURES / "worker.py")
PY = sys.executable


def ruleset(jobs: str, base: Path) -> Any:
    """A ruleset through the real loader, with `jobs:` given as YAML text."""
    text = "version: 1\nname: local-probe-test\njobs:\n" + jobs
    return load_text(text, base=base).ruleset


def worker_cmd(*args: str) -> str:
    """A YAML flow list launching the test worker with these arguments."""
    return json.dumps([PY, WORKER, "--worker", "{{ worker }}", *args])


def ctx(rs: Any, base: Path, *, dry_run: bool = False) -> TickContext:
    return TickContext(now=time.time(), ruleset=rs, base_dir=base, dry_run=dry_run)


def collect_until(probe: LocalProbe, rs: Any, base: Path,
                  done: Callable[[dict[str, dict[str, Any]]], bool],
                  timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """Collect every 50 ms until `done(facts)` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        facts = probe.collect(ctx(rs, base))
        if done(facts):
            return facts
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached: {facts}")
        time.sleep(0.05)


def all_terminal(facts: dict[str, dict[str, Any]]) -> bool:
    return all(f["job.terminal"] for f in facts.values())


@pytest.fixture
def probes() -> Iterator[list[LocalProbe]]:
    """Probes created by a test; their launched workers are terminated afterwards."""
    made: list[LocalProbe] = []
    try:
        yield made
    finally:
        for probe in made:
            probe.terminate(grace=1.0)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start helper processes; each is killed by pid and reaped afterwards."""
    started: list[subprocess.Popen[str]] = []

    def _spawn(*argv: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    try:
        yield _spawn
    finally:
        for proc in started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()


def sleeper(marker: str = "") -> list[str]:
    """argv of a python process that sleeps for 30 s, with an optional marker argument."""
    return [PY, "-c", "import time; time.sleep(30)", *([marker] if marker else [])]


def test_launches_workers_and_reports_success(tmp_path: Path, probes: list[LocalProbe]) -> None:
    """Three launched workers get their own env and log, pass launch checks, and complete."""
    rs = ruleset(f"""
  embed:
    local:
      command: {worker_cmd("--items", "10", "--sleep", "0.05")}
      workers: 3
      env: {{CUDA_VISIBLE_DEVICES: "{{{{ worker }}}}"}}
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    probes.append(probe)
    probe.start(ctx(rs, tmp_path))
    facts = probe.collect(ctx(rs, tmp_path))
    assert sorted(facts) == ["embed/0", "embed/1", "embed/2"]
    for i in range(3):
        f = facts[f"embed/{i}"]
        assert f["job.state"] == "RUNNING"
        assert f["job.source"] == "local"
        assert f["job.id"] == str(f["job.pid"])
        assert psutil.pid_exists(f["job.pid"])
        assert f["worker.index"] == i
        assert f["worker.gpu"] == i
        assert f["job.launch_ok"] is True
        assert f["job.workers"] == 3
        assert f["worker.log"] == str(tmp_path / "logs" / f"embed_{i}.log")
    facts = collect_until(probe, rs, tmp_path, all_terminal)
    for i in range(3):
        f = facts[f"embed/{i}"]
        assert f["job.state"] == "COMPLETED"
        assert f["job.exit_code"] == 0
        assert f["job.succeeded"] is True
        assert f["job.outcome"] == "success"
        assert f["worker.state"] == "exited"
        assert f["job.workers_running"] == 0
        log = (tmp_path / "logs" / f"embed_{i}.log").read_text()
        assert f"gpu={i}\n" in log
        assert "Processed 10/10 items" in log


def test_classifies_exit_code_sigkill_and_sigterm(tmp_path: Path,
                                                  probes: list[LocalProbe]) -> None:
    """Exit 3 is nonzero_exit, SIGKILL is FAILED with diagnosis killed (oom needs evidence),
    SIGTERM is CANCELLED."""
    rs = ruleset(f"""
  bad:
    local:
      command: {worker_cmd("--items", "0", "--exit", "3")}
  killed:
    local:
      command: {worker_cmd("--items", "600")}
  stopped:
    local:
      command: {worker_cmd("--items", "600")}
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    probes.append(probe)
    probe.start(ctx(rs, tmp_path))
    facts = probe.collect(ctx(rs, tmp_path))
    os.kill(facts["killed/0"]["job.pid"], signal.SIGKILL)
    os.kill(facts["stopped/0"]["job.pid"], signal.SIGTERM)
    facts = collect_until(probe, rs, tmp_path, all_terminal)
    bad, killed, stopped = facts["bad/0"], facts["killed/0"], facts["stopped/0"]
    assert (bad["job.state"], bad["job.exit_code"], bad["job.diagnosis"]) == \
        ("FAILED", 3, "nonzero_exit")
    assert bad["job.succeeded"] is False
    assert (killed["job.state"], killed["job.signal"], killed["job.diagnosis"]) == \
        ("FAILED", 9, "killed")
    assert killed["worker.state"] == "killed"
    assert (stopped["job.state"], stopped["job.signal"], stopped["job.outcome"]) == \
        ("CANCELLED", 15, "cancelled")


def test_watched_zombie_is_failed(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    """A watched child that exited but was never reaped is a zombie worker and a FAILED job."""
    parent = spawn(PY, str(FIXTURES / "zombie_parent.py"), "30")
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 5
    while psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    rs = ruleset(f"""
  orphan:
    local:
      pids: [{child}]
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    f = probe.collect(ctx(rs, tmp_path))[f"orphan/{child}"]
    assert f["worker.state"] == "zombie"
    assert f["job.state"] == "FAILED"
    assert f["job.diagnosis"] == "zombie"
    assert f["job.terminal"] is True
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=5)
    again = probe.collect(ctx(rs, tmp_path))[f"orphan/{child}"]
    assert again["job.state"] == "FAILED"


def test_pid_file_watching(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    """A pid file is re-read each tick; a missing or garbage file gives an instance without a
    pid, and a watched process that ends is COMPLETED with an unknown outcome."""
    (tmp_path / "garbage.pid").write_text("not a pid\n")
    rs = ruleset("""
  good:
    local:
      pid_file: good.pid
  missing:
    local:
      pid_file: nope.pid
  garbage:
    local:
      pid_file: garbage.pid
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    facts = probe.collect(ctx(rs, tmp_path))
    assert facts["good/pid_file"]["job.state"] == "PENDING"
    assert facts["missing/pid_file"]["worker.state"] == "missing"
    assert "job.pid" not in facts["garbage/pid_file"]
    assert facts["garbage/pid_file"]["job.state"] == "UNKNOWN"

    first = spawn(*sleeper())
    (tmp_path / "good.pid").write_text(f"{first.pid}\n")
    f = probe.collect(ctx(rs, tmp_path))[f"good/{first.pid}"]
    assert (f["job.state"], f["job.pid"], f["job.terminal"]) == ("RUNNING", first.pid, False)
    assert f["job.rss"] > 0

    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=5)
    second = spawn(*sleeper())
    (tmp_path / "good.pid").write_text(f"{second.pid}\n")
    facts = probe.collect(ctx(rs, tmp_path))
    ended = facts[f"good/{first.pid}"]
    assert (ended["job.state"], ended["job.outcome"]) == ("COMPLETED", "unknown")
    assert "job.succeeded" not in ended
    assert facts[f"good/{second.pid}"]["job.state"] == "RUNNING"


def test_pattern_finds_process_by_marker(tmp_path: Path, spawn: Callable[..., Any]) -> None:
    """A `pattern` job finds the process whose argv holds a unique marker, and only it."""
    marker = f"rulesmon-marker-{uuid.uuid4().hex}"
    proc = spawn(*sleeper(marker))
    spawn(*sleeper())
    rs = ruleset(f"""
  found:
    local:
      pattern: '{marker}$'
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    facts = collect_until(probe, rs, tmp_path, bool, timeout=5)
    assert list(facts) == [f"found/{proc.pid}"]
    assert facts[f"found/{proc.pid}"]["job.state"] == "RUNNING"
    assert facts[f"found/{proc.pid}"]["worker.state"] in ("running", "sleeping")


def test_preflight_missing_input_launches_nothing(tmp_path: Path,
                                                  probes: list[LocalProbe]) -> None:
    """A missing input fails the preflight: no process, FAILED, launch_failed naming the file."""
    rs = ruleset(f"""
  embed:
    local:
      command: {worker_cmd()}
      workers: 2
      preflight:
        inputs: [data/items.jsonl]
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    probes.append(probe)
    probe.start(ctx(rs, tmp_path))
    facts = probe.collect(ctx(rs, tmp_path))
    assert sorted(facts) == ["embed/0", "embed/1"]
    for f in facts.values():
        assert (f["job.state"], f["job.diagnosis"], f["job.terminal"]) == \
            ("FAILED", "launch_failed", True)
        assert "data/items.jsonl" in f["job.launch_error"]
        assert f["job.launch_ok"] is False
        assert "job.pid" not in f
    assert not (tmp_path / "logs").exists()


def test_launch_verification_fails_after_timeout(tmp_path: Path,
                                                 probes: list[LocalProbe]) -> None:
    """A worker that exits 1 at once makes launch_ok False once launch_timeout has passed."""
    rs = ruleset(f"""
  flaky:
    local:
      command: {worker_cmd("--items", "0", "--exit", "1")}
      launch_timeout: 1s
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    probes.append(probe)
    probe.start(ctx(rs, tmp_path))
    time.sleep(1.2)
    f = probe.collect(ctx(rs, tmp_path))["flaky/0"]
    assert f["job.launch_ok"] is False
    assert "exited with code 1" in f["job.launch_error"]
    assert f["job.state"] == "FAILED"


def test_dry_run_launches_nothing(tmp_path: Path, probes: list[LocalProbe]) -> None:
    """In a dry run nothing is launched and the workers are PENDING."""
    rs = ruleset(f"""
  embed:
    local:
      command: {worker_cmd()}
      workers: 2
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    probes.append(probe)
    probe.start(ctx(rs, tmp_path, dry_run=True))
    facts = probe.collect(ctx(rs, tmp_path, dry_run=True))
    assert sorted(facts) == ["embed/0", "embed/1"]
    for f in facts.values():
        assert f["job.state"] == "PENDING"
        assert "job.pid" not in f
    assert not (tmp_path / "logs").exists()


def test_terminate_cancels_launched_workers(tmp_path: Path, probes: list[LocalProbe]) -> None:
    """terminate() stops the launched workers, which then report CANCELLED."""
    rs = ruleset(f"""
  long:
    local:
      command: {worker_cmd("--items", "600")}
      workers: 2
""", tmp_path)
    probe = LocalProbe(rs, tmp_path)
    probes.append(probe)
    probe.start(ctx(rs, tmp_path))
    pids = [f["job.pid"] for f in probe.collect(ctx(rs, tmp_path)).values()]
    probe.terminate(grace=2.0)
    facts = probe.collect(ctx(rs, tmp_path))
    assert [f["job.state"] for f in facts.values()] == ["CANCELLED", "CANCELLED"]
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in pids)


def test_many_idle_watched_processes_are_cheap(tmp_path: Path, spawn: Callable[..., Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Collecting 100 idle watched pids needs no process scan and takes well under a second."""
    procs = [spawn("sleep", "30") for _ in range(100)]
    rs = ruleset(f"""
  many:
    local:
      pids: {[p.pid for p in procs]}
""", tmp_path)

    def no_scan(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("process_iter called without a pattern job")

    monkeypatch.setattr(psutil, "process_iter", no_scan)
    probe = LocalProbe(rs, tmp_path)
    probe.collect(ctx(rs, tmp_path))
    started = time.perf_counter()
    facts = probe.collect(ctx(rs, tmp_path))
    spent = time.perf_counter() - started
    assert len(facts) == 100
    assert all(f["job.state"] == "RUNNING" for f in facts.values())
    assert spent < 0.5, spent


def test_a_worker_that_exits_between_status_and_memory_reads_has_no_memory_sample() -> None:
    """A process read as running whose memory is then read from its zombie (statm all zeros,
    as when it exits between the two reads on a loaded machine) gives no memory or CPU sample
    rather than a resident size of 0 bytes."""
    from rulesmon.probes import local

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        real = psutil.Process(child.pid)
        while real.status() != psutil.STATUS_ZOMBIE:  # exited, not reaped: a real zombie
            time.sleep(0.01)
        assert real.memory_info().rss == 0

        class SeenRunning:
            """The real zombie, except that its status was read just before it exited."""

            pid = child.pid

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def status(self) -> str:
                return psutil.STATUS_RUNNING

        p = local._Proc(index=0, pid=child.pid, proc=SeenRunning(), seen=True,
                        rss=4096, total_rss=4096, peak_rss=4096)
        local._sample(p, local._Tree(), time.time())
        assert (p.rss, p.total_rss, p.cpu_pct, p.peak_rss) == (None, None, None, 4096)
    finally:
        child.wait()
