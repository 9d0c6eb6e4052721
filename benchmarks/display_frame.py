"""Benchmark: the cost of one dashboard frame against the cost of the tick it shows.

For 10 and 5,000 job instances (SLURM-style jobs with progress, GPU, file and disk facts, plus
DAG nodes grouped into training runs), in the same process:

- tick: `Engine.tick()` with 6 rules over a probe whose facts change every tick (median);
- hand-over: the engine calling the dashboard's observer (`Feed`), the only display work on the
  engine thread;
- frame: building the view from a new report plus drawing it at 120x40 (median), which runs
  on rich's refresh thread, never on the engine's;
- redraw: drawing the same view again (what the refresh thread does between ticks);
- ticks while live: the tick measured again while the dashboard of `run --live` runs (its view
  thread builds each new report, rich redraws twice a second), against the tick alone, with
  the engine waiting half a second between ticks as `every:` makes it.

Targets at 5,000 instances: hand-over under 0.1% of the tick; frame under the tick; ticks while
live within 10% of ticks alone. (At 10 instances a tick takes under a millisecond and a frame
is mostly rich drawing 40 lines, about 10 ms, twice a second on its own thread.)
Takes about a minute. Run: python benchmarks/display_frame.py
"""

from __future__ import annotations

import contextlib
import io
import random
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from rulesmon.config.loader import load_text
from rulesmon.display.live import LiveDashboard, frame
from rulesmon.engine import Engine
from rulesmon.testing import NullLog

SIZES = (10, 5000)
TICKS = 12
GAP = 0.5  #: seconds the engine waits between ticks in the "while live" runs
RULES = """\
rules:
  - {name: failed, when: 'job.state in ("FAILED", "TIMEOUT")', severity: critical, do: [log]}
  - {name: stalled, when: 'job.state == "RUNNING" and progress.age > 600', do: [log]}
  - {name: gpu-idle, when: 'job.state == "RUNNING" and gpu.util < 20', for: 5m, do: [log]}
  - {name: disk-low, when: 'disk.free_pct < 5', do: [log]}
  - {name: slow, when: 'progress.slowdown > 0.5', do: [log]}
  - {name: all-done, scope: run, when: run.all_terminal, do: [log]}
"""


class ClusterProbe:
    """N instances whose progress, GPU and file facts move every tick."""

    name = "slurm"

    def __init__(self, n: int) -> None:
        rng = random.Random(n)
        self.tick = 0
        self.rows: dict[str, dict[str, Any]] = {}
        for i in range(n):
            state = rng.choice(["RUNNING"] * 5 + ["PENDING"] * 3 + ["COMPLETED", "FAILED"])
            terminal = state in ("COMPLETED", "FAILED")
            f: dict[str, Any] = {
                "job.key": "evals", "job.id": str(100_000 + i), "job.source": "slurm",
                "job.name": f"sweep/task{i % 40}/epoch{i % 3}", "job.state": state,
                "job.terminal": terminal, "job.succeeded": state == "COMPLETED",
                "job.elapsed": rng.uniform(0, 7200), "job.time_limit": 7200.0,
                "job.reason": "Priority", "progress.done": rng.uniform(0, 1000),
                "progress.total": 1000.0, "progress.rate": rng.uniform(0.5, 3),
                "progress.eta": rng.uniform(0, 3600), "progress.age": rng.uniform(0, 60),
                "progress.slowdown": rng.random() * 0.3, "progress.unit": "samples",
                "gpu.available": True, "gpu.count": 1, "gpu.util": rng.uniform(0, 100),
                "gpu.mem_used": 3e10, "gpu.mem_total": 8e10,
                "files.results.count": rng.randint(0, 9), "files.results.size": 1e7,
                "files.results.growth_rate": rng.uniform(0, 1e4), "files.results.valid": True,
                "files.results.stalled": False, "files.checkpoints.count": rng.randint(0, 5),
                "files.checkpoints.age": rng.uniform(0, 900), "disk.path": "/scratch",
                "disk.free": 2e12, "disk.total": 2e13, "disk.free_pct": 10.0,
            }
            if i % 10 == 0:
                f["node.vars.run_uuid"] = f"run{i % 40:02d}"
                f["node.vars.epoch"] = str(i % 5)
            f["progress.pct"] = f["progress.done"] / 10.0
            self.rows[f"evals/{100_000 + i}"] = f

    def start(self, ctx: Any) -> None:
        return None

    def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
        self.tick += 1
        for f in self.rows.values():
            if f["job.state"] == "RUNNING":
                f["progress.done"] = min(1000.0, f["progress.done"] + f["progress.rate"])
                f["progress.pct"] = f["progress.done"] / 10.0
                f["gpu.util"] = (f["gpu.util"] + 7.0) % 100.0
        return self.rows

    def close(self) -> None:
        return None


