"""The state database: rule states, the last values `changed()` compares with, and events.

One SQLite file in WAL mode, written in one transaction per tick, so a restart (even after
kill -9) resumes exactly: a firing alert stays firing, a pending one keeps the time it had
already held, and nothing is notified twice for the same transition.

No secret is written (rulesmon/redact.py): events, rule states, the values `changed()` keeps and
run summaries are masked (`***`); an owed message is kept sealed (each secret as the `${NAME}`
it came from) and the delivery worker unseals it only to send it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

from .history.schema import SCHEMA_VERSION, SchemaError, connect
from .redact import Secrets
from .rules.state import AlertState

#: Work a caller adds to a tick's transaction (the history recorder's rows).
TickWriter = Callable[[sqlite3.Connection], None]

__all__ = ["SCHEMA_VERSION", "OutboxRow", "SchemaError", "Silence", "StateStore"]


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

    def __init__(self, path: Path, secrets: Secrets | None = None) -> None:
        self.path = path
        #: what is masked (sealed in the outbox) before anything is written
        self.secrets = secrets or Secrets()
        # The schema and its migrations live in history/schema.py (documented in
        # docs/history.md); an older file is migrated here, a newer one is a SchemaError.
        self.db = connect(path)

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
                  outbox: Iterable[OutboxRow] = (), history: TickWriter | None = None) -> None:
        """Everything a tick changed, atomically: a transition and the notifications it owes
        are recorded together or not at all, and the tick's history rows with them."""
        now = time.time()
        sec = self.secrets
        mask, seal = sec.scrub, sec.seal
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO outbox (id, target, kind, rule, instance, severity, title,"
                " body, created, release_at, group_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(r.id, r.target, r.kind, r.rule, mask(r.instance), r.severity, seal(r.title),
                  seal(r.body), r.created, r.release_at, mask(r.group_key)) for r in outbox])
            db.executemany(
                "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE"
                " SET status=excluded.status, state=excluded.state, updated=excluded.updated",
                [(fp, rule, mask(inst), st.status, json.dumps(sec.scrub_obj(st.to_json())), now)
                 for fp, rule, inst, st in alerts])
            db.executemany(
                "INSERT INTO last_values VALUES (?, ?, ?) ON CONFLICT(instance, key) DO UPDATE"
                " SET value=excluded.value",
                [(mask(inst), key, json.dumps(sec.scrub_obj(value), default=str))
                 for inst, key, value in last_values])
            db.executemany(
                "INSERT INTO events (t, kind, rule, instance, severity, title, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(t, kind, rule, mask(inst), sev, mask(title), mask(body))
                 for t, kind, rule, inst, sev, title, body in events])
            if run_id is not None:
                db.execute("UPDATE runs SET ticks=?, overruns=? WHERE id=?",
                           (ticks, overruns, run_id))
            if history is not None:
                history(db)

    def start_run(self, ruleset: str, started: float) -> int:
        cur = self.db.execute("INSERT INTO runs (ruleset, started) VALUES (?, ?)",
                              (ruleset, started))
        return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, ended: float, exit_code: int, summary: str) -> None:
        self.db.execute("UPDATE runs SET ended=?, exit_code=?, summary=? WHERE id=?",
                        (ended, exit_code, self.secrets.scrub(summary), run_id))

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
