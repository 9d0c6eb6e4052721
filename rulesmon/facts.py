"""The fact catalog: every name a condition or template may use, its type and meaning.

Probes promise to provide these facts; lint checks names against them; docs/facts.md and the
sample values that templates are rendered against at lint time are generated from them. Facts
that depend on a job's declaration (extractor groups, file names, error names) are added per job
by `job_facts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .config.models import Job, Ruleset

SOURCES = ("slurm", "htcondor", "dagman", "local", "none")

STATES = ("PENDING", "RUNNING", "SUSPENDED", "HELD", "COMPLETING", "COMPLETED", "FAILED",
          "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
          "DEADLINE", "REMOVED", "UNKNOWN")
TERMINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                   "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REMOVED")
WORKER_STATES = ("starting", "running", "sleeping", "zombie", "dead", "exited", "killed",
                 "missing")
CONDOR_STATUSES = ("idle", "running", "removed", "completed", "held", "transferring",
                   "suspended")
NODE_STATES = ("NOT_READY", "READY", "PRERUN", "SUBMITTED", "POSTRUN", "DONE", "ERROR",
               "FUTILE")
OUTCOMES = ("success", "failed", "timeout", "cancelled", "error", "running", "unknown")
DIAGNOSES = ("ok", "oom", "time_limit", "nonzero_exit", "signal", "killed", "nan", "nccl",
             "missing_output", "cancelled", "node_failure", "launch_failed", "zombie", "unknown")
#: What each diagnosis means and the evidence it needs (docs/facts.md, "Diagnoses").
DIAGNOSIS_DOCS: dict[str, str] = {
    "ok": "Exit 0 (COMPLETED) and final verification found nothing wrong. `job.verified` is "
          "true only when something was checked (declared file sets, an expected total); "
          "with nothing declared it stays unknown and the detail says `nothing verified`.",
    "oom": "Out of memory, by evidence only: the scheduler's OUT_OF_MEMORY or HTCondor hold "
           "code 34, the kernel's OOM-killer record of the pid (kern.log/syslog/messages, "
           "else dmesg), for a local job an OOM kill counted by rulesmon's memory cgroup "
           "(`memory.events` / `memory.oom_control`) on the tick it was seen killed, or an "
           "allocation failure in the log (CUDA OOM, `MemoryError`, "
           "`Unable to allocate`, a DataLoader worker killed, SLURM's `oom_kill event` line "
           "from the job's cgroup).",
    "killed": "SIGKILL (signal 9, or exit code 137) with no out-of-memory evidence: a "
              "`kill -9` (by hand or by a tool) and an unrecorded OOM kill look alike. "
              "`job.diagnosis_hint` says `possibly out of memory` and whether the kernel's "
              "messages were read.",
    "time_limit": "TIMEOUT or DEADLINE, or `job.exceeded`.",
    "nonzero_exit": "A non-zero exit code without a more specific cause (the detail quotes "
                    "the last traceback line when the log has one).",
    "signal": "Ended by a signal other than SIGKILL, SIGTERM and SIGINT.",
    "nan": "The loss became NaN or infinite: a bad ending with the nan-loss preset's "
           "evidence, and an exit 0 whose last extracted loss (`log.loss`) is NaN or infinite "
           "or, with no loss extracted, whose last nan-loss line shows a NaN loss (a NaN "
           "gradient norm alone, which fp16 loss scaling skips, or a finite last loss, is "
           "not).",
    "nccl": "An NCCL / distributed-training network failure in the log of a bad ending.",
    "missing_output": "Exit 0 but a declared file set is empty, short of `expect_count`, or "
                      "invalid, or under 99% of the expected items were processed; or a hold "
                      "code saying an output could not be written.",
    "cancelled": "Cancelled, removed or preempted; SIGTERM or SIGINT.",
    "node_failure": "NODE_FAIL or BOOT_FAIL.",
    "launch_failed": "The job could not start (preflight, exec, a missing input file).",
    "zombie": "A watched process became a zombie its parent does not reap (an orphan that "
              "init is about to reap is classified by its exit status instead).",
    "unknown": "Ended, but the evidence says nothing more (never `ok`).",
}


@dataclass(frozen=True)
class Fact:
    """A leaf fact. `type` drives lint's sample values; `values` lists an enumeration."""

    type: str
    doc: str
    sources: frozenset[str] | None = None
    values: tuple[str, ...] = ()


Namespace = dict[str, Union[Fact, "Namespace"]]

_SLURM = frozenset({"slurm"})
_CONDOR = frozenset({"htcondor", "dagman"})
_LOCAL = frozenset({"local"})
_SCHED = frozenset({"slurm", "htcondor", "dagman"})
_HTCONDOR = frozenset({"htcondor"})


def _f(type_: str, doc: str, sources: frozenset[str] | None = None,
       values: tuple[str, ...] = ()) -> Fact:
    return Fact(type_, doc, sources, values)


