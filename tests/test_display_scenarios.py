"""Fixed tick reports for the dashboard tests: a few GPU workers, a cluster of 5,000 jobs with
DAG training runs, and jobs that report almost nothing."""

from __future__ import annotations

import random
from types import MappingProxyType
from typing import Any

from rulesmon.engine import TickReport

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
GB = 1_000_000_000


def report(tick: int, now: float, instances: dict[str, dict[str, Any]],
           run: dict[str, Any] | None = None,
           events: list[tuple[float, str, str, str, str, str, str]] | None = None,
           duration: float = 0.012) -> TickReport:
    """A TickReport shaped as the engine hands it to observers (read-only mappings)."""
    counts: dict[str, int] = {}
    for f in instances.values():
        state = f.get("job.state")
        if isinstance(state, str):
            counts[state] = counts.get(state, 0) + 1
    terminal = sum(1 for f in instances.values() if f.get("job.terminal"))
    ok = sum(1 for f in instances.values() if f.get("job.succeeded") is True)
    base = {"run.name": "embed-batch-5", "run.started": T0, "run.tick": tick,
            "run.total": len(instances), "run.terminal": terminal, "run.succeeded": ok,
            "run.failed": terminal - ok, "run.all_terminal": terminal == len(instances),
            "run.counts": counts, "run.elapsed": now - T0,
            "run.summary": f"{len(instances)} job instance(s)"}
    base.update(run or {})
    return TickReport(tick, now, duration,
                      MappingProxyType({k: MappingProxyType(v) for k, v in instances.items()}),
                      MappingProxyType(base), [], list(events or []), 1)


def _worker(i: int, now: float, done: float, state: str = "RUNNING", util: float = 95.0,
            ckpts: int = 5) -> dict[str, Any]:
    terminal = state != "RUNNING"
    f: dict[str, Any] = {
        "job.key": "embed", "job.id": str(4200 + i), "job.name": "embed", "job.source": "local",
        "job.state": state, "job.terminal": terminal, "job.elapsed": now - T0,
        "job.succeeded": (state == "COMPLETED") if terminal else None,
        "worker.index": i, "worker.pid": 4200 + i, "worker.gpu": i,
        "worker.state": "running" if not terminal else "exited",
        "worker.cpu_pct": 180.5, "worker.rss": 3.2 * GB,
        "worker.gpu_util": util, "worker.gpu_mem": (14.2 + i * 0.3) * GB,
        "gpu.available": True, "gpu.count": 1, "gpu.util": util,
        "gpu.mem_used": (14.2 + i * 0.3) * GB, "gpu.mem_total": 16 * GB,
        "progress.done": done, "progress.total": 25_000.0, "progress.pct": done / 250.0,
        "progress.rate": 62.5 + i, "progress.avg_rate": 61.0, "progress.unit": "items",
        "progress.eta": (25_000 - done) / 62.5, "progress.stalled": False,
        "progress.confidence": ("high", "medium", "low", "high")[i % 4],
        "log.loss": 0.345 - i / 100, "log.epoch": 3, "log.epochs": 5, "log.error_count": 0,
        "files.outputs.count": 1, "files.outputs.size": (245 + i) * 1_000_000,
        "files.outputs.growth_rate": 8_533.0 + i * 50, "files.outputs.valid": True,
        "files.outputs.stalled": False,
        "files.checkpoints.count": ckpts, "files.checkpoints.age": 720.0 + i,
        "files.checkpoints.expected_next": 1080.0 - i, "files.checkpoints.late": False,
        "disk.path": "/scratch/outputs", "disk.free": 234 * GB, "disk.total": 285 * GB,
        "disk.free_pct": 82.1,
    }
    if terminal:
        f.update({"job.exit_code": 137, "job.signal": 9, "job.diagnosis": "oom",
                  "worker.exit_code": 137, "progress.rate": 0.0})
    return f


def demo() -> list[TickReport]:
    """Four GPU workers (the GPU design document's display); worker 3 is OOM-killed at the
    third tick."""
    out = []
    for tick in (1, 2, 3):
        now = T0 + 9240 + tick * 10
        workers = {f"embed/{i}": _worker(i, now, 16_000 + tick * 600 + i * 100)
                   for i in range(4)}
        events = []
        if tick == 1:
            events.append((now, "fire", "checkpoint-saved", "embed/0", "info",
                           "[INFO] checkpoint-saved", "Checkpoint saved (epoch_5.pt)"))
        if tick == 2:
            workers["embed/2"]["worker.gpu_util"] = 12.0
            workers["embed/2"]["gpu.util"] = 12.0
            events.append((now, "fire", "gpu-idle", "embed/2", "warning", "[WARNING] gpu-idle",
                           "GPU 2 utilisation 12% for 5m"))
        if tick == 3:
            workers["embed/3"] = _worker(3, now, 16_000 + 1200 + 300, state="FAILED")
            events.append((now, "fire", "worker-died", "embed/3", "critical",
                           "[CRITICAL] worker-died",
                           "worker 3 killed (exit 137, OOM)\nTraceback (most recent call last)"))
            events.append((now, "resolve", "gpu-idle", "embed/2", "warning",
                           "[RESOLVED] gpu-idle", ""))
        out.append(report(tick, now, workers, events=events))
    return out


