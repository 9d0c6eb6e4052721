# Over 800 lines: the probe, its history lookups and control in one module; it is to move into
# an htcondor/ package (probe, lookups, facts) with the layout of issue 16.
"""HTCondor jobs: selected by id, owner, batch name or constraint, or submitted by the ruleset.

Each tick makes ONE condor_q call for every watched job of the ruleset (the selections joined
with `||`), and one batched condor_history call for the jobs that left the queue since the last
tick (or were named by id and are not queued). Calls are spaced by the smallest `min_interval`
of the ruleset's htcondor jobs; between calls the last facts are reported again. When two or
more htcondor jobs are declared and one of them uses `constraint:`, a second, light condor_q
call (`-af:j`) evaluates each constraint on the schedd, so that every ad is attributed to the
right job with HTCondor's own semantics.

A failed call (tools missing, schedd down, garbage output) raises `ProbeError`: the engine turns
it into `probe.htcondor.ok/failures/error` (alert on `probe.htcondor.failures >= 3`); the jobs'
last facts are kept and reported again after the next good call. After a failure the next tick
calls again whatever `min_interval` says, so the failure count is one per failed call. When the
joined call fails, each job's selection is asked alone once: if the schedd answers some and
refuses others (a malformed `constraint:`), the refused ones are left out from then on and each
becomes one `<job>/query` instance saying why, so one bad selection never blinds the others.

Ids named in the ruleset are looked up in condor_history when they are not queued, at most ten
times each (a whole cluster too: `<job>/<cluster>` is PENDING meanwhile); one found nowhere is
then UNKNOWN and terminal (it cannot appear later), so the run ends and says so.

How a job's state is normalised (`job.status` is HTCondor's own word, `job.raw_state` adds the
hold reason or exit):

| JobStatus           | job.status   | job.state  | job.outcome | job.diagnosis                  |
| ------------------- | ------------ | ---------- | ----------- | ------------------------------ |
| 1 Idle              | idle         | PENDING    | unknown     |                                |
| 2 Running           | running      | RUNNING    | running     |                                |
| 6 Transferring out  | transferring | RUNNING    | running     |                                |
| 7 Suspended         | suspended    | SUSPENDED  | running     |                                |
| 5 Held              | held         | HELD       | unknown     | by hold code (below), or none  |
| 4 Completed, exit 0 | completed    | COMPLETED  | success     | ok                             |
| 4 Completed, exit N | completed    | FAILED     | failed      | nonzero_exit                   |
| 4 Completed, signal | completed    | FAILED     | failed      | signal (exit_code 128+N)       |
| 3 Removed           | removed      | CANCELLED  | cancelled   | cancelled (signal: ExitSignal) |
| left the queue, not in condor_history in 10 lookups (terminal) | | UNKNOWN | unknown | unknown |
| named by id, in neither the queue nor condor_history (terminal) | | UNKNOWN | unknown | unknown |
| submitted by the ruleset and never seen (launch check)    | | FAILED  | error   | launch_failed |

Held jobs are diagnosed by HoldReasonCode where the code says why: 6, 8, 10, 13, 14 (the job
could not start: input files, executable or folder missing) → launch_failed; 7, 9, 12 (output
could not be written or transferred) → missing_output; 34 (memory limit) → oom. A hold by a
user (code 1, condor_hold) and the other codes give no diagnosis: a held job is still queued and
can be released, so a hold is a state with a reason, not an ending. The hold reason is in
`job.hold_reason` (and `job.diagnosis_detail` when there is a diagnosis).

A removed job that was running when condor_rm killed it keeps the signal that did
(`ExitBySignal`/`ExitSignal`, 15 on HTCondor 23.9): `job.signal` 15 and `job.exit_code` 143, as
for a job killed by a signal; one removed before it ran has neither. `job.elapsed` is
RemoteWallClockTime, 0 included (a job that ran under a second, or one that never ran); a
running job's is counted from JobCurrentStartDate.

Units: memory and disk facts are bytes (HTCondor counts MiB for memory and KiB for disk).
The request is RequestMemory / RequestDisk when they are numbers; else what the slot
provisioned (MemoryProvisioned, DiskProvisioned: the default request is an expression of the
job's own usage); else the request expression evaluated on the ad (`classads.evaluate`).
`job.restarts` is JobRunCount - 1. `job.stdout`, `job.stderr` and `job.workdir` are Out, Err
and Iwd, made absolute. A DAG node's job has `job.dag_node` (DAGNodeName) and
`job.dag_cluster` (DAGManJobId). Custom attributes (`+RunUUID = "..."` in the submit file) are
`job.attrs.RunUUID`: every attribute that is not a standard one, or exactly those of `attrs:`.
"""

from __future__ import annotations

import fnmatch
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
from .classads import evaluate

if TYPE_CHECKING:
    from ..config.models import HTCondorSource, Ruleset

log = logging.getLogger(__name__)

_STATUS = {1: "idle", 2: "running", 3: "removed", 4: "completed", 5: "held",
           6: "transferring", 7: "suspended"}
