"""Benchmark: memory of LogsProbe while a writer grows a log from 10 MB to 1 GB.

A writer process appends the realistic mix of benchmarks/logs_scan.py (logging lines, tqdm `\\r`
updates, tracebacks) and, every 256 MB, one 3 MB line without a break (a JSON dump printed on
one line, cut by the tailer to its last 64 KB). The probe (this process) collects after every
STEP MB, so it reads each piece once. RSS is measured with psutil after the first collect of
the 10 MB log (start), after the first STEP collect (to tell a one-time step from growth with
the file) and after the last one (end). Target: growth within 20 MB.

The presets are tqdm, traceback, cuda-oom, nccl and nan-loss. python-logging is left out only
for time: its throughput pattern makes 1 GB take about four minutes (see logs_scan.py); what it
keeps between collects is a few last values, like every extractor here.
Takes about 1 minute. Run: python benchmarks/logs_memory.py
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext
from rulesmon.probes.logs import LogsProbe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logs_scan import make_block  # the same realistic mix

MB = 1 << 20
START = 10 * MB
END = 1 << 30
STEP = 32 * MB  #: the probe collects after every STEP bytes written
LONG_EVERY = 256 * MB
PRESETS = ["tqdm", "traceback", "cuda-oom", "nccl", "nan-loss"]
TARGET = 20 * MB
KEY = "embed/0"

WRITER = r"""
import sys
log, block_path, long_every = sys.argv[1], sys.argv[2], int(sys.argv[3])
block = open(block_path, "rb").read()
long_line = b'{"dump": [' + b",".join(b"%d" % i for i in range(450_000)) + b"]}\n"
size = 0
next_long = long_every
with open(log, "ab") as f:
    for command in sys.stdin:
        target = int(command)
        while size < target:
            if size >= next_long:
                f.write(long_line)
                size += len(long_line)
                next_long += long_every
            f.write(block)
            size += len(block)
        f.flush()
        print(size, flush=True)
"""


def main() -> None:
    me = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="rulesmon-mem-") as tmp:
        log = Path(tmp) / "grow.log"
        block = Path(tmp) / "block.bin"
        block.write_bytes(make_block(random.Random(7)))
        text = (f"version: 1\nname: mem\njobs:\n  embed:\n    logs:\n      - path: {log}\n"
                f"        preset: [{', '.join(PRESETS)}]\n")
        ruleset = load_text(text, "mem.yaml", env={}, base=Path(tmp)).ruleset
        probe = LogsProbe(ruleset, Path(tmp))
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(block),
                                   str(LONG_EVERY)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdin is not None and writer.stdout is not None

        def grow(target: int) -> int:
            assert writer.stdin is not None and writer.stdout is not None
            writer.stdin.write(f"{target}\n")
            writer.stdin.flush()
            return int(writer.stdout.readline())

        def collect() -> dict[str, object]:
            ctx = TickContext(now=time.time(), ruleset=ruleset, base_dir=Path(tmp),
                              instances={KEY: {"job.key": "embed"}})
            return probe.collect(ctx)[KEY]

        started = time.perf_counter()
        size = grow(START)
        collect()
        gc.collect()
        rss_start = me.memory_info().rss
        peak = rss_start
        collects = 1
        facts: dict[str, object] = {}
        rss_first = 0
        while size < END:
            size = grow(min(END, size + STEP))
            facts = collect()
            collects += 1
            peak = max(peak, me.memory_info().rss)
            if collects == 2:
                gc.collect()
                rss_first = me.memory_info().rss
        writer.stdin.close()
        writer.wait(timeout=60)
        gc.collect()
        rss_end = me.memory_info().rss
        offset = probe._instances[KEY].logs[0].tailers[str(log)].offset
        assert offset == size, (offset, size)
        probe.close()
        elapsed = time.perf_counter() - started

    growth = rss_end - rss_start
    print(f"log grown from {START // MB} MB to {size / MB:.0f} MB, {collects} collects "
          f"(one per {STEP // MB} MB written), presets [{', '.join(PRESETS)}], {elapsed:.0f} s")
    print(f"  errors counted: {facts['log.error_count']}, "
          f"tqdm updates: {facts['log.extractors.tqdm.count']}")
    print(f"RSS at start: {rss_start / MB:.1f} MB")
    print(f"RSS after the first {STEP // MB} MB collect: {rss_first / MB:.1f} MB")
    print(f"RSS at end:   {rss_end / MB:.1f} MB (peak {peak / MB:.1f} MB)")
    print(f"  from the first {STEP // MB} MB collect to the end: "
          f"{(rss_end - rss_first) / MB:+.1f} MB")
    verdict = "meets" if abs(growth) <= TARGET else "misses"
    print(f"growth: {growth / MB:+.1f} MB ({verdict} the target of within {TARGET // MB} MB)")


if __name__ == "__main__":
    main()
