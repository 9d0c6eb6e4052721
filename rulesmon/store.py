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
from contextlib import contextmanager, suppress
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

from .history.schema import SCHEMA_VERSION, SchemaError, connect
from .redact import Secrets
from .rules.state import AlertState
from .storefaults import StateDamaged, StorageError, _Pending, classify, preflight

#: Work a caller adds to a tick's transaction (the history recorder's rows).
TickWriter = Callable[[sqlite3.Connection], None]

__all__ = ["SCHEMA_VERSION", "OutboxRow", "SchemaError", "Silence", "StateDamaged",
           "StateStore", "StorageError"]


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

    def __init__(self, path: Path, secrets: Secrets | None = None, *, log: Any = None,
                 verify: bool = False) -> None:
        self.path = path
        #: what is masked (sealed in the outbox) before anything is written
        self.secrets = secrets or Secrets()
        #: where a write that failed is reported (once per streak of failed ticks)
        self.log = log
        #: what the ticks that could not be written hold, written with the next tick that can
        self.pending = _Pending()
        #: the last write failed: state is kept in memory only (rulesmon/storefaults.py)
        self.failing: StorageError | None = None
        self._silences: list[Silence] = []
        # The schema and its migrations live in history/schema.py (documented in
        # docs/history.md); an older file is migrated here, a newer one is a SchemaError.
        try:
            if str(path) != ":memory:":
                # faults of the file itself are told apart here (connect calls any of them
                # "not a usable database"); a damaged page is found before anything launches
                preflight(path, verify=verify)
            self.db = connect(path)
        except (sqlite3.Error, OSError) as exc:
            raise classify(exc, path) from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # a failed COMMIT may already have rolled back
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise

    # --- reading at start -------------------------------------------------------------------

    def alerts(self) -> dict[str, tuple[str, str, AlertState]]:
        rows = self.db.execute("SELECT fingerprint, rule, instance, state FROM alerts")
        return {fp: (rule, inst, AlertState.from_json(json.loads(state)))
                for fp, rule, inst, state in rows}

    def previous_run(self) -> tuple[int, str | None] | None:
        """(id, outcome) of the last run recorded, None when there is none. The outcome is
        why it ended (`all jobs terminal`, `stop action`, `one tick`, `tick limit`,
        `interrupted by signal N`, ...); None for a run that never recorded its end (killed)."""
        row = self.db.execute("SELECT id, ended, outcome FROM runs ORDER BY id DESC LIMIT 1"
                              ).fetchone()
        if row is None:
            return None
        return int(row[0]), (str(row[2]) if row[1] is not None and row[2] is not None
                             else None)

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
                  outbox: Iterable[OutboxRow] = (), history: TickWriter | None = None,
                  after: Callable[[], None] | None = None) -> bool:
        """Everything a tick changed, atomically: a transition and the notifications it owes
        are recorded together or not at all, and the tick's history rows with them.

        When the write fails for a reason that may pass (a full disk, an I/O error, a
        read-only file), the tick is kept in memory and written with the next tick that can
        (False is returned; `after` runs once it is written). A damaged database raises
        StateDamaged: nothing more can be recorded in it."""
        now = time.time()
        sec = self.secrets
        mask, seal = sec.scrub, sec.seal
        pending = self.pending
        pending.outbox.extend(
            (r.id, r.target, r.kind, r.rule, mask(r.instance), r.severity, seal(r.title),
             seal(r.body), r.created, r.release_at, mask(r.group_key)) for r in outbox)
        for fp, rule, inst, st in alerts:
            pending.alerts[fp] = (fp, rule, mask(inst), st.status,
                                  json.dumps(sec.scrub_obj(st.to_json())), now)
        for inst, key, value in last_values:
            pending.last_values[(inst, key)] = (
                mask(inst), key, json.dumps(sec.scrub_obj(value), default=str))
        pending.events.extend((t, kind, rule, mask(inst), sev, mask(title), mask(body))
                              for t, kind, rule, inst, sev, title, body in events)
        if run_id is not None:
            pending.run = (ticks, overruns, run_id)
        if history is not None:
            pending.add_history(history, self._warn)
        if after is not None:
            pending.after.append(after)
        return self.flush()

    def flush(self) -> bool:
        """Write what is pending; True when nothing is left pending."""
        pending = self.pending
        if pending.empty():
            return True
        try:
            with self.transaction() as db:
                db.executemany(
                    "INSERT OR IGNORE INTO outbox (id, target, kind, rule, instance, severity,"
                    " title, body, created, release_at, group_key) VALUES "
                    "(?,?,?,?,?,?,?,?,?,?,?)", pending.outbox)
                db.executemany(
                    "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO "
                    "UPDATE SET status=excluded.status, state=excluded.state, "
                    "updated=excluded.updated", list(pending.alerts.values()))
                db.executemany(
                    "INSERT INTO last_values VALUES (?, ?, ?) ON CONFLICT(instance, key) DO "
                    "UPDATE SET value=excluded.value", list(pending.last_values.values()))
                db.executemany(
                    "INSERT INTO events (t, kind, rule, instance, severity, title, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", pending.events)
                if pending.run is not None:
                    db.execute("UPDATE runs SET ticks=?, overruns=? WHERE id=?", pending.run)
                for write in pending.history:
                    write(db)
        except (sqlite3.Error, OSError) as exc:
            for write in reversed(pending.history):  # the writers' memory of what is written
                undo = getattr(write, "rollback", None)
                if callable(undo):
                    undo()
            error = classify(exc, self.path)
            if isinstance(error, StateDamaged):
                raise error from None
            if self.failing is None:
                self._warn("state_not_saved", error=str(error),
                           hint="kept in memory and written as soon as a write succeeds; "
                           "a kill now loses what is not written")
            self.failing = error
            return False
        done, self.pending = pending.after, _Pending()
        if self.failing is not None:
            self.failing = None
            self._warn("state_saved", level="info", note="the state written again")
        for callback in done:
            callback()
        return True

    def _warn(self, event: str, level: str = "warning", **fields: Any) -> None:
        if self.log is not None:
            getattr(self.log, level)(event, state=str(self.path), **fields)

    def start_run(self, ruleset: str, started: float) -> int:
        try:
            cur = self.db.execute("INSERT INTO runs (ruleset, started) VALUES (?, ?)",
                                  (ruleset, started))
        except (sqlite3.Error, OSError) as exc:
            raise classify(exc, self.path) from None
        return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, ended: float, exit_code: int, summary: str,
                outcome: str | None = None) -> None:
        """The run's end (`outcome`: why it ended, see `previous_run`); after the last try to
        write what is still pending."""
        self.flush()
        try:
            self.db.execute("UPDATE runs SET ended=?, exit_code=?, summary=?, outcome=? "
                            "WHERE id=?", (ended, exit_code, self.secrets.scrub(summary),
                                           outcome, run_id))
        except (sqlite3.Error, OSError) as exc:
            raise classify(exc, self.path) from None

    def unsaved(self) -> list[str]:
        """The notifications owed that are not written (the run could not save them)."""
        return [f"{row[1]}: {row[6]}" for row in self.pending.outbox]

    def write(self, work: TickWriter) -> None:
        """One write outside a tick (the history's end of run), faults as StorageError."""
        try:
            with self.transaction() as db:
                work(db)
        except (sqlite3.Error, OSError) as exc:
            raise classify(exc, self.path) from None

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
        try:
            rows = self.db.execute(sql + ("" if include_expired else " WHERE expires > ?") +
                                   " ORDER BY id", () if include_expired else (now,))
            found = [Silence(*row) for row in rows]
        except (sqlite3.Error, OSError) as exc:
            error = classify(exc, self.path)
            if isinstance(error, StateDamaged):
                raise error from None
            # a read that may work next tick: the silences last read still hold
            return [s for s in self._silences if include_expired or s.expires > now]
        if not include_expired:
            self._silences = found
        return found

    def outbox_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, count(*) FROM outbox GROUP BY status"))

    def events(self, limit: int = 100) -> list[tuple[Any, ...]]:
        return list(self.db.execute(
            "SELECT t, kind, rule, instance, severity, title, body FROM events "
            "ORDER BY id DESC LIMIT ?", (limit,)))