_STATE = {"idle": "PENDING", "running": "RUNNING", "transferring": "RUNNING",
          "suspended": "SUSPENDED", "held": "HELD", "removed": "CANCELLED"}
_OUTCOME = {"idle": "unknown", "running": "running", "transferring": "running",
            "suspended": "running", "held": "unknown", "removed": "cancelled"}
_HOLD_DIAGNOSIS = {6: "launch_failed", 8: "launch_failed", 10: "launch_failed",
                   13: "launch_failed", 14: "launch_failed", 7: "missing_output",
                   9: "missing_output", 12: "missing_output", 34: "oom"}
_ID = re.compile(r"^\s*(\d+)(?:\.(\d+))?\s*$")
#: Ticks a job that left the queue may be missing from condor_history (history is written
#: a moment after the job leaves) before it is reported UNKNOWN.
_HISTORY_TRIES = 10
#: Attributes every job ad has (HTCondor 8 to 25): what is not among them, and does not look
#: like a system family, is a custom attribute (`+RunUUID`) and becomes `job.attrs.<name>`.
_STANDARD_NAMES = """
    Args Arguments AssignedGPUs AutoClusterAttrs AutoClusterId BufferBlockSize BufferSize
    BytesRecvd BytesSent ClusterId Cmd CommittedSlotTime CommittedSuspensionTime CommittedTime
    CompletionDate CondorPlatform CondorVersion CoreSize CpusProvisioned CpusUsage
    CumulativeRemoteSysCpu CumulativeRemoteUserCpu CumulativeSlotTime CumulativeSuspensionTime
    CurrentHosts DAGManJobId DAGManNodesLog DAGManNodesMask DAGNodeName DAGParentNodeNames
    DeferralTime DiskProvisioned DiskUsage EncryptExecuteDirectory EnteredCurrentStatus
    Environment Err ExecutableSize ExitBySignal ExitCode ExitSignal ExitStatus FileSystemDomain
    GPUsProvisioned GPUsUsage GlobalJobId HoldReason HoldReasonCode HoldReasonSubCode
    ImageSize In Iwd JobBatchId JobBatchName JobCurrentFinishTransferInputDate
    JobCurrentFinishTransferOutputDate JobCurrentReconnectAttempt JobCurrentStartDate
    JobCurrentStartExecutingDate JobCurrentStartTransferInputDate
    JobCurrentStartTransferOutputDate JobFinishedHookDone JobLeaseDuration JobNotification
    JobPrio JobRunCount JobStartDate JobStatus JobSubmitFile JobSubmitMethod JobUniverse
    KeepClaimIdle KillSig LastHoldReason LastHoldReasonCode LastHoldReasonSubCode
    LastJobLeaseRenewal LastJobStatus LastMatchTime LastPublicClaimId LastRejMatchReason
    LastRejMatchTime LastReleaseReason LastRemoteHost LastRemoteWallClockTime
    LastSuspensionTime LastVacateTime LeaveJobInQueue LocalSysCpu LocalUserCpu MaxHosts
    MemoryProvisioned MemoryUsage MinHosts MyType NiceUser NumCkpts NumHolds NumHoldsByReason
    NumJobCompletions NumJobMatches NumJobReconnects NumJobStarts NumRestarts NumShadowStarts
    NumSystemHolds OnExitHold OnExitRemove OrigMaxHosts OtherJobRemoveRequirements Out Owner
    PeriodicHold PeriodicRelease PeriodicRemove ProcId PublicClaimId QDate Rank ReleaseReason
    RemoteHost RemoteSlotID RemoteSysCpu RemoteUserCpu RemoteWallClockTime RemoveKillSig
    RemoveReason RequestCpus RequestDisk RequestGPUs RequestMemory Requirements
    ResidentSetSize RootDir ScratchDirFileCount ServerTime ShadowBday ShouldTransferFiles
    StartdIpAddr StartdPrincipal StatsLifetimeStarter StreamErr StreamIn StreamOut
    SubmitEventNotes TargetType TerminationPending ToE TotalSubmitProcs TotalSuspensions
    TransferErr TransferExecutable TransferIn TransferInFinished TransferInStarted
    TransferInput TransferInputSizeMB TransferInputStats TransferOut TransferOutput
    TransferOutputStats User UserLog UserLogUseXML VacateReason VacateReasonCode
    VacateReasonSubCode WantCheckpoint WantRemoteIO WantRemoteSyscalls WhenToTransferOutput
    x509UserProxy BatchProject MaxJobRetirementTime JobMaxVacateTime ConcurrencyLimits
    ExitReason HoldKillSig JobCurrentFinishTransferOutputDate LastCheckpointPlatform
    NumJobReleases OnExitHoldReason OnExitHoldReasonCode OnExitHoldSubCode TotalSubmitProcs
    """