JOB: Namespace = {
    "key": _f("str", "The job's key in the ruleset (`jobs: train:` → `train`)."),
    "id": _f("str", "Scheduler job id (`12345`, `12345_7`, `42.0`), or the pid of a local job."),
    "name": _f("str", "Job name (SLURM name, HTCondor batch name, DAG node name, or the key)."),
    "source": _f("str", "Which source watches it.", values=SOURCES),
    "state": _f("str", "Normalised state, SLURM style.", values=STATES),
    "raw_state": _f("str", "The state exactly as the scheduler reported it."),
    "terminal": _f("bool", "The job has ended (any terminal state); a SLURM job once "
                   "accounting has its final record or gave up (see `job.accounted`)."),
    "succeeded": _f("bool", "The job ended with COMPLETED and exit code 0."),
    "outcome": _f("str", "Final outcome for history and summaries.", values=OUTCOMES),
    "diagnosis": _f("str", "Why a job ended badly (crash classification).", values=DIAGNOSES),
    "diagnosis_detail": _f("str", "A one-line explanation of the diagnosis."),
    "diagnosis_hint": _f("str", "What the evidence cannot rule out, apart from the diagnosis: "
                         "a `killed` job (SIGKILL, exit 137, no out-of-memory record) gets "
                         "`possibly out of memory: ...`. Unknown otherwise."),
    "verified": _f("bool", "An ended job's work checked out: declared outputs present (and "
                   "valid where validated), at least 99% of the expected items processed, no "
                   "NaN loss at the end. Unknown when the job declared no file sets and no "
                   "expected total (nothing was checked)."),
    "verify_detail": _f("str", "What final verification found (items, throughput, time, or "
                        "what is missing)."),
    "exit_code": _f("int", "Exit code of the job's main process."),
    "signal": _f("int", "Signal that ended it (9 for SIGKILL), or 0. An HTCondor job removed "
                 "while it ran has condor_rm's (15, ExitSignal)."),
    "user": _f("str", "Owner of the job."),
    "workdir": _f("str", "Working directory."),
    "stdout": _f("str", "Path of the job's standard output, placeholders expanded."),
    "stderr": _f("str", "Path of the job's standard error, placeholders expanded."),
    "submit_time": _f("timestamp", "When the job was submitted or launched."),
    "start_time": _f("timestamp", "When it started running."),
    "end_time": _f("timestamp", "When it ended."),
    "elapsed": _f("seconds", "Run time so far, or in total once ended. 0 is a value (HTCondor's "
                  "RemoteWallClockTime 0: ran under a second, or has not run yet)."),
    "wait": _f("seconds", "Time spent pending before it started."),
    "restarts": _f("int", "Requeues (SLURM), restarts (HTCondor runs after the first), or "
                   "relaunches (local)."),
    "labels": _f("map", "Labels declared on the job."),
    # SLURM
    "array_id": _f("str", "Array job id.", _SLURM),
    "array_task": _f("int", "Array task index.", _SLURM),
    "partition": _f("str", "Partition.", _SLURM),
    "account": _f("str", "Account.", _SLURM),
    "qos": _f("str", "Quality of service.", _SLURM),
    "reason": _f("str", "Why it is pending (Resources, Priority, QOSMaxJobsPerUserLimit, "
                 "ReqNodeNotAvail, ...).", _SLURM),
    "nodes": _f("int", "Number of nodes.", _SLURM),
    "node_list": _f("str", "Node list (`gpu[01-04]`).", _SLURM),
    "cpus": _f("int", "Allocated or requested CPUs.", _SCHED | _LOCAL),
    "gpus": _f("int", "Requested GPUs (gres/tres or RequestGPUs).", _SCHED),
    "time_limit": _f("seconds", "Time limit.", _SLURM),
    "time_left": _f("seconds", "Time until the limit, as squeue's TIME_LEFT (limit - elapsed; "
                    "squeue --json has no run time: computed from the start time and the time "
                    "of the call, as squeue does).", _SLURM),
    "exceeded": _f("bool", "Wall time reached the limit (TIMEOUT).", _SLURM),
    "cpu_time": _f("seconds", "Total CPU time used (user + system).", _SCHED | _LOCAL),
    "cpu_user": _f("seconds", "User CPU time.", _SCHED | _LOCAL),
    "cpu_sys": _f("seconds", "System CPU time.", _SCHED | _LOCAL),
    "cpu_eff": _f("pct", "CPU efficiency after completion, as seff reports it (percent, two "
                  "decimals): CPU time rounded to whole seconds / (elapsed x CPUs).", _SLURM),
    "cpu_eff_exact": _f("pct", "CPU efficiency from the unrounded CPU time (percent, four "
                        "decimals); `job.cpu_eff` rounds the CPU time to seconds as seff "
                        "does.", _SLURM),
    "max_rss": _f("bytes", "The largest MaxRSS of the job's steps: one task's peak memory.",
                  _SLURM),
    "mem_used": _f("bytes", "Peak memory used (MemoryUsage, or peak RSS); on SLURM seff's "
                   "\"Memory Utilized\": the largest step MaxRSS x that step's task count.",
                   _SCHED | _LOCAL),
    "mem_req": _f("bytes", "Requested memory.", _SCHED),
    "mem_eff": _f("pct", "Memory efficiency: peak used / requested (percent; on SLURM "
                  "`job.mem_used` / the job's requested memory, as seff reports it).", _SCHED),
    "time_eff": _f("pct", "Wall time / time limit (percent); from squeue's elapsed time when "
                   "accounting never has the job.", _SLURM),
    "gpu_hours": _f("float", "GPU hours consumed.", _SLURM),
    # HTCondor / DAGMan
    "cluster": _f("int", "Cluster id.", _CONDOR),
    "proc": _f("int", "Proc id.", _CONDOR),
    "owner": _f("str", "Owner.", _CONDOR),
    "batch_name": _f("str", "JobBatchName.", _CONDOR),
    "status": _f("str", "HTCondor job status.", _CONDOR, CONDOR_STATUSES),
    "hold_reason": _f("str", "Why the job is held. A hold is a state, not an ending: the job is "
                      "still queued and can be released; a hold by a user (HoldReasonCode 1, "
                      "condor_hold) gives no `job.diagnosis`.", _CONDOR),
    "hold_code": _f("int", "HoldReasonCode.", _CONDOR),
    "hold_subcode": _f("int", "HoldReasonSubCode.", _CONDOR),
    "remote_host": _f("str", "Execute host.", _CONDOR),
    "run_count": _f("int", "Times the job started running.", _CONDOR),
    "disk_used": _f("bytes", "Disk usage.", _CONDOR),
    "disk_req": _f("bytes", "Requested disk.", _CONDOR),
    "gpus_assigned": _f("str", "Assigned GPU ids.", _CONDOR),
    "attrs": _f("map", "Custom ClassAd attributes (`+RunUUID` → `job.attrs.RunUUID`).", _CONDOR),
    "dag_node": _f("str", "DAGNodeName: the DAG node this HTCondor job runs (joins it to the "
                   "dagman job's `node.name`).", _HTCONDOR),
    "dag_cluster": _f("int", "DAGManJobId: the cluster of the DAGMan job that submitted it "
                      "(the dagman job's `dag.cluster`).", _HTCONDOR),
    # local
    "pid": _f("int", "Main process id.", _LOCAL),
    "cpu_pct": _f("pct", "CPU percent of all its processes (100 = one core).", _LOCAL),
    "rss": _f("bytes", "Resident memory of all its processes.", _LOCAL),
    "children": _f("int", "Number of child processes.", _LOCAL),
    "uptime": _f("seconds", "Seconds since the process started.", _LOCAL),
    "workers": _f("int", "Workers expected.", _LOCAL),
    "workers_running": _f("int", "Workers alive now.", _LOCAL),
    "launch_ok": _f("bool", "Every expected worker was up within launch_timeout (local), or "
                    "every submitted job was seen by the schedd (htcondor) or in squeue or "
                    "sacct (slurm) within verify_within.", _LOCAL | _HTCONDOR | _SLURM),
    "launch_error": _f("str", "Why launch verification (or the submission) failed.",
                       _LOCAL | _HTCONDOR | _SLURM),
    "stale": _f("bool", "The scheduler did not answer this tick: the facts are those of the "
                "last good call (alert on probe.slurm.failures for the outage itself).",
                _SLURM),
    "accounted": _f("str", "Once the job has ended: `pending` while sacct has no final record "
                    "of it yet (`job.terminal` is still false, the state already final), "
                    "`done` once it has (exit code and efficiency figures in), `missing` when "
                    "the retries ran out without one (terminal with what squeue said, or "
                    "UNKNOWN).", _SLURM, ("pending", "done", "missing")),
    "accounting_error": _f("str", "The last accounting lookup for this ended job failed: "
                           "sacct's error (it is asked again with backoff).", _SLURM),
}

