"""`python -m rulesmon` under tracemalloc, for `soak.py --tracemalloc DIR`: a baseline snapshot
once the process has lived SOAK_TRACE_FIRST seconds (its warm-up), then every SOAK_TRACE_EVERY
seconds the 40 allocation sites that grew most since the baseline, written over
DIR/trace-<pid>.txt (rewritten, so a SIGKILL leaves the latest)."""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def _watch(out: Path, first: float, every: float) -> None:
    time.sleep(first)
    base = tracemalloc.take_snapshot()
    began = time.monotonic()
    while True:
        time.sleep(every)
        snap = tracemalloc.take_snapshot()
        stats = snap.compare_to(base, "traceback")
        stats.sort(key=lambda s: s.size_diff, reverse=True)
        lines = [f"# {time.monotonic() - began:.0f} s after the baseline; traced now "
                 f"{tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB; total growth "
                 f"{sum(s.size_diff for s in stats) / 2**20:.2f} MB"]
        for stat in stats[:40]:
            lines.append(f"{stat.size_diff / 2**20:+.3f} MB {stat.count_diff:+d} blocks "
                         f"(now {stat.size / 2**20:.3f} MB)")
            lines.extend("    " + line for line in stat.traceback.format(limit=8))
        tmp = out.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(out)


def main() -> None:
    out = Path(os.environ["SOAK_TRACE_DIR"]) / f"trace-{os.getpid()}.txt"
    tracemalloc.start(8)
    threading.Thread(target=_watch, args=(out, float(os.environ.get("SOAK_TRACE_FIRST", "60")),
                                          float(os.environ.get("SOAK_TRACE_EVERY", "30"))),
                     daemon=True).start()
    sys.argv = ["rulesmon", *sys.argv[1:]]
    runpy.run_module("rulesmon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
