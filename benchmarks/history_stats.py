"""Benchmark: `rulesmon stats` and the other views over 1,000,000 recorded jobs.

A year of a busy user's history, generated with SQL into a fresh database of the current
schema, through its triggers: five sources, 20 tools, six partitions, four GPU resources,
five outcomes (80% success), times spread over 365 days. Measured in the same run, median
of 5: a bare `SELECT count(*) FROM jobs` (baseline); the statistics aggregated from the job
rows themselves (one scan of the covering index jobs_stats, the path taken when a filter
the weekly totals do not carry is given); the full statistics as `rulesmon stats` computes
them (totals, success rate, CPU time, durations, by source / tool / partition / resource,
deliveries) from the weekly totals; the same for the last 30 days; the 20 newest failed
jobs; one job by id prefix; then `rulesmon stats` end to end as a command. Target:
statistics under 1 s. Takes about a minute (most of it generating).
Run: python benchmarks/history_stats.py [ROWS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rulesmon.history import queries
from rulesmon.history.schema import connect

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
TARGET = 1.0
YEAR = 365 * 86400.0

_GENERATE = """
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :rows),
g AS (SELECT n, abs(random()) % 1000 AS r, abs(random()) % 100 AS o, abs(random()) % 100000 AS d
      FROM seq)
INSERT INTO jobs (uid, run_id, ruleset, instance, job_id, name, source, tool, state, status,
                  exit_code, partition, resource, node, user, cpus, start_time, end_time,
                  duration, cpu_user, cpu_sys, cpu_total, mem_peak, mem_req, cpu_eff,
                  first_seen, last_seen)
SELECT lower(hex(randomblob(16))), n / 500, 'busy', 'job' || (n % 20) || '/' || n, n,
       'run-' || n,
       CASE WHEN r < 500 THEN 'slurm' WHEN r < 700 THEN 'htcondor' WHEN r < 850 THEN 'local'
            WHEN r < 950 THEN 'track' ELSE 'celery' END,
       'tool' || (n % 20),
       CASE WHEN o < 80 THEN 'COMPLETED' WHEN o < 90 THEN 'FAILED' WHEN o < 95 THEN 'TIMEOUT'
            WHEN o < 98 THEN 'CANCELLED' ELSE 'FAILED' END,
       CASE WHEN o < 80 THEN 'success' WHEN o < 90 THEN 'failed' WHEN o < 95 THEN 'timeout'
            WHEN o < 98 THEN 'cancelled' ELSE 'error' END,
       CASE WHEN o < 80 THEN 0 WHEN o < 90 THEN 1 ELSE NULL END,
       CASE WHEN r < 500 THEN 'p' || (n % 6) ELSE '' END,
       CASE WHEN r >= 500 AND r < 700 THEN 'gpu' || (n % 4) ELSE '' END,
       'node' || (n % 200), 'alice', 1 + n % 16,
       :t0 + n * :step, :t0 + n * :step + d / 10.0, d / 10.0,
       d / 12.0, d / 100.0, d / 12.0 + d / 100.0, (1 + n % 64) * 1048576 * 64,
       (1 + n % 64) * 1048576 * 128, 50.0 + r % 50,
       :t0 + n * :step, :t0 + n * :step + d / 10.0
FROM g
"""


def _median(fn: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        con = connect(path)
        t0 = time.perf_counter()
        # Indexes are built after the rows (same end state, faster to generate).
        indexes = [r[0] for r in con.execute(
            "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='jobs' AND sql "
            "IS NOT NULL")]
        for (name,) in list(con.execute(
                "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='jobs' AND "
                "sql IS NOT NULL")):
            con.execute(f"DROP INDEX {name}")
        con.execute("BEGIN")
        con.execute(_GENERATE, {"rows": ROWS, "t0": time.time() - YEAR, "step": YEAR / ROWS})
        con.execute("COMMIT")
        for sql in indexes:
            con.execute(sql)
        con.execute("ANALYZE")
        print(f"generated {ROWS:,} jobs in {time.perf_counter() - t0:.1f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")
        now = time.time()
        some_uid = con.execute("SELECT uid FROM jobs WHERE id = ?", (ROWS // 2,)).fetchone()[0]
        baseline = _median(lambda: con.execute("SELECT count(*) FROM jobs").fetchone())
        rows = _median(lambda: queries.summary(con, use_totals=False))
        full = _median(lambda: queries.summary(con))
        month = _median(lambda: queries.summary(
            con, queries.Filters(since=now - 30 * 86400)))
        failed = _median(lambda: queries.jobs(con, queries.Filters(status="failed"), 20))
        one = _median(lambda: queries.job(con, some_uid[:10]))
        summary = queries.summary(con)
        con.close()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rulesmon", "stats", "--db", str(path)],
                       check=True, capture_output=True)
        command = time.perf_counter() - t0
    assert summary["total_jobs"] == ROWS
    print(f"baseline SELECT count(*):          {baseline * 1000:7.1f} ms")
    print(f"stats from the rows (index scan):  {rows * 1000:7.1f} ms  "
          f"({rows / baseline:.1f}x the count)")
    print(f"stats (all {ROWS:,} jobs):       {full * 1000:7.1f} ms  "
          f"({full / baseline:.1f}x the count; target < {TARGET * 1000:.0f} ms: "
          f"{'met' if full < TARGET else 'MISSED'})")
    print(f"stats --since 30d:                 {month * 1000:7.1f} ms")
    print(f"history --status failed -n 20:     {failed * 1000:7.1f} ms")
    print(f"show <id prefix>:                  {one * 1000:7.1f} ms")
    print(f"`rulesmon stats` as a command:     {command * 1000:7.1f} ms (with interpreter "
          "start-up)")


if __name__ == "__main__":
    main()