def cluster(n: int = 5000, seed: int = 8) -> TickReport:
    """A big SLURM sweep plus a DAG of training runs: most rows must collapse."""
    rng = random.Random(seed)
    now = T0 + 5400
    instances: dict[str, dict[str, Any]] = {}
    states = ["RUNNING"] * 3 + ["PENDING"] * 5 + ["COMPLETED"] * 2
    for i in range(n - 60):
        state = rng.choice(states)
        if i in (17, 311):
            state = "FAILED"
        if i == 42:
            state = "TIMEOUT"
        if i in (5, 9):
            state = "RUNNING"
        terminal = state in ("COMPLETED", "FAILED", "TIMEOUT")
        f: dict[str, Any] = {
            "job.key": "evals", "job.id": str(812_000 + i), "job.source": "slurm",
            "job.name": f"r8_lr1e-5/task{i % 40}/epoch{i % 3}", "job.state": state,
            "job.terminal": terminal, "job.partition": "gpu",
        }
        if state == "PENDING":
            f.update({"job.reason": "Priority" if i % 7 else "QOSMaxJobsPerUserLimit",
                      "job.wait": 60.0 * (i % 90)})
        if state == "RUNNING":
            pct_done = (i * 37) % 100
            f.update({"job.elapsed": 30.0 * (i % 200), "job.time_limit": 7200.0,
                      "job.node_list": f"gpu{i % 64:02d}",
                      "progress.done": float(pct_done * 10), "progress.total": 1000.0,
                      "progress.pct": float(pct_done), "progress.rate": 1.5,
                      "progress.eta": (1000 - pct_done * 10) / 1.5, "progress.unit": "samples",
                      "progress.confidence": ("high", "medium", "low")[i % 3],
                      "progress.stalled": i == 5,
                      "progress.age": 900.0 if i == 5 else 3.0,
                      "gpu.available": True, "gpu.count": 1,
                      "gpu.util": 3.0 if i == 9 else 70.0 + i % 30,
                      "gpu.mem_used": 30.0 * GB, "gpu.mem_total": 80.0 * GB})
        if terminal:
            f.update({"job.succeeded": state == "COMPLETED", "job.elapsed": 292.0,
                      "job.exit_code": 0 if state == "COMPLETED" else 1,
                      "job.diagnosis": {"COMPLETED": "ok", "FAILED": "nonzero_exit",
                                        "TIMEOUT": "time_limit"}[state]})
        f.update({"files.results.count": 3 if state != "PENDING" else 0,
                  "files.results.size": 12_000_000 if state != "PENDING" else 0,
                  "files.results.growth_rate": 250.0 if state == "RUNNING" else 0.0,
                  "files.results.valid": i != 500, "files.results.stalled": i == 750,
                  "disk.path": "/scratch", "disk.free": 2.1e12, "disk.total": 20e12,
                  "disk.free_pct": 10.5})
        instances[f"evals/{812_000 + i}"] = f
    for run in range(4):
        uuid = f"{run:x}a3f9c{run}"
        for epoch in range(5):
            for step in ("train", "eval", "ckpt"):
                node = f"{step}_{uuid}_e{epoch}"
                done = epoch < run + 1
                state = "COMPLETED" if done else "RUNNING" if epoch == run + 1 and \
                    step == "train" else "PENDING"
                if run == 2 and epoch == 3 and step == "eval":
                    state = "FAILED"
                terminal = state in ("COMPLETED", "FAILED")
                instances[f"pipeline/{node}"] = {
                    "job.key": "pipeline", "job.source": "dagman", "job.state": state,
                    "job.terminal": terminal,
                    "job.succeeded": (state == "COMPLETED") if terminal else None,
                    "node.name": node, "node.vars.run_uuid": uuid,
                    "node.vars.epoch": str(epoch),
                    "node.retries": 1 if state == "FAILED" else 0,
                }
    events = [(now - 5, "fire", "job-failed", "evals/812311", "critical",
               "[CRITICAL] job-failed", "r8_lr1e-5/task31/epoch2 FAILED (exit 1)"),
              (now - 4, "fire", "job-hit-time-limit", "evals/812042", "warning",
               "[WARNING] job-hit-time-limit", "time limit exceeded (2h 0m)")]
    run_facts = {"run.name": "r8-eval", "probe.slurm.ok": False, "probe.slurm.failures": 2,
                 "probe.slurm.error": "sacct: error: Slurm accounting storage is down",
                 "probe.files.ok": True}
    return report(37, now, instances, run=run_facts, events=events, duration=0.214)


def bare() -> TickReport:
    """Jobs whose sources said almost nothing: only states, or not even that."""
    now = T0 + 75
    instances: dict[str, dict[str, Any]] = {
        "sim/1": {"job.key": "sim", "job.state": "RUNNING"},
        "sim/2": {"job.key": "sim", "job.state": "PENDING"},
        "sim/3": {"job.key": "sim", "job.state": "COMPLETED", "job.terminal": True,
                  "job.succeeded": True},
        "watch/-": {"job.key": "watch"},
    }
    return report(2, now, instances, run={"run.name": "bare"})
