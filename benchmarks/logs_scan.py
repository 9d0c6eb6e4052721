"""Benchmark: LogsProbe reading a 1 GB log from offset 0, against `grep -c` on the same file.

The log is a realistic mix (Python-logging progress lines, other logging lines, tqdm `\\r`
updates with block characters, now and then a traceback, a CUDA OOM, an NCCL error or a NaN
loss), made fast by repeating a ~1 MB block. In the same run:

- grep: `grep -c 'Processed '` (the progress literal), page cache warmed first;
- rulesmon: one LogsProbe with presets python-logging, tqdm, traceback, cuda-oom, nccl and
  nan-loss, collect() called until it has read the whole file (64 MB per call at most).

Target: rulesmon within 3x grep's time. A probe that has not caught up after DEADLINE seconds is
stopped there, and its MB/s is taken over what it read (the run stays under 3 minutes). When
the target is missed, each preset is timed alone on a 32 MB log of the same mix (and reading
with no preset at all), then each pattern of the slowest preset alone, so the slow pattern
shows. The files are deleted at the end. Takes 1-3 minutes.
Run: python benchmarks/logs_scan.py
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext
from rulesmon.probes.log_presets import PRESETS as LOG_PRESETS
from rulesmon.probes.logs import LogsProbe

SIZE = 1 << 30  # 1 GiB
BLOCK = 1 << 20  # the repeated block, about 1 MiB
PREFIX = 32 << 20  # the log each preset is timed on alone
DEADLINE = 120.0  # seconds the full read may take before it is stopped
PRESETS = ["python-logging", "tqdm", "traceback", "cuda-oom", "nccl", "nan-loss"]
TARGET = 3.0
KEY = "embed/0"

TRACEBACKS = [
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
    "capacity of 79.14 GiB of which 1.06 GiB is free.",
    "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
    "ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO for details)",
    "ValueError: could not convert string to float: 'n/a'",
]


def make_block(rng: random.Random) -> bytes:
    """About 1 MiB of log, ending with a newline."""
    out: list[str] = []
    size = 0
    done, seconds = 0, 0
    while size < BLOCK:
        seconds += 1
        stamp = f"2025-01-15 {10 + seconds // 3600 % 10:02d}:{seconds // 60 % 60:02d}:" \
                f"{seconds % 60:02d},{rng.randrange(1000):03d}"
        r = rng.random()
        if r < 0.70:
            done += rng.randrange(50, 500)
            text = (f"{stamp} - INFO - Processed {done}/10000000 items - loss: "
                    f"{rng.uniform(0.1, 2):.3f} - {rng.uniform(200, 300):.1f} items/s\n")
        elif r < 0.85:
            text = rng.choice([
                f"{stamp} - DEBUG - fetched shard {rng.randrange(4096)} from "
                f"s3://bucket/corpus/part-{rng.randrange(10**5):05d}.parquet\n",
                f"{stamp} - INFO - Batch {rng.randrange(1, 400)}/400 done\n",
                f"{stamp} - WARNING - Skipping item {rng.randrange(10**7)}: empty text\n",
            ])
        elif r < 0.86:
            total = 1000
            updates = []
            for i in range(0, total + 1, 25):
                pct = 100 * i // total
                bar = "█" * (pct // 10) + "▌" * (pct % 10 >= 5)
                updates.append(f"\rMap: {pct:3d}%|{bar:<10}| {i}/{total} "
                               f"[00:{i // 100:02d}<00:{(total - i) // 100:02d}, "
                               f"{rng.uniform(90, 110):.2f}it/s]")
            text = "".join(updates) + "\n"
        elif r < 0.999:
            loss = "nan" if rng.random() < 0.02 else f"{rng.uniform(0.1, 2):.3f}"
            text = f"{stamp} - INFO - Epoch {rng.randrange(1, 10)}/10 - loss: {loss}\n"
        else:
            text = ("Traceback (most recent call last):\n"
                    '  File "/home/alice/embed/run.py", line 88, in <module>\n'
                    "    main()\n"
                    '  File "/home/alice/embed/run.py", line 71, in main\n'
                    "    out = model(batch)\n"
                    f"{rng.choice(TRACEBACKS)}\n")
        out.append(text)
        size += len(text.encode())
    return "".join(out).encode()


def make_log(path: Path, size: int | None = None) -> None:
    size = SIZE if size is None else size
    block = make_block(random.Random(42))
    with path.open("wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)


def grep_seconds(path: Path) -> tuple[float, int]:
    cmd = ["grep", "-c", "Processed ", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, int(done.stdout)


def probe_seconds(path: Path, presets: list[str], *, extract: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None,
                  deadline: float | None = None) -> tuple[float, int, dict[str, object]]:
    """Seconds for a fresh LogsProbe to read the file (or what it read until `deadline`
    seconds), the bytes read and the last facts. `extract`/`errors`: the log's own patterns."""
    text = (f"version: 1\nname: scan\njobs:\n  embed:\n    logs:\n      - path: {path}\n"
            f"        preset: [{', '.join(presets)}]\n"
            f"        extract: {json.dumps(extract or {})}\n"
            f"        errors: {json.dumps(errors or {})}\n")
    ruleset = load_text(text, "scan.yaml", env={}, base=path.parent).ruleset
    probe = LogsProbe(ruleset, path.parent)
    size = path.stat().st_size
    deadline = DEADLINE if deadline is None else deadline
    facts: dict[str, object] = {}
    start = time.perf_counter()
    offset = 0
    while offset < size and time.perf_counter() - start < deadline:
        ctx = TickContext(now=time.time(), ruleset=ruleset, base_dir=path.parent,
                          instances={KEY: {"job.key": "embed"}})
        facts = probe.collect(ctx)[KEY]
        offset = probe._instances[KEY].logs[0].tailers[str(path)].offset
    seconds = time.perf_counter() - start
    probe.close()
    return seconds, offset, facts


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rulesmon-scan-") as tmp:
        path = Path(tmp) / "big.log"
        start = time.perf_counter()
        make_log(path)
        size = path.stat().st_size
        mb = size / 1e6
        print(f"log: {mb:.0f} MB written in {time.perf_counter() - start:.1f} s")
        g_sec, g_count = grep_seconds(path)
        print(f"grep -c 'Processed ': {g_sec:.2f} s, {mb / g_sec:.0f} MB/s ({g_count} lines)")
        p_sec, read, facts = probe_seconds(path, PRESETS)
        rmb = read / 1e6
        print(f"LogsProbe [{', '.join(PRESETS)}]: {rmb:.0f} MB in {p_sec:.2f} s, "
              f"{rmb / p_sec:.1f} MB/s (items extractor: "
              f"{facts['log.extractors.items.count']} lines, errors: {facts['log.error_count']})")
        if read < size:
            print(f"  not caught up after {DEADLINE:.0f} s: stopped at {rmb:.0f} of {mb:.0f} MB; "
                  f"the whole file would take about {p_sec * size / read:.0f} s")
        ratio = (p_sec / read) / (g_sec / size)
        verdict = "meets" if ratio <= TARGET else "misses"
        print(f"ratio: {ratio:.1f}x grep's time ({verdict} the target of <= {TARGET:.0f}x)")
        path.unlink()
        if ratio > TARGET:
            small = Path(tmp) / "small.log"
            make_log(small, PREFIX)
            smb = small.stat().st_size / 1e6
            print(f"each preset alone, on a {smb:.0f} MB log of the same mix:")
            timings: dict[str, float] = {}
            for presets in [[], *([p] for p in PRESETS)]:
                sec, _, _ = probe_seconds(small, presets)
                name = presets[0] if presets else "(no preset: read, split, tail)"
                timings[name] = sec
                print(f"  {name:32s} {sec:6.2f} s  {smb / sec:6.1f} MB/s")
            slowest = max(PRESETS, key=timings.__getitem__)
            print(f"each pattern of {slowest} alone:")
            preset = LOG_PRESETS[slowest]
            for name, pattern in preset.extract.items():
                sec, _, _ = probe_seconds(small, [], extract={name: pattern})
                print(f"  extract {name:24s} {sec:6.2f} s  {smb / sec:6.1f} MB/s  {pattern}")
            for name, error in preset.errors.items():
                sec, _, _ = probe_seconds(small, [], errors={name: error.pattern})
                print(f"  errors  {name:24s} {sec:6.2f} s  {smb / sec:6.1f} MB/s  "
                      f"{error.pattern}")
            small.unlink()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
