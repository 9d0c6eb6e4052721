"""Benchmark: one tick of the files and logs probes when nothing has changed.

1,000 watched files in 10 file-only jobs, each with four named sets (checkpoints by glob,
metrics validated as JSON, output shards by regex pattern validated as JSONL, samples in
subfolders with new-file reporting), and 200 logs: 20 jobs of 10 workers, each worker's log
found through a `{{ worker }}` path template, with the presets python-logging, tqdm,
traceback, cuda-oom, nccl and nan-loss. The logs already hold a few hundred lines, read by the
warm-up ticks; no byte is added afterwards.

Measured: one tick = FilesProbe.collect + LogsProbe.collect on the same TickContext, median
of 20 after 3 warm-up ticks. Target: under 50 ms.

Also measured: the first tick of a LogsProbe following one glob (`many/worker_*.log`) over
1,000 and 2,000 logs of a few lines each, where every file is opened and read once (it must
stay well within the probe timeout; a cost per file that grows with the files already
followed makes it quadratic). Takes a few seconds.
Run: python benchmarks/idle_tick.py
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext, instance_key
from rulesmon.probes.files import FilesProbe
from rulesmon.probes.logs import LogsProbe

FILE_JOBS = 10
LOG_JOBS = 20
WORKERS = 10
WARMUP = 3
TICKS = 20
TARGET = 0.050
PRESETS = "[python-logging, tqdm, traceback, cuda-oom, nccl, nan-loss]"
GLOB_LOGS = (1000, 2000)  #: logs matched by one glob, for the first-tick case


def make_files(root: Path) -> int:
    """Ten run folders of 100 files each; returns how many files were made."""
    count = 0
    for j in range(FILE_JOBS):
        run = root / "runs" / f"r{j}"
        for sub in ("ckpt", "metrics", "out", *(f"samples/s{k}" for k in range(5))):
            (run / sub).mkdir(parents=True, exist_ok=True)
        for i in range(20):
            (run / "ckpt" / f"step-{i * 500:06d}.pt").write_bytes(b"\0" * 4096)
        for i in range(30):
            (run / "metrics" / f"eval-{i:03d}.json").write_text(
                json.dumps({"step": i * 500, "loss": 1 / (i + 1), "acc": 0.5 + i / 100}))
        for i in range(40):
            rows = "".join(json.dumps({"id": i * 100 + r, "vec": [0.1] * 8}) + "\n"
                           for r in range(20))
            (run / "out" / f"shard-{i:04d}.jsonl").write_text(rows)
        for i in range(10):
            (run / "samples" / f"s{i % 5}" / f"sample-{i}.txt").write_text("a generated text\n")
        count += 100
    return count


def make_logs(root: Path) -> int:
    lines = "".join(
        f"2025-01-15 10:23:{s % 60:02d},123 - INFO - Processed {s * 100}/100000 items - "
        f"loss: 0.{500 - s:03d} - 250.5 items/s\n" for s in range(300))
    count = 0
    for j in range(LOG_JOBS):
        folder = root / "logs" / f"train{j}"
        folder.mkdir(parents=True)
        for w in range(WORKERS):
            (folder / f"worker-{w}.log").write_text(lines)
            count += 1
    return count


def ruleset_text(root: Path) -> str:
    out = ["version: 1", "name: idle", "jobs:"]
    for j in range(FILE_JOBS):
        out += [f"  run{j}:", f"    workdir: {root}/runs/r{j}", "    files:",
                "      checkpoints: {glob: 'ckpt/*.pt', stall_after: 1h}",
                "      metrics: {glob: 'metrics/*.json', validate: json}",
                "      shards: {pattern: 'out/shard-(?P<n>\\d+)\\.jsonl', validate: jsonl}",
                "      samples: {glob: 'samples/**/*.txt', new_files: true}"]
    for j in range(LOG_JOBS):
        out += [f"  train{j}:", "    logs:",
                f"      - path: '{root}/logs/train{j}/worker-{{{{ worker }}}}.log'",
                f"        preset: {PRESETS}"]
    return "\n".join(out) + "\n"


def glob_first_tick(root: Path, n: int) -> float:
    """Seconds of the first LogsProbe tick following one glob over `n` logs."""
    folder = root / f"many{n}"
    folder.mkdir()
    lines = "".join(f"2025-01-15 10:23:{s:02d},123 - INFO - Processed {s * 10}/1000 items\n"
                    for s in range(5))
    for w in range(n):
        (folder / f"worker_{w}.log").write_text(lines)
    text = (f"version: 1\nname: glob\njobs:\n  many:\n    logs:\n"
            f"      - path: '{folder}/worker_*.log'\n        preset: {PRESETS}\n")
    ruleset = load_text(text, "glob.yaml", env={}, base=root).ruleset
    logs = LogsProbe(ruleset, root)
    ctx = TickContext(now=time.time(), ruleset=ruleset, base_dir=root,
                      instances={"many/1": {"job.key": "many", "job.name": "many"}})
    t0 = time.perf_counter()
    out = logs.collect(ctx)
    took = time.perf_counter() - t0
    assert out["many/1"]["log.files"] == n, out["many/1"]["log.files"]
    logs.close()
    return took


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rulesmon-idle-") as tmp:
        root = Path(tmp)
        n_files = make_files(root)
        n_logs = make_logs(root)
        ruleset = load_text(ruleset_text(root), "idle.yaml", env={}, base=root).ruleset
        files, logs = FilesProbe(ruleset, root), LogsProbe(ruleset, root)
        instances: dict[str, dict[str, Any]] = {}
        for j in range(LOG_JOBS):
            for w in range(WORKERS):
                instances[instance_key(f"train{j}", f"{9000 + j}.{w}")] = {
                    "job.key": f"train{j}", "job.name": f"train{j}", "job.id": str(9000 + j),
                    "job.source": "slurm", "worker.index": w}

        def tick() -> tuple[float, float, int, int]:
            ctx = TickContext(now=time.time(), ruleset=ruleset, base_dir=root,
                              instances=instances)
            t0 = time.perf_counter()
            f_out = files.collect(ctx)
            t1 = time.perf_counter()
            l_out = logs.collect(ctx)
            t2 = time.perf_counter()
            return t1 - t0, t2 - t1, len(f_out), len(l_out)

        for _ in range(WARMUP):
            tick()
        samples = [tick() for _ in range(TICKS)]
        _, _, n_file_inst, n_log_inst = samples[-1]
        assert n_log_inst == LOG_JOBS * WORKERS, n_log_inst
        assert logs.errors == {}, logs.errors
        files.close()
        logs.close()
        first = {n: glob_first_tick(root, n) for n in GLOB_LOGS}

    totals = [f + g for f, g, _, _ in samples]
    med = statistics.median(totals)
    print(f"{n_files} watched files (FilesProbe, {FILE_JOBS} jobs x 4 sets, JSON/JSONL "
          f"validated), {n_logs} logs (LogsProbe, {PRESETS}); {n_file_inst} + {n_log_inst} "
          "instances; no new bytes")
    print(f"one tick, median of {TICKS} after {WARMUP} warm-up: {med * 1000:.1f} ms "
          f"(files {statistics.median(f for f, _, _, _ in samples) * 1000:.1f} ms, "
          f"logs {statistics.median(g for _, g, _, _ in samples) * 1000:.1f} ms; "
          f"min {min(totals) * 1000:.1f}, max {max(totals) * 1000:.1f} ms)")
    verdict = "meets" if med < TARGET else "misses"
    print(f"target: under {TARGET * 1000:.0f} ms ({verdict})")
    for n, took in first.items():
        print(f"first tick of one glob over {n:,} logs: {took * 1000:.0f} ms")


if __name__ == "__main__":
    main()
