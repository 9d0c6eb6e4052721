"""Progress, throughput, ETA with confidence, slowdown and stalls."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

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


def test_job_progress_sums_instances_and_keeps_members_that_leave() -> None:
    """progress.job_* adds the instances' done and totals (or uses job_total), and an instance
    that leaves the snapshot still counts what it did."""
    from rulesmon.config.models import ProgressSpec
    from rulesmon.probes.progress import JobProgress, job_progress

    spec = ProgressSpec(done="log.done", total="log.total")
    trackers: dict[str, JobProgress] = {}
    for tick in range(5):
        instances = {f"embed/{w}": {"job.key": "embed", "progress.done": 100.0 * tick * (w + 1),
                                    "progress.total": 1000.0} for w in range(2)}
        job_progress(trackers, instances, {"embed": spec}, float(tick * 10))
    facts = instances["embed/1"]
    assert facts["progress.job_done"] == 400 + 800 and facts["progress.job_total"] == 2000
    assert facts["progress.job_pct"] == 60.0 and facts["progress.job_members"] == 2
    assert facts["progress.job_rate"] == 30.0  # 300 items per 10 s over both workers
    assert facts["progress.job_eta"] > 0
    assert instances["embed/0"]["progress.job_done"] == 1200
    left = {"embed/1": {"job.key": "embed", "progress.done": 900.0, "progress.total": 1000.0}}
    job_progress(trackers, left, {"embed": spec}, 50.0)
    assert left["embed/1"]["progress.job_done"] == 400 + 900
    fixed = ProgressSpec(done="log.done", total="log.total", job_total=4000)
    job_progress(trackers, left, {"embed": fixed}, 60.0)
    assert left["embed/1"]["progress.job_total"] == 4000


def test_engine_gives_job_progress_over_workers(tmp_path: Path) -> None:
    """Through the engine, workers with their own logs each get their own progress (which is
    never reset by another worker's figures) and the job's progress summed over them, with
    job_total as the job's expected items."""
    from rulesmon.config.loader import load_text
    from rulesmon.engine import Engine
    from rulesmon.probes.logs import LogsProbe
    from rulesmon.testing import NullLog

    text = """\
version: 1
name: p
every: 10s
jobs:
  embed:
    logs: [{path: "logs/worker_{{ worker }}.log", preset: python-logging}]
    progress: {done: log.done, total: log.total, job_total: 100000}
rules: []
"""

    class Workers:
        name = "local"

        def start(self, ctx: Any) -> None:
            return None

        def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
            return {f"embed/{w}": {"job.key": "embed", "job.source": "local", "job.state":
                                   "RUNNING", "worker.index": w} for w in range(4)}

        def close(self) -> None:
            return None

    loaded = load_text(text, str(tmp_path / "r.yaml"))
    (tmp_path / "logs").mkdir()
    engine = Engine(loaded, state_path=tmp_path / "s.db", log=NullLog(),
                    probes=[Workers(), LogsProbe(loaded.ruleset, tmp_path)])
    try:
        for tick in range(1, 6):
            for w in range(4):
                with (tmp_path / "logs" / f"worker_{w}.log").open("a") as f:
                    f.write(f"Processed {tick * 1000 * (w + 1)}/25000 items\n")
            engine.tick(1000.0 + 10 * tick)
        facts = engine.instances["embed/3"]
    finally:
        engine.close()
    assert facts["progress.done"] == 20000 and facts["progress.total"] == 25000
    assert facts["progress.elapsed"] == 40.0  # never reset
    assert facts["progress.job_done"] == 5000 * (1 + 2 + 3 + 4)
    assert facts["progress.job_total"] == 100000 and facts["progress.job_pct"] == 50.0
    assert facts["progress.job_rate"] == 1000.0
    assert facts["progress.job_elapsed"] == 40.0
