"""Benchmark: `rulesmon serve` pages over a large history.

A database of the current schema holding 100,000 jobs of 99 earlier runs and one run of a
5,000-node DAG (50 layers of 100 nodes, each node the child of two nodes of the layer
before; 90% success, failures and their descendants cancelled, the last layers running or
pending), and one job with 1,000 samples. Measured in the same run, median of 5, on one
read-only connection per page as the server opens it: the baseline is the history view's own
read of the same 5,000 jobs (`queries.jobs`, what `rulesmon history --limit 5000 --format json`
computes); then the run page (figures, alerts, layer-by-layer DAG, the first 1,000 job rows),
its JSON, the runs page, a 300-node DAG run drawn node by node, and the job page with its
1,000 samples drawn. Target: the 5,000-job run page within 3x the baseline. About 20 s.
Run: python benchmarks/web_pages.py [JOBS]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rulesmon.history import queries, rows
from rulesmon.history.schema import connect
from rulesmon.web.server import App

NODES = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
OTHERS = 100_000
TARGET = 3.0


def _median(fn: Callable[[], Any]) -> float:
    return statistics.median(timeit.repeat(fn, number=1, repeat=5))


def _dag_run(con: Any, ruleset: str, count: int, width: int, now: float) -> int:
    run_id = int(con.execute("INSERT INTO runs (ruleset, started, ended, ticks, exit_code) "
                             "VALUES (?, ?, ?, 5000, 1)", (ruleset, now - 3600, now)).lastrowid
                 or 0)
    names = [f"n{i}" for i in range(count)]
    bad: set[int] = set()
    batch = []
    start = int(con.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchone()[0]) + 1
    for i, name in enumerate(names):
        layer, pos = divmod(i, width)
        parents = [] if layer == 0 else sorted({(layer - 1) * width + pos,
                                                (layer - 1) * width + (pos * 7 + 3) % width})
        children = [j for j in ((layer + 1) * width + pos,) if j < count]
        if any(p in bad for p in parents):
            state, status = "CANCELLED", "cancelled"
            bad.add(i)
        elif i % 10 == 3:
            state, status = "FAILED", "failed"
            bad.add(i)
        elif layer >= count // width - 2:
            state, status = ("RUNNING", "running") if pos % 2 else ("PENDING", "pending")
        else:
            state, status = "COMPLETED", "success"
        details = {"node.name": name, "node.parents": [names[p] for p in parents],
                   "node.children": [names[c] for c in children], "node.state": state}
        values = {"job_id": str(10_000 + i), "name": name, "source": "dagman",
                  "tool": "pipe", "state": state, "status": status,
                  "exit_code": 1 if status == "failed" else 0 if status == "success" else None,
                  "start_time": now - 3000 + i * 0.5, "duration": 60.0 + i % 300,
                  "cpu_total": 50.0 + i % 100, "mem_peak": (1 + i % 64) << 24,
                  "details": rows.dumps(details), "params": rows.dumps({"rc": "0"})}
        batch.append((start + i, rows.new_uid(), run_id, ruleset, f"pipe/{name}",
                      now - 3500 + i * 0.1, values))
    con.execute("BEGIN")
    rows.insert_many(con, batch)
    con.execute("COMMIT")
    return run_id


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        con = connect(path)
        now = time.time()
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.executemany("INSERT INTO runs (ruleset, started, ended, ticks, exit_code) VALUES "
                        "('busy', ?, ?, 100, 0)",
                        [(now - 86400 * (100 - r), now - 86400 * (100 - r) + 3600)
                         for r in range(99)])
        rows.insert_many(con, [
            (i + 1, rows.new_uid(), 1 + i % 99, "busy", f"train/{i}", now - 86400 * 100 + i,
             {"job_id": str(i), "name": "train", "source": "slurm", "tool": "train",
              "state": "COMPLETED", "status": "success", "exit_code": 0, "duration": 100.0,
              "cpu_total": 90.0, "mem_peak": 1 << 30})
            for i in range(OTHERS)])
        con.execute("COMMIT")
        big = _dag_run(con, "dag", NODES, 100, now)
        small = _dag_run(con, "dag300", 300, 12, now)
        sampled = con.execute("SELECT id, uid FROM jobs WHERE run_id = ? ORDER BY id LIMIT 1",
                              (big,)).fetchone()
        con.execute("BEGIN")
        con.executemany("INSERT INTO samples (job, t, cpu_pct, mem_rss, mem_peak, done, total, "
                        "pct) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(sampled[0], now - 3000 + 3 * k, 50 + k % 50, (100 + k) << 20,
                          (100 + k) << 20, k, 1000, k / 10) for k in range(1000)])
        con.execute("COMMIT")
        con.close()
        print(f"generated {OTHERS:,} + {NODES:,} + 300 jobs in {time.perf_counter() - t0:.1f}s")

        app = App(path)

        def page(target: str) -> Callable[[], Any]:
            def fetch() -> None:
                status, _ctype, body = app.handle(target)
                assert status == 200, body[:200]
            return fetch

        def baseline() -> None:
            from rulesmon.web import db as webdb

            ro = webdb.connect(path)
            try:
                json.dumps(queries.jobs(ro, queries.Filters(ruleset="dag"), limit=NODES))
            finally:
                ro.close()

        base = _median(baseline)
        results = [
            (f"run page, {NODES:,} jobs (DAG by layer)", _median(page(f"/run/{big}"))),
            (f"/api/run, {NODES:,} jobs", _median(page(f"/api/run/{big}"))),
            ("runs page, 101 runs", _median(page("/"))),
            ("run page, 300-node DAG drawn", _median(page(f"/run/{small}"))),
            ("job page, 1,000 samples", _median(page(f"/job/{sampled[1]}"))),
        ]
        size = len(app.handle(f"/run/{big}")[2])
        print(f"baseline: history read of the same {NODES:,} jobs: {base * 1000:.0f} ms")
        for label, seconds in results:
            print(f"{label:<40} {seconds * 1000:7.0f} ms  {seconds / base:5.1f}x")
        print(f"run page size: {size / 1024:.0f} KiB")
        ratio = results[0][1] / base
        print(f"target: run page within {TARGET:.0f}x the baseline: "
              f"{'met' if ratio <= TARGET else 'MISSED'} ({ratio:.1f}x)")


if __name__ == "__main__":
    main()
