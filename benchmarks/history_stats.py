"""Benchmark: `rulesmon stats` and the other views over 1,000,000 recorded jobs.

A year of a busy user's history, generated with SQL into a fresh database of the current
schema, through its triggers: five sources, 20 tools, six partitions, four GPU resources,
five outcomes (80% success), times spread over 365 days; and the year's notifications: one
to `slack` for every job that did not succeed, one to `email` as well for a tenth of them
(about 220,000 in `outbox`), each with its delivery attempt in `attempts` and one in 20
retried after a failed attempt. Measured in the same run, median of 5: a bare
`SELECT count(*) FROM jobs` (baseline); the statistics aggregated from the job rows
themselves (one scan of the covering index jobs_stats, the path taken when a filter the
weekly totals do not carry is given); the full statistics as `rulesmon stats` computes them
(totals, success rate, CPU time, durations, by source / tool / partition / resource,
deliveries) from the weekly totals, and the notifications part alone; the same for the last
30 days; with `--status failed` and `--source slurm` (the notifications then counted only
for the jobs selected, each attributed to the job that held its instance); the 20 newest
failed jobs; one job by id prefix; then `rulesmon stats` end to end as a command. Target:
statistics under 1 s. Takes about a minute (most of it generating).
Run: python benchmarks/history_stats.py [ROWS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import timeit
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


#: A year of notifications, from the jobs: one to slack per job that did not succeed, one to
#: email as well for every tenth; 1 in 100 dropped, 1 in 20 delivered on a second attempt.
_NOTIFY = """
INSERT INTO outbox (id, target, kind, rule, instance, severity, title, body, created,
                    release_at, group_key, status, attempts, last_error, delivered_at)
SELECT lower(hex(randomblob(8))), t.target, 'fire', 'job-failed', j.instance, 'critical',
       '[CRITICAL] job-failed: ' || j.instance, 'job ' || j.job_id || ' ended ' || j.status,
       j.end_time, j.end_time, 'job-failed',
       CASE WHEN j.id % 100 = 0 THEN 'dropped' ELSE 'delivered' END,
       1 + (j.id % 20 = 0), CASE WHEN j.id % 20 = 0 THEN 'HTTP 503' END,
       CASE WHEN j.id % 100 = 0 THEN NULL ELSE j.end_time + 1 END
FROM jobs j JOIN (SELECT 'slack' AS target UNION ALL SELECT 'email') t
WHERE j.status != 'success' AND (t.target = 'slack' OR j.id % 10 = 0)
"""
_ATTEMPTS = """
INSERT INTO attempts (outbox_seq, t, ok, error)
SELECT seq, created + 0.5, 0, 'HTTP 503' FROM outbox WHERE attempts = 2
UNION ALL
SELECT seq, created + 1, status = 'delivered', CASE WHEN status = 'dropped' THEN 'HTTP 400'
       END FROM outbox
"""


def _median(fn: Callable[[], Any]) -> float:
    return statistics.median(timeit.repeat(fn, number=1, repeat=5))


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
        start = time.time() - YEAR
        con.execute(_GENERATE, {"rows": ROWS, "t0": start, "step": YEAR / ROWS})
        con.execute("INSERT INTO runs (ruleset, started, ended, ticks) VALUES "
                    "('busy', ?, ?, ?)", (start, start + YEAR, int(YEAR / 30)))
        con.execute(_NOTIFY)
        con.execute(_ATTEMPTS)
        con.execute("COMMIT")
        for sql in indexes:
            con.execute(sql)
        con.execute("ANALYZE")
        notes = con.execute("SELECT count(*) FROM outbox").fetchone()[0]
        tries = con.execute("SELECT count(*) FROM attempts").fetchone()[0]
        print(f"generated {ROWS:,} jobs, {notes:,} notifications and {tries:,} attempts in "
              f"{time.perf_counter() - t0:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        now = time.time()
        some_uid = con.execute("SELECT uid FROM jobs WHERE id = ?", (ROWS // 2,)).fetchone()[0]
        baseline = _median(lambda: con.execute("SELECT count(*) FROM jobs").fetchone())
        rows = _median(lambda: queries.summary(con, use_totals=False))
        full = _median(lambda: queries.summary(con))
        notifications = _median(lambda: queries.notifications(con, queries.Filters()))
        month = _median(lambda: queries.summary(
            con, queries.Filters(since=now - 30 * 86400)))
        by_status = _median(lambda: queries.summary(con, queries.Filters(status="failed")))
        by_source = _median(lambda: queries.summary(con, queries.Filters(source="slurm")))
        failed = _median(lambda: queries.jobs(con, queries.Filters(status="failed"), 20))
        one = _median(lambda: queries.job(con, some_uid[:10]))
        summary = queries.summary(con)
        failed_notes = queries.summary(con, queries.Filters(status="failed"))["notifications"]
        con.close()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rulesmon", "stats", "--db", str(path)],
                       check=True, capture_output=True)
        command = time.perf_counter() - t0
    assert summary["total_jobs"] == ROWS
    assert summary["notifications"]["total"] == notes
    assert 0 < failed_notes["total"] < notes
    print(f"baseline SELECT count(*):          {baseline * 1000:7.1f} ms")
    print(f"stats from the rows (index scan):  {rows * 1000:7.1f} ms  "
          f"({rows / baseline:.1f}x the count)")
    print(f"stats (all {ROWS:,} jobs):       {full * 1000:7.1f} ms  "
          f"({full / baseline:.1f}x the count; target < {TARGET * 1000:.0f} ms: "
          f"{'met' if full < TARGET else 'MISSED'})")
    print(f"  of which notifications:          {notifications * 1000:7.1f} ms "
          f"({notes:,} in outbox, {tries:,} attempts)")
    for label, took in (("stats --since 30d:", month), ("stats --status failed:", by_status),
                        ("stats --source slurm:", by_source)):
        print(f"{label:<35}{took * 1000:7.1f} ms  (target < {TARGET * 1000:.0f} ms: "
              f"{'met' if took < TARGET else 'MISSED'})")
    print(f"history --status failed -n 20:     {failed * 1000:7.1f} ms")
    print(f"show <id prefix>:                  {one * 1000:7.1f} ms")
    print(f"`rulesmon stats` as a command:     {command * 1000:7.1f} ms (with interpreter "
          "start-up)")


if __name__ == "__main__":
    main()
