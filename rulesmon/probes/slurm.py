# Over 800 lines: the probe's call spacing, accounting retries and control in one module; it is
# to move into a slurm/ package with the layout of issue 16.
"""SLURM jobs: selected by id, array, user, name glob, partition or account, or submitted by the
ruleset with sbatch.

Each scheduler call serves every `slurm:` job of the ruleset: ONE squeue call
(`squeue -h -t all -O ...`, narrowed with `--jobs` or `--user` when every selection allows it;
above SQUEUE_JOBS_LIMIT ids the list is dropped and the jobs are picked out here, as a long
`--jobs` list is slow for the controller and may exceed Linux's 128 KiB per argument) and, for
the jobs that left the queue or ended in it, at most one batched sacct call (split into as
few calls as keep each `-j` list under SACCT_ARG_BYTES: one up to about 14,000 ids). Calls are
spaced by the smallest `min_interval` of the ruleset's slurm jobs; between calls the facts of
the last call are reported again (a running job's elapsed time and time left move on with the
clock). A job that left the queue and is not in accounting yet (or is still running there) is
looked up again with backoff (min_interval, doubled each time, at most 5 minutes) up to
`sacct_retries` times.

Accounting decides when a job is over. A job seen ended in squeue (squeue gives no exit code,
CPU time or MaxRSS) has its final state at once but `job.terminal` false and
`job.accounted: pending` until sacct has its final record (`done`: exit code, signal and
efficiency figures merged in; then `job.terminal` is true), or until the retries run out
(`missing`: terminal with what squeue said, or UNKNOWN with outcome unknown for a job that
left the queue unseen in accounting). So `run.all_terminal` — the end of the run — waits for
the figures, and a rule on `job.terminal` sees them. Once accounting has the final record, the
exit code, signal and diagnosis are its own, never squeue's (22.05's squeue --json holds the
batch shell's wait status, 15, for a job that timed out or was cancelled, where sacct says
0:0), even where the record leaves them unknown. A sacct that says accounting is disabled
makes every waiting job `missing` at once (an ended one keeps `job.time_eff` and
`job.exceeded` from squeue's elapsed time and limit), sets `probe.slurm.accounting_disabled`
and is logged once (`slurm_accounting_disabled`).

Formats are chosen once, from `squeue --version`: squeue's parseable `-O` format on every
version (the same field names from 20.11 to 24.x), sacct's parseable `-P` format on 22.05
(whose `sacct --json` reports return code 0 for any normal exit) and `sacct --json` from 23.02
on. RULESMON_SLURM_FORMAT=parseable forces -P for both; json forces squeue --json (whose
running jobs get elapsed and time left from their start time and the time of the call, as
squeue computes them) and sacct --json, except on 22.05, whose sacct -P is still read for its
exit codes. Commands run with
SLURM_TIME_FORMAT=%s (epoch times) and their own timeout (RULESMON_SLURM_TIMEOUT, 30 s).

Failures of squeue (a missing tool, a timeout, an error exit, garbage output) raise
`ProbeError`: the engine sets `probe.slurm.ok/failures/error` and logs each failed poll. On the
ticks between two calls the last call's error is raised again with `repeated=True`, so the
engine keeps the failed state and `probe.slurm.failures` at the number of failed polls,
without logging it again.
Alert on `probe.slurm.failures >= 3` (consecutive failed polls; slurm-basics does). While the
scheduler does not answer, a companion probe (`slurm_cache`) reports each job's last facts
again with `job.stale` true, so rules keep seeing the jobs; log facts follow again on the next
good call. A failing sacct does not hide squeue's facts: it counts as one lookup of each job it
was asked for, sets `job.accounting_error` on them and the run facts
`probe.slurm.sacct_ok/sacct_failures/sacct_error`. A record with a value that cannot be read
is left out (`probe.slurm.bad_records`, `probe.slurm.bad_record`); a watched job whose squeue
record is left out keeps its last facts.

Efficiency, once a job has ended (seff's figures, without seff, equal to seff 22.05-24.05.4's
report of the same job to two decimals): `job.cpu_eff` = CPU time of all steps rounded to whole
seconds / (elapsed x allocated CPUs) (`job.cpu_eff_exact` unrounded); `job.mem_used` = the
largest MaxRSS of the steps (`job.max_rss`, one task's peak) x that step's task count, and
`job.mem_eff` = it / the requested memory (ReqMem, per-node `n` and per-CPU `c` forms
multiplied out); `job.time_eff` = elapsed / time limit, `job.exceeded` on TIMEOUT or when the
limit was reached; `job.gpu_hours` = GPUs (AllocTRES gres/gpu) x elapsed hours. See
docs/differences.md for where they differ from seff on purpose.

Output paths: squeue's (placeholders expanded) are kept; a job known only from accounting
without one (sacct on 22.05 has no StdOut column) gets sbatch's default, `slurm-%j.out` in its
working directory (see `slurm_parse.with_default_output`).

`control(verb, facts, reason, timeout)`: cancel and remove (scancel), requeue, hold and
release (scontrol).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import slurm_parse as sp
from .base import Facts, ProbeError, TickContext, instance_key, job_base, render_path

if TYPE_CHECKING:
    from ..config.models import Ruleset, SlurmSource

log = logging.getLogger(__name__)

ENV_FORMAT = "RULESMON_SLURM_FORMAT"
ENV_TIMEOUT = "RULESMON_SLURM_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
MAX_BACKOFF = 300.0
#: Above this many ids squeue is asked for every job (`-t all`) and the watched ones picked out.
SQUEUE_JOBS_LIMIT = 2000
#: Longest `-j` list of one sacct call (Linux refuses an argument over 128 KiB).
SACCT_ARG_BYTES = 100_000
#: squeue's answer when every job asked for with --jobs has been purged from the controller.
_GONE = ("Invalid job id specified", "Invalid job id")
#: sacct's answer on a cluster without slurmdbd: no job will ever be in accounting.
_NO_ACCOUNTING = ("accounting storage is disabled",)
#: Facts of a running job that an ended job's record must not inherit.
_RUNNING_ONLY = ("job.time_left",)
#: How a job ended, as accounting says it: squeue's values (22.05's squeue --json gives the
#: batch shell's wait status, 15 for the SIGTERM of a TIMEOUT or scancel, where sacct and seff
#: say 0:0) never outlive accounting's final record, even where that record leaves one unknown.
_FROM_ACCOUNTING = ("job.exit_code", "job.signal", "job.succeeded", "job.diagnosis",
                    "job.diagnosis_detail")


class SlurmError(ProbeError):
    """A SLURM command could not be run or failed (one line)."""


def _again(exc: ProbeError) -> ProbeError:
    """The last call's error, raised again on a tick between calls (not a new failed poll)."""
    return type(exc)(str(exc), repeated=True)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SlurmError(f"{name} not found on PATH (install SLURM's client commands, e.g. "
                         "Debian's slurm-client, or put them on PATH)")
    return found


