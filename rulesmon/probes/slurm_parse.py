# Over 800 lines: the parsers of four output layouts (squeue -O, squeue --json, sacct -P, sacct
# --json) share their helpers here; they are to become one module per layout in a slurm/
# package with the layout of issue 16.
"""Reading what squeue and sacct print, for every SLURM version rulesmon supports, as job facts.

Four layouts are understood:

- squeue's parseable format: `squeue -h -t all -O <SQUEUE_FIELDS, each with a \\x1f suffix>`
  (22.05 to 24.x), run with SLURM_TIME_FORMAT=%s so times are epoch seconds;
- sacct's parseable format: `sacct -P --delimiter=\\x1f -o <SACCT_FIELDS>` (header kept, so
  columns are found by name), one line for the job and one per step;
- `squeue --json` and `sacct --json` of the data_parser versions v0.0.38 (22.05), v0.0.39
  (23.02), v0.0.40 (23.11) and v0.0.41/42 (24.05/24.11). The later ones wrap numbers as
  `{"set", "infinite", "number"}`, give states as lists, and exit codes as
  `{"status", "return_code", "signal"}`; all of these are accepted wherever they appear.

22.05's `sacct --json` reports return code 0 for every normal exit (exit 3 included), in the
job, in its batch step, in its srun steps and in the derived code alike (checked on a real
22.05.8; its data_parser v0.0.38 writes `SUCCESS`, return code 0 for any normal exit): a 0 is
believed only when the state is COMPLETED, else the exit code is left unknown.
The probe reads sacct's parseable ExitCode column on 22.05 for that reason.

Everything returns plain fact dicts (`{"job.state": "RUNNING", ...}`). Output that is not the
asked-for layout (a line with the wrong number of fields, a job id that is not one, JSON that
is not a job list) raises `SlurmParseError` (a `ProbeError`) with one line that says what was
wrong. A record of the right shape holding a value that cannot be read (a size `1..2G`, a date
`2024-13-45T99:00:00`, an array task list `1-x`) is that record's error alone: given a
`skipped` list, the parsers leave the record out and append `(job id, message)` to it, so one
bad record never fails a whole poll; without one they raise it. Nothing here runs a command.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from .base import Facts, ProbeError

SEP = "\x1f"
#: squeue -O fields, in output order (the same names from 20.11 to 24.x).
SQUEUE_FIELDS = ("JobID", "JobArrayID", "ArrayJobID", "ArrayTaskID", "Name", "UserName",
                 "Partition", "Account", "QOS", "State", "Reason", "NumNodes", "NodeList",
                 "NumCPUs", "tres-alloc", "tres-per-node", "MinMemory", "SubmitTime",
                 "StartTime", "EndTime", "TimeUsed", "TimeLimit", "TimeLeft", "RestartCnt",
                 "WorkDir", "STDOUT", "STDERR")
#: sacct -o fields (looked up by the header's names).
SACCT_FIELDS = ("JobID", "JobIDRaw", "JobName", "User", "Partition", "Account", "QOS", "State",
                "ExitCode", "Reason", "Submit", "Start", "End", "ElapsedRaw", "TimelimitRaw",
                "NNodes", "NodeList", "AllocCPUS", "ReqCPUS", "ReqMem", "MaxRSS", "TotalCPU",
                "UserCPU", "SystemCPU", "AllocTRES", "ReqTRES", "WorkDir", "NTasks")
#: Set (True) on a record one of whose steps has neither MaxRSS nor CPU time yet: a job
#: cancelled or timed out is final in accounting a moment before its steps' usage is (seen on
#: 24.11: the batch step CANCELLED with no figures for about half a second). The probe asks
#: once more before taking the record; not a fact (removed before facts leave the probe).
USAGE_PENDING = "_usage_pending"
#: Largest number of tasks a pending array record ("7_[0-99999]") is expanded into.
MAX_ARRAY_EXPANSION = 100_000

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                      "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"})
#: SLURM's states (long and short forms) to rulesmon's normalised set.
_STATES = {
    "PENDING": "PENDING", "PD": "PENDING", "RUNNING": "RUNNING", "R": "RUNNING",
    "SUSPENDED": "SUSPENDED", "S": "SUSPENDED", "STOPPED": "SUSPENDED", "ST": "SUSPENDED",
    "COMPLETING": "COMPLETING", "CG": "COMPLETING", "STAGE_OUT": "COMPLETING",
    "SO": "COMPLETING", "COMPLETED": "COMPLETED", "CD": "COMPLETED", "FAILED": "FAILED",
    "F": "FAILED", "SPECIAL_EXIT": "FAILED", "SE": "FAILED", "CANCELLED": "CANCELLED",
    "CA": "CANCELLED", "REVOKED": "CANCELLED", "RV": "CANCELLED", "TIMEOUT": "TIMEOUT",
    "TO": "TIMEOUT", "OUT_OF_MEMORY": "OUT_OF_MEMORY", "OOM": "OUT_OF_MEMORY",
    "NODE_FAIL": "NODE_FAIL", "NF": "NODE_FAIL", "PREEMPTED": "PREEMPTED", "PR": "PREEMPTED",
    "BOOT_FAIL": "BOOT_FAIL", "BF": "BOOT_FAIL", "DEADLINE": "DEADLINE", "DL": "DEADLINE",
    "CONFIGURING": "PENDING", "CF": "PENDING", "REQUEUED": "PENDING", "RQ": "PENDING",
    "REQUEUE_FED": "PENDING", "RF": "PENDING", "REQUEUE_HOLD": "HELD", "RH": "HELD",
    "RESV_DEL_HOLD": "HELD", "RD": "HELD", "RESIZING": "RUNNING", "RS": "RUNNING",
    "SIGNALING": "RUNNING", "SI": "RUNNING",
}
_HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin"})
_OUTCOME = {"COMPLETED": "success", "FAILED": "failed", "OUT_OF_MEMORY": "failed",
            "CANCELLED": "cancelled", "PREEMPTED": "cancelled", "TIMEOUT": "timeout",
            "DEADLINE": "timeout", "NODE_FAIL": "error", "BOOT_FAIL": "error"}
#: What SLURM knows of why a job ended, before logs and files are looked at.
_DIAGNOSIS = {"TIMEOUT": ("time_limit", "SLURM ended the job at its time limit (TIMEOUT)"),
              "DEADLINE": ("time_limit", "SLURM ended the job at its deadline"),
              "OUT_OF_MEMORY": ("oom", "SLURM reports OUT_OF_MEMORY: the job used more memory "
                                "than it requested"),
              "CANCELLED": ("cancelled", "the job was cancelled"),
              "PREEMPTED": ("cancelled", "the job was preempted"),
              "NODE_FAIL": ("node_failure", "a node failed under the job (NODE_FAIL)"),
              "BOOT_FAIL": ("node_failure", "a node failed to boot for the job (BOOT_FAIL)")}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_MEM = re.compile(r"^\s*([0-9.]+)\s*([KMGTP]?)i?B?\s*([nc]?)\s*$", re.I)
_ARRAY_PENDING = re.compile(r"^(\d+)_\[([^\]]*)\]$")
#: NO_VAL: what 24.11's squeue --json writes for %a in the output paths of a pending array.
_NO_TASK = "4294967294"
_GPU_TRES = re.compile(r"gres/gpu(?::[^=,]*)?=(\d+)")
_GPU_GRES = re.compile(r"gres[:/]gpu(?::[A-Za-z][\w.-]*)?(?::(\d+))?(?=,|\(|$)")
_PLACEHOLDER = re.compile(r"%%|%(\d*)([jAaxuN])")
_TIME_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


class SlurmParseError(ProbeError):
    """Output that is not what the SLURM command was asked to print (one line)."""


#: (job id as printed, one-line message) of each record left out of a parse.
Skipped = list[tuple[str, str]]
#: What a bad value in the outside world's data can raise while a record is read.
_RECORD_ERRORS = (SlurmParseError, ValueError, TypeError, AttributeError, KeyError,
                  OverflowError)


def _skip(skipped: Skipped | None, jid: str, where: str, exc: Exception) -> None:
    """Leave one bad record out (noted in `skipped`), or raise when no list was given."""
    message = str(exc) if isinstance(exc, SlurmParseError) else \
        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    message = f"{where}: job {_show(jid, 40)} skipped: {message}"
    if skipped is None:
        raise SlurmParseError(message) from None
    skipped.append((jid, message))


# --- small values -----------------------------------------------------------------------------


def version(text: str) -> tuple[int, int]:
    """`slurm 22.05.8` → (22, 5); SlurmParseError when no version is in the text."""
    m = _VERSION.search(text)
    if m is None:
        raise SlurmParseError(f"no SLURM version in {_show(text)}")
    return int(m.group(1)), int(m.group(2))


@lru_cache(maxsize=8192)
def duration(text: str) -> float | None:
    """`[days-][hours:]minutes:seconds[.frac]` in seconds; None for UNLIMITED, N/A, empty.

    Split by hand rather than by a regex: two of these per job (elapsed, time left), nearly
    all distinct, so the cache rarely helps and the regex was half the cost."""
    text = text.strip()
    if not text or not text[0].isdecimal():
        return None
    days, dash, rest = text.partition("-")
    if not dash:
        days, rest = "0", text
    parts = rest.split(":")
    if len(parts) == 1:
        return float(text) * 60 if text.isdecimal() else None  # a bare number is minutes
    *whole, seconds = parts
    if len(whole) > 2 or not days.isdecimal() or not all(p.isdecimal() for p in whole):
        return None
    if not seconds.isdecimal():
        sec_int, dot, frac = seconds.partition(".")
        if not (dot and sec_int.isdecimal() and frac.isdecimal()):
            return None
    minutes = int(whole[-1])
    hours = int(whole[0]) if len(whole) == 2 else 0
    return int(days) * 86400 + hours * 3600 + minutes * 60 + float(seconds)


@lru_cache(maxsize=8192)
def memory(text: str, nodes: int = 1, cpus: int = 1) -> int | None:
    """A size in bytes: `3208K`, `64M`, `4G`; SLURM's `64Mn` (per node) and `64Mc` (per CPU)
    forms are multiplied out to the job's total. Bare numbers are MiB (SLURM's default)."""
    m = _MEM.match(text)
    if m is None:
        return None
    number, unit, per = m.groups()
    try:
        value = float(number) * (_UNITS[unit.upper()] if unit else 1 << 20)
    except ValueError:
        raise SlurmParseError(f"size {_show(text, 40)} is not a number SLURM prints") from None
    if per.lower() == "n":
        value *= max(1, nodes)
    elif per.lower() == "c":
        value *= max(1, cpus)
    return int(value)


def bytes_value(text: str) -> int | None:
    """MaxRSS-style sizes (`3208K`, `0`): bare numbers are bytes here."""
    text = text.strip()
    if not text:
        return None
    if text[-1].isdigit():
        try:
            return int(float(text))
        except (ValueError, OverflowError):
            raise SlurmParseError(f"size {_show(text, 40)} is not a number SLURM "
                                  "prints") from None
    return memory(text)


def timestamp(text: str) -> float | None:
    """Epoch seconds (SLURM_TIME_FORMAT=%s) or an ISO local time; None for Unknown/N/A/None."""
    text = text.strip()
    if text.isdigit():
        value = int(text)
        return float(value) if value > 0 else None
    if _TIME_ISO.match(text):
        import time

        try:
            return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
        except (ValueError, OverflowError):
            raise SlurmParseError(f"time {_show(text, 40)} is not a date") from None
    return None


def integer(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


@lru_cache(maxsize=8192)
def normal_state(raw: str, reason: str = "") -> str:
    """SLURM's state word (`CANCELLED by 0`, `CANCELLED+`, `PD`) in the normalised set."""
    word = raw.strip().partition(" ")[0].rstrip("+").upper()
    state = _STATES.get(word, "UNKNOWN")
    if state == "PENDING" and reason in _HELD_REASONS:
        return "HELD"
    return state


