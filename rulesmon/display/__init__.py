"""What `rulesmon run` shows while it watches: the live dashboard or plain timestamped lines.

The last stage of the one-way flow: a display is an engine observer and reads tick reports,
never the probes or the rules. `for_run` picks one:

| how it runs                              | display                                    |
| ---------------------------------------- | ------------------------------------------ |
| `--live`, stdout is a terminal           | `live.LiveDashboard` (full screen, rich)   |
| stdout is not a terminal (pipe, file)    | `plain.PlainLines` on stdout               |
| a terminal without `--live`              | none: the log on stderr, as always         |
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from ..config.loader import Loaded


class Display(Protocol):
    """A context manager around `engine.run()` that observes its ticks."""

    @property
    def observers(self) -> list[Callable[[Any], None]]: ...

    def finished(self, code: int) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class NoDisplay:
    """A terminal without `--live`: the console log is the display."""

    observers: list[Callable[[Any], None]] = []

    def finished(self, code: int) -> None:
        return None

    def __enter__(self) -> NoDisplay:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def for_run(loaded: Loaded, *, live: bool, stdout: TextIO | None = None,
            stderr: TextIO | None = None) -> Display:
    """The display `rulesmon run` uses, from `--live` and whether stdout is a terminal."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    tty = _isatty(stdout)
    if live and tty:
        from .live import LiveDashboard

        return LiveDashboard(ruleset=loaded.ruleset.name, every=float(loaded.ruleset.every),
                             group_by=_group_by(loaded))
    if live:
        stderr.write("rulesmon: --live needs a terminal on stdout; printing plain lines\n")
    if not tty:
        from .plain import PlainLines

        return PlainLines(stdout, group_by=_group_by(loaded))
    return NoDisplay()


def _group_by(loaded: Loaded) -> dict[str, list[str]]:
    """Each job's `group_by:` keys, as both displays group training runs (jobs without any
    get the displays' default, `run_uuid`)."""
    return {k: list(j.group_by) for k, j in loaded.ruleset.jobs.items() if j.group_by}
