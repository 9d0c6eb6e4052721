"""Delivering the outbox through apprise: in order per target, with retries, off the tick.

The engine records every notification as owed, in the same transaction as the transition
that caused it. One worker thread per target then sends the oldest owed notification (with
the others of the same rule and transition that are due: one message for a storm), marks it
delivered, and on failure retries with backoff, keeping later ones waiting so they arrive in
order. Which notifications a message carries is written down before it is first sent, so a
retry, also after a kill between sending and marking, sends exactly the same message again
under the same id. Every attempt and the service's error text are recorded. A restart
simply continues with what is still owed.

The outbox holds each message sealed (rulesmon/redact.py): every secret as the `${NAME}` it
was interpolated from. Only here, as a message is handed to its target, are the values put
back, from this process's ruleset and environment, so a restarted process delivers the real
message that a killed one left owed; errors and log lines never carry them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .config.models import Target
from .redact import Secrets

MAX_BATCH = 200
#: Joins a notification's group key and the id of the message it was first tried in: the
#: rows of a message are fixed (in the database) before it is sent for the first time.
SEALED = "#msg:"
MAX_BODY = 16_000
_PAYLOAD_SCHEMES = ("json", "jsons", "form", "forms", "xml", "xmls")


@dataclass(frozen=True)
class Row:
    seq: int
    id: str
    kind: str
    rule: str
    instance: str
    severity: str
    title: str
    body: str
    release_at: float
    group_key: str
    attempts: int
    next_attempt: float


def _quiet_apprise() -> None:
    """apprise's own log lines stay out of the console; they are captured per service."""
    logger = logging.getLogger("apprise")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def with_id(url: str, ids: list[str]) -> str:
    """The URL with the notification id as a header and, where the service posts a payload
    we control (json/form/xml), as payload fields, so a receiver can deduplicate."""
    scheme = url.split("://", 1)[0].lower()
    params = [f"+X-Rulesmon-Id={quote(ids[0])}"]
    if scheme in _PAYLOAD_SCHEMES:
        params.append(f":rulesmon_id={quote(ids[0])}")
        params.append(f":rulesmon_ids={quote(','.join(ids))}")
    return url + ("&" if "?" in url else "?") + "&".join(params)


def combine(rows: list[Row]) -> tuple[str, str, list[str]]:
    """One message for several instances of one rule and transition."""
    ids = [r.id for r in rows]
    if len(rows) == 1:
        return rows[0].title, rows[0].body, ids
    head = rows[0]
    verb = {"fire": "firing", "repeat": "still firing", "resolve": "resolved"}.get(head.kind,
                                                                                   head.kind)
    title = f"[{head.severity.upper()}] {head.rule}: {len(rows)} instances {verb}"
    lines = []
    for r in rows:
        first = r.body.strip().splitlines()[0] if r.body.strip() else r.title
        lines.append(f"- {r.instance}: {first}")
    body = "\n".join(lines)
    if len(body) > MAX_BODY:
        body = body[:MAX_BODY] + "\n…"
    return title, body, ids


Sender = Callable[[str, list[str], str, str, float], tuple[bool, str]]


def apprise_send(target: str, urls: list[str], title: str, body: str,
                 timeout: float) -> tuple[bool, str]:
    """Send one message to every URL of a target; (ok, error text)."""
    import apprise

    ap = apprise.Apprise()
    for url in urls:
        ap.add(url)
    if len(ap) == 0:
        return False, "no valid notification URL"
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(ap.notify, title=title, body=body)
        try:
            result = future.result(timeout=timeout)
        except FutureTimeout:
            return False, f"timed out after {timeout:g}s"
    if bool(result):
        return True, ""
    errors = []
    for res in getattr(result, "results", ()):
        for entry in res.logs():
            if entry.level in ("WARNING", "ERROR", "CRITICAL"):
                errors.append(entry.message)
    return False, "; ".join(dict.fromkeys(errors)) or "delivery failed"


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction on an autocommit connection, rolled back when it fails (a full
    disk): the worker retries it, never half of it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


