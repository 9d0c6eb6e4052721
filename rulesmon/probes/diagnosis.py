"""Why a job ended badly, and whether one that ended well really did its work.

Derived after every probe has reported, from the scheduler's verdict, the log's error
patterns and the job's files: the GPU design document's crash classification (OOM, exit 137,
time limit, NaN divergence, NCCL, missing output) and its final verification (outputs present
and valid, items processed against the expected total).

The order matters, because one ending often leaves several kinds of evidence:

1. A diagnosis a probe already gave is kept when it is specific (`launch_failed`, `cancelled`,
   `time_limit`, a hold code's `missing_output`...): the probe saw why the job ended. Only the
   generic ones (`ok`, `nonzero_exit`, `signal`, `unknown`), which say no more than the exit
   status, are refined here; for the same class, a detail backed by evidence (the log line,
   the kernel log) replaces the probe's.
2. The scheduler's own terminal states (OUT_OF_MEMORY, TIMEOUT, DEADLINE, CANCELLED, REMOVED,
   PREEMPTED, NODE_FAIL, BOOT_FAIL) come before anything inferred: `scancel -s KILL` and a
   time limit enforced with SIGKILL are not out of memory.
3. Log evidence (CUDA OOM, a CPU allocation failure, a DataLoader worker killed by the OOM
   killer, NaN loss, NCCL errors) counts only for a bad ending: a finished run may have
   recovered from an OOM or skipped a NaN step during fp16 loss scaling.
4. SIGKILL / exit 137 is taken for the OOM killer (confirmed from a readable kernel log, or
   `dmesg` where none is, through xid.py's `KernelLog`, which follows them incrementally and is
   read at most once per tick for every instance killed then; each instance is checked
   once), then other signals, then a non-zero exit code.
5. Only a COMPLETED job with exit code 0 is verified (`ok` or `missing_output`); any other
   terminal state without an explanation is `unknown`, never `ok`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import Facts
from .xid import DMESG, KERNEL_LOGS, KernelLog, oom_killer_saw

COMPLETE_PCT = 99.0
#: Diagnoses that only restate the exit status: refined from the evidence here.
GENERIC = frozenset({"ok", "nonzero_exit", "signal", "unknown"})
#: Terminal scheduler states that explain an ending by themselves.
SCHEDULER_STATES: dict[str, tuple[str, str]] = {
    "OUT_OF_MEMORY": ("oom", "the scheduler reports OUT_OF_MEMORY (memory limit exceeded)"),
    "TIMEOUT": ("time_limit", "the job reached its time limit"),
    "DEADLINE": ("time_limit", "the job reached its deadline"),
    "CANCELLED": ("cancelled", "the job was cancelled"),
    "REMOVED": ("cancelled", "the job was removed"),
    "PREEMPTED": ("cancelled", "the job was preempted"),
    "NODE_FAIL": ("node_failure", "the node failed under the job"),
    "BOOT_FAIL": ("node_failure", "a node failed to boot for the job"),
}


def _count(facts: Mapping[str, Any], name: str) -> int:
    value = facts.get(f"log.errors.{name}.count")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _line(facts: Mapping[str, Any], name: str) -> str:
    line = facts.get(f"log.errors.{name}.last_line")
    return str(line).strip()[:300] if line else ""


OomCheck = Callable[[Any], bool]


def _ended_well(facts: Mapping[str, Any]) -> bool:
    """COMPLETED with exit code 0 (or no exit code where the source calls it a success)."""
    if facts.get("job.state") != "COMPLETED" or facts.get("job.signal"):
        return False
    code = facts.get("job.exit_code")
    return code == 0 or (code is None and facts.get("job.succeeded") is True)


def _log_evidence(facts: Mapping[str, Any]) -> tuple[str, str] | None:
    """A class and detail from the log's error patterns, strongest first."""
    for name in ("oom", "cpu_oom"):
        if _count(facts, name):
            return "oom", f"out of memory: {_line(facts, name)}"
    if _count(facts, "nan_loss"):
        return "nan", f"the loss diverged to NaN/inf: {_line(facts, 'nan_loss')}"
    if _count(facts, "nccl"):
        return "nccl", f"NCCL / network failure: {_line(facts, 'nccl')}"
    return None


