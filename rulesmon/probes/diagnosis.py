"""Why a job ended badly, and whether one that ended well really did its work.

Derived after every probe has reported, from the scheduler's verdict, the log's error
patterns and the job's files: the GPU design document's crash classification (OOM, exit 137,
time limit, NaN divergence, NCCL, missing output) and its final verification (outputs present
and valid, items processed against the expected total).

The order matters, because one ending often leaves several kinds of evidence:

1. A diagnosis a probe already gave is kept when it is specific (`launch_failed`, `cancelled`,
   `time_limit`, a hold code's `missing_output`...): the probe saw why the job ended. Only the
   generic ones (`ok`, `nonzero_exit`, `signal`, `killed`, `unknown`), which say no more than
   the exit status, are refined here; for the same class, a detail backed by evidence (the
   log line, the kernel log) replaces the probe's.
2. The scheduler's own terminal states (OUT_OF_MEMORY, TIMEOUT, DEADLINE, CANCELLED, REMOVED,
   PREEMPTED, NODE_FAIL, BOOT_FAIL) come before anything inferred: `scancel -s KILL` and a
   time limit enforced with SIGKILL are not out of memory.
3. Log evidence (CUDA OOM, a CPU allocation failure, a DataLoader worker killed by the OOM
   killer, SLURM's `Detected N oom_kill event` line read from the job's cgroup, NaN loss,
   NCCL errors) explains a bad ending. Of a clean exit (code 0) only a NaN or infinite *loss*
   counts: a finished run may have recovered from a CUDA OOM, and fp16 loss scaling skips the
   steps whose gradient norm is NaN. A loss that is NaN at the end (or, when no loss is
   extracted, on the last NaN line) makes the run `nan`, not `ok`.
4. SIGKILL / exit 137 is `oom` only with evidence: the kernel's OOM-killer record of the pid
   (a readable kernel log, or `dmesg` where none is, through xid.py's `KernelLog`, which
   follows them incrementally and is read at most once per tick for every instance killed
   then; each instance is checked once), or, for a local job, an `oom_kill` counted on the
   tick its end was seen by the memory cgroup rulesmon and its workers run in (cgroup v2
   `memory.events`, v1 `memory.oom_control`; `Diagnoser.tick` reads it once per tick, and
   each OOM kill counted explains one SIGKILLed worker), besides the scheduler's
   OUT_OF_MEMORY and the log lines above. Without it the job is `killed`: a `kill -9` (by
   hand or by a tool) and the OOM killer look alike from the exit status, so
   `job.diagnosis_hint` says "possibly out of memory" and whether the kernel's messages could
   be read. Then other signals, then a non-zero exit code.
5. Only a COMPLETED job with exit code 0 is verified (`ok`, `nan` or `missing_output`); any
   other terminal state without an explanation is `unknown`, never `ok`. Verification states
   only what it checked: `job.verified` stays unknown when the job declared no file sets and
   no expected total, and "outputs present and valid" is said only when every declared file
   set was found and validated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import Facts
from .xid import DMESG, KERNEL_LOGS, KernelLog, oom_killer_saw

COMPLETE_PCT = 99.0
#: Diagnoses that only restate the exit status: refined from the evidence here.
GENERIC = frozenset({"ok", "nonzero_exit", "signal", "killed", "unknown"})
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
#: The hint of a `killed` job (`job.diagnosis_hint`) starts with this.
HINT_OOM = "possibly out of memory"
#: A NaN or infinite loss on a log line (not a gradient norm alone), spelt as the nan-loss
#: preset spells them.
_NAN_LOSS = re.compile(r"(?a)loss(?:_step|_epoch)?['\"]?\s*[:=]\s*['\"]?[-+]?"
                       r"(?:nan|NaN|NAN|infinity|inf|Infinity|Inf)\b")

#: Whether the kernel's OOM killer ended this pid: True, or the evidence in words (its record
#: names it), False (the kernel's messages were read and do not), None (they could not be
#: read, or there is no pid).
OomCheck = Callable[[Any], "bool | str | None"]
#: The memory cgroup files that count OOM kills: (cgroup v2 mount, v1 memory mount).
CGROUP_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")


def own_cgroup_oom_file(proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path | None:
    """The file counting the OOM kills of the memory cgroup this process (and the workers
    it launches) runs in: cgroup v2 `memory.events` or v1 `memory.oom_control`; None when
    neither can be read."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        rel = path.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":
            candidates = [root / rel / "memory.events" for root in CGROUP_ROOTS]
        elif "memory" in controllers.split(","):
            candidates = [CGROUP_V1_MEMORY / rel / "memory.oom_control"]
        else:
            continue
        for candidate in candidates:
            if oom_kills(candidate) is not None:
                return candidate
    return None