_STANDARD = frozenset(_STANDARD_NAMES.lower().split())
#: The custom attributes of an ad, by its attribute names (ads repeat the same names).
_CUSTOM: dict[tuple[Any, ...], list[str]] = {}
_SYSTEM_FAMILY = re.compile(r"^(dag_|dagman_|machineattr|recent|activation|block|"
                            r"job(current|last)|numholdsby|last)|_raw$", re.I)


@dataclass
class _Tracked:
    """One HTCondor job (cluster.proc) attributed to a ruleset job."""

    cluster: int
    proc: int
    facts: Facts = field(default_factory=dict)
    terminal: bool = False
    in_queue: bool = False
    history_misses: int = 0


@dataclass
class _Watch:
    """A ruleset job with an `htcondor:` source."""

    key: str
    spec: HTCondorSource
    base: Path
    ids: list[tuple[int, int | None]] = field(default_factory=list)
    jobs: dict[str, _Tracked] = field(default_factory=dict)
    submitted: list[tuple[int, int]] | None = None
    submit_time: float | None = None
    launch_ok: bool | None = None
    launch_error: str | None = None
    dry_note: str | None = None
    #: whole clusters named by id and not found yet: condor_history lookups so far
    cluster_misses: dict[int, int] = field(default_factory=dict)
    #: whole clusters named by id and found nowhere after `_HISTORY_TRIES` lookups
    lost_clusters: set[int] = field(default_factory=set)
    #: why the schedd refused this job's own selection (it is left out of condor_q then)
    query_error: str | None = None
    refused_selection: str = ""  #: that selection, as the schedd was asked it

    def selection(self) -> str:
        """This job's part of the condor_q constraint."""
        if self.query_error is not None:
            return "false"
        if self.submitted is not None:
            return cli.id_constraint(self.submitted) if self.submitted else "false"
        if self.spec.submit is not None:
            return "false"  # not submitted (yet, or it failed): select nothing
        parts: list[str] = []
        if self.ids:
            parts.append(f"({cli.id_constraint(self.ids)})")
        if self.spec.owner:
            parts.append(f"Owner == {cli.quote(self.spec.owner)}")
        if self.spec.batch_name:
            parts.append(_batch_constraint(self.spec.batch_name))
        if self.spec.constraint:
            parts.append(f"({self.spec.constraint})")
        return " && ".join(parts) or "false"

    def matches(self, ad: Mapping[str, Any]) -> bool:
        """Whether an ad (lower-cased keys) is this job's, on everything but `constraint`."""
        cluster, proc = cli.integer(ad, "ClusterId"), cli.integer(ad, "ProcId")
        if self.submitted is not None:
            return (cluster, proc) in self.submitted
        if self.ids and not any(c == cluster and p in (None, proc) for c, p in self.ids):
            return False
        if self.spec.owner and cli.value(ad, "Owner") != self.spec.owner:
            return False
        if self.spec.batch_name:
            name = cli.value(ad, "JobBatchName")
            if not isinstance(name, str) or not fnmatch.fnmatchcase(name, self.spec.batch_name):
                return False
        return True


