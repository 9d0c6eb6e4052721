"""DAGMan workflows: one instance per DAG node, plus one for the DAG itself.

What is read each tick, all of it files beside the .dag (no scheduler call is needed):

- the `.dag` file (with its INCLUDEs and SPLICEs, `dagfile.py`), re-parsed when one of its
  files changes: node names, VARS, parents and children, RETRY, scripts, ABORT-DAG-ON;
- `<dag>.nodes.log`, the node jobs' user log, followed incrementally (`userlog.py`): only the
  bytes appended since the last tick are read; when DAGMan truncates it (a rescue run starts)
  what was derived from it is rebuilt, never counted twice;
- `<dag>.dagman.out`, DAGMan's own log, followed incrementally: the run's cluster, `DAG status`,
  retries, PRE/POST scripts, `ERROR` lines, the abort reason, the rescue DAG used and written,
  and the exit status. Every abort DAGMan writes is recognised (HTCondor 23.9 to 25.x, from
  its source): "Aborting DAG because ..." (ABORT-DAG-ON), "Received SIGUSR1" (condor_rm), and
  an "Aborting DAG..." whose cause is the line before it (a warning made fatal by
  DAGMAN_USE_STRICT, a halt file, a cycle, an error); a failed DAG writes "Aborting DAG..."
  too, after its failed-node list, and is not aborted. An error exit (1 or 2) with no abort
  line and no failed node (a .dag DAGMan could not parse) is an abort with the last error;
- `<dag>.dagman.log`, the DAGMan job's user log: queued, running, held, restarted, removed;
- the node status file (NODE_STATUS_FILE) when the DAG names one, re-read when it changes
  (`classads.py`): node states the logs cannot show (PRERUN, FUTILE) and retry counts;
- the rescue DAGs `<dag>.rescueNNN`: the newest, and the DONE nodes of the one a run uses.

Instances: `<job>/<node name>` for each node (splice nodes as DAGMan names them, `S+B`), with
`node.*` and the node's latest HTCondor job as `job.*`; and `<job>/<dag file name>` for the
DAG, with `dag.*` and the DAGMan job as `job.*`. How a node's state maps:

| node.state                    | job.state   | job.outcome | notes                           |
| ----------------------------- | ----------- | ----------- | ------------------------------- |
| NOT_READY, READY, PRERUN      | PENDING     | unknown     | READY also while a retry waits  |
| SUBMITTED idle / running      | PENDING / RUNNING | unknown / running | job.status from events |
| SUBMITTED held / suspended    | HELD / SUSPENDED  | unknown / running | hold reason and code    |
| POSTRUN                       | COMPLETING  | running     |                                 |
| DONE                          | COMPLETED   | success     |                                 |
| ERROR (job failed, no retry)  | FAILED      | failed      | exit code or signal             |
| ERROR (job removed)           | CANCELLED   | cancelled   | the DAG was removed or aborted  |
| FUTILE                        | CANCELLED   | cancelled   | an ancestor failed              |
| never ran, DAG ended          | CANCELLED   | cancelled   | node.state stays as DAGMan left |

`job.restarts` and `node.retries` are the node's retries (the larger of what the node log,
dagman.out and the status file show); `job.run_count` counts executions over all retries, and
CPU time sums them; memory and disk are the peak of any attempt (bytes).

The DAG instance is terminal when the DAGMan job has ended: its user log says so, or, without
one, dagman.out's `EXITING WITH STATUS`. A DAGMan exit code outside 0-2 makes HTCondor run
DAGMan again (ABORT-DAG-ON ... RETURN 9 does that): the DAG stays running then, as it really
does. Problems reading any of these files become `dag.problem` and `dag.read_failures`
(consecutive ticks with a problem), with one log line when a problem starts or changes; they
never stop the other DAGs or the engine. A missing node log is a problem only once dagman.out
shows DAGMan created it (`Bootstrapping...`, or a node submitted): a DAG that stopped before
(a DAGMAN_USE_STRICT abort while starting up) never wrote one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import condor_cli as cli
from .base import Facts, ProbeError, TickContext, instance_key, job_base, render_path
from .classads import ClassAdError, parse_classads
from .dagfile import Dag, DagError, DagNode, parse_dag, parse_rescue
from .tail import MAX_READ as NODE_LOG_MAX_READ  # bytes of a node log read per tick at most
from .tail import Tailer
from .userlog import (
    ABORTED,
    EVICTED,
    EXECUTE,
    FILE_TRANSFER,
    HELD,
    IMAGE_SIZE,
    JOB_AD,
    POST_SCRIPT,
    RELEASED,
    REMOTE_ERROR,
    SUBMIT,
    SUSPENDED,
    TERMINATED,
    UNSUSPENDED,
    Event,
    UserLogFollower,
)

if TYPE_CHECKING:
    from ..config.models import DagmanSource, Ruleset

log = logging.getLogger(__name__)

NODE_STATES = ("NOT_READY", "READY", "PRERUN", "SUBMITTED", "POSTRUN", "DONE", "ERROR",
               "FUTILE")
DAG_STATUS = {0: "OK", 1: "ERROR", 2: "NODE_FAILED", 3: "ABORT", 4: "RM", 5: "CYCLE",
              6: "HALTED"}
#: HoldReasonCode → diagnosis, as for plain HTCondor jobs (see htcondor.py): a hold by a user
#: (code 1) has none, as the job is still queued and can be released.
_HOLD_DIAGNOSIS = {6: "launch_failed", 8: "launch_failed", 10: "launch_failed",
                   13: "launch_failed", 14: "launch_failed", 7: "missing_output",
                   9: "missing_output", 12: "missing_output", 34: "oom"}
_ENDED = ("done", "removed")
#: node states a FINAL node does not wait for
_FINAL_WAITS_FOR = ("DONE", "ERROR", "FUTILE")
_MB = 1 << 20
_KB = 1 << 10
#: Share of the time left before the tick's deadline (TickContext.deadline: the engine's
#: probe timeout) the node logs may take, at most READ_SECONDS_MAX seconds (also the limit
#: without a deadline): building the facts of every node and condor_q for `live_usage:` need
#: the rest, and a 100 MB log takes 10-20 s to read whole.
READ_SHARE = 0.5
READ_SECONDS_MAX = 10.0
_NODE_LOG_CHUNK = 1 << 20
#: `live_usage:` asks condor_q at most this often (its figures change every few minutes).
LIVE_EVERY = 30.0
#: condor_q for `live_usage:` may take this share of the time left before the deadline, at
#: most LIVE_TIMEOUT_MAX seconds; with less than LIVE_TIMEOUT_MIN left it is asked next tick.
LIVE_SHARE = 0.8
LIVE_TIMEOUT_MAX = 20.0
LIVE_TIMEOUT_MIN = 1.0
_LIVE_ATTRS = ("ClusterId", "ProcId", "DAGManJobId", "DAGNodeName", "JobStatus",
               "RemoteUserCpu", "RemoteSysCpu", "ResidentSetSize", "DiskUsage", "RemoteHost")
_RESCUE = re.compile(r"\.rescue(\d{3})$")


# --- what the node log says -------------------------------------------------------------------


@dataclass
class _Proc:
    status: str = "idle"  #: idle, running, held, suspended, transferring, done, removed
    started: float | None = None
    ended: float | None = None
    return_value: int | None = None
    signal: int | None = None
    removed_reason: str = ""


@dataclass
class _Usage:
    """What a node's attempts used and last reported. Kept twice as events come: for each
    submission, and as the node's running total over all of them (so a tick adds nothing up);
    the figures of some submissions only are their own `_Usage`s folded with `add`."""

    run_count: int = 0
    cpu_user: float = 0.0
    cpu_sys: float = 0.0
    mem_peak_mb: float | None = None
    mem_req_mb: float | None = None
    disk_kb: float | None = None
    disk_req_kb: float | None = None
    cpus: float | None = None
    gpus: float | None = None
    host: str | None = None
    hold_reason: str = ""
    hold_code: int | None = None
    hold_subcode: int | None = None
    remote_error: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def clear_hold(self) -> None:
        self.hold_reason, self.hold_code, self.hold_subcode = "", None, None

    def add(self, later: _Usage) -> None:
        """A later submission's figures folded in: runs and CPU summed, peaks the larger, the
        last host, requests and remote error reported, and the later one's hold (a new
        submission starts unheld)."""
        self.run_count += later.run_count
        self.cpu_user += later.cpu_user
        self.cpu_sys += later.cpu_sys
        if later.mem_peak_mb is not None:
            self.mem_peak_mb = max(self.mem_peak_mb or 0, later.mem_peak_mb)
        if later.disk_kb is not None:
            self.disk_kb = max(self.disk_kb or 0, later.disk_kb)
        for name in ("mem_req_mb", "disk_req_kb", "cpus", "gpus", "host"):
            if getattr(later, name) is not None:
                setattr(self, name, getattr(later, name))
        self.hold_reason, self.hold_code, self.hold_subcode = (
            later.hold_reason, later.hold_code, later.hold_subcode)
        self.remote_error = later.remote_error or self.remote_error
        self.attrs.update(later.attrs)


@dataclass
class _Submission:
    """One cluster DAGMan submitted for a node (a retry is a new submission)."""

    cluster: int
    submitted: float | None
    procs: dict[int, _Proc] = field(default_factory=dict)
    post: int | None = None  #: POST script exit (016 event), -signal when killed
    started: float | None = None
    use: _Usage = field(default_factory=_Usage)  #: what this submission's attempts used

    def ended(self) -> bool:
        return bool(self.procs) and all(p.status in _ENDED for p in self.procs.values())

    def failed_proc(self) -> _Proc | None:
        for p in self.procs.values():
            if p.status == "removed" or p.signal or (p.return_value or 0) != 0:
                return p
        return None

    def end_time(self) -> float | None:
        times = [p.ended for p in self.procs.values() if p.ended is not None]
        return max(times) if times else None


@dataclass
class _NodeJobs(_Usage):
    """Everything the node log says about one node: its submissions, and the figures (the
    `_Usage` fields) totalled over all of them."""

    submissions: list[_Submission] = field(default_factory=list)

    @property
    def latest(self) -> _Submission | None:
        return self.submissions[-1] if self.submissions else None


class _NodeLog:
    """The node log, followed, and the per-node view derived from it."""

    def __init__(self, path: Path) -> None:
        self.follower = UserLogFollower(path, chunk=_NODE_LOG_CHUNK)
        self.nodes: dict[str, _NodeJobs] = {}
        self.clusters: dict[int, str] = {}
        self.garbage = 0
        self.garbage_sample = ""
        self.error: str | None = None
        self.catching_up = False
        self.behind = 0

    def read(self, deadline: float | None = None) -> None:
        """New events, at most NODE_LOG_MAX_READ bytes and until `deadline`: a large log
        found at start is caught up over several ticks (`catching_up`), so no tick outlasts
        the probe's timeout."""
        result = self.follower.read(NODE_LOG_MAX_READ, deadline)
        self.error = result.error
        self.catching_up = result.more
        self.behind = result.behind
        if result.reset:
            self.nodes.clear()
            self.clusters.clear()
            self.garbage = 0
        self.garbage += result.garbage
        if result.garbage_sample:
            self.garbage_sample = result.garbage_sample
        for event in result.events:
            self.apply(event)

    def apply(self, e: Event) -> None:
        name = e.fields.get("node")
        if e.code == SUBMIT and name:
            self.clusters[e.cluster] = name
            jobs = self.nodes.setdefault(name, _NodeJobs())
            sub = jobs.latest
            if sub is None or sub.cluster != e.cluster:
                sub = _Submission(e.cluster, e.time)
                jobs.submissions.append(sub)
                jobs.clear_hold()
            sub.procs.setdefault(e.proc, _Proc())
            return
        name = name or self.clusters.get(e.cluster)
        if name is None:
            return  # not a node job (or its submit event was lost)
        jobs = self.nodes.setdefault(name, _NodeJobs())
        sub = next((s for s in reversed(jobs.submissions) if s.cluster == e.cluster), None)
        if sub is None:
            sub = _Submission(e.cluster, None)
            jobs.submissions.append(sub)
            self.clusters[e.cluster] = name
        if e.code == POST_SCRIPT:
            f = e.fields
            sub.post = int(f["return_value"]) if f.get("normal") else -int(f.get("signal", 1))
            return
        proc = sub.procs.setdefault(e.proc, _Proc())
        f = e.fields
        both = (jobs, sub.use)  # the node's total and this submission's own figures
        if e.code == EXECUTE:
            proc.status = "running"
            proc.started = proc.started or e.time
            sub.started = sub.started or e.time
            host = f.get("slot") or f.get("host")
            for u in both:
                u.run_count += 1
                u.clear_hold()
                u.host = host or u.host
        elif e.code in (TERMINATED, EVICTED):
            for u in both:
                _usage(u, f)
            if e.code == TERMINATED:
                proc.status = "done"
                proc.ended = e.time
                if f.get("normal"):
                    proc.return_value, proc.signal = int(f.get("return_value", 0)), 0
                elif "signal" in f:
                    proc.signal = int(f["signal"])
                    proc.return_value = 128 + proc.signal
            elif proc.status not in _ENDED:
                proc.status = "idle"
        elif e.code == IMAGE_SIZE:
            if "memory_mb" in f:
                for u in both:
                    u.mem_peak_mb = max(u.mem_peak_mb or 0, f["memory_mb"])
        elif e.code == ABORTED:
            proc.status = "removed"
            proc.ended = e.time
            proc.removed_reason = str(f.get("reason", ""))
        elif e.code == HELD:
            proc.status = "held"
            for u in both:
                u.hold_reason = str(f.get("reason", ""))
                u.hold_code = f.get("hold_code")
                u.hold_subcode = f.get("hold_subcode")
        elif e.code == RELEASED:
            proc.status = "idle"
            for u in both:
                u.clear_hold()
        elif e.code == SUSPENDED:
            proc.status = "suspended"
        elif e.code == UNSUSPENDED:
            proc.status = "running"
        elif e.code == REMOTE_ERROR:
            for u in both:
                u.remote_error = str(f.get("reason", ""))
        elif e.code == JOB_AD:
            for u in both:
                u.attrs.update(f.get("attrs", {}))
        elif e.code == FILE_TRANSFER:
            text = str(f.get("transfer", ""))
            if "Started transferring" in text and proc.status not in _ENDED:
                proc.status = "transferring"
            elif "Finished transferring" in text and proc.status == "transferring":
                proc.status = "running" if proc.started else "idle"


