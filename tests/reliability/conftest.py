"""Shared pieces of the reliability tests: a receiver that deduplicates on the notification id
the way the docs advise (and can hold a delivery open so a kill lands in the middle of it),
waiting on observable conditions, and the bookkeeping that ends every process a test started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "a condition") -> None:
    """Poll `cond` until it holds; the deadline only bounds a hang, it never paces the test."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def db_rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query on a state database another process writes; [] while it is not there."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return []
    try:
        return list(con.execute(sql, args))
    except sqlite3.Error:
        return []
    finally:
        con.close()


@dataclass
class Request:
    """One POST as the receiver took it."""

    msg_id: str
    ids: list[str]
    title: str
    body: str
    accepted: bool  # answered 2xx, or held open when the sender was killed (it got the body)

    @property
    def payload(self) -> tuple[str, str, tuple[str, ...]]:
        return self.title, self.body, tuple(self.ids)


@dataclass
class HookReceiver:
    """A JSON webhook on 127.0.0.1 that keeps every request with its `X-Rulesmon-Id`.

    `down` answers 503 (the service is down: the sender must retry); `hold_next` keeps the
    next request open, its body already read, until `release()`, so a test can kill the sender
    while it waits for the answer: the service got the message, the sender never learnt it."""

    requests: list[Request] = field(default_factory=list)
    down: bool = False
    hold_next: bool = False
    held: threading.Event = field(default_factory=threading.Event)
    _gates: list[threading.Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    server: ThreadingHTTPServer | None = None

    def start(self) -> HookReceiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length).decode("utf-8", "replace")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                msg_id = self.headers.get("X-Rulesmon-Id", "")
                ids = [i for i in str(body.get("rulesmon_ids", msg_id)).split(",") if i]
                req = Request(msg_id, ids, str(body.get("title", "")),
                              str(body.get("message", "")), accepted=False)
                gate = threading.Event()
                with outer.lock:
                    hold = outer.hold_next and not outer.down
                    if hold:
                        outer.hold_next = False
                        outer._gates.append(gate)
                    status = 503 if outer.down else 200
                    req.accepted = status == 200
                    outer.requests.append(req)
                if hold:
                    outer.held.set()
                    gate.wait(120)
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def release(self) -> None:
        """Answer the held request (its sender may be gone by now)."""
        with self.lock:
            gates, self._gates = self._gates, []
            self.held.clear()
        for gate in gates:
            gate.set()

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def accepted(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.accepted]


@dataclass
class Dedup:
    """What a receiver deduplicating on the id makes of the requests it accepted."""

    delivered: set[str]  # every notification id carried by an accepted message
    messages: int  # accepted requests
    distinct: int  # distinct message ids among them
    conflicts: list[str]  # message ids seen with two different payloads
    resent: int  # accepted requests that repeated a message id already accepted


def dedup(requests: list[Request]) -> Dedup:
    """Fold the accepted requests as a receiver would that drops a message id it has seen."""
    first: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    conflicts: list[str] = []
    delivered: set[str] = set()
    resent = 0
    for req in requests:
        if req.msg_id in first:
            resent += 1
            if first[req.msg_id] != req.payload and req.msg_id not in conflicts:
                conflicts.append(req.msg_id)
            continue
        first[req.msg_id] = req.payload
        delivered.update(req.ids)
    return Dedup(delivered, len(requests), len(first), conflicts, resent)


class Procs:
    """Processes a test started, and processes recognised as its own by a marker in their
    command line or environment (the workers rulesmon launched for it): all are ended by pid
    at teardown."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.popens: list[subprocess.Popen[bytes]] = []
        self.owners: set[str] = set()  # pids of our rulesmon runs, named by their watchdogs
        self._reapers: list[threading.Thread] = []

    def spawn(self, argv: list[str], *, reap: bool = False, **kw: Any) -> subprocess.Popen[bytes]:
        """Start a process; `reap` waits on it in a thread, so it never lingers as a zombie
        for another process to see."""
        proc = subprocess.Popen(argv, **kw)
        self.popens.append(proc)
        self.owners.add(str(proc.pid))
        if reap:
            thread = threading.Thread(target=proc.wait, daemon=True)
            thread.start()
            self._reapers.append(thread)
        return proc

    def marked(self) -> list[psutil.Process]:
        """Live processes (not zombies) carrying the marker, other than this one."""
        found = []
        me = os.getpid()
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            with contextlib.suppress(psutil.Error):
                if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                argv = proc.info["cmdline"] or []
                watchdog = len(argv) > 1 and any(a.endswith("_watchdog.py") for a in argv) \
                    and bool(self.owners.intersection(argv))
                if watchdog or any(self.marker in part for part in argv):
                    found.append(proc)
        return found

    def cleanup(self) -> None:
        for proc in self.popens:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGKILL)
        for proc in self.marked():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        for proc in self.popens:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    rx = HookReceiver().start()
    try:
        yield rx
    finally:
        rx.stop()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    tracker = Procs(str(tmp_path))
    try:
        yield tracker
    finally:
        tracker.cleanup()
