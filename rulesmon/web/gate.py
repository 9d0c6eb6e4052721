"""An HTTP server whose idle connections hold no thread, and whose threads are few.

The standard library's threading server starts a thread per accepted connection, which then
blocks reading the request for as long as the client likes: 300 idle sockets (a browser's
preconnects, a port scanner, a slowloris) are 300 threads, and past `ulimit -n` the server
cannot open the database. Here an accepted connection waits in one selector, watched by one
gate thread, until it has bytes to read; only then does one of `workers` threads take it, with
`request_timeout` seconds between two reads of its request, and `answer_deadline` seconds in all
(a client that trickles a byte every few seconds is cut off then). A connection idle for
`idle_timeout` is closed. At most `max_connections` are held at once (waiting, ready or being
answered): past that the longest waiting one is closed to take a new one, and when none is
waiting the new one gets a 503 and is closed. Nothing here raises into the accept loop.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import selectors
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TextIO

WORKERS = 8  #: threads answering requests
MAX_CONNECTIONS = 128  #: connections held at once; the rest wait in the listen backlog
IDLE_TIMEOUT = 30.0  #: seconds a connection may stay open without sending anything
REQUEST_TIMEOUT = 10.0  #: seconds a request that has begun may go without sending more
ANSWER_DEADLINE = 60.0  #: seconds a worker may spend on one connection in all

_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Retry-After: 1\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
         b"too many connections\r\n")

Address = Any  # (host, port) or (host, port, flow, scope)


class GatedHTTPServer(HTTPServer):
    """`HTTPServer` with a gate thread for waiting connections and a bounded pool of workers
    (see the module docstring)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 workers: int = WORKERS, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout: float = IDLE_TIMEOUT, request_timeout: float = REQUEST_TIMEOUT,
                 answer_deadline: float = ANSWER_DEADLINE, log: TextIO = sys.stderr) -> None:
        self.workers = max(1, workers)
        self.max_connections = max(1, max_connections)
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.answer_deadline = answer_deadline
        self._answering: dict[socket.socket, float] = {}  # connection: when a worker took it
        self.log = log
        self._lock = threading.Lock()
        self._inbox: collections.deque[tuple[socket.socket, Address]] = collections.deque()
        self._active = 0  # connections handed to a worker and not finished
        self._counts = (0, 0)  # waiting, ready: as the gate last left them
        self._closing = False
        self._started = False
        super().__init__(address, handler)  # binds: an OSError here leaves nothing to stop
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # daemon threads, as the standard library's server has: a request being answered
        # never holds up the end of the process after Ctrl-C
        self._jobs: queue.SimpleQueue[tuple[socket.socket, Address] | None] = \
            queue.SimpleQueue()
        for n in range(self.workers):
            threading.Thread(target=self._work, name=f"rulesmon-web-{n}", daemon=True).start()
        self._gate = threading.Thread(target=self._watch, name="rulesmon-web-gate",
                                      daemon=True)
        self._gate.start()
        self._started = True

    def held(self) -> tuple[int, int, int]:
        """Connections held now: (waiting to send, ready for a worker, being answered)."""
        with self._lock:
            return (*self._counts, self._active)

    # --- socketserver hooks -----------------------------------------------------------------

    def process_request(self, request: Any, client_address: Address) -> None:
        """Hand the accepted connection to the gate; no thread is started for it."""
        with self._lock:
            if self._closing:
                self.shutdown_request(request)
                return
            self._inbox.append((request, client_address))
        self._wake()

    def handle_error(self, request: Any, client_address: Address) -> None:
        """One line on the log, never a traceback (a client that vanished, mostly)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        line = f"{type(exc).__name__}: {exc}".splitlines()[0] if exc else "unknown error"
        with contextlib.suppress(Exception):
            self.log.write(f"rulesmon serve: connection from {client_address[0]}: {line}\n")
            self.log.flush()

    def server_close(self) -> None:
        if not self._started:  # the address could not be bound
            super().server_close()
            return
        with self._lock:
            self._closing = True
        self._wake()
        self._gate.join(timeout=5)
        for _ in range(self.workers):
            self._jobs.put(None)
        for sock in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        super().server_close()

    # --- the gate ---------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: the gate wakes up anyway
            self._wake_w.send(b"\0")

    def _watch(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        waiting: dict[socket.socket, tuple[float, Address]] = {}  # oldest first
        ready: collections.deque[tuple[socket.socket, Address]] = collections.deque()
        try:
            while True:
                with self._lock:
                    closing = self._closing
                    new = list(self._inbox)
                    self._inbox.clear()
                if closing:
                    for sock, _ in (*new, *ready):
                        self._close(sock)
                    for sock in waiting:
                        self._close(sock)
                    return
                now = time.monotonic()
                for sock, address in new:
                    self._admit(selector, waiting, ready, sock, address, now)
                for sock in [s for s, (since, _) in waiting.items()
                             if now - since >= self.idle_timeout]:
                    selector.unregister(sock)
                    del waiting[sock]
                    self._close(sock)
                self._dispatch(ready)
                with self._lock:
                    self._counts = (len(waiting), len(ready))
                timeout = min(self.idle_timeout, self._cut_overdue(now))
                if waiting:
                    oldest = next(iter(waiting.values()))[0]
                    timeout = min(timeout, oldest + self.idle_timeout - now)
                timeout = max(0.05, timeout)
                for key, _events in selector.select(timeout):
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    selector.unregister(conn)
                    _since, address = waiting.pop(conn)
                    ready.append((conn, address))
                self._dispatch(ready)
                with self._lock:
                    self._counts = (len(waiting), len(ready))
        except Exception as exc:  # a bug must not leave connections hanging: say it, close
            with contextlib.suppress(Exception):
                self.log.write(f"rulesmon serve: connection gate failed: "
                               f"{type(exc).__name__}: {exc}\n".splitlines()[0] + "\n")
            for sock in waiting:
                self._close(sock)
        finally:
            selector.close()

    def _cut_overdue(self, now: float) -> float:
        """End the connections a worker has spent `answer_deadline` on (its blocked read or
        write returns at once); the seconds until the next one is due."""
        with self._lock:
            overdue = [s for s, t in self._answering.items() if now - t >= self.answer_deadline]
            for sock in overdue:
                del self._answering[sock]
            started = min(self._answering.values(), default=None)
        for sock in overdue:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return self.answer_deadline if started is None else started + self.answer_deadline - now

    def _admit(self, selector: selectors.BaseSelector,
               waiting: dict[socket.socket, tuple[float, Address]],
               ready: collections.deque[tuple[socket.socket, Address]],
               sock: socket.socket, address: Address, now: float) -> None:
        with self._lock:
            held = len(waiting) + len(ready) + self._active
        if held >= self.max_connections:
            if not waiting:
                self._refuse(sock)
                return
            oldest = next(iter(waiting))
            selector.unregister(oldest)
            del waiting[oldest]
            self._close(oldest)
        try:
            selector.register(sock, selectors.EVENT_READ)
        except (OSError, ValueError):
            self._close(sock)
            return
        waiting[sock] = (now, address)

    def _dispatch(self, ready: collections.deque[tuple[socket.socket, Address]]) -> None:
        while ready:
            with self._lock:
                if self._active >= self.workers:
                    return
                self._active += 1
            self._jobs.put(ready.popleft())

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._answer(*job)

    def _answer(self, sock: socket.socket, address: Address) -> None:
        with self._lock:
            self._answering[sock] = time.monotonic()
        self._wake()  # the gate's next wake-up takes this deadline into account
        try:
            sock.settimeout(self.request_timeout)
            self.finish_request(sock, address)
        except Exception:
            self.handle_error(sock, address)
        finally:
            with self._lock:
                self._answering.pop(sock, None)
            self.shutdown_request(sock)
            with self._lock:
                self._active -= 1
            self._wake()

    @staticmethod
    def _refuse(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            sock.send(_BUSY)
            sock.shutdown(socket.SHUT_WR)
            for _ in range(16):  # what has come (closing with it unread would be a reset)
                if not sock.recv(4096):
                    break
        GatedHTTPServer._close(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.close()