def _usage(jobs: _Usage, f: Mapping[str, Any]) -> None:
    jobs.cpu_user += float(f.get("cpu_user", 0) or 0)
    jobs.cpu_sys += float(f.get("cpu_sys", 0) or 0)
    for attr, key in (("mem_peak_mb", "memory_usage"), ("disk_kb", "disk_usage")):
        if key in f:
            setattr(jobs, attr, max(getattr(jobs, attr) or 0, f[key]))
    for attr, keys in (("mem_req_mb", ("memory_request",)), ("disk_req_kb", ("disk_request",)),
                       ("cpus", ("cpus_allocated", "cpus_request")),
                       ("gpus", ("gpus_request", "gpus_allocated"))):
        for key in keys:
            if f.get(key) is not None:
                setattr(jobs, attr, f[key])
                break


# --- what dagman.out says ---------------------------------------------------------------------

_STAMP = re.compile(r"^(\d\d/\d\d/\d\d) (\d\d:\d\d:\d\d)(?:\.\d+)? (.*)$")
_START = re.compile(r"\*\* (?:condor_scheduniv_exec\.(\d+)\.\d+|\S+) \(CONDOR_DAGMAN\) "
                    r"STARTING UP", re.I)
_EXIT = re.compile(r"\(condor_DAGMAN\) pid \d+ EXITING WITH STATUS (-?\d+)", re.I)
_STATUS_LINE = re.compile(r"^DAG status: (\d+) \((\w+)\)")
_USING = re.compile(r"^USING RESCUE DAG (\S+)")
_WRITING = re.compile(r"^Writing Rescue DAG (?:file )?(?:to )?(\S+?)(?:\.\.\.)?$")
_RETRYING = re.compile(r"^Retrying node (\S+) \(retry #(\d+) of (\d+)\)")
_FAILED = re.compile(r"^Node (\S+) job proc \((\d+)\.\d+\.\d+\) failed with (status|signal) "
                     r"(-?\d+)")
_SCRIPT_RUN = re.compile(r"^Running (PRE|POST) script of Node (\S+?)\.*$")
_SCRIPT_END = re.compile(r"^(PRE|POST) Script of node (\S+) (completed successfully|failed "
                         r"with (?:status|signal) (-?\d+))")