class HTCondorProbe:
    """Facts for every job of the ruleset with an `htcondor:` source."""

    name = "htcondor"

    def __init__(self, ruleset: Ruleset, base_dir: Path) -> None:
        self._watches: list[_Watch] = []
        self._lock = threading.Lock()
        self._last_call: float | None = None
        self._cache: dict[str, Facts] = {}
        for key, job in ruleset.jobs.items():
            if job.htcondor is None:
                continue
            try:
                base = job_base(job, base_dir)
            except Exception:
                base = base_dir
            watch = _Watch(key, job.htcondor, base)
            for raw in job.htcondor.ids:
                m = _ID.match(str(raw))
                if m:
                    watch.ids.append((int(m.group(1)),
                                      int(m.group(2)) if m.group(2) is not None else None))
            self._watches.append(watch)
        self.min_interval = min((w.spec.min_interval for w in self._watches), default=30.0)

    # --- Probe protocol ------------------------------------------------------------------------

    def start(self, ctx: TickContext) -> None:
        """Submit the jobs of every `submit:` selection (not in a dry run)."""
        with self._lock:
            for watch in self._watches:
                if watch.spec.submit is not None and watch.submitted is None:
                    self._submit(watch, ctx)

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        with self._lock:
            due = self._last_call is None or ctx.now - self._last_call >= self.min_interval \
                or ctx.now < self._last_call
            if due and any(w.selection() != "false" or self._missing(w)
                           for w in self._watches):
                self._refresh(ctx.now)  # raises on failure: the next tick tries again
                self._last_call = ctx.now
            self._cache = self._facts(ctx.now)
            return self._cache

    def close(self) -> None:
        """Nothing held between ticks but memory: submitted jobs keep running."""

    # --- submitting ----------------------------------------------------------------------------

    def _submit(self, watch: _Watch, ctx: TickContext) -> None:
        from ..templates import render

        submit = watch.spec.submit
        assert submit is not None
        tctx: dict[str, Any] = {"job": {"key": watch.key, "name": watch.key}}
        try:
            path = render_path(submit.file, tctx, watch.base)
            append = [f"{name} = {render(value, tctx)}" for name, value in submit.vars.items()]
        except Exception as exc:
            self._launch_failed(watch, ctx.now, f"submit file or vars do not render: "
                                f"{_one_line(exc)}")
            return
        if ctx.dry_run:
            watch.dry_note = f"dry run: would condor_submit {path}"
            return
        if not path.is_file():
            self._launch_failed(watch, ctx.now, f"submit file not found: {path}")
            return
        watch.submit_time = ctx.now
        try:
            ids = cli.submit(path, append=append, cwd=path.parent, timeout=120)
        except ProbeError as exc:
            self._launch_failed(watch, ctx.now, str(exc))
            return
        watch.submitted = ids
        for cluster, proc in ids:
            watch.jobs[f"{cluster}.{proc}"] = _Tracked(cluster, proc)

    def _launch_failed(self, watch: _Watch, now: float, reason: str) -> None:
        watch.submitted = []
        watch.launch_ok, watch.launch_error = False, reason
        watch.submit_time = watch.submit_time or now

    # --- querying ------------------------------------------------------------------------------

    def _missing(self, watch: _Watch) -> list[tuple[int, int | None]]:
        """Jobs to look up in condor_history: left the queue, or named and never queued."""
        out: list[tuple[int, int | None]] = [
            (t.cluster, t.proc) for t in watch.jobs.values()
            if not t.terminal and not t.in_queue and t.history_misses < _HISTORY_TRIES]
        if watch.submitted is None and watch.spec.submit is None:
            for cluster, proc in watch.ids:
                if proc is None:
                    if cluster not in watch.lost_clusters and \
                            not any(t.cluster == cluster for t in watch.jobs.values()):
                        out.append((cluster, None))
                elif f"{cluster}.{proc}" not in watch.jobs:
                    out.append((cluster, proc))
        return out

    def _refresh(self, now: float) -> None:
        selections = [w.selection() for w in self._watches]
        live = [s for s in selections if s != "false"]
        ads: list[dict[str, Any]] = []
        if live:
            union = " || ".join(f"({s})" for s in live) if len(live) > 1 else live[0]
            try:
                ads = cli.query(union)
            except ProbeError:
                if len(live) < 2 or not self._isolate():
                    raise
                self._refresh(now)  # again, without the selections the schedd refused
                return
            verdicts = self._constraints(union) if self._needs_attribution() else {}
            seen: dict[int, set[str]] = {id(w): set() for w in self._watches}
            for raw in ads:
                ad = cli.lower_keys(raw)
                jid = _job_id(ad)
                if jid is None:
                    continue
                for i, watch in enumerate(self._watches):
                    if selections[i] == "false" or not watch.matches(ad):
                        continue
                    if watch.spec.constraint and verdicts and not verdicts.get(jid, {}).get(i):
                        continue
                    seen[id(watch)].add(jid)
                    tracked = watch.jobs.get(jid)
                    if tracked is None:
                        tracked = watch.jobs[jid] = _Tracked(*_split(jid))
                    tracked.in_queue = True
                    tracked.history_misses = 0
                    tracked.facts = _for_watch(_ad_facts(raw, now, ad), ad, watch)
                    tracked.terminal = bool(tracked.facts.get("job.terminal"))
            for watch in self._watches:
                for jid, tracked in watch.jobs.items():
                    if jid not in seen[id(watch)]:
                        tracked.in_queue = False
        self._from_history(now)
        self._verify_launch(now)

    def _isolate(self) -> bool:
        """After the joined condor_q call failed: ask once for each `constraint:` selection
        alone (the ones built from ids, owner or batch name are valid by construction), so
        that one malformed constraint is named and left out instead of failing every job's
        call every tick. Only a refusal counts (a timeout or a tool that cannot run says
        nothing about the selection), and only while the other selections, asked together,
        are answered (else the schedd itself is failing). False when nothing is blamed."""
        refused: list[tuple[_Watch, str, str]] = []
        for watch in self._watches:
            selection = watch.selection()
            if not watch.spec.constraint or selection == "false":
                continue
            try:
                cli.query(selection)
            except cli.CondorRefused as exc:
                refused.append((watch, selection, str(exc)))
        blamed = {id(w) for w, _, _ in refused}
        others = [s for w in self._watches
                  if id(w) not in blamed and (s := w.selection()) != "false"]
        if not refused or not others:
            return False
        try:
            cli.query(" || ".join(f"({s})" for s in others))
        except ProbeError:
            return False
        for watch, selection, why in refused:
            watch.query_error, watch.refused_selection = why, selection
            log.error("htcondor_selection_refused job=%s selection=%s error=%s", watch.key,
                      selection, why)
        return bool(refused)

    def _needs_attribution(self) -> bool:
        return len(self._watches) > 1 and any(w.spec.constraint and w.query_error is None
                                               for w in self._watches)

    def _constraints(self, union: str) -> dict[str, dict[int, bool]]:
        """Each `constraint:` evaluated by the schedd for every queued job of the union."""
        which = [i for i, w in enumerate(self._watches)
                 if w.spec.constraint and w.query_error is None]
        exprs = [f"(({self._watches[i].spec.constraint}) =?= true)" for i in which]
        out = cli.run(["condor_q", "-allusers", "-constraint", union, "-af:j", *exprs])
        verdicts: dict[str, dict[int, bool]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) != len(exprs) + 1 or _ID.match(parts[0]) is None:
                continue
            verdicts[parts[0]] = {i: v == "true" for i, v in zip(which, parts[1:], strict=True)}
        return verdicts

    def _from_history(self, now: float) -> None:
        wanted: dict[tuple[int, int | None], list[_Watch]] = {}
        for watch in self._watches:
            for want in self._missing(watch):
                wanted.setdefault(want, []).append(watch)
        if not wanted:
            return
        match = len(wanted) if all(p is not None for _, p in wanted) else None
        found: set[str] = set()
        for raw in cli.history(cli.id_constraint(wanted), match=match):
            ad = cli.lower_keys(raw)
            jid = _job_id(ad)
            if jid is None or jid in found:
                continue  # newest first: an older record of the same job is stale
            cluster, proc = _split(jid)
            watches = wanted.get((cluster, proc), []) + wanted.get((cluster, None), [])
            if not watches:
                continue
            found.add(jid)
            facts = _ad_facts(raw, now, ad)
            for watch in watches:
                if not watch.matches(ad) and watch.submitted is None:
                    continue
                tracked = watch.jobs.setdefault(jid, _Tracked(cluster, proc))
                tracked.facts = _for_watch(facts, ad, watch)
                tracked.terminal = bool(facts.get("job.terminal"))
                tracked.in_queue = False
        for (c, p), watches in wanted.items():
            if p is None:
                for watch in watches:
                    if any(t.cluster == c for t in watch.jobs.values()):
                        watch.cluster_misses.pop(c, None)
                        continue
                    misses = watch.cluster_misses[c] = watch.cluster_misses.get(c, 0) + 1
                    if misses >= _HISTORY_TRIES:
                        watch.lost_clusters.add(c)  # asked no more
                continue
            if f"{c}.{p}" in found:
                continue
            lost = f"{c}.{p}"
            for watch in watches:
                tracked = watch.jobs.setdefault(lost, _Tracked(c, p))
                tracked.history_misses += 1
                if tracked.history_misses >= _HISTORY_TRIES:
                    known = bool(tracked.facts)
                    tracked.facts = {**tracked.facts, **_lost(lost, known)}
                    # it is asked no more, so it would never end: the run must be able to
                    tracked.terminal = True

    def _verify_launch(self, now: float) -> None:
        for watch in self._watches:
            if not watch.submitted or watch.launch_ok is not None:
                continue
            seen = all(t.facts for t in watch.jobs.values())
            if seen:
                watch.launch_ok = True
                continue
            assert watch.spec.submit is not None and watch.submit_time is not None
            if now - watch.submit_time > watch.spec.submit.verify_within:
                missing = [j for j, t in watch.jobs.items() if not t.facts]
                watch.launch_ok = False
                watch.launch_error = (f"submitted job(s) {', '.join(missing)} not seen in "
                                      f"condor_q or condor_history within "
                                      f"{watch.spec.submit.verify_within:g}s")
                for jid in missing:
                    watch.jobs[jid].facts = _launch_failed_facts(watch.launch_error, now)
                    watch.jobs[jid].terminal = True

    # --- facts ---------------------------------------------------------------------------------

    def _facts(self, now: float) -> dict[str, Facts]:
        out: dict[str, Facts] = {}
        for watch in self._watches:
            common: Facts = {"job.key": watch.key, "job.source": "htcondor"}
            if watch.spec.submit is not None:
                if watch.submit_time is not None:
                    common["job.submit_time"] = watch.submit_time
                if watch.launch_ok is not None:
                    common["job.launch_ok"] = watch.launch_ok
                if watch.launch_error:
                    common["job.launch_error"] = watch.launch_error
                if watch.submitted == [] or watch.dry_note is not None:
                    stub = (_launch_failed_facts(watch.launch_error or "", now)
                             if watch.dry_note is None else
                             {"job.state": "PENDING", "job.raw_state": watch.dry_note,
                              "job.status": "idle", "job.terminal": False,
                              "job.outcome": "unknown"})
                    out[instance_key(watch.key, "submit")] = {
                        "job.name": watch.key, **common, **stub}
                    continue
            if watch.query_error is not None:
                out[instance_key(watch.key, "query")] = {
                    "job.name": watch.key, **common, **_refused_facts(watch)}
            for cluster, proc in watch.ids:
                if proc is not None or any(t.cluster == cluster for t in watch.jobs.values()):
                    continue
                facts: Facts = {"job.name": watch.key, **common, "job.id": str(cluster),
                         "job.cluster": cluster}
                if cluster in watch.lost_clusters:
                    facts.update(_lost(f"cluster {cluster}", False))
                else:
                    facts.update({"job.state": "PENDING", "job.terminal": False,
                                  "job.outcome": "unknown", "job.raw_state":
                                  f"cluster {cluster} not seen in condor_q or condor_history "
                                  f"yet ({watch.cluster_misses.get(cluster, 0)} of "
                                  f"{_HISTORY_TRIES} lookups)"})
                out[instance_key(watch.key, cluster)] = facts
            for jid, tracked in watch.jobs.items():
                facts = {"job.name": watch.key, **common, "job.id": jid,
                                "job.cluster": tracked.cluster, "job.proc": tracked.proc}
                if not tracked.facts:
                    facts.update({"job.state": "PENDING", "job.raw_state": "not seen in "
                                  "condor_q or condor_history yet", "job.terminal": False,
                                  "job.outcome": "unknown"})
                else:
                    facts.update(tracked.facts)
                    start = facts.pop("_current_start", None)
                    if not tracked.terminal:
                        _running_clock(facts, start, now)
                out[instance_key(watch.key, jid)] = facts
        return out