WORKER: Namespace = {
    "index": _f("int", "Worker index (0-based)."),
    "state": _f("str", "Process state.", values=WORKER_STATES),
    "pid": _f("int", "Process id."),
    "exit_code": _f("int", "Exit code once exited."),
    "signal": _f("int", "Signal that killed it, or 0."),
    "cpu_pct": _f("pct", "CPU percent (100 = one core)."),
    "rss": _f("bytes", "Resident memory."),
    "children": _f("int", "Child processes."),
    "uptime": _f("seconds", "Seconds since it started."),
    "gpu": _f("int", "GPU index given to it (CUDA_VISIBLE_DEVICES)."),
    "gpu_util": _f("pct", "Utilisation of its GPU."),
    "gpu_mem": _f("bytes", "GPU memory used by its processes."),
    "log": _f("str", "Its log file."),
}

ERROR_FACTS: Namespace = {
    "count": _f("int", "Matching lines so far."),
    "first_seen": _f("timestamp", "When the first match was read."),
    "last_seen": _f("timestamp", "When the last match was read."),
    "last_line": _f("str", "The last matching line."),
    "lines": _f("list", "The last few matching lines."),
    "severity": _f("str", "Severity declared for this pattern."),
}

EXTRACTOR_FACTS: Namespace = {
    "count": _f("int", "Lines matched so far."),
    "first_seen": _f("timestamp", "When it first matched."),
    "last_seen": _f("timestamp", "When it last matched."),
}

LOG_BUILTIN: Namespace = {
    "tail": _f("str", "The last lines of the log that are not blank (count from `tail:`; "
               "the empty lines cleared progress bars leave are dropped), for messages."),
    "lines": _f("list", "The last lines as a list (as `log.tail`)."),
    "age": _f("seconds", "Seconds since the log last grew."),
    "size": _f("bytes", "Current size."),
    "path": _f("str", "The file being followed."),
    "mtime": _f("timestamp", "Last modification time."),
    "error_count": _f("int", "Matches of all error patterns together."),
    "available": _f("bool", "At least one of the job's logs could be read this tick."),
    "error": _f("str", "Why a log could not be read (missing, a folder, no file matches the "
                "glob, permission denied); absent when every log was read."),
    "files": _f("int", "Files read this tick (several when a path is a glob)."),
    "errors": {},
    "extractors": {},
    "sum": {},
}

