"""Durations (`30s`, `5m`, `2h`, `1d`, or seconds) and sizes (`10GB`, `512MiB`, or bytes)."""

from __future__ import annotations

import math
import re

MAX_DURATION = 10 * 365 * 86400.0  # ten years
MAX_SIZE = float(1 << 60)

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*\Z")
_DURATION_PARTS = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$|^\s*\d+(\.\d+)?\s*$"

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)\s*\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2,
               "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "p": 1000**5,
               "pb": 1000**5, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
               "pib": 1024**5, "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4,
               "pi": 1024**5}
SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([kKmMgGtTpP][iI]?)?[bB]?\s*$"


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as `90s`, `5m`, `1h30m`; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 1d, got a boolean")
    if isinstance(value, int | float):
        return _finite(value, "duration", MAX_DURATION)
    if not isinstance(value, str):
        kind = type(value).__name__
        raise ValueError(f"expected a duration such as 30s, 5m, 2h or 1d, got {kind}")
    text = value.strip()
    m = _DURATION.match(text)
    if m:
        return _finite(float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"], "duration",
                       MAX_DURATION)
    compact = text.replace(" ", "")
    parts = _DURATION_PARTS.findall(compact)
    if parts and "".join(n + u for n, u in parts) == compact:
        return _finite(sum(float(n) * _DURATION_UNITS[u] for n, u in parts), "duration",
                       MAX_DURATION)
    raise ValueError(f"invalid duration {value!r}: use a number of seconds or 30s, 5m, 2h, 1d")


def parse_size(value: object) -> int:
    """Bytes from a number or a string such as `10GB`, `512MiB`; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10GB or 512MiB, got a boolean")
    if isinstance(value, int | float):
        return int(_finite(value, "size", MAX_SIZE))
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 10GB or 512MiB, got {type(value).__name__}")
    m = _SIZE.match(value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit such as 10GB, 512MiB")
    return int(_finite(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()], "size", MAX_SIZE))


def _finite(value: float, what: str, limit: float) -> float:
    """Numbers users can mean: not negative, not infinite, not absurdly large."""
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{what} is too large") from None
    if math.isnan(number) or number < 0:
        raise ValueError(f"{what} must be a number of at least 0, got {value}")
    if number > limit:
        raise ValueError(f"{what} is too large (at most {limit:.0f})")
    return number


def format_duration(seconds: float) -> str:
    """`4m 52s`, the style of the SLURM evaluation logs."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m")
    if not days and secs:
        parts.append(f"{secs}s")
    return " ".join(parts)


def format_seconds(seconds: float | None) -> str:
    """A measured time: `4.25s` and `42.1s` under a minute, then as `format_duration`; `-`
    when unknown. `rulesmon show` and the dashboard's pages print a job's times alike."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    return format_duration(seconds)


def format_size(n: float | None) -> str:
    """A measured size in binary multiples under seff's names (`512 B`, `1.50 GB`, as
    `rulesmon show` follows seff); `-` when unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} TB"  # pragma: no cover


def format_binary_size(n: float) -> str:
    """A size from KiB up in 1024-based units under their own names, two decimals, as seff
    computes them (seff writes MB for MiB): `292.45 MiB`, `2.98 GiB`."""
    value = float(n) / 1024
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while abs(value) >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.2f} {units[i]}"