# --- ads to facts -----------------------------------------------------------------------------


def _job_id(ad: Mapping[str, Any]) -> str | None:
    cluster, proc = cli.integer(ad, "ClusterId"), cli.integer(ad, "ProcId")
    if cluster is None or proc is None:
        return None
    return f"{cluster}.{proc}"


def _split(jid: str) -> tuple[int, int]:
    cluster, _, proc = jid.partition(".")
    return int(cluster), int(proc or 0)


def _batch_constraint(glob: str) -> str:
    if not any(ch in glob for ch in "*?["):
        return f"JobBatchName == {cli.quote(glob)}"
    return f"regexp({cli.quote(cli.glob_regex(glob))}, JobBatchName)"


def _ts(ad: Mapping[str, Any], name: str) -> float | None:
    v = cli.number(ad, name)
    return v if v is not None and v > 0 else None


def _path(ad: Mapping[str, Any], name: str, iwd: str | None) -> str | None:
    v = cli.value(ad, name)
    if not isinstance(v, str) or not v:
        return None
    if v.startswith("/") or not iwd:
        return v
    return iwd.rstrip("/") + "/" + v  # no Path(): this runs for every job of every tick


def _ad_facts(raw: Mapping[str, Any], now: float,
              lowered: Mapping[str, Any] | None = None) -> Facts:
    """Facts of one job ad as condor_q or condor_history printed it (`lowered`: the same ad
    with lower-case names, when the caller has it already)."""
    ad = lowered if lowered is not None else cli.lower_keys(raw)
    f: Facts = {}
    cluster, proc = cli.integer(ad, "ClusterId"), cli.integer(ad, "ProcId")
    if cluster is not None and proc is not None:
        f.update({"job.id": f"{cluster}.{proc}", "job.cluster": cluster, "job.proc": proc})
    code = cli.integer(ad, "JobStatus")
    status = _STATUS.get(code or 0, "")
    owner = cli.value(ad, "Owner")
    if isinstance(owner, str):
        f["job.owner"] = f["job.user"] = owner
    batch = cli.value(ad, "JobBatchName")
    if isinstance(batch, str) and batch:
        f["job.batch_name"] = f["job.name"] = batch
    iwd = cli.value(ad, "Iwd")
    if isinstance(iwd, str) and iwd:
        f["job.workdir"] = iwd
    for fact, attr in (("job.stdout", "Out"), ("job.stderr", "Err")):
        p = _path(ad, attr, iwd if isinstance(iwd, str) else None)
        if p is not None:
            f[fact] = p
    host = cli.value(ad, "RemoteHost") or cli.value(ad, "LastRemoteHost")
    if isinstance(host, str):
        f["job.remote_host"] = host
    node = cli.value(ad, "DAGNodeName")
    if isinstance(node, str) and node:
        f["job.dag_node"] = node
    dagman = cli.integer(ad, "DAGManJobId")
    if dagman is not None:
        f["job.dag_cluster"] = dagman
    runs = cli.integer(ad, "JobRunCount")
    if runs is not None:
        f["job.run_count"] = runs
        f["job.restarts"] = max(0, runs - 1)
    _resources(ad, f)
    submit, start = _ts(ad, "QDate"), _ts(ad, "JobStartDate")
    if submit is not None:
        f["job.submit_time"] = submit
    if start is not None:
        f["job.start_time"] = start
        if submit is not None:
            f["job.wait"] = max(0.0, start - submit)
    current = _ts(ad, "JobCurrentStartDate")
    if current is not None:
        f["_current_start"] = current
    wall = cli.number(ad, "RemoteWallClockTime")
    if wall is not None and wall >= 0:  # 0.0 is a value: under a second, or never ran
        f["job.elapsed"] = wall
    f.update(_attrs(raw))
    if status == "held":
        _held(ad, f)
    elif status == "completed":
        _completed(ad, f, now)
    elif status:
        f.update({"job.status": status, "job.state": _STATE[status], "job.raw_state": status,
                  "job.terminal": status == "removed", "job.outcome": _OUTCOME[status]})
        if status == "removed":
            reason = cli.value(ad, "RemoveReason")
            f.update({"job.succeeded": False, "job.diagnosis": "cancelled",
                      "job.diagnosis_detail": reason if isinstance(reason, str) and reason
                      else "removed with condor_rm"})
            end = _ts(ad, "CompletionDate") or _ts(ad, "EnteredCurrentStatus")
            if end is not None:
                f["job.end_time"] = end
            if isinstance(reason, str) and reason:
                f["job.raw_state"] = f"removed: {reason}"
            if cli.boolean(ad, "ExitBySignal"):  # it was running: condor_rm's signal ended it
                sig = cli.integer(ad, "ExitSignal")
                if sig:
                    f["job.signal"], f["job.exit_code"] = sig, 128 + sig
    else:
        f.update({"job.state": "UNKNOWN", "job.raw_state": f"JobStatus {code}",
                  "job.terminal": False, "job.outcome": "unknown"})
    return f


