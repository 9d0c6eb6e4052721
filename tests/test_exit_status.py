"""One exit status of `rulesmon run` for a watched job that could not be found, on every
source: the job ends UNKNOWN (terminal), counts in `run.failed`, and the run exits 1 — an id
that never existed on the dev SLURM cluster and the dev HTCondor pool, and a local pid_file
naming a process that is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from .condor_pool import CondorPool
from .conftest import run_cli
from .slurm_cluster import SlurmCluster

#: A job id far above any the development schedulers hand out in a test session.
NO_SUCH_ID = "987654321"


def _check(result: subprocess.CompletedProcess[str], instance: str) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "1 UNKNOWN" in result.stdout and "Succeeded: 0, failed: 1" in result.stdout
    assert f"instance={instance}" in result.stderr and "current=UNKNOWN" in result.stderr


def test_unknown_slurm_id_exits_1(slurm_cluster: SlurmCluster) -> None:
    """A SLURM id in neither squeue nor sacct (after its sacct_retries lookups) ends UNKNOWN,
    and the run exits 1."""
    folder = slurm_cluster.workdir("nosuch")
    ruleset = folder / "ruleset.yaml"
    ruleset.write_text("version: 1\nname: nosuch\nevery: 1s\njobs:\n  j:\n    slurm: "
                       f"{{ids: ['{NO_SUCH_ID}'], min_interval: 1s, sacct_retries: 2}}\n",
                       encoding="utf-8")
    result = run_cli("run", str(ruleset), "--state", str(folder / "s.db"),
                     env=slurm_cluster.environ(), timeout=180)
    _check(result, f"j/{NO_SUCH_ID}")


def test_unknown_htcondor_id_exits_1(condor_pool: CondorPool) -> None:
    """An HTCondor id in neither condor_q nor condor_history (after ten lookups) ends UNKNOWN,
    and the run exits 1."""
    folder = condor_pool.workdir("nosuch")
    ruleset = folder / "ruleset.yaml"
    ruleset.write_text("version: 1\nname: nosuch\nevery: 1s\njobs:\n  j:\n    htcondor: "
                       f"{{ids: ['{NO_SUCH_ID}.0'], min_interval: 1s}}\n", encoding="utf-8")
    result = run_cli("run", str(ruleset), "--state", str(folder / "s.db"),
                     env=condor_pool.environ(), timeout=180)
    _check(result, f"j/{NO_SUCH_ID}.0")


def test_local_pid_file_of_a_gone_process_exits_1(tmp_path: Path) -> None:
    """A pid file naming a process that ran and is gone (a real child, reaped) ends UNKNOWN
    after ten looks, and the run exits 1 instead of waiting for ever."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    pid = child.stdout.strip()
    (tmp_path / "job.pid").write_text(pid + "\n", encoding="utf-8")
    ruleset = tmp_path / "ruleset.yaml"
    ruleset.write_text("version: 1\nname: gone\nevery: 0.5s\njobs:\n  w:\n"
                       "    local: {pid_file: job.pid}\n", encoding="utf-8")
    result = run_cli("run", str(ruleset), "--state", str(tmp_path / "s.db"), timeout=120)
    _check(result, f"w/{pid}")


def test_gone_pid_waits_ten_looks_for_a_new_pid_file(tmp_path: Path) -> None:
    """A pid file naming a gone process is UNKNOWN but not terminal for nine looks (a new run
    may still write its pid), terminal at the tenth with the reason; a pid file rewritten
    meanwhile is followed instead."""
    import time

    from rulesmon.config.loader import load_text
    from rulesmon.probes.base import TickContext
    from rulesmon.probes.local import LocalProbe

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for name in ("a.pid", "b.pid"):
        (tmp_path / name).write_text(gone + "\n", encoding="utf-8")
    rs = load_text("version: 1\nname: gone\njobs:\n  a:\n    local: {pid_file: a.pid}\n"
                   "  b:\n    local: {pid_file: b.pid}\n", base=tmp_path).ruleset
    probe = LocalProbe(rs, tmp_path)

    def collect() -> dict[str, dict[str, Any]]:
        return probe.collect(TickContext(now=time.time(), ruleset=rs, base_dir=tmp_path))

    for _ in range(9):
        facts = collect()
        assert (facts[f"a/{gone}"]["job.state"], facts[f"a/{gone}"]["job.terminal"]) == (
            "UNKNOWN", False)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            (tmp_path / "b.pid").write_text(f"{live.pid}\n", encoding="utf-8")
            facts = collect()
            assert f"b/{gone}" not in facts
            assert facts[f"b/{live.pid}"]["job.state"] == "RUNNING"
        finally:
            live.kill()
    lost = facts[f"a/{gone}"]
    assert (lost["job.state"], lost["job.terminal"], lost["job.outcome"]) == (
        "UNKNOWN", True, "unknown")
    assert lost["job.diagnosis_detail"].startswith(f"process {gone} was not found in 10 looks")
