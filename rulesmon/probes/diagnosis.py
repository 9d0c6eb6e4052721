"""Why a job ended badly, and whether one that ended well really did its work.

Derived after every probe has reported, from the scheduler's verdict, the log's error
patterns and the job's files: the GPU design document's crash classification (OOM, exit 137,
time limit, NaN divergence, NCCL, missing output) and its final verification (outputs present
and valid, items processed against the expected total).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Facts

KERNEL_LOGS = (Path("/var/log/kern.log"), Path("/var/log/syslog"), Path("/var/log/messages"))
COMPLETE_PCT = 99.0


def _count(facts: Mapping[str, Any], name: str) -> int:
    value = facts.get(f"log.errors.{name}.count")
    return int(value) if isinstance(value, int | float) else 0


def _line(facts: Mapping[str, Any], name: str) -> str:
    line = facts.get(f"log.errors.{name}.last_line")
    return str(line).strip()[:300] if line else ""


def oom_killer_saw(pid: Any, logs: tuple[Path, ...] = KERNEL_LOGS) -> bool:
    """Whether a readable kernel log records the OOM killer ending this pid."""
    if not isinstance(pid, int):
        return False
    needle = f"Killed process {pid} ".encode()
    for path in logs:
        try:
            with path.open("rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - (4 << 20)))
                if needle in fh.read():
                    return True
        except OSError:
            continue
    return False


def diagnose(facts: Mapping[str, Any], file_sets: list[str], expect_counts: dict[str, int],
             validated: list[str]) -> Facts:
    """job.diagnosis, job.diagnosis_detail, job.verified and job.verify_detail for an ended
    job (nothing while it runs)."""
    if not facts.get("job.terminal"):
        return {}
    state = facts.get("job.state")
    exit_code = facts.get("job.exit_code")
    signal = facts.get("job.signal") or 0
    out: Facts = {}

    def verdict(kind: str, detail: str) -> Facts:
        out["job.diagnosis"] = kind
        out["job.diagnosis_detail"] = detail
        return out

    if _count(facts, "oom") or _count(facts, "cpu_oom"):
        which = "oom" if _count(facts, "oom") else "cpu_oom"
        return verdict("oom", f"out of memory: {_line(facts, which)}")
    if state == "OUT_OF_MEMORY":
        return verdict("oom", "the scheduler reports OUT_OF_MEMORY (memory limit exceeded)")
    if signal == 9 or exit_code == 137:
        seen = oom_killer_saw(facts.get("job.pid"))
        return verdict("oom", "killed by SIGKILL (exit 137)" + (
            ": the kernel's OOM killer ended it" if seen else ", most often the OOM killer"))
    if state == "TIMEOUT" or facts.get("job.exceeded"):
        return verdict("time_limit", "the job reached its time limit")
    if _count(facts, "nan_loss"):
        return verdict("nan", f"the loss diverged to NaN/inf: {_line(facts, 'nan_loss')}")
    if _count(facts, "nccl"):
        return verdict("nccl", f"NCCL / network failure: {_line(facts, 'nccl')}")
    if state == "NODE_FAIL":
        return verdict("node_failure", "the node failed under the job")
    if state in ("CANCELLED", "REMOVED"):
        return verdict("cancelled", "the job was cancelled")
    if signal:
        return verdict("signal", f"killed by signal {signal}")
    if isinstance(exit_code, int) and exit_code != 0:
        traceback = _line(facts, "traceback")
        return verdict("nonzero_exit", f"exited with code {exit_code}" +
                       (f" after a traceback: {traceback}" if traceback else ""))
    if state == "FAILED":
        return verdict("unknown", "the scheduler reports FAILED without an exit code")
    # ended well: verify the work, as the GPU design's final verification does
    problems: list[str] = []
    for name in file_sets:
        count = facts.get(f"files.{name}.count")
        if count == 0:
            problems.append(f"no {name} files")
        want = expect_counts.get(name)
        if want is not None and isinstance(count, int) and count < want:
            problems.append(f"{count}/{want} {name} files")
        if name in validated and facts.get(f"files.{name}.valid") is False:
            bad = facts.get(f"files.{name}.invalid") or []
            problems.append(f"invalid {name}: {', '.join(map(str, bad[:3]))}")
    done, total = facts.get("progress.done"), facts.get("progress.total")
    if isinstance(done, int | float) and isinstance(total, int | float) and total > 0:
        pct = 100.0 * done / total
        if pct < COMPLETE_PCT:
            problems.append(f"processed {done:,.0f}/{total:,.0f} items ({pct:.1f}%)")
    if problems:
        out["job.verified"] = False
        out["job.verify_detail"] = "; ".join(problems)
        return verdict("missing_output", "ended with exit 0 but " + "; ".join(problems))
    out["job.verified"] = True
    rate = facts.get("progress.avg_rate")
    elapsed = facts.get("job.elapsed")
    detail = "outputs present and valid"
    if isinstance(done, int | float):
        detail += f", {done:,.0f} items"
    if isinstance(rate, int | float):
        detail += f" at {rate:,.1f}/s on average"
    if isinstance(elapsed, int | float):
        detail += f" in {elapsed:,.0f}s"
    out["job.verify_detail"] = detail
    return verdict("ok", detail)
