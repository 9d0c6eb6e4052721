"""Read-only access to the history database, and the run-level queries the pages need.

The dashboard may run beside a live engine, so it never writes: every request opens its own
`mode=ro` connection (with `query_only` on top), which never takes the engine's write lock, never
migrates the schema and sees each committed tick as it lands (WAL). Job objects have exactly
the history JSON shape of rulesmon.history.queries; the run-level figures reuse the key names
of `rulesmon stats --format json`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..history import liveness, queries
from ..history.schema import SCHEMA_VERSION

#: Alert events listed on a run page, oldest first.
EVENTS_SHOWN = 500
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class WebError(Exception):
    """A one-line problem with the database, for the user."""


def is_database(path: Path) -> bool:
    """Whether `path` names a database rather than a ruleset: a name ending in .db/.sqlite
    (which may not exist, or not be SQLite: that is then a clear error, never a ruleset
    parsed), or an SQLite file under another name."""
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return True
    return _header(path) == _SQLITE_MAGIC


def _header(path: Path) -> bytes | None:
    """The first bytes of a regular file; None if it is not one or cannot be read."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            return fh.read(len(_SQLITE_MAGIC))
    except OSError:
        return None


def not_sqlite(path: Path) -> str | None:
    """Why `path`, an existing file, cannot be an SQLite database (its first bytes are not
    SQLite's: a ruleset or a text file named .db), in one line; None if it may be one or is
    not there."""
    head = _header(path)
    if not head or head == _SQLITE_MAGIC:  # SQLite takes an empty file as an empty database
        return None
    return (f"{path}: not an SQLite database; give a history database (.rulesmon/<name>.db) "
            "or a ruleset (.yaml)")


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection: `mode=ro` (SQLite refuses every write) and `query_only`."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    con = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
    try:
        con.execute("PRAGMA query_only = 1")
        con.execute("PRAGMA busy_timeout = 5000")
    except sqlite3.DatabaseError:
        con.close()
        raise
    return con


