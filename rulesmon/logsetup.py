"""structlog through stdlib logging: a readable console and, optionally, a JSON lines file.

Tracebacks never show local variables (they would print webhook URLs), and every line, console
and JSON, is masked of the running ruleset's secrets (rulesmon/redact.py): each event's values
by a processor, the rendered line (a traceback too) once more before it is written.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from . import jsonout, redact


def _drop(*keys: str) -> Any:
    """The console shows one ruleset; the JSON log keeps the key for aggregation."""

    def processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        for key in keys:
            event.pop(key, None)
        return event

    return processor


CONSOLE = "rulesmon-console"


def _masked(renderer: Any) -> Any:
    """The renderer's line with the active secrets masked (tracebacks are rendered last)."""

    def render(logger: Any, name: str, event: dict[str, Any]) -> Any:
        out = renderer(logger, name, event)
        return redact.scrub(out) if isinstance(out, str) else out

    return render


def setup(level: str = "info", json_file: Path | None = None, color: bool | None = None) -> Any:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
        redact.processor,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger("rulesmon")
    root.handlers.clear()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    use_color = sys.stderr.isatty() if color is None else color
    console = logging.StreamHandler(sys.stderr)
    console.set_name(CONSOLE)
    console.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _drop("ruleset"),
                    _masked(structlog.dev.ConsoleRenderer(
                        colors=use_color, pad_event_to=18,
                        exception_formatter=structlog.dev.plain_traceback))]))
    root.addHandler(console)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        fh = _FileHandler(json_file, encoding="utf-8")
        fh.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.dict_tracebacks,
                        _masked(structlog.processors.JSONRenderer(jsonout.dumps))]))
        root.addHandler(fh)
    return structlog.get_logger("rulesmon")


class _FileHandler(logging.FileHandler):
    """The JSON log file, which a full disk (or `ulimit -f`) must not turn into a traceback
    per line: a failed write is said once on stderr, and once more when writes work again."""

    failing = False  #: the last write failed (said once)
    _failed_now = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        super().emit(record)  # a failure calls handleError
        if self.failing and not self._failed_now:
            self.failing = False
            with contextlib.suppress(Exception):
                sys.stderr.write(f"rulesmon: writing the JSON log {self.baseFilename} works "
                                 "again\n")

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed_now = True
        if self.failing:
            return
        self.failing = True
        exc = sys.exc_info()[1]
        why = (exc.strerror if isinstance(exc, OSError) and exc.strerror
               else type(exc).__name__ if exc is not None else "unknown error")
        with contextlib.suppress(Exception):  # stderr itself may be gone
            sys.stderr.write(f"rulesmon: cannot write the JSON log {self.baseFilename} ({why});"
                             " its lines are lost until writes work again\n")


class _SinkHandler(logging.Handler):
    """Hands each record, as one line without time and level, to a callable."""

    def __init__(self, sink: Callable[[float, str, str], None], level: int) -> None:
        super().__init__(level)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.msg
            if isinstance(msg, dict):
                fields = {k: v for k, v in msg.items() if not k.startswith("_") and k not in
                          ("event", "timestamp", "level", "ruleset", "logger")}
                text = " ".join([str(msg.get("event", "")),
                                 *(f"{k}={v}" for k, v in sorted(fields.items()))])
            else:
                text = record.getMessage()
            self.sink(record.created or time.time(), record.levelname.lower(), text)
        except Exception:  # a log line is never worth a crash
            self.handleError(record)


@contextlib.contextmanager
def route_console(sink: Callable[[float, str, str], None],
                  level: int = logging.WARNING) -> Iterator[None]:
    """While a full-screen display owns the terminal, console log lines (warnings and worse)
    go to `sink` instead of stderr, where they would tear the frame; the JSON log file, if
    any, still gets everything. Loggers outside rulesmon that have no handler are caught too
    (their last-resort handler would write to stderr)."""
    root = logging.getLogger("rulesmon")
    removed = [h for h in root.handlers if h.get_name() == CONSOLE]
    handler = _SinkHandler(sink, level)
    for h in removed:
        root.removeHandler(h)
    root.addHandler(handler)
    top = logging.getLogger()
    catch_all = not top.handlers
    if catch_all:
        top.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        if catch_all:
            top.removeHandler(handler)
        for h in removed:
            root.addHandler(h)
