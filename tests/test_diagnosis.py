"""Crash classification and final verification of ended jobs."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.engine import Engine
from rulesmon.probes.diagnosis import Diagnoser, diagnose, oom_killer_saw
from rulesmon.testing import NullLog


def _d(**facts: Any) -> dict[str, Any]:
    base = {"job.terminal": True, "job.state": "FAILED"}
    base.update({k.replace("__", "."): v for k, v in facts.items()})
    return diagnose(base, ["outputs"], {"outputs": 4}, ["outputs"], oom_check=lambda _: False)


@pytest.mark.parametrize(("facts", "kind", "fragment"), [
    ({"log__errors__oom__count": 1,
      "log__errors__oom__last_line": "torch.OutOfMemoryError: CUDA out of memory."},
     "oom", "CUDA out of memory"),
    ({"log__errors__cpu_oom__count": 1, "log__errors__cpu_oom__last_line":
      "DefaultCPUAllocator: can't allocate memory"}, "oom", "allocate memory"),
    ({"job__state": "OUT_OF_MEMORY"}, "oom", "OUT_OF_MEMORY"),
    ({"job__exit_code": 137, "job__signal": 9}, "killed", "SIGKILL (signal 9)"),
    ({"job__exit_code": 137}, "killed", "code 137 (128 + 9: SIGKILL in a shell)"),
    ({"job__exit_code": 137, "job__signal": 9, "log__errors__cpu_oom__count": 1,
      "log__errors__cpu_oom__last_line": "slurmstepd: error: Detected 1 oom_kill event in "
      "StepId=7.batch. Some of the step tasks have been OOM Killed."}, "oom", "oom_kill event"),
    ({"job__state": "TIMEOUT"}, "time_limit", "time limit"),
    ({"job__exit_code": 1, "log__errors__nan_loss__count": 2,
      "log__errors__nan_loss__last_line": "loss=nan.0"}, "nan", "NaN"),
    ({"job__exit_code": 1, "log__errors__nccl__count": 1,
      "log__errors__nccl__last_line": "NCCL error: unhandled system error"}, "nccl", "NCCL"),
    ({"job__state": "NODE_FAIL"}, "node_failure", "node"),
    ({"job__state": "CANCELLED"}, "cancelled", "cancelled"),
    ({"job__signal": 11}, "signal", "signal 11"),
    ({"job__exit_code": 3, "log__errors__traceback__count": 1,
      "log__errors__traceback__last_line": "Traceback (most recent call last):"},
     "nonzero_exit", "code 3 after a traceback"),
])
def test_crashes_are_classified(facts: dict[str, Any], kind: str, fragment: str) -> None:
    """Each kind of bad ending gets its diagnosis and a detail naming the evidence."""
    out = _d(**facts)
    assert out["job.diagnosis"] == kind
    assert fragment in out["job.diagnosis_detail"]


def test_a_good_ending_is_verified() -> None:
    """Exit 0 with every output present and valid and all items processed verifies, with
    items, throughput and time."""
    out = _d(job__state="COMPLETED", job__exit_code=0, files__outputs__count=4,
             files__outputs__valid=True, progress__done=100000.0, progress__total=100000.0,
             progress__avg_rate=250.5, job__elapsed=399.0)
    assert out["job.diagnosis"] == "ok" and out["job.verified"] is True
    assert out["job.verify_detail"] == ("outputs present and valid, 100,000 items at 250.5/s "
                                        "on average in 399s")


@pytest.mark.parametrize(("facts", "fragment"), [
    ({"files__outputs__count": 0}, "no outputs files"),
    ({"files__outputs__count": 3, "files__outputs__valid": True}, "3/4 outputs files"),
    ({"files__outputs__count": 4, "files__outputs__valid": False,
      "files__outputs__invalid": ["o_2.json"]}, "invalid outputs: o_2.json"),
    ({"files__outputs__count": 4, "files__outputs__valid": True, "progress__done": 98000.0,
      "progress__total": 100000.0}, "processed 98,000/100,000 items (98.0%)"),
])
def test_exit_zero_with_missing_work_is_flagged(facts: dict[str, Any], fragment: str) -> None:
    """Exit 0 is not success when outputs are missing or invalid or under 99% of the items
    were processed."""
    out = _d(job__state="COMPLETED", job__exit_code=0, **facts)
    assert out["job.diagnosis"] == "missing_output" and out["job.verified"] is False
    assert fragment in out["job.verify_detail"]


def test_running_jobs_get_no_diagnosis() -> None:
    """Nothing is diagnosed before the job ends."""
    assert diagnose({"job.terminal": False, "job.state": "RUNNING"}, [], {}, []) == {}


def test_kernel_log_oom_killer(tmp_path: Path) -> None:
    """A readable kernel log naming the pid confirms the OOM killer."""
    log = tmp_path / "kern.log"
    log.write_text("Nov 22 kernel: Out of memory: Killed process 4242 (python) total-vm\n")
    assert oom_killer_saw(4242, (log,), dmesg=None) is True
    assert oom_killer_saw(4243, (log,), dmesg=None) is False
    assert oom_killer_saw(4242, (tmp_path / "missing.log",), dmesg=None) is False


def _fake_dmesg(tmp_path: Path, text: str, code: int = 0) -> tuple[str, ...]:
    """A `dmesg` stand-in: a script printing `text` and exiting with `code`."""
    out = tmp_path / "ring.txt"
    out.write_text(text)
    script = tmp_path / "dmesg"
    script.write_text(f"#!/bin/sh\ncat {out}\nexit {code}\n")
    script.chmod(0o755)
    return (str(script),)


def test_dmesg_is_read_and_a_refusal_is_no_error(tmp_path: Path) -> None:
    """The kernel ring buffer names the OOM kill (old and new kernel wording); a dmesg that
    is not permitted, or missing, is simply no evidence."""
    old = _fake_dmesg(tmp_path, "[12.5] Out of memory: Killed process 77 (python) anon-rss\n")
    assert oom_killer_saw(77, (), dmesg=old) is True
    assert oom_killer_saw(7, (), dmesg=old) is False
    new = _fake_dmesg(tmp_path, "[1.0] oom-kill:constraint=CONSTRAINT_MEMCG,task=python,"
                      "pid=4321,uid=1000\n[1.1] other,pid=99,x\n")
    assert oom_killer_saw(4321, (), dmesg=new) is True
    assert oom_killer_saw(99, (), dmesg=new) is False
    refused = _fake_dmesg(tmp_path, "dmesg: read kernel buffer failed: Operation not permitted\n"
                          "Killed process 5 (x)\n", code=1)
    assert oom_killer_saw(5, (), dmesg=refused) is False
    assert oom_killer_saw(5, (), dmesg=(str(tmp_path / "no-such-dmesg"),)) is False


def test_the_kernel_check_is_made_once_per_instance(tmp_path: Path) -> None:
    """A terminal job is diagnosed every tick, but dmesg and the kernel logs are read once
    per instance."""
    calls = tmp_path / "calls"
    ring = tmp_path / "ring.txt"
    ring.write_text("Out of memory: Killed process 4242 (python)\n")
    script = tmp_path / "dmesg"
    script.write_text(f"#!/bin/sh\necho x >> {calls}\ncat {ring}\n")
    script.chmod(0o755)
    diagnoser = Diagnoser(kernel_logs=(), dmesg=(str(script),))
    facts = {"job.terminal": True, "job.state": "FAILED", "job.signal": 9,
             "job.exit_code": 137, "job.pid": 4242}
    for _ in range(3):
        out = diagnoser.diagnose("train/0", facts, [], {}, [])
        assert out["job.diagnosis"] == "oom"
        assert "the kernel's OOM killer ended it" in out["job.diagnosis_detail"]
    assert calls.read_text().count("x") == 1
    diagnoser.diagnose("train/1", {**facts, "job.pid": 4243}, [], {}, [])
    assert calls.read_text().count("x") == 2


def test_many_sigkilled_instances_are_one_kernel_read_per_tick(tmp_path: Path) -> None:
    """64 workers SIGKILLed in one tick are checked against one dmesg run, each wording of
    the OOM killer's line confirming its pid; a later tick reads again only for a new one."""
    calls = tmp_path / "calls"
    ring = tmp_path / "ring.txt"
    ring.write_text("".join(
        f"[{10 + i}.5] Out of memory: Killed process {1000 + i} (python) anon-rss\n"
        if i % 2 else f"[{10 + i}.5] oom-kill:constraint=CONSTRAINT_NONE,task=python,"
        f"pid={1000 + i},uid=1000\n" for i in range(63)))
    script = tmp_path / "dmesg"
    script.write_text(f"#!/bin/sh\necho x >> {calls}\ncat {ring}\n")
    script.chmod(0o755)
    diagnoser = Diagnoser(kernel_logs=(tmp_path / "missing.log",), dmesg=(str(script),))
    killed = {"job.terminal": True, "job.state": "FAILED", "job.signal": 9,
              "job.exit_code": 137}
    details = [diagnoser.diagnose(f"w/{i}", {**killed, "job.pid": 1000 + i}, [], {}, [],
                                  now=100.0)["job.diagnosis_detail"] for i in range(64)]
    assert calls.read_text().count("x") == 1
    assert all("the kernel's OOM killer ended it" in d for d in details[:63])
    assert "no OOM-killer record" in details[63]  # pid 1063: not in the ring buffer
    for i in range(64):  # the next tick: every answer is kept
        diagnoser.diagnose(f"w/{i}", {**killed, "job.pid": 1000 + i}, [], {}, [], now=101.0)
    assert calls.read_text().count("x") == 1
    diagnoser.diagnose("w/new", {**killed, "job.pid": 1063}, [], {}, [], now=102.0)
    assert calls.read_text().count("x") == 2
    diagnoser.close()