def check(path: Path) -> None:
    """Refuse, in one line, a database the dashboard cannot show: missing, not SQLite, not
    rulesmon's, too old to hold history, or newer than this rulesmon."""
    if not path.is_file():
        raise WebError(f"no history at {path} (run `rulesmon run` or `rulesmon track` first, "
                       "or pass --db)")
    try:
        con = connect(path)
    except sqlite3.Error as exc:
        raise WebError(f"{path}: cannot open read-only ({exc}); the folder must be "
                       "readable and writable for SQLite's shared-memory file") from None
    try:
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as exc:
            raise WebError(f"{path}: not a rulesmon database ({exc})") from None
        version = int(row[0]) if row else 2
        if version > SCHEMA_VERSION:
            raise WebError(f"{path} has schema version {version}, newer than this rulesmon "
                           f"understands ({SCHEMA_VERSION}): upgrade rulesmon")
        if version < 3:
            raise WebError(f"{path} has no job history yet (schema version {version}): the "
                           "next `rulesmon run` with it adds the history tables")
        con.execute("SELECT id FROM runs LIMIT 1").fetchall()
        con.execute("SELECT id FROM jobs LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise WebError(f"{path}: not a usable rulesmon database ({exc})") from None
    finally:
        con.close()


def scrub(text: Any) -> Any:
    """Hide anything that looks like a URL (a service's error may quote its endpoint)."""
    return _URL.sub("<url hidden>", text) if isinstance(text, str) else text


# --- runs ---------------------------------------------------------------------------------

_RUN_COLUMNS = ("id", "ruleset", "started", "ended", "ticks", "overruns", "exit_code",
                "summary")
#: Whether a later run of the same ruleset started, asked only of a run with no end.
_LATER = ("CASE WHEN ended IS NULL THEN EXISTS (SELECT 1 FROM runs later WHERE later.ruleset "
          "= runs.ruleset AND later.started > runs.started) ELSE 0 END")
_SELECT_RUNS = f"SELECT {', '.join(_RUN_COLUMNS)}, {_LATER} FROM runs"


def runs(con: sqlite3.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Runs newest first, each with its jobs counted by status."""
    rows = list(con.execute(f"{_SELECT_RUNS} ORDER BY id DESC LIMIT ?", (limit,)))
    counts: dict[int, dict[str, int]] = {}
    if rows:
        marks = ",".join("?" * len(rows))
        for run_id, status, count in con.execute(
                f"SELECT run_id, status, count(*) FROM jobs WHERE run_id IN ({marks}) "
                "GROUP BY run_id, status", [r[0] for r in rows]):
            counts.setdefault(run_id, {})[status] = count
    return [_run_json(r, counts.get(r[0], {})) for r in rows]


def run(con: sqlite3.Connection, run_id: int) -> dict[str, Any] | None:
    row = con.execute(f"{_SELECT_RUNS} WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    counts = dict(con.execute("SELECT status, count(*) FROM jobs WHERE run_id = ? "
                              "GROUP BY status", (run_id,)).fetchall())
    return _run_json(row, counts)


def _run_json(raw: tuple[Any, ...], by_status: Mapping[str, int]) -> dict[str, Any]:
    """A run: `ended`, else `running`, or `interrupted` when a later run of the same ruleset
    started while this one never recorded its end (a kill -9, a crash)."""
    row = dict(zip(_RUN_COLUMNS, raw[:-1], strict=True))
    ended, started = row["ended"], row["started"]
    state = "ended" if ended is not None else "interrupted" if raw[-1] else "running"
    return {
        "id": row["id"], "ruleset": row["ruleset"], "state": state,
        "started": queries.iso(started), "ended": queries.iso(ended),
        "duration_seconds": round(ended - started, 3) if ended is not None else None,
        "ticks": row["ticks"], "overruns": row["overruns"], "exit_code": row["exit_code"],
        "summary": row["summary"] or None, "jobs": _job_counts(by_status),
    }


def _job_counts(by_status: Mapping[str, int]) -> dict[str, Any]:
    """Jobs counted by status, with the finished and the success rate as `stats` rates them."""
    acc = queries.Acc()
    for status, count in by_status.items():
        acc.add(status, (count, None, 0, None, None, None, None))
    return {"total": acc.jobs, "finished": acc.finished,
            "by_status": dict(sorted(by_status.items())), "success_rate": acc.success_rate}


def tracked_counts(con: sqlite3.Connection) -> dict[str, Any] | None:
    """Work recorded outside any run (rulesmon.track, `rulesmon track`, Celery); records of
    killed processes count as the error they will be closed as."""
    rows = con.execute("SELECT status, count(*), min(first_seen), max(last_seen) FROM jobs "
                       "WHERE run_id IS NULL GROUP BY status").fetchall()
    if not rows:
        return None
    by_status = {status: count for status, count, _a, _b in rows}
    gone = len(liveness.dead(con))
    if gone:
        by_status["running"] -= gone
        by_status["error"] = by_status.get("error", 0) + gone
        if not by_status["running"]:
            del by_status["running"]
    return {**_job_counts(by_status),
            "first_seen": queries.iso(min(r[2] for r in rows)),
            "last_seen": queries.iso(max(r[3] for r in rows))}


# --- jobs of a run ------------------------------------------------------------------------

def run_jobs(con: sqlite3.Connection, run_id: int | None,
             limit: int | None = None) -> list[dict[str, Any]]:
    """The jobs of a run (run_id None: tracked work, at most `limit`, records of killed
    processes shown as the error they will be closed as), newest first, in the history JSON
    shape, each with `details` added."""
    if run_id is None:
        return queries.jobs(con, queries.Filters(tracked=True), limit, details=True,
                            dead=set(liveness.dead(con)))
    return queries.jobs(con, queries.Filters(run_id=run_id), limit, details=True)


def figures(jobs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A run's totals under the key names of `rulesmon stats --format json`, plus `by_state`."""
    acc = queries.Acc()
    by_status: dict[str, int] = {}
    by_state: dict[str, int] = {}
    for job in jobs:
        acc.add_job(job)
        status = job["status"]
        by_status[status] = by_status.get(status, 0) + 1
        state = job["state"] or status.upper()
        by_state[state] = by_state.get(state, 0) + 1
    return {**acc.as_json(detail=True), "by_status": dict(sorted(by_status.items())),
            "by_state": dict(sorted(by_state.items()))}


# --- alerts of a run ----------------------------------------------------------------------

def _window(started: float, ended: float | None) -> tuple[float, float]:
    """A run's time span, with a second's slack either side (times are rounded)."""
    return started - 1.0, ended + 1.0 if ended is not None else float("inf")


def run_alerts(con: sqlite3.Connection, started: float, ended: float | None
               ) -> tuple[list[dict[str, Any]], int]:
    """The alert events between the run's start and end (the `show` alert shape plus the
    instance), each with its deliveries; and how many more there were."""
    window = _window(started, ended)
    count = con.execute("SELECT count(*) FROM events WHERE t >= ? AND t < ?",
                        window).fetchone()[0]
    events = con.execute(
        "SELECT t, kind, rule, instance, severity, title, body FROM events WHERE t >= ? AND "
        "t < ? ORDER BY t, id LIMIT ?", (*window, EVENTS_SHOWN)).fetchall()
    deliveries = queries.deliveries(con, "o.created >= ? AND o.created < ?", list(window))
    for entries in deliveries.values():
        for entry in entries:
            tries = entry.pop("tries")
            entry["last_error"] = scrub(entry["last_error"])
            entry["failed_attempts"] = sum(not t["ok"] for t in tries)
    alerts = [{"time": queries.iso(t), "kind": kind, "rule": rule, "instance": instance,
               "severity": severity, "title": title, "body": body,
               "deliveries": deliveries.get((instance, rule, kind, t), [])}
              for t, kind, rule, instance, severity, title, body in events]
    return alerts, max(0, count - len(alerts))


def run_notifications(con: sqlite3.Connection, started: float,
                      ended: float | None) -> dict[str, Any]:
    """Notifications created during the run by target and delivery status (the `stats`
    shape), with failed attempts."""
    since, until = _window(started, ended)
    return queries.notifications(con, queries.Filters(since=since), until=until)


# --- one job ------------------------------------------------------------------------------

def job(con: sqlite3.Connection, ident: str) -> dict[str, Any]:
    """`rulesmon show --format json` for one job (a killed process's record shown as the
    error it will be closed as), delivery errors scrubbed of URLs, plus `dag` (its parents
    and children as jobs) when it is a DAG node. HistoryError if none."""
    out = queries.job(con, ident, dead=liveness.dead(con))
    for alert in out["alerts"]:
        for delivery in alert["deliveries"]:
            delivery["last_error"] = scrub(delivery["last_error"])
            for attempt in delivery["tries"]:
                attempt["error"] = scrub(attempt["error"])
    out["dag"] = _neighbours(con, out)
    return out


def _neighbours(con: sqlite3.Connection, job: Mapping[str, Any]) -> dict[str, Any] | None:
    details = job["details"]
    parents, children = details.get("node.parents"), details.get("node.children")
    if not isinstance(parents, list) and not isinstance(children, list):
        return None
    names = [str(n) for n in [*(parents or []), *(children or [])]]
    prefix = f"{job['tool']}/" if job["tool"] else str(job["instance"]).rsplit("/", 1)[0] + "/"
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(names), 500):
        chunk = [prefix + n for n in names[i:i + 500]]
        for uid, instance, status, state, run_id in con.execute(
                "SELECT uid, instance, status, state, run_id FROM jobs WHERE ruleset = ? AND "
                f"instance IN ({','.join('?' * len(chunk))}) ORDER BY first_seen, id",
                [job["ruleset"] or "", *chunk]):
            name = instance[len(prefix):]
            known = found.get(name)
            if known is None or known["run_id"] != job["run_id"] or run_id == job["run_id"]:
                found[name] = {"name": name, "id": uid, "status": status, "state": state,
                               "run_id": run_id}

    def listed(values: Any) -> list[dict[str, Any]]:
        return [found.get(str(n), {"name": str(n), "id": None, "status": None, "state": None,
                                   "run_id": None}) for n in (values or [])]

    return {"name": details.get("node.name") or job["name"], "parents": listed(parents),
            "children": listed(children)}