def _held(ad: Mapping[str, Any], f: Facts) -> None:
    reason = cli.value(ad, "HoldReason")
    code = cli.integer(ad, "HoldReasonCode")
    sub = cli.integer(ad, "HoldReasonSubCode")
    text = reason if isinstance(reason, str) else ""
    f.update({"job.status": "held", "job.state": "HELD", "job.terminal": False,
              "job.outcome": "unknown", "job.raw_state": f"held: {text}" if text else "held",
              "job.hold_reason": text})
    if code is not None:
        f["job.hold_code"] = code
        diagnosis = _HOLD_DIAGNOSIS.get(code)
        if diagnosis is not None:
            f["job.diagnosis"] = diagnosis
            f["job.diagnosis_detail"] = text or f"held with code {code}"
    if sub is not None:
        f["job.hold_subcode"] = sub


def _completed(ad: Mapping[str, Any], f: Facts, now: float) -> None:
    by_signal = cli.boolean(ad, "ExitBySignal")
    end = _ts(ad, "CompletionDate") or _ts(ad, "EnteredCurrentStatus")
    f.update({"job.status": "completed", "job.terminal": True})
    if end is not None:
        f["job.end_time"] = end
    if by_signal:
        sig = cli.integer(ad, "ExitSignal") or 0
        f.update({"job.state": "FAILED", "job.outcome": "failed", "job.succeeded": False,
                  "job.signal": sig, "job.exit_code": 128 + sig, "job.diagnosis": "signal",
                  "job.diagnosis_detail": f"killed by signal {sig}",
                  "job.raw_state": f"completed: signal {sig}"})
        return
    code = cli.integer(ad, "ExitCode")
    if code is None:
        code = cli.integer(ad, "ExitStatus")
    f["job.signal"] = 0
    if code is not None:
        f["job.exit_code"] = code
    ok = code == 0
    f.update({"job.state": "COMPLETED" if ok else "FAILED",
              "job.outcome": "success" if ok else "failed", "job.succeeded": ok,
              "job.diagnosis": "ok" if ok else "nonzero_exit",
              "job.raw_state": f"completed: exit {code if code is not None else '?'}"})
    if not ok:
        f["job.diagnosis_detail"] = f"exited with code {code}"