_ABORT = re.compile(r"^Aborting DAG because (.*)$")
_ABORT_NODE = re.compile(r"^Node (\S+) .*ABORT", re.I)
#: Lines of dagman.out that say why DAGMan is about to abort (every path to its
#: main_shutdown_rescue, which writes "Aborting DAG...", or to an early exit, 23.9 to 25.x):
#: the line itself, or what to say instead.
_STRICT = "ERROR: Warning is fatal error because of DAGMAN_USE_STRICT setting"
_SCARY = "  Aborting DAG; set DAGMAN_ABORT_ON_SCARY_SUBMIT"
_HALTED = "Exiting because DAG is halted"  # 25.x; 23.9 says only the two below
_HALT_FILE = re.compile(r"^DAG is halted because halt file (\S+) exists")
_UNHALTED = "DAG going from halted to running state"
_FAILED_LIST = "ERROR: the following job(s) failed:"
#: `pipe.dag (line 2): ERROR: expected JOB, ...`: the DAG file does not parse
_PARSE_ERROR = re.compile(r"^\S+ \(line \d+\): ERROR: ")
_CAUSES = {
    "ProcessLogEvents() returned false": "DAGMan could not process the node log's events",
    "DAGMan exiting due to error in log file": "DAGMan found an error in the node log",
    "Unable to log ULOG_POST_SCRIPT_TERMINATED event":
        "DAGMan could not write a POST script's event to the node log",
}
#: Markers that DAGMan got past parsing and created (truncated) the node log: before them a
#: missing node log is normal, even once the DAG has ended (an abort while starting up).
_NODE_LOG_MADE = ("Bootstrapping...", "MultiLogFiles: truncating", "Submitting HTCondor Node",
                  "Running in RECOVERY mode")


@dataclass
class _Run:
    """One DAGMan run, as dagman.out tells it (a rescue run is a new run)."""

    cluster: int | None = None
    started: float | None = None
    ended: float | None = None
    exit_status: int | None = None
    dag_status: int | None = None
    rescue_used: str | None = None
    rescue_written: str | None = None
    abort_reason: str = ""
    removed: bool = False
    #: why DAGMan is stopping, from the lines before "Aborting DAG..." or an early exit
    cause: str = ""
    last_warning: str = ""
    node_failures: bool = False  #: "the following job(s) failed" (a failed DAG, no abort)
    halted: bool = False
    node_log_made: bool = False  #: DAGMan got as far as creating the node log
    error_count: int = 0
    last_error: str = ""
    retries: dict[str, int] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)  #: node → "PRE" / "POST" running
    pre_failed: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    last_failed: str = ""


class _DagmanOut:
    def __init__(self, path: Path) -> None:
        self.tailer = Tailer(path)
        self.runs = 0
        self.run: _Run | None = None
        self.error: str | None = None
        self.in_failed_block = False

    def read(self) -> None:
        for line in self.tailer.read():
            self.feed(line)
        self.error = self.tailer.error

    def feed(self, line: str) -> None:
        m = _STAMP.match(line)
        when: float | None = None
        msg = line.strip()
        if m:
            msg = m.group(3).strip()
            try:
                when = time.mktime(time.strptime(f"{m.group(1)} {m.group(2)}",
                                                 "%m/%d/%y %H:%M:%S"))
            except (ValueError, OverflowError):
                when = None
        if "STARTING UP" in msg:
            s = _START.search(msg)
            if s:
                self.runs += 1
                self.run = _Run(cluster=int(s.group(1)) if s.group(1) else None, started=when)
                return
        run = self.run
        if run is None:
            if "EXITING WITH STATUS" not in msg:
                return
            run = self.run = _Run()  # a dagman.out whose start we never saw (rotated)
            self.runs += 1
        if "EXITING WITH STATUS" in msg:
            e = _EXIT.search(msg)
            if e:
                run.exit_status = int(e.group(1))
                run.ended = when
                if run.exit_status in (1, 2) and not run.abort_reason and \
                        not run.node_failures and run.dag_status != 2:
                    # an error exit without "Aborting DAG..." (a DAG file that does not
                    # parse, an error while bootstrapping): DAGMan stopped it all the same
                    run.abort_reason = run.cause or run.last_error or \
                        f"DAGMan exited with status {run.exit_status}"
            return
        if not run.node_log_made and msg.startswith(_NODE_LOG_MADE):
            run.node_log_made = True
        first = msg[:1]
        if first == "D" and msg.startswith("DAG status:"):
            s2 = _STATUS_LINE.match(msg)
            if s2:
                run.dag_status = int(s2.group(1))
        elif first == "U" and msg.startswith("USING RESCUE DAG"):
            u = _USING.match(msg)
            if u:
                run.rescue_used = u.group(1)
        elif first == "W" and msg.startswith("Writing Rescue DAG"):
            w = _WRITING.match(msg)
            if w:
                run.rescue_written = w.group(1)
        elif first == "R" and msg.startswith("Retrying node"):
            r = _RETRYING.match(msg)
            if r:
                run.retries[r.group(1)] = int(r.group(2))
        elif first == "R" and msg.startswith("Received SIGUSR1"):
            run.removed = True
            run.abort_reason = run.abort_reason or "the DAGMan job was removed (condor_rm)"
        elif first == "R" and msg.startswith("Running ") and " script of Node " in msg:
            s3 = _SCRIPT_RUN.match(msg)
            if s3:
                run.scripts[s3.group(2)] = s3.group(1)
        elif first in ("P",) and " Script of node " in msg:
            s4 = _SCRIPT_END.match(msg)
            if s4:
                run.scripts.pop(s4.group(2), None)
                if s4.group(4) is not None:
                    run.failures[s4.group(2)] = f"{s4.group(1)} script {s4.group(3)}"
                    if s4.group(1) == "PRE":
                        run.pre_failed[s4.group(2)] = int(s4.group(4))
        elif first == "N" and msg.startswith("Node ") and " failed with " in msg:
            f = _FAILED.match(msg)
            if f:
                run.failures[f.group(1)] = f"job {f.group(2)} failed with {f.group(3)} " \
                    f"{f.group(4)}"
                run.last_failed = f.group(1)
        elif first == "A" and msg.startswith("Aborting DAG because"):
            a = _ABORT.match(msg)
            if a:
                run.abort_reason = a.group(1).rstrip(".")
        elif first == "A" and msg.startswith("Aborting DAG..."):
            # every abort and every failed DAG pass here: a failed DAG is no abort (unless it
            # was halted); otherwise the cause is what DAGMan said just before
            if not run.abort_reason and (run.halted or not run.node_failures):
                run.abort_reason = run.cause or "DAGMan aborted the DAG"
        else:
            self._cause(run, msg, first)
        if first == "E" and msg.startswith("ERROR"):
            run.error_count += 1
            run.last_error = msg[:300]

    @staticmethod
    def _cause(run: _Run, msg: str, first: str) -> None:
        """Remember a line that says why DAGMan may abort next (most lines say nothing: the
        first character sorts them out)."""
        if first == "W":
            if msg.startswith("Warning"):
                run.last_warning = msg[:240]
        elif first == "E":
            if msg.startswith(_FAILED_LIST):
                run.node_failures = True
            elif msg.startswith(_STRICT):
                run.cause = "DAGMAN_USE_STRICT makes a warning fatal" + (
                    f": {run.last_warning}" if run.last_warning else "")
            elif msg.startswith(_HALTED):
                run.halted = True
                run.cause = "the DAG was halted and no jobs or scripts are left running"
            elif msg.startswith(("ERROR", "Error")):
                run.cause = _clip(msg.split(_SCARY, 1)[0])
        elif first in ".FU":
            if msg.startswith(("... ERROR", "Failed to", "Unable to")) and \
                    not (msg.startswith("Failed to parse") and run.cause):
                run.cause = _CAUSES.get(msg, _clip(msg.removeprefix("... ")))
        elif " (line " in msg and _PARSE_ERROR.match(msg):
            run.cause = _clip(msg)
        elif first == "D" and msg.startswith("DAG is halted because"):
            if not run.halted:
                h = _HALT_FILE.match(msg)
                run.halted = True
                run.cause = "the DAG was halted" + (f" (halt file {h.group(1)})" if h else "")
        elif first == "D" and msg.startswith(_UNHALTED):
            run.halted, run.cause = False, ""
        elif first in "PD" and msg in _CAUSES:
            run.cause = _CAUSES[msg]
            if first == "D":  # "DAGMan exiting due to error in log file": no abort line follows
                run.abort_reason = run.abort_reason or run.cause


# --- the DAGMan job, from <dag>.dagman.log ----------------------------------------------------


@dataclass
class _DagmanJob:
    cluster: int | None = None
    status: str = ""  #: idle, running, held, done, removed
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    restarts: int = 0
    hold_reason: str = ""
    hold_code: int | None = None
    removed_by: str = ""

    def apply(self, e: Event) -> None:
        if e.code == SUBMIT:
            self.submitted = e.time
            self.status = "idle"
            return
        if self.cluster is None:
            self.cluster = e.cluster
        if e.cluster != self.cluster:
            return
        f = e.fields
        if e.code == EXECUTE:
            if self.started is not None and self.status != "running":
                self.restarts += 1
            self.started = self.started or e.time
            self.status = "running"
        elif e.code == TERMINATED:
            self.status, self.ended = "done", e.time
            self.exit_code = int(f["return_value"]) if f.get("normal") else \
                128 + int(f.get("signal", 0))
        elif e.code == EVICTED:
            self.status = "idle"
        elif e.code == ABORTED:
            self.status, self.ended = "removed", e.time
            self.removed_by = str(f.get("by", ""))
        elif e.code == HELD:
            self.status = "held"
            self.hold_reason = str(f.get("reason", ""))
            self.hold_code = f.get("hold_code")
        elif e.code == RELEASED:
            self.status = "idle"
            self.hold_reason, self.hold_code = "", None


