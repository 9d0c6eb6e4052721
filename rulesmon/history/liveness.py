"""Tracked work whose process died without closing its record (SIGKILL, the OOM killer).

A tracked record is written `running` when the work starts and closed by the same process
when it ends; a process killed outright never closes it. So each record keeps the host and
the pid (with the process's start time, against pid reuse) of the process that writes it,
and of the command it runs, in `details`. On the next write or read of the history on that
host, a running record none of whose processes still exist becomes `error`, "process died
without reporting". Records from other hosts are left alone: their pids mean nothing here.
"""

from __future__ import annotations

import functools
import json
import socket
import sqlite3
from collections.abc import Mapping
from typing import Any

DIED = "process died without reporting"
SOURCES = ("track", "command", "celery")
#: Start times are counted in clock ticks (10 ms); a match within this is the same process.
_SAME_START = 0.05


@functools.cache
def host() -> str:
    return socket.gethostname()


def identity(pid: int) -> dict[str, Any]:
    """What `details` keeps of a process, to tell later whether it still runs."""
    return {"pid": pid, "pid_started": _started(pid)}


def alive(pid: Any, started: Any) -> bool:
    """The process `pid` that started at `started` still exists (a zombie has ended)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        now_started = proc.create_time()
    except (psutil.Error, OSError):
        return False
    return not isinstance(started, int | float) or abs(now_started - started) < _SAME_START


def _started(pid: int) -> float | None:
    import psutil

    try:
        return round(float(psutil.Process(pid).create_time()), 3)
    except (psutil.Error, OSError):
        return None


def _processes(details: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    out = [(details.get("pid"), details.get("pid_started"))]
    if details.get("command_pid") is not None:
        out.append((details.get("command_pid"), details.get("command_pid_started")))
    return out


def dead(db: sqlite3.Connection, here: str | None = None) -> list[int]:
    """Row ids of running tracked records of this host whose processes are all gone."""
    here = here or host()
    found: list[int] = []
    for rid, details in db.execute(
            "SELECT id, details FROM jobs WHERE status = 'running' AND ruleset = '' AND "
            f"node = ? AND source IN ({','.join('?' * len(SOURCES))})", (here, *SOURCES)):
        try:
            data = json.loads(details) if details else {}
        except ValueError:
            continue
        if not isinstance(data, dict) or "pid" not in data:
            continue  # written before rulesmon kept pids: nothing to judge it by
        if not any(alive(pid, started) for pid, started in _processes(data)):
            found.append(rid)
    return found


def mark(db: sqlite3.Connection, rids: list[int], now: float) -> None:
    """Close the records `rids` as error (inside the caller's transaction)."""
    db.executemany("UPDATE jobs SET status = 'error', state = 'ERROR', error = ?, "
                   "last_seen = max(last_seen, ?) WHERE id = ? AND status = 'running'",
                   [(DIED, now, rid) for rid in rids])
    db.executemany("INSERT INTO job_states VALUES (?, ?, 'ERROR', 'RUNNING')",
                   [(rid, now) for rid in rids])


def reap(db: sqlite3.Connection, now: float) -> int:
    """For a reader: close the dead records in a transaction of their own, if the database
    can be written right now; a read-only or busy database is simply read as it is."""
    try:
        rids = dead(db)
        if not rids:
            return 0
        timeout = db.execute("PRAGMA busy_timeout").fetchone()[0]
        db.execute("PRAGMA busy_timeout=200")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                rids = dead(db)  # again, under the lock: the process may have just finished
                mark(db, rids, now)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.execute(f"PRAGMA busy_timeout={int(timeout)}")
    except sqlite3.Error:
        return 0
    return len(rids)