def oom_kills(path: Path) -> int | None:
    """The `oom_kill N` count of a memory.events / memory.oom_control file, or None."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def kernel_oom_check(pid: Any) -> bool | None:
    """One look at the kernel's messages for a single question (outside the engine): True
    when the OOM killer's record names the pid, else None (not known to be absent)."""
    return True if oom_killer_saw(pid) else None


def _count(facts: Mapping[str, Any], name: str) -> int:
    value = facts.get(f"log.errors.{name}.count")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _line(facts: Mapping[str, Any], name: str) -> str:
    line = facts.get(f"log.errors.{name}.last_line")
    return str(line).strip()[:300] if line else ""


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


def clean_exit_nan(facts: Mapping[str, Any]) -> str | None:
    """The NaN-loss evidence of a run that exited 0, or None: the extracted loss (`log.loss`)
    is NaN or infinite at the end, or, when no loss is extracted, the nan-loss preset's last
    line holds a NaN loss, not only a NaN gradient norm (fp16 loss scaling skips such steps).
    A finite last loss is a recovery."""
    loss = facts.get("log.loss")
    line = _line(facts, "nan_loss")
    if isinstance(loss, int | float) and not isinstance(loss, bool):
        if math.isfinite(float(loss)):
            return None
        return line or f"the last loss logged is {loss}"
    if not _count(facts, "nan_loss"):
        return None
    return line if _NAN_LOSS.search(line) else None


def _killed(signal: int, exit_code: Any, looked: bool) -> tuple[str, str, str]:
    """(how, detail, hint) of a SIGKILL without evidence of running out of memory;
    `looked`: the kernel's messages were read."""
    how = ("killed by SIGKILL (signal 9)" if signal == 9
           else f"exited with code {exit_code} (128 + 9: SIGKILL in a shell)")
    if looked:
        return (how, f"{how}; the kernel log has no OOM-killer record of it",
                f"{HINT_OOM}: the kernel's OOM killer also ends processes with SIGKILL, but "
                "its messages were read and do not name this process (a kill -9 by hand or "
                "by a tool is more likely)")
    return (how, f"{how}; no out-of-memory record found (scheduler state, job log)",
            f"{HINT_OOM}: the kernel's OOM killer also ends processes with SIGKILL, and its "
            "messages (dmesg, kern.log) could not be checked for this job")


def classify(facts: Mapping[str, Any], oom_check: OomCheck = kernel_oom_check
             ) -> tuple[str, str, bool]:
    """(diagnosis, detail, backed by evidence) for a job that did not end well."""
    kind, detail, evidenced, _hint = _classify(facts, oom_check)
    return kind, detail, evidenced


def _classify(facts: Mapping[str, Any], oom_check: OomCheck
              ) -> tuple[str, str, bool, str | None]:
    """`classify`, with the hint of a `killed` diagnosis."""
    state = facts.get("job.state")
    exit_code = facts.get("job.exit_code")
    signal = facts.get("job.signal") or 0
    evidence = _log_evidence(facts)
    if isinstance(state, str) and state in SCHEDULER_STATES:
        kind, detail = SCHEDULER_STATES[state]
        if evidence is not None and evidence[0] == kind:
            return kind, f"{detail}; {evidence[1]}", True, None
        if evidence is not None:
            detail += f" (the log also shows {evidence[0]}: {evidence[1]})"
        return kind, detail, False, None
    if facts.get("job.exceeded"):
        return "time_limit", "the job reached its time limit", False, None
    if evidence is not None and evidence[0] == "oom":
        return evidence[0], evidence[1], True, None
    if signal == 9 or (exit_code == 137 and not signal):
        seen = oom_check(facts.get("job.pid"))
        if seen:
            return ("oom", seen if isinstance(seen, str) else
                    "killed by SIGKILL (exit 137): the kernel's OOM killer ended it", True, None)
        how, detail, hint = _killed(signal, exit_code, seen is not None)
        if evidence is not None:  # a NaN or NCCL failure, then a kill (by hand, most likely)
            return evidence[0], f"{evidence[1]}; then {how}", True, None
        return "killed", detail, False, hint
    if evidence is not None:
        return evidence[0], evidence[1], True, None
    if signal:
        return "signal", f"killed by signal {signal}", False, None
    if isinstance(exit_code, int) and exit_code != 0:
        traceback = _line(facts, "traceback")
        return "nonzero_exit", f"exited with code {exit_code}" + (
            f" after a traceback: {traceback}" if traceback else ""), bool(traceback), None
    if state == "FAILED":
        return "unknown", "the scheduler reports FAILED without an exit code", False, None
    if state == "COMPLETED":
        return "unknown", "ended with COMPLETED but no exit code is known", False, None
    return "unknown", f"ended in state {state}", False, None


