"""The hand-over between the engine thread and whatever draws: the observer only stores.

The engine calls the feed after every tick; drawing (the dashboard's refresh thread, the plain
lines' writer thread) takes the newest report when it is ready. A reader that falls behind sees
the newest report only, never a queue that grows: state changes between two reports it saw
collapse into one, and the events of the reports it skipped are kept (up to `max_events`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine import TickReport

Event = tuple[float, str, str, str, str, str, str]


@dataclass(frozen=True)
class Batch:
    """What arrived since the last `take`."""

    report: TickReport | None
    events: list[Event]
    logs: list[tuple[float, str, str]]
    reports: int  #: how many reports arrived (1 when the reader keeps up)


class Feed:
    """An engine observer that costs a lock and two appends per tick."""

    def __init__(self, max_events: int = 500) -> None:
        self._lock = threading.Lock()
        self._report: TickReport | None = None
        self._events: deque[Event] = deque(maxlen=max_events)
        self._logs: deque[tuple[float, str, str]] = deque(maxlen=max_events)
        self._count = 0
        self._spare: TickReport | None = None
        self.ready = threading.Event()

    def __call__(self, report: TickReport) -> None:
        with self._lock:
            old, self._report = self._report, report
            if self._spare is None:
                # The previous report (thousands of snapshots) is freed by the reader when it
                # takes the next batch, not here on the engine thread.
                self._spare, old = old, None
            if report.events:
                self._events.extend(report.events)
            self._count += 1
        self.ready.set()
        del old  # only when the reader is behind

    def log(self, at: float, level: str, text: str) -> None:
        """A log line routed here while the dashboard owns the terminal."""
        with self._lock:
            self._logs.append((at, level, text))
        self.ready.set()

    def take(self) -> Batch:
        with self._lock:
            batch = Batch(self._report if self._count else None, list(self._events),
                          list(self._logs), self._count)
            self._events.clear()
            self._logs.clear()
            self._count = 0
            spare, self._spare = self._spare, None
            self.ready.clear()
        del spare  # freed on the reader's thread
        return batch

    def latest(self) -> Any:
        """The newest report seen, taken or not."""
        return self._report
