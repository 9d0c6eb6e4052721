"""What the local probe must know after a restart: the workers it launched and the processes
it watched, kept in a small SQLite file beside the state database (`<state>.local.db`).

A restart is normal (kill -9, `--once` twice, a tick limit). A restarted run that resumes an
unfinished one adopts instead of launching again:

- A launch is recorded durably before its first worker is spawned (the job and a random token)
  and each worker right after its spawn (pid and process start time): the tick's transaction
  may never commit when rulesmon is killed. Every worker also carries the token in its
  environment (`RULESMON_LAUNCH=<token>:<index>`), so a kill between the spawn and the record
  still cannot cause a second launch: the restart finds the worker by that marker in
  `/proc/<pid>/environ`.
- A process is the one recorded only when its pid AND its start time match (a reused pid is
  another process).
- An end, once seen, is recorded and kept (a COMPLETED job stays COMPLETED across a restart).
- A process seen alive before the restart and gone at the restart ended while rulesmon was
  down: its exit code and signal are unknown (no longer rulesmon's child, nobody kept its wait
  status), unless /proc still shows it as a zombie with its wait status.

A run that finished (every job terminal, or a stop action) or ended on a signal starts the
next run afresh (`forget`): rerunning a ruleset launches again.

Any failure to open or write the file is logged once and leaves the probe working from memory
(then a restart cannot adopt).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from .. import jsonout
from .sidecar import Sidecar

log = logging.getLogger(__name__)

#: The environment variable every launched worker carries: `<launch token>:<worker index>`.
MARKER = "RULESMON_LAUNCH"
#: psutil's start times of one process agree to the microsecond between calls and processes
#: (boot time plus the kernel's start tick); a reused pid starts at least a tick later.
_SAME_START = 0.005
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS launches (job TEXT PRIMARY KEY, token TEXT NOT NULL, "
    "launched REAL NOT NULL, ok INTEGER, error TEXT)",
    "CREATE TABLE IF NOT EXISTS procs (job TEXT NOT NULL, unit TEXT NOT NULL, idx INTEGER "
    "NOT NULL, pid INTEGER, create_time REAL, started REAL, info TEXT NOT NULL DEFAULT '{}', "
    "ended TEXT, PRIMARY KEY (job, unit))",
    "CREATE TABLE IF NOT EXISTS pid_files (job TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, "
    "text TEXT NOT NULL)",
)


class Registry(Sidecar):
    """The durable record of launches, processes and ends (autocommit: each write is on disk
    when the call returns; a sidecar file: rulesmon/probes/sidecar.py)."""

    schema = _SCHEMA
    logger = log
    unavailable = "local_state_unavailable"
    consequence = ("launched workers and watched processes are known in memory only: a "
                   "restart cannot adopt them")

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._lock = threading.Lock()

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            db = self._conn()
            if db is None:
                return
            try:
                db.execute(sql, args)
            except sqlite3.Error as exc:
                self._fail(exc)

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            db = self._conn()
            if db is None:
                return []
            try:
                return list(db.execute(sql, args))
            except sqlite3.Error as exc:
                self._fail(exc)
                return []

    # --- writing ----------------------------------------------------------------------------

    def forget(self, jobs: Iterable[str] | None = None) -> None:
        """A new run: nothing of the previous one is adopted (of `jobs` only, when given)."""
        for table in ("launches", "procs", "pid_files"):
            if jobs is None:
                self._write(f"DELETE FROM {table}", ())
            else:
                for job in jobs:
                    self._write(f"DELETE FROM {table} WHERE job=?", (job,))

    def launch(self, job: str, token: str, at: float) -> None:
        """Before the first spawn: this job's workers are being launched."""
        self._write("INSERT INTO launches (job, token, launched) VALUES (?, ?, ?) ON CONFLICT "
                    "(job) DO UPDATE SET token=excluded.token, launched=excluded.launched, "
                    "ok=NULL, error=NULL", (job, token, at))

    def verified(self, job: str, ok: bool, error: str | None) -> None:
        """The launch check's verdict (`job.launch_ok`), kept as it was judged."""
        self._write("UPDATE launches SET ok=?, error=? WHERE job=?", (int(ok), error, job))

    def proc(self, job: str, unit: str, index: int, pid: int | None,
             create_time: float | None, started: float | None, info: dict[str, Any]) -> None:
        """A process seen (spawned, or watched and alive)."""
        self._write("INSERT INTO procs (job, unit, idx, pid, create_time, started, info) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job, unit) DO UPDATE SET "
                    "idx=excluded.idx, pid=excluded.pid, create_time=excluded.create_time, "
                    "started=excluded.started, info=excluded.info, ended=NULL",
                    (job, unit, index, pid, create_time, started, jsonout.dumps(info)))

    def spawned(self, job: str, unit: str, p: Any) -> None:
        """A process (a `local._Proc`) to find again after a restart: recorded once."""
        p.recorded = True
        self.proc(job, unit, p.index, p.pid, p.create_time, p.started,
                  {"log": p.log, "err": p.err, "workdir": p.workdir, "gpu": p.gpu})

    def persist(self, run: Any) -> None:
        """What a collection found about a job (a `local._Run`) that is not recorded yet:
        live processes, ends and the launch check's verdict; written at once, not with the
        tick (which a kill may never commit)."""
        if run.launched and run.launch_ok is not None and not run.launch_saved:
            run.launch_saved = True
            self.verified(run.key, run.launch_ok, run.launch_error)
        for unit, p in run.procs.items():
            if not p.recorded and p.end is None and p.pid is not None and p.seen \
                    and not p.missing:
                self.spawned(run.key, unit, p)
            if p.end is not None and not p.end_saved and (p.recorded or run.launched):
                p.end_saved = True
                self.ended(run.key, unit, p.index, p.end)

    def ended(self, job: str, unit: str, index: int, end: Any) -> None:
        """A process's end (a `local._End`), kept for good."""
        self._write("INSERT INTO procs (job, unit, idx, ended) VALUES (?, ?, ?, ?) ON CONFLICT "
                    "(job, unit) DO UPDATE SET ended=excluded.ended",
                    (job, unit, index, jsonout.dumps(asdict(end))))

    def pid_file(self, job: str, version: tuple[int, str]) -> None:
        """The pid file version last adopted from (an unchanged file is not read again)."""
        self._write("INSERT INTO pid_files VALUES (?, ?, ?) ON CONFLICT (job) DO UPDATE SET "
                    "mtime_ns=excluded.mtime_ns, text=excluded.text", (job, *version))

    # --- reading at start ---------------------------------------------------------------------

    def launch_of(self, job: str) -> tuple[str, float, bool | None, str | None] | None:
        """(token, launch time, launch_ok, launch_error) of a recorded launch."""
        rows = self._read("SELECT token, launched, ok, error FROM launches WHERE job=?", (job,))
        if not rows:
            return None
        token, launched, ok, error = rows[0]
        return str(token), float(launched), None if ok is None else bool(ok), error

    def procs_of(self, job: str) -> list[Record]:
        return [Record(str(unit), int(idx), pid, create_time, started, json.loads(info or "{}"),
                       json.loads(ended) if ended else None)
                for unit, idx, pid, create_time, started, info, ended in self._read(
                    "SELECT unit, idx, pid, create_time, started, info, ended FROM procs "
                    "WHERE job=? ORDER BY idx", (job,))]

    def pid_file_of(self, job: str) -> tuple[int, str] | None:
        rows = self._read("SELECT mtime_ns, text FROM pid_files WHERE job=?", (job,))
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None


