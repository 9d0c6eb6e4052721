"""A small stand-in for a simulation service: a few runs recorded with `rulesmon.track`,
then read back the way the Keystone job monitor's scripts do. Standard library + rulesmon.

    python simulate.py                 # records into the tracking database (see README.md)
    python simulate.py --db runs.db    # or into this file

Every run lands in the history with its CPU time, peak memory, duration, status, return code
and error; `rulesmon history / stats / show --db runs.db` list and explain them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import rulesmon


def poisson(mesh_size: int, iterations: int) -> float:
    """Jacobi iterations of -u'' = 1 on a square grid (u = 0 on the border); the residual."""
    n = mesh_size
    u = [[0.0] * n for _ in range(n)]
    h2 = 1.0 / (n - 1) ** 2
    change = 0.0
    for _ in range(iterations):
        change = 0.0
        new = [row[:] for row in u]
        for i in range(1, n - 1):
            for j in range(1, n - 1):
                value = 0.25 * (u[i - 1][j] + u[i + 1][j] + u[i][j - 1] + u[i][j + 1] + h2)
                change = max(change, abs(value - u[i][j]))
                new[i][j] = value
        u = new
    return change


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, default=None, help="History database to write.")
    args = parser.parse_args()
    db = args.db

    # 1. A block: one record, success unless it raises or says otherwise.
    with rulesmon.track(tool="fenicsx", script="poisson.py", params={"mesh_size": 24},
                        db=db) as run:
        residual = poisson(24, 150)
    result = run.result  # the record, in the history's JSON shape, once the block ends
    assert result is not None
    print(f"poisson: residual {residual:.2e}, {result['duration_seconds']:.2f}s, "
          f"CPU {result['resource_usage']['cpu_total_seconds']:.2f}s")

    # 2. A run that fails without an exception: the solver's own return code says so.
    with rulesmon.track(tool="lammps", script="melt.in", params={"atoms": 4000},
                        db=db) as run:
        returncode = 1  # as if lmp had exited 1
        run.set_status("failed", returncode=returncode, error="lost atoms at step 1200")

    # 3. An exception is recorded as error (and still reaches the caller).
    try:
        with rulesmon.track(tool="openfoam", script="cavity", params={"dt": 0.5}, db=db):
            raise FloatingPointError("Courant number 12.4 exceeds 1: diverged")
    except FloatingPointError as exc:
        print(f"cavity: {exc}")

    # 4. A decorated function: every call is its own record.
    @rulesmon.track(tool="fenicsx", script="poisson.py", db=db)
    def sweep_point(mesh_size: int) -> float:
        return poisson(mesh_size, 60)

    for mesh in (8, 12, 16):
        sweep_point(mesh)

    # Read back, as the Keystone job monitor's scripts do.
    history = rulesmon.get_job_history(limit=10, db=db)
    failed = [j for j in history if j["status"] != "success"]
    stats = rulesmon.get_summary_statistics(source="track", db=db)
    print(f"{stats['total_jobs']} runs, success rate {stats['success_rate']}%, "
          f"CPU {stats['total_cpu_time_seconds']:.2f}s")
    for tool, tool_stats in stats["by_tool"].items():
        avg = tool_stats["total_duration"] / tool_stats["count"]
        runs = tool_stats["count"]
        print(f"  {tool}: {runs} run{'s' if runs != 1 else ''}, avg {avg:.2f}s per run")
    for job in failed:
        print(f"  {job['status'].upper()} {job['id'][:8]} {job['tool']} {job['script']}: "
              f"{job['error']}")
    details = rulesmon.get_job_stats(failed[-1]["id"], db=db)
    assert details is not None
    print(json.dumps({"id": details["id"], "params": details["params"],
                      "states": [e["state"] for e in details["timeline"]]}))


if __name__ == "__main__":
    main()
