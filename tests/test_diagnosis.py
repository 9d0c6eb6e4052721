"""Crash classification and final verification of ended jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rulesmon.probes.diagnosis import diagnose, oom_killer_saw


def _d(**facts: Any) -> dict[str, Any]:
    base = {"job.terminal": True, "job.state": "FAILED"}
    base.update({k.replace("__", "."): v for k, v in facts.items()})
    return diagnose(base, ["outputs"], {"outputs": 4}, ["outputs"])


@pytest.mark.parametrize(("facts", "kind", "fragment"), [
    ({"log__errors__oom__count": 1,
      "log__errors__oom__last_line": "torch.OutOfMemoryError: CUDA out of memory."},
     "oom", "CUDA out of memory"),
    ({"log__errors__cpu_oom__count": 1, "log__errors__cpu_oom__last_line":
      "DefaultCPUAllocator: can't allocate memory"}, "oom", "allocate memory"),
    ({"job__state": "OUT_OF_MEMORY"}, "oom", "OUT_OF_MEMORY"),
    ({"job__exit_code": 137, "job__signal": 9}, "oom", "SIGKILL"),
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
    assert oom_killer_saw(4242, (log,)) is True
    assert oom_killer_saw(4243, (log,)) is False
    assert oom_killer_saw(4242, (tmp_path / "missing.log",)) is False
