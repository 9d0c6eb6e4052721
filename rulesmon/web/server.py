"""`rulesmon serve`: the dashboard over HTTP, with the standard library's threading server.

One read-only connection per request, so a request sees the ticks committed before it and
never holds anything the engine waits for. Pages carry a Content-Security-Policy that allows
no script at all (the pages have none), which turns any escaping slip into dead text. Bound to
the loopback by default, the server also refuses requests whose Host header names another
machine, so a web page elsewhere cannot read it through DNS rebinding. There is no
authentication: anyone who can connect reads everything. Connections go through gate.py: an
idle one holds no thread, and few threads answer requests.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

from .. import jsonout
from . import db, pages
from .fmt import REFRESH_CHOICES, message_page, page
from .gate import GatedHTTPServer

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

Response = tuple[int, str, bytes]


class App:
    """Routes a path to a page or its JSON; knows nothing of sockets."""

    def __init__(self, path: Path, log: TextIO = sys.stderr) -> None:
        self.path = path
        self.label = str(path)
        self.log = log

    def handle(self, target: str) -> Response:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query))
        api = path.startswith("/api/")
        try:
            con = db.connect(self.path)
            try:
                return self._route(con, path, query)
            finally:
                con.close()
        except pages.NotFound as exc:
            return self._message(404, "Not found", str(exc), api)
        except Exception as exc:  # one line in the browser and on stderr, never a traceback
            line = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.log.write(f"rulesmon serve: {path}: {line}\n")
            self.log.flush()
            return self._message(500, "Error", f"could not read the history: {line}", api)

    def _route(self, con: sqlite3.Connection, path: str, query: dict[str, str]) -> Response:
        segments = [s for s in path.split("/") if s]
        api = bool(segments) and segments[0] == "api"
        if api:
            segments = segments[1:]
        match segments:
            case []:
                data = pages.runs_data(con)
                return self._json(data["runs"]) if api else self._html(
                    pages.index_html(data), path, query)
            case ["runs"] if api:
                return self._json(pages.runs_data(con)["runs"])
            case ["stats"] if api:
                from ..history.queries import summary

                return self._json(summary(con))
            case ["run", ident]:
                run_id = _run_id(ident)
                data, graph = pages.run_data(con, run_id)
                return self._json(pages.run_json(data, graph)) if api else self._html(
                    pages.run_html(data, graph, query), path, query)
            case ["tracked"]:
                tracked = pages.tracked_data(con)
                return self._json(tracked) if api else self._html(
                    pages.tracked_html(tracked), path, query)
            case ["job", *rest] if rest:  # an instance key (train/12345) has a slash
                job = pages.job_data(con, "/".join(rest))
                return self._json(job) if api else self._html(pages.job_html(job), path, query)
        raise pages.NotFound(f"no page {path}")

    def _html(self, built: tuple[str, str], path: str, query: dict[str, str]) -> Response:
        title, body = built
        refresh = _refresh(query.get("refresh"))
        text = page(title, body, path=path, query=query, db_label=self.label, refresh=refresh)
        return 200, "text/html; charset=utf-8", text.encode("utf-8")

    @staticmethod
    def _json(value: Any) -> Response:
        # compact: the C encoder (an indent would take the pure-Python one, 5x slower)
        text = jsonout.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return 200, "application/json; charset=utf-8", text.encode("utf-8")

    def _message(self, status: int, title: str, line: str, api: bool) -> Response:
        if api:
            body = jsonout.dumps({"error": line}).encode("utf-8")
            return status, "application/json; charset=utf-8", body
        text = message_page(title, line, db_label=self.label)
        return status, "text/html; charset=utf-8", text.encode("utf-8")


def _run_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise pages.NotFound(f"no run {text!r} in this history")
    return int(text)


def _refresh(text: str | None) -> int | None:
    """The auto-refresh interval asked for: one of the offered ones, else any 2..3600 s."""
    if not text or not text.isdigit():
        return None
    value = int(text)
    return value if value in REFRESH_CHOICES or 2 <= value <= 3600 else None


def _handler(app: App, loopback: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def version_string(self) -> str:
            return "rulesmon"

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def _answer(self, *, head: bool) -> None:
            if loopback and not _local_host(self.headers.get("Host", "")):
                status, ctype, body = 421, "text/plain; charset=utf-8", \
                    b"this dashboard answers only requests addressed to the loopback\n"
            else:
                status, ctype, body = app.handle(self.path)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", _CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


def _local_host(header: str) -> bool:
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host in _LOOPBACK


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(info[4][0] in ("127.0.0.1", "::1") or str(info[4][0]).startswith("127.")
               for info in infos)


def serve(path: Path, *, host: str = "127.0.0.1", port: int = 8642,
          out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Serve the dashboard until Ctrl-C or SIGTERM; 0 then, 2 when `path` is a file but not
    SQLite (a ruleset or a text file named .db: the wrong argument), 1 when the database or
    the address cannot be used (one line on `err`)."""
    wrong = db.not_sqlite(path)
    if wrong:
        err.write(f"rulesmon: {wrong}\n")
        return 2
    try:
        db.check(path)
    except db.WebError as exc:
        err.write(f"rulesmon: {exc}\n")
        return 1
    loopback = _is_loopback(host)
    server_class: type[GatedHTTPServer] = GatedHTTPServer
    if ":" in host:
        class _V6(GatedHTTPServer):
            address_family = socket.AF_INET6

        server_class = _V6
    app = App(path, log=err)
    try:
        server = server_class((host, port), _handler(app, loopback), log=err)
    except OSError as exc:
        err.write(f"rulesmon: cannot listen on {host}:{port}: {exc.strerror or exc}\n")
        return 1
    # Ctrl-C and SIGTERM ask the loop to finish (shutdown() from another thread) rather than
    # raise in it: an exception raised inside a request's dispatch would be swallowed there.
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    out.write(f"rulesmon serve: http://{shown}:{bound}/ ({path}, read-only)\n")
    out.flush()
    if not loopback:
        err.write(f"rulesmon: warning: listening on {host}, not the loopback: the dashboard "
                  "has no authentication, anyone who can reach this port reads the history\n")
        err.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
        server.server_close()
    err.write("rulesmon serve: stopped\n")
    err.flush()
    return 0