FILE_FACTS: Namespace = {
    "count": _f("int", "Files matching now."),
    "size": _f("bytes", "Total size."),
    "newest": _f("str", "Path of the newest file."),
    "newest_size": _f("bytes", "Size of the newest file."),
    "newest_mtime": _f("timestamp", "Modification time of the newest file."),
    "age": _f("seconds", "Seconds since the newest file was modified."),
    "growth_rate": _f("float", "Bytes per second over the growth window."),
    "stalled": _f("bool", "No growth for `stall_after`."),
    "valid": _f("bool", "Every file passed its integrity check."),
    "invalid": _f("list", "Files that failed their integrity check."),
    "new": _f("list", "Files that appeared and stayed quiet for `quiet_for` since the last tick "
              "(each reported once)."),
    "new_count": _f("int", "Number of new files this tick."),
    "paths": _f("list", "Every matching path."),
    "interval": _f("seconds", "Observed mean interval between files (checkpoint cadence)."),
    "expected_next": _f("seconds", "Seconds until the next file is due (`expect_every`); "
                        "negative when late."),
    "late": _f("bool", "The next file is overdue by more than `expect_every`."),
    "matches": _f("map", "Named groups of `pattern` for the newest file."),
}

DISK: Namespace = {
    "free": _f("bytes", "Free bytes on the filesystem of the job's folders."),
    "total": _f("bytes", "Filesystem size."),
    "used": _f("bytes", "Used bytes."),
    "free_pct": _f("pct", "Free space in percent."),
    "path": _f("str", "The folder measured (the fullest of the job's folders)."),
}

GPU: Namespace = {
    "available": _f("bool", "GPU facts could be read (NVML present, or the metrics CSV exists)."),
    "error": _f("str", "Why GPU facts are missing (no driver, no GPU, no CSV yet)."),
    "count": _f("int", "GPUs observed for the job (0: none of its processes is on a GPU)."),
    "util": _f("pct", "Mean utilisation."),
    "util_min": _f("pct", "Lowest utilisation among the job's GPUs."),
    "util_max": _f("pct", "Highest utilisation."),
    "mem_used": _f("bytes", "Memory used, summed."),
    "mem_total": _f("bytes", "Memory, summed."),
    "mem_pct": _f("pct", "Memory used in percent (highest GPU)."),
    "mem_max": _f("bytes", "Highest memory used on one GPU."),
    "temp": _f("float", "Highest temperature (°C)."),
    "power": _f("float", "Power draw, summed (W)."),
    "power_limit": _f("float", "Enforced power limit, summed (W)."),
    "throttled": _f("bool", "Any GPU reports a clock throttle reason other than idle."),
    "throttle_reasons": _f("list", "Active throttle reasons."),
    "ecc_errors": _f("int", "Uncorrected ECC errors."),
    "age": _f("seconds", "Age of the last metrics row (CSV source)."),
    "job_mem": _f("bytes", "GPU memory of the job's own processes (its pid, their descendants "
                  "and process group), not the whole GPUs' (NVML source)."),
    "xid_errors": _f("int", "NVIDIA Xid errors on the job's GPUs since the job started, from "
                     "the kernel's `NVRM: Xid` lines (dmesg or a readable kernel log), else "
                     "NVML's events; absent when neither can be read."),
    "last_xid": _f("int", "Code of the latest Xid error (79: fallen off the bus, 48: "
                   "double-bit ECC, 13/31/43: an application fault)."),
    "last_xid_line": _f("str", "The latest Xid line, for messages."),
}

PROGRESS: Namespace = {
    "done": _f("float", "Items (or steps) done."),
    "total": _f("float", "Items expected."),
    "pct": _f("pct", "Percent done."),
    "rate": _f("float", "Current throughput (items per second, recent window)."),
    "avg_rate": _f("float", "Average throughput since the start."),
    "peak_rate": _f("float", "Highest throughput seen."),
    "eta": _f("seconds", "Seconds to completion (the most conservative estimate)."),
    "eta_at": _f("timestamp", "Estimated completion time."),
    "eta_linear": _f("seconds", "ETA by linear extrapolation from overall progress."),
    "eta_recent": _f("seconds", "ETA from the recent window's throughput."),
    "eta_avg": _f("seconds", "ETA from the moving-average throughput."),
    "confidence": _f("str", "How far the estimates agree.", values=("high", "medium", "low")),
    "slowdown": _f("float", "Drop of the current throughput from the peak, a fraction (0.25 = "
                   "25% slower; format with `| frac`)."),
    "age": _f("seconds", "Seconds since progress last advanced."),
    "stalled": _f("bool", "No progress for `stall_after`."),
    "elapsed": _f("seconds", "Seconds since progress was first seen."),
    "unit": _f("str", "Unit of done/total (items, steps, ...)."),
    # the whole job: its instances summed
    "job_done": _f("float", "Items done by the whole job: `progress.done` summed over its "
                   "instances (workers, array tasks; one that left keeps its last value)."),
    "job_total": _f("float", "Items expected for the whole job: `job_total:`, else the sum of "
                    "its instances' totals."),
    "job_pct": _f("pct", "Percent done of the whole job."),
    "job_rate": _f("float", "Current throughput of the whole job (recent window)."),
    "job_avg_rate": _f("float", "Average throughput of the whole job."),
    "job_eta": _f("seconds", "Seconds until the whole job completes."),
    "job_eta_at": _f("timestamp", "Estimated completion time of the whole job."),
    "job_elapsed": _f("seconds", "Seconds since the job's progress was first seen."),
    "job_age": _f("seconds", "Seconds since the whole job's progress last advanced."),
    "job_stalled": _f("bool", "No progress of the whole job for `stall_after`."),
    "job_slowdown": _f("float", "Drop of the job's throughput from its peak, a fraction."),
    "job_confidence": _f("str", "How far the job's ETA estimates agree.",
                         values=("high", "medium", "low")),
    "job_members": _f("int", "Instances whose progress is summed."),
}

