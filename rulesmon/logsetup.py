"""structlog through stdlib logging: a readable console and, optionally, a JSON lines file.

Tracebacks never show local variables (they would print webhook URLs).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import structlog


def _drop(*keys: str) -> Any:
    """The console shows one ruleset; the JSON log keeps the key for aggregation."""

    def processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        for key in keys:
            event.pop(key, None)
        return event

    return processor


def setup(level: str = "info", json_file: Path | None = None, color: bool | None = None) -> Any:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
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
    console.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _drop("ruleset"),
                    structlog.dev.ConsoleRenderer(
                        colors=use_color, pad_event_to=18,
                        exception_formatter=structlog.dev.plain_traceback)]))
    root.addHandler(console)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(json_file, encoding="utf-8")
        fh.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.dict_tracebacks,
                        structlog.processors.JSONRenderer()]))
        root.addHandler(fh)
    return structlog.get_logger("rulesmon")