def exit_code(text: str) -> tuple[int | None, int]:
    """sacct's `code:signal` (`3:0`, `0:9`) as (exit code, signal)."""
    code, _, sig = text.strip().partition(":")
    c = int(code) if code.isdigit() else None
    s = int(sig) if sig.isdigit() else 0
    if s >= 65:  # 0:125 marks OUT_OF_MEMORY: no signal, and the 0 is no exit status either
        return None, 0  # (sacct --json says SIGNALED 125 for the same job: no code there)
    return c, s


@lru_cache(maxsize=8192)
def gpus_from_tres(tres: str) -> int | None:
    """GPUs in an AllocTRES/ReqTRES string (`cpu=4,gres/gpu=2,gres/gpu:a100=2`)."""
    found = [int(n) for n in _GPU_TRES.findall(tres)]
    if not found:
        return None
    # a typed count (gres/gpu:a100=2) repeats the total (gres/gpu=2): take the largest
    return max(found)


@lru_cache(maxsize=8192)
def gpus_from_gres(gres: str, nodes: int = 1) -> int | None:
    """GPUs per node in a TRES-per-node string (`gres:gpu:2`, `gres/gpu:a100:2`), times the
    node count."""
    total = None
    for m in _GPU_GRES.finditer(gres):
        total = (total or 0) + int(m.group(1) or 1)
    return None if total is None else total * max(1, nodes)