# --- a DAG submitted again (a rescue run) ------------------------------------------------------


@dataclass
class _Rerun:
    """A new DAGMan job for a DAG that had ended: `control: resubmit`, or a condor_submit_dag
    seen in the DAGMan job's log. Until its run shows in dagman.out, what the files say is the
    previous run's: the DAG and the nodes that will run again are waiting, not ended."""

    cluster: int | None
    at: float
    rescue: str | None = None  #: the rescue DAG it starts from, when known
    runs_before: int = 0  #: dagman.out runs seen when it was submitted


#: DAGs resubmitted by `control: resubmit` in this process (resolved .dag path → the new
#: DAGMan job): the probe takes them on its next tick, as the control action runs on a thread
#: of its own and the DAGMan job's log may say nothing yet.
_RESUBMITTED: dict[str, _Rerun] = {}
_RESUBMITTED_LOCK = threading.Lock()


def _take_resubmitted(dag: Path) -> _Rerun | None:
    with _RESUBMITTED_LOCK:
        return _RESUBMITTED.pop(_dag_id(dag), None)


def _dag_id(dag: Path) -> str:
    try:
        return str(dag.resolve())
    except OSError:
        return str(dag.absolute())


# --- one watched DAG --------------------------------------------------------------------------


@dataclass
class _Watch:
    key: str
    spec: DagmanSource
    dag_path: Path
    nodes_log: Path
    dagman_out: Path
    dagman_log: Path
    status_override: Path | None
    dag: Dag | None = None
    dag_sig: tuple[tuple[str, int, int], ...] = ()
    dag_error: str = ""
    status_path: Path | None = None
    status_sig: tuple[int, int] | None = None
    status_ads: list[dict[str, Any]] = field(default_factory=list)
    status_error: str = ""
    node_log: _NodeLog | None = None
    out: _DagmanOut | None = None
    job_log: UserLogFollower | None = None
    job: _DagmanJob = field(default_factory=_DagmanJob)
    rescue_cache: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    rescues: list[Path] = field(default_factory=list)
    static: dict[str, Facts] = field(default_factory=dict)  #: per node, from the .dag file
    folder_mtime: int | None = None
    last_slow: float = float("-inf")
    failures: int = 0
    problem: str = ""
    submitted: bool = False
    submit_error: str = ""
    submit_note: str = ""
    rerun: _Rerun | None = None

    @property
    def dag_key(self) -> str:
        return instance_key(self.key, self.dag_path.name)