def call_timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


def run(args: Sequence[str], *, timeout: float | None = None, cwd: Path | None = None) -> str:
    """stdout of a SLURM command (an argv list, never a shell), or SlurmError in one line."""
    exe = tool(args[0])
    limit = call_timeout() if timeout is None else timeout
    env = dict(os.environ)
    env.pop("SLURM_TIME_FORMAT", None)
    if "--json" not in args:  # epoch times; 22.05's JSON output breaks with it set
        env["SLURM_TIME_FORMAT"] = "%s"
    try:
        proc = subprocess.run([exe, *args[1:]], capture_output=True, timeout=limit, cwd=cwd,
                              stdin=subprocess.DEVNULL, check=False, env=env)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{args[0]} timed out after {limit:g}s") from None
    except OSError as exc:
        raise SlurmError(f"{args[0]} could not run: {exc.strerror or exc}") from None
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        raise SlurmError(f"{args[0]} failed (exit {proc.returncode}): "
                         f"{_first_line(err) or _first_line(out) or 'no message'}")
    return out


def _first_line(text: str) -> str:
    for raw in text.splitlines():
        line = raw.strip()
        if line:
            return "".join(ch if ch.isprintable() else "?" for ch in line)[:300]
    return ""


@dataclass(slots=True)
class _Tracked:
    """One SLURM job (or array task) attributed to a ruleset job (slots: tens of thousands)."""

    jid: str
    facts: Facts = field(default_factory=dict)
    seen_at: float = 0.0
    in_queue: bool = False
    #: Nothing more to learn: accounting has its final record, retries ran out, or the launch
    #: failed (its facts then say `job.accounted` where accounting was asked).
    final: bool = False
    tries: int = 0
    next_try: float = 0.0
    #: The last accounting lookup for it failed: sacct's error.
    acct_error: str | None = None
    #: Accounting's final record whose steps had no usage yet (asked once more, then taken).
    partial: Facts | None = None


