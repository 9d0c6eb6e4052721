"""Benchmark: CPU used by `rulesmon run` watching 100 idle local jobs at a 10 s tick.

Baseline in the same run: a hand-written watcher (a loop that checks the same 100 pids with
psutil every 10 s). Target: rulesmon under 1% of one core. Takes about 70 s.
Run: python benchmarks/overhead_idle.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

JOBS = 100
MEASURE = 60.0

BASELINE = """
import sys, time, psutil
pids = [int(p) for p in sys.argv[1:]]
procs = [psutil.Process(p) for p in pids]
while True:
    for p in procs:
        with p.oneshot():
            p.status(); p.cpu_percent(); p.memory_info()
    time.sleep(10)
"""


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> None:
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(JOBS)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            jobs = "\n".join(f"  j{i}:\n    local: {{pids: [{p.pid}]}}"
                             for i, p in enumerate(sleepers))
            ruleset = Path(tmp) / "idle.yaml"
            ruleset.write_text(
                "version: 1\nname: idle\nevery: 10s\njobs:\n" + jobs + "\nrules:\n"
                "  - {name: died, when: job.terminal, do: [log]}\n"
                "  - {name: hot, when: job.cpu_pct > 90, for: 1m, do: [log]}\n"
                "  - {name: big, when: job.rss > 10000000000, do: [log]}\n", encoding="utf-8")
            ours = subprocess.Popen([sys.executable, "-m", "rulesmon", "run", str(ruleset),
                                     "--state", str(Path(tmp) / "s.db")],
                                    stderr=subprocess.DEVNULL)
            base = subprocess.Popen([sys.executable, "-c", BASELINE,
                                     *(str(p.pid) for p in sleepers)])
            time.sleep(5)  # past start-up (imports, first tick)
            po, pb = psutil.Process(ours.pid), psutil.Process(base.pid)
            c0o, c0b = cpu(po), cpu(pb)
            time.sleep(MEASURE)
            used_o, used_b = cpu(po) - c0o, cpu(pb) - c0b
            ours.terminate()
            base.terminate()
            ours.wait()
            base.wait()
    finally:
        for s in sleepers:
            s.kill()
            s.wait()
    print(f"{JOBS} idle local jobs, 10 s tick, measured over {MEASURE:.0f} s")
    print(f"hand-written psutil watcher: {100 * used_b / MEASURE:.2f}% of one core")
    print(f"rulesmon run: {100 * used_o / MEASURE:.2f}% of one core (target < 1%)")
    print(f"ratio: {used_o / max(used_b, 1e-6):.1f}x")


if __name__ == "__main__":
    main()
