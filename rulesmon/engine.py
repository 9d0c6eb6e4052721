# Over 800 lines: the tick, its run facts, grouping, dispatch and shutdown in one module; it is
# to be divided along those seams (run facts and groups into their own modules) with the
# layout of issue 16.
"""The tick: probes → snapshot → rules → actions → state, and nothing else.

The engine orchestrates and persists; evaluating a rule is the pure `rules.state.step`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import redact, resume
from .actions import ACTIONS, ActionContext, Notification
from .actions.base import Sender
from .config.loader import Loaded
from .config.units import format_duration
from .facts import TERMINAL_STATES
from .history.recorder import Recorder
from .probes.base import Facts, Probe, ProbeError, TickContext
from .probes.diagnosis import Diagnoser
from .probes.progress import JobProgress, Tracker, job_progress
from .rules.compile import Compiled, EvalError
from .rules.history import History
from .rules.program import CompiledRule, Program, build, fingerprint
from .rules.state import AlertState, Owed, step
from .rules.unknown import UNKNOWN, Unknown
from .signals import BUDGET as SHUTDOWN_BUDGET
from .signals import SIGNAL_GRACE, Guard, HardStop, Interrupted
from .store import OutboxRow, StateDamaged, StateStore, StorageError
from .storefaults import classify
from .templates import render

SOURCE_PROBES = ("slurm", "htcondor", "dagman", "local")
RUN_PROBES = ("host",)
FAILED_OUTCOMES = ("failed", "timeout", "cancelled", "error")
_INACTIVE = AlertState()


@dataclass
class ProbeHealth:
    ok: bool = True
    failures: int = 0
    error: str = ""
    last_ok: float | None = None
    duration: float = 0.0


@dataclass(frozen=True)
class TickReport:
    """What one tick saw and did, handed to observers (history, dashboard, plain lines).

    Observers run on the engine thread right after the tick is stored: they must be quick and
    must not mutate what they are given.
    """

    tick: int
    now: float
    duration: float
    instances: Mapping[str, Mapping[str, Any]]
    run: Mapping[str, Any]
    fired: list[Notification]
    #: (time, kind, rule, instance, severity, title, text) recorded this tick
    events: list[tuple[float, str, str, str, str, str, str]]
    run_id: int


Observer = Callable[["TickReport"], None]


@dataclass
class TickOutcome:
    tick: int
    fired: list[Notification] = field(default_factory=list)
    finished: bool = False
    duration: float = 0.0


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"job.state": x}` → `{"job": {"state": x}}`, for templates."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if not (parts[-1] in node and isinstance(node[parts[-1]], dict)):
            node[parts[-1]] = value
    return out


def default_probes(loaded: Loaded, base_dir: Path) -> list[Probe]:
    """The probes a ruleset needs, in stage order (sources, then node probes)."""
    from .probes.host import HostProbe

    rs = loaded.ruleset
    probes: list[Probe] = []
    if any(job.local for job in rs.jobs.values()):
        from .probes.local import LocalProbe

        probes.append(LocalProbe(rs, base_dir))
    if any(job.slurm for job in rs.jobs.values()):
        from .probes.slurm import probes as slurm_probes

        probes.extend(slurm_probes(rs, base_dir))
    if any(job.htcondor for job in rs.jobs.values()):
        from .probes.htcondor import HTCondorProbe

        probes.append(HTCondorProbe(rs, base_dir))
    if any(job.dagman for job in rs.jobs.values()):
        from .probes.dagman import DagmanProbe

        probes.append(DagmanProbe(rs, base_dir))
    if any(job.files for job in rs.jobs.values()) or any(
            not (j.slurm or j.htcondor or j.dagman or j.local) for j in rs.jobs.values()):
        from .probes.files import FilesProbe

        probes.append(FilesProbe(rs, base_dir))
    if any(job.logs for job in rs.jobs.values()):
        from .probes.logs import LogsProbe

        probes.append(LogsProbe(rs, base_dir))
    if any(job.gpu for job in rs.jobs.values()):
        from .probes.gpu import GpuProbe

        probes.append(GpuProbe(rs, base_dir))
    probes.append(HostProbe())
    return probes


class Engine:
    """Runs a loaded ruleset tick by tick."""

    def __init__(self, loaded: Loaded, *, state_path: Path, log: Any,
                 sender: Sender | None = None, delivery: Any = None,
                 probes: list[Probe] | None = None,
                 dry_run: bool = False, allow_exec: bool = False,
                 allow_control: bool = False, observers: Iterable[Observer] = (),
                 probe_timeout: float | None = None,
                 clock: Callable[[], float] = time.time,
                 group_filter: tuple[str, str] | None = None) -> None:
        self.loaded = loaded
        #: (key, value): watch only the instances whose `group_by`-style key has this value
        #: (`rulesmon run --run-uuid`), everything else is left out of the tick
        self.group_filter = group_filter
        self.rs = loaded.ruleset
        self.program: Program = build(self.rs)
        self.rules_by_name = {r.name: r for r in self.program.rules}
        self.base_dir = Path(loaded.path).resolve().parent if loaded.path != "<string>" \
            else Path.cwd()
        self.log = log
        self.dry_run = dry_run
        self.allow_exec = allow_exec
        self.allow_control = allow_control
        self.observers: list[Observer] = list(observers)
        if self.rs.state_file is not None and not dry_run:  # a dry run writes nothing
            from .statefile import writer_for

            self.observers.append(writer_for(self.rs.state_file, self.base_dir, self.rs.name,
                                             float(self.rs.every)))
        self.clock = clock
        self.interval = float(self.rs.every)
        self.probe_timeout = probe_timeout or max(1.0, min(self.interval * 0.8, 120.0))
        # secrets (rulesmon/redact.py): masked in the log, the store, history and what
        # observers see; the outbox keeps messages sealed until their delivery
        self.secrets = loaded.secrets
        redact.activate(self.secrets)
        self.store = StateStore(Path(":memory:") if dry_run else state_path, self.secrets,
                                log=log, verify=not dry_run)
        self.alerts: dict[str, dict[str, AlertState]] = {}
        for rule_name, inst, st in self.store.alerts().values():
            # last_eval=None: the first tick after a restart credits no time, so downtime
            # never counts toward `for:` (held_for keeps what was held before)
            self.alerts.setdefault(rule_name, {})[inst] = st._replace(last_eval=None)
        self._durable: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.histories: dict[str, History] = {}
        for inst, values in self.store.last_values().items():
            self.histories.setdefault(inst, History()).prev.update(values)
        self._persisted: dict[tuple[str, str], Any] = {
            (inst, k): v for inst, h in self.histories.items() for k, v in h.prev.items()}
        self.trackers: dict[str, Tracker] = {}
        self.job_trackers: dict[str, JobProgress] = {}
        self.diagnoser = Diagnoser()
        self.probes = probes if probes is not None else default_probes(loaded, self.base_dir)
        #: what this run takes over from the previous run on this state file: "resume" its
        #: workers and alerts, or start "new", or "relaunch" the workers a signal stopped
        self.resume_plan = resume.plan(None if dry_run else self.store.previous_run())
        if not dry_run:  # probes that keep state of their own across restarts (files, local)
            for probe in self.probes:
                use_state = getattr(probe, "use_state", None)
                if callable(use_state):
                    use_state(Path(state_path))
                new_run = getattr(probe, "new_run", None)
                if callable(new_run) and self.resume_plan != "resume":
                    new_run(launches_only=self.resume_plan == "relaunch")
            self._retire_previous()
        self.health = {p.name: ProbeHealth() for p in self.probes}
        self.inflight: dict[str, Future[dict[str, Facts]]] = {}
        self.executor = ThreadPoolExecutor(max_workers=max(2, len(self.probes)),
                                           thread_name_prefix="probe")
        self._outbox: list[OutboxRow] = []
        self.sender: Sender = sender or _OutboxWriter(self)
        self.delivery = delivery
        self.drain_timeout = 30.0
        self.ticks = 0
        self.overruns = 0
        self.started = clock()
        self.stop_code: int | None = None
        #: A `stop` action ran; without its own code (stop_code None) the run exits as it would
        #: at its natural end: 1 when a job failed, else 0.
        self.stop_requested = False
        self.interrupted: int | None = None
        #: the state database failed for good (damaged) during the run: it ends as on SIGTERM
        self.storage_error: StorageError | None = None
        #: the signal handlers while `run` runs (rulesmon/signals.py); None outside it
        self._guard: Guard | None = None
        #: the watchdog process of `rulesmon run` (signals.HardStop), if the caller gave one
        self._hard_stop: HardStop | None = None
        self._signal_at: float | None = None  #: time.monotonic() of the first signal
        #: `rulesmon run`'s way to read its ruleset again on SIGHUP (rulesmon/reload.py)
        self.reload_from: Callable[[], Loaded] | None = None
        self._reload_asked = False  #: a SIGHUP came; applied between two ticks
        self._wake = threading.Event()
        self._fp: dict[tuple[str, str], str] = {}
        self._target_cache: dict[frozenset[str], list[tuple[str, Mapping[str, Any], History]]] \
            = {}
        #: (the tick's snapshots, [(job key, group key, group facts)]): see `_groups`
        self._group_cache: tuple[Mapping[str, Any], list[tuple[str, str, Mapping[str, Any]]]] \
            | None = None
        self._states: dict[str, str] = {}
        self._events: list[tuple[float, str, str, str, str, str, str]] = []
        self._owed: list[tuple[CompiledRule, str, Mapping[str, Any], Owed]] = []
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._controlled = False  #: a control action was started this tick
        #: instances kept by the group filter for their rules only (the DAG of a watched run):
        #: they do not hold the run open
        self._context: set[str] = set()
        self._filter_warned = False
        self._eval_errors: set[tuple[str, str]] = set()
        self.run_id = self.store.start_run(self.rs.name, self.started)
        self.recorder: Recorder | None = None
        if self.rs.history.enabled and not dry_run:
            h = self.rs.history
            self.recorder = Recorder(self.rs.name, self.run_id, secrets=self.secrets,
                                     sample_every=h.sample_every,
                                     retention=h.retention, sample_retention=h.sample_retention)
        self.instances: dict[str, Facts] = {}
        self.run_facts: Facts = {}

    def _retire_previous(self) -> None:
        """A run that is over leaves its alerts behind: they are retired without a
        notification (a rerun never sends "[RESOLVED]" about the previous run's jobs)."""
        if self.resume_plan == "resume":
            return
        launched = resume.launched_jobs(self.rs.jobs)
        rows, events = resume.retire(
            self.alerts,
            (lambda _inst: True) if self.resume_plan == "new"
            else (lambda inst: inst.split("/", 1)[0] in launched),
            {r.name: r.severity for r in self.program.rules}, self.clock(),
            lambda rule, inst: fingerprint(self.rs.name, rule, inst))
        if rows or events:
            self.store.save_tick(rows, (), events, None, 0, 0)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        ctx = self._ctx(self.clock())
        for probe in self.probes:
            try:
                probe.start(ctx)
            except Exception as exc:  # a probe that cannot start is a fact, not a crash
                self._fail(probe.name, f"start failed: {_one_line(exc)}")

    def close(self) -> None:
        if self.interrupted is None:
            self._close_probes()
        else:  # a probe stuck mid-collect may hold the lock its close needs: not waited for
            self._alive()
            closer = threading.Thread(target=self._close_probes, name="probe-close",
                                      daemon=True)
            closer.start()
            closer.join(max(0.2, self._remaining()))
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.diagnoser.close()  # the kernel logs it follows
        if self.delivery is not None:  # after a signal, a sender stuck mid-send is not waited
            self.delivery.close(5.0 if self.interrupted is None else 0.5)
        self.store.close()

    def _close_probes(self) -> None:
        for probe in self.probes:
            try:
                probe.close()
            except Exception as exc:
                self.log.warning("probe_close_failed", probe=probe.name, error=_one_line(exc))

    def _ctx(self, now: float, instances: Mapping[str, Facts] | None = None) -> TickContext:
        # the deadline is taken just before the probes are submitted: a moment earlier than
        # the timeout _run_probes enforces, so a probe that keeps to it is never cut off
        return TickContext(now=now, ruleset=self.rs, base_dir=self.base_dir,
                           instances=instances or {}, dry_run=self.dry_run,
                           deadline=time.monotonic() + self.probe_timeout)

    # --- one tick -----------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> TickOutcome:
        t0 = time.monotonic()
        now = self.clock() if now is None else now
        self.ticks += 1
        # a control action still running (resubmitting a rescue DAG, requeueing) may bring
        # jobs back: its effect shows only in a tick that starts after it ended
        controls_busy = any(t.is_alive() for t in self._workers
                            if t.name.startswith("control-"))
        self._controlled = False
        instances, run_level = self._collect(now)
        if self.group_filter is not None:
            instances = self._filter_group(instances)
        self._derive(instances, now)
        run_facts = self._run_facts(instances, run_level, now)
        self.instances, self.run_facts = instances, run_facts
        outcome = TickOutcome(self.ticks)
        self._log_state_changes(instances)
        # Instances see the run-level facts the job-scope rules name (templates get them all
        # at dispatch); the instance dicts are not touched again, and rules see them read-only.
        shared = {k: run_facts[k] for k in self.program.run_keys if k in run_facts}
        snapshots: dict[str, Mapping[str, Any]] = {}
        for key, row in instances.items():
            row.update(shared)
            snapshots[key] = MappingProxyType(row)
        run_snapshot = MappingProxyType(dict(run_facts))
        tracked = self.program.tracked
        for key, snap in snapshots.items():
            self._history(key).record(snap, tracked, now, self.program.max_window)
        changed: dict[str, tuple[str, str, AlertState]] = {}
        self._target_cache = {}
        self._owed = []
        for rule in self.program.rules:
            self._evaluate_rule(rule, self._targets(rule, snapshots, run_snapshot), now,
                                changed, outcome)
        self._dispatch_owed(snapshots, now, changed, outcome)
        last_values = []
        for key, snap in snapshots.items():
            h = self._history(key)
            h.commit(snap, tracked)
            for k in tracked:
                if k in snap and self._persisted.get((key, k), _MISSING) != snap[k]:
                    self._persisted[(key, k)] = snap[k]
                    last_values.append((key, k, snap[k]))
        with self._shielded():  # a signal never cuts the tick's commit in half
            with self._lock:
                events, self._events = self._events, []
            history = self.recorder.stage(now, instances, run_snapshot) \
                if self.recorder else None
            # kept in memory when the disk is full, and written (then `after` runs) with a
            # later tick; a damaged file raises StateDamaged (rulesmon/storefaults.py)
            self.store.save_tick(((fp, r, i, st) for fp, (r, i, st) in changed.items()),
                                 last_values, events, self.run_id, self.ticks, self.overruns,
                                 self._outbox, history,
                                 after=partial(self._committed, now, bool(self._outbox)))
            self._outbox = []
        outcome.finished = bool(run_facts.get("run.all_terminal")) and not (
            controls_busy or self._controlled)
        outcome.duration = time.monotonic() - t0
        if self.observers:
            self._notify_observers(TickReport(
                self.ticks, now, outcome.duration, snapshots, run_snapshot, outcome.fired,
                events, self.run_id))
        return outcome

    def _committed(self, now: float, owed: bool) -> None:
        """The tick `now` is written: the files probe persists the new files it reported,
        and delivery sends what the tick owes."""
        for probe in self.probes:
            committed = getattr(probe, "tick_committed", None)
            if callable(committed):
                committed(now)
        if owed and self.delivery is not None:
            self.delivery.poke()

    def _notify_observers(self, report: TickReport) -> None:
        report = redact.scrub_report(report, self.secrets)  # displays, the state file
        for observer in self.observers:
            try:
                observer(report)
            except Exception as exc:  # a display or recorder bug never stops the watching
                name = getattr(observer, "__qualname__", type(observer).__name__)
                if (name, str(exc)) not in self._eval_errors:
                    self._eval_errors.add((name, str(exc)))
                    self.log.error("observer_failed", observer=name, error=_one_line(exc))

    def _flush_state_file(self) -> None:
        """The run ended: the state file gets the last tick if its cadence held it back."""
        from .statefile import StateFileWriter

        for observer in self.observers:
            if isinstance(observer, StateFileWriter):
                try:
                    observer.flush()
                except Exception as exc:  # as in _notify_observers: once per distinct error
                    name = type(observer).__name__
                    if (name, str(exc)) not in self._eval_errors:
                        self._eval_errors.add((name, str(exc)))
                        self.log.error("observer_failed", observer=name, error=_one_line(exc))

    def _history(self, key: str) -> History:
        h = self.histories.get(key)
        if h is None:
            h = self.histories[key] = History()
        return h

    def _collect(self, now: float) -> tuple[dict[str, Facts], Facts]:
        instances: dict[str, Facts] = {}
        run_level: Facts = {}
        stages = (
            [p for p in self.probes if p.name in SOURCE_PROBES],
            [p for p in self.probes if p.name not in SOURCE_PROBES],
        )
        for probes in stages:
            ctx = self._ctx(now, MappingProxyType(instances))
            results = self._run_probes(probes, ctx)
            for result in results:
                for key, facts in result.items():
                    if key == "":
                        run_level.update(facts)
                    else:
                        instances.setdefault(key, {}).update(facts)
        for name, h in self.health.items():
            run_level[f"probe.{name}.ok"] = h.ok
            run_level[f"probe.{name}.failures"] = h.failures
            run_level[f"probe.{name}.error"] = h.error
            run_level[f"probe.{name}.duration"] = h.duration
            if h.last_ok is not None:
                run_level[f"probe.{name}.last_ok"] = h.last_ok
        return instances, run_level

    def _run_probes(self, probes: Iterable[Probe], ctx: TickContext) -> list[dict[str, Facts]]:
        futures: list[tuple[Probe, Future[dict[str, Facts]], float]] = []
        for probe in probes:
            busy = self.inflight.get(probe.name)
            if busy is not None and not busy.done():
                self._fail(probe.name, f"still running after {self.probe_timeout:g}s "
                           "(previous tick)")
                continue
            future = self.executor.submit(probe.collect, ctx)
            self.inflight[probe.name] = future
            futures.append((probe, future, time.monotonic()))
        results = []
        deadline = time.monotonic() + self.probe_timeout
        for probe, future, started in futures:
            try:
                result = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                self._fail(probe.name, f"timed out after {self.probe_timeout:g}s")
                continue
            except Exception as exc:  # any probe failure becomes facts
                # `repeated`: the probe did not ask again (min_interval) and says it is still
                # failing; the failed state holds, but it is not one more failed poll
                self._fail(probe.name, _one_line(exc),
                           count=not (isinstance(exc, ProbeError) and exc.repeated))
                continue
            h = self.health[probe.name]
            if not h.ok:
                self.log.info("probe_recovered", probe=probe.name, after=h.failures)
            h.ok, h.failures, h.error = True, 0, ""
            h.last_ok = ctx.now
            h.duration = time.monotonic() - started
            results.append(result if isinstance(result, dict) else {})
        return results

    def _fail(self, name: str, error: str, count: bool = True) -> None:
        """A failed probe; logged once per failed poll (`count`), not on the ticks that only
        report the last failure again."""
        h = self.health.setdefault(name, ProbeHealth())
        h.ok = False
        h.error = error
        if count or not h.failures:
            h.failures += 1
            self.log.warning("probe_failed", probe=name, failures=h.failures, error=error)

    def _filter_group(self, instances: dict[str, Facts]) -> dict[str, Facts]:
        """`--run-uuid` / `--group`: one group's instances, plus the DAG instance(s) they
        belong to, so DAG-level rules (aborted, rescue written) still fire; warns once when
        no instance matches (a mistyped value would watch nothing, silently)."""
        assert self.group_filter is not None
        by, wanted = self.group_filter
        kept: dict[str, Facts] = {}
        for k, f in instances.items():
            value = group_value(f, by)
            if value is not None and str(value) == wanted:
                kept[k] = f
        dags = {f.get("node.dag") for f in kept.values()} - {None}
        self._context = set()
        for k, f in instances.items():
            if k not in kept and f.get("dag.file") in dags:
                kept[k] = f
                self._context.add(k)
        if not kept and instances and not self._filter_warned:
            self._filter_warned = True
            known = sorted({str(v) for f in instances.values()
                            if (v := group_value(f, by)) is not None})
            shown = ", ".join(known[:10]) + (f", ... ({len(known)} in all)"
                                             if len(known) > 10 else "")
            self.log.warning("group_filter_unmatched",
                             message=f"no instance has {by}={wanted} (known: "
                             f"{shown or 'none'})")
        return kept

    def _derive(self, instances: dict[str, Facts], now: float) -> None:
        """Facts computed from other facts: progress, outcomes."""
        self.diagnoser.tick(now)  # the OOM kills its memory cgroup counted since the last tick
        for key, facts in instances.items():
            job_key = facts.get("job.key")
            job = self.rs.jobs.get(job_key) if isinstance(job_key, str) else None
            if job is None:
                continue
            spec = self.program.progress.get(str(job_key)) if job.progress else None
            if spec is not None and job.progress is not None:
                done_c, total_c = spec
                done = _value(done_c, facts, self._history(key), now)
                total = total_c if isinstance(total_c, float) else _value(
                    total_c, facts, self._history(key), now)
                if isinstance(done, int | float) and not isinstance(done, bool):
                    tracker = self.trackers.setdefault(key, Tracker())
                    facts.update(tracker.update(
                        now, float(done), float(total) if isinstance(total, int | float)
                        else None, job.progress.window, job.progress.stall_after,
                        job.progress.unit))
            state = facts.get("job.state")
            if isinstance(state, str):
                facts.setdefault("job.terminal", state in TERMINAL_STATES)
            if facts.get("job.terminal"):
                facts.update(self.diagnoser.diagnose(
                    key, facts, list(job.files),
                    {n: s.expect_count for n, s in job.files.items()
                     if s.expect_count is not None},
                    [n for n, s in job.files.items() if s.validate_ != "none"], now=now))
        job_progress(self.job_trackers, instances,
                     {k: j.progress for k, j in self.rs.jobs.items() if j.progress}, now)

    def _run_facts(self, instances: Mapping[str, Facts], run_level: Facts,
                   now: float) -> Facts:
        counts: dict[str, int] = {}
        with_source = watched = 0
        terminal = succeeded = failed = unknown = pending = running = 0
        for key, facts in instances.items():
            if key in self._context:
                continue
            if facts.get("job.source", "none") == "none":
                watched += 1
                continue
            with_source += 1
            state = facts.get("job.state")
            if isinstance(state, str):
                counts[state] = counts.get(state, 0) + 1
                pending += state in ("PENDING", "HELD")
                running += state == "RUNNING"
            if facts.get("job.terminal"):
                terminal += 1
                outcome = facts.get("job.outcome")
                if facts.get("job.succeeded") is True or outcome == "success":
                    succeeded += 1
                elif outcome in FAILED_OUTCOMES or facts.get("job.succeeded") is False \
                        or state == "UNKNOWN":  # a watched job that could not be found
                    failed += 1
                else:  # ended, and no evidence says how: neither a success nor a failure
                    unknown += 1
        elapsed = now - self.started
        out: Facts = dict(run_level)
        out.update({
            "run.name": self.rs.name,
            "run.total": with_source,
            "run.watched": watched,
            "run.pending": pending,
            "run.running": running,
            "run.terminal": terminal,
            "run.succeeded": succeeded,
            "run.failed": failed,
            "run.unknown": unknown,
            "run.all_terminal": with_source > 0 and terminal == with_source,
            "run.all_succeeded": with_source > 0 and succeeded == with_source,
            "run.elapsed": elapsed,
            "run.started": self.started,
            "run.tick": self.ticks,
            "run.overruns": self.overruns,
            "run.counts": dict(counts),
        })
        for state, n in counts.items():
            out[f"run.counts.{state}"] = n
        by_state = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs"
        out["run.summary"] = (f"{with_source} job instance(s): {by_state}; {succeeded} "
                              f"succeeded, {failed} failed"
                              + (f", {unknown} ended with outcome unknown" if unknown else "")
                              + f"; total time {format_duration(elapsed)}")
        if watched:
            out["run.summary"] += f"; {watched} watched without a source (logs and files only)"
        if run_level.get("probe.slurm.accounting_disabled") is True:
            out["run.summary"] += ("; SLURM accounting is disabled: no exit codes, CPU or "
                                   "memory figures for ended SLURM jobs")
        return out

    def _targets(self, rule: CompiledRule, snapshots: Mapping[str, Mapping[str, Any]],
                 run_snapshot: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], History]]:
        if rule.scope == "run":
            return [("run", run_snapshot, self._history("run"))]
        if rule.scope == "group":
            return [(k, f, self._history(k))
                    for k, f in self._groups(rule, snapshots, run_snapshot)]
        cached = self._target_cache.get(rule.jobs)
        if cached is None:
            cached = self._target_cache[rule.jobs] = [
                (k, f, self._history(k)) for k, f in snapshots.items()
                if rule.applies_to(f.get("job.key", ""))]
        return cached

    def _groups(self, rule: CompiledRule, snapshots: Mapping[str, Mapping[str, Any]],
                run_snapshot: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
        """The groups a group-scope rule sees: made once per tick (this tick's `snapshots`),
        then picked by the rule's `jobs:`."""
        cache = self._group_cache
        if cache is None or cache[0] is not snapshots:
            made: list[tuple[str, str, Mapping[str, Any]]] = []
            members = group_members(snapshots.values(), self.group_by())
            for (job_key, by, value), group in sorted(members.items()):
                facts: Facts = dict(run_snapshot)
                facts.update(group_facts(by, value, group))
                made.append((job_key, f"{job_key}/{by}={value}", MappingProxyType(facts)))
            cache = self._group_cache = (snapshots, made)
        return [(key, facts) for job_key, key, facts in cache[1] if rule.applies_to(job_key)]

    def group_by(self) -> dict[str, tuple[str, ...]]:
        """Each job's `group_by:` keys (jobs without any left out)."""
        return {k: tuple(j.group_by) for k, j in self.rs.jobs.items() if j.group_by}

    def group_instances(self) -> dict[str, Facts]:
        """`group.*` of every group of the last tick, keyed as group-scope alerts are
        (`rulesmon facts` prints them)."""
        members = group_members(self.instances.values(), self.group_by())
        return {f"{job_key}/{by}={value}": group_facts(by, value, group)
                for (job_key, by, value), group in sorted(members.items())}

    def _evaluate_rule(self, rule: CompiledRule,
                       targets: list[tuple[str, Mapping[str, Any], History]], now: float,
                       changed: dict[str, tuple[str, str, AlertState]],
                       outcome: TickOutcome) -> None:
        """One rule over its instances; the common case (false, and inactive) costs one
        condition call and one dict lookup."""
        states = self.alerts.setdefault(rule.name, {})
        t = rule.timing
        simple = t.times is None and t.absent_for is None and t.stale_for is None
        cond = rule.condition
        keep = bool(t.keep_firing_for)
        fast = cond.fast
        for key, facts, h in targets:
            try:
                value: Any = fast(facts, h, now)
            except Exception:
                value = _slow(cond, facts, h, now)
            if value is False and simple and key not in states:
                continue  # the common case: nothing to do, nothing to store
            if isinstance(value, EvalError):
                exc = value
                value = UNKNOWN
                if (rule.name, str(exc)) not in self._eval_errors:
                    self._eval_errors.add((rule.name, str(exc)))
                    self.log.warning("condition_error", rule=rule.name, instance=key,
                                     error=str(exc))
            if value is UNKNOWN:
                result: bool | Unknown = UNKNOWN
            else:
                try:
                    result = bool(value)
                except Exception:  # a container holding unknown data
                    result = UNKNOWN
            prev = states.get(key)
            if prev is None:
                if simple and result is False:
                    continue  # the common case: nothing to do, nothing to store
                prev = _INACTIVE
            cleared = None
            if rule.clear is not None and prev.status == "firing":
                try:
                    cleared = rule.clear.truth(facts, h, now)
                except EvalError:
                    cleared = UNKNOWN
            st = step(t, result, now, self.interval, prev, value=value, cleared=cleared)
            new = st.state
            if new.status == "inactive" and simple and not new.fired_once \
                    and new.held_for == 0.0:
                if key in states:
                    del states[key]
                    changed[self._fingerprint(rule.name, key)] = (rule.name, key, new)
            else:
                states[key] = new
                durable = new.durable(keep)
                dk = (rule.name, key)
                if self._durable.get(dk) != durable:
                    self._durable[dk] = durable
                    changed[self._fingerprint(rule.name, key)] = (rule.name, key, new)
            for owed in st.owed:
                self._owed.append((rule, key, facts, owed))

    def _fingerprint(self, rule: str, key: str) -> str:
        fpk = (rule, key)
        fp = self._fp.get(fpk)
        if fp is None:
            fp = self._fp[fpk] = fingerprint(self.rs.name, rule, key)
        return fp

    # --- actions ------------------------------------------------------------------------------

    def _dispatch_owed(self, snapshots: Mapping[str, Mapping[str, Any]], now: float,
                       changed: dict[str, tuple[str, str, AlertState]],
                       outcome: TickOutcome) -> None:
        """Run the actions owed this tick, except notifications muted by an inhibiting rule
        or a silence (recorded, and their recovery is not announced either)."""
        if not self._owed:
            return
        covered = self._inhibited(snapshots)
        silences = self.store.silences(now)
        for rule, key, facts, owed in self._owed:
            states = self.alerts.get(rule.name, {})
            state = states.get(key, _INACTIVE)
            fp = self._fingerprint(rule.name, key)
            muted_by = covered.get((rule.name, key))
            if muted_by is None:
                muted_by = next((f"silence {s.id}" for s in silences
                                 if s.matches(rule.name, key)), None)
            if owed.kind == "resolve" and state.muted:
                muted_by = muted_by or "its firing was muted"
            if muted_by is not None:
                if owed.kind == "fire" and key in states:
                    states[key] = state._replace(muted=True)
                    changed[fp] = (rule.name, key, states[key])
                self._events.append((now, "muted", rule.name, key, rule.severity, owed.kind,
                                     muted_by))
                self.log.info("notification_muted", rule=rule.name, instance=key,
                              transition=owed.kind, by=muted_by)
                continue
            if owed.kind == "fire" and state.muted and key in states:
                states[key] = state._replace(muted=False)
                changed[fp] = (rule.name, key, states[key])
            outcome.fired.append(self._dispatch(rule, key, fp, facts, states.get(key, state),
                                                owed))

    def _inhibited(self, snapshots: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str],
                                                                               str]:
        """(rule, instance) pairs muted by a firing inhibitor, with the inhibitor's name."""
        out: dict[tuple[str, str], str] = {}
        by_name = self.rules_by_name
        for rule in self.program.rules:
            if not rule.rule.inhibits:
                continue
            firing = [k for k, st in self.alerts.get(rule.name, {}).items()
                      if st.status == "firing"]
            if not firing:
                continue
            for entry in rule.rule.inhibits:
                target = entry if isinstance(entry, str) else entry.rule
                equal = [] if isinstance(entry, str) else entry.equal
                victim = by_name.get(target)
                if victim is None:
                    continue
                if rule.scope == "run":
                    keys = set(self.alerts.get(target, {})) | set(snapshots)
                    out.update({(target, k): rule.name for k in keys})
                elif not equal:
                    out.update({(target, k): rule.name for k in firing})
                else:
                    values = {tuple(snapshots.get(k, {}).get(p) for p in equal)
                              for k in firing}
                    for k, snap in snapshots.items():
                        if tuple(snap.get(p) for p in equal) in values:
                            out[(target, k)] = rule.name
        return out

    def _dispatch(self, rule: CompiledRule, key: str, fp: str, facts: Mapping[str, Any],
                  state: AlertState, owed: Owed) -> Notification:
        context = nest({**self.run_facts, **facts})
        context["rule"] = {"name": rule.name, "severity": rule.severity,
                           "description": rule.rule.description, "labels": rule.labels}
        context["alert"] = {
            "state": "resolved" if owed.kind == "resolve" else "firing",
            "since": state.since, "count": state.notifications, "id": fp, "instance": key,
            "duration": owed.at - state.since if state.since else 0.0,
        }
        context["now"] = owed.at

        def render_safe(text: str) -> str:
            try:
                return render(text, context, strict=False)
            except Exception as exc:  # never nothing: the raw text with the error
                return f"{text}\n[template error: {_one_line(exc)}]"

        note = Notification(
            id=f"{fp}-{state.notifications}-{owed.kind}", kind=owed.kind, rule=rule.name,
            instance=key, severity=rule.severity, title=render_safe(rule.title),
            body=render_safe(rule.message), at=owed.at, labels=rule.labels)
        self._events.append((owed.at, owed.kind, rule.name, key, rule.severity, note.title,
                             note.body))
        ctx = ActionContext(
            base_dir=self.base_dir, sender=self.sender,
            render=render_safe, log=self.log.bind(rule=rule.name, instance=key),
            record=self._record, request_stop=self._request_stop,
            background=self._background,
            allow_exec=self.allow_exec, allow_control=self.allow_control,
            facts=facts, dry_run=self.dry_run)
        for action in rule.actions:
            if owed.kind == "resolve" and type(action).__name__ in (
                    "ExecAction", "ControlAction", "StopAction"):
                continue  # recovery notifies and logs; it does not run commands again
            try:
                ACTIONS[type(action)](action, ctx, note)
            except Exception as exc:  # one failing action never stops the others
                self.log.error("action_failed", rule=rule.name, action=type(action).__name__,
                               error=_one_line(exc))
        return note

    def _record(self, kind: str, note: Notification, text: str) -> None:
        with self._lock:  # actions may record from their own threads
            self._events.append((time.time(), kind, note.rule, note.instance, note.severity,
                                 note.title, text))

    def _background(self, work: Callable[[], None], name: str) -> None:
        """Run slow action work (exec) off the tick; the run waits for it before exiting."""
        thread = threading.Thread(target=work, name=name, daemon=True)
        self._workers = [t for t in self._workers if t.is_alive()]
        self._workers.append(thread)
        if name.startswith("control-"):
            self._controlled = True  # the run does not end on this tick
        thread.start()

    def _request_stop(self, code: int | None) -> None:
        self.stop_requested = True
        self.stop_code = code

    def _log_state_changes(self, instances: Mapping[str, Facts]) -> None:
        for key, facts in instances.items():
            state = facts.get("job.state")
            if not isinstance(state, str):
                continue
            before = self._states.get(key)
            if before != state:
                self._states[key] = state
                self.log.info("state_change", instance=key, previous=before or "-",
                              current=state, **_brief(facts))

    # --- the loop -----------------------------------------------------------------------------

    def run(self, *, once: bool = False, max_ticks: int | None = None,
            hard_stop: HardStop | None = None) -> int:
        """Tick until every job is terminal, a `stop` action, a signal, or `once`.

        On the main thread, SIGINT/SIGTERM cut the tick short wherever it is (its commit
        excepted) and the run ends within about 2 s with 128+signal; `hard_stop` (the
        watchdog `rulesmon run` starts) covers an interpreter stuck in C code. See
        rulesmon/signals.py for why the tick stays on the main thread."""
        guard = None
        if threading.current_thread() is threading.main_thread():
            guard = self._guard = Guard(self._on_signal, self._alive,
                                        self._ask_reload if self.reload_from else None)
            guard.install()
        self._hard_stop = hard_stop
        if hard_stop is not None:  # launched workers are known to the watchdog at once
            for probe in self.probes:
                if hasattr(probe, "on_launch"):
                    probe.on_launch = hard_stop.register
        outcome = TickOutcome(self.ticks)
        if self.dry_run and not once and resume.launched_jobs(self.rs.jobs):
            # its workers are never launched, so nothing of theirs would ever change: one
            # tick shows what fires now (they stay PENDING, not terminal: no job-ended rule)
            self.log.info("dry_run_one_tick", reason="launched jobs are not launched in a "
                          "dry run")
            once = True
        try:
            try:
                with self._shielded():  # a launch is never cut in half
                    self.start()
                if guard is not None:
                    guard.armed = True
                deadline = time.monotonic()
                while self.interrupted is None:
                    outcome = self.tick()
                    if outcome.finished or self.stop_requested or once or \
                            self.interrupted is not None or \
                            (max_ticks and self.ticks >= max_ticks):
                        break
                    deadline += self.interval
                    now = time.monotonic()
                    if now > deadline:
                        self.overruns += 1
                        self.log.warning("tick_overrun", tick=self.ticks,
                                         took=round(outcome.duration, 3), every=self.interval)
                        deadline = now
                    deadline = self._sleep_until(deadline)  # a SIGHUP's reload applies here
            except Interrupted:
                pass  # the tick it cut short is not committed: a restart resumes before it
            except (StorageError, sqlite3.Error) as exc:  # a damaged state file: ends as
                # on SIGTERM (an sqlite3 error a store method did not classify: the same)
                self.storage_error = classify(exc, self.store.path)
            if guard is not None:
                guard.armed = False
            return self._finish(outcome)
        finally:
            if guard is not None:
                guard.uninstall()
            self._guard = None

    def _verdict(self) -> int:
        """The exit status of a run that ended by itself: 1 when a job failed, 3 when none
        failed but one ended with an outcome no evidence shows (0 would claim it succeeded),
        else 0."""
        if int(self.run_facts.get("run.failed", 0) or 0):
            return 1
        return 3 if int(self.run_facts.get("run.unknown", 0) or 0) else 0

    def _on_signal(self, signum: int) -> None:
        if self.interrupted is None:
            self.interrupted, self._signal_at = signum, time.monotonic()
        self._wake.set()

    def _ask_reload(self) -> None:
        """SIGHUP: the ruleset is read again between this tick and the next."""
        self._reload_asked = True
        self._wake.set()

    def _sleep_until(self, deadline: float) -> float:
        from .reload import between_ticks

        return between_ticks(self, deadline)

    def _shielded(self) -> AbstractContextManager[None]:
        return self._guard.shielded() if self._guard is not None else nullcontext()

    def _remaining(self, budget: float = SHUTDOWN_BUDGET) -> float:
        """Seconds left of the shutdown budget after a signal."""
        if self._signal_at is None:
            return budget
        return max(0.0, self._signal_at + budget - time.monotonic())

    def _alive(self) -> None:
        """A heartbeat to the watchdog: the shutdown is progressing."""
        if self._hard_stop is not None:
            self._hard_stop.alive()

    def _terminate_launched(self) -> None:
        """Workers rulesmon launched do not outlive an interrupted or stopped run (after a
        signal they get SIGNAL_GRACE between SIGTERM and SIGKILL)."""
        for probe in self.probes:
            terminate = getattr(probe, "terminate", None)
            if terminate is not None:
                self._alive()
                try:
                    if self.interrupted is not None:
                        terminate(grace=SIGNAL_GRACE)
                    else:
                        terminate()
                except Exception as exc:
                    self.log.warning("terminate_failed", probe=probe.name, error=_one_line(exc))

    def _finish(self, outcome: TickOutcome) -> int:
        self._alive()
        broken = self.storage_error is not None
        if (self.interrupted is not None or self.stop_requested or broken) and \
                not self.dry_run:
            self._terminate_launched()
            self._alive()
        if broken:
            code, reason = 2, "state database unusable"
        elif self.interrupted is not None:
            code = 128 + self.interrupted
            reason = f"interrupted by signal {self.interrupted}"
        elif self.stop_requested:
            code = self.stop_code if self.stop_code is not None else self._verdict()
            reason = "stop action"
        elif outcome.finished:
            code = self._verdict()
            reason = "all jobs terminal"
        else:
            code, reason = 0, "one tick" if self.ticks == 1 else "tick limit"
        for worker in self._workers:  # exec actions still running finish and are recorded
            # (after a signal only within the shutdown budget: the rest is not waited for)
            worker.join(timeout=120.0 if self.interrupted is None else self._remaining())
        self._alive()
        with self._lock:
            events, self._events = self._events, []
        summary = str(self.run_facts.get("run.summary", ""))
        try:
            if events:
                self.store.save_tick((), (), events, None, self.ticks, self.overruns)
            self.store.end_run(self.run_id, self.clock(), code, summary, outcome=reason)
            if self.recorder is not None:
                self.store.write(partial(self.recorder.finish, now=self.clock()))
        except StateDamaged as exc:
            self.storage_error = self.storage_error or exc
        except StorageError as exc:  # the file may work again: the next run resumes this one
            self.log.error("run_end_not_saved", error=str(exc))
        self._flush_state_file()
        lost = self.store.unsaved()
        if lost:  # said, so a notification that could not be recorded is never silent
            self.log.error("state_not_saved_at_exit", error=str(self.storage_error or
                                                                self.store.failing),
                           owed=lost)
        self.log.info("run_finished", reason=reason, exit_code=code, summary=summary,
                      overruns=self.overruns)
        if self.rs.summary is not None and not self.dry_run and outcome.finished and \
                self.store.failing is None and not broken:
            try:
                self._send_summary(reason, code)
            except StorageError as exc:
                self.storage_error = exc
        # What is owed goes out before exit when the services answer (after a signal, only
        # within the shutdown budget); the rest stays owed in the outbox for the next run.
        self._alive()
        wait = self._remaining() if self.interrupted is not None else self.drain_timeout
        if self.delivery is not None and not self.delivery.drain(wait):
            self.log.warning("notifications_pending", hint="still owed; they are sent "
                             "by the next run on this state file")
        return code

    def _send_summary(self, reason: str, code: int) -> None:
        assert self.rs.summary is not None
        context = nest(self.run_facts)
        context["now"] = self.clock()
        title_t = self.rs.summary.title or "{{ run.name }}: {{ run.succeeded }}/{{ run.total }} " \
            "succeeded"
        body_t = self.rs.summary.message or "{{ run.summary }}"

        def safe(text: str) -> str:
            try:
                return render(text, context, strict=False)
            except Exception as exc:
                return f"{text}\n[template error: {_one_line(exc)}]"

        now = self.clock()
        note = Notification(id=f"{fingerprint(self.rs.name, 'summary', str(self.run_id))}-"
                            "summary", kind="summary", rule="summary", instance="run",
                            severity="info", title=safe(title_t), body=safe(body_t), at=now)
        rows = [OutboxRow(note.id, t, "summary", "summary", "run", "info", note.title,
                          note.body, now, now, "summary") for t in self.rs.summary.notify]
        self.store.save_tick((), (), [(now, "summary", "summary", "run", "info", note.title,
                                       note.body)], None, self.ticks, self.overruns, rows)