def expand_placeholders(path: str, facts: Mapping[str, Any]) -> str:
    """sbatch's filename patterns (%j %A %a %x %u %N, %% and zero padding like %3a) filled
    from the job's facts; an unknown one stays as it is."""
    if "%" not in path:
        return path
    # the usual case (`%x-%j.out`): a few replacements, no per-path parsing; anything left
    # (%%, padding, %N, an unknown value) goes the careful way from the original
    done = path
    for code, key, fallback in _CODES:
        if code in done:
            value = facts.get(key)
            if value is None and fallback:
                value = facts.get(fallback)
            if value is None:
                break
            done = done.replace(code, str(value))
    if "%" not in done:
        return done
    out: list[str] = []
    for literal, code, pad in _template(path):
        if literal:
            out.append(literal)
        if not code:
            continue
        value = _placeholder(code, facts)
        if value is None:
            out.append(f"%{pad}{code}")
        elif pad and isinstance(value, int):
            out.append(str(value).zfill(int(pad)))
        else:
            out.append(str(value))
    return "".join(out)


_CODES = (("%j", "_job_id_raw", "job.id"), ("%x", "job.name", None),
          ("%A", "job.array_id", "job.id"), ("%a", "job.array_task", None),
          ("%u", "job.user", None))


def _template(path: str) -> tuple[tuple[str, str, str], ...]:
    """A path split once into (literal, placeholder code, padding) pieces."""
    pieces: list[tuple[str, str, str]] = []
    last = 0
    literal = ""
    for m in _PLACEHOLDER.finditer(path):
        literal += path[last:m.start()]
        last = m.end()
        if m.group(0) == "%%":
            literal += "%"
            continue
        pieces.append((literal, m.group(2), m.group(1)))
        literal = ""
    pieces.append((literal + path[last:], "", ""))
    return tuple(pieces)


def _placeholder(code: str, facts: Mapping[str, Any]) -> Any:
    if code == "j":
        return facts.get("_job_id_raw") or facts.get("job.id")
    if code == "x":
        return facts.get("job.name")
    if code == "A":
        return facts.get("job.array_id") or facts.get("job.id")
    if code == "a":
        return facts.get("job.array_task")
    if code == "u":
        return facts.get("job.user")
    node_list = str(facts.get("job.node_list") or "")  # %N: the first node, when plain
    return node_list.split(",", 1)[0] if node_list and "[" not in node_list else None


def expand_tasks(spec: str, limit: int = MAX_ARRAY_EXPANSION) -> list[int]:
    """A pending array record's task list (`0-9%2`, `1,3,5-7`, `0-99:10`) as indexes."""
    spec = spec.split("%", 1)[0]
    out: list[int] = []
    for item in spec.split(","):
        bounds, _, s = item.strip().partition(":")
        if not bounds:
            continue
        step = int(s) if s.isdigit() and int(s) > 0 else 1
        lo, _, hi = bounds.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise SlurmParseError(f"array task list {spec!r} is not SLURM's form")
        out.extend(range(int(lo), int(hi or lo) + 1, step))
        if len(out) > limit:
            raise SlurmParseError(f"array task list {spec!r} has over {limit} tasks")
    return out


# --- facts common to both commands -----------------------------------------------------------


def _settle(f: Facts, state: str, raw: str) -> None:
    """State, outcome and terminal facts from the normalised state."""
    f["job.state"] = state
    f["job.raw_state"] = raw
    terminal = state in TERMINAL
    f["job.terminal"] = terminal
    if not terminal:
        f["job.outcome"] = "running" if state in ("RUNNING", "COMPLETING", "SUSPENDED") \
            else "unknown"
        return
    f["job.outcome"] = _OUTCOME.get(state, "failed")
    diag = _DIAGNOSIS.get(state)
    if diag is not None:
        f["job.diagnosis"], f["job.diagnosis_detail"] = diag


def _finish_exit(f: Facts, code: int | None, sig: int) -> None:
    """Exit code and signal of an ended job, and whether it succeeded."""
    state = f.get("job.state")
    if sig:
        f["job.signal"] = sig
        f["job.exit_code"] = code if code else 128 + sig
    else:
        f["job.signal"] = 0
        if code is not None:
            f["job.exit_code"] = code
    if state == "COMPLETED" and code not in (None, 0):
        f["job.state"] = "FAILED"  # not seen from SLURM, but never call a failure a success
        f["job.outcome"] = "failed"
    f["job.succeeded"] = f["job.state"] == "COMPLETED" and not sig and code in (0, None)
    if f["job.state"] == "FAILED" and "job.diagnosis" not in f:
        if sig:
            f["job.diagnosis"], f["job.diagnosis_detail"] = "signal", f"killed by signal {sig}"
        elif code:
            f["job.diagnosis"], f["job.diagnosis_detail"] = ("nonzero_exit",
                                                             f"exited with code {code}")


def efficiency(f: Facts, cpu_seconds: int | None = None, mem_tasks: int | None = None) -> None:
    """seff's figures from facts already set (elapsed, cpus, cpu_time, max_rss, mem_req, limit,
    GPUs), computed as seff (SLURM 22.05 to 24.05.4) computes them.

    `cpu_seconds` is seff's CPU time: the steps' CPU time rounded to whole seconds (seff adds
    the steps' seconds and rounds their summed microseconds); `job.cpu_eff` is it over
    elapsed x CPUs, to two decimals, and `job.cpu_eff_exact` the unrounded ratio. `mem_tasks`
    is the task count of the step with the largest MaxRSS: seff's memory used is that MaxRSS
    (one task's peak) times the step's tasks, `job.mem_used`, over the requested memory."""
    elapsed = f.get("job.elapsed")
    cpus = f.get("job.cpus")
    cpu_time = f.get("job.cpu_time")
    if isinstance(elapsed, int | float) and elapsed > 0 and isinstance(cpus, int) and cpus > 0 \
            and isinstance(cpu_time, int | float):
        if cpu_seconds is None:
            cpu_seconds = int(cpu_time + 0.5)
        core_walltime = elapsed * cpus
        f["job.cpu_eff"] = round(cpu_seconds / core_walltime * 100, 2)  # seff's order
        f["job.cpu_eff_exact"] = round(100.0 * cpu_time / core_walltime, 4)
    rss, req = f.get("job.max_rss"), f.get("job.mem_req")
    if isinstance(rss, int):
        used_kib = rss / 1024 * max(1, mem_tasks or 1)  # seff's KiB: MaxRSS x the step's tasks
        f["job.mem_used"] = int(used_kib * 1024)
        if isinstance(req, int) and req > 0:
            f["job.mem_eff"] = round(used_kib / (req / 1024) * 100, 2)
    time_figures(f)
    gpus = f.get("job.gpus")
    if isinstance(gpus, int) and isinstance(elapsed, int | float):
        f["job.gpu_hours"] = round(gpus * elapsed / 3600.0, 4)


