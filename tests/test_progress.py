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
    eta = facts["progress.job_eta"]
    assert isinstance(eta, float) and eta > 0
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


# --- progress bars in logs -----------------------------------------------------------------------


def test_bar_durations_as_tqdm_and_rich_print_them() -> None:
    """Elapsed and remaining times read as tqdm (`05:07`, `1:02:03`) and Rich (`0:00:07`) print
    them; `?` and Rich's `-:--:--` are unknown."""
    from rulesmon.probes.progress import duration

    assert duration("00:23") == 23 and duration("05:07") == 307
    assert duration("1:02:03") == 3723 and duration("0:00:07") == 7
    assert duration("26:00:00") == 93600
    assert duration("?") is None and duration("-:--:--") is None and duration("") is None


def test_bar_follower_keeps_the_main_bar() -> None:
    """Another bar replaces the main one only once it has run at least as long as the main
    bar had (a checkpoint or evaluation bar drawn mid-run never does); the next epoch's bar
    (same description but its digits, same total) always does."""
    from rulesmon.probes.progress import BarFollower, bar_family

    follower = BarFollower()
    train, shards = bar_family("", "16"), bar_family("Writing model shards:", "1")
    assert follower.offer(bar_family("Map:", "1000"), 20.0)  # the first bar seen
    assert not follower.offer(train, 3.0)  # training has run 3 s; Map ran 20 s
    assert follower.offer(train, 20.0) and follower.is_main(train)
    assert not follower.offer(shards, 0.0) and not follower.offer(shards, 19.0)
    assert follower.offer(train, 21.0)
    assert bar_family("Epoch 0: ", "40") == bar_family("Epoch 12:", "40") == ("Epoch #", "40")
    assert follower.offer(bar_family("Epoch 0:", "40"), 30.0)
    assert follower.offer(bar_family("Epoch 1:", "40"), 0.0)  # the next epoch, from 0 s
    assert follower.offer(bar_family("Sanity", "2"), None)  # no elapsed time: no evidence


def test_bar_values_slow_rate_and_rich_epochs() -> None:
    """A slow bar's `1.28s/it` is a rate of 1/1.28 it/s, a rate printed as 0.00 (Rich before
    its first speed) is unknown, Rich's `Epoch 1/2` is 3 epochs and its `3/40` 8%; the bar's
    own groups (`_desc`, `_elapsed`) give no value."""
    from rulesmon.probes.log_presets import bar_values

    family, elapsed, values = bar_values({"_desc": " ", "pct": "38", "done": "6", "total": "16",
                                          "_elapsed": "00:08", "_s_per_it": "1.28"})
    assert family == ("", "16") and elapsed == 8
    assert values == {"pct": "38", "done": "6", "total": "16", "rate": 1 / 1.28}
    _, _, values = bar_values({"epoch": "0", "_last_epoch": "2", "done": "3", "total": "40",
                               "_elapsed": "0:00:00", "rate": "0.00"})
    assert values == {"epoch": "0", "done": "3", "total": "40", "epochs": 3, "pct": 8}


def test_lightning_whole_run_from_the_epoch_bar() -> None:
    """Lightning's epoch bar restarts every epoch; the whole run's done is `epoch * total +
    done`, and its total and ETA (at the bar's rate) need the epoch count."""
    from rulesmon.probes.log_presets import lightning_run

    bar = {"log.epoch": 1, "log.done": 20, "log.total": 40, "log.rate": 10.0}
    assert lightning_run(bar) == {"log.run_done": 60}
    facts = lightning_run({**bar, "log.epochs": 3})
    assert facts == {"log.run_done": 60, "log.run_total": 120, "log.run_pct": 50.0,
                     "log.eta": 6.0}
    assert lightning_run({"log.epoch": 1, "log.done": 20}) == {}  # `20/?`: no total


def test_whole_run_progress_never_restarts_on_a_real_lightning_log(tmp_path: Path) -> None:
    """`progress: {done: log.run_done, total: log.run_total}` over a real RichProgressBar log
    read while written: the tracker never restarts at an epoch's end (its done only grows),
    and its ETA is above 0 until the last batch, where `log.done/log.total` would restart
    every epoch."""
    from .test_presets import Job, fixture

    data = fixture("lightning_rich_pty.log")
    job = Job(tmp_path, "lightning")
    run, per_epoch = Tracker(), Tracker()
    t, dones, restarts = 0.0, [], 0
    for start in range(0, len(data), 1500):
        job.write(data[start:start + 1500])
        facts = job.collect()
        t += 10
        if "log.run_total" not in facts:
            continue
        progress = run.update(t, facts["log.run_done"], facts["log.run_total"], 300, None,
                              "batches")
        epoch = per_epoch.update(t, facts["log.done"], facts["log.total"], 300, None,
                                 "batches")
        restarts += epoch["progress.elapsed"] == 0
        dones.append(progress["progress.done"])
        if progress["progress.done"] < 120 and "progress.eta" in progress:
            assert progress["progress.eta"] > 0
    assert dones == sorted(dones) and dones[-1] == 120
    assert restarts >= 3  # the per-epoch count restarted (its first sample, then 2 epochs)


def test_engine_whole_run_progress_with_an_epoch_count_given(tmp_path: Path) -> None:
    """Through the engine, on a real TQDMProgressBar log (no epoch count until `fit` ends),
    `progress: {done: log.run_done, total: log.total * 3}` gives the whole run's percent
    across epochs (epoch 1 at 20/40 is 50%), never restarting at an epoch's end."""
    from rulesmon.config.loader import load_text
    from rulesmon.engine import Engine
    from rulesmon.probes.logs import LogsProbe
    from rulesmon.testing import NullLog

    from .test_presets import fixture

    text = """\
version: 1
name: p
every: 10s
jobs:
  fit:
    logs: [{path: fit.log, preset: lightning}]
    progress: {done: log.run_done, total: log.total * 3, unit: batches}
rules: []
"""

    class One:
        name = "local"

        def start(self, ctx: Any) -> None:
            return None

        def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
            return {"fit/0": {"job.key": "fit", "job.source": "local", "job.state": "RUNNING"}}

        def close(self) -> None:
            return None

    data = fixture("lightning_tqdm_real.log")
    half = data.index(b"\r", data.index(b"Epoch 1:  50%|")) + len(b"\rEpoch")
    loaded = load_text(text, str(tmp_path / "r.yaml"))
    engine = Engine(loaded, state_path=tmp_path / "s.db", log=NullLog(),
                    probes=[One(), LogsProbe(loaded.ruleset, tmp_path)])
    pcts: list[float] = []
    try:
        for tick, start in enumerate(range(0, half, 2000)):
            with (tmp_path / "fit.log").open("ab") as f:
                f.write(data[start:min(start + 2000, half)])
            engine.tick(1000.0 + 10 * tick)
            pct = engine.instances["fit/0"].get("progress.pct")
            if isinstance(pct, float):
                pcts.append(pct)
        facts = engine.instances["fit/0"]
    finally:
        engine.close()
    assert facts["log.epoch"] == 1 and facts["log.done"] == 20
    assert facts["progress.done"] == 60 and facts["progress.total"] == 120
    assert facts["progress.pct"] == 50.0 and pcts == sorted(pcts)
    assert facts["progress.elapsed"] == 10 * (len(pcts) - 1)  # from the first sample on