def verify(facts: Mapping[str, Any], file_sets: list[str], expect_counts: dict[str, int],
           validated: list[str]) -> Facts:
    """The GPU design's final verification of a job that ended well: it says only what it
    checked (no file sets and no expected total: `job.verified` stays unknown)."""
    out: Facts = {}
    problems: list[str] = []
    found: list[str] = []  # the file sets checked and present
    unchecked: list[str] = []  # declared sets whose files could not be counted
    for name in file_sets:
        count = facts.get(f"files.{name}.count")
        if not isinstance(count, int) or isinstance(count, bool):
            unchecked.append(name)
            continue
        if count == 0:
            problems.append(f"no {name} files")
            continue
        want = expect_counts.get(name)
        if want is not None and 0 < count < want:
            problems.append(f"{count}/{want} {name} files")
        if name in validated:
            valid = facts.get(f"files.{name}.valid")
            if valid is False:
                bad = facts.get(f"files.{name}.invalid") or []
                problems.append(f"invalid {name}: {', '.join(map(str, bad[:3]))}")
            found.append(f"{count:,} {name} valid" if valid is True
                         else f"{count:,} {name} (validity not known)")
        else:
            found.append(f"{count:,} {name} (not validated)")
    done, total = facts.get("progress.done"), facts.get("progress.total")
    counted = False
    if isinstance(done, int | float) and isinstance(total, int | float) and total > 0:
        counted = True
        pct = 100.0 * done / total
        if pct < COMPLETE_PCT:
            problems.append(f"processed {done:,.0f}/{total:,.0f} items ({pct:.1f}%)")
    nan = clean_exit_nan(facts)
    if nan is not None:
        detail = f"exited with code 0 but the loss diverged to NaN/inf: {nan}"
        out.update({"job.verified": False, "job.verify_detail": "; ".join(
            [f"the loss diverged to NaN/inf: {nan}", *problems]),
            "job.diagnosis": "nan", "job.diagnosis_detail": detail})
        return out
    if problems:
        out["job.verified"] = False
        out["job.verify_detail"] = "; ".join(problems)
        out["job.diagnosis"] = "missing_output"
        out["job.diagnosis_detail"] = "ended with exit 0 but " + "; ".join(problems)
        return out
    if not file_sets:
        what = "no outputs declared"
    elif not found:
        what = "outputs not checked (" + ", ".join(unchecked) + " could not be listed)"
    elif len(found) == len(file_sets) and all(f.endswith(" valid") for f in found):
        what = "outputs present and valid"
    else:
        what = "outputs present: " + ", ".join(found)
        if unchecked:
            what += "; not checked: " + ", ".join(unchecked)
    checked = bool(found) or counted
    rate = facts.get("progress.avg_rate")
    elapsed = facts.get("job.elapsed")
    detail = what
    if isinstance(done, int | float):
        detail += f", {done:,.0f} items"
    if isinstance(rate, int | float):
        detail += f" at {rate:,.1f}/s on average"
    if isinstance(elapsed, int | float):
        detail += f" in {elapsed:,.0f}s"
    if not checked:
        detail = "exited with code 0; nothing verified: " + detail
        out.update({"job.verify_detail": detail, "job.diagnosis": "ok",
                    "job.diagnosis_detail": detail})
        return out
    out.update({"job.verified": True, "job.verify_detail": detail, "job.diagnosis": "ok",
                "job.diagnosis_detail": detail})
    return out


