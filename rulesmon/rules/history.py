"""Per-instance fact history for `changed`, `prev`, `delta` and windowed functions.

Only facts that a stateful function names are kept, bounded in age (the longest window in the
ruleset) and in count, so memory stays flat however long a run lasts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

MAX_SAMPLES = 4096


class History:
    """Samples of tracked facts for one job instance."""

    __slots__ = ("prev", "series")

    def __init__(self) -> None:
        self.series: dict[str, deque[tuple[float, Any]]] = {}
        self.prev: dict[str, Any] = {}

    def record(self, facts: Mapping[str, Any], keys: Iterable[str], now: float,
               max_age: float) -> None:
        """Add this tick's values (before evaluation, so windows include the present)."""
        horizon = now - max_age
        for key in keys:
            value = facts.get(key)
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = deque(maxlen=MAX_SAMPLES)
            if value is not None and isinstance(value, int | float) and not isinstance(
                    value, bool):
                series.append((now, value))
            while series and series[0][0] < horizon:
                series.popleft()

    def commit(self, facts: Mapping[str, Any], keys: Iterable[str]) -> None:
        """Remember this tick's values as the previous ones (after evaluation)."""
        for key in keys:
            if key in facts:
                self.prev[key] = facts[key]

    def window(self, key: str, seconds: float, now: float) -> list[tuple[float, Any]]:
        series = self.series.get(key)
        if not series:
            return []
        start = now - seconds
        return [s for s in series if s[0] >= start]