def _resources(ad: Mapping[str, Any], f: Facts) -> None:
    user = cli.number(ad, "RemoteUserCpu")
    if not user:
        user = cli.number(ad, "CumulativeRemoteUserCpu")
    sys_ = cli.number(ad, "RemoteSysCpu")
    if not sys_:
        sys_ = cli.number(ad, "CumulativeRemoteSysCpu")
    if user is not None:
        f["job.cpu_user"] = user
    if sys_ is not None:
        f["job.cpu_sys"] = sys_
    if user is not None and sys_ is not None:
        f["job.cpu_time"] = user + sys_
    rss = cli.number(ad, "ResidentSetSize")  # KiB
    usage = cli.number(ad, "MemoryUsage")  # MiB, when evaluated
    if rss is not None and rss > 0:
        f["job.mem_used"] = int(rss * 1024)
    elif usage is not None and usage > 0:
        f["job.mem_used"] = int(usage * 1024 * 1024)
    req = _requested(ad, "RequestMemory", "MemoryProvisioned")  # MiB
    if req is not None:
        f["job.mem_req"] = int(req * 1024 * 1024)
        if "job.mem_used" in f and req > 0:
            f["job.mem_eff"] = 100.0 * f["job.mem_used"] / f["job.mem_req"]
    disk = cli.number(ad, "DiskUsage")  # KiB
    if disk is not None:
        f["job.disk_used"] = int(disk * 1024)
    dreq = _requested(ad, "RequestDisk", "DiskProvisioned")  # KiB
    if dreq is not None:
        f["job.disk_req"] = int(dreq * 1024)
    cpus = cli.integer(ad, "RequestCpus")
    if cpus is not None:
        f["job.cpus"] = cpus
    gpus = cli.integer(ad, "RequestGPUs")
    f["job.gpus"] = gpus or 0
    assigned = cli.value(ad, "AssignedGPUs")
    if isinstance(assigned, str):
        f["job.gpus_assigned"] = assigned