def test_the_kernel_log_is_followed_not_read_again(tmp_path: Path) -> None:
    """A readable kernel log is followed: a later OOM kill is found in what was appended,
    and dmesg is not run while the file can be read."""
    log = tmp_path / "kern.log"
    log.write_text("Nov 22 kernel: Out of memory: Killed process 4242 (python) total-vm\n")
    calls = tmp_path / "calls"
    script = tmp_path / "dmesg"
    script.write_text(f"#!/bin/sh\necho x >> {calls}\n")
    script.chmod(0o755)
    diagnoser = Diagnoser(kernel_logs=(log,), dmesg=(str(script),))
    killed = {"job.terminal": True, "job.state": "FAILED", "job.signal": 9}
    first = diagnoser.diagnose("a/1", {**killed, "job.pid": 4242}, [], {}, [], now=1.0)
    late = diagnoser.diagnose("a/2", {**killed, "job.pid": 77}, [], {}, [], now=2.0)
    with log.open("a") as f:
        f.write("Nov 22 kernel: oom-kill:constraint=CONSTRAINT_MEMCG,task=x,pid=77,uid=0\n")
    again = diagnoser.diagnose("a/3", {**killed, "job.pid": 77}, [], {}, [], now=3.0)
    assert "OOM killer ended it" in first["job.diagnosis_detail"]
    assert late["job.diagnosis"] == "killed"
    assert "no OOM-killer record" in late["job.diagnosis_detail"]
    assert "OOM killer ended it" in again["job.diagnosis_detail"]
    assert not calls.exists()
    diagnoser.close()