def time_figures(f: Facts) -> None:
    """`job.time_eff` (elapsed / limit) and `job.exceeded` (TIMEOUT, or the limit reached)
    from the facts at hand: accounting's, or squeue's when accounting never has the job."""
    elapsed = f.get("job.elapsed")
    limit = f.get("job.time_limit")
    if isinstance(elapsed, int | float) and isinstance(limit, int | float) and limit > 0:
        f["job.time_eff"] = round(100.0 * elapsed / limit, 2)
        f["job.exceeded"] = f.get("job.state") == "TIMEOUT" or elapsed >= limit
    elif f.get("job.state") == "TIMEOUT":
        f["job.exceeded"] = True
    else:
        f["job.exceeded"] = False


# --- squeue parseable ------------------------------------------------------------------------


def squeue_format() -> str:
    """The -O argument: every field with the separator as its suffix (no width, no cut)."""
    return ",".join(f"{name}:{SEP}" for name in SQUEUE_FIELDS)


@contextmanager
def no_gc() -> Iterator[None]:
    """Cyclic GC paused while tens of thousands of acyclic dicts are built (it would scan the
    growing heap again and again for nothing)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_squeue(text: str, skipped: Skipped | None = None) -> list[Facts]:
    """Facts of every job in `squeue -h -t all -O <squeue_format()>` output.

    A pending array record (`7_[2-5%2]`) becomes one job per task; lines of the wrong shape
    are a SlurmParseError (squeue's messages go to stderr, so stdout holds only records); a
    record with a value that cannot be read is skipped into `skipped` (see the module doc).
    """
    with no_gc():
        return _parse_squeue(text, skipped)


def _parse_squeue(text: str, skipped: Skipped | None) -> list[Facts]:
    out: list[Facts] = []
    width = len(SQUEUE_FIELDS) + 1
    append = out.append
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        parts = line.split(SEP)
        if len(parts) != width:
            raise SlurmParseError(f"squeue line {number} has {len(parts) - 1} fields, not "
                                  f"{width - 1}: {_show(line)}")
        if not parts[0].isdigit():
            raise SlurmParseError(f"squeue line {number}: job id {_show(parts[0])} is not a "
                                  "number")
        if parts[26] == "(null)":  # 24.11 without --error: stderr goes to the stdout file
            parts[26] = "" if parts[25] == "(null)" else parts[25]
        if parts[25] == "(null)":  # 24.11, a job run by srun or salloc: no output file
            parts[25] = ""
        try:
            f = _squeue_record(parts)
            m = _ARRAY_PENDING.match(parts[1]) if "[" in parts[1] else None
            if m is None:
                append(f)
            else:
                out.extend(list(_tasks(f, m.group(1), m.group(2), parts[25], parts[26])))
        except _RECORD_ERRORS as exc:
            # the id its tasks are tracked under: a pending array record's own id is the
            # array's (its tasks have no raw id yet), any other record's is the printed one
            jid = parts[0] if "[" in parts[1] or not parts[1] else parts[1]
            _skip(skipped, jid, f"squeue line {number}", exc)
    return out


def _squeue_record(parts: list[str]) -> Facts:
    (jobid, array_jobid, array_id, task, name, user, partition, account, qos, raw, reason,
     nodes, node_list, cpus, tres, tres_node, min_mem, submit, start, end, used, limit,
     left, restarts, workdir, stdout, stderr, _) = parts
    status, waiting, terminal = _state_facts(raw, reason)
    # copies of the shared dicts, then item by item: 2.5x faster than one {**a, **b, ...}
    f: Facts = status.copy()
    f.update(_resources(nodes, cpus, tres, tres_node, min_mem))
    f["job.id"] = array_jobid or jobid
    if array_jobid and array_jobid != jobid:  # an array task: its own id matters too
        f["_job_id_raw"] = jobid
    f["job.name"] = name
    f["job.user"] = user
    f["job.partition"] = partition
    f["job.account"] = account
    f["job.qos"] = qos
    f["job.node_list"] = "" if node_list == "(null)" else node_list
    f["job.restarts"] = int(restarts) if restarts.isdigit() else 0
    f["job.workdir"] = workdir
    t_submit = float(submit) if submit.isdigit() else timestamp(submit)
    if t_submit:
        f["job.submit_time"] = t_submit
    if start.isdigit() and not waiting:
        t_start = f["job.start_time"] = float(start)
        if t_submit:
            f["job.wait"] = max(0.0, t_start - t_submit)
        if terminal and end.isdigit():
            f["job.end_time"] = float(end)
    elif start[:1].isdigit() and not waiting:
        iso_start = timestamp(start)
        if iso_start is not None:
            f["job.start_time"] = iso_start
    elapsed = duration(used)
    if elapsed is not None:
        f["job.elapsed"] = elapsed
    tl = duration(limit)
    if tl is not None:
        f["job.time_limit"] = tl
        if not terminal:
            # squeue prints TimeLeft as TimeLimit - TimeUsed: the same, without a third parse
            tleft = duration(left) if elapsed is None else max(0.0, tl - elapsed)
            if tleft is not None:
                f["job.time_left"] = tleft
    if task != "N/A" and task:
        f["job.array_id"] = array_id
        if task.isdigit():
            f["job.array_task"] = int(task)
    if stdout:
        f["job.stdout"] = expand_placeholders(stdout, f) if "%" in stdout else \
            _array_default(stdout, jobid, f) if task != "N/A" else stdout
    if stderr:
        f["job.stderr"] = f["job.stdout"] if stderr == stdout else \
            expand_placeholders(stderr, f) if "%" in stderr else \
            _array_default(stderr, jobid, f) if task != "N/A" else stderr
    return f


def _array_default(path: str, raw: str, f: Mapping[str, Any]) -> str:
    """An array task's default output file. squeue (22.05) prints it as `slurm-<raw id>.out`,
    but sbatch writes `slurm-%A_%a.out` for a task (a pattern given with -o is printed with
    its placeholders, so this form is always sbatch's default)."""
    tail = f"/slurm-{raw}.out"
    if path.endswith(tail) and f.get("job.array_task") is not None:
        return f"{path[:-len(tail)]}/slurm-{f['job.array_id']}_{f['job.array_task']}.out"
    return path


@lru_cache(maxsize=4096)
def _state_facts(raw: str, reason: str) -> tuple[dict[str, Any], bool, bool]:
    """State, outcome and reason facts of a (state, reason) pair (few pairs, many jobs), and
    whether the job waits to start and whether it has ended."""
    f: Facts = {"job.reason": "" if reason == "None" else reason}
    state = normal_state(raw, reason)
    _settle(f, state, raw)
    return f, state in ("PENDING", "HELD"), bool(f["job.terminal"])


@lru_cache(maxsize=4096)
def _resources(nodes: str, cpus: str, tres: str, tres_node: str, min_mem: str) -> dict[str, Any]:
    """Node, CPU, GPU and memory facts of a job's resource columns (shared by many jobs)."""
    n_nodes = int(nodes) if nodes.isdigit() else 1
    f: Facts = {"job.nodes": n_nodes}
    if cpus.isdigit():
        f["job.cpus"] = int(cpus)
    gpus = gpus_from_tres(tres) if "gpu" in tres else None
    if gpus is None and "gpu" in tres_node:
        gpus = gpus_from_gres(tres_node, n_nodes)
    f["job.gpus"] = gpus or 0
    mem = _tres_mem(tres)
    if mem is None and min_mem[:1].isdigit():
        mem = memory(min_mem, n_nodes)
    if mem is not None:
        f["job.mem_req"] = mem
    return f


def _tasks(f: Facts, array_id: str, spec: str, stdout: str, stderr: str) -> Iterator[Facts]:
    for index in expand_tasks(spec):
        task = dict(f)
        task.update({"job.id": f"{array_id}_{index}", "job.array_id": array_id,
                     "job.array_task": index, "_job_id_raw": None})
        raw = str(f.get("_job_id_raw") or array_id)
        if stdout:
            task["job.stdout"] = expand_placeholders(stdout, task) if "%" in stdout else \
                _array_default(stdout, raw, task)
        if stderr:
            task["job.stderr"] = expand_placeholders(stderr, task) if "%" in stderr else \
                _array_default(stderr, raw, task)
        yield task


@lru_cache(maxsize=8192)
def _tres_mem(tres: str) -> int | None:
    for item in tres.split(","):
        if item.startswith("mem="):
            return memory(item[4:])
    return None


# --- sacct parseable -------------------------------------------------------------------------


def parse_sacct(text: str, skipped: Skipped | None = None) -> dict[str, Facts]:
    """Facts by job id (`42`, `41_3`) from `sacct -P --delimiter=\\x1f -o <SACCT_FIELDS>`.

    The job's line gives its identity, state and exit code; the step lines give CPU time
    (summed) and MaxRSS (the largest), as seff reads them. A job whose line or steps hold a
    value that cannot be read is skipped into `skipped` (see the module doc).
    """
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    if not lines:
        return {}
    header = lines[0].split(SEP)
    missing = [name for name in ("JobID", "State") if name not in header]
    if missing:
        raise SlurmParseError(f"sacct output has no {'/'.join(missing)} column: "
                              f"{_show(lines[0])}")
    col = {name: i for i, name in enumerate(header)}
    width = len(header)
    jobs: dict[str, Facts] = {}
    steps: dict[str, list[dict[str, str]]] = {}
    for number, line in enumerate(lines[1:], 2):
        parts = line.split(SEP)
        if len(parts) != width:
            raise SlurmParseError(f"sacct line {number} has {len(parts)} fields, not {width}: "
                                  f"{_show(line)}")
        row = {name: parts[i] for name, i in col.items()}
        jid = row["JobID"]
        base, dot, _step = jid.partition(".")
        pending = _ARRAY_PENDING.match(base)
        if not base or not (base.replace("_", "").isdigit() or "+" in base or pending):
            raise SlurmParseError(f"sacct line {number}: job id {_show(jid)} is not SLURM's")
        if dot:
            steps.setdefault(base, []).append(row)
            continue
        try:
            if pending:  # tasks not started yet: one job each, as squeue shows them
                facts = _sacct_job(row)
                for index in expand_tasks(pending.group(2)):
                    tid = f"{pending.group(1)}_{index}"
                    jobs[tid] = {**facts, "job.id": tid, "_job_id_raw": None,
                                 "job.array_id": pending.group(1), "job.array_task": index}
            else:
                jobs[base] = _sacct_job(row)
        except _RECORD_ERRORS as exc:
            _skip(skipped, base, f"sacct line {number}", exc)
    out: dict[str, Facts] = {}
    for jid, facts in jobs.items():
        try:
            cpu_seconds, tasks = _sacct_steps(facts, steps.get(jid, []))
            efficiency(facts, cpu_seconds, tasks)
        except _RECORD_ERRORS as exc:
            _skip(skipped, jid, "sacct steps", exc)
            continue
        out[jid] = with_default_output(facts)  # after the tasks got their own ids
    return out


def _sacct_job(row: Mapping[str, str]) -> Facts:
    get = row.get
    jid = row["JobID"]
    raw = row["State"]
    reason = get("Reason", "") or ""
    f: Facts = {"job.id": jid, "_job_id_raw": get("JobIDRaw") or jid}
    _settle(f, normal_state(raw, reason), raw)
    for fact, name in (("job.name", "JobName"), ("job.user", "User"),
                       ("job.partition", "Partition"), ("job.account", "Account"),
                       ("job.qos", "QOS"), ("job.workdir", "WorkDir")):
        value = get(name)
        if value:
            f[fact] = value
    f["job.reason"] = "" if reason in ("None", "") else reason
    f["job.node_list"] = "" if get("NodeList") in (None, "", "None assigned") \
        else row["NodeList"]
    nodes = integer(get("NNodes", "")) or 1
    f["job.nodes"] = nodes
    cpus = integer(get("AllocCPUS", "")) or integer(get("ReqCPUS", "")) or None
    if cpus:
        f["job.cpus"] = cpus
    base, _, task = jid.partition("_")
    if task.isdigit():
        f["job.array_id"], f["job.array_task"] = base, int(task)
    for fact, name in (("job.submit_time", "Submit"), ("job.start_time", "Start"),
                       ("job.end_time", "End")):
        when = timestamp(get(name, "") or "")
        if when is not None:
            f[fact] = when
    if "job.start_time" in f and "job.submit_time" in f:
        f["job.wait"] = max(0.0, f["job.start_time"] - f["job.submit_time"])
    if not f["job.terminal"]:
        f.pop("job.end_time", None)
    elapsed = integer(get("ElapsedRaw", "") or "")
    if elapsed is not None:
        f["job.elapsed"] = float(elapsed)
    limit = integer(get("TimelimitRaw", "") or "")
    if limit is not None:
        f["job.time_limit"] = float(limit * 60)
    tres = get("AllocTRES") or get("ReqTRES") or ""
    f["job.gpus"] = gpus_from_tres(tres) or 0
    req = get("ReqMem", "")
    mem = memory(req, nodes, cpus or 1) if req else None
    if mem is None:
        mem = _tres_mem(get("ReqTRES", "") or "")
    if mem is not None:
        f["job.mem_req"] = mem
    if f["job.terminal"]:
        code, sig = exit_code(get("ExitCode", "") or "")
        _finish_exit(f, code, sig)
    return f


def _sacct_steps(f: Facts, rows: list[dict[str, str]]) -> tuple[int | None, int | None]:
    """CPU times (summed) and MaxRSS (the largest) of the steps into `f`; returns seff's CPU
    seconds (the sum rounded to whole seconds) and the task count of the step with the
    largest MaxRSS (None when the rows do not say)."""
    cpu = user = system = 0.0
    total_ms = 0
    rss: int | None = None
    tasks: int | None = None
    seen = False
    for row in rows:
        total = duration(row.get("TotalCPU", "") or "")
        if total is not None:
            seen = True
            cpu += total
            # sacct prints milliseconds under an hour and whole seconds above
            total_ms += round(total * 1000)
            user += duration(row.get("UserCPU", "") or "") or 0.0
            system += duration(row.get("SystemCPU", "") or "") or 0.0
        value = bytes_value(row.get("MaxRSS", "") or "")
        if value is not None and (rss is None or value > rss):  # the first largest, as seff
            rss = value
            tasks = integer(row.get("NTasks", "") or "")
        if value is None and not total:
            f[USAGE_PENDING] = True
    if seen:
        f["job.cpu_time"], f["job.cpu_user"], f["job.cpu_sys"] = cpu, user, system
    if rss is not None:
        f["job.max_rss"] = rss
    return ((total_ms + 500) // 1000 if seen else None), tasks


# --- JSON (squeue --json, sacct --json) -------------------------------------------------------


def load_json(text: str, what: str) -> tuple[list[dict[str, Any]], str]:
    """The `jobs` of a --json document and its data_parser version (`v0.0.38`)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SlurmParseError(f"{what} --json printed no JSON ({exc.msg} at {exc.pos}): "
                              f"{_show(text)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise SlurmParseError(f"{what} --json printed no job list: {_show(text)}")
    errors = doc.get("errors") or []
    if errors and not doc["jobs"]:
        first = errors[0]
        message = first.get("description") or first.get("error") if isinstance(first, dict) \
            else first
        raise SlurmParseError(f"{what} --json reported an error: {message}")
    meta = doc.get("meta") or {}
    plugin = meta.get("plugin") or {}
    parser = str(plugin.get("data_parser") or plugin.get("type") or "")
    m = re.search(r"v\d+\.\d+\.\d+", parser)
    jobs = [j for j in doc["jobs"] if isinstance(j, dict)]
    if len(jobs) != len(doc["jobs"]):
        raise SlurmParseError(f"{what} --json: a job record is not an object")
    return jobs, m.group(0) if m else ""


def num(value: Any) -> float | None:
    """A number, or a v0.0.39+ `{"set", "infinite", "number"}` wrapper; None when unset or
    infinite."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    v = num(value)
    return None if v is None else int(v)


def _time(value: Any) -> float | None:
    v = num(value)
    return v if v is not None and v > 0 else None


def _state_word(value: Any) -> str:
    if isinstance(value, list):
        words = [str(v) for v in value]
        return words[0] if words else ""
    return str(value or "")


def _seconds(value: Any) -> float | None:
    """`{"seconds": s, "microseconds": us}` (sacct's CPU times) or a number."""
    if isinstance(value, dict) and "seconds" in value:
        s = num(value.get("seconds")) or 0.0
        us = num(value.get("microseconds")) or 0.0
        return s + us / 1e6
    return num(value)


def _exit_json(value: Any) -> tuple[int | None, int]:
    """`{"status", "return_code", "signal": {"signal_id"|"id", "name"}}` or a raw wait status
    (22.05's squeue) as (exit code, signal)."""
    if isinstance(value, dict):
        code = _int(value.get("return_code"))
        sig_block = value.get("signal")
        sig = 0
        if isinstance(sig_block, dict):
            sig = _int(sig_block.get("id", sig_block.get("signal_id"))) or 0
        status = value.get("status")
        words = status if isinstance(status, list) else [status]
        if "SIGNALED" in words and not sig:
            sig = code or 0
            code = None
        return code, sig if 0 < sig < 65 else 0
    raw = _int(value)
    if raw is None:
        return None, 0
    if raw & 0x7F:
        sig = raw & 0x7F
        return (None, sig) if sig < 65 else (None, 0)
    return raw >> 8, 0


def _tres_list(items: Any) -> dict[str, float]:
    """`[{"type": "gres", "name": "gpu", "count": 2}, ...]` as {"gres/gpu": 2, "mem": ...}."""
    out: dict[str, float] = {}
    if isinstance(items, list):
        for item in items:
            if not isinstance(item, dict):
                continue
            name = str(item.get("type") or "")
            if item.get("name"):
                name += f"/{item['name']}"
            count = num(item.get("count"))
            if count is not None:
                out[name] = max(out.get(name, 0.0), count)
    return out


def parse_squeue_json(text: str, skipped: Skipped | None = None,
                      now: float | None = None) -> list[Facts]:
    """Facts of every job in `squeue --json` (v0.0.38 to v0.0.42); a job holding a value
    that cannot be read is skipped into `skipped` (see the module doc).

    The JSON has no run time: a job's elapsed time and time left are computed as squeue
    computes its TIME and TIME_LEFT columns, from its start, end and suspend times and `now`
    (the time of the call, time.time() when not given) for a job still running."""
    jobs, _ = load_json(text, "squeue")
    if now is None:
        import time

        now = time.time()
    out: list[Facts] = []
    for job in jobs:
        if _int(job.get("job_id")) is None:
            raise SlurmParseError(f"squeue --json: a job has no job_id: "
                                  f"{_show(json.dumps(job))}")
        try:
            out.extend(list(_squeue_json_job(job, now)))
        except _RECORD_ERRORS as exc:
            _skip(skipped, str(_int(job.get("job_id"))), "squeue --json", exc)
    return out


def time_used(job: Mapping[str, Any], state: str, now: float) -> float | None:
    """squeue's TIME of a `squeue --json` record (its job_time_used): 0 while pending, the
    run time before the suspension while suspended, else until the end (now while running),
    less the time spent suspended; None without a start time."""
    start = _time(job.get("start_time"))
    if start is None or state in ("PENDING", "HELD"):
        return 0.0 if state in ("PENDING", "HELD") else None
    pre_sus = num(job.get("pre_sus_time")) or 0.0
    if state == "SUSPENDED":
        return pre_sus
    end = _time(job.get("end_time"))
    if state == "RUNNING" or end is None:
        end = now
    suspended = _time(job.get("suspend_time"))
    if suspended is not None:
        return max(0.0, end - suspended + pre_sus)
    return max(0.0, end - start)


def _squeue_json_job(job: Mapping[str, Any], now: float) -> Iterator[Facts]:
    jid = _int(job.get("job_id"))
    if jid is None:
        raise SlurmParseError(f"squeue --json: a job has no job_id: {_show(json.dumps(job))}")
    raw = _state_word(job.get("job_state"))
    reason = str(job.get("state_reason") or "")
    f: Facts = {"_job_id_raw": str(jid), "job.id": str(jid),
                "job.name": str(job.get("name") or ""),
                "job.user": str(job.get("user_name") or job.get("user_id") or ""),
                "job.partition": str(job.get("partition") or ""),
                "job.account": str(job.get("account") or ""),
                "job.qos": str(job.get("qos") or ""),
                "job.reason": "" if reason == "None" else reason,
                "job.node_list": str(job.get("nodes") or ""),
                "job.restarts": _int(job.get("restart_cnt")) or 0,
                "job.workdir": str(job.get("current_working_directory") or "")}
    state = normal_state(raw, reason)
    _settle(f, state, raw)
    nodes = _int(job.get("node_count")) or 1
    f["job.nodes"] = nodes
    cpus = _int(job.get("cpus"))
    if cpus:
        f["job.cpus"] = cpus
    tres = str(job.get("tres_alloc_str") or job.get("tres_req_str") or "")
    gpus = gpus_from_tres(tres)
    if gpus is None:
        gpus = gpus_from_gres(str(job.get("tres_per_node") or ""), nodes)
    f["job.gpus"] = gpus or 0
    mem = _tres_mem(tres)
    if mem is None:
        per_node = _int(job.get("memory_per_node"))
        per_cpu = _int(job.get("memory_per_cpu"))
        if per_node:
            mem = per_node * nodes << 20
        elif per_cpu and cpus:
            mem = per_cpu * cpus << 20
    if mem is not None:
        f["job.mem_req"] = mem
    submit, start, end = (_time(job.get(k)) for k in ("submit_time", "start_time", "end_time"))
    if submit is not None:
        f["job.submit_time"] = submit
    if start is not None and state not in ("PENDING", "HELD"):
        f["job.start_time"] = start
        if submit is not None:
            f["job.wait"] = max(0.0, start - submit)
        if f["job.terminal"] and end is not None:
            f["job.end_time"] = end
    used = time_used(job, state, now)  # squeue's TIME: 0 while pending, as -O TimeUsed
    if used is not None:
        f["job.elapsed"] = used
    limit = num(job.get("time_limit"))
    if limit is not None:
        f["job.time_limit"] = limit * 60
        if used is not None and not f["job.terminal"]:
            f["job.time_left"] = max(0.0, limit * 60 - used)  # squeue's TIME_LEFT
    task = _int(job.get("array_task_id"))
    array = _int(job.get("array_job_id"))
    if array and task is not None:
        f.update({"job.id": f"{array}_{task}", "job.array_id": str(array),
                  "job.array_task": task})
    if f["job.terminal"]:
        code, sig = _exit_json(job.get("exit_code"))
        _finish_exit(f, code, sig)
    for fact, names in (("job.stdout", ("stdout_expanded", "standard_output")),
                        ("job.stderr", ("stderr_expanded", "standard_error"))):
        for name in names:
            value = job.get(name)
            if value:
                f[fact] = expand_placeholders(str(value), f)
                break
    spec = str(job.get("array_task_string") or "")
    if array and task is None and spec:
        for index in expand_tasks(spec):
            t = dict(f)
            t.update({"job.id": f"{array}_{index}", "job.array_id": str(array),
                      "job.array_task": index, "_job_id_raw": None})
            for fact in ("job.stdout", "job.stderr"):
                path = job.get("standard_output" if fact == "job.stdout" else "standard_error")
                if path:
                    t[fact] = expand_placeholders(str(path).replace(_NO_TASK, str(index)), t)
            yield with_default_output(t)
        return
    # a job run by srun or salloc alone (batch_flag false) writes no output file: no guess
    yield f if job.get("batch_flag") is False else with_default_output(f)


def parse_sacct_json(text: str, skipped: Skipped | None = None) -> dict[str, Facts]:
    """Facts by job id from `sacct --json` (v0.0.38 to v0.0.42), steps included; a job
    holding a value that cannot be read is skipped into `skipped` (see the module doc)."""
    jobs, parser = load_json(text, "sacct")
    out: dict[str, Facts] = {}
    for job in jobs:
        if _int(job.get("job_id")) is None:
            raise SlurmParseError(f"sacct --json: a job has no job_id: "
                                  f"{_show(json.dumps(job))}")
        try:
            f = _sacct_json_job(job, parser)
        except _RECORD_ERRORS as exc:
            _skip(skipped, str(_int(job.get("job_id"))), "sacct --json", exc)
            continue
        out[f["job.id"]] = f
    return out


def _sacct_json_job(job: Mapping[str, Any], parser: str) -> Facts:
    jid = _int(job.get("job_id"))
    if jid is None:
        raise SlurmParseError(f"sacct --json: a job has no job_id: {_show(json.dumps(job))}")
    state_block = job.get("state") or {}
    raw = _state_word(state_block.get("current") if isinstance(state_block, dict)
                      else state_block)
    reason = str(state_block.get("reason") or "") if isinstance(state_block, dict) else ""
    f: Facts = {"_job_id_raw": str(jid), "job.id": str(jid),
                "job.name": str(job.get("name") or ""),
                "job.user": str(job.get("user") or ""),
                "job.partition": str(job.get("partition") or ""),
                "job.account": str(job.get("account") or ""),
                "job.qos": str(job.get("qos") or ""),
                "job.reason": "" if reason == "None" else reason,
                "job.node_list": "" if job.get("nodes") in (None, "None assigned")
                else str(job.get("nodes")),
                "job.workdir": str(job.get("working_directory") or "")}
    state = normal_state(raw, reason)
    _settle(f, state, raw)
    array = job.get("array") or {}
    task = _int(array.get("task_id")) if isinstance(array, dict) else None
    array_id = _int(array.get("job_id")) if isinstance(array, dict) else None
    if array_id and task is not None:
        f.update({"job.id": f"{array_id}_{task}", "job.array_id": str(array_id),
                  "job.array_task": task})
    nodes = _int(job.get("allocation_nodes")) or 1
    f["job.nodes"] = nodes
    tres = job.get("tres") or {}
    alloc = _tres_list(tres.get("allocated")) if isinstance(tres, dict) else {}
    req = _tres_list(tres.get("requested")) if isinstance(tres, dict) else {}
    cpus = int(alloc.get("cpu") or req.get("cpu") or 0)
    required = job.get("required") or {}
    if not cpus and isinstance(required, dict):
        cpus = _int(required.get("CPUs")) or 0
    if cpus:
        f["job.cpus"] = cpus
    f["job.gpus"] = int(alloc.get("gres/gpu") or req.get("gres/gpu") or 0)
    mem = req.get("mem") or alloc.get("mem")
    if mem:
        f["job.mem_req"] = int(mem) << 20  # TRES memory counts MiB
    times = job.get("time") or {}
    if isinstance(times, dict):
        for fact, name in (("job.submit_time", "submission"), ("job.start_time", "start"),
                           ("job.end_time", "end")):
            value = _time(times.get(name))
            if value is not None:
                f[fact] = value
        elapsed = num(times.get("elapsed"))
        if elapsed is not None:
            f["job.elapsed"] = elapsed
        limit = num(times.get("limit"))
        if limit is not None:
            f["job.time_limit"] = limit * 60
    if "job.start_time" in f and "job.submit_time" in f:
        f["job.wait"] = max(0.0, f["job.start_time"] - f["job.submit_time"])
    if not f["job.terminal"]:
        f.pop("job.end_time", None)
    steps = job.get("steps") if isinstance(job.get("steps"), list) else []
    assert isinstance(steps, list)
    cpu_seconds, tasks = _sacct_json_steps(f, steps)
    if f["job.terminal"]:
        code, sig = _exit_json(job.get("exit_code"))
        if parser == "v0.0.38" and code == 0 and not sig and state != "COMPLETED":
            code = None  # 22.05 says 0 for every normal exit, in every step too: unknown
        _finish_exit(f, code, sig)
    for fact, names in (("job.stdout", ("stdout_expanded", "stdout")),
                        ("job.stderr", ("stderr_expanded", "stderr"))):
        for name in names:
            value = job.get(name)
            if value:
                f[fact] = expand_placeholders(str(value), f)
                break
    efficiency(f, cpu_seconds, tasks)
    # a job run by srun or salloc alone (steps, none of them a batch script) writes no file
    batch = not steps or any(str((s.get("step") or {}).get("id", "")).endswith("batch")
                             for s in steps if isinstance(s, dict))
    return with_default_output(f) if batch else f


def _sacct_json_steps(f: Facts, steps: list[Any]) -> tuple[int | None, int | None]:
    """As `_sacct_steps`, from sacct --json's steps (CPU times in seconds and microseconds,
    exact, as seff reads them)."""
    cpu = user = system = 0.0
    total_us = 0
    seen = False
    rss: float | None = None
    tasks: int | None = None
    for step in steps:
        if not isinstance(step, dict):
            continue
        times = step.get("time") or {}
        if isinstance(times, dict) and "total" in times:
            total = _seconds(times.get("total"))
            if total is not None:
                seen = True
                cpu += total
                total_us += _microseconds(times.get("total"))
                user += _seconds(times.get("user")) or 0.0
                system += _seconds(times.get("system")) or 0.0
        tres = step.get("tres") or {}
        requested = tres.get("requested") if isinstance(tres, dict) else None
        peak = _tres_list(requested.get("max")) if isinstance(requested, dict) else {}
        if "mem" in peak and (rss is None or peak["mem"] > rss):
            rss = peak["mem"]  # bytes, the step's MaxRSS (the first largest, as seff)
            block = step.get("tasks")
            tasks = _int(block.get("count")) if isinstance(block, dict) else None
        if "mem" not in peak and not _seconds((times or {}).get("total")
                                             if isinstance(times, dict) else None):
            f[USAGE_PENDING] = True
    if seen:
        f["job.cpu_time"], f["job.cpu_user"], f["job.cpu_sys"] = cpu, user, system
    if rss is not None:
        f["job.max_rss"] = int(rss)
    return ((total_us + 500_000) // 1_000_000 if seen else None), tasks


def _microseconds(value: Any) -> int:
    """A CPU time (`{"seconds", "microseconds"}` or seconds) in whole microseconds."""
    if isinstance(value, dict) and "seconds" in value:
        return int(num(value.get("seconds")) or 0) * 1_000_000 + \
            int(num(value.get("microseconds")) or 0)
    return round((num(value) or 0.0) * 1_000_000)


def _show(text: str, limit: int = 120) -> str:
    """A piece of output fit for a one-line message."""
    line = " ".join(text.split())
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return repr(line[:limit] + ("..." if len(line) > limit else ""))


def with_default_output(f: Facts) -> Facts:
    """A record that names no output file (squeue --json's empty standard_output, sacct -P
    on 22.05 without a StdOut column) gets sbatch's default; stderr goes where stdout goes
    unless the record names its own, as sbatch without -e/--error does."""
    if "job.stdout" not in f:
        guess = default_output(f)
        if guess is not None:
            f["job.stdout"] = guess
    if "job.stderr" not in f and "job.stdout" in f:
        f["job.stderr"] = f["job.stdout"]
    return f


def default_output(f: Mapping[str, Any]) -> str | None:
    """sbatch's default output file, `slurm-%j.out` (`slurm-%A_%a.out` for an array task) in
    the job's working directory, for a record that names none (sacct on 22.05 has no StdOut
    column). A guess: right unless the job was submitted with -o/--output."""
    workdir = f.get("job.workdir")
    jid = f.get("job.id")
    if not workdir or not jid:
        return None
    return f"{str(workdir).rstrip('/')}/slurm-{jid}.out"
