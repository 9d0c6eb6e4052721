"""The state database: rule states, the last values `changed()` compares with, and events.

One SQLite file in WAL mode, written in one transaction per tick, so a restart (even after
kill -9) resumes exactly: a firing alert stays firing, a pending one keeps the time it had
already held, and nothing is notified twice for the same transition.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

from .rules.state import AlertState

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    instance TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status);
CREATE TABLE IF NOT EXISTS last_values (
    instance TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (instance, key)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT,
    instance TEXT,
    severity TEXT,
    title TEXT,
    body TEXT
);
CREATE INDEX IF NOT EXISTS events_t ON events(t);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    instance TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    release_at REAL NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'owed',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at REAL,
    UNIQUE (id, target)
);
CREATE INDEX IF NOT EXISTS outbox_owed ON outbox(target, status, seq);
CREATE TABLE IF NOT EXISTS attempts (
    outbox_seq INTEGER NOT NULL,
    t REAL NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    rule TEXT NOT NULL,
    instance TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ruleset TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    ticks INTEGER NOT NULL DEFAULT 0,
    overruns INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    summary TEXT
);
"""


class OutboxRow(NamedTuple):
    """A notification owed to one target, as the tick records it."""

    id: str
    target: str
    kind: str
    rule: str
    instance: str
    severity: str
    title: str
    body: str
    created: float
    release_at: float
    group_key: str


class Silence(NamedTuple):
    id: int
    created: float
    expires: float
    rule: str
    instance: str
    comment: str

    def matches(self, rule: str, instance: str) -> bool:
        return fnmatchcase(rule, self.rule) and fnmatchcase(instance, self.instance)


class StateStore:
    """The persisted state of one ruleset's runs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        # Tables are only ever added, so CREATE ... IF NOT EXISTS migrates older files.
        self.db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(key) DO "
                        "UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- reading at start -------------------------------------------------------------------

    def alerts(self) -> dict[str, tuple[str, str, AlertState]]:
        rows = self.db.execute("SELECT fingerprint, rule, instance, state FROM alerts")
        return {fp: (rule, inst, AlertState.from_json(json.loads(state)))
                for fp, rule, inst, state in rows}

    def last_values(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for inst, key, value in self.db.execute("SELECT instance, key, value FROM last_values"):
            out.setdefault(inst, {})[key] = json.loads(value)
        return out

    # --- writing each tick --------------------------------------------------------------------

    def save_tick(self, alerts: Iterable[tuple[str, str, str, AlertState]],
                  last_values: Iterable[tuple[str, str, Any]],
                  events: Iterable[tuple[float, str, str, str, str, str, str]],
                  run_id: int | None, ticks: int, overruns: int,
                  outbox: Iterable[OutboxRow] = ()) -> None:
        """Everything a tick changed, atomically: a transition and the notifications it owes
        are recorded together or not at all."""
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO outbox (id, target, kind, rule, instance, severity, title,"
                " body, created, release_at, group_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [tuple(row) for row in outbox])
            db.executemany(
                "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE"
                " SET status=excluded.status, state=excluded.state, updated=excluded.updated",
                [(fp, rule, inst, st.status, json.dumps(st.to_json()), now)
                 for fp, rule, inst, st in alerts])
            db.executemany(
                "INSERT INTO last_values VALUES (?, ?, ?) ON CONFLICT(instance, key) DO UPDATE"
                " SET value=excluded.value",
                [(inst, key, json.dumps(value, default=str)) for inst, key, value in last_values])
            db.executemany(
                "INSERT INTO events (t, kind, rule, instance, severity, title, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", list(events))
            if run_id is not None:
                db.execute("UPDATE runs SET ticks=?, overruns=? WHERE id=?",
                           (ticks, overruns, run_id))

    def start_run(self, ruleset: str, started: float) -> int:
        cur = self.db.execute("INSERT INTO runs (ruleset, started) VALUES (?, ?)",
                              (ruleset, started))
        return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, ended: float, exit_code: int, summary: str) -> None:
        self.db.execute("UPDATE runs SET ended=?, exit_code=?, summary=? WHERE id=?",
                        (ended, exit_code, summary, run_id))

    # --- silences ------------------------------------------------------------------------------

    def add_silence(self, rule: str, instance: str, until: float, comment: str) -> int:
        cur = self.db.execute(
            "INSERT INTO silences (created, expires, rule, instance, comment) VALUES (?,?,?,?,?)",
            (time.time(), until, rule, instance, comment))
        return int(cur.lastrowid or 0)

    def remove_silence(self, silence_id: int) -> bool:
        cur = self.db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        return cur.rowcount > 0

    def silences(self, now: float, *, include_expired: bool = False) -> list[Silence]:
        sql = "SELECT id, created, expires, rule, instance, comment FROM silences"
        rows = self.db.execute(sql + ("" if include_expired else " WHERE expires > ?") +
                               " ORDER BY id", () if include_expired else (now,))
        return [Silence(*row) for row in rows]

    def outbox_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, count(*) FROM outbox GROUP BY status"))

    def events(self, limit: int = 100) -> list[tuple[Any, ...]]:
        return list(self.db.execute(
            "SELECT t, kind, rule, instance, severity, title, body FROM events "
            "ORDER BY id DESC LIMIT ?", (limit,)))
