"""Short human formats for the dashboard and the plain lines (decimal units, like templates)."""

from __future__ import annotations

import math
import re
import time
from typing import Any

_DIGITS = re.compile(r"(\d+)")


def num(value: Any) -> float | None:
    """A finite number, or None for anything else (missing facts, bools, NaN, strings).

    Called a dozen times per instance per frame: exact type checks, no isinstance chain."""
    t = type(value)
    if t is float:
        return value if value - value == 0.0 else None  # NaN and ±inf give NaN
    if t is int:
        return float(value)
    if value is None or t is bool or t is str:
        return None
    if isinstance(value, int | float):  # subclasses (numpy scalars register as numbers)
        v = float(value)
        return v if math.isfinite(v) else None
    return None


def duration(seconds: Any) -> str:
    """`4m 52s`, `2h 34m`, `3d 4h`: two units at most, so columns stay narrow."""
    s = num(seconds)
    if s is None:
        return "?"
    if 0 < abs(s) < 0.95:
        return f"{abs(s):.1f}s"
    s = round(abs(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, sec = divmod(s, 60)
        return f"{m}m {sec}s" if sec else f"{m}m"
    if s < 86400:
        h, rem = divmod(s, 3600)
        return f"{h}h {rem // 60}m"
    d, rem = divmod(s, 86400)
    return f"{d}d {rem // 3600}h"


def eta(seconds: float, confidence: str = "") -> str:
    """`ETA 9s` when the estimates agree (confidence high), `ETA ~9s` when they differ
    somewhat, `ETA ~9s (low)` when they differ widely (`progress.confidence`)."""
    text = duration(seconds)
    if confidence == "medium":
        return f"ETA ~{text}"
    if confidence == "low":
        return f"ETA ~{text} (low)"
    return f"ETA {text}"


def size(value: Any) -> str:
    """`245 MB`, `14.2 GB`."""
    v = num(value)
    if v is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(v) < 1000 or unit == "TB":
            if unit == "B":
                return f"{v:.0f} B"
            return f"{v:.1f} {unit}" if abs(v) < 100 else f"{v:.0f} {unit}"
        v /= 1000
    return f"{v:.0f} PB"  # pragma: no cover


def rate(value: Any, unit: str = "") -> str:
    """Throughput: `251/s`, `30.0 items/s`, `0.25/s`."""
    v = num(value)
    if v is None:
        return "?"
    text = f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2g}"
    return f"{text} {unit}/s" if unit else f"{text}/s"


def count(value: Any) -> str:
    """`67,300`; fractions only when they matter."""
    v = num(value)
    if v is None:
        return "?"
    return f"{v:,.0f}" if v == int(v) or v >= 100 else f"{v:,.1f}"


def pct(value: Any) -> str:
    v = num(value)
    return "?" if v is None else f"{v:.0f}%"


def clock(ts: Any, with_date: bool = False) -> str:
    """Local wall-clock time of a timestamp."""
    v = num(ts)
    if v is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.localtime(v))


def one_line(text: Any, limit: int = 200) -> str:
    """The first non-empty line, control characters replaced (a row is one line)."""
    s = str(text) if text is not None else ""
    for line in s.splitlines():
        if line.strip():
            s = line.strip()
            break
    else:
        s = s.strip()
    s = "".join(c if c.isprintable() else " " for c in s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def natural_key(text: str) -> tuple[Any, ...]:
    """`train/2` before `train/10`."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(text))