def diagnose(facts: Mapping[str, Any], file_sets: list[str], expect_counts: dict[str, int],
             validated: list[str], oom_check: OomCheck = kernel_oom_check) -> Facts:
    """job.diagnosis, job.diagnosis_detail, job.diagnosis_hint, job.verified and
    job.verify_detail for an ended job (nothing while it runs); see the module docstring for
    the order."""
    if not facts.get("job.terminal"):
        return {}
    given = facts.get("job.diagnosis")
    given_detail = facts.get("job.diagnosis_detail")
    specific = isinstance(given, str) and given not in GENERIC
    if _ended_well(facts) and not specific:
        return verify(facts, file_sets, expect_counts, validated)
    kind, detail, evidenced, hint = _classify(facts, oom_check)
    if specific:
        if kind == given and evidenced:
            return {"job.diagnosis": given, "job.diagnosis_detail": detail}
        return {}  # the probe's own diagnosis stands
    if kind == "unknown" and isinstance(given_detail, str) and given_detail:
        return {"job.diagnosis": "unknown", "job.diagnosis_detail": given_detail}
    out: Facts = {"job.diagnosis": kind, "job.diagnosis_detail": detail}
    if hint is not None:
        out["job.diagnosis_hint"] = hint
    return out


class Diagnoser:
    """`diagnose` with the kernel-log OOM check made once per instance (a terminal job is
    diagnosed again every tick), from one `KernelLog` read at most once per tick (`now`):
    64 workers killed at once are one read, not 64 dmesg runs and 64 x 12 MB of files. It
    runs on the engine thread."""

    def __init__(self, kernel_logs: Sequence[Path] = KERNEL_LOGS,
                 dmesg: Sequence[str] | None = DMESG,
                 cgroup: Path | bool | None = True) -> None:
        """`cgroup`: the file counting OOM kills in rulesmon's memory cgroup (True: found
        from /proc/self/cgroup; None or False: not used)."""
        self.kernel = KernelLog(kernel_logs, dmesg)
        self._oom: dict[tuple[str, Any], bool | str | None] = {}
        self._read_at: float | None = None  # the tick of the last read
        self.cgroup = own_cgroup_oom_file() if cgroup is True else cgroup or None
        self._cgroup_count = oom_kills(self.cgroup) if self.cgroup is not None else None
        #: OOM kills the cgroup counted on this tick, not yet given to a SIGKILLed worker
        self._cgroup_fresh = 0

    def tick(self, now: float) -> None:
        """Once per tick, before the instances are diagnosed: the OOM kills the cgroup
        counted since the last tick (one file read)."""
        self._cgroup_fresh = 0
        if self.cgroup is None:
            return
        count = oom_kills(self.cgroup)
        if count is not None and self._cgroup_count is not None:
            self._cgroup_fresh = max(0, count - self._cgroup_count)
        self._cgroup_count = count

    def diagnose(self, key: str, facts: Mapping[str, Any], file_sets: list[str],
                 expect_counts: dict[str, int], validated: list[str],
                 now: float | None = None) -> Facts:
        """`diagnose`; `now` is the tick (None: a read for every new question)."""
        def check(pid: Any) -> bool | str | None:
            if (key, pid) in self._oom:
                return self._oom[(key, pid)]
            if len(self._oom) > 65_536:
                self._oom.clear()
            found: bool | str | None = None
            if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
                if now is None or now != self._read_at:
                    self._read_at = now
                    self.kernel.refresh()
                if self.kernel.oom_killed(pid):
                    found = True
                elif self.kernel.readable:
                    found = False
            if not found and self._cgroup_fresh > 0 and facts.get("job.source") == "local":
                self._cgroup_fresh -= 1  # one OOM kill counted explains one worker
                found = ("killed by SIGKILL (exit 137): the memory cgroup it ran in counted an "
                         f"OOM kill as it ended ({self.cgroup}: oom_kill "
                         f"{self._cgroup_count})")
            self._oom[(key, pid)] = found
            return found

        return diagnose(facts, file_sets, expect_counts, validated, check)

    def close(self) -> None:
        self.kernel.close()