HOST: Namespace = {
    "name": _f("str", "Host rulesmon runs on."),
    "load1": _f("float", "One-minute load average."),
    "cpu_pct": _f("pct", "CPU use of the host."),
    "mem_pct": _f("pct", "Memory use of the host."),
    "mem_available": _f("bytes", "Available memory."),
}

RUN: Namespace = {
    "name": _f("str", "The ruleset's name."),
    "total": _f("int", "Job instances watched that come from a source (scheduler or process)."),
    "watched": _f("int", "Jobs without a source (`<job>/-`: they watch only logs and files); "
                  "not in `run.total`, and the run does not wait for them to end."),
    "pending": _f("int", "Instances pending."),
    "running": _f("int", "Instances running."),
    "terminal": _f("int", "Instances that ended."),
    "succeeded": _f("int", "Instances that succeeded."),
    "failed": _f("int", "Instances that ended badly (failed, timeout, cancelled, error), or "
                 "UNKNOWN: a watched job that could not be found (`rulesmon run` exits 1)."),
    "unknown": _f("int", "Instances that ended with an outcome no evidence shows: a watched "
                  "process (not rulesmon's child), a worker that ended while rulesmon was down, "
                  "a job accounting never had (`rulesmon run` exits 3 when no job failed)."),
    "all_terminal": _f("bool", "Every watched instance has ended."),
    "all_succeeded": _f("bool", "Every watched instance has ended and succeeded."),
    "elapsed": _f("seconds", "Time since the run started."),
    "started": _f("timestamp", "When the run started."),
    "tick": _f("int", "Tick number."),
    "overruns": _f("int", "Ticks that took longer than the interval."),
    "counts": _f("map", "Instances by state (`run.counts.RUNNING`)."),
    "summary": _f("str", "A readable summary: counts by outcome and total time."),
}

PROBE_FACTS: Namespace = {
    "ok": _f("bool", "The probe's last collection succeeded."),
    "failures": _f("int", "Consecutive failed collections."),
    "error": _f("str", "The last error, one line."),
    "last_ok": _f("timestamp", "When it last succeeded."),
    "duration": _f("seconds", "How long the last collection took."),
}
PROBES = ("slurm", "htcondor", "dagman", "local", "gpu", "files", "logs", "host")
#: Facts only the slurm probe gives, beside PROBE_FACTS (sacct fails apart from squeue).
SLURM_PROBE_FACTS: Namespace = {
    "sacct_ok": _f("bool", "The last accounting lookup (sacct) succeeded."),
    "sacct_failures": _f("int", "Consecutive accounting lookups that failed; squeue's facts "
                         "are reported all the same."),
    "sacct_error": _f("str", "The last sacct error, one line; empty when it answered."),
    "accounting_disabled": _f("bool", "sacct said the cluster's accounting storage is "
                              "disabled (AccountingStorageType=none): ended jobs get no exit "
                              "code, CPU or memory figures (`job.accounted` missing)."),
    "bad_records": _f("int", "Records of the last call left out because a value could not be "
                      "read (a watched job among them keeps its last facts)."),
    "bad_record": _f("str", "Why the first of them was left out; empty when none was."),
}

NODE: Namespace = {
    "name": _f("str", "DAG node name."),
    "state": _f("str", "Node state, as DAGMan's node status file names it.", values=NODE_STATES),
    "retries": _f("int", "Retries used so far."),
    "max_retries": _f("int", "RETRY count declared in the .dag file."),
    "vars": _f("map", "VARS of the node (`node.vars.run_uuid`)."),
    "cluster": _f("int", "HTCondor cluster id of the node's latest submission."),
    "dir": _f("str", "DIR of the node."),
    "noop": _f("bool", "The node is NOOP."),
    "parents": _f("list", "Parent node names."),
    "children": _f("list", "Child node names."),
    "submit_file": _f("str", "The node's submit description file."),
    "pre_script": _f("str", "Its PRE script, if any."),
    "post_script": _f("str", "Its POST script, if any."),
    "kind": _f("str", "How the .dag file declares it.",
               values=("JOB", "FINAL", "SUBDAG", "PROVISIONER", "SERVICE")),
    "detail": _f("str", "Why the node is in its state, one line (`job 12 exited 3 (after 1 of "
                 "1 retries)`, `an ancestor node failed`, DAGMan's StatusDetails)."),
    "dag": _f("str", "Path of the .dag file the node belongs to."),
    "catching_up": _f("bool", "The node log is still being read from far behind (a large log "
                      "found at start): node states may lag until it is false."),
}

DAG_STATUSES = ("OK", "ERROR", "NODE_FAILED", "ABORT", "RM", "CYCLE", "HALTED")

