"""The read side of history: jobs filtered like the views, one job in full, summary statistics.

Every function returns plain dicts in the stable JSON shapes documented in docs/history.md,
so `rulesmon history --format json`, the Python API and scripts all see the same thing.
Aggregates are computed by SQLite over the covering index `jobs_stats` in one scan; Python
only adds up the few hundred groups it returns.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import jsonout
from . import liveness
from .rows import FINAL, STATUSES
from .schema import connect

SAMPLES_SHOWN = 1000
ALERTS_SHOWN = 200
TAIL_LINES = 20
_GLOB = set("*?[")


class HistoryError(ValueError):
    """A one-line problem for the user: no database, no such job, an ambiguous id, a filter
    value that matches nothing by construction."""


#: Values of `jobs.source` that rulesmon writes.
SOURCES = ("slurm", "htcondor", "dagman", "local", "track", "command", "celery")


@dataclass(frozen=True)
class Filters:
    """Which jobs a view or query covers. `status` and `source` accept comma lists.
    `run_id` (one run's jobs) and `tracked` (work recorded outside any run) serve the
    dashboard; the views have no option for them, so `as_json` leaves them out."""

    status: str | None = None
    job: str | None = None
    tool: str | None = None
    source: str | None = None
    since: float | None = None
    ruleset: str | None = None
    run_id: int | None = None
    tracked: bool = False

    def where(self, *, totals: bool = False) -> tuple[str, list[Any]]:
        """A WHERE clause over `jobs`, or over `job_totals` (status, source, tool only)."""
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("status", self.status), ("source", self.source)):
            if value:
                names = [v.strip() for v in value.split(",") if v.strip()]
                clauses.append(f"{column} IN ({','.join('?' * len(names))})")
                args += names
        if self.tool:
            if _GLOB & set(self.tool):
                clauses.append("tool GLOB ?")
            else:
                clauses.append("tool = ?")
            args.append(self.tool)
        if totals:
            return (" WHERE " + " AND ".join(clauses)) if clauses else "", args
        if self.ruleset:
            clauses.append("ruleset = ?")
            args.append(self.ruleset)
        if self.run_id is not None:
            clauses.append("run_id = ?")
            args.append(self.run_id)
        if self.tracked:
            clauses.append("run_id IS NULL")
        if self.since is not None:
            clauses.append("first_seen >= ?")
            args.append(self.since)
        if self.job:
            if _GLOB & set(self.job):
                clauses.append("(instance GLOB ? OR name GLOB ? OR job_id GLOB ? OR uid GLOB ?)")
                args += [self.job] * 4
            else:
                clauses.append("(uid GLOB ? OR job_id = ? OR instance = ? OR name = ?)")
                args += [_escape_glob(self.job) + "*", self.job, self.job, self.job]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "job": self.job, "tool": self.tool,
                "source": self.source, "since": iso(self.since), "ruleset": self.ruleset}

    def check(self, db: sqlite3.Connection | None = None) -> None:
        """Refuse a status or source that no job can have (a typo would otherwise list
        nothing, silently); sources found in `db` count as known too."""
        known_sources = set(SOURCES)
        if db is not None and self.source:
            known_sources |= {r[0] for r in db.execute(
                "SELECT DISTINCT source FROM job_totals")}
        for option, value, known in (("--status", self.status, STATUSES),
                                     ("--source", self.source, sorted(known_sources))):
            for name in (v.strip() for v in (value or "").split(",")):
                if name and name not in known:
                    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
                    hint = f' (did you mean "{close[0]}"?)' if close else ""
                    raise HistoryError(f"{option}: unknown value {name!r}{hint}; one of "
                                       f"{', '.join(known)}")


def open_db(path: Path | str) -> sqlite3.Connection:
    """The history database at `path`; a missing file is an error, not a new empty one."""
    target = Path(path)
    if not target.is_file():
        raise HistoryError(f"no history at {target} (run `rulesmon run` or `rulesmon track` "
                           "first, or pass --db)")
    from .schema import SchemaError

    try:
        db = connect(target)
    except SchemaError as exc:
        raise HistoryError(str(exc)) from None
    from .liveness import reap

    reap(db, time.time())  # tracked work whose process was killed is shown as such
    return db


# --- jobs ---------------------------------------------------------------------------------

_JOB_COLUMNS = ("id", "uid", "job_id", "instance", "name", "ruleset", "run_id", "source",
                "tool", "script", "status", "state", "exit_code", "signal", "error",
                "diagnosis", "partition", "resource", "node", "user", "cpus", "gpus",
                "submit_time", "start_time", "end_time", "duration", "time_limit", "cpu_user",
                "cpu_sys", "cpu_total", "mem_peak", "mem_req", "cpu_eff", "mem_eff",
                "time_eff", "gpu_hours", "params", "first_seen", "last_seen")
_SELECT = "SELECT " + ", ".join(_JOB_COLUMNS) + " FROM jobs"
_LIVE = ("running", "pending")


def jobs(db: sqlite3.Connection, filters: Filters = Filters(), limit: int | None = 20,
         now: float | None = None, *, details: bool = False,
         dead: Collection[int] = ()) -> list[dict[str, Any]]:
    """Jobs newest first (by when they were first seen); all of them when `limit` is None.
    `details` adds each job's `details`; `dead` (row ids from liveness.dead) shows those
    records as the next write will close them, for a reader that may not write."""
    filters.check(db)
    where, args = filters.where()
    columns = (*_JOB_COLUMNS, "details") if details else _JOB_COLUMNS
    sql = f"SELECT {', '.join(columns)} FROM jobs{where} ORDER BY first_seen DESC, id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    now = now if now is not None else time.time()
    out = []
    for raw in db.execute(sql, args):
        row = _row(dict(zip(columns, raw, strict=True)), now, dead)
        job = _job_json(row, now, _latest_sample(db, row["id"]) if row["status"] in _LIVE
                        else None)
        if details:
            job["details"] = parse_details(row["details"])
        out.append(job)
    return out


def _row(row: dict[str, Any], now: float, dead: Collection[int]) -> dict[str, Any]:
    return liveness.closed(row, now) if row["id"] in dead else row


def parse_details(text: str | None) -> dict[str, Any]:
    """The `details` column as a map (empty when missing or unreadable)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _latest_sample(db: sqlite3.Connection, rid: int) -> dict[str, Any] | None:
    row = db.execute("SELECT t, cpu_user, cpu_sys, cpu_pct, mem_rss, mem_peak, gpu_util, "
                     "gpu_mem, elapsed FROM samples WHERE job = ? ORDER BY t DESC LIMIT 1",
                     (rid,)).fetchone()
    if row is None:
        return None
    return dict(zip(("t", "cpu_user", "cpu_sys", "cpu_pct", "mem_rss", "mem_peak", "gpu_util",
                     "gpu_mem", "elapsed"), row, strict=True))


def _job_json(row: Mapping[str, Any], now: float,
              sample: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One job in its documented JSON shape; a live job's figures come from its latest sample."""
    duration = row["duration"]
    cpu_user, cpu_sys, cpu_total, mem_peak = (row["cpu_user"], row["cpu_sys"],
                                              row["cpu_total"], row["mem_peak"])
    if row["status"] in _LIVE:
        if sample is not None:
            cpu_user = _first(sample["cpu_user"], cpu_user)
            cpu_sys = _first(sample["cpu_sys"], cpu_sys)
            mem_peak = _first(sample["mem_peak"], mem_peak)
            if sample["cpu_user"] is not None:
                cpu_total = sample["cpu_user"] + (sample["cpu_sys"] or 0.0)
        if row["start_time"] is not None and row["status"] == "running":
            duration = max(0.0, now - row["start_time"])
    params: Any = {}
    if row["params"]:
        try:
            params = json.loads(row["params"])
        except ValueError:
            params = {"raw": row["params"]}
    return {
        "id": row["uid"],
        "job_id": row["job_id"],
        "instance": row["instance"],
        "name": row["name"],
        "ruleset": row["ruleset"] or None,
        "run_id": row["run_id"],
        "source": row["source"],
        "tool": row["tool"] or None,
        "script": row["script"],
        "status": row["status"],
        "state": row["state"],
        "returncode": row["exit_code"],
        "signal": row["signal"],
        "error": row["error"],
        "diagnosis": row["diagnosis"],
        "partition": row["partition"] or None,
        "resource": row["resource"] or None,
        "node": row["node"],
        "user": row["user"],
        "submit_time": iso(row["submit_time"]),
        "start_time": iso(row["start_time"]),
        "end_time": iso(row["end_time"]),
        "duration_seconds": _round(duration),
        "resource_usage": {
            "cpu_user_seconds": _round(cpu_user),
            "cpu_system_seconds": _round(cpu_sys),
            "cpu_total_seconds": _round(cpu_total),
            "memory_peak_bytes": mem_peak,
            "memory_peak_mb": _round(mem_peak / 1048576 if mem_peak is not None else None),
            "memory_requested_bytes": row["mem_req"],
            "cpus": row["cpus"],
            "gpus": row["gpus"],
            "gpu_hours": _round(row["gpu_hours"]),
        },
        "efficiency": {
            "cpu_pct": _round(row["cpu_eff"]),
            "memory_pct": _round(row["mem_eff"]),
            "time_pct": _round(row["time_eff"]),
            "time_limit_seconds": _round(row["time_limit"]),
        },
        "params": params,
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
    }


# --- one job ------------------------------------------------------------------------------

def find(db: sqlite3.Connection, ident: str) -> dict[str, Any]:
    """The job row `ident` names: its id or a unique prefix of it, else the most recent job
    with that scheduler id, instance key (`train/12345`) or name."""
    ident = ident.strip()
    if not ident:
        raise HistoryError("give a job: its id (or a prefix), job id, instance or name")
    row = db.execute(f"{_SELECT} WHERE uid = ?", (ident,)).fetchone()
    if row is None and len(ident) >= 4:
        found = list(db.execute(f"{_SELECT} WHERE uid GLOB ? LIMIT 6",
                                (_escape_glob(ident) + "*",)))
        if len(found) > 1:
            shown = ", ".join(str(r[1])[:12] for r in found[:5])
            more = ", ..." if len(found) > 5 else ""
            raise HistoryError(f"{ident} matches several jobs ({shown}{more}): give more of "
                               "the id")
        row = found[0] if found else None
    for column in ("job_id", "instance", "name"):
        if row is not None:
            break
        row = db.execute(f"{_SELECT} WHERE {column} = ? ORDER BY first_seen DESC LIMIT 1",
                         (ident,)).fetchone()
    if row is None:
        raise HistoryError(f"no job {ident!r} in the history")
    return dict(zip(_JOB_COLUMNS, row, strict=True))


def job(db: sqlite3.Connection, ident: str, now: float | None = None, *,
        dead: Collection[int] = ()) -> dict[str, Any]:
    """Everything known about one job: the job, its details, state changes, samples, progress,
    alerts with their deliveries, and the last log lines. `dead` as for `jobs`."""
    now = now if now is not None else time.time()
    row = _row(find(db, ident), now, dead)
    rid = row["id"]
    out = _job_json(row, now, _latest_sample(db, rid) if row["status"] in _LIVE else None)
    extra = db.execute("SELECT details, log_tail FROM jobs WHERE id = ?", (rid,)).fetchone()
    out["details"] = parse_details(extra[0])
    out["timeline"] = [{"time": iso(t), "state": state, "previous": previous}
                       for t, state, previous in db.execute(
                           "SELECT t, state, previous FROM job_states WHERE job = ? ORDER BY t",
                           (rid,))]
    samples = list(db.execute(
        "SELECT t, cpu_user, cpu_sys, cpu_pct, mem_rss, mem_peak, gpu_util, gpu_mem, elapsed, "
        "done, total, pct, rate, eta FROM samples WHERE job = ? ORDER BY t DESC LIMIT ?",
        (rid, SAMPLES_SHOWN)))
    samples.reverse()
    out["samples"] = [
        {"time": iso(t), "cpu_user_seconds": _round(cu), "cpu_system_seconds": _round(cs),
         "cpu_pct": _round(pct), "memory_bytes": rss, "memory_peak_bytes": peak,
         "gpu_util_pct": _round(gu), "gpu_memory_bytes": gm, "elapsed_seconds": _round(el)}
        for t, cu, cs, pct, rss, peak, gu, gm, el, *_ in samples
        if (cu, cs, pct, rss, peak, gu, gm, el).count(None) < 8]
    out["progress"] = [{"time": iso(r[0]), "done": r[9], "total": r[10], "pct": _round(r[11]),
                        "rate": _round(r[12]), "eta_seconds": _round(r[13])}
                       for r in samples if r[9] is not None]
    out["alerts"] = _alerts(db, row)
    tail = extra[1] or ""
    out["log_tail"] = tail.splitlines()[-TAIL_LINES:]
    return out


def _alerts(db: sqlite3.Connection, row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Events about the job's instance while this job held it (up to the next job recorded
    under the same instance), each notification with its deliveries and attempts."""
    start = row["first_seen"] - 1.0
    nxt = db.execute("SELECT min(first_seen) FROM jobs WHERE ruleset = ? AND instance = ? AND "
                     "first_seen > ?", (row["ruleset"], row["instance"],
                                        row["first_seen"])).fetchone()[0]
    end = nxt if nxt is not None else float("inf")
    events = list(db.execute(
        "SELECT t, kind, rule, severity, title, body FROM events WHERE instance = ? AND t >= ? "
        "AND t < ? ORDER BY t, id LIMIT ?", (row["instance"], start, end, ALERTS_SHOWN)))
    if not events:
        return []
    outbox = deliveries(db, "o.instance = ? AND o.created >= ? AND o.created < ?",
                        [row["instance"], start, end])
    return [{"time": iso(t), "kind": kind, "rule": rule, "severity": severity, "title": title,
             "body": body, "deliveries": outbox.get((row["instance"], rule, kind, t), [])}
            for t, kind, rule, severity, title, body in events]


def deliveries(db: sqlite3.Connection, where: str, args: list[Any]
               ) -> dict[tuple[str, str, str, float], list[dict[str, Any]]]:
    """The notifications of `outbox o` matching `where`, by (instance, rule, kind, created):
    the event each delivers, so an alert finds its own. Each lists its attempts (`tries`)."""
    out: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
    seqs: dict[int, dict[str, Any]] = {}
    for seq, target, kind, rule, instance, created, status, attempts, last_error, delivered \
            in db.execute("SELECT o.seq, o.target, o.kind, o.rule, o.instance, o.created, "
                          "o.status, o.attempts, o.last_error, o.delivered_at FROM outbox o "
                          f"WHERE {where} ORDER BY o.seq", args):
        entry = {"target": target, "status": status, "attempts": attempts,
                 "last_error": last_error, "delivered_at": iso(delivered), "tries": []}
        out.setdefault((instance, rule, kind, created), []).append(entry)
        seqs[seq] = entry
    if seqs:
        for seq, t, ok, error in db.execute(
                "SELECT a.outbox_seq, a.t, a.ok, a.error FROM attempts a JOIN outbox o ON "
                f"o.seq = a.outbox_seq WHERE {where} ORDER BY a.t", args):
            if seq in seqs:
                seqs[seq]["tries"].append({"time": iso(t), "ok": bool(ok), "error": error})
    return out


# --- statistics ---------------------------------------------------------------------------

_GROUPS = ("source", "tool", "partition", "resource")


def summary(db: sqlite3.Connection, filters: Filters = Filters(), *,
            use_totals: bool = True) -> dict[str, Any]:
    """Totals, success rate, CPU time and durations, overall and by source, tool, partition
    and resource (SQL aggregates), plus notification deliveries. `use_totals=False` reads
    the job rows instead of the weekly totals (same answer; for checks and benchmarks)."""
    filters.check(db)
    cells = _cells(db, filters, use_totals)
    total = Acc()
    by: dict[str, dict[str, Acc]] = {g: {} for g in _GROUPS}
    by_status: dict[str, int] = {}
    for cell in cells:
        keys, status = cell[:4], cell[4]
        by_status[status] = by_status.get(status, 0) + cell[5]
        total.add(status, cell[5:])
        for group, key in zip(_GROUPS, keys, strict=True):
            if key or group in ("source", "tool"):
                by[group].setdefault(key or "", Acc()).add(status, cell[5:])
    out: dict[str, Any] = {"filters": filters.as_json()}
    out.update(total.as_json(detail=True))
    out["by_status"] = dict(sorted(by_status.items()))
    for group in _GROUPS:
        out[f"by_{group}"] = {k: acc.as_json() for k, acc in sorted(by[group].items())}
    out["notifications"] = notifications(db, filters)
    return out


_ROW_CELLS = ("SELECT source, tool, partition, resource, status, count(*), sum(duration), "
              "count(duration), max(duration), sum(cpu_total), max(mem_peak), sum(gpu_hours) "
              "FROM jobs{where} GROUP BY source, tool, partition, resource, status")
_WEEK = 7 * 86400


def _cells(db: sqlite3.Connection, filters: Filters,
           use_totals: bool = True) -> list[tuple[Any, ...]]:
    """Aggregates per (source, tool, partition, resource, status). From `job_totals`, which
    triggers keep per week, so a year of jobs costs a few thousand rows, not a million; the
    first week of a `since` window, and filters the totals do not carry, read `jobs`."""
    if filters.job or filters.ruleset or filters.run_id is not None or filters.tracked or \
            not use_totals:
        where, args = filters.where()
        return list(db.execute(_ROW_CELLS.format(where=where), args))
    where, args = filters.where(totals=True)
    cells: list[tuple[Any, ...]] = []
    if filters.since is not None:
        first_week = int(filters.since // _WEEK)
        where += (" AND " if where else " WHERE ") + "week > ?"
        args.append(first_week)
        partial = Filters(status=filters.status, tool=filters.tool, source=filters.source,
                          since=filters.since)
        row_where, row_args = partial.where()
        row_where += " AND first_seen < ?"
        row_args.append((first_week + 1) * _WEEK)
        cells += db.execute(_ROW_CELLS.format(where=row_where), row_args)
    cells += db.execute(
        "SELECT source, tool, partition, resource, status, sum(jobs), sum(duration), "
        "sum(timed), max(max_duration), sum(cpu), max(max_mem), sum(gpu_hours) "
        f"FROM job_totals{where} GROUP BY source, tool, partition, resource, status", args)
    return cells


class Acc:
    """Sums of aggregate cells (`add`) or of jobs (`add_job`): the one place the figures of
    `stats` and of the dashboard are counted, rounded and rated."""

    def __init__(self) -> None:
        self.jobs = self.finished = self.ok = self.bad = self.active = 0
        self.duration = self.cpu = self.gpu_hours = 0.0
        self.timed = 0
        self.max_duration: float | None = None
        self.max_mem: int | None = None

    def add(self, status: str, cell: tuple[Any, ...]) -> None:
        count, dsum, dcount, dmax, cpu, mem, gpu = cell
        self.jobs += count
        if status in FINAL:
            self.finished += count
            self.ok += count if status == "success" else 0
            self.bad += 0 if status == "success" else count
        elif status in _LIVE:
            self.active += count
        self.duration += dsum or 0.0
        self.timed += dcount or 0
        self.cpu += cpu or 0.0
        self.gpu_hours += gpu or 0.0
        if dmax is not None:
            self.max_duration = dmax if self.max_duration is None else max(self.max_duration,
                                                                           dmax)
        if mem is not None:
            self.max_mem = mem if self.max_mem is None else max(self.max_mem, mem)

    def add_job(self, job: Mapping[str, Any]) -> None:
        """One job in the JSON shape; only a finished job's duration counts (a running one's
        is its age so far)."""
        usage = job["resource_usage"]
        took = job["duration_seconds"] if job["status"] in FINAL else None
        self.add(job["status"], (1, took, 0 if took is None else 1, took,
                                 usage["cpu_total_seconds"], usage["memory_peak_bytes"],
                                 usage["gpu_hours"]))

    @property
    def success_rate(self) -> float | None:
        """Successful over finished, in percent."""
        return round(100.0 * self.ok / self.finished, 2) if self.finished else None

    def as_json(self, *, detail: bool = False) -> dict[str, Any]:
        """The overall figures (`detail`) or one group's; a group also carries `count` and
        `total_duration`, the names the Keystone job monitor's scripts use."""
        out: dict[str, Any] = {
            "total_jobs" if detail else "jobs": self.jobs,
            "finished": self.finished,
            "active": self.active,
            "successful": self.ok,
            "failed": self.bad,
            "success_rate": self.success_rate,
            "total_cpu_time_seconds": round(self.cpu, 2),
            "total_duration_seconds": round(self.duration, 2),
            "average_duration_seconds": round(self.duration / self.timed, 2)
            if self.timed else None,
            "max_duration_seconds": _round(self.max_duration),
            "memory_peak_max_mb": _round(self.max_mem / 1048576
                                         if self.max_mem is not None else None),
            "gpu_hours": round(self.gpu_hours, 3),
        }
        if not detail:
            out["count"] = self.jobs
            out["total_duration"] = out["total_duration_seconds"]
        return out


def notifications(db: sqlite3.Connection, filters: Filters = Filters(), *,
                  until: float | None = None) -> dict[str, Any]:
    """Notifications (created since `filters.since` and before `until`) by target and
    delivery status, with the failed attempts. With job filters, only notifications about a
    matching job count: the job that held the notification's instance when it was created
    (as `show` attributes alerts)."""
    clauses: list[str] = []
    args: list[Any] = []
    if filters.since is not None:
        clauses.append("o.created >= ?")
        args.append(filters.since)
    if until is not None:
        clauses.append("o.created < ?")
        args.append(until)
    about_jobs = dataclasses.replace(filters, since=None)
    if about_jobs != Filters():
        where, job_args = about_jobs.where()
        rulesets = [r[0] for r in db.execute("SELECT DISTINCT ruleset FROM runs")] or [""]
        marks = ",".join("?" * len(rulesets))
        clauses.append(
            f"EXISTS (SELECT 1 FROM jobs{where} AND id = (SELECT id FROM jobs WHERE ruleset "
            f"IN ({marks}) AND instance = o.instance AND first_seen <= o.created + 1 "
            "ORDER BY first_seen DESC LIMIT 1))")
        args += [*job_args, *rulesets]
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    rows: list[tuple[str, str, int, int]]
    if about_jobs != Filters():
        # One pass over the notifications (attributing each to its job is the costly part),
        # counting their failed attempts through the attempts index on the way.
        rows = list(db.execute(
            "SELECT o.target, o.status, count(*), sum((SELECT count(*) FROM attempts a "
            f"WHERE a.outbox_seq = o.seq AND a.ok = 0)) FROM outbox o{where} "
            "GROUP BY o.target, o.status", args))
    else:
        rows = [(t, st, n, 0) for t, st, n in db.execute(
            f"SELECT o.target, o.status, count(*) FROM outbox o{where} "
            "GROUP BY o.target, o.status", args)]
        joined = where.replace(" WHERE ", " AND ", 1)
        rows += [(t, "", 0, n) for t, n in db.execute(
            "SELECT o.target, count(*) FROM attempts a JOIN outbox o ON o.seq = a.outbox_seq "
            f"WHERE a.ok = 0{joined} GROUP BY o.target", args)]
    by_target: dict[str, dict[str, int]] = {}
    total = 0
    for target, status, count, failed in rows:
        entry = by_target.setdefault(target, {})
        if count:
            entry[status] = count
            total += count
        if failed:
            entry["failed_attempts"] = entry.get("failed_attempts", 0) + failed
    return {"total": total, "by_target": dict(sorted(by_target.items()))}


# --- helpers ------------------------------------------------------------------------------

def iso(t: float | None) -> str | None:
    """ISO 8601 in UTC with an explicit offset, the format of every time in the JSON."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _escape_glob(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def flat(job: Mapping[str, Any]) -> dict[str, Any]:
    """A job's JSON as one flat row (the CSV columns): nested maps become prefixed keys."""
    out: dict[str, Any] = {}
    for key, value in job.items():
        if key in ("resource_usage", "efficiency") and isinstance(value, Mapping):
            out.update(value)
        elif key == "params":
            out[key] = jsonout.dumps(value, sort_keys=True) if value else ""
        elif not isinstance(value, list | dict):
            out[key] = value
    return out


def column_names(jobs_: Iterable[Mapping[str, Any]]) -> list[str]:
    """The CSV header: the keys of a flat job, in the order of the JSON."""
    for first in jobs_:
        return list(flat(first))
    return list(flat(_job_json_template()))


def _job_json_template() -> dict[str, Any]:
    row = dict.fromkeys(_JOB_COLUMNS)
    row.update({"id": 0, "first_seen": 0.0, "status": "unknown"})
    return _job_json(row, 0.0)


def parse_since(text: str, now: float) -> float:
    """`7d`, `12h`, `90m` (that long ago) or an ISO date/time (local unless it has an
    offset) as a Unix time; ValueError with a one-line message otherwise."""
    from ..config.units import parse_duration

    text = text.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (7d, 12h) nor an ISO date "
                         "(2025-10-15, 2025-10-15T08:00)") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()