class Record:
    """One recorded process."""

    __slots__ = ("create_time", "end", "index", "info", "pid", "started", "unit")

    def __init__(self, unit: str, index: int, pid: int | None, create_time: float | None,
                 started: float | None, info: dict[str, Any],
                 end: dict[str, Any] | None) -> None:
        self.unit, self.index, self.pid = unit, index, pid
        self.create_time, self.started, self.info, self.end = create_time, started, info, end


def same_process(pid: int, create_time: float | None) -> Any:
    """The psutil.Process of `pid` when it is still the process that started at
    `create_time`; None when it is gone or the pid now names another process."""
    if create_time is None:
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > _SAME_START:
            return None
    except _GONE:
        return None
    return proc


def find_marked(token: str) -> dict[int, Any]:
    """Processes of this user that carry a launch's marker, by worker index (a scan of
    /proc/<pid>/environ, done only when a launch was interrupted before its record)."""
    found: dict[int, Any] = {}
    prefix = f"{MARKER}={token}:".encode()
    uid = os.getuid()
    for proc in psutil.process_iter(["uids"]):
        try:
            uids = proc.info.get("uids")
            if uids is not None and uids.real != uid:
                continue
            data = Path(f"/proc/{proc.pid}/environ").read_bytes()
        except (OSError, *_GONE):
            continue
        for item in data.split(b"\0"):
            if item.startswith(prefix):
                with contextlib.suppress(ValueError):
                    found.setdefault(int(item[len(prefix):]), proc)
                break
    return found


def carries(proc: Any, token: str, index: int) -> bool | None:
    """Whether a process's environment holds this worker's marker; None when unreadable."""
    try:
        data = Path(f"/proc/{proc.pid}/environ").read_bytes()
    except OSError:
        return None
    return f"{MARKER}={token}:{index}".encode() in data.split(b"\0")