DAG: Namespace = {
    "file": _f("str", "Path of the .dag file."),
    "name": _f("str", "File name of the .dag file (also the DAG instance's `job.name`)."),
    "total": _f("int", "Nodes in the DAG."),
    "done": _f("int", "Nodes that succeeded."),
    "failed": _f("int", "Nodes that failed after all their retries (state ERROR)."),
    "futile": _f("int", "Nodes that will never run because an ancestor failed."),
    "running": _f("int", "Nodes whose job is running."),
    "queued": _f("int", "Nodes whose job is in the queue (idle, running or held)."),
    "held": _f("int", "Nodes whose job is held."),
    "ready": _f("int", "Nodes ready to be submitted (or waiting for a retry)."),
    "unready": _f("int", "Nodes waiting for their parents."),
    "pre": _f("int", "Nodes whose PRE script is running."),
    "post": _f("int", "Nodes whose POST script is running."),
    "retries": _f("int", "Node retries so far, all nodes together."),
    "pct": _f("pct", "Percent of the nodes done."),
    "failed_nodes": _f("list", "Names of the failed nodes."),
    "finished": _f("bool", "The DAGMan job has ended (it will not run again by itself)."),
    "exit_code": _f("int", "DAGMan's exit status once it ended (0: every node succeeded)."),
    "aborted": _f("bool", "DAGMan stopped the DAG early: ABORT-DAG-ON, the DAGMan job removed, "
                  "a warning made fatal by DAGMAN_USE_STRICT, a halt file, a cycle, a .dag "
                  "DAGMan could not parse, or another DAG-level error. A DAG that ended "
                  "because a node failed is not aborted."),
    "abort_reason": _f("str", "Why the DAG was aborted, one line."),
    "dag_status": _f("str", "DAGMan's last `DAG status` in dagman.out.", values=DAG_STATUSES),
    "status": _f("str", "DagStatus of the node status file (a node state name).",
                 values=NODE_STATES),
    "status_age": _f("seconds", "Seconds since DAGMan last wrote the node status file."),
    "rescue_file": _f("str", "Path of the newest rescue DAG."),
    "rescue_number": _f("int", "Its number (1 for `.rescue001`)."),
    "rescue_written": _f("bool", "The latest DAGMan run wrote a rescue DAG."),
    "rescue_used": _f("str", "The rescue DAG the current run started from."),
    "runs": _f("int", "DAGMan runs recorded in dagman.out (a rescue run is a new run)."),
    "cluster": _f("int", "Cluster id of the DAGMan job."),
    "errors": _f("int", "ERROR lines dagman.out has for the current run."),
    "last_error": _f("str", "The last of them."),
    "problem": _f("str", "What could not be read (the .dag file, a log, the status file), "
                  "or empty. A missing node log is a problem only once DAGMan has created it "
                  "(never for a DAG that stopped before, as a DAGMAN_USE_STRICT abort does)."),
    "read_failures": _f("int", "Consecutive ticks with such a problem."),
    "catching_up": _f("bool", "The node log is still being read from far behind (each tick "
                      "reads a bounded part); the DAG is not judged finished until it is false."),
    "log_behind": _f("bytes", "Bytes of the node log not read yet."),
}

GROUP: Namespace = {
    "by": _f("str", "The VARS key or fact grouped on (`run_uuid`)."),
    "key": _f("str", "This group's value (the run's uuid)."),
    "total": _f("int", "Members."),
    "done": _f("int", "Members that succeeded."),
    "failed": _f("int", "Members that failed after all retries."),
    "cancelled": _f("int", "Members that will not run: removed, or a DAG node whose ancestor "
                    "failed (FUTILE)."),
    "running": _f("int", "Members running."),
    "pending": _f("int", "Members not started yet."),
    "retried": _f("int", "Members that needed a retry."),
    "pct": _f("pct", "Percent done."),
    "epochs_done": _f("int", "Distinct epochs (VARS `epoch`) whose nodes all succeeded."),
    "epochs_total": _f("int", "Distinct epochs (VARS `epoch`) in the group."),
    "all_done": _f("bool", "Every member succeeded."),
    "cpu_time": _f("seconds", "CPU time of all members."),
    "mem_peak": _f("bytes", "Highest memory of any member."),
    "resources": _f("map", "Members by ResourceName (`group.resources[\"gpu-a\"]`)."),
    "resource_cpu": _f("map", "CPU seconds of the members by ResourceName."),
}

RULE: Namespace = {
    "name": _f("str", "The rule's name."),
    "severity": _f("str", "Its severity."),
    "description": _f("str", "Its description."),
    "labels": _f("map", "Its labels."),
}

ALERT: Namespace = {
    "state": _f("str", "firing or resolved.", values=("firing", "resolved")),
    "since": _f("timestamp", "When it started firing."),
    "duration": _f("seconds", "How long it has been firing (or fired, on resolve)."),
    "count": _f("int", "Notifications sent for this alert so far."),
    "id": _f("str", "Stable id of the alert instance (its fingerprint)."),
    "instance": _f("str", "Which job instance it is about."),
}

#: Names Jinja provides itself inside templates.
TEMPLATE_GLOBALS = frozenset({"loop", "range", "dict", "lipsum", "cycler", "joiner", "namespace",
                              "true", "false", "none", "True", "False", "None", "now"})

SCOPES = ("job", "group", "run")


@dataclass
class Catalog:
    """The facts visible to one rule, with which of its jobs provide each path."""

    tree: Namespace
    providers: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    all_jobs: set[str] = field(default_factory=set)


def numeric_group(pattern: str, group: str) -> bool:
    """Whether a named group's own pattern can only match a number (for typed sample values)."""
    m = re.search(r"\(\?P<" + re.escape(group) + r">", pattern)
    if not m:
        return False
    depth, i = 1, m.end()
    while i < len(pattern) and depth:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        depth += (ch == "(") - (ch == ")")
        i += 1
    body = pattern[m.end(): i - 1]
    body = re.sub(r"\\d|\\.|\[[-+0-9.eE]*\]|\(\?:|[()?*+{},0-9|]", "", body)
    return body.replace("eE", "").replace("e", "").replace("E", "") in ("", "-+", "+-")


