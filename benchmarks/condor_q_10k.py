"""Benchmark: one htcondor tick over 10,000 queued jobs.

The recorded HTCondor 23.9 running-job ad (~5 KB of JSON, about 120 attributes) is repeated
10,000 times with distinct ids (50 MB of `condor_q -json`), and served by a stand-in condor_q
that prints the file, so only rulesmon's own work varies. The probe watches them with one
owner selection: one condor_q call, JSON parsing, attribution and facts for every job.

Baseline, in the same run: the same tool call and `json.loads` of its output, which any watcher
of these jobs pays. Measured: median of 5 ticks after one warm-up. Target: the tick within
3x the baseline.
Run: python benchmarks/condor_q_10k.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rulesmon.config.loader import load_text
from rulesmon.probes import condor_cli as cli
from rulesmon.probes.base import TickContext
from rulesmon.probes.htcondor import HTCondorProbe

JOBS = 10_000
TICKS = 5
TARGET = 3.0
RECORDED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "htcondor" / \
    "condor_q-23.9.json"


def make_queue(root: Path) -> Path:
    """10,000 copies of the recorded running job, as one condor_q -json output."""
    ad = next(a for a in json.loads(RECORDED.read_text(encoding="utf-8"))
              if a["JobStatus"] == 2)
    ads = []
    for i in range(JOBS):
        copy = dict(ad, ClusterId=1000 + i // 10, ProcId=i % 10,
                    GlobalJobId=f"vm#{1000 + i // 10}.{i % 10}#1795335509")
        ads.append(copy)
    path = root / "queue.json"
    path.write_text(json.dumps(ads, indent=2), encoding="utf-8")
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        queue = make_queue(root)
        bin_dir = root / "bin"
        bin_dir.mkdir()
        tool = bin_dir / "condor_q"
        tool.write_text(f"#!/bin/sh\ncat '{queue}'\n", encoding="utf-8")
        tool.chmod(0o755)
        os.environ[cli.ENV_BIN] = str(bin_dir)
        rs = load_text("version: 1\nname: bench\njobs:\n  all:\n    htcondor: "
                       "{owner: rmcondor, min_interval: 0s}\n", base=root).ruleset
        probe = HTCondorProbe(rs, root)

        def tick() -> float:
            started = time.perf_counter()
            facts = probe.collect(TickContext(now=time.time(), ruleset=rs, base_dir=root))
            took = time.perf_counter() - started
            assert len(facts) == JOBS
            return took

        def baseline() -> float:
            started = time.perf_counter()
            out = subprocess.run([str(tool)], capture_output=True, check=True).stdout
            assert len(json.loads(out)) == JOBS
            return time.perf_counter() - started

        tick()
        baseline()
        ticks = statistics.median(tick() for _ in range(TICKS))
        base = statistics.median(baseline() for _ in range(TICKS))
        size = queue.stat().st_size / 1e6
        ratio = ticks / base
        print(f"condor_q output: {JOBS} jobs, {size:.0f} MB")
        print(f"htcondor tick:   {ticks * 1000:.0f} ms (median of {TICKS})")
        print(f"baseline:        {base * 1000:.0f} ms (the same call + json.loads)")
        print(f"ratio:           {ratio:.2f}x (target <= {TARGET:g}x): "
              f"{'ok' if ratio <= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