@dataclass
class _Watch:
    """A ruleset job with a `slurm:` source."""

    key: str
    spec: SlurmSource
    base: Path
    ids: set[str] = field(default_factory=set)
    jobs: dict[str, _Tracked] = field(default_factory=dict)
    submitted: list[str] | None = None
    #: Named or submitted ids not seen yet: (sacct lookups so far, next lookup time).
    misses: dict[str, tuple[int, float]] = field(default_factory=dict)
    submit_time: float | None = None
    launch_ok: bool | None = None
    launch_error: str | None = None
    dry_note: str | None = None

    def __post_init__(self) -> None:
        s = self.spec
        self.plain_ids = bool(self.ids) and s.submit is None and s.array is None and not (
            s.user or s.name or s.partition or s.account)
        #: The ids named in the ruleset (and the array id): fixed, so built once.
        self.named: frozenset[str] = frozenset(
            self.ids | ({str(s.array)} if s.array is not None else set()))

    @property
    def by_id(self) -> bool:
        """Whether the selection is a fixed set of ids (so squeue --jobs can ask for it)."""
        return self.submitted is not None or self.spec.submit is not None or (
            bool(self.ids) or self.spec.array is not None)

    def array_ids(self) -> set[str]:
        """Array ids that tracked tasks belong to (one pass over the jobs)."""
        return {str(a) for t in self.jobs.values()
                if (a := t.facts.get("job.array_id")) is not None}

    def open_ids(self) -> set[str]:
        """The ids still worth asking squeue about: not every job under them has ended.

        One pass over the tracked jobs (tasks indexed by array id), then one lookup per id:
        called once per tick, for thousands of ids."""
        ids = self.id_list()
        if not ids:
            return set()
        jobs = self.jobs
        ended_arrays: dict[str, bool] = {}  # array id -> every tracked task of it is final
        for t in jobs.values():
            array = t.facts.get("job.array_id")
            if array is not None:
                ended_arrays[array] = ended_arrays.get(array, True) and t.final
        out = set()
        for jid in ids:
            tracked = jobs.get(jid)
            if tracked is not None:
                if not tracked.final:
                    out.add(jid)
            elif not ended_arrays.get(jid, False):
                out.add(jid)
        return out

    def id_list(self) -> AbstractSet[str]:
        if self.submitted is not None:
            return set(self.submitted)
        if self.spec.submit is not None:
            return frozenset()
        return self.named

    def matches(self, f: Mapping[str, Any]) -> bool:
        jid, raw, array = f.get("job.id"), f.get("_job_id_raw"), f.get("job.array_id")
        if self.plain_ids:  # the common case: a list of ids and nothing else
            ids = self.ids
            return jid in ids or raw in ids or array in ids
        if self.submitted is not None:
            return jid in self.submitted or array in self.submitted or raw in self.submitted
        if self.spec.submit is not None:
            return False
        spec = self.spec
        if self.ids and not (jid in self.ids or raw in self.ids or array in self.ids):
            return False
        if spec.array is not None and array != str(spec.array):
            return False
        if spec.user and f.get("job.user") != spec.user:
            return False
        if spec.partition and spec.partition not in str(f.get("job.partition", "")).split(","):
            return False
        if spec.account and f.get("job.account") != spec.account:
            return False
        return not spec.name or fnmatch.fnmatchcase(str(f.get("job.name", "")), spec.name)


