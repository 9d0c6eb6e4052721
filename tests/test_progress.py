"""Progress, throughput, ETA with confidence, slowdown and stalls."""

from __future__ import annotations

import random

from rulesmon.probes.progress import Tracker


def test_eta_within_ten_percent_after_ten_percent_progress() -> None:
    """On a steady job (10 items/s with ±5% jitter per interval) every ETA after 10% progress
    is within ±10% of the true remaining time."""
    rng = random.Random(3)
    total, rate, step = 10_000.0, 10.0, 10.0
    tracker = Tracker()
    done, t = 0.0, 0.0
    while done < total:
        facts = tracker.update(t, done, total, window=300, stall_after=None, unit="items")
        if done >= 0.1 * total:
            true_remaining = (total - done) / rate
            assert abs(facts["progress.eta"] - true_remaining) <= 0.1 * true_remaining + step
            assert facts["progress.confidence"] in ("high", "medium")
        done = min(total, done + rate * step * rng.uniform(0.95, 1.05))
        t += step
    assert facts["progress.pct"] > 99


def test_slowdown_and_stall() -> None:
    """A drop from peak throughput shows as slowdown; no progress for stall_after is a stall."""
    tracker = Tracker()
    t, done = 0.0, 0.0
    for _ in range(40):
        tracker.update(t, done, 10_000.0, window=60, stall_after=120, unit="items")
        t, done = t + 10, done + 100
    for _ in range(12):
        facts = tracker.update(t, done, 10_000.0, window=60, stall_after=120, unit="items")
        t, done = t + 10, done + 50
    assert 0.4 < facts["progress.slowdown"] < 0.6
    assert facts["progress.stalled"] is False
    for _ in range(14):
        facts = tracker.update(t, done, 10_000.0, window=60, stall_after=120, unit="items")
        t += 10
    assert facts["progress.stalled"] is True and facts["progress.age"] >= 120


def test_restarted_counting_resets() -> None:
    """A counter that goes backwards (a restarted job) starts a fresh estimate."""
    tracker = Tracker()
    tracker.update(0, 500, 1000, 300, None, "items")
    tracker.update(10, 600, 1000, 300, None, "items")
    facts = tracker.update(20, 10, 1000, 300, None, "items")
    assert facts["progress.elapsed"] == 0