class DagmanProbe:
    """Watches every job of the ruleset that has a `dagman:` source."""

    name = "dagman"

    def __init__(self, ruleset: Ruleset, base_dir: Path) -> None:
        self._watches: list[_Watch] = []
        self._lock = threading.Lock()
        self._live_at: float | None = None
        self._live: dict[int, dict[str, Any]] = {}  #: node job cluster → its live ad
        self._live_error = ""
        for key, job in ruleset.jobs.items():
            spec = job.dagman
            if spec is None:
                continue
            base = job_base(job, base_dir)
            ctx = {"job": {"key": key, "name": key}}
            dag = render_path(spec.dag, ctx, base)
            paths = [render_path(value, ctx, base) if value else
                     dag.parent / (dag.name + suffix)
                     for value, suffix in ((spec.nodes_log, ".nodes.log"),
                                           (spec.dagman_out, ".dagman.out"),
                                           (spec.dagman_log, ".dagman.log"))]
            self._watches.append(_Watch(
                key, spec, dag, paths[0], paths[1], paths[2],
                render_path(spec.status_file, ctx, base) if spec.status_file else None))

    # --- Probe protocol ------------------------------------------------------------------

    def start(self, ctx: TickContext) -> None:
        """Submit the DAGs that ask for it (`submit: true`), unless already running."""
        with self._lock:
            for w in self._watches:
                if w.spec.submit and not w.submitted:
                    w.submitted = True
                    if ctx.dry_run:
                        w.submit_note = "dry run: not submitted"
                        continue
                    self._submit(w)

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        out: dict[str, Facts] = {}
        read_for = READ_SECONDS_MAX if ctx.deadline is None else \
            min(READ_SECONDS_MAX, READ_SHARE * (ctx.deadline - time.monotonic()))
        # past already (a slow start): each node log still reads a chunk, so it catches up
        read_by = time.monotonic() + read_for
        with self._lock:
            for w in self._watches:
                try:
                    out.update(self._collect(w, ctx.now, read_by))
                except Exception as exc:  # a bug or an unforeseen file must not stop the rest
                    self._problem(w, f"internal error: {_one_line(exc)}")
                    out[w.dag_key] = {**_dag_base(w), **_problem_facts(w)}
            if any(w.spec.live_usage for w in self._watches):
                self._live_usage(out, ctx.now, ctx.deadline)
        return out

    def _live_usage(self, out: dict[str, Facts], now: float, deadline: float | None) -> None:
        """`live_usage:` CPU time, memory and host of the running node jobs from ONE condor_q
        call for every such DAG (at most every LIVE_EVERY s, within the time the tick's
        `deadline` leaves). Best effort: a failing call is logged once and leaves the node
        log's figures alone."""
        clusters = sorted({c for w in self._watches if w.spec.live_usage
                           and out.get(w.dag_key, {}).get("dag.queued")
                           and isinstance(c := out[w.dag_key].get("dag.cluster"), int)})
        due = self._live_at is None or now - self._live_at >= LIVE_EVERY or now < self._live_at
        timeout = LIVE_TIMEOUT_MAX if deadline is None else \
            min(LIVE_TIMEOUT_MAX, LIVE_SHARE * (deadline - time.monotonic()))
        if due and clusters and timeout >= LIVE_TIMEOUT_MIN:
            self._live_at = now
            constraint = " || ".join(f"DAGManJobId == {c}" for c in clusters)
            try:
                ads = cli.query(constraint, attributes=_LIVE_ATTRS, timeout=timeout)
            except ProbeError as exc:
                if str(exc) != self._live_error:
                    log.warning("dag_live_usage_failed error=%s", exc)
                self._live_error, self._live = str(exc), {}
            else:
                self._live_error = ""
                self._live = {}
                for raw in ads:
                    ad = cli.lower_keys(raw)
                    cluster = cli.integer(ad, "ClusterId")
                    if cluster is not None:
                        self._live[cluster] = ad
        elif not clusters:
            self._live = {}
        if not self._live:
            return
        for w in self._watches:
            if not w.spec.live_usage or w.dag is None:
                continue
            for name in w.dag.nodes:
                facts = out.get(instance_key(w.key, name))
                if facts is None or facts.get("node.state") != "SUBMITTED":
                    continue
                cluster = facts.get("job.cluster")
                live = self._live.get(cluster) if isinstance(cluster, int) else None
                if live is not None:
                    _merge_live(facts, live)

    def close(self) -> None:
        """Nothing to release: files are opened per read."""

    # --- submission ----------------------------------------------------------------------

    def _submit(self, w: _Watch) -> None:
        lock = w.dag_path.parent / (w.dag_path.name + ".lock")
        if lock.exists():
            w.submit_note = f"not submitted: {lock.name} exists (the DAG is running)"
            log.info("dag_not_submitted dag=%s reason=lock file exists", w.dag_path)
            return
        try:
            text = cli.run(["condor_submit_dag", w.dag_path.name], cwd=w.dag_path.parent,
                           timeout=120.0)
        except ProbeError as exc:
            w.submit_error = str(exc)
            log.error("dag_submit_failed dag=%s error=%s", w.dag_path, exc)
            return
        m = re.search(r"submitted to cluster (\d+)", text)
        if m:
            w.job.cluster = int(m.group(1))
        w.submit_note = f"submitted as cluster {m.group(1) if m else '?'}"
        log.info("dag_submitted dag=%s %s", w.dag_path, w.submit_note)

    # --- one DAG, one tick ---------------------------------------------------------------

    def _collect(self, w: _Watch, now: float, deadline: float | None = None) -> dict[str, Facts]:
        problems: list[str] = []
        if now - w.last_slow >= float(w.spec.min_interval):
            w.last_slow = now
            self._reparse(w)
            self._status(w)
            self._rescues(w)
        if w.dag_error:
            problems.append(w.dag_error)
        if w.job_log is None:
            w.job_log = UserLogFollower(w.dagman_log)
        jres = w.job_log.read()
        if jres.reset:
            w.job = _DagmanJob()
        resubmitted = _take_resubmitted(w.dag_path)
        if resubmitted is not None:
            resubmitted.runs_before = w.out.runs if w.out else 0
            if w.rerun is not None and w.rerun.cluster == resubmitted.cluster:
                resubmitted.runs_before = w.rerun.runs_before  # its log was read first
            if w.job.cluster != resubmitted.cluster:
                w.job = _DagmanJob(cluster=resubmitted.cluster)
            w.rerun = resubmitted
            w.submit_note = (f"resubmitted from {resubmitted.rescue or 'its rescue DAG'} as "
                             f"cluster {resubmitted.cluster if resubmitted.cluster else '?'}")
            log.info("dag_resubmitted dag=%s %s", w.dag_path, w.submit_note)
        for event in jres.events:
            if event.code == SUBMIT and event.cluster != w.job.cluster and (
                    w.job.cluster is None or w.job.status or event.cluster > w.job.cluster):
                if w.job.cluster is not None and (w.rerun is None or
                                                  (w.rerun.cluster or 0) < event.cluster):
                    # submitted again after an earlier DAGMan job (condor_submit_dag by hand)
                    w.rerun = _Rerun(event.cluster, event.time or now,
                                     runs_before=w.out.runs if w.out else 0)
                w.job = _DagmanJob(cluster=event.cluster)  # a new submission of the DAG
            w.job.apply(event)
        if w.out is None:
            w.out = _DagmanOut(w.dagman_out)
        before = w.out.run.rescue_written if w.out.run else None
        w.out.read()
        run = w.out.run
        if run is not None and run.rescue_written and run.rescue_written != before:
            self._rescues(w, force=True)
        if w.node_log is None:
            w.node_log = _NodeLog(w.nodes_log)
        w.node_log.read(deadline)
        nl = w.node_log
        # a missing file is normal before the DAG starts (and dagman.log is optional); the
        # node log must exist once DAGMan has created it (not when it stopped before that,
        # as a DAGMAN_USE_STRICT abort while starting up does)
        for err, where, needed in ((nl.error, "node log",
                                    run is not None and run.node_log_made),
                                   (w.out.error, "dagman.out", False),
                                   (jres.error, "dagman.log", False)):
            if err and (needed or not _missing(err)):
                problems.append(f"{where}: {err}")
        if nl.garbage:
            problems.append(f"node log: {nl.garbage} block(s) that are not events (first: "
                            f"{nl.garbage_sample!r})")
        if w.status_error:
            problems.append(w.status_error)
        if w.submit_error:
            problems.append(f"submit: {w.submit_error}")
        if problems:
            self._problem(w, "; ".join(problems))
        elif w.problem:
            log.info("dag_problem_cleared dag=%s", w.dag_path)
            w.problem, w.failures = "", 0
        return self._facts(w, now)

    def _problem(self, w: _Watch, text: str) -> None:
        w.failures += 1
        if text != w.problem:
            log.warning("dag_problem dag=%s failures=%d problem=%s", w.dag_path, w.failures,
                        text)
        w.problem = text

    def _reparse(self, w: _Watch) -> None:
        files = w.dag.files if w.dag is not None else [w.dag_path]
        sig = tuple(_sig(p) for p in files)
        if sig == w.dag_sig and (w.dag is not None or w.dag_error):
            return
        w.dag_sig = sig
        try:
            dag = parse_dag(w.dag_path)
        except DagError as exc:
            w.dag_error = f"DAG file: {exc}"
            if w.dag is not None:
                w.dag_error += " (the last good version is used)"
            log.warning("dag_parse_failed dag=%s error=%s", w.dag_path, exc)
            return
        w.dag, w.dag_error, w.static = dag, "", {}
        w.dag_sig = tuple(_sig(p) for p in dag.files)
        if w.status_override is not None:
            w.status_path = w.status_override
        elif dag.node_status_file:
            p = Path(dag.node_status_file)
            w.status_path = p if p.is_absolute() else w.dag_path.parent / p
        else:
            w.status_path = None

    def _status(self, w: _Watch) -> None:
        path = w.status_path
        if path is None:
            return
        try:
            st = path.stat()
        except OSError:
            w.status_ads, w.status_sig, w.status_error = [], None, ""
            return
        sig = (st.st_mtime_ns, st.st_size)
        if sig == w.status_sig:
            return
        w.status_sig = sig
        try:
            ads = parse_classads(path.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ClassAdError) as exc:
            w.status_error = f"status file {path.name}: {exc}"
            return
        w.status_error = ""
        w.status_ads = ads

    def _rescues(self, w: _Watch, force: bool = False) -> None:
        """The rescue DAGs beside the .dag, listed again only when the folder changed (a DAG
        folder can hold thousands of output files)."""
        folder, stem = w.dag_path.parent, w.dag_path.name
        try:
            mtime = folder.stat().st_mtime_ns
            if mtime == w.folder_mtime and not force:
                return
            w.folder_mtime = mtime
            found = [p for p in folder.iterdir()
                     if p.name.startswith(stem) and _RESCUE.search(p.name)]
        except OSError:
            w.rescues = []
            return
        w.rescues = sorted(found, key=lambda p: int(_RESCUE.search(p.name).group(1)))  # type: ignore[union-attr]

    def _rescue_done(self, w: _Watch, name: str) -> set[str]:
        path = Path(name) if Path(name).is_absolute() else w.dag_path.parent / name
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return set()
        cached = w.rescue_cache.get(str(path))
        if cached is None or cached[0] != mtime:
            cached = (mtime, parse_rescue(path)[0])
            w.rescue_cache[str(path)] = cached
        return cached[1]

    # --- facts ---------------------------------------------------------------------------

    def _facts(self, w: _Watch, now: float) -> dict[str, Facts]:
        out: dict[str, Facts] = {}
        dag = w.dag
        assert w.node_log is not None and w.out is not None
        run = w.out.run
        rerun = w.rerun
        waiting = rerun is not None and not _rerun_started(run, w.out.runs, rerun)
        if waiting:
            run = None  # dagman.out still tells the previous run
        finished, exit_code = _dag_end(w, run)
        catching_up = w.node_log.catching_up
        ended = finished
        if catching_up:  # node states lag behind: nothing is judged over yet
            finished = False
        if w.submit_error:  # nothing will run: the nodes end with the DAG instance
            finished = True
        status_nodes, status_dag = ({}, {}) if waiting else _status_view(w, run)
        pre_done: set[str] = set()
        if run is not None and run.rescue_used:
            pre_done = self._rescue_done(w, run.rescue_used)
        elif waiting and rerun is not None and (rerun.rescue or w.rescues):
            pre_done = self._rescue_done(w, rerun.rescue or w.rescues[-1].name)
        since = rerun.cluster if rerun is not None else None
        states: dict[str, _NodeView] = {}
        if dag is not None:
            order = _topo(dag)
            # a FINAL node runs once every other node has ended, whatever their outcome
            order = [n for n in order if dag.nodes[n].kind != "FINAL"] + \
                [n for n in order if dag.nodes[n].kind == "FINAL"]
            for name in order:
                node = dag.nodes[name]
                final = node.kind == "FINAL"
                parents = [states[p] for p in node.parents if p in states] if not final else \
                    [v for v in states.values() if v.state not in _FINAL_WAITS_FOR]
                states[name] = view = _node_view(
                    node, _this_run(w.node_log.nodes.get(name), since), run,
                    status_nodes.get(name), pre_done, finished, parents, final=final)
                if w.submit_error and view.state in ("NOT_READY", "READY"):
                    view.detail = "never ran: the DAG could not be submitted"
                elif waiting and view.state != "DONE":
                    view.detail = f"to run again: {w.submit_note or 'the DAG was resubmitted'}"
            cluster = w.job.cluster or (run.cluster if run else None)
            batch = f"{w.dag_path.name}+{cluster}" if cluster is not None else None
            for name, node in dag.nodes.items():
                facts = _node_facts(w, node, states[name],
                                    _this_run(w.node_log.nodes.get(name), since), now)
                if batch is not None:  # DAGMan's JobBatchName for the DAG's jobs
                    facts["job.batch_name"] = batch
                facts["node.catching_up"] = catching_up
                out[instance_key(w.key, name)] = facts
        dag_facts = self._dag_facts(w, states, run, finished, exit_code, status_dag, now)
        dag_facts["dag.catching_up"] = catching_up
        dag_facts["dag.log_behind"] = w.node_log.behind if catching_up else 0
        if catching_up and ended:  # DAGMan is done; its outcome is told once the log is read
            dag_facts.update({"job.state": "COMPLETING", "job.outcome": "running",
                              "job.raw_state": f"DAGMan ended; reading the node log "
                              f"({w.node_log.behind:,} bytes behind)"})
        out[w.dag_key] = dag_facts
        return out

    def _dag_facts(self, w: _Watch, states: Mapping[str, _NodeView], run: _Run | None,
                   finished: bool, exit_code: int | None, status_dag: Mapping[str, Any],
                   now: float) -> Facts:
        f = _dag_base(w)
        counts = dict.fromkeys(NODE_STATES, 0)
        running = held = retries = 0
        failed_nodes: list[str] = []
        for name, view in states.items():
            counts[view.state] += 1
            running += view.status == "running"
            held += view.status == "held"
            retries += view.retries
            if view.state == "ERROR":
                failed_nodes.append(name)
        total = len(states)
        done = counts["DONE"]
        f.update({
            "dag.total": total, "dag.done": done, "dag.failed": counts["ERROR"],
            "dag.futile": counts["FUTILE"], "dag.running": running, "dag.held": held,
            "dag.queued": counts["SUBMITTED"], "dag.ready": counts["READY"],
            "dag.unready": counts["NOT_READY"], "dag.pre": counts["PRERUN"],
            "dag.post": counts["POSTRUN"], "dag.retries": retries,
            "dag.pct": 100.0 * done / total if total else 0.0,
            "dag.failed_nodes": sorted(failed_nodes),
            "dag.finished": finished,
            "dag.runs": w.out.runs if w.out else 0,
        })
        if exit_code is not None:
            f["dag.exit_code"] = exit_code
        if run is not None:
            f["dag.errors"] = run.error_count
            f["dag.last_error"] = run.last_error
            if run.dag_status is not None:
                f["dag.dag_status"] = DAG_STATUS.get(run.dag_status, str(run.dag_status))
            if run.rescue_used:
                f["dag.rescue_used"] = str(w.dag_path.parent / run.rescue_used)
        else:
            f["dag.errors"] = 0
            f["dag.last_error"] = ""
        aborted, reason = _abort(w, run, finished, exit_code)
        f["dag.aborted"] = aborted
        f["dag.abort_reason"] = reason
        newest = w.rescues[-1] if w.rescues else None
        if newest is not None:
            f["dag.rescue_file"] = str(newest)
            f["dag.rescue_number"] = int(_RESCUE.search(newest.name).group(1))  # type: ignore[union-attr]
        written = bool(run and run.rescue_written)
        if not written and newest is not None:  # a run we saw start wrote it
            started = run.started if run else w.job.submitted
            written = started is not None and _mtime(newest) >= started - 1
        f["dag.rescue_written"] = written
        if status_dag:
            code = status_dag.get("DagStatus")
            if isinstance(code, int) and 0 <= code < len(NODE_STATES):
                f["dag.status"] = NODE_STATES[code]
            stamp = status_dag.get("Timestamp")
            if isinstance(stamp, int | float):
                f["dag.status_age"] = max(0.0, now - float(stamp))
        f.update(_problem_facts(w))
        f.update(_dagman_job_facts(w, run, finished, exit_code, now))
        return f