@pytest.mark.parametrize(("facts", "kind"), [
    ({"job__state": "TIMEOUT", "job__signal": 9, "job__exit_code": 137}, "time_limit"),
    ({"job__state": "CANCELLED", "job__signal": 9, "job__exit_code": 137}, "cancelled"),
    ({"job__state": "PREEMPTED"}, "cancelled"),
    ({"job__state": "DEADLINE"}, "time_limit"),
    ({"job__state": "BOOT_FAIL"}, "node_failure"),
    ({"job__state": "NODE_FAIL", "job__signal": 9}, "node_failure"),
    ({"job__state": "REMOVED"}, "cancelled"),
])
def test_scheduler_states_come_before_sigkill(facts: dict[str, Any], kind: str) -> None:
    """The scheduler's own terminal state explains the end: a time limit enforced with
    SIGKILL or `scancel -s KILL` is not out of memory, and PREEMPTED, DEADLINE and
    BOOT_FAIL are never ok."""
    out = _d(**facts)
    assert out["job.diagnosis"] == kind
    assert "job.verified" not in out


def test_log_evidence_counts_only_for_a_bad_ending() -> None:
    """A run that finished with exit 0 after a recovered CUDA OOM, or after fp16 loss scaling
    logged a NaN grad_norm, is verified, not diagnosed oom or nan."""
    out = _d(job__state="COMPLETED", job__exit_code=0, files__outputs__count=4,
             files__outputs__valid=True, log__errors__oom__count=1,
             log__errors__oom__last_line="CUDA out of memory. Retrying with a smaller batch",
             log__errors__nan_loss__count=3,
             log__errors__nan_loss__last_line="{'grad_norm': nan, 'loss': 2.1}")
    assert (out["job.diagnosis"], out["job.verified"]) == ("ok", True)
    bad = _d(job__exit_code=1, log__errors__nan_loss__count=3,
             log__errors__nan_loss__last_line="{'grad_norm': nan}")
    assert bad["job.diagnosis"] == "nan"