def classify(facts: Mapping[str, Any], oom_check: OomCheck = oom_killer_saw
             ) -> tuple[str, str, bool]:
    """(diagnosis, detail, backed by evidence) for a job that did not end well."""
    state = facts.get("job.state")
    exit_code = facts.get("job.exit_code")
    signal = facts.get("job.signal") or 0
    evidence = _log_evidence(facts)
    if isinstance(state, str) and state in SCHEDULER_STATES:
        kind, detail = SCHEDULER_STATES[state]
        if evidence is not None and evidence[0] == kind:
            return kind, f"{detail}; {evidence[1]}", True
        if evidence is not None:
            detail += f" (the log also shows {evidence[0]}: {evidence[1]})"
        return kind, detail, False
    if facts.get("job.exceeded"):
        return "time_limit", "the job reached its time limit", False
    if evidence is not None and evidence[0] == "oom":
        return evidence[0], evidence[1], True
    if signal == 9 or exit_code == 137:
        seen = oom_check(facts.get("job.pid"))
        return "oom", "killed by SIGKILL (exit 137)" + (
            ": the kernel's OOM killer ended it" if seen else ", most often the OOM killer"), seen
    if evidence is not None:
        return evidence[0], evidence[1], True
    if signal:
        return "signal", f"killed by signal {signal}", False
    if isinstance(exit_code, int) and exit_code != 0:
        traceback = _line(facts, "traceback")
        return "nonzero_exit", f"exited with code {exit_code}" + (
            f" after a traceback: {traceback}" if traceback else ""), bool(traceback)
    if state == "FAILED":
        return "unknown", "the scheduler reports FAILED without an exit code", False
    if state == "COMPLETED":
        return "unknown", "ended with COMPLETED but no exit code is known", False
    return "unknown", f"ended in state {state}", False


def verify(facts: Mapping[str, Any], file_sets: list[str], expect_counts: dict[str, int],
           validated: list[str]) -> Facts:
    """The GPU design's final verification of a job that ended well."""
    out: Facts = {}
    problems: list[str] = []
    for name in file_sets:
        count = facts.get(f"files.{name}.count")
        if count == 0:
            problems.append(f"no {name} files")
        want = expect_counts.get(name)
        if want is not None and isinstance(count, int) and 0 < count < want:
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
        out["job.diagnosis"] = "missing_output"
        out["job.diagnosis_detail"] = "ended with exit 0 but " + "; ".join(problems)
        return out
    rate = facts.get("progress.avg_rate")
    elapsed = facts.get("job.elapsed")
    detail = "outputs present and valid"
    if isinstance(done, int | float):
        detail += f", {done:,.0f} items"
    if isinstance(rate, int | float):
        detail += f" at {rate:,.1f}/s on average"
    if isinstance(elapsed, int | float):
        detail += f" in {elapsed:,.0f}s"
    out.update({"job.verified": True, "job.verify_detail": detail, "job.diagnosis": "ok",
                "job.diagnosis_detail": detail})
    return out


def diagnose(facts: Mapping[str, Any], file_sets: list[str], expect_counts: dict[str, int],
             validated: list[str], oom_check: OomCheck = oom_killer_saw) -> Facts:
    """job.diagnosis, job.diagnosis_detail, job.verified and job.verify_detail for an ended
    job (nothing while it runs); see the module docstring for the order."""
    if not facts.get("job.terminal"):
        return {}
    given = facts.get("job.diagnosis")
    given_detail = facts.get("job.diagnosis_detail")
    specific = isinstance(given, str) and given not in GENERIC
    if _ended_well(facts) and not specific:
        return verify(facts, file_sets, expect_counts, validated)
    kind, detail, evidenced = classify(facts, oom_check)
    if specific:
        if kind == given and evidenced:
            return {"job.diagnosis": given, "job.diagnosis_detail": detail}
        return {}  # the probe's own diagnosis stands
    if kind == "unknown" and isinstance(given_detail, str) and given_detail:
        return {"job.diagnosis": "unknown", "job.diagnosis_detail": given_detail}
    return {"job.diagnosis": kind, "job.diagnosis_detail": detail}


class Diagnoser:
    """`diagnose` with the kernel-log OOM check made once per instance (a terminal job is
    diagnosed again every tick), from one `KernelLog` read at most once per tick (`now`):
    64 workers killed at once are one read, not 64 dmesg runs and 64 x 12 MB of files. It
    runs on the engine thread."""

    def __init__(self, kernel_logs: Sequence[Path] = KERNEL_LOGS,
                 dmesg: Sequence[str] | None = DMESG) -> None:
        self.kernel = KernelLog(kernel_logs, dmesg)
        self._oom: dict[tuple[str, Any], bool] = {}
        self._read_at: float | None = None  # the tick of the last read

    def diagnose(self, key: str, facts: Mapping[str, Any], file_sets: list[str],
                 expect_counts: dict[str, int], validated: list[str],
                 now: float | None = None) -> Facts:
        """`diagnose`; `now` is the tick (None: a read for every new question)."""
        def check(pid: Any) -> bool:
            found = self._oom.get((key, pid))
            if found is None:
                if len(self._oom) > 65_536:
                    self._oom.clear()
                found = False
                if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
                    if now is None or now != self._read_at:
                        self._read_at = now
                        self.kernel.refresh()
                    found = self.kernel.oom_killed(pid)
                self._oom[(key, pid)] = found
            return found

        return diagnose(facts, file_sets, expect_counts, validated, check)

    def close(self) -> None:
        self.kernel.close()