# --- node state --------------------------------------------------------------------------------


@dataclass
class _NodeView:
    state: str
    status: str = ""  #: HTCondor status of the node's job while SUBMITTED
    retries: int = 0
    detail: str = ""
    job_state: str = "PENDING"
    outcome: str = "unknown"
    exit_code: int | None = None
    signal: int | None = None


def _node_view(node: DagNode, jobs: _NodeJobs | None, run: _Run | None,
               status: Mapping[str, Any] | None, pre_done: set[str], finished: bool,
               parents: list[_NodeView], *, final: bool = False) -> _NodeView:
    """A node's state from the node log, dagman.out and the status file. For a FINAL node,
    `parents` are the other nodes that have not ended yet."""
    retries = 0
    if jobs is not None and jobs.submissions:
        retries = len(jobs.submissions) - 1
    if run is not None:
        retries = max(retries, run.retries.get(node.name, 0))
    if status is not None and isinstance(status.get("RetryCount"), int):
        retries = max(retries, int(status["RetryCount"]))
    view = _NodeView("NOT_READY", retries=retries)
    sub = jobs.latest if jobs is not None else None
    if node.name in pre_done or (node.done and sub is None):
        view.state = "DONE"
    elif sub is not None and not sub.ended():
        view.state = "SUBMITTED"
        statuses = [p.status for p in sub.procs.values() if p.status not in _ENDED]
        for s in ("held", "running", "transferring", "suspended", "idle"):
            if s in statuses:
                view.status = s
                break
    elif sub is not None and jobs is not None:
        _ended_view(node, sub, len(jobs.submissions) - 1, view, finished)
    else:
        script = run.scripts.get(node.name) if run is not None else None
        pre_failed = run.pre_failed.get(node.name) if run is not None else None
        if script == "PRE":
            view.state = "PRERUN"
        elif pre_failed is not None and (retries >= node.retry or finished):
            view.state = "ERROR"
            view.exit_code = pre_failed
            view.detail = f"PRE script failed with status {pre_failed}"
        elif final:
            view.state = "NOT_READY" if parents else "READY"
        elif any(p.state in ("ERROR", "FUTILE") for p in parents):
            view.state = "FUTILE"
            view.detail = "an ancestor node failed"
        elif node.noop and all(p.state == "DONE" for p in parents):
            view.state = "DONE"
        elif all(p.state == "DONE" for p in parents):
            view.state = "READY"
    # the status file knows what the logs cannot show (PRERUN, FUTILE, DONE by a POST script)
    if status is not None and view.state in ("NOT_READY", "READY"):
        code = status.get("NodeStatus")
        if isinstance(code, int) and 0 <= code < len(NODE_STATES) and code > 1:
            view.state = NODE_STATES[code]
            view.detail = str(status.get("StatusDetails") or view.detail)
    if finished and view.state == "SUBMITTED":
        # DAGMan removes what is queued when it ends; the abort events may land a moment
        # after its exit, so the job is counted as removed already
        view.state, view.status = "ERROR", "removed"
        view.detail = "the DAG ended while the job was queued"
    _job_state(view, finished)
    return view


def _ended_view(node: DagNode, sub: _Submission, log_retries: int, view: _NodeView,
                finished: bool) -> None:
    bad = sub.failed_proc()
    last = bad or next(iter(sub.procs.values()))
    view.exit_code = last.return_value
    view.signal = last.signal
    ok = bad is None
    removed = bad is not None and bad.status == "removed"
    if "POST" in node.scripts:
        if sub.post is None and not removed and not finished:
            view.state = "POSTRUN"
            return
        if sub.post is not None:
            ok = sub.post == 0
            if not ok:
                view.detail = f"POST script exited {sub.post}"
    if ok:
        view.state = "DONE"
        return
    if removed:
        view.detail = view.detail or f"job {sub.cluster} removed: {bad.removed_reason}"  # type: ignore[union-attr]
    elif not view.detail:
        view.detail = (f"job {sub.cluster} killed by signal {last.signal}" if last.signal else
                       f"job {sub.cluster} exited {last.return_value}")
    code = last.return_value
    aborting = node.abort_on is not None and code == node.abort_on
    unless = node.retry_unless_exit is not None and code == node.retry_unless_exit
    # retries already made are the earlier submissions in this node log: dagman.out's
    # "Retrying node" and the status file count the one about to start as well
    if (not finished and not removed and not aborting and not unless
            and log_retries < node.retry):
        view.state = "READY"
        view.retries = max(view.retries, log_retries + 1)
        view.detail = f"retry {log_retries + 1} of {node.retry} pending ({view.detail})"
        return
    view.state = "ERROR"
    view.status = "removed" if removed else ""
    if node.retry:
        view.detail += f" (after {view.retries} of {node.retry} retries)"


def _job_state(view: _NodeView, finished: bool) -> None:
    state = view.state
    if state == "SUBMITTED":
        view.job_state = {"running": "RUNNING", "transferring": "RUNNING", "held": "HELD",
                          "suspended": "SUSPENDED"}.get(view.status, "PENDING")
        view.outcome = "running" if view.job_state in ("RUNNING", "SUSPENDED") else "unknown"
    elif state == "POSTRUN":
        view.job_state, view.outcome = "COMPLETING", "running"
    elif state == "DONE":
        view.job_state, view.outcome = "COMPLETED", "success"
    elif state == "ERROR":
        if view.status == "removed":
            view.job_state, view.outcome = "CANCELLED", "cancelled"
        else:
            view.job_state, view.outcome = "FAILED", "failed"
    elif state == "FUTILE":
        view.job_state, view.outcome = "CANCELLED", "cancelled"
    elif finished:  # never ran and never will: the DAG has ended
        view.job_state, view.outcome = "CANCELLED", "cancelled"
        view.detail = view.detail or "never ran: the DAG ended first"
    else:
        view.job_state, view.outcome = "PENDING", "unknown"


