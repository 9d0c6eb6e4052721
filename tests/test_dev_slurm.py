"""scripts/dev-slurm and the slurm_cluster fixture: both SLURM versions (22.05 on the host,
24.11 in a Debian 13 chroot behind host-side wrappers) answer the commands rulesmon runs, and
the fixture's own helpers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from . import slurm_cluster as sc
from .slurm_cluster import SlurmCluster


def test_dev_slurm_start_is_idempotent_and_reports_its_version(
        slurm_cluster: SlurmCluster) -> None:
    """`scripts/dev-slurm --version V start` on a running cluster leaves it running and prints
    the same env file; `status` says it runs; `squeue --version` through the cluster's
    environment names that version."""
    started = sc._script(slurm_cluster.version, "start", timeout=300)
    assert started.returncode == 0, started.stderr
    assert sc._read_env(started.stdout) == slurm_cluster.env
    status = sc._script(slurm_cluster.version, "status", timeout=60)
    assert status.returncode == 0 and status.stdout.startswith("running"), status.stdout
    version = slurm_cluster.tool("squeue", "--version").stdout
    assert version.split()[-1].startswith(slurm_cluster.version + "."), version


def test_commands_see_the_callers_folder_and_time_format(slurm_cluster: SlurmCluster) -> None:
    """A job submitted from a test folder runs in that folder and writes its output there, and
    SLURM_TIME_FORMAT reaches squeue (epoch submit times, as the probe asks), on both
    versions: the 24.11 wrappers run the chroot's tools in the caller's folder with the
    caller's SLURM_* variables, but not a SLURM_CONF left from the 22.05 cluster's env file."""
    folder = slurm_cluster.workdir("wrapper")
    jid = slurm_cluster.sbatch(folder, "--mem=16M", "-t", "1", "-o", "out-%j.txt", "--wrap",
                               "pwd; echo done")
    out = folder / f"out-{jid}.txt"
    slurm_cluster.wait_for("the job's output", lambda: out.exists() and "done" in out.read_text(
        encoding="utf-8"), timeout=120)
    assert out.read_text(encoding="utf-8").splitlines()[0] == str(folder)
    proc = subprocess.run(["squeue", "-h", "-t", "all", "-j", jid, "-o", "%V"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env=slurm_cluster.environ(SLURM_TIME_FORMAT="%s"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().isdigit(), proc.stdout
    if slurm_cluster.version != sc.HOST_VERSION:  # the chroot reads its own configuration
        proc = subprocess.run(["sinfo", "-h", "-o", "%N"], capture_output=True, text=True,
                              timeout=60, check=False,
                              env=slurm_cluster.environ(SLURM_CONF="/nonexistent/slurm.conf"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["node2411"]


def test_read_env_expands_path() -> None:
    """An env file's `export PATH=<bin>:$PATH` becomes the wrappers' folder in front of this
    process's PATH; other lines are taken as written and comments are ignored."""
    env = sc._read_env("# comment\nexport RULESMON_SLURM_WORK=/w\nexport PATH=/x/bin:$PATH\n")
    assert env["RULESMON_SLURM_WORK"] == "/w"
    assert env["PATH"].startswith("/x/bin:") and "$PATH" not in env["PATH"]


def test_selected_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both versions run by default, in order; RULESMON_SLURM_VERSIONS narrows them, and
    names no version the fixture does not know."""
    monkeypatch.delenv("RULESMON_SLURM_VERSIONS", raising=False)
    assert sc.selected_versions() == ["22.05", "24.11"]
    monkeypatch.setenv("RULESMON_SLURM_VERSIONS", "24.11")
    assert sc.selected_versions() == ["24.11"]
    monkeypatch.setenv("RULESMON_SLURM_VERSIONS", " 24.11 , 22.05,9.9")
    assert sc.selected_versions() == ["22.05", "24.11"]


def test_unavailable_fails_under_ci_and_skips_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster that cannot run skips its tests with the version and reason, and fails them
    under CI=true."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"SLURM 24\.11 .*needs root"):
        sc._unavailable("needs root", "24.11")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=r"SLURM 24\.11 .*needs root"):
        sc._unavailable("needs root", "24.11")


def test_workdir_is_under_the_shared_folder(tmp_path: Path) -> None:
    """A test folder of the 24.11 cluster is made under RULESMON_SLURM_WORK (mounted at the same
    path in the chroot), not under the state folder."""
    cluster = SlurmCluster({"RULESMON_SLURM_DIR": str(tmp_path / "state"),
                            "RULESMON_SLURM_WORK": str(tmp_path / "work")}, version="24.11")
    try:
        folder = cluster.workdir("x")
        assert folder.is_dir() and (tmp_path / "work") in folder.parents
        assert cluster.python == "/usr/bin/python3"
    finally:
        cluster.cleanup()
