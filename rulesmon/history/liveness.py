"""Tracked work whose process died without closing its record (SIGKILL, the OOM killer).

A tracked record is written `running` when the work starts and closed by the same process
when it ends; a process killed outright never closes it. So each record keeps the pid (with
the process's start time, against pid reuse) of the process that writes it, and of the
command it runs, in `details`, and its host in the `node` column. When tracked work next
starts on that host, or the history is next read there, a running record none of whose
processes still exist becomes `error`, "process died without reporting". Records from
other hosts are left alone: their pids mean nothing here.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
from collections.abc import Mapping
from typing import Any

DIED = "process died without reporting"
SOURCES = ("track", "command", "celery")
#: Start times are counted in clock ticks (10 ms); a match within this is the same process.
_SAME_START = 0.05
#: (pid, start) of processes found gone, which stay gone: a reader that may not close their
#: records (the dashboard) asks the system about each only once.
_GONE: set[tuple[Any, Any]] = set()
_GONE_KEPT = 10_000


@functools.cache
def host() -> str:
    return socket.gethostname()


def identity(pid: int, command: int | None = None) -> dict[str, Any]:
    """What `details` keeps of the writing process `pid` and of the `command` it runs, to
    tell later whether either still runs."""
    out = {"pid": pid, "pid_started": _started(pid)}
    if command is not None:
        out.update(command_pid=command, command_pid_started=_started(command))
    return out


def alive(pid: Any, started: Any) -> bool:
    """The process `pid` that started at `started` still exists (a zombie has ended). This
    process is known without asking the system (a solo or threaded Celery worker's records
    are all its own); a process found gone is remembered as gone."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if not isinstance(started, int | float):
        started = None  # a database may say anything; the pid alone then decides
    if pid == os.getpid():
        return _same_start(_own_start(), started)
    if (pid, started) in _GONE:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            found = False
        else:
            found = _same_start(proc.create_time(), started)
    except (psutil.Error, OSError):
        found = False
    if not found:
        if len(_GONE) >= _GONE_KEPT:
            _GONE.clear()
        _GONE.add((pid, started))
    return found


def _same_start(actual: float | None, recorded: float | None) -> bool:
    if recorded is None or actual is None:
        return True  # nothing to compare: the pid alone decides
    return abs(actual - recorded) < _SAME_START


def _own_start() -> float | None:
    """This process's start time, read once per process (a fork has its own)."""
    return _start_once(os.getpid())


@functools.lru_cache(maxsize=1)
def _start_once(pid: int) -> float | None:
    return _started(pid)


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


def closed(row: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A running record's row as `mark` closes it, for a reader that may not write."""
    if row["status"] != "running":
        return dict(row)
    return {**row, "status": "error", "state": "ERROR", "error": DIED,
            "last_seen": max(row["last_seen"] or now, now)}


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