def test_a_timeout_mentions_the_log_evidence() -> None:
    """A job that hit its time limit stays time_limit, and the detail names what the log
    also shows."""
    out = _d(job__state="TIMEOUT", log__errors__nccl__count=1,
             log__errors__nccl__last_line="Watchdog caught collective operation timeout")
    assert out["job.diagnosis"] == "time_limit"
    assert "the log also shows nccl" in out["job.diagnosis_detail"]


@pytest.mark.parametrize(("given", "facts", "kind", "fragment"), [
    ("launch_failed", {"job__state": "FAILED"}, "launch_failed", "missing input"),
    ("cancelled", {"job__state": "CANCELLED", "job__signal": 15}, "cancelled", "missing input"),
    ("nonzero_exit", {"job__exit_code": 1, "log__errors__oom__count": 1,
                      "log__errors__oom__last_line": "CUDA out of memory"}, "oom",
     "CUDA out of memory"),
    ("oom", {"job__signal": 9, "job__exit_code": 137, "log__errors__cpu_oom__count": 1,
             "log__errors__cpu_oom__last_line": "DataLoader worker (pid 7) is killed by "
             "signal: Killed."}, "oom", "DataLoader worker"),
])
def test_a_probe_diagnosis_is_kept_unless_generic(given: str, facts: dict[str, Any],
                                                  kind: str, fragment: str) -> None:
    """A specific diagnosis from the probe stands; a generic one (nonzero_exit) is refined
    by the log, and the same class gets the detail backed by evidence."""
    base = {"job__diagnosis": given, "job__diagnosis_detail": "probe says: missing input"}
    base.update(facts)
    out = {"job.diagnosis": given, "job.diagnosis_detail": "probe says: missing input"}
    out.update(_d(**base))
    assert out["job.diagnosis"] == kind
    assert fragment in out["job.diagnosis_detail"]


def test_only_completed_exit_zero_is_verified() -> None:
    """A COMPLETED job without a known exit code that its source does not call a success
    is unknown, never verified."""
    out = _d(job__state="COMPLETED", files__outputs__count=4, files__outputs__valid=True)
    assert out["job.diagnosis"] == "unknown" and "job.verified" not in out
    ok = _d(job__state="COMPLETED", job__succeeded=True, files__outputs__count=4,
            files__outputs__valid=True)
    assert ok["job.verified"] is True


def test_engine_keeps_the_launch_failure_of_a_local_job(tmp_path: Path) -> None:
    """A local job whose preflight finds a missing input ends as launch_failed with the
    probe's reason, not unknown, and is not verified."""
    text = f"""\
version: 1
name: d
every: 1s
jobs:
  work:
    local:
      command: "{sys.executable} -c pass"
      preflight: {{inputs: [data/missing.jsonl]}}
    files:
      out: {{glob: "out/*.json"}}
rules: []
"""
    (tmp_path / "r.yaml").write_text(text)
    engine = Engine(load_text(text, str(tmp_path / "r.yaml")), state_path=tmp_path / "s.db",
                    log=NullLog())
    try:
        engine.start()
        engine.tick()
        facts = next(iter(engine.instances.values()))
    finally:
        engine.close()
    assert facts["job.state"] == "FAILED"
    assert facts["job.diagnosis"] == "launch_failed"
    assert "missing.jsonl" in facts["job.diagnosis_detail"]
    assert "job.verified" not in facts


