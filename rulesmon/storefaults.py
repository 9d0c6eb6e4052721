"""What a fault of the state database means for a run, decided once for every writer.

SQLite reports a fault as one of a few primary result codes. They divide in two:

* **It may pass** (SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM,
  SQLITE_BUSY, SQLITE_LOCKED, and any OSError): a full disk or quota, a file size limit
  (`ulimit -f`: the write fails with EFBIG), a folder made read-only, another process holding
  the write lock too long. The run goes on watching and notifying from memory; what a tick
  could not write is kept (`_Pending`) and written with the next tick that can, and this is
  said once (log event `state_not_saved`), not every tick, and once more when it is written
  again (`state_saved`). A kill while it lasts loses only what was not written.
* **It will not pass** (SQLITE_CORRUPT, SQLITE_NOTADB: a damaged page, a file that is not a
  database): nothing more can be recorded or delivered through the file, so the run ends
  as on SIGTERM: launched workers are stopped, exit status 2, one line saying which file and
  what to do (StateDamaged).

At start, any fault is a one-line refusal with exit status 2 before anything is launched:
`rulesmon run` checks the whole file (`PRAGMA quick_check`) so a damaged page anywhere is
found then rather than in the middle of the night.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .statelock import shown

#: SQLite's primary result codes of a database that cannot be read as one.
_DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
#: At most this many ticks of history rows are kept in memory while writes fail; older ones
#: are dropped (said once) so a long outage cannot grow memory without bound.
MAX_PENDING_HISTORY = 120


class StorageError(Exception):
    """A write to (or read of) the state database failed; one line for the user."""


class StateDamaged(StorageError):
    """The state database is damaged: nothing more can be recorded in it."""


def classify(exc: BaseException, path: Path) -> StorageError:
    """The one-line error for a fault of the state database at `path`."""
    if isinstance(exc, StorageError):
        return exc
    name = shown(path)
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror.lower()
    if isinstance(exc, sqlite3.DatabaseError) and (
            (code is not None and code & 0xFF in _DAMAGED) or
            "malformed" in text or "not a database" in text):
        return StateDamaged(
            f"state {name} is damaged ({text}); move it aside (mv {name} {name}.damaged) and "
            f"run again with a fresh state (`sqlite3 {name}.damaged .recover | sqlite3 {name}`"
            " first recovers what it can)")
    return StorageError(f"state {name} cannot be written ({text})")


def foreign(path: Path) -> None:
    """Raise StateDamaged when `path` holds something other than an SQLite database."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        return
    if head and head != b"SQLite format 3\0":
        name = shown(path)
        raise StateDamaged(f"state {name} is not an SQLite database (not a rulesmon state "
                           "file); give this run another --state, or move the file aside")


def preflight(path: Path, *, verify: bool) -> None:
    """Open the state file once as SQLite, in WAL mode, and read its schema (with `verify`,
    every page: `PRAGMA quick_check`); a fault raises sqlite3.Error or OSError for
    `classify`, or StateDamaged."""
    foreign(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if verify:
            rows = db.execute("PRAGMA quick_check(1)").fetchall()
            if rows != [("ok",)]:
                found = str(rows[0][0]) if rows else "no answer"
                raise classify(sqlite3.DatabaseError(
                    f"database disk image is malformed: {found}"), path)
    finally:
        db.close()


@dataclass
class _Pending:
    """What ticks owe the state database and could not write yet, merged: the newest state
    of each alert and last value, every event and owed notification, each tick's history."""

    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    alerts: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    last_values: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    run: tuple[int, int, int] | None = None
    history: list[Callable[[sqlite3.Connection], None]] = field(default_factory=list)
    #: run once the ticks are written (the files probe confirms its files, delivery is woken)
    after: list[Callable[[], None]] = field(default_factory=list)
    dropped: int = 0

    def empty(self) -> bool:
        return not (self.outbox or self.alerts or self.last_values or self.events or
                    self.run or self.history or self.after)

    def add_history(self, write: Callable[[sqlite3.Connection], None],
                    warn: Callable[..., None]) -> None:
        self.history.append(write)
        if len(self.history) > MAX_PENDING_HISTORY:
            # the oldest tick's rows go: its changes are found again by a later tick's
            # writer (the recorder compares with what was written), only the samples and
            # state steps in between are not recorded
            del self.history[0]
            if not self.dropped:
                warn("history_not_saved", note=f"more than {MAX_PENDING_HISTORY} ticks of "
                     "history could not be written; the oldest are dropped")
            self.dropped += 1