def _topo(dag: Dag) -> list[str]:
    """Parents before children (a cycle, which DAGMan rejects, keeps file order)."""
    indeg = {n: len(node.parents) for n, node in dag.nodes.items()}
    ready = [n for n, d in indeg.items() if d == 0]
    order: list[str] = []
    while ready:
        n = ready.pop()
        order.append(n)
        for c in dag.nodes[n].children:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if len(order) < len(dag.nodes):
        seen = set(order)
        order += [n for n in dag.nodes if n not in seen]
    return order


def _rerun_started(run: _Run | None, runs: int, rerun: _Rerun) -> bool:
    """Whether dagman.out's latest run is the one of the DAG submitted again."""
    if run is None:
        return False
    if rerun.cluster is not None and run.cluster is not None:
        return run.cluster >= rerun.cluster
    return runs > rerun.runs_before


def _this_run(jobs: _NodeJobs | None, since: int | None) -> _NodeJobs | None:
    """A node's submissions by the current DAGMan job only (cluster ids grow: the node jobs of
    a DAG submitted again as cluster N are above N), until DAGMan truncates the node log. The
    node's totals span every submission in the log, so those of the kept ones are summed
    again from their own figures: job.run_count and CPU time agree with node.retries."""
    if jobs is None or since is None or not jobs.submissions or \
            jobs.submissions[0].cluster > since:
        return jobs
    kept = [s for s in jobs.submissions if s.cluster > since]
    if not kept:
        return None
    out = _NodeJobs(submissions=kept)
    for sub in kept:
        out.add(sub.use)
    return out


def _dag_end(w: _Watch, run: _Run | None) -> tuple[bool, int | None]:
    """Whether the DAGMan job has ended for good, and its exit code (`run`: its run in
    dagman.out, None while a DAG submitted again has not started)."""
    job = w.job
    if job.status == "done":
        return True, job.exit_code
    if job.status == "removed":
        return True, run.exit_status if run and run.exit_status is not None else None
    # without the DAGMan job's own log, dagman.out's exit is the end; with it, an exit
    # outside 0-2 is followed by HTCondor running DAGMan again
    if run is not None and run.exit_status is not None and (
            job.cluster is None or 0 <= run.exit_status <= 2):
        return True, run.exit_status
    return False, None


def _abort(w: _Watch, run: _Run | None, finished: bool,
           exit_code: int | None) -> tuple[bool, str]:
    job = w.job
    if run is not None and (run.removed or run.dag_status in (3, 4) or
                            (run.abort_reason and run.dag_status != 2)):
        reason = run.abort_reason or DAG_STATUS.get(run.dag_status or 0, "aborted")
        if run.dag_status == 3 and w.dag is not None and run.last_failed:
            node = w.dag.nodes.get(run.last_failed)
            if node is not None and node.abort_on is not None:
                reason = (f"ABORT-DAG-ON: node {node.name} exited {node.abort_on}" +
                          (f" (DAG returns {node.abort_return})"
                           if node.abort_return is not None else ""))
        if job.removed_by:
            reason += f" by user {job.removed_by}"
        return True, reason
    if job.status == "removed":
        return True, "the DAGMan job was removed" + (f" by user {job.removed_by}"
                                                       if job.removed_by else "")
    if run is not None and run.dag_status in (1, 5, 6) and finished:
        return True, run.last_error or DAG_STATUS[run.dag_status]
    return False, ""


def _status_view(w: _Watch, run: _Run | None) -> tuple[dict[str, dict[str, Any]],
                                                       dict[str, Any]]:
    """Node ads and the DagStatus ad of the status file, if it belongs to the current run."""
    nodes: dict[str, dict[str, Any]] = {}
    dag: dict[str, Any] = {}
    for ad in w.status_ads:
        kind = ad.get("Type")
        if kind == "DagStatus":
            dag = ad
        elif kind == "NodeStatus" and isinstance(ad.get("Node"), str):
            nodes[ad["Node"]] = ad
    stamp = dag.get("Timestamp")
    if isinstance(stamp, int | float):
        if run is not None and run.started is not None and stamp < run.started - 2:
            return {}, {}  # left over from an earlier run
        if w.rerun is not None and stamp < w.rerun.at:
            # written by the run before a resubmission: the rescue run can start within the
            # slack above, and its DAGMan rewrites the file only a moment after it starts
            return {}, {}
    return nodes, dag


# --- facts -----------------------------------------------------------------------------------


def _dag_base(w: _Watch) -> Facts:
    return {
        "job.key": w.key, "job.name": w.dag_path.name, "job.source": "dagman",
        "job.workdir": str(w.dag_path.parent), "dag.file": str(w.dag_path),
        "dag.name": w.dag_path.name,
    }


def _problem_facts(w: _Watch) -> Facts:
    return {"dag.problem": w.problem, "dag.read_failures": w.failures}


def _dagman_job_facts(w: _Watch, run: _Run | None, finished: bool, exit_code: int | None,
                      now: float) -> Facts:
    job = w.job
    f: Facts = {}
    cluster = job.cluster or (run.cluster if run else None)
    if cluster is not None:
        f["job.cluster"], f["job.proc"], f["job.id"] = cluster, 0, f"{cluster}.0"
        f["dag.cluster"] = cluster
        f["job.batch_name"] = f"{w.dag_path.name}+{cluster}"
    if job.submitted is not None:
        f["job.submit_time"] = job.submitted
    start = job.started or (run.started if run else None)
    if start is not None:
        f["job.start_time"] = start
    f["job.restarts"] = job.restarts
    if w.submit_error:
        f.update({"job.state": "FAILED", "job.raw_state": "submit failed",
                  "job.status": "removed", "job.outcome": "error",
                  "job.succeeded": False, "job.diagnosis": "launch_failed",
                  "job.diagnosis_detail": w.submit_error})
        return f
    if finished:
        end = job.ended or (run.ended if run else None) or now
        f["job.end_time"] = end
        if start is not None:
            f["job.elapsed"] = max(0.0, end - start)
        aborted_rm = job.status == "removed" or (run is not None and run.removed)
        if exit_code is not None:
            f["job.exit_code"] = exit_code
            f["job.signal"] = 0
        if aborted_rm:
            state, status, outcome = "CANCELLED", "removed", "cancelled"
        elif exit_code == 0:
            state, status, outcome = "COMPLETED", "completed", "success"
        else:
            state, status, outcome = "FAILED", "completed", "failed"
        f.update({"job.state": state, "job.status": status, "job.outcome": outcome,
                  "job.succeeded": state == "COMPLETED",
                  "job.raw_state": f"DAGMan exited {exit_code}" if exit_code is not None
                  else state.lower()})
        return f
    if start is not None:
        f["job.elapsed"] = max(0.0, now - start)
    status = job.status or ("running" if run is not None else "")
    if status == "held":
        f.update({"job.state": "HELD", "job.status": "held", "job.outcome": "unknown",
                  "job.raw_state": f"held: {job.hold_reason}", "job.hold_reason":
                  job.hold_reason})
        if job.hold_code is not None:
            f["job.hold_code"] = job.hold_code
    elif status == "running":
        f.update({"job.state": "RUNNING", "job.status": "running", "job.outcome": "running",
                  "job.raw_state": "running"})
    elif status == "idle":
        f.update({"job.state": "PENDING", "job.status": "idle", "job.outcome": "unknown",
                  "job.raw_state": "idle"})
    else:
        note = w.submit_note or "not submitted yet"
        f.update({"job.state": "PENDING", "job.outcome": "unknown", "job.raw_state": note})
    return f


def _static_facts(w: _Watch, node: DagNode) -> Facts:
    """What the .dag file says of a node: computed once per parse, copied each tick."""
    f: Facts = {
        "job.key": w.key, "job.name": node.name, "job.source": "dagman",
        "node.name": node.name, "node.max_retries": node.retry, "node.vars": dict(node.vars),
        "node.dir": node.dir, "node.noop": node.noop, "node.parents": list(node.parents),
        "node.children": list(node.children), "node.submit_file": node.submit,
        "node.pre_script": node.scripts["PRE"].command if "PRE" in node.scripts else "",
        "node.post_script": node.scripts["POST"].command if "POST" in node.scripts else "",
        "node.dag": str(w.dag_path), "node.kind": node.kind,
    }
    for k, v in node.vars.items():
        f[f"node.vars.{k}"] = v
    if node.dir:
        d = Path(node.dir)
        f["job.workdir"] = str(d if d.is_absolute() else w.dag_path.parent / d)
    else:
        f["job.workdir"] = str(w.dag_path.parent)
    return f