class SlurmProbe:
    """Facts for every job of the ruleset with a `slurm:` source."""

    name = "slurm"

    def __init__(self, ruleset: Ruleset, base_dir: Path) -> None:
        self._watches: list[_Watch] = []
        self._lock = threading.Lock()
        self._last_call: float | None = None
        self._formats: tuple[str, str] | None = None
        #: The last call's error, raised again on the ticks until the next call.
        self._failed: ProbeError | None = None
        #: The last facts reported and the tick they were made for (read by SlurmCacheProbe
        #: without the lock: the dict is replaced, never changed).
        self.cache: dict[str, Facts] = {}
        self.good_tick: float | None = None
        self.calls = {"squeue": 0, "sacct": 0}
        #: Consecutive accounting lookups (one per call that needed sacct) that failed.
        self.sacct_failures = 0
        self.sacct_error = ""
        #: sacct said accounting storage is disabled (said once in the log, kept for the run).
        self.accounting_disabled = False
        #: Records left out of the last call because a value could not be read.
        self.skipped: sp.Skipped = []
        for key, job in ruleset.jobs.items():
            if job.slurm is None:
                continue
            try:
                base = job_base(job, base_dir)
            except Exception:
                base = base_dir
            watch = _Watch(key, job.slurm, base, {str(i).strip() for i in job.slurm.ids})
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
            now = ctx.now
            due = self._last_call is None or now - self._last_call >= self.min_interval \
                or now < self._last_call
            if not due and self._failed is not None:
                raise _again(self._failed)  # still down as far as we know: not a success
            with sp.no_gc():  # tens of thousands of acyclic dicts: nothing for the GC to find
                if due:
                    open_ids = {id(w): w.open_ids() for w in self._watches if w.by_id}
                    if self._anything_to_ask(open_ids):
                        self._last_call = now
                        try:
                            self._refresh(now, open_ids)
                        except ProbeError as exc:
                            self._failed = exc
                            raise
                    self._failed = None
                facts = self._build_facts(now)
            self.cache, self.good_tick = facts, now
            return {**facts, "": self._run_level()}

    def close(self) -> None:
        """Nothing is held between ticks but memory: submitted jobs keep running."""

    def _run_level(self) -> Facts:
        first = self.skipped[0][1] if self.skipped else ""
        return {"probe.slurm.sacct_ok": not self.sacct_failures,
                "probe.slurm.sacct_failures": self.sacct_failures,
                "probe.slurm.sacct_error": self.sacct_error,
                "probe.slurm.accounting_disabled": self.accounting_disabled,
                "probe.slurm.bad_records": len(self.skipped),
                "probe.slurm.bad_record": first}

    # --- formats -------------------------------------------------------------------------------

    def formats(self) -> tuple[str, str]:
        """(squeue format, sacct format), each "parseable" or "json", chosen once."""
        if self._formats is None:
            forced = os.environ.get(ENV_FORMAT, "").strip().lower()
            if forced == "parseable":
                self._formats = ("parseable", "parseable")
            else:  # 22.05's sacct --json says 0 for every normal exit: -P there, even forced
                major, minor = sp.version(run(["squeue", "--version"]))
                self._formats = ("json" if forced == "json" else "parseable",
                                 "parseable" if (major, minor) < (23, 2) else "json")
        return self._formats

    # --- submitting ----------------------------------------------------------------------------

    def _submit(self, watch: _Watch, ctx: TickContext) -> None:
        from ..templates import render

        submit = watch.spec.submit
        assert submit is not None
        tctx: dict[str, Any] = {"job": {"key": watch.key, "name": watch.key}}
        try:
            script = render_path(submit.script, tctx, watch.base)
            args = [render(a, tctx) for a in submit.args]
            options = [render(a, tctx) for a in submit.sbatch_args]
        except Exception as exc:
            self._launch_failed(watch, ctx.now, f"script, args or sbatch_args do not render: "
                                f"{_one_line(exc)}")
            return
        if ctx.dry_run:
            watch.dry_note = f"dry run: would sbatch {script}"
            return
        if not script.is_file():
            self._launch_failed(watch, ctx.now, f"batch script not found: {script}")
            return
        watch.submit_time = ctx.now
        cwd = watch.base if watch.base.is_dir() else script.parent
        try:
            out = run(["sbatch", "--parsable", *options, str(script), *args], cwd=cwd,
                      timeout=max(call_timeout(), 60.0))
        except ProbeError as exc:
            self._launch_failed(watch, ctx.now, str(exc))
            return
        jid = out.strip().split(";", 1)[0].strip()
        if not jid.isdigit():
            self._launch_failed(watch, ctx.now, f"sbatch printed no job id: {out.strip()!r}")
            return
        watch.submitted = [jid]

    def _launch_failed(self, watch: _Watch, now: float, reason: str) -> None:
        watch.submitted = []
        watch.launch_ok, watch.launch_error = False, reason
        watch.submit_time = watch.submit_time or now

    # --- querying ------------------------------------------------------------------------------

    def _anything_to_ask(self, open_ids: Mapping[int, set[str]]) -> bool:
        return any(not w.by_id or open_ids.get(id(w)) for w in self._watches)

    def _squeue_args(self, open_ids: Mapping[int, set[str]]) -> list[str] | None:
        """squeue's arguments for the union of the selections, or None when nothing to ask."""
        live = [w for w in self._watches if not w.by_id or open_ids.get(id(w))]
        if not live:
            return None
        args = ["squeue", "-t", "all"]
        if all(w.by_id for w in live):
            ids = set().union(*(open_ids[id(w)] for w in live))
            if len(ids) <= SQUEUE_JOBS_LIMIT:
                args.append(f"--jobs={','.join(sorted(ids))}")
        elif all(w.spec.user for w in live):
            args.append(f"--user={','.join(sorted({str(w.spec.user) for w in live}))}")
        return args

    def _squeue(self, args: list[str]) -> list[Facts]:
        squeue_fmt, _ = self.formats()
        self.calls["squeue"] += 1
        try:
            if squeue_fmt == "json":
                text = run([*args, "--json"])
                return sp.parse_squeue_json(text, self.skipped) if text.strip() else []
            return sp.parse_squeue(run([args[0], "-h", *args[1:], "-O", sp.squeue_format()]),
                                   self.skipped)
        except SlurmError as exc:
            if not any(text in str(exc) for text in _GONE):
                raise
            asked = next((a for a in args if a.startswith("--jobs=")), "")
            if "," not in asked:
                return []  # the one job asked for is gone from the controller: see sacct
            # some of the ids are gone and this version refuses the whole list: ask for all
            return self._squeue([a for a in args if a != asked])

    def _refresh(self, now: float, open_ids: Mapping[int, set[str]]) -> None:
        args = self._squeue_args(open_ids)
        self.skipped = []
        records = self._squeue(args) if args is not None else []
        unreadable = {jid for jid, _ in self.skipped}  # still queued, but not readable now
        seen: dict[int, set[str]] = {id(w): set() for w in self._watches}
        for watch in self._watches:
            matches, jobs, seen_here = watch.matches, watch.jobs, seen[id(watch)]
            for record in records:
                if not matches(record):
                    continue
                jid = record["job.id"]
                seen_here.add(jid)
                tracked = jobs.get(jid)
                if tracked is None:
                    tracked = jobs[jid] = _Tracked(jid)
                if tracked.final:
                    continue
                tracked.in_queue = True
                tracked.facts = record  # fresh from this call, never changed in place
                tracked.seen_at = now
        for watch in self._watches:
            seen_here = seen[id(watch)]
            for jid, tracked in watch.jobs.items():
                if jid in seen_here:
                    continue
                if unreadable:  # its record (or its pending array's) is there, unreadable
                    f = tracked.facts
                    if jid in unreadable or f.get("_job_id_raw") in unreadable or \
                            f.get("job.array_id") in unreadable:
                        continue
                tracked.in_queue = False
        self._from_accounting(now)
        self._verify_launch(now)

    def _wanted(self, watch: _Watch, now: float) -> list[tuple[str, _Tracked | None]]:
        """Jobs to look up in sacct now: ended or gone from the queue, or named (or submitted)
        and never seen, which may be in the past already."""
        limit = watch.spec.sacct_retries
        out: list[tuple[str, _Tracked | None]] = []
        for jid, t in watch.jobs.items():
            if t.final or t.tries > limit or now < t.next_try:
                continue
            if not t.in_queue or t.facts.get("job.terminal"):
                out.append((jid, t))
        jobs = watch.jobs
        missing = {jid for jid in watch.id_list() if jid not in jobs}
        if missing:
            missing -= watch.array_ids()
        for jid in sorted(missing):
            if now >= watch.misses.get(jid, (0, 0.0))[1]:
                out.append((jid, None))
        return out

    def _sacct(self, fmt: str, ids: list[str]) -> dict[str, Facts]:
        self.calls["sacct"] += 1
        joined = ",".join(ids)
        if fmt == "json":
            return sp.parse_sacct_json(run(["sacct", "--json", "-j", joined]), self.skipped)
        return sp.parse_sacct(run(["sacct", "-P", f"--delimiter={sp.SEP}", "-o",
                                   ",".join(sp.SACCT_FIELDS), "-j", joined]), self.skipped)

    def _from_accounting(self, now: float) -> None:
        wanted: dict[str, list[tuple[_Watch, _Tracked | None]]] = {}
        for watch in self._watches:
            for jid, tracked in self._wanted(watch, now):
                wanted.setdefault(jid, []).append((watch, tracked))
        if not wanted:
            return
        _, fmt = self.formats()
        found: dict[str, Facts] = {}
        failed: dict[str, str] = {}  # id -> the error of the sacct call that asked for it
        for chunk in _chunks(sorted(wanted), SACCT_ARG_BYTES):
            try:
                found.update(self._sacct(fmt, chunk))
            except ProbeError as exc:
                failed.update(dict.fromkeys(chunk, str(exc)))
        if failed:
            self.sacct_failures += 1
            self.sacct_error = next(iter(failed.values()))
        else:
            self.sacct_failures, self.sacct_error = 0, ""
        disabled = any(m in self.sacct_error for m in _NO_ACCOUNTING)
        if disabled and not self.accounting_disabled:
            self.accounting_disabled = True
            log.warning("slurm_accounting_disabled error=%s (ended jobs get no exit code, CPU "
                        "or memory figures: job.accounted is missing)", self.sacct_error)
        resolved: set[tuple[int, str]] = set()
        deferred: set[tuple[int, str]] = set()
        for record in found.values():
            usage_pending = bool(record.pop(sp.USAGE_PENDING, False))
            jid = str(record["job.id"])
            asked = wanted.get(jid, []) + wanted.get(str(record.get("job.array_id")), []) \
                + wanted.get(str(record.get("_job_id_raw")), [])
            for watch, _ in asked:
                if watch.submitted is None and watch.spec.submit is None \
                        and not watch.matches(record):
                    continue
                tracked = watch.jobs.get(jid)
                if tracked is None:
                    tracked = watch.jobs[jid] = _Tracked(jid, seen_at=now)
                if tracked.final:
                    continue
                if record.get("job.terminal"):
                    if usage_pending and not disabled and (
                            tracked.partial is None or (id(watch), jid) in deferred):
                        tracked.partial = record  # its steps' figures are on their way
                        deferred.add((id(watch), jid))  # (asked under two ids, maybe)
                        continue
                    tracked.facts = _accounted(tracked.facts, record)
                    tracked.final, tracked.acct_error = True, None
                    tracked.partial = None
                    resolved.add((id(watch), jid))
                elif not tracked.facts:
                    tracked.facts = dict(record)  # named, never queued here
                    tracked.seen_at = now
        backoff = max(1.0, self.min_interval)
        arrays: dict[int, set[str]] = {}
        for jid, pairs in wanted.items():
            error = failed.get(jid)
            for watch, tracked in pairs:
                if tracked is None:  # named or submitted, never seen
                    if id(watch) not in arrays:
                        arrays[id(watch)] = watch.array_ids()
                    if jid in watch.jobs or jid in arrays[id(watch)]:
                        watch.misses.pop(jid, None)
                        continue
                    tries = watch.misses.get(jid, (0, 0.0))[0] + 1
                    watch.misses[jid] = (tries, now + min(MAX_BACKOFF,
                                                          backoff * 2 ** (tries - 1)))
                    if (tries > watch.spec.sacct_retries or disabled) \
                            and watch.submitted is None:
                        t = watch.jobs[jid] = _Tracked(jid, seen_at=now)
                        t.facts, t.final = _lost(jid, False, {}, disabled), True
                    continue
                if tracked.final or (id(watch), jid) in resolved:
                    continue
                tracked.acct_error = error
                tracked.tries += 1  # accounting lags (or failed): ask again later
                tracked.next_try = now + min(MAX_BACKOFF, backoff * 2 ** (tracked.tries - 1))
                out_of_tries = tracked.tries > watch.spec.sacct_retries or disabled
                if out_of_tries and tracked.partial is not None:  # the record there is
                    tracked.facts = _accounted(tracked.facts, tracked.partial)
                    tracked.final, tracked.partial = True, None
                elif out_of_tries and (not tracked.in_queue or
                                       tracked.facts.get("job.terminal")):
                    tracked.facts = {**tracked.facts,
                                     **_lost(jid, True, tracked.facts, disabled)}
                    tracked.final = True

    def _verify_launch(self, now: float) -> None:
        for watch in self._watches:
            if not watch.submitted or watch.launch_ok is not None:
                continue
            if any(t.facts for t in watch.jobs.values()):
                watch.launch_ok = True
                continue
            assert watch.spec.submit is not None and watch.submit_time is not None
            if now - watch.submit_time > watch.spec.submit.verify_within:
                watch.launch_ok = False
                watch.launch_error = (f"submitted job {', '.join(watch.submitted)} not seen in "
                                      f"squeue or sacct within "
                                      f"{watch.spec.submit.verify_within:g}s")
                for jid in watch.submitted:
                    t = watch.jobs.setdefault(jid, _Tracked(jid))
                    t.facts, t.final = _launch_failed_facts(watch.launch_error, now), True

    # --- facts ---------------------------------------------------------------------------------

    def _build_facts(self, now: float) -> dict[str, Facts]:
        out: dict[str, Facts] = {}
        for watch in self._watches:
            common: Facts = {"job.key": watch.key, "job.source": "slurm"}
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
                             "job.terminal": False, "job.outcome": "unknown"})
                    out[instance_key(watch.key, "submit")] = {"job.name": watch.key,
                                                              **common, **stub}
                    continue
                if watch.submitted and not any(t.facts for t in watch.jobs.values()):
                    for jid in watch.submitted:
                        out[instance_key(watch.key, jid)] = {
                            "job.name": watch.key, **common, "job.id": jid,
                            "job.state": "PENDING", "job.terminal": False,
                            "job.outcome": "unknown",
                            "job.raw_state": "submitted, not seen in squeue yet"}
                    continue
            prefix = f"{watch.key}/"
            for jid, tracked in watch.jobs.items():
                if not tracked.facts:
                    continue
                # a copy of the record (a compact dict copies fast), then the watch's keys
                facts: Facts = tracked.facts.copy()
                if "_job_id_raw" in facts:
                    del facts["_job_id_raw"]
                for name, value in common.items():  # the record's own values win
                    if name not in facts:
                        facts[name] = value
                facts["job.stale"] = False
                if "job.name" not in facts:
                    facts["job.name"] = watch.key
                if tracked.final:
                    pass  # terminal, with job.accounted done or missing where it was asked
                elif facts.get("job.terminal"):  # ended in the queue: wait for accounting
                    facts["job.terminal"] = False
                    facts["job.accounted"] = "pending"
                    if tracked.acct_error:
                        facts["job.accounting_error"] = tracked.acct_error
                elif now > tracked.seen_at and facts["job.state"] == "RUNNING":
                    _advance(facts, now - tracked.seen_at)
                out[prefix + jid] = facts  # instance_key(watch.key, jid)
        return out