def job_facts(job: Job) -> Namespace:
    """`log.*`, `files.*` and friends for one job, from its declarations."""
    from .probes.log_presets import PRESETS

    log: Namespace = dict(LOG_BUILTIN)
    errors: Namespace = {}
    extractors: Namespace = {}
    for spec in job.logs:
        presets = [PRESETS[p] for p in spec.preset_list if p in PRESETS]
        extract = {k: v for p in presets for k, v in p.extract.items()} | dict(spec.extract)
        # a preset's progress-bar groups named `_...` are read by the probe and give no fact
        bars = {b for p in presets for b in p.bars if b not in spec.extract}
        for name, pattern in extract.items():
            extractors[name] = dict(EXTRACTOR_FACTS)
            for group in re.compile(pattern).groupindex:
                if name in bars and group.startswith("_"):
                    continue
                kind = "float" if numeric_group(pattern, group) else "str"
                log.setdefault(group, _f(kind, f"Last value of group `{group}` of `{name}`."))
        for p in presets:  # facts a preset computes from the others
            for fact, (kind, doc) in p.facts.items():
                log.setdefault(fact, _f(kind, doc))
        names = {k for p in presets for k in p.errors} | set(spec.errors)
        for name in names:
            errors[name] = dict(ERROR_FACTS)
    sums: Namespace = {}
    for spec in job.logs:
        presets = [PRESETS[p] for p in spec.preset_list if p in PRESETS]
        extract = {k: v for p in presets for k, v in p.extract.items()} | dict(spec.extract)
        bars = {b for p in presets for b in p.bars if b not in spec.extract}
        for name, pattern in extract.items():
            for group in re.compile(pattern).groupindex:
                if name in bars and group.startswith("_"):
                    continue
                if numeric_group(pattern, group):
                    sums.setdefault(group, _f("float", f"`{group}` summed over the files "
                                              "followed: each file's last value."))
    log["errors"] = errors
    log["extractors"] = extractors
    log["sum"] = sums
    out: Namespace = {"log": log}
    out["files"] = {
        name: {k: v for k, v in FILE_FACTS.items()
               if spec.new_files or k not in ("new", "new_count")}
        for name, spec in job.files.items()}
    return out


def source_of(job: Job) -> str:
    for name in ("slurm", "htcondor", "dagman", "local"):
        if getattr(job, name) is not None:
            return name
    return "none"


def catalog_for(ruleset: Ruleset, scope: str, jobs: list[str] | None) -> Catalog:
    """Merge the facts every applicable job provides, remembering who provides what."""
    selected = {k: v for k, v in ruleset.jobs.items() if not jobs or k in jobs}
    providers: dict[tuple[str, ...], set[str]] = {}
    tree: Namespace = {
        "run": RUN,
        "host": HOST,
        "probe": {**dict.fromkeys(PROBES, PROBE_FACTS),
                  "slurm": {**PROBE_FACTS, **SLURM_PROBE_FACTS}},
    }
    if scope == "group":
        tree["group"] = GROUP
    if scope == "job":
        base: Namespace = {"job": {}, "disk": DISK, "gpu": GPU, "progress": PROGRESS}
        tree.update(base)
        for key, job in selected.items():
            source = source_of(job)
            for name, fact in JOB.items():
                assert isinstance(fact, Fact)
                if fact.sources is None or source in fact.sources:
                    tree["job"][name] = fact  # type: ignore[index]
                    providers.setdefault(("job", name), set()).add(key)
            if source == "local":
                tree["worker"] = WORKER
                _mark(providers, ("worker",), key)
            if source == "dagman":
                tree["node"] = NODE
                tree["dag"] = DAG
                _mark(providers, ("node",), key)
                _mark(providers, ("dag",), key)
            extra = job_facts(job)
            _merge(tree, extra, providers, key, ())
        if not ruleset.jobs:
            # A library ruleset (meant for `extends:`) declares no jobs: any job fact may be
            # used; the ruleset that extends it is checked against its real jobs.
            tree.update({"job": JOB, "worker": WORKER, "node": NODE, "dag": DAG,
                         "log": LOG_BUILTIN,
                         "files": _f("map", "Any file set of the jobs that extend it.")})
    return Catalog(tree, providers, set(selected))


def _mark(providers: dict[tuple[str, ...], set[str]], path: tuple[str, ...], key: str) -> None:
    providers.setdefault(path, set()).add(key)


def _merge(into: Namespace, extra: Namespace, providers: dict[tuple[str, ...], set[str]],
           key: str, prefix: tuple[str, ...]) -> None:
    for name, value in extra.items():
        path = (*prefix, name)
        if isinstance(value, dict):
            sub = into.setdefault(name, {})
            if isinstance(sub, dict):
                _merge(sub, value, providers, key, path)
        else:
            into.setdefault(name, value)
        if len(path) <= 3:
            _mark(providers, path, key)


@dataclass(frozen=True)
class Lookup:
    """Result of resolving a dotted path in a catalog."""

    ok: bool
    fact: Fact | None = None
    missing: str = ""
    known: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()


def lookup(tree: Namespace, path: tuple[str, ...]) -> Lookup:
    node: Any = tree
    for i, part in enumerate(path):
        if isinstance(node, Fact):
            if node.type == "map" and i == len(path) - 1:
                return Lookup(True, Fact("str", "map entry"))
            if node.type == "map":
                return Lookup(True, Fact("str", "map entry"))
            return Lookup(False, node, part, (), path[:i])
        if not isinstance(node, dict) or part not in node:
            known = tuple(sorted(node)) if isinstance(node, dict) else ()
            return Lookup(False, None, part, known, path[:i])
        node = node[part]
    if isinstance(node, Fact):
        return Lookup(True, node)
    return Lookup(True, None)  # a namespace (e.g. `job` alone or `files.outputs`)