class Delivery:
    """Worker threads that drain the outbox of one state database."""

    def __init__(self, db_path: Path, targets: dict[str, Target], secrets: Secrets, log: Any,
                 *, send: Sender = apprise_send, clock: Callable[[], float] = time.time) -> None:
        _quiet_apprise()
        self.db_path = db_path
        self.targets = targets
        self.secrets = secrets
        self.log = log
        self.send_fn = send
        self.clock = clock
        self.stopping = threading.Event()
        self.wake = threading.Condition()
        self.idle: dict[str, bool] = {}
        self.threads: list[threading.Thread] = []
        #: per target: attempts made whose record could not be written yet (a full disk);
        #: written before anything else is read, so a message sent is never sent again
        self._unmarked: dict[str, list[tuple[list[int], float, bool, str, float]]] = {}

    def start(self) -> None:
        for name in self.targets:
            self.idle[name] = False
            thread = threading.Thread(target=self._run, args=(name,), daemon=True,
                                      name=f"deliver-{name}")
            thread.start()
            self.threads.append(thread)

    def poke(self) -> None:
        with self.wake:
            for name in self.idle:
                self.idle[name] = False
            self.wake.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is owed any more (or the time is up); True when drained."""
        if not self.threads:
            return True
        names = list(self.targets)
        marks = ",".join("?" * len(names))
        deadline = time.monotonic() + timeout
        try:
            db = sqlite3.connect(str(self.db_path), timeout=30)
        except sqlite3.Error:
            return False
        try:
            while True:
                self.poke()
                owed = db.execute(f"SELECT count(*) FROM outbox WHERE status = 'owed' AND "
                                  f"target IN ({marks})", names).fetchone()[0]
                if owed == 0 and not any(self._unmarked.values()):
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
        except (sqlite3.Error, OSError):  # the state file failed: what is owed stays owed
            return False
        finally:
            db.close()

    def close(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.poke()
        for thread in self.threads:
            thread.join(timeout)

    # --- one target ---------------------------------------------------------------------------

    def _run(self, name: str) -> None:
        target = self.targets[name]
        urls = [u for u in target.urls if u.strip()]
        self._unmarked[name] = []
        failing = ""
        db: sqlite3.Connection | None = None
        sends: deque[float] = deque()
        try:
            while not self.stopping.is_set():
                try:
                    if db is None:
                        db = self._open(name, sends)
                    wait = self._step(db, name, target, urls, sends)
                except (sqlite3.Error, OSError) as exc:
                    # the state file failed (a full disk, a damaged page): nothing is lost,
                    # what is owed stays owed and is tried again (rulesmon/storefaults.py)
                    if db is not None and db.in_transaction:
                        with suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    error = str(exc).strip().splitlines()[0] if str(exc).strip() else \
                        type(exc).__name__
                    if error != failing:
                        self.log.warning("delivery_state_unavailable", target=name,
                                         error=error, hint="retried every few seconds")
                        failing = error
                    wait = 5.0
                else:
                    failing = ""
                with self.wake:
                    if wait is not None:
                        self.idle[name] = True
                        self.wake.notify_all()
                        if not self.stopping.is_set():
                            self.wake.wait(timeout=min(wait, 1.0 if not failing else 5.0))
        except Exception as exc:  # the worker must never die silently
            self.log.error("delivery_worker_failed", target=name, error=type(exc).__name__)
        finally:
            with self.wake:
                self.idle[name] = True
                self.wake.notify_all()
            if db is not None:
                db.close()

    def _open(self, name: str, sends: deque[float]) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.db_path), timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            sends.clear()
            sends.extend(t for (t,) in db.execute(
                "SELECT DISTINCT delivered_at FROM outbox WHERE target = ? AND status = "
                "'delivered' AND delivered_at > ? ORDER BY delivered_at",
                (name, self.clock() - 3600)))
        except BaseException:
            db.close()
            raise
        return db

    def _mark(self, db: sqlite3.Connection, name: str) -> None:
        """Write the record of the attempts made (oldest first); raises while it cannot."""
        unmarked = self._unmarked[name]
        while unmarked:
            seqs, stamp, ok, error, delay = unmarked[0]
            with _immediate(db):
                db.executemany("INSERT INTO attempts VALUES (?, ?, ?, ?)",
                               [(s, stamp, int(ok), error or None) for s in seqs])
                if ok:
                    db.executemany("UPDATE outbox SET status = 'delivered', delivered_at = ?, "
                                   "attempts = attempts + 1 WHERE seq = ?",
                                   [(stamp, s) for s in seqs])
                else:
                    db.executemany("UPDATE outbox SET attempts = attempts + 1, next_attempt = "
                                   "?, last_error = ? WHERE seq = ?",
                                   [(stamp + delay, error, s) for s in seqs])
            unmarked.pop(0)

    def _step(self, db: sqlite3.Connection, name: str, target: Target, urls: list[str],
              sends: deque[float]) -> float | None:
        """Deliver one message if one is due; None when it did, else seconds to wait."""
        self._mark(db, name)
        now = self.clock()
        rows = [Row(*r) for r in db.execute(
            "SELECT seq, id, kind, rule, instance, severity, title, body, release_at, group_key,"
            " attempts, next_attempt FROM outbox WHERE target = ? AND status = 'owed' "
            "ORDER BY seq LIMIT ?", (name, MAX_BATCH))]
        if not urls:
            if rows:
                db.executemany("UPDATE outbox SET status = 'dropped', last_error = ? WHERE seq "
                               "= ?", [("target has no URL", r.seq) for r in rows])
                self.log.warning("notify_no_url", target=name, dropped=len(rows))
            return 1.0
        while sends and sends[0] <= now - 3600:
            sends.popleft()
        if target.max_per_hour is not None and len(sends) < target.max_per_hour:
            suppressed = db.execute("SELECT count(*) FROM outbox WHERE target = ? AND status = "
                                    "'suppressed'", (name,)).fetchone()[0]
            if suppressed:
                ok, error = self._deliver(name, target, urls,
                                          f"{suppressed} more notifications suppressed",
                                          f"{suppressed} notification(s) to {name} were held "
                                          f"back by max_per_hour: {target.max_per_hour}.",
                                          [f"suppressed-{int(now)}"])
                if ok:
                    db.execute("UPDATE outbox SET status = 'summarised' WHERE target = ? AND "
                               "status = 'suppressed'", (name,))
                    sends.append(now)
                    return None
        if not rows:
            return 60.0
        head = rows[0]
        due = max(head.release_at, head.next_attempt)
        if due > now:
            return due - now  # the head waits: later ones keep their order behind it
        if SEALED in head.group_key:
            # tried before (perhaps sent, then killed before it was marked): exactly the
            # same message again, never one that gathered later notifications under its id
            batch = [r for r in rows if r.group_key == head.group_key]
        else:
            batch = [r for r in rows if r.group_key == head.group_key and r.release_at <= now
                     and r.next_attempt <= now]
        seqs = [(r.seq,) for r in batch]
        if target.max_per_hour is not None and len(sends) >= target.max_per_hour:
            db.executemany("UPDATE outbox SET status = 'suppressed' WHERE seq = ?", seqs)
            self.log.info("notify_capped", target=name, rule=head.rule, count=len(batch))
            return None
        if SEALED not in head.group_key:
            # the message is fixed before it leaves: one id always means one payload
            sealed = f"{head.group_key}{SEALED}{head.id}"
            with _immediate(db):
                db.executemany("UPDATE outbox SET group_key = ? WHERE seq = ?",
                               [(sealed, s) for (s,) in seqs])
        title, body, ids = combine(batch)
        missing: list[str] = []
        title = self.secrets.unseal(title, missing=missing)
        body = self.secrets.unseal(body, missing=missing)
        if missing:  # sent as written: the reference itself says what is not known
            self.log.warning("notify_secret_unset", target=name, rule=head.rule,
                             variables=",".join(sorted(set(missing))))
        ok, error = self._deliver(name, target, urls, title, body, ids)
        stamp = self.clock()
        delay = 0.0 if ok else min(target.retry_max, 2.0 ** min(head.attempts, 30))
        self._unmarked[name].append(([s for (s,) in seqs], stamp, ok, error, delay))
        self._mark(db, name)  # if it cannot be written now, before anything else later
        if ok:
            sends.append(stamp)
            self.log.debug("notify_sent", target=name, rule=head.rule, count=len(batch))
            return None
        self.log.warning("notify_failed", target=name, rule=head.rule, attempt=head.attempts + 1,
                         error=error)
        return 0.0

    def _deliver(self, name: str, target: Target, urls: list[str], title: str, body: str,
                 ids: list[str]) -> tuple[bool, str]:
        try:
            ok, error = self.send_fn(name, [with_id(u, ids) for u in urls], title, body,
                                     target.timeout)
        except Exception as exc:  # a plugin failure is a failed attempt, never a crash
            ok, error = False, f"{type(exc).__name__}: {exc}"
        return ok, self.secrets.scrub(error)[:1000]