def engine_for(n: int, observers: list[Any]) -> Engine:
    text = ("version: 1\nname: bench\nevery: 10s\njobs:\n  evals:\n    slurm: {user: a}\n"
            + RULES)
    return Engine(load_text(text), state_path=Path(":memory:"), log=NullLog(),
                  probes=[ClusterProbe(n)], observers=observers)


def measure(n: int) -> dict[str, float]:
    console = Console(file=io.StringIO(), width=120, height=40, color_system="truecolor",
                      force_terminal=True, legacy_windows=False)
    dash = LiveDashboard(ruleset="bench", every=10.0, console=console, route_logs=False)
    handover: list[float] = []

    def observe(report: Any) -> None:
        t0 = time.perf_counter()
        dash.feed(report)
        handover.append(time.perf_counter() - t0)

    engine = engine_for(n, [observe])
    now = 1_000_000.0
    engine.tick(now)
    ticks, frames, redraws = [], [], []
    for i in range(1, TICKS + 1):
        t0 = time.perf_counter()
        engine.tick(now + 10 * i)
        ticks.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        console.print(dash.renderable())  # a new report: view built, then drawn
        frames.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        console.print(frame(dash.view(), 120, 40))  # same view: drawn only
        redraws.append(time.perf_counter() - t0)
        console.file = io.StringIO()
    engine.close()

    # ticks alone, then ticks while `run --live`'s dashboard runs (its view thread and rich's
    # refresh thread, drawing into a buffer the size of a 120x40 terminal)
    alone = _ticks(n, live=False)
    with_live, drawn = _ticks(n, live=True), _FRAMES[0]
    return {"tick": statistics.median(ticks), "handover": statistics.median(handover),
            "frame": statistics.median(frames), "redraw": statistics.median(redraws),
            "alone": alone, "live": with_live, "refreshes": float(drawn)}


_FRAMES = [0]


def _ticks(n: int, live: bool) -> float:
    """Median tick, with the engine waiting GAP seconds between ticks as `every:` makes it."""
    dash = LiveDashboard(ruleset="bench", every=GAP, route_logs=False, console=Console(
        file=io.StringIO(), width=120, height=40, force_terminal=True, legacy_windows=False))
    engine = engine_for(n, [dash.feed] if live else [])
    now = 2_000_000.0
    engine.tick(now)
    times = []
    with dash if live else contextlib.nullcontext():
        for i in range(1, TICKS + 1):
            time.sleep(GAP)
            t0 = time.perf_counter()
            engine.tick(now + GAP * i)
            times.append(time.perf_counter() - t0)
    _FRAMES[0] = dash.frames
    engine.close()
    return statistics.median(times)


def main() -> None:
    for n in SIZES:
        r = measure(n)
        print(f"{n:>5} instances: tick {r['tick'] * 1000:7.2f} ms | hand-over "
              f"{r['handover'] * 1e6:5.1f} us ({100 * r['handover'] / r['tick']:.3f}% of the "
              f"tick) | frame {r['frame'] * 1000:6.2f} ms ({r['frame'] / r['tick']:.2f}x the "
              f"tick) | redraw {r['redraw'] * 1000:5.2f} ms")
        print(f"{'':>5}            ticks alone {r['alone'] * 1000:7.2f} ms, while live "
              f"{r['live'] * 1000:7.2f} ms ({r['live'] / r['alone']:.2f}x, "
              f"{r['refreshes']:.0f} frames drawn)")
    print("targets at 5,000: hand-over < 0.1% of the tick; frame < 1x the tick; "
          "ticks while live within 1.10x")


if __name__ == "__main__":
    main()