class SlurmCacheProbe:
    """Reports the slurm probe's last facts again (with `job.stale` true) on a tick where the
    slurm probe failed or hung, so that the jobs stay visible while the controller is down."""

    name = "slurm_cache"

    def __init__(self, main: SlurmProbe) -> None:
        self.main = main

    def start(self, ctx: TickContext) -> None:
        """Nothing to prepare."""

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        if self.main.good_tick == ctx.now:
            return {}
        return {key: {**facts, "job.stale": True} for key, facts in self.main.cache.items()
                if key not in ctx.instances}

    def close(self) -> None:
        """Nothing held."""


def probes(ruleset: Ruleset, base_dir: Path) -> list[Any]:
    """The slurm probe and its companion, for the engine."""
    main = SlurmProbe(ruleset, base_dir)
    return [main, SlurmCacheProbe(main)]


# --- helpers ----------------------------------------------------------------------------------


def _chunks(ids: list[str], limit: int) -> list[list[str]]:
    """Ids in order, cut into lists whose comma-joined length stays within `limit`."""
    out: list[list[str]] = []
    chunk: list[str] = []
    size = 0
    for jid in ids:
        if chunk and size + 1 + len(jid) > limit:
            out.append(chunk)
            chunk, size = [], 0
        size += len(jid) + (1 if chunk else 0)
        chunk.append(jid)
    if chunk:
        out.append(chunk)
    return out


