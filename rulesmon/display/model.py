"""A tick report turned into what the dashboard shows: counts, the rows worth a line, and
summaries of the rest.

One pass over the instances per report, whatever their number; only the rows that could be
shown are kept (the `rows` most interesting of each section), so drawing a frame costs the same
for 10 jobs and for 5,000. Every fact is optional: a section whose facts no probe provided is
simply empty.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from ..facts import STATES, TERMINAL_STATES
from .feed import Batch, Event
from .fmt import duration, natural_key, num, one_line, pct

T = TypeVar("T")

#: The state shown for an instance whose source gave none (a files-only job).
NO_STATE = "-"
BAD_STATES = frozenset(TERMINAL_STATES) - {"COMPLETED"}
ACTIVE_STATES = frozenset({"RUNNING", "COMPLETING"})
WAITING_STATES = frozenset({"HELD", "SUSPENDED"})
BAD_WORKERS = frozenset({"dead", "zombie", "missing", "killed"})
STATE_ORDER = {s: i for i, s in enumerate(dict.fromkeys(
    ("RUNNING", "COMPLETING", "PENDING", "HELD", "SUSPENDED", *STATES, NO_STATE)))}
#: Seconds during which a failure or an alert keeps a row at the top.
RECENT = 600.0
#: More state changes than this in one report become one summary event.
CHANGE_BURST = 10
CHECKPOINT_WORDS = ("ckpt", "checkpoint")
LOUD = frozenset({"critical", "error", "warning"})
DEFAULT_GROUP_BY = ("run_uuid",)


@dataclass(frozen=True)
class JobRow:
    key: str
    name: str
    state: str
    rank: int
    pct: float | None = None
    done: float | None = None
    total: float | None = None
    unit: str = ""
    rate: float | None = None
    eta: float | None = None
    detail: str = ""
    alert: str = ""
    stalled: bool = False
    confidence: str = ""


@dataclass(frozen=True)
class WorkerRow:
    key: str
    rank: int
    gpu: str
    state: str
    ok: bool
    util: float | None = None
    mem: float | None = None
    rate: float | None = None
    unit: str = ""
    cpu: float | None = None
    rss: float | None = None


@dataclass(frozen=True)
class FileRow:
    key: str
    name: str
    rank: int
    status: str
    count: float | None = None
    size: float | None = None
    growth: float | None = None


@dataclass(frozen=True)
class GroupRow:
    by: str
    key: str
    rank: int
    total: int
    done: int
    failed: int
    running: int
    pending: int
    retried: int = 0
    epochs_done: int = 0
    epochs_total: int = 0
    status: str = ""


@dataclass(frozen=True)
class CheckpointLine:
    name: str
    count: int
    jobs: int
    last_age: float | None
    next_in: float | None
    late: int
    interval: float | None = None


@dataclass(frozen=True)
class DiskLine:
    path: str
    free: float | None
    total: float | None
    free_pct: float | None


@dataclass(frozen=True)
class EventLine:
    at: float
    kind: str
    severity: str
    subject: str
    text: str


@dataclass(frozen=True)
class Overall:
    done: float
    total: float
    unit: str
    rate: float | None
    avg_rate: float | None
    eta: float | None
    jobs: int
    confidence: str = ""

    @property
    def pct(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class Section(Generic[T]):
    """Rows in display order (each knows its rank), how many exist, a one-line summary of
    the whole section and per-state counts of every row (to summarise the hidden ones)."""

    rows: tuple[T, ...] = ()
    total: int = 0
    summary: str = ""
    counts: Mapping[str, int] = field(default_factory=dict)
    note: str = ""  #: appended to the "+N more" line (a mean over every row)


@dataclass(frozen=True)
class View:
    ruleset: str
    tick: int
    now: float
    started: float | None
    every: float | None
    tick_duration: float
    total: int
    counts: tuple[tuple[str, int], ...]
    succeeded: int
    failed: int
    all_terminal: bool
    overall: Overall | None
    problems: tuple[str, ...]
    jobs: Section[JobRow]
    groups: Section[GroupRow]
    workers: Section[WorkerRow]
    files: Section[FileRow]
    checkpoints: tuple[CheckpointLine, ...]
    disks: tuple[DiskLine, ...]
    events: tuple[EventLine, ...]  #: newest first


def empty_view(ruleset: str = "", every: float | None = None, now: float = 0.0) -> View:
    """What is drawn before the first tick has ended."""
    return View(ruleset, 0, now, None, every, 0.0, 0, (), 0, 0, False, None, (), Section(),
                Section(), Section(), Section(), (), (), ())


@dataclass(frozen=True)
class _Shape:
    #: (set name, then the fact names read per instance)
    outputs: tuple[tuple[str, str, str, str, str, str], ...]
    checkpoints: tuple[tuple[str, str, str, str, str, str], ...]
    workers: bool
    worker_util: bool  #: per-worker GPU figures exist (else the job's `gpu.*`)
    group_by: str | None


class _Group:
    __slots__ = ("done", "epochs", "failed", "pending", "retried", "running", "total")

    def __init__(self) -> None:
        self.total = self.done = self.failed = self.running = self.pending = self.retried = 0
        self.epochs: dict[str, bool] = {}

    def add(self, f: Mapping[str, Any], state: str, terminal: bool) -> None:
        self.total += 1
        ok = f.get("job.succeeded") is True
        if ok:
            self.done += 1
        elif terminal:
            self.failed += 1
        elif state in ACTIVE_STATES:
            self.running += 1
        else:
            self.pending += 1
        if (num(f.get("node.retries")) or 0) > 0:
            self.retried += 1
        epoch = _group_value(f, "epoch")
        if epoch is not None:
            self.epochs[epoch] = self.epochs.get(epoch, True) and ok


class ViewBuilder:
    """Keeps what one report alone does not say (state changes, recent alerts, events)."""

    def __init__(self, ruleset: str = "", every: float | None = None,
                 group_by: Mapping[str, Sequence[str]] | None = None, rows: int = 40,
                 events: int = 100) -> None:
        self.ruleset = ruleset
        self.every = every
        self.group_by = dict(group_by or {})
        self.rows = rows
        self._states: dict[str, str] = {}
        self._bad_since: dict[str, float] = {}
        self._alerts: dict[str, tuple[float, str]] = {}
        self._events: deque[EventLine] = deque(maxlen=events)
        self._file_sets: dict[str, set[str]] = {}
        self.view = empty_view(ruleset, every)

    # --- events ---------------------------------------------------------------------------

    def _take_events(self, events: Iterable[Event], logs: Iterable[tuple[float, str, str]]) \
            -> None:
        for at, kind, rule, instance, sev, _title, text in events:
            severity = sev
            if kind == "fire":
                self._alerts[instance] = (at, severity)
                line = f"{rule}: {one_line(text)}" if text else rule
            elif kind == "resolve":
                self._alerts.pop(instance, None)
                line = f"resolved {rule}"
            elif kind == "muted":
                line = f"muted {rule} ({one_line(text)})"
                severity = "debug"
            else:
                line = f"{kind} {rule}: {one_line(text)}"
            self._events.append(EventLine(at, kind, severity, instance, line))
        for at, level, text in logs:
            self._events.append(EventLine(at, "log", level, "", one_line(text)))

    def _state_changes(self, changes: list[tuple[str, str, str, Mapping[str, Any]]],
                       now: float) -> None:
        bad = [c for c in changes if c[2] in BAD_STATES]
        if len(changes) > CHANGE_BURST:
            pairs: dict[str, int] = {}
            for _key, before, after, _f in changes:
                pairs[f"{before}→{after}"] = pairs.get(f"{before}→{after}", 0) + 1
            text = ", ".join(f"{n} {p}" for p, n in sorted(pairs.items(), key=lambda x: -x[1]))
            self._events.append(EventLine(now, "state", "info", "",
                                          f"{len(changes)} state changes: {text}"))
            changes = bad[:CHANGE_BURST]
        for key, before, after, f in changes:
            diag = f.get("job.diagnosis")
            text = f"{before} → {after}"
            if after in BAD_STATES or f.get("job.succeeded") is False:
                code = f.get("job.exit_code")
                if code not in (None, 0):
                    text += f" (exit {code})"
                if isinstance(diag, str) and diag not in ("ok", "unknown"):
                    text += f" {diag}"
            self._events.append(EventLine(now, "state", "error" if after in BAD_STATES
                                          else "info", key, text))

    # --- the pass over instances ----------------------------------------------------------

    def _shape(self, job_key: str, facts: Mapping[str, Any]) -> _Shape:
        """Which sections a job's instances in one state feed, found once per report from
        one of them (instances of a job in the same state carry the same kinds of facts)."""
        seen = self._file_sets.setdefault(job_key, set())
        seen.update(k.split(".", 2)[1] for k in facts
                    if k.startswith("files.") and k.count(".") >= 2)
        names = sorted(seen)
        ckpt = tuple(n for n in names if any(w in n.lower() for w in CHECKPOINT_WORDS)
                     or f"files.{n}.expected_next" in facts)
        by = (self.group_by.get(job_key) or DEFAULT_GROUP_BY)[0]

        def keys(n: str, *parts: str) -> tuple[str, str, str, str, str, str]:
            a, b, c, d, e = (f"files.{n}.{k}" for k in parts)
            return n, a, b, c, d, e

        return _Shape(
            outputs=tuple(keys(n, "count", "growth_rate", "valid", "stalled", "late")
                          for n in names if n not in ckpt),
            checkpoints=tuple(keys(n, "count", "age", "expected_next", "late", "interval")
                              for n in ckpt),
            workers=any(k.startswith(("worker.", "gpu.")) for k in facts),
            worker_util="worker.gpu_util" in facts or "worker.state" in facts,
            group_by=by if job_key in self.group_by or _group_value(facts, by) is not None
            else None)

    def update(self, batch: Batch) -> View:
        self._take_events(batch.events, batch.logs)
        report = batch.report
        if report is None:
            if batch.logs or batch.events:
                self.view = replace(self.view, events=tuple(reversed(self._events)))
            return self.view
        now = report.now
        run = report.run
        instances = report.instances
        limit = self.rows

        counts: dict[str, int] = {}
        jobs: list[tuple[int, float, str]] = []
        workers: list[tuple[int, str]] = []
        worker_counts: dict[str, int] = {}
        gpu_utils: list[float] = []
        files: list[tuple[int, str, str, str]] = []
        file_counts: dict[str, int] = {}
        ckpt: dict[str, list[Any]] = {}
        disks: dict[str, DiskLine] = {}
        groups: dict[tuple[str, str], _Group] = {}
        changes: list[tuple[str, str, str, Mapping[str, Any]]] = []
        o_done = o_total = o_rate = o_avg = 0.0
        o_eta: float | None = None
        o_confidence = ""
        o_jobs = 0
        o_units: set[str] = set()
        states = self._states

        alerts = self._alerts
        bad_since = self._bad_since
        shapes: dict[tuple[str, str], _Shape] = {}
        for key, f in instances.items():
            get = f.get
            state = get("job.state")
            if type(state) is not str:
                state = NO_STATE
            counts[state] = counts.get(state, 0) + 1
            if states.get(key) != state:
                before = states.get(key)
                if before is not None:
                    changes.append((key, before, state, f))
                states[key] = state
                if state in BAD_STATES:
                    bad_since[key] = now
            terminal = get("job.terminal")
            if terminal is None:
                terminal = state in TERMINAL_STATES

            # progress, summed for the overall bar
            p_done = get("progress.done")
            if p_done is not None:
                p_done = num(p_done)
                p_total = num(get("progress.total"))
                if p_done is not None and p_total:
                    o_done += p_done
                    o_total += p_total
                    o_jobs += 1
                    o_units.add(get("progress.unit") or "")
                    if not terminal:
                        o_rate += num(get("progress.rate")) or 0.0
                        o_avg += num(get("progress.avg_rate")) or 0.0
                        eta = num(get("progress.eta"))
                        if eta is not None and (o_eta is None or eta > o_eta):
                            o_eta = eta  # the last job to finish: its ETA and confidence
                            o_confidence = _confidence(get("progress.confidence"))

            # the job row's interest: recent failures, then trouble, then the running ones
            # furthest from done, then waiting, pending, old failures and successes
            tie = 0.0
            if state in BAD_STATES or (terminal and get("job.succeeded") is False):
                alert = alerts.get(key)
                recent = now - bad_since.get(key, -RECENT) < RECENT or (
                    alert is not None and now - alert[0] < RECENT and alert[1] in LOUD)
                rank = 0 if recent else 5
            elif state in ACTIVE_STATES:
                alert = alerts.get(key)
                trouble = get("progress.stalled") is True or \
                    (num(get("progress.slowdown")) or 0.0) > 0.2 or (
                        alert is not None and now - alert[0] < RECENT and alert[1] in LOUD)
                rank = 1 if trouble else 2
                if rank == 2:
                    done_pct = num(get("progress.pct"))
                    tie = done_pct if done_pct is not None else 101.0
            elif state in WAITING_STATES:
                rank = 3
            else:
                rank = 6 if terminal else 4
            jobs.append((rank, tie, key))

            job_key = get("job.key")
            if type(job_key) is not str:
                job_key = key.split("/", 1)[0]
            shape = shapes.get((job_key, state))
            if shape is None:
                shape = shapes[(job_key, state)] = self._shape(job_key, f)

            # workers and GPUs
            if shape.workers:
                w_state = get("worker.state")
                if type(w_state) is str or get("gpu.available") is True:
                    util = num(get("worker.gpu_util")) if shape.worker_util else None
                    if util is None:
                        util = num(get("gpu.util"))
                    if util is not None and not terminal:
                        gpu_utils.append(util)
                    ws = w_state if type(w_state) is str else state.lower()
                    worker_counts[ws] = worker_counts.get(ws, 0) + 1
                    workers.append((_worker_rank(f, ws, util, terminal, rank), key))

            # files, checkpoints, disk
            for name, k_count, k_growth, k_valid, k_stalled, k_late in shape.outputs:
                n_files = get(k_count)
                if n_files is None:
                    continue
                if get(k_valid) is False:
                    status, f_rank = "invalid", 0
                elif get(k_stalled) is True:
                    status, f_rank = "stalled", 1
                elif get(k_late) is True:
                    status, f_rank = "late", 2
                elif not n_files:
                    status, f_rank = "none yet", 3
                elif (num(get(k_growth)) or 0.0) > 0:
                    status, f_rank = "growing", 4
                else:
                    status, f_rank = "idle", 5
                file_counts[status] = file_counts.get(status, 0) + 1
                files.append((f_rank, key, name, status))
            for name, k_count, k_age, k_next, k_late, k_interval in shape.checkpoints:
                n_files = num(get(k_count))
                if n_files is None:
                    continue
                acc = ckpt.get(name)
                if acc is None:
                    acc = ckpt[name] = [0, 0, None, None, 0, None]
                acc[0] += int(n_files)
                acc[1] += 1
                age = num(get(k_age))
                if age is not None and n_files and (acc[2] is None or age < acc[2]):
                    acc[2] = age
                if not terminal:
                    nxt = num(get(k_next))
                    if nxt is not None and (acc[3] is None or nxt < acc[3]):
                        acc[3] = nxt
                    acc[4] += get(k_late) is True
                interval = get(k_interval)
                if interval is not None:
                    acc[5] = num(interval)
            d_path = get("disk.path")
            if d_path is not None and d_path not in disks and type(d_path) is str:
                disks[d_path] = DiskLine(d_path, num(get("disk.free")),
                                         num(get("disk.total")), num(get("disk.free_pct")))

            # training runs (DAG nodes grouped by a VARS key)
            if shape.group_by is not None:
                value = _group_value(f, shape.group_by)
                if value is not None:
                    g = groups.get((shape.group_by, value))
                    if g is None:
                        g = groups[(shape.group_by, value)] = _Group()
                    g.add(f, state, terminal)

        gone = states.keys() - instances.keys()
        for key in gone:
            del states[key]
            self._bad_since.pop(key, None)
            self._alerts.pop(key, None)
        if changes:
            self._state_changes(changes, now)

        job_rows = [self._job_row(k, instances[k], r, now)
                    for r, _t, k in _best(jobs, limit)]
        worker_rows = [self._worker_row(k, instances[k], r) for r, k in _best(workers, limit)]
        file_rows = [_file_row(k, n, r, s, instances[k]) for r, k, n, s in _best(files, limit)]
        self.view = View(
            ruleset=str(run.get("run.name") or self.ruleset), tick=report.tick, now=now,
            started=num(run.get("run.started")), every=self.every,
            tick_duration=report.duration, total=len(instances),
            counts=tuple(sorted(counts.items(), key=_state_order)),
            succeeded=int(num(run.get("run.succeeded")) or 0),
            failed=int(num(run.get("run.failed")) or 0),
            all_terminal=run.get("run.all_terminal") is True,
            overall=Overall(o_done, o_total, o_units.pop() if len(o_units) == 1 else "",
                            o_rate or None, o_avg or None, o_eta, o_jobs, o_confidence)
            if o_jobs else None,
            problems=_problems(run),
            jobs=_section(job_rows, len(jobs), counts, _jobs_summary(counts, len(jobs))),
            groups=_groups(groups, limit),
            workers=_section(worker_rows, len(workers), worker_counts,
                             _workers_summary(worker_counts, gpu_utils),
                             _gpu_note(gpu_utils)),
            files=_section(file_rows, len(files), file_counts, _files_summary(file_counts)),
            checkpoints=tuple(CheckpointLine(n, a[0], a[1], a[2], a[3], a[4], a[5])
                              for n, a in sorted(ckpt.items())),
            disks=tuple(sorted(disks.values(), key=lambda d: (d.free_pct if d.free_pct
                                                              is not None else 101.0))[:4]),
            events=tuple(reversed(self._events)),
        )
        return self.view

    def _job_row(self, key: str, f: Mapping[str, Any], rank: int, now: float) -> JobRow:
        state = f.get("job.state")
        state = state if isinstance(state, str) else NO_STATE
        terminal = bool(f.get("job.terminal", state in TERMINAL_STATES))
        name = f.get("job.name")
        name = name if isinstance(name, str) and name not in (key, f.get("job.key")) else ""
        done = num(f.get("progress.done"))
        total = num(f.get("progress.total"))
        p_pct = num(f.get("progress.pct"))
        if p_pct is None and done is not None and total:
            p_pct = 100.0 * done / total
        unit = f.get("progress.unit")
        stalled = f.get("progress.stalled") is True
        alert = self._alerts.get(key)
        severity = alert[1] if alert is not None and now - alert[0] < RECENT else ""
        return JobRow(key, name, state, rank, p_pct, done, total,
                      unit if isinstance(unit, str) else "", num(f.get("progress.rate")),
                      num(f.get("progress.eta")) if not terminal else None,
                      _detail(f, state, terminal, stalled), severity, stalled,
                      _confidence(f.get("progress.confidence")))

    def _worker_row(self, key: str, f: Mapping[str, Any], rank: int) -> WorkerRow:
        state = f.get("job.state")
        w_state = f.get("worker.state")
        ws = w_state if isinstance(w_state, str) else str(state or NO_STATE).lower()
        gpu_index = f.get("worker.gpu")
        n_gpu = num(f.get("gpu.count"))
        if gpu_index is not None and not isinstance(gpu_index, bool):
            gpu = f"GPU {gpu_index}"
        elif n_gpu:
            gpu = f"{n_gpu:.0f} GPU" + ("s" if n_gpu > 1 else "")
        else:
            gpu = "no GPU" if f.get("gpu.available") is False else "-"
        mem = num(f.get("worker.gpu_mem"))
        if mem is None:
            mem = num(f.get("gpu.mem_used"))
        cpu = num(f.get("worker.cpu_pct"))
        if cpu is None:
            cpu = num(f.get("job.cpu_pct"))
        rss = num(f.get("worker.rss"))
        if rss is None:
            rss = num(f.get("job.rss"))
        unit = f.get("progress.unit")
        return WorkerRow(key, rank, gpu, ws, rank != 0, _util(f), mem,
                         num(f.get("progress.rate")), unit if isinstance(unit, str) else "",
                         cpu, rss)


def _util(f: Mapping[str, Any]) -> float | None:
    util = num(f.get("worker.gpu_util"))
    return num(f.get("gpu.util")) if util is None else util


def _worker_rank(f: Mapping[str, Any], ws: str, util: float | None, terminal: bool,
                 job_rank: int) -> int:
    code = f.get("worker.exit_code")
    if ws in BAD_WORKERS or (ws == "exited" and code not in (None, 0)) or job_rank in (0, 5):
        return 0
    if terminal:
        return 3
    return 1 if (util is not None and util < 20) or job_rank == 1 else 2


def _file_row(key: str, name: str, rank: int, status: str, f: Mapping[str, Any]) -> FileRow:
    p = f"files.{name}."
    return FileRow(key, name, rank, status, num(f.get(p + "count")), num(f.get(p + "size")),
                   num(f.get(p + "growth_rate")))


def _best(items: list[Any], limit: int) -> list[Any]:
    """The `limit` smallest (most interesting) keys; all of them when they fit."""
    return items if len(items) <= limit else heapq.nsmallest(limit, items)


def _state_order(kv: tuple[str, int]) -> tuple[int, str]:
    return STATE_ORDER.get(kv[0], 99), kv[0]


def _confidence(value: Any) -> str:
    return value if value in ("high", "medium", "low") else ""


def _detail(f: Mapping[str, Any], state: str, terminal: bool, stalled: bool) -> str:
    """What a row says when there is no progress bar to read, or what matters besides it."""
    if terminal:
        parts = []
        code = f.get("job.exit_code")
        if code not in (None, 0):
            parts.append(f"exit {code}")
        diag = f.get("job.diagnosis")
        if isinstance(diag, str) and diag not in ("ok", "unknown"):
            parts.append(diag)
        hold = f.get("job.hold_reason")
        if isinstance(hold, str) and hold:
            parts.append(one_line(hold, 60))
        elapsed = num(f.get("job.elapsed"))
        if elapsed is not None:
            parts.append(f"ran {duration(elapsed)}")
        return " · ".join(parts)
    if state in ("PENDING", "HELD", "SUSPENDED"):
        reason = f.get("job.hold_reason") or f.get("job.reason")
        parts = [one_line(reason, 60)] if isinstance(reason, str) and reason and \
            reason != "None" else []
        wait = num(f.get("job.wait"))
        if wait:
            parts.append(f"waiting {duration(wait)}")
        return " · ".join(parts)
    parts = []
    if stalled:
        age = num(f.get("progress.age"))
        parts.append(f"stalled {duration(age)}" if age is not None else "stalled")
    loss = num(f.get("log.loss"))
    if loss is not None:
        parts.append(f"loss {loss:.4g}")
    epoch = num(f.get("log.epoch"))
    if epoch is not None:
        epochs = num(f.get("log.epochs"))
        parts.append(f"epoch {epoch:.0f}" + (f"/{epochs:.0f}" if epochs else ""))
    errors = num(f.get("log.error_count"))
    if errors:
        parts.append(f"{errors:.0f} errors")
    elapsed = num(f.get("job.elapsed"))
    limit = num(f.get("job.time_limit"))
    if elapsed is not None and limit:
        parts.append(f"{duration(elapsed)}/{duration(limit)}")
    elif elapsed is not None and f.get("progress.pct") is None:
        parts.append(f"running {duration(elapsed)}")
    node = f.get("job.node_list") or f.get("job.remote_host")
    if isinstance(node, str) and node:
        parts.append(node)
    return " · ".join(parts)


def _group_value(f: Mapping[str, Any], by: str) -> str | None:
    value = f.get(f"node.vars.{by}")
    if value is None:
        vars_ = f.get("node.vars")
        if isinstance(vars_, Mapping):
            value = vars_.get(by)
    if value is None:
        value = f.get(f"job.{by}", f.get(by))
    if value is None or isinstance(value, Mapping | list):
        return None
    return str(value)


def _section(rows: list[T], total: int, counts: Mapping[str, int],
             summary: str, note: str = "") -> Section[T]:
    if total <= len(rows):  # everything fits: the natural order, which does not jump around
        rows.sort(key=lambda r: natural_key(getattr(r, "key", "")))
    else:
        rows.sort(key=lambda r: (getattr(r, "rank", 0), natural_key(getattr(r, "key", ""))))
    return Section(tuple(rows), total, summary, dict(counts), note)


def _groups(groups: Mapping[tuple[str, str], _Group], limit: int) -> Section[GroupRow]:
    rows = []
    counts = {"failed": 0, "running": 0, "pending": 0, "done": 0}
    for (by, value), g in groups.items():
        if g.failed:
            rank, what = 0, "failed"
        elif g.running:
            rank, what = 1, "running"
        elif g.done < g.total:
            rank, what = 2, "pending"
        else:
            rank, what = 3, "done"
        counts[what] += 1
        rows.append(GroupRow(by, value, rank, g.total, g.done, g.failed, g.running, g.pending,
                             g.retried, sum(1 for ok in g.epochs.values() if ok),
                             len(g.epochs), what))
    if len(rows) > limit:
        rows = heapq.nsmallest(limit, rows, key=lambda r: (r.rank, natural_key(r.key)))
        rows.sort(key=lambda r: (r.rank, natural_key(r.key)))
    else:
        rows.sort(key=lambda r: natural_key(r.key))
    total = len(groups)
    summary = ""
    if total:
        summary = f"{total:,} training run{'s' if total != 1 else ''}: " + ", ".join(
            f"{n:,} {w}" for w, n in counts.items() if n)
    return Section(tuple(rows), total, summary, {k: v for k, v in counts.items() if v})


def _jobs_summary(counts: Mapping[str, int], total: int) -> str:
    if not total:
        return ""
    parts = sorted(counts.items(), key=lambda kv: (STATE_ORDER.get(kv[0], 99), kv[0]))
    return f"{total:,} job{'s' if total != 1 else ''}: " + ", ".join(
        f"{n:,} {s}" for s, n in parts)


def _workers_summary(counts: Mapping[str, int], utils: list[float]) -> str:
    total = sum(counts.values())
    if not total:
        return ""
    text = f"{total:,} worker{'s' if total != 1 else ''}: " + ", ".join(
        f"{n:,} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    note = _gpu_note(utils)
    return f"{text} · {note}" if note else text


def _gpu_note(utils: list[float]) -> str:
    if not utils:
        return ""
    idle = sum(1 for u in utils if u < 20)
    text = f"mean GPU {pct(sum(utils) / len(utils))}"
    return f"{text} · {idle:,} under 20%" if idle else text


def _files_summary(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return ""
    return f"{total:,} output set{'s' if total != 1 else ''}: " + ", ".join(
        f"{n:,} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _problems(run: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    for key, value in run.items():
        if value is False and key.startswith("probe.") and key.endswith(".ok"):
            name = key[6:-3]
            error = one_line(run.get(f"probe.{name}.error", ""), 120)
            n = run.get(f"probe.{name}.failures")
            out.append(f"probe {name} failing ({n}×): {error}" if n else
                       f"probe {name} failing: {error}")
    return tuple(sorted(out))


def hidden_counts(section: Section[Any], shown: Sequence[Any], attr: str) -> dict[str, int]:
    """Per-state counts of the rows a frame could not show."""
    out = dict(section.counts)
    for row in shown:
        value = getattr(row, attr)
        if value in out:
            out[value] -= 1
            if out[value] <= 0:
                del out[value]
    return out
