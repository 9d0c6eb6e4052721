"""Benchmark: what writing history adds to a tick of 1,000 running jobs.

A scripted scheduler reports 1,000 jobs every tick (every 10 s): CPU time, memory and
progress move on every job every tick. History samples every 60 s per job, so about a sixth
of the jobs get a sample row (resources and progress) each tick, plus one sample with every
job row written (a job first seen, changed or ended). Two workloads: steady (one
job ends and a new one starts per tick: 8,640 jobs a day, a busy user) and a storm (2% of
the jobs end per tick and as many start: 20 job rows rewritten and 20 inserted per tick).
Measured in the same run, median of 60 ticks after 6 warm-up ticks: the recorder's own work
(building the rows and running them inside the tick's transaction), and the whole tick with
history enabled against the same tick with `history: {enabled: false}`. The first tick,
which inserts 1,000 new job rows, is reported separately. Target: under 5 ms per tick for
the steady workload. Run: python benchmarks/history_write.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rulesmon.config.loader import load_text
from rulesmon.engine import Engine
from rulesmon.history.recorder import Recorder
from rulesmon.testing import NullLog

JOBS = 1000
WARMUP = 6
TICKS = 60
STEADY, STORM = 1, 20
TARGET = 0.005

RULESET = """\
version: 1
name: bench
every: 10s
history: {{enabled: {enabled}, sample_every: 60s}}
jobs:
  train:
    slurm: {{user: a}}
rules:
  - {{name: failed, when: 'job.state == "FAILED"', do: [log]}}
"""


class Scheduler:
    """1,000 jobs whose figures move every tick; a few change state."""

    name = "slurm"

    def __init__(self, churn: int) -> None:
        self.churn = churn
        self.tick = 0
        self.next_id = JOBS
        self.jobs = dict.fromkeys(range(JOBS), 0)  # job id -> tick it started

    def start(self, ctx: Any) -> None:
        return None

    def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
        self.tick += 1
        out: dict[str, dict[str, Any]] = {}
        ending = set(list(self.jobs)[: self.churn]) if self.tick > 1 else set()
        for job_id, started in list(self.jobs.items()):
            age = self.tick - started
            facts = {
                "job.key": "train", "job.source": "slurm", "job.id": str(job_id),
                "job.name": f"ft-{job_id}", "job.state": "RUNNING", "job.partition": "gpu",
                "job.start_time": 1000.0 + started * 10, "job.cpu_user": age * 9.5,
                "job.cpu_sys": age * 0.4, "job.rss": 2_000_000_000 + age * 1000,
                "job.mem_used": 2_000_000_000 + age * 1000, "job.elapsed": age * 10.0,
                "progress.done": float(age * 100), "progress.total": 100_000.0,
                "progress.pct": age / 10, "progress.rate": 10.0, "progress.eta": 9000.0,
            }
            if job_id in ending:
                facts.update({"job.state": "COMPLETED", "job.exit_code": 0,
                              "job.terminal": True, "job.end_time": 1000.0 + self.tick * 10})
            out[f"train/{job_id}"] = facts
        for job_id in ending:  # reported ended once, then replaced by a new job
            del self.jobs[job_id]
            self.jobs[self.next_id] = self.tick
            self.next_id += 1
        return out

    def close(self) -> None:
        return None


def measure(enabled: bool, churn: int) -> tuple[list[float], list[float], float]:
    """(tick durations, recorder durations, first tick) over TICKS measured ticks."""
    spent: list[float] = []
    original = Recorder.stage

    def timed_stage(self: Recorder, *args: Any) -> Any:
        t0 = time.perf_counter()
        writer = original(self, *args)
        staged = time.perf_counter() - t0
        if writer is None:
            spent.append(staged)
            return None

        def write(db: Any) -> None:
            t1 = time.perf_counter()
            writer(db)
            spent.append(staged + time.perf_counter() - t1)

        return write

    Recorder.stage = timed_stage  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(load_text(RULESET.format(enabled=str(enabled).lower())),
                            state_path=Path(tmp) / "s.db", log=NullLog(),
                            probes=[Scheduler(churn)])
            t0 = time.perf_counter()
            engine.tick(1000.0)
            first = time.perf_counter() - t0
            ticks = []
            for i in range(1, WARMUP + TICKS):
                t0 = time.perf_counter()
                engine.tick(1000.0 + i * 10)
                if i >= WARMUP:
                    ticks.append(time.perf_counter() - t0)
            engine.close()
    finally:
        Recorder.stage = original  # type: ignore[method-assign]
    return ticks, spent[WARMUP:], first


def main() -> None:
    print(f"{JOBS} running jobs, figures moving every tick, samples every 60 s at a 10 s tick")
    for label, churn in (("steady", STEADY), ("storm", STORM)):
        off, _, first_off = measure(False, churn)
        on, recorder, first_on = measure(True, churn)
        rec = statistics.median(recorder)
        verdict = f" (target < {TARGET * 1000:.0f} ms: {'met' if rec < TARGET else 'MISSED'})" \
            if churn == STEADY else ""
        print(f"{label}, {churn} job(s) ending and starting per tick:")
        print(f"  tick without history: median {statistics.median(off) * 1000:6.1f} ms")
        print(f"  tick with history:    median {statistics.median(on) * 1000:6.1f} ms "
              f"(+{(statistics.median(on) - statistics.median(off)) * 1000:.1f} ms)")
        print(f"  recorder per tick:    median {rec * 1000:6.2f} ms, max "
              f"{max(recorder) * 1000:.2f} ms{verdict}")
        if churn == STEADY:
            print(f"  first tick (1,000 new job rows): {first_on * 1000:.0f} ms with history, "
                  f"{first_off * 1000:.0f} ms without")


if __name__ == "__main__":
    main()