def _requested(ad: Mapping[str, Any], request: str, provisioned: str) -> float | None:
    """What a job asked for: the literal request; else what the slot provisioned (the
    default request is an expression of the job's own usage, which says nothing about its
    allocation); else the request expression evaluated on the ad, when it is simple."""
    literal = cli.number(ad, request)
    if literal is not None:
        return literal
    given = cli.number(ad, provisioned)
    if given is not None:
        return given
    text = cli.expression(ad.get(request.lower()))
    if text is None:
        return None
    value = evaluate(text, lambda name: ad.get(name.lower()))
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def _for_watch(facts: Facts, ad: Mapping[str, Any], watch: _Watch) -> Facts:
    """An ad's facts (`ad`: lower-cased keys) as one job sees them: its `attrs:` allowlist
    replaces the guess, with the names spelt as the ruleset spells them."""
    if watch.spec.attrs is None:
        return facts
    out = {k: v for k, v in facts.items() if not k.startswith("job.attrs.")}
    for name in watch.spec.attrs:
        v = cli.value(ad, name)
        if v is not None and not isinstance(v, dict | list):
            out[f"job.attrs.{name}"] = v
    return out


def _attrs(ad: Mapping[str, Any]) -> Facts:
    """Custom attributes as `job.attrs.<Name>`; original spelling kept where the ad has it."""
    out: Facts = {}
    names = tuple(ad)
    custom = _CUSTOM.get(names)
    if custom is None:
        custom = [str(n) for n in names if not (str(n).lower() in _STANDARD
                                                or _SYSTEM_FAMILY.search(str(n)) or "." in str(n))]
        if len(_CUSTOM) > 1000:
            _CUSTOM.clear()
        _CUSTOM[names] = custom
    for name in custom:
        v = cli.normalise(ad[name])
        if v is None or isinstance(v, dict | list):
            continue
        out[f"job.attrs.{name}"] = v
    return out


def _running_clock(f: Facts, start: Any, now: float) -> None:
    if f.get("job.state") == "RUNNING" and isinstance(start, float):
        f["job.elapsed"] = max(0.0, now - start)


def _lost(jid: str, known: bool) -> Facts:
    """A job that condor_history still does not have after `_HISTORY_TRIES` lookups (it is
    asked no more): terminal with an unknown outcome, so the run can end and say why."""
    where = (f"{jid} left the queue and is not in condor_history" if known else
             f"{jid} is neither in the queue nor in condor_history")
    detail = (where if known else f"{jid} was named by id but is neither in the queue nor in "
              "condor_history")
    return {"job.state": "UNKNOWN", "job.terminal": True, "job.outcome": "unknown",
            "job.succeeded": False, "job.diagnosis": "unknown", "job.raw_state": where,
            "job.diagnosis_detail": f"{detail} (looked {_HISTORY_TRIES} times)"}


def _refused_facts(watch: _Watch) -> Facts:
    why = watch.query_error or ""
    return {"job.state": "UNKNOWN", "job.terminal": True, "job.outcome": "error",
            "job.succeeded": False, "job.diagnosis": "unknown",
            "job.raw_state": f"condor_q refused this job's selection: {why}",
            "job.diagnosis_detail": f"condor_q refused the selection "
            f"{watch.refused_selection!r}: {why}"}


def _launch_failed_facts(reason: str, now: float) -> Facts:
    return {"job.state": "FAILED", "job.raw_state": f"not submitted: {reason}",
            "job.terminal": True, "job.outcome": "error", "job.succeeded": False,
            "job.diagnosis": "launch_failed", "job.diagnosis_detail": reason,
            "job.end_time": now}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- control ----------------------------------------------------------------------------------

_VERBS = {"hold": "condor_hold", "release": "condor_release", "remove": "condor_rm",
          "cancel": "condor_rm", "requeue": "condor_vacate_job"}


def control(verb: str, facts: Mapping[str, Any], reason: str | None, timeout: float) -> str:
    """Hold, release, remove (cancel) or requeue (vacate) the job these facts describe."""
    tool = _VERBS.get(verb)
    if tool is None:
        raise ProbeError(f"an HTCondor job cannot be {verb}ed here (verbs: "
                         f"{', '.join(sorted(_VERBS))}); resubmit applies to DAGMan workflows")
    jid = str(facts.get("job.id", ""))
    if not _ID.match(jid) or "." not in jid:
        raise ProbeError(f"no HTCondor job id (cluster.proc) in the facts: {jid or 'none'}")
    args = [tool]
    if reason and verb in ("hold", "remove", "cancel"):
        args += ["-reason", reason.replace("\n", " ")[:200]]
    args.append(jid)
    started = time.monotonic()
    out = cli.run(args, timeout=timeout)
    took = time.monotonic() - started
    return f"{tool} {jid}: {cli.first_line(out) or 'done'} ({took:.1f}s)"