def _node_facts(w: _Watch, node: DagNode, view: _NodeView, jobs: _NodeJobs | None,
                now: float) -> Facts:
    static = w.static.get(node.name)
    if static is None:
        static = w.static[node.name] = _static_facts(w, node)
    f: Facts = dict(static)
    f.update({
        "job.state": view.job_state, "job.outcome": view.outcome,
        "job.raw_state": node_raw(view), "job.restarts": view.retries,
        "node.state": view.state, "node.retries": view.retries, "node.detail": view.detail,
    })
    terminal = view.job_state in ("COMPLETED", "FAILED", "CANCELLED")
    if terminal:
        f["job.succeeded"] = view.job_state == "COMPLETED"
    if view.exit_code is not None and view.state in ("DONE", "ERROR", "POSTRUN", "READY"):
        f["job.exit_code"] = view.exit_code
        f["job.signal"] = view.signal or 0
    if view.status:
        f["job.status"] = view.status
    elif view.state == "DONE" and jobs is not None and jobs.submissions:
        f["job.status"] = "completed"
    sub = jobs.latest if jobs is not None else None
    if jobs is None or sub is None:
        return f
    f["job.cluster"] = f["node.cluster"] = sub.cluster
    f["job.proc"] = min(sub.procs) if sub.procs else 0
    f["job.id"] = f"{sub.cluster}.{f['job.proc']}"
    f["job.run_count"] = jobs.run_count
    if sub.submitted is not None:
        f["job.submit_time"] = sub.submitted
    if sub.started is not None:
        f["job.start_time"] = sub.started
        if sub.submitted is not None:
            f["job.wait"] = max(0.0, sub.started - sub.submitted)
        end = sub.end_time() if sub.ended() else None
        f["job.elapsed"] = max(0.0, (end if end is not None else now) - sub.started)
    if sub.ended() and sub.end_time() is not None:
        f["job.end_time"] = sub.end_time()
    if jobs.host:
        f["job.remote_host"] = jobs.host
    f["job.cpu_user"] = jobs.cpu_user
    f["job.cpu_sys"] = jobs.cpu_sys
    f["job.cpu_time"] = jobs.cpu_user + jobs.cpu_sys
    if jobs.mem_peak_mb is not None:
        f["job.mem_used"] = int(jobs.mem_peak_mb * _MB)
    if jobs.mem_req_mb:
        f["job.mem_req"] = int(jobs.mem_req_mb * _MB)
        if jobs.mem_peak_mb is not None:
            f["job.mem_eff"] = 100.0 * jobs.mem_peak_mb / jobs.mem_req_mb
    if jobs.disk_kb is not None:
        f["job.disk_used"] = int(jobs.disk_kb * _KB)
    if jobs.disk_req_kb:
        f["job.disk_req"] = int(jobs.disk_req_kb * _KB)
    if jobs.cpus is not None:
        f["job.cpus"] = int(jobs.cpus)
    if jobs.gpus is not None:
        f["job.gpus"] = int(jobs.gpus)
    if jobs.hold_reason:
        f["job.hold_reason"] = jobs.hold_reason
        if jobs.hold_code is not None:
            f["job.hold_code"] = jobs.hold_code
            diagnosis = _HOLD_DIAGNOSIS.get(int(jobs.hold_code))
            if diagnosis and view.state == "SUBMITTED":
                f["job.diagnosis"] = diagnosis
                f["job.diagnosis_detail"] = jobs.hold_reason
        if jobs.hold_subcode is not None:
            f["job.hold_subcode"] = jobs.hold_subcode
    if jobs.attrs:
        f["job.attrs"] = dict(jobs.attrs)
        for k, v in jobs.attrs.items():
            f[f"job.attrs.{k}"] = v
    return f


def _merge_live(f: Facts, ad: Mapping[str, Any]) -> None:
    """A running node job's figures from condor_q added to what its ended attempts used."""
    user, sys_ = cli.number(ad, "RemoteUserCpu"), cli.number(ad, "RemoteSysCpu")
    if user is not None:
        f["job.cpu_user"] = float(f.get("job.cpu_user", 0.0)) + user
    if sys_ is not None:
        f["job.cpu_sys"] = float(f.get("job.cpu_sys", 0.0)) + sys_
    if user is not None or sys_ is not None:
        f["job.cpu_time"] = float(f.get("job.cpu_user", 0.0)) + float(f.get("job.cpu_sys", 0.0))
    rss = cli.number(ad, "ResidentSetSize")  # KiB
    if rss is not None and rss > 0:
        f["job.mem_used"] = max(int(f.get("job.mem_used", 0)), int(rss * _KB))
        req = f.get("job.mem_req")
        if isinstance(req, int) and req > 0:
            f["job.mem_eff"] = 100.0 * f["job.mem_used"] / req
    disk = cli.number(ad, "DiskUsage")  # KiB
    if disk is not None:
        f["job.disk_used"] = max(int(f.get("job.disk_used", 0)), int(disk * _KB))
    host = cli.value(ad, "RemoteHost")
    if isinstance(host, str) and host:
        f["job.remote_host"] = host


def node_raw(view: _NodeView) -> str:
    text = view.state + (f" ({view.status})" if view.status and view.state == "SUBMITTED"
                         else "")
    return f"{text}: {view.detail}" if view.detail else text


def _clip(line: str, most: int = 240) -> str:
    """A long line of dagman.out cut in its middle: its end often names the culprit (a parse
    error ends with `(found JOBB)`)."""
    return line if len(line) <= most else f"{line[:most - 80]} ... {line[-75:]}"


def _missing(error: str) -> bool:
    return "no such file" in error.lower() or "does not exist" in error.lower()


def _sig(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_mtime_ns, st.st_size)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- control ---------------------------------------------------------------------------------

_VERBS = {"hold": "condor_hold", "release": "condor_release", "remove": "condor_rm",
          "cancel": "condor_rm"}


def control(verb: str, facts: Mapping[str, Any], reason: str | None, timeout: float) -> str:
    """hold / release / remove (cancel) the job of a node or the DAGMan job of the DAG, or
    resubmit the DAG from its newest rescue DAG."""
    if verb == "resubmit":
        return _resubmit(facts, timeout)
    tool = _VERBS.get(verb)
    if tool is None:
        raise ProbeError(f"{verb} is not possible for a DAGMan job (verbs: "
                         f"{', '.join(sorted([*_VERBS, 'resubmit']))})")
    cluster = facts.get("job.cluster")
    if not isinstance(cluster, int) or isinstance(cluster, bool):
        raise ProbeError("no HTCondor cluster in the facts (the node has not been submitted "
                         "yet)")
    args = [tool]
    if reason and verb in ("hold", "remove", "cancel"):
        args += ["-reason", reason.replace("\n", " ")[:200]]
    args.append(str(cluster))
    started = time.monotonic()
    out = cli.run(args, timeout=timeout)
    return f"{tool} {cluster}: {cli.first_line(out) or 'done'} " \
        f"({time.monotonic() - started:.1f}s)"


def _resubmit(facts: Mapping[str, Any], timeout: float) -> str:
    dag_file = facts.get("dag.file") or facts.get("node.dag")
    if not isinstance(dag_file, str) or not dag_file:
        raise ProbeError("no DAG file in the facts (resubmit acts on a dagman job)")
    dag = Path(dag_file)
    if facts.get("dag.finished") is False:
        raise ProbeError(f"{dag.name} is still running: a rescue DAG is resubmitted after the "
                         "DAG has ended")
    lock = dag.parent / (dag.name + ".lock")
    if lock.exists():
        raise ProbeError(f"{lock.name} exists: the DAG is still running")
    rescues = sorted((p for p in dag.parent.glob(dag.name + ".rescue[0-9][0-9][0-9]")),
                     key=lambda p: p.name)
    if not rescues:
        raise ProbeError(f"no rescue DAG for {dag.name} (nothing to resubmit)")
    newest = rescues[-1]
    number = int(newest.name[-3:])
    started = time.monotonic()
    out = cli.run(["condor_submit_dag", "-dorescuefrom", str(number), dag.name],
                  cwd=dag.parent, timeout=timeout)
    m = re.search(r"submitted to cluster (\d+)", out)
    where = f"cluster {m.group(1)}" if m else cli.first_line(out) or "submitted"
    with _RESUBMITTED_LOCK:  # the probe follows the DAG into this new run
        _RESUBMITTED[_dag_id(dag)] = _Rerun(int(m.group(1)) if m else None, time.time(),
                                            newest.name)
    return f"condor_submit_dag {dag.name} from {newest.name}: {where} " \
        f"({time.monotonic() - started:.1f}s)"
