"""Plain timestamped lines for `rulesmon run` without a terminal (a batch job, `nohup`, a pipe).

In the spirit of the SLURM evaluation monitor's log: a header line `[YYYY-MM-DD HH:MM:SS] KIND:
subject`, then indented `Key: value` details, for

- `STATUS_CHECK`  the first tick, whenever the counts by state change, and at least every
                  `heartbeat` seconds: counts by state and failing probes (query failures);
- `STATE_CHANGE`  a job instance changed state (previous, current, id; how a job ended);
- `COMPUTE_METRICS` a job ended: wall time against its limit (flagged `**EXCEEDED**` on a
                  timeout), memory used against requested, CPU efficiency; when SLURM's
                  accounting has not caught up yet (`job.accounted` is "pending"), it
                  waits for it, and otherwise `metrics_wait` ticks for figures before
                  printing what it has;
- `RESOURCE_STATUS` every `resource_every`-th tick, GPU (and CPU/memory) figures of running
                  jobs; jobs without such facts are skipped silently; past `max_resource`
                  jobs, one summary line;
- `RUN_PROGRESS`  per training run (instances sharing a value of their job's `group_by` key,
                  `run_uuid` for a job without one: DAG nodes by VARS, HTCondor jobs by
                  `+RunUUID`; the groups group-scope rules see), on the first tick,
                  when its counts change and with each heartbeat STATUS_CHECK: done/total,
                  running, failed, epochs, retries, resources; past `max_resource` runs, one
                  summary line;
- `ALERT` / `RESOLVED` / `ACTION` notifications and what actions did;
- `ALL_COMPLETE`  every job has ended: counts by state and total time (or `STOPPED` when the
                  run ended before that).

The lines go to stdout, the structured log stays on stderr. The engine thread only hands the
report over; the lines are made and written on their own thread, so a slow pipe never delays a
tick. A reader that falls behind collapses intermediate states (A → C instead of A → B → C).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TextIO

from ..config.units import format_binary_size
from ..engine import group_facts, group_members
from ..facts import TERMINAL_STATES
from .feed import Batch, Feed
from .fmt import clock, duration, natural_key, num, one_line, pct, size
from .model import DEFAULT_GROUP_BY

#: States listed in every STATUS_CHECK result, as the SLURM document does.
ALWAYS = ("PENDING", "RUNNING", "COMPLETED")
ALERT_LINES = 8
METRIC_FACTS = ("job.cpu_eff", "job.mem_eff", "job.time_eff", "job.mem_used", "job.cpu_time")


def _subject(key: str, f: Mapping[str, Any]) -> str:
    name = f.get("job.name")
    if isinstance(name, str) and name and name not in (key, f.get("job.key")) and \
            not key.endswith(f"/{name}"):
        return f"{key} ({name})"
    return key


def _seff_size(value: Any) -> str:
    """A size as seff prints it (1024-based, two decimals; seff says `MB` for MiB):
    `292.45 MiB`, `2.98 GiB`."""
    v = num(value)
    return "?" if v is None else format_binary_size(v)


def _counts(counts: Mapping[str, int]) -> str:
    shown = list(ALWAYS) + sorted(s for s, n in counts.items() if n and s not in ALWAYS)
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in shown)


def _run_lines(stamp: str, key: str, g: Mapping[str, Any]) -> list[str]:
    total, done = int(g["group.total"]), int(g["group.done"])
    lines = [f"{stamp} RUN_PROGRESS: {key}",
             f"  Progress: {done}/{total} done ({pct(g['group.pct'])}) - "
             f"{g['group.running']} RUNNING, {g['group.pending']} PENDING, "
             f"{g['group.failed']} FAILED, {g['group.cancelled']} CANCELLED"]
    extra = []
    if g["group.epochs_total"]:
        extra.append(f"Epochs: {g['group.epochs_done']}/{g['group.epochs_total']} complete")
    if g["group.retried"]:
        extra.append(f"Retried: {g['group.retried']}")
    if extra:
        lines.append("  " + " | ".join(extra))
    usage = []
    resources = g.get("group.resources")
    if isinstance(resources, Mapping) and resources:
        usage.append("Resources: " + ", ".join(f"{name} {n}" for name, n in
                                               sorted(resources.items())))
    cpu = num(g.get("group.cpu_time"))
    if cpu:
        usage.append(f"CPU time: {duration(cpu)}")
    mem = num(g.get("group.mem_peak"))
    if mem is not None:
        usage.append(f"Peak memory: {size(mem)}")
    if usage:
        lines.append("  " + " | ".join(usage))
    return lines


class PlainLines:
    """An engine observer (`feed`) and the thread that turns reports into lines."""

    def __init__(self, out: TextIO, *, resource_every: int = 5, heartbeat: float = 60.0,
                 max_resource: int = 20, metrics_wait: int = 2,
                 group_by: Mapping[str, Sequence[str]] | None = None) -> None:
        self.out = out
        self.feed = Feed()
        self.resource_every = max(1, resource_every)
        self.heartbeat = heartbeat
        self.max_resource = max_resource
        self.metrics_wait = metrics_wait
        #: each job's `group_by:` keys; DEFAULT_GROUP_BY for a job without any
        self.group_by = dict(group_by or {})
        self._runs: dict[str, tuple[int, ...]] = {}
        self.code: int | None = None
        self._states: dict[str, str] = {}
        self._pending_metrics: dict[str, int] = {}
        self._last_counts: tuple[tuple[str, int], ...] | None = None
        self._last_check = -1e18
        self._complete = False
        self._last: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broken = False
        self._write_lock = threading.Lock()

    @property
    def observers(self) -> list[Callable[[Any], None]]:
        return [self.feed]

    # --- lines ----------------------------------------------------------------------------

    def lines(self, batch: Batch) -> list[str]:
        """The lines one batch of reports gives (stateful: it remembers previous states)."""
        report = batch.report
        out: list[str] = []
        if report is None:
            out += self._events(batch)
            return out
        self._last = report
        now = report.now
        stamp = f"[{clock(now, with_date=True)}]"
        instances = report.instances
        run = report.run

        counts: dict[str, int] = {}
        changes: list[tuple[str, str, str]] = []
        for key, f in instances.items():
            state = f.get("job.state")
            if not isinstance(state, str):
                continue
            counts[state] = counts.get(state, 0) + 1
            before = self._states.get(key)
            if before != state:
                self._states[key] = state
                if before is not None:
                    changes.append((key, before, state))

        frozen = tuple(sorted(counts.items()))
        beat = now - self._last_check >= self.heartbeat
        if frozen != self._last_counts or beat:
            self._last_counts = frozen
            self._last_check = now
            out += self._status_check(stamp, report.tick, counts, run)
        out += self._run_progress(stamp, instances, beat)

        for key, before, state in changes:
            f = instances[key]
            out += self._state_change(stamp, key, before, state, f)
            if state in TERMINAL_STATES or f.get("job.terminal") is True:
                self._pending_metrics[key] = report.tick + (
                    self.metrics_wait if f.get("job.source") == "slurm" else 0)
        for key, deadline in list(self._pending_metrics.items()):
            ended = instances.get(key)
            if ended is None:
                del self._pending_metrics[key]
                continue
            if ended.get("job.accounted") == "pending":
                continue  # sacct has not answered yet: the figures are on their way
            if any(ended.get(k) is not None for k in METRIC_FACTS) or report.tick >= deadline:
                del self._pending_metrics[key]
                out += self._metrics(stamp, key, ended)

        if report.tick % self.resource_every == 0:
            out += self._resources(stamp, instances)
        out += self._events(batch)
        if run.get("run.all_terminal") is True and not self._complete:
            self._complete = True
            out += self._all_complete(stamp, counts, run)
        return out

    def _status_check(self, stamp: str, tick: int, counts: Mapping[str, int],
                      run: Mapping[str, Any]) -> list[str]:
        probes = sorted(k[6:-3] for k in run if k.startswith("probe.") and k.endswith(".ok"))
        head = f"{stamp} STATUS_CHECK: tick {tick}"
        if probes:
            head += f", polled {', '.join(probes)}"
        total = sum(counts.values())
        lines = [head, f"  Result: {total} job{'s' if total != 1 else ''} found - "
                 f"{_counts(counts)}"]
        watched = run.get("run.watched")
        if isinstance(watched, int) and watched:
            lines[-1] += f"; {watched} watched without a source (logs and files only)"
        for name in probes:
            if run.get(f"probe.{name}.ok") is False:
                n = run.get(f"probe.{name}.failures")
                lines.append(f"  Query failed: {name}" + (f" ({n} in a row)" if n else "") +
                             f": {one_line(run.get(f'probe.{name}.error', ''))}")
        return lines

    def _state_change(self, stamp: str, key: str, before: str, state: str,
                      f: Mapping[str, Any]) -> list[str]:
        lines = [f"{stamp} STATE_CHANGE: {_subject(key, f)}", f"  Previous: {before}",
                 f"  Current: {state}"]
        if f.get("job.id") is not None:
            lines.append(f"  Job ID: {f['job.id']}")
        if state in TERMINAL_STATES or f.get("job.terminal") is True:
            end = num(f.get("job.end_time"))
            if end is not None:
                lines.append(f"  {'Completed' if state == 'COMPLETED' else 'Ended'}: "
                             f"{clock(end, with_date=True)}")
            elapsed = num(f.get("job.elapsed"))
            if elapsed is not None:
                lines.append(f"  Elapsed: {duration(elapsed)}")
            code = f.get("job.exit_code")
            diag = f.get("job.diagnosis")
            if code not in (None, 0) or (isinstance(diag, str) and diag not in ("ok",)):
                text = f"  Exit code: {code if code is not None else '?'}"
                if isinstance(diag, str) and diag:
                    text += f" · diagnosis {diag}"
                    detail = f.get("job.diagnosis_detail")
                    if isinstance(detail, str) and detail:
                        text += f": {one_line(detail, 160)}"
                lines.append(text)
            log = f.get("job.stdout") or f.get("log.path")
            if isinstance(log, str) and log:
                lines.append(f"  Result log: {log}")
        elif state == "PENDING":
            reason = f.get("job.reason")
            if isinstance(reason, str) and reason and reason != "None":
                lines.append(f"  Reason: {reason}")
        elif state == "HELD":
            reason = f.get("job.hold_reason")
            if isinstance(reason, str) and reason:
                lines.append(f"  Hold reason: {one_line(reason, 160)}")
        return lines

    def _metrics(self, stamp: str, key: str, f: Mapping[str, Any]) -> list[str]:
        lines = [f"{stamp} COMPUTE_METRICS: {_subject(key, f)}"]
        if f.get("job.id") is not None:
            lines.append(f"  Job ID: {f['job.id']}")
        elapsed = num(f.get("job.elapsed"))
        limit = num(f.get("job.time_limit"))
        exceeded = f.get("job.exceeded") is True or f.get("job.state") == "TIMEOUT"
        if elapsed is not None:
            text = f"  Wall time: {duration(elapsed)}"
            if limit:
                eff = num(f.get("job.time_eff"))
                eff = 100.0 * elapsed / limit if eff is None else eff
                text += f" / {duration(limit)} " + ("(**EXCEEDED**)" if exceeded
                                                    else f"({pct(eff)})")
            lines.append(text)
        used = num(f.get("job.mem_used"))
        if used is not None:
            req = num(f.get("job.mem_req"))
            eff = num(f.get("job.mem_eff"))
            # seff is the reference for SLURM's figures: its 1024-based units (MiB, GiB)
            mem = _seff_size if f.get("job.source") == "slurm" else size
            text = f"  Memory: {mem(used)}"
            if req:
                text += f" / {mem(req)} ({pct(eff if eff is not None else 100 * used / req)})"
            lines.append(text)
        cpu_eff = num(f.get("job.cpu_eff"))
        if cpu_eff is not None:
            lines.append(f"  CPU Efficiency: {pct(cpu_eff)}")
        cpu = num(f.get("job.cpu_time"))
        if cpu is not None:
            user, system = num(f.get("job.cpu_user")), num(f.get("job.cpu_sys"))
            text = f"  CPU time: {duration(cpu)}"
            if user is not None and system is not None:
                text += f" (user {duration(user)}, system {duration(system)})"
            lines.append(text)
        if exceeded:
            lines.append("  WARNING: time limit exceeded - consider raising it when "
                         "resubmitting")
        if len(lines) == 1 + (f.get("job.id") is not None):
            lines.append("  No accounting figures reported")
        return lines

    def _resources(self, stamp: str, instances: Mapping[str, Mapping[str, Any]]) -> list[str]:
        rows: list[tuple[float, str, list[str]]] = []
        utils: list[float] = []
        for key, f in instances.items():
            if f.get("job.state") != "RUNNING":
                continue
            parts = []
            util = num(f.get("worker.gpu_util"))
            util = num(f.get("gpu.util")) if util is None else util
            if util is not None and f.get("gpu.available") is not False:
                utils.append(util)
                mem = num(f.get("worker.gpu_mem"))
                mem = num(f.get("gpu.mem_used")) if mem is None else mem
                total = num(f.get("gpu.mem_total"))
                text = f"GPU Utilization: {pct(util)}"
                if mem is not None:
                    text += f" | GPU Memory: {size(mem)}" + (f"/{size(total)}" if total else "")
                parts.append(text)
            cpu = num(f.get("worker.cpu_pct"))
            cpu = num(f.get("job.cpu_pct")) if cpu is None else cpu
            rss = num(f.get("worker.rss"))
            rss = num(f.get("job.rss")) if rss is None else rss
            if cpu is not None or rss is not None:
                parts.append(" | ".join(p for p in (
                    f"CPU: {pct(cpu)}" if cpu is not None else "",
                    f"Memory: {size(rss)}" if rss is not None else "") if p))
            if parts:
                rows.append((util if util is not None else 101.0, key,
                             [f"{stamp} RESOURCE_STATUS: {_subject(key, f)}",
                              *(f"  {p}" for p in parts)]))
        if not rows:
            return []
        capped = len(rows) > self.max_resource  # (a list is empty while it sorts)
        rows.sort(key=lambda r: (r[0] if capped else 0.0, r[1]))
        out = [line for _u, _k, lines in rows[: self.max_resource] for line in lines]
        if len(rows) > self.max_resource:
            rest = len(rows) - self.max_resource
            text = f"{stamp} RESOURCE_STATUS: +{rest} more running jobs"
            if utils:
                text += f"; mean GPU utilization {pct(sum(utils) / len(utils))}"
            out.append(text)
        return out

    def _run_progress(self, stamp: str, instances: Mapping[str, Mapping[str, Any]],
                      beat: bool) -> list[str]:
        """RUN_PROGRESS for the training runs whose counts changed (all of them on a
        heartbeat), as the DAG monitor's per-run view, one block per run."""
        members = group_members(instances.values(), self.group_by, DEFAULT_GROUP_BY)
        if not members:
            return []
        shown: list[tuple[str, Mapping[str, Any]]] = []
        totals = {"done": 0, "failed": 0, "running": 0, "pending": 0}
        for (job, by, value), group in sorted(members.items(),
                                              key=lambda kv: natural_key("/".join(kv[0]))):
            g = group_facts(by, value, group)
            key = f"{job}/{by}={value}"
            sig = tuple(int(g[f"group.{k}"]) for k in ("total", "done", "failed", "cancelled",
                                                       "running", "retried", "epochs_done"))
            what = "failed" if g["group.failed"] else "done" if g["group.all_done"] else \
                "running" if g["group.running"] else "pending"
            totals[what] += 1
            if self._runs.get(key) != sig or beat:
                self._runs[key] = sig
                shown.append((key, g))
        out: list[str] = []
        for run_key, facts in shown[: self.max_resource]:
            out += _run_lines(stamp, run_key, facts)
        if len(shown) > self.max_resource:
            out.append(f"{stamp} RUN_PROGRESS: +{len(shown) - self.max_resource} more runs "
                       f"changed; all {len(members)} runs: " +
                       ", ".join(f"{n} {w}" for w, n in totals.items() if n))
        return out

    def _events(self, batch: Batch) -> list[str]:
        out = []
        for at, kind, rule, instance, severity, _title, text in batch.events:
            stamp = f"[{clock(at, with_date=True)}]"
            if kind == "fire":
                out.append(f"{stamp} ALERT: {rule} {instance} ({severity})")
                body = [line for line in str(text).splitlines() if line.strip()]
                out += [f"  {one_line(line, 300)}" for line in body[:ALERT_LINES]]
                if len(body) > ALERT_LINES:
                    out.append(f"  ... {len(body) - ALERT_LINES} more lines")
            elif kind == "resolve":
                out.append(f"{stamp} RESOLVED: {rule} {instance}")
            elif kind in ("muted", "summary"):
                continue
            else:
                out.append(f"{stamp} ACTION: {kind} {rule} {instance}: {one_line(text, 300)}")
        return out

    def _all_complete(self, stamp: str, counts: Mapping[str, int],
                      run: Mapping[str, Any]) -> list[str]:
        total = sum(counts.values())
        by_state = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda x: -x[1]))
        lines = [f"{stamp} ALL_COMPLETE: Monitoring finished",
                 f"  Summary: {total} job{'s' if total != 1 else ''} - {by_state}",
                 f"  Succeeded: {int(num(run.get('run.succeeded')) or 0)}, "
                 f"failed: {int(num(run.get('run.failed')) or 0)}"
                 + (f", outcome unknown: {unknown}"
                    if (unknown := int(num(run.get("run.unknown")) or 0)) else "")]
        elapsed = num(run.get("run.elapsed"))
        if elapsed is not None:
            lines.append(f"  Total time: {duration(elapsed)}")
        if run.get("probe.slurm.accounting_disabled") is True:
            lines.append("  Note: SLURM accounting is disabled on this cluster (sacct: "
                         f"{one_line(run.get('probe.slurm.sacct_error', ''), 120)}): "
                         "no exit codes, CPU or memory figures for ended SLURM jobs")
        return lines

    # --- the writer thread ----------------------------------------------------------------

    def _write(self, lines: list[str]) -> None:
        if not lines or self._broken:
            return
        with self._write_lock:
            try:
                self.out.write("\n".join(lines) + "\n")
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._broken = True  # the reader went away: stop writing, keep watching

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.feed.ready.wait(0.5):
                self._write(self.lines(self.feed.take()))

    def __enter__(self) -> PlainLines:
        self._thread = threading.Thread(target=self._loop, name="plain-lines", daemon=True)
        self._thread.start()
        return self

    def finished(self, code: int) -> None:
        self.code = code

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        batch = self.feed.take()
        lines = self.lines(batch) if batch.report is not None or batch.events else []
        if not self._complete and self._last is not None and self.code is not None:
            stamp = f"[{clock(self._last.now, with_date=True)}]"
            counts: dict[str, int] = {}
            for state in self._states.values():
                counts[state] = counts.get(state, 0) + 1
            lines += [f"{stamp} STOPPED: monitoring ended before every job finished "
                      f"(exit code {self.code})", f"  Result: {_counts(counts)}"]
        self._write(lines)