def test_a_sigkilled_job_loses_its_buffered_output(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python job killed with SIGKILL never flushes its block-buffered stdout: its log stays
    silent while log.age grows, and the diagnosis comes from the exit: killed by signal 9,
    not oom, with "possibly out of memory" as a hint when the kernel's messages are out of
    reach."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # the job's stdout stays buffered
    script = tmp_path / "job.py"
    script.write_text("import time\nprint('Processed 10/100 items')\nprint('loss: nan')\n"
                      "time.sleep(60)\n")
    text = f"""\
version: 1
name: k
every: 1s
jobs:
  work:
    local:
      command: "{sys.executable} {script}"
      stdout: "job.log"
    logs:
      - path: job.log
        preset: [python-logging, nan-loss, cuda-oom]
rules: []
"""
    (tmp_path / "r.yaml").write_text(text)
    engine = Engine(load_text(text, str(tmp_path / "r.yaml")), state_path=tmp_path / "s.db",
                    log=NullLog())
    engine.diagnoser = Diagnoser(kernel_logs=(), dmesg=None)
    try:
        engine.start()
        start = time.time()
        engine.tick(start)
        facts = next(iter(engine.instances.values()))
        pid = facts["job.pid"]
        ages = []
        for i in range(1, 3):
            engine.tick(start + 30 * i)
            facts = next(iter(engine.instances.values()))
            ages.append(facts["log.age"])
            assert facts["log.size"] == 0 and "log.done" not in facts
        assert ages[1] > ages[0] >= 29
        os.kill(pid, signal.SIGKILL)
        for i in range(100):
            engine.tick(start + 90 + i)
            facts = next(iter(engine.instances.values()))
            if facts.get("job.terminal"):
                break
            time.sleep(0.05)
    finally:
        engine.close()
    assert facts["job.state"] == "FAILED" and facts["job.signal"] == 9
    assert facts["job.diagnosis"] == "killed"
    assert "SIGKILL" in facts["job.diagnosis_detail"]
    assert facts["job.diagnosis_hint"].startswith("possibly out of memory")
    assert facts["log.size"] == 0 and facts["log.errors.nan_loss.count"] == 0


FIXTURES = Path(__file__).parent / "fixtures" / "diagnosis"


def _run_local(tmp_path: Path, command: str, *, kill: bool = False,
               files: str = "") -> tuple[dict[str, Any], list[Any]]:
    """Run one real local job under the engine with builtin:gpu-training until it ends
    (SIGKILLed once it has printed when `kill`); its last facts and every notification."""
    text = f"""\
version: 1
name: diag
every: 1s
extends: [builtin:gpu-training]
jobs:
  work:
    local:
      command: {command!r}
      stdout: job.log
    logs:
      - path: job.log
        preset: [python-logging, traceback, cuda-oom, nan-loss]
{files}rules: []
"""
    (tmp_path / "r.yaml").write_text(text)
    engine = Engine(load_text(text, str(tmp_path / "r.yaml")), state_path=tmp_path / "s.db",
                    log=NullLog())
    # the machine's real kernel messages; not the memory cgroup's count, which other programs
    # sharing this test's cgroup could move
    engine.diagnoser.close()
    engine.diagnoser = Diagnoser(cgroup=None)
    fired: list[Any] = []
    facts: dict[str, Any] = {}
    try:
        engine.start()
        start = time.time()
        for i in range(600):
            fired += engine.tick(start + i).fired
            facts = dict(next(iter(engine.instances.values())))
            if facts.get("job.terminal"):
                fired += engine.tick(start + i + 1).fired
                facts = dict(next(iter(engine.instances.values())))
                break
            if kill and (tmp_path / "job.log").exists() \
                    and "3/100" in (tmp_path / "job.log").read_text():
                os.kill(facts["job.pid"], signal.SIGKILL)  # kill -9, by hand
                kill = False
            time.sleep(0.05)
    finally:
        engine.close()
    assert facts.get("job.terminal"), facts
    return facts, fired


def test_a_real_kill_minus_9_is_killed_not_out_of_memory(tmp_path: Path) -> None:
    """A real local job ended with kill -9 (no OOM-killer record in the kernel's messages,
    nothing in its log) is `killed` with "possibly out of memory" only as a hint, and the
    builtin rules never say it ran out of memory."""
    facts, fired = _run_local(tmp_path, f"{sys.executable} {FIXTURES / 'sleeper.py'}",
                              kill=True)
    assert (facts["job.state"], facts["job.signal"], facts["job.exit_code"]) == \
        ("FAILED", 9, 137)
    assert facts["job.diagnosis"] == "killed"
    assert facts["job.diagnosis_detail"].startswith("killed by SIGKILL (signal 9)")
    assert facts["job.diagnosis_hint"].startswith("possibly out of memory")
    rules = {n.rule for n in fired}
    assert "killed-by-sigkill" in rules and "crashed-out-of-memory" not in rules
    assert not any("ran out of memory" in n.body for n in fired)


def test_a_real_memory_limited_job_is_out_of_memory_by_its_memoryerror(tmp_path: Path) -> None:
    """A real job under `ulimit -v` that fails to allocate (Python's MemoryError traceback,
    exit 1) is `oom` by that evidence, and the builtin rule says it ran out of memory."""
    hog = FIXTURES / "memory_hog.py"
    facts, fired = _run_local(
        tmp_path, f"sh -c 'ulimit -v 400000 && exec {sys.executable} {hog}'")
    assert (facts["job.state"], facts["job.exit_code"]) == ("FAILED", 1)
    assert facts["job.diagnosis"] == "oom"
    assert "MemoryError" in facts["job.diagnosis_detail"]
    assert "job.diagnosis_hint" not in facts
    oom = [n for n in fired if n.rule == "crashed-out-of-memory"]
    assert len(oom) == 1 and "ran out of memory: out of memory: MemoryError" in oom[0].body


def test_a_real_run_whose_loss_became_nan_and_exited_0_is_nan(tmp_path: Path) -> None:
    """A real training run that printed a NaN loss and exited 0 is diagnosed `nan`, not `ok`,
    is not verified, and the loss-diverged rule fires; nothing claims valid outputs."""
    facts, fired = _run_local(tmp_path, f"{sys.executable} {FIXTURES / 'nan_train.py'}")
    assert (facts["job.state"], facts["job.exit_code"]) == ("COMPLETED", 0)
    assert facts["job.diagnosis"] == "nan" and facts["job.verified"] is False
    assert "loss: nan" in facts["job.diagnosis_detail"]
    assert "valid" not in facts["job.diagnosis_detail"]
    assert [n.rule for n in fired if n.rule == "loss-diverged"] == ["loss-diverged"]


def test_a_real_clean_run_without_declared_outputs_is_not_verified(tmp_path: Path) -> None:
    """A real job that exits 0 and declares no outputs and no expected total is `ok`, but
    `job.verified` stays unknown and the detail says nothing was verified."""
    script = tmp_path / "job.py"
    script.write_text("print('loss: 0.5')\n")
    facts, _ = _run_local(tmp_path, f"{sys.executable} {script}")
    assert (facts["job.state"], facts["job.diagnosis"]) == ("COMPLETED", "ok")
    assert "job.verified" not in facts
    assert facts["job.diagnosis_detail"].startswith("exited with code 0; nothing verified")
    assert "present" not in facts["job.diagnosis_detail"]


def test_a_real_clean_run_states_which_outputs_it_checked(tmp_path: Path) -> None:
    """A real job that exits 0 with its declared output present but not validated is
    verified as "outputs present", never "valid"."""
    script = tmp_path / "job.py"
    script.write_text("import pathlib\npathlib.Path('out').mkdir()\n"
                      "pathlib.Path('out/a.txt').write_text('x')\nprint('loss: 0.5')\n")
    facts, _ = _run_local(tmp_path, f"{sys.executable} {script}",
                          files="    files:\n      results: {glob: 'out/*.txt'}\n")
    assert (facts["job.diagnosis"], facts["job.verified"]) == ("ok", True)
    assert facts["job.verify_detail"].startswith("outputs present: 1 results (not validated)")


@pytest.mark.parametrize(("facts", "kind"), [
    ({"log__loss": float("nan")}, "nan"),
    ({"log__loss": 0.31}, "ok"),  # a finite last loss: recovered
    ({"log__errors__nan_loss__last_line": "{'loss': nan, 'grad_norm': nan}"}, "nan"),
    ({"log__errors__nan_loss__last_line": "{'loss': 2.1, 'grad_norm': nan}"}, "ok"),
    ({"log__errors__nan_loss__count": 0, "log__loss": float("inf")}, "nan"),
])
def test_a_clean_exit_is_nan_only_for_a_nan_loss(facts: dict[str, Any], kind: str) -> None:
    """Exit 0 with NaN evidence is `nan` when the loss is NaN at the end (or on the last NaN
    line when no loss is extracted); a NaN gradient norm alone, or a finite last loss, is not."""
    base = {"job__state": "COMPLETED", "job__exit_code": 0, "files__outputs__count": 4,
            "files__outputs__valid": True, "log__errors__nan_loss__count": 2,
            "log__errors__nan_loss__last_line": "loss: nan"}
    base.update(facts)
    assert _d(**base)["job.diagnosis"] == kind


def test_a_slurm_job_that_killed_itself_with_sigkill_is_killed_not_oom() -> None:
    """Real SLURM 22.05 accounting of a batch script ended by `kill -9` (State FAILED,
    ExitCode 0:9, no OUT_OF_MEMORY) is `killed` with the out-of-memory hint, not `oom`."""
    from rulesmon.probes import slurm_parse

    jobs = slurm_parse.parse_sacct((FIXTURES / "sacct-22.05-sigkill.txt").read_text())
    facts = {**jobs["20"], "job.terminal": True}
    assert (facts["job.state"], facts["job.signal"]) == ("FAILED", 9)
    out = diagnose(facts, [], {}, [])
    assert out["job.diagnosis"] == "killed"
    assert out["job.diagnosis_hint"].startswith("possibly out of memory")


def test_an_oom_kill_counted_by_the_memory_cgroup_explains_one_sigkilled_worker(
        tmp_path: Path) -> None:
    """An `oom_kill` that rulesmon's memory cgroup counted on the tick a local worker was seen
    SIGKILLed makes that worker `oom`; each count explains one worker, a count from an earlier
    tick explains none, and jobs of other sources never use it."""
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n")  # cgroup v2's layout
    d = Diagnoser(kernel_logs=(), dmesg=None, cgroup=events)
    killed = {"job.terminal": True, "job.state": "FAILED", "job.signal": 9,
              "job.exit_code": 137, "job.source": "local"}
    d.tick(1.0)
    events.write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    d.tick(2.0)
    first = d.diagnose("w/0", {**killed, "job.pid": 10}, [], {}, [], now=2.0)
    second = d.diagnose("w/1", {**killed, "job.pid": 11}, [], {}, [], now=2.0)
    assert first["job.diagnosis"] == "oom" and "counted an OOM kill" in \
        first["job.diagnosis_detail"]
    assert second["job.diagnosis"] == "killed"
    d.tick(3.0)  # no new count: a worker seen killed now is not explained by the old one
    assert d.diagnose("w/2", {**killed, "job.pid": 12}, [], {}, [], now=3.0)[
        "job.diagnosis"] == "killed"
    events.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")  # v1 memory.oom_control
    d.tick(4.0)
    slurm = {**killed, "job.source": "slurm", "job.pid": None}
    assert d.diagnose("s/1", slurm, [], {}, [], now=4.0)["job.diagnosis"] == "killed"
    assert d.diagnose("w/3", {**killed, "job.pid": 13}, [], {}, [], now=4.0)[
        "job.diagnosis"] == "oom"
    d.close()


def test_the_own_memory_cgroup_file_is_found_from_proc_self_cgroup(tmp_path: Path) -> None:
    """/proc/self/cgroup leads to the file counting OOM kills (v1 memory.oom_control or v2
    memory.events), read as the kernel writes it; on this machine, whichever it has."""
    from rulesmon.probes.diagnosis import oom_kills, own_cgroup_oom_file

    assert own_cgroup_oom_file(tmp_path / "no-such-file") is None
    found = own_cgroup_oom_file()
    if found is not None:  # a real cgroup file: its count is a number
        assert isinstance(oom_kills(found), int)


def test_a_real_kernel_oom_kill_record_makes_a_sigkilled_process_oom(tmp_path: Path) -> None:
    """The kernel's real OOM report (a memory cgroup limit hit on the dev SLURM cluster,
    recorded from dmesg) confirms the killed pid: a SIGKILLed local process with that pid is
    `oom`, another pid read from the same messages is `killed` without the hint's "could not
    be checked"."""
    dmesg = _fake_dmesg(tmp_path, (FIXTURES / "dmesg-oom-kill-slurm-22.05.txt").read_text())
    d = Diagnoser(kernel_logs=(), dmesg=dmesg, cgroup=None)
    killed = {"job.terminal": True, "job.state": "FAILED", "job.signal": 9,
              "job.exit_code": 137, "job.source": "local"}
    oom = d.diagnose("w/0", {**killed, "job.pid": 63073}, [], {}, [], now=1.0)
    other = d.diagnose("w/1", {**killed, "job.pid": 63074}, [], {}, [], now=1.0)
    d.close()
    assert oom["job.diagnosis"] == "oom"
    assert "the kernel's OOM killer ended it" in oom["job.diagnosis_detail"]
    assert other["job.diagnosis"] == "killed"
    assert "read and do not name this process" in other["job.diagnosis_hint"]


def test_a_real_slurm_oom_kill_is_oom_with_the_cgroup_line_as_detail(tmp_path: Path) -> None:
    """Real SLURM 22.05 accounting of a job over its --mem (OUT_OF_MEMORY 0:125) is `oom`;
    a real process that prints that job's output (slurmstepd's `Detected 1 oom-kill
    event(s)` line) and is then SIGKILLed is `oom` by that line."""
    from rulesmon.probes import slurm_parse

    jobs = slurm_parse.parse_sacct((FIXTURES / "sacct-22.05-oom-kill.txt").read_text())
    out = diagnose({**jobs["26"], "job.terminal": True}, [], {}, [])
    assert out.get("job.diagnosis", jobs["26"].get("job.diagnosis")) == "oom"
    replay = FIXTURES / "slurm-oom-kill-22.05.out"
    facts, fired = _run_local(tmp_path, f"sh -c 'cat {replay}; kill -9 $$'")
    assert (facts["job.signal"], facts["job.diagnosis"]) == (9, "oom")
    assert "oom-kill event(s) in StepId=26.batch" in facts["job.diagnosis_detail"]
    assert [n.rule for n in fired if n.rule == "crashed-out-of-memory"] == \
        ["crashed-out-of-memory"]


def test_a_worker_killed_by_its_memory_cgroup_is_oom_on_a_real_cgroup(
        slurm_cluster: Any) -> None:
    """Inside a real memory-limited SLURM job (its own memory cgroup), a child that the
    cgroup's OOM killer ends is `oom` from the cgroup's own oom_kill count, with the kernel's
    messages out of reach (only the host cluster's node runs rulesmon's Python)."""
    import json

    if slurm_cluster.version != "22.05":
        pytest.skip("the 24.11 chroot's node has no Python with rulesmon's dependencies")
    folder = slurm_cluster.workdir("cgroup-oom")
    script = FIXTURES / "cgroup_oom.py"
    root = Path(__file__).resolve().parent.parent
    jid = slurm_cluster.sbatch(folder, "--mem=300M", "-t", "3", "-o", "out.txt",
                               f"--export=ALL,PYTHONPATH={root}", "--wrap",
                               f"{slurm_cluster.python} {script}")
    line = slurm_cluster.wait_for(
        f"job {jid}'s report", lambda: next((x for x in (
            (folder / "out.txt").read_text().splitlines() if (folder / "out.txt").exists()
            else []) if x.startswith("{")), None), timeout=180)
    got = json.loads(line)
    assert got["cgroup"].endswith(("memory.oom_control", "memory.events"))
    assert got["returncode"] == -9 and got["after"] == got["before"] + 1
    assert got["job.diagnosis"] == "oom"
    assert "the memory cgroup it ran in counted an OOM kill" in got["job.diagnosis_detail"]