_MISSING = object()
_EPOCH_KEYS = ("epoch", "Epoch")
_RESOURCE_KEYS = ("ResourceName", "resource_name", "resource")


#: (job key, group_by key) -> the `job.attrs.<Name>` fact that matched it last: the next
#: instance of the job is asked for that name before all its facts are searched
_SPELT: dict[tuple[str, str], str] = {}


def group_value(facts: Mapping[str, Any], by: str) -> Any:
    """The value an instance has for a `group_by` key: a DAG node's VARS, a fact, or an
    HTCondor job's custom attribute (`run_uuid` finds `+RunUUID`: case and `_` ignored)."""
    value = facts.get(f"node.vars.{by}", facts.get(by, facts.get(f"job.{by}")))
    if value is None and facts.get("job.source") == "htcondor":
        value = facts.get(f"job.attrs.{by}")
        if value is None:
            spelt_key = (str(facts.get("job.key", "")), by)
            spelt = _SPELT.get(spelt_key)
            if spelt is not None and spelt in facts:
                return facts[spelt]
            want = by.replace("_", "").lower()
            for k, v in facts.items():
                if k.startswith("job.attrs.") and k[10:].replace("_", "").lower() == want:
                    if len(_SPELT) >= 4096:
                        _SPELT.clear()
                    _SPELT[spelt_key] = k
                    return v
    return value


