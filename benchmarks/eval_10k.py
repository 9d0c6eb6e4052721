"""Benchmark: one tick of rule evaluation for 10,000 job instances x 20 rules.

Compared, in the same process, with hand-written Python computing the same 20 conditions over
the same facts (the floor: no sandbox, no missing-data handling). Target: ratio <= 5 and under
0.5 s per tick. Run: python benchmarks/eval_10k.py
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from rulesmon.config.loader import load_text
from rulesmon.engine import Engine
from rulesmon.testing import NullLog

N = 10_000
CONDITIONS = [
    'job.state in ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL")',
    'job.state == "TIMEOUT"',
    'job.state == "RUNNING" and progress.age > 600',
    "progress.slowdown > 0.2",
    'avg(gpu.util, "5m") < 20 and job.state == "RUNNING"',
    "gpu.mem_pct > 95",
    "disk.free_pct < 10",
    "log.error_count > 0",
    "job.elapsed > job.time_limit * 0.9",
    "changed(job.state)",
    'job.reason == "QOSMaxJobsPerUserLimit"',
    "job.mem_used > job.mem_req * 0.95",
    "job.exit_code != 0 and job.terminal",
    "gpu.temp > 85",
    'job.partition == "gpu" and gpu.util < 5',
    "progress.pct >= 50 and progress.eta > 3600",
    "job.restarts > 2",
    "log.loss > 10 or log.loss < 0",
    'job.state == "PENDING" and job.wait > 3600',
    "job.cpu_eff < 20 and job.terminal",
]

STATES = ["RUNNING"] * 8 + ["PENDING", "COMPLETED", "FAILED"]


def facts(i: int, rng: random.Random) -> dict[str, Any]:
    state = rng.choice(STATES)
    return {
        "job.key": "train", "job.id": str(100000 + i), "job.source": "slurm",
        "job.state": state, "job.terminal": state in ("COMPLETED", "FAILED"),
        "job.exit_code": 0 if state != "FAILED" else 1, "job.elapsed": rng.uniform(0, 7200),
        "job.time_limit": 7200.0, "job.reason": "None", "job.mem_used": rng.randint(1, 10**10),
        "job.mem_req": 10**10, "job.partition": rng.choice(["gpu", "cpu"]),
        "job.restarts": rng.randint(0, 3), "job.wait": rng.uniform(0, 7200),
        "job.cpu_eff": rng.uniform(0, 100), "progress.age": rng.uniform(0, 900),
        "progress.slowdown": rng.random() * 0.3, "progress.pct": rng.uniform(0, 100),
        "progress.eta": rng.uniform(0, 7200), "gpu.util": rng.uniform(0, 100),
        "gpu.mem_pct": rng.uniform(0, 100), "gpu.temp": rng.uniform(40, 90),
        "disk.free_pct": rng.uniform(5, 90), "log.error_count": rng.choice([0] * 20 + [1]),
        "log.loss": rng.uniform(0, 3),
    }


def hand_written(f: dict[str, Any], prev_state: dict[str, Any], gpu_hist: list[float]) -> int:
    """The same 20 conditions as plain Python; returns how many hold."""
    s = f["job.state"]
    n = 0
    n += s in ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL")
    n += s == "TIMEOUT"
    n += s == "RUNNING" and f["progress.age"] > 600
    n += f["progress.slowdown"] > 0.2
    n += (sum(gpu_hist) / len(gpu_hist)) < 20 and s == "RUNNING"
    n += f["gpu.mem_pct"] > 95
    n += f["disk.free_pct"] < 10
    n += f["log.error_count"] > 0
    n += f["job.elapsed"] > f["job.time_limit"] * 0.9
    n += prev_state.get(f["job.id"], s) != s
    n += f["job.reason"] == "QOSMaxJobsPerUserLimit"
    n += f["job.mem_used"] > f["job.mem_req"] * 0.95
    n += f["job.exit_code"] != 0 and f["job.terminal"]
    n += f["gpu.temp"] > 85
    n += f["job.partition"] == "gpu" and f["gpu.util"] < 5
    n += f["progress.pct"] >= 50 and f["progress.eta"] > 3600
    n += f["job.restarts"] > 2
    n += f["log.loss"] > 10 or f["log.loss"] < 0
    n += s == "PENDING" and f["job.wait"] > 3600
    n += f["job.cpu_eff"] < 20 and f["job.terminal"]
    return n


class StaticProbe:
    name = "slurm"

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    def start(self, ctx: Any) -> None:
        return None

    def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
        return self.rows

    def close(self) -> None:
        return None


def main() -> None:
    rng = random.Random(7)
    rows = {f"train/{100000 + i}": facts(i, rng) for i in range(N)}
    rules = "\n".join(f"  - {{name: r{i:02d}, when: '{c}', do: [log]}}"
                      for i, c in enumerate(CONDITIONS))
    text = (f"version: 1\nname: bench\nevery: 30s\njobs:\n  train:\n    slurm: {{user: a}}\n"
            f"    progress: {{done: log.loss}}\nrules:\n{rules}\n")
    loaded = load_text(text)
    engine = Engine(loaded, state_path=Path(":memory:"), log=NullLog(),
                    probes=[StaticProbe(rows)])
    engine.tick(1000.0)  # warm: histories created, compiled code cached
    snapshots = [{**engine.run_facts, **f} for f in engine.instances.values()]
    histories = [engine.histories[k] for k in engine.instances]

    # rulesmon: the conditions exactly as the engine evaluates them
    rules_c = [r.condition for r in engine.program.rules]
    t0 = time.perf_counter()
    held = 0
    for c in rules_c:  # the engine's loop: fast path, full evaluation only when it raises
        fast = c.fast
        for f, h in zip(snapshots, histories, strict=True):
            try:
                value = fast(f, h, 1030.0)
            except Exception:
                value = c(f, h, 1030.0)
            held += bool(value)
    ours = time.perf_counter() - t0

    prev = {f["job.id"]: f["job.state"] for f in snapshots}
    gpu = [[f["gpu.util"]] for f in snapshots]
    t0 = time.perf_counter()
    held_hw = 0
    for f, g in zip(snapshots, gpu, strict=True):
        held_hw += hand_written(f, prev, g)
    base = time.perf_counter() - t0

    t0 = time.perf_counter()
    engine.tick(1030.0)
    full_tick = time.perf_counter() - t0
    engine.close()
    print(f"instances x rules: {N} x {len(CONDITIONS)} = {N * len(CONDITIONS):,} evaluations")
    print(f"hand-written Python: {base * 1000:.0f} ms ({held_hw} conditions held)")
    print(f"rulesmon compiled conditions: {ours * 1000:.0f} ms ({held} held)")
    print(f"ratio: {ours / base:.1f}x (target <= 5)")
    print(f"whole engine tick (snapshot, history, state machine, persistence): "
          f"{full_tick * 1000:.0f} ms (target < 500 ms)")


if __name__ == "__main__":
    main()
