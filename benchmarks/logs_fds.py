"""Benchmark: open descriptors and tick time of LogsProbe following 2,000 logs through one glob.

Two phases in this process, each a fresh probe over the same 2,000 files, each tick appending a
line to every file before collecting:

- bounded: the soft RLIMIT_NOFILE lowered to 1024, so the descriptor pool holds at most 512
  (half of it) and the tailers reopen files by path as they take turns;
- baseline: the soft limit at 8192, so the pool (4096) holds every file open, as the tailers did
  before the pool.

Reported: descriptors open in this process (/proc/self/fd) at the peak of each phase, above what
was open before it, and the bounded phase's time per tick as a ratio to the baseline's (the cost
of reopening). Target: the bounded phase stays within its pool's limit; no time target.
Takes about 30 seconds. Run: python benchmarks/logs_fds.py
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

from rulesmon.config.loader import load_text
from rulesmon.probes import handles
from rulesmon.probes.base import TickContext
from rulesmon.probes.logs import LogsProbe

FILES = 2000
TICKS = 10
KEY = "work/0"
RULESET = """\
version: 1
name: fds
jobs:
  work:
    logs:
      - path: "logs/*.log"
        extract:
          step: 'step (?P<step>\\d+)'
"""


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def phase(root: Path, soft: int) -> tuple[int, int, float, int]:
    """(pool limit, peak descriptors above the start, seconds per tick, final log.sum.step)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))
    handles.default_pool.cache_clear()
    limit = handles.default_pool().limit
    ruleset = load_text(RULESET, "fds.yaml", env={}, base=root).ruleset
    probe = LogsProbe(ruleset, root)
    start = fds()
    peak = 0
    elapsed = 0.0
    total = 0
    try:
        for tick in range(TICKS):
            for i in range(FILES):
                with (root / "logs" / f"w{i:04d}.log").open("a") as f:
                    f.write(f"step {tick * FILES + i}\n")
            ctx = TickContext(now=time.time(), ruleset=ruleset, base_dir=root,
                              instances={KEY: {"job.key": "work", "job.id": "1"}})
            t0 = time.perf_counter()
            facts = probe.collect(ctx)[KEY]
            elapsed += time.perf_counter() - t0
            peak = max(peak, fds() - start)
            total = int(facts.get("log.sum.step", 0))
            assert "log.error" not in facts, facts["log.error"]
    finally:
        probe.close()
    return limit, peak, elapsed / TICKS, total


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 8192:
        raise SystemExit(f"needs a hard RLIMIT_NOFILE of 8192 (it is {hard})")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        for i in range(FILES):
            (root / "logs" / f"w{i:04d}.log").write_text("start\n")
        expected = sum((TICKS - 1) * FILES + i for i in range(FILES))
        try:
            b_limit, b_peak, b_tick, b_total = phase(root, 1024)
            u_limit, u_peak, u_tick, u_total = phase(root, 8192)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            handles.default_pool.cache_clear()
    assert b_total == u_total == expected, (b_total, u_total, expected)
    print(f"{FILES} logs, {TICKS} ticks, a line appended to each per tick")
    print(f"bounded  (ulimit -n 1024): pool {b_limit}, peak {b_peak} descriptors open, "
          f"{b_tick * 1000:.1f} ms per tick")
    print(f"baseline (ulimit -n 8192): pool {u_limit}, peak {u_peak} descriptors open, "
          f"{u_tick * 1000:.1f} ms per tick")
    print(f"descriptors: {b_peak / FILES:.2f} per followed log bounded, "
          f"{u_peak / FILES:.2f} baseline; tick time ratio bounded/baseline "
          f"{b_tick / u_tick:.2f}")
    verdict = "ok" if b_peak <= b_limit else "OVER"
    print(f"target: peak within the pool's limit ({b_limit}): {verdict}")


if __name__ == "__main__":
    main()
