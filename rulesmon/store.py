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
from pathlib import Path
from typing import Any

from .rules.state import AlertState

SCHEMA_VERSION = 1

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
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),))

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
                  run_id: int | None, ticks: int, overruns: int) -> None:
        """Everything a tick changed, atomically."""
        now = time.time()
        with self.transaction() as db:
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

    def events(self, limit: int = 100) -> list[tuple[Any, ...]]:
        return list(self.db.execute(
            "SELECT t, kind, rule, instance, severity, title, body FROM events "
            "ORDER BY id DESC LIMIT ?", (limit,)))