def _accounted(before: Facts, record: Facts) -> Facts:
    """An ended job's facts once accounting has its final record: accounting's state, exit
    code and figures over what squeue said; squeue's expanded output paths kept (the
    record's are sbatch's default at best, see `slurm_parse.with_default_output`)."""
    merged = {**before, **record, "job.accounted": "done"}
    for name in (*_RUNNING_ONLY, *_FROM_ACCOUNTING):
        if name not in record:
            merged.pop(name, None)
    if "job.stdout" in before:  # stderr goes with stdout unless squeue named its own
        merged["job.stdout"] = before["job.stdout"]
        merged["job.stderr"] = before.get("job.stderr", before["job.stdout"])
    elif "job.stderr" in before:
        merged["job.stderr"] = before["job.stderr"]
    return merged


def _advance(facts: Facts, dt: float) -> None:
    """A running job's clock between two squeue calls."""
    if dt <= 0:
        return
    elapsed = facts.get("job.elapsed")
    if isinstance(elapsed, int | float):
        facts["job.elapsed"] = elapsed + dt
    left = facts.get("job.time_left")
    if isinstance(left, int | float):
        facts["job.time_left"] = max(0.0, left - dt)


def _lost(jid: str, known: bool, facts: Mapping[str, Any], disabled: bool = False) -> Facts:
    """A job accounting never had: terminal all the same (so the run can end), with what
    squeue last said when it ended in the queue (and the time figures squeue's elapsed time
    and limit give: `job.time_eff`, `job.exceeded`), else UNKNOWN with outcome unknown."""
    why = "accounting is disabled" if disabled else "not in accounting"
    if facts.get("job.terminal"):  # ended in the queue; accounting never had it: keep that
        out: Facts = {"job.raw_state": f"{facts.get('job.raw_state', '')} ({why})",
                      "job.terminal": True, "job.accounted": "missing"}
        figures = dict(facts)
        sp.time_figures(figures)
        for name in ("job.time_eff", "job.exceeded"):
            if name in figures:
                out[name] = figures[name]
        return out
    return {"job.state": "UNKNOWN", "job.terminal": True, "job.outcome": "unknown",
            "job.accounted": "missing",
            "job.raw_state": f"{jid} left the queue and {why}" if disabled and known else
            f"{jid} left the queue and is not in accounting" if known
            else f"{jid} is neither in the queue nor in accounting" + (
                f" ({why})" if disabled else "")}