# --- sample values, for rendering templates at lint time --------------------------------------


class Sample:
    """A namespace of sample facts; unknown attributes raise like StrictUndefined would."""

    def __init__(self, tree: Namespace, path: str) -> None:
        self._tree = tree
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._tree:
            raise AttributeError(f"{self._path}.{name}")
        return sample_value(self._tree[name], f"{self._path}.{name}")

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __iter__(self) -> Any:
        return iter(sorted(self._tree))

    def __str__(self) -> str:
        return f"<{self._path}>"


class SampleMap(dict[str, str]):
    """Any key is present, for free-form maps such as `node.vars`."""

    def __missing__(self, key: str) -> str:
        return f"sample-{key}"

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


_SAMPLES: dict[str, Any] = {
    "str": "sample",
    "int": 3,
    "float": 0.5,
    "bool": True,
    "seconds": 125.0,
    "timestamp": 1_767_225_600.0,
    "bytes": 1_048_576,
    "pct": 42.0,
    "list": ["sample-1.txt", "sample-2.txt"],
}


def sample_value(node: Fact | Namespace, path: str) -> Any:
    if isinstance(node, dict):
        return Sample(node, path)
    if node.type == "map":
        return SampleMap(RUNNING="1", COMPLETED="2")
    if node.values:
        return node.values[0]
    return _SAMPLES.get(node.type, "sample")


def sample_context(tree: Namespace) -> dict[str, Any]:
    ctx = {name: sample_value(node, name) for name, node in tree.items()}
    ctx["rule"] = Sample(RULE, "rule")
    ctx["alert"] = Sample(ALERT, "alert")
    ctx["now"] = _SAMPLES["timestamp"]
    return ctx


def render_docs() -> str:
    """docs/facts.md, generated from the catalog."""
    out = ["# Facts reference", "",
           "Every name a condition or a message template can use. Generated by `rulesmon docs` "
           "from `rulesmon/facts.py`; do not edit by hand.", "",
           "Facts that are missing in a tick (a probe failed, a log has not matched yet) are "
           "*unknown*: a condition that needs them is neither true nor false, so it neither "
           "fires nor resets a `for:` timer. Use `known(x)` or `coalesce(x, y)` to be explicit.",
           ""]
    sections: list[tuple[str, Namespace, str]] = [
        ("job", JOB, "Per job instance (scope `job`)."),
        ("worker", WORKER, "Per worker of a `local` job with `workers:`."),
        ("node", NODE, "Per DAG node of a `dagman` job (instance `<job>/<node name>`)."),
        ("dag", DAG, "The DAG as a whole, on the DAG's own instance of a `dagman` job "
         "(`<job>/<dag file name>`, whose `job.*` is the DAGMan job)."),
        ("log", {k: v for k, v in LOG_BUILTIN.items() if isinstance(v, Fact)},
         "From the job's `logs:`. Each named group of an extractor or preset is also a fact "
         "`log.<group>` (its last value, numbers typed), and each numeric group "
         "`log.sum.<group>` (each followed file's last value, added up: the items of every "
         "worker's log under a glob); each error pattern gives `log.errors.<name>.*` and each "
         "extractor `log.extractors.<name>.*`."),
        ("log.errors.<name>", ERROR_FACTS, "Per error pattern."),
        ("log.extractors.<name>", EXTRACTOR_FACTS, "Per extractor."),
        ("files.<name>", FILE_FACTS, "Per entry of the job's `files:`."),
        ("disk", DISK, "Free space of the job's folders."),
        ("gpu", GPU, "From NVML or the job's GPU metrics CSV, aggregated per job."),
        ("progress", PROGRESS, "From the job's `progress:` declaration."),
        ("group", GROUP, "Per group of a job with `group_by:` (scope `group`)."),
        ("run", RUN, "The whole run (every scope)."),
        ("host", HOST, "The machine rulesmon runs on (every scope)."),
        ("probe.<name>", PROBE_FACTS, "Health of each probe (" + ", ".join(PROBES) + ")."),
        ("probe.slurm", SLURM_PROBE_FACTS, "The slurm probe's accounting lookups and unreadable "
         "records, beside the health facts every probe has."),
        ("rule", RULE, "In templates only: the rule being notified."),
        ("alert", ALERT, "In templates only: the alert instance."),
    ]
    for prefix, ns, doc in sections:
        out += [f"## `{prefix}`", "", doc, "", "| fact | type | meaning |", "| --- | --- | --- |"]
        for name, fact in ns.items():
            if not isinstance(fact, Fact):
                continue
            meaning = fact.doc
            if fact.sources:
                meaning += " *(" + ", ".join(sorted(fact.sources)) + " only)*"
            if fact.values:
                meaning += " One of: " + ", ".join(f"`{v}`" for v in fact.values) + "."
            out.append(f"| `{prefix}.{name}` | {fact.type} | {meaning} |")
        out.append("")
    out += ["## Diagnoses", "", "The values of `job.diagnosis`, and the evidence each needs "
            "(rulesmon/probes/diagnosis.py: a diagnosis states only what the evidence shows).",
            "", "| diagnosis | meaning |", "| --- | --- |"]
    out += [f"| `{name}` | {DIAGNOSIS_DOCS[name]} |" for name in DIAGNOSES]
    out.append("")
    return "\n".join(out)