def group_members(instances: Iterable[Mapping[str, Any]],
                  by_for_job: Mapping[str, Sequence[str]], default: Sequence[str] = (),
                  ) -> dict[tuple[str, str, str], list[Mapping[str, Any]]]:
    """Instances by group, `(job key, group_by key, value) -> members`: each instance under
    each of its job's `group_by` keys (`default` for a job without any) that it has a value
    for. What group-scope rules, `rulesmon facts` and the plain lines' RUN_PROGRESS share: the
    DAG itself is no member of its runs, and a list or map value names no group."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for f in instances:
        if "dag.file" in f:
            continue
        job_key = str(f.get("job.key", ""))
        for by in by_for_job.get(job_key) or default:
            value = group_value(f, by)
            if value is not None and not isinstance(value, dict | list):
                groups.setdefault((job_key, by, str(value)), []).append(f)
    return groups


def group_facts(by: str, value: str, members: list[Mapping[str, Any]]) -> Facts:
    """`group.*` of one group (a training run's nodes): progress, epochs, resources."""
    done = failed = cancelled = running = retried = 0
    cpu = 0.0
    mem_peak: int | None = None
    epochs: dict[str, bool] = {}
    resources: dict[str, int] = {}
    resource_cpu: dict[str, float] = {}
    for m in members:
        ok = m.get("job.succeeded") is True
        terminal = bool(m.get("job.terminal"))
        outcome = m.get("job.outcome")
        done += ok
        if terminal and not ok:
            if outcome == "cancelled":
                cancelled += 1
            else:
                failed += 1
        running += m.get("job.state") == "RUNNING"
        retried += (m.get("node.retries") or m.get("job.restarts") or 0) > 0
        used = m.get("job.cpu_time")
        used = float(used) if isinstance(used, int | float) else 0.0
        cpu += used
        mem = m.get("job.mem_used")
        if isinstance(mem, int | float) and (mem_peak is None or mem > mem_peak):
            mem_peak = int(mem)
        epoch = next((m.get(f"node.vars.{k}") for k in _EPOCH_KEYS
                      if m.get(f"node.vars.{k}") is not None), None)
        if epoch is not None:
            epochs[str(epoch)] = epochs.get(str(epoch), True) and ok
        resource = next((m.get(f"node.vars.{k}") for k in _RESOURCE_KEYS
                         if m.get(f"node.vars.{k}") is not None), None)
        if resource is not None:
            resources[str(resource)] = resources.get(str(resource), 0) + 1
            resource_cpu[str(resource)] = resource_cpu.get(str(resource), 0.0) + used
    total = len(members)
    out: Facts = {
        "group.by": by, "group.key": value, "group.total": total,
        "group.done": done, "group.failed": failed, "group.cancelled": cancelled,
        "group.running": running,
        "group.pending": total - done - failed - cancelled - running,
        "group.pct": 100.0 * done / total if total else 0.0,
        "group.all_done": done == total, "group.retried": retried,
        "group.epochs_total": len(epochs),
        "group.epochs_done": sum(1 for ok in epochs.values() if ok),
        "group.cpu_time": cpu, "group.resources": resources,
        "group.resource_cpu": resource_cpu,
    }
    if mem_peak is not None:
        out["group.mem_peak"] = mem_peak
    for name, n in resources.items():
        out[f"group.resources.{name}"] = n
    for name, seconds in resource_cpu.items():
        out[f"group.resource_cpu.{name}"] = seconds
    return out


class _OutboxWriter:
    """Notify actions write here; the rows are saved with the tick's transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def send(self, targets: list[str], note: Notification) -> None:
        rule = self.engine.rules_by_name.get(note.rule)
        wait = (rule.rule.group_wait if rule and rule.rule.group_wait is not None
                else self.engine.rs.defaults.group_wait)
        for target in targets:
            self.engine._outbox.append(OutboxRow(
                note.id, target, note.kind, note.rule, note.instance, note.severity,
                note.title, note.body, note.at, note.at + wait, f"{note.rule}|{note.kind}"))


def _slow(cond: Compiled, facts: Mapping[str, Any], h: History, now: float) -> Any:
    """The full evaluation (missing data, errors) when the fast path raised."""
    try:
        return cond(facts, h, now)
    except EvalError as exc:
        return exc


def _value(c: Compiled | float | None, facts: Mapping[str, Any], h: History,
           now: float) -> Any:
    if c is None or isinstance(c, float):
        return c
    try:
        return c(facts, h, now)
    except EvalError:
        return UNKNOWN


def _brief(facts: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k in ("job.exit_code", "job.signal", "job.diagnosis"):
        if k in facts and facts[k] is not None:
            out[k.split(".", 1)[1]] = facts[k]
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