def _launch_failed_facts(reason: str, now: float) -> Facts:
    return {"job.state": "FAILED", "job.raw_state": f"not submitted: {reason}",
            "job.terminal": True, "job.outcome": "error", "job.succeeded": False,
            "job.diagnosis": "launch_failed", "job.diagnosis_detail": reason,
            "job.end_time": now}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- control ----------------------------------------------------------------------------------

_VERBS: dict[str, list[str]] = {"cancel": ["scancel"], "remove": ["scancel"],
                                "requeue": ["scontrol", "requeue"],
                                "hold": ["scontrol", "hold"],
                                "release": ["scontrol", "release"]}


def control(verb: str, facts: Mapping[str, Any], reason: str | None, timeout: float) -> str:
    """Cancel (remove), requeue, hold or release the SLURM job these facts describe."""
    command = _VERBS.get(verb)
    if command is None:
        raise ProbeError(f"a SLURM job cannot be {verb}d here (verbs: "
                         f"{', '.join(sorted(_VERBS))})")
    jid = str(facts.get("job.id", "")).strip()
    base, _, task = jid.partition("_")
    if not base.isdigit() or (task and not task.isdigit()):
        raise ProbeError(f"no SLURM job id in the facts: {jid or 'none'}")
    started = time.monotonic()
    out = run([*command, jid], timeout=timeout)
    took = time.monotonic() - started
    said = _first_line(out)
    why = f" ({reason.splitlines()[0][:120]})" if reason else ""
    return f"{' '.join(command)} {jid}: {said or 'done'}{why} ({took:.1f}s)"
