"""Durations and sizes as users write them."""

from __future__ import annotations

import pytest

from rulesmon.config.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("90", 90),
    (45, 45), (1.5, 1.5), ("250ms", 0.25), ("1w", 604800),
])
def test_durations(text: object, seconds: float) -> None:
    """Numbers are seconds; strings take s, m, h, d, w, ms and combinations."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "m5", "", "-3", -3, True, None, "1h 30"])
def test_bad_durations(bad: object) -> None:
    """Anything else is refused with a message that shows the accepted forms."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_sizes() -> None:
    """Sizes accept decimal and binary units."""
    assert parse_size("10GB") == 10_000_000_000
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size(123) == 123
    with pytest.raises(ValueError, match="size"):
        parse_size("10 parsecs")


def test_format_duration() -> None:
    """Durations read like the SLURM evaluation logs: 4m 52s."""
    assert format_duration(292) == "4m 52s"
    assert format_duration(45) == "45s"
    assert format_duration(90000) == "1d 1h 0m"
