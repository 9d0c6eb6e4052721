"""The SLURM development cluster (scripts/dev-slurm) as a session-scoped pytest fixture.

    def test_something(slurm_cluster: SlurmCluster) -> None:
        folder = slurm_cluster.workdir("exit3")
        jid = slurm_cluster.sbatch(folder, "--wrap", "exit 3")
        result = run_cli("run", str(ruleset), env=slurm_cluster.environ())

How the cluster is found or started, once per test session:

- a cluster that already answers (`scripts/dev-slurm status`) is used and left running;
- otherwise, when the machine allows it (Linux, root, Debian with apt-get, or SLURM's packages
  already installed), `scripts/dev-slurm start` installs and starts it; this session then
  stops it at the end, unless RULESMON_KEEP_CLUSTERS=1;
- when the machine does not allow it, or the start fails, the tests that use the fixture are
  skipped with the reason; under CI=true they fail instead, so CI never passes by skipping.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "dev-slurm"
START_TIMEOUT = 900.0
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "slurmdbd", "munge", "mariadb-server")


@dataclass
class SlurmCluster:
    """A running development cluster and helpers to submit and inspect jobs."""

    env: dict[str, str]
    started_here: bool = False
    _folders: list[Path] = field(default_factory=list)
    _jobs: list[str] = field(default_factory=list)
    _count: Iterator[int] = field(default_factory=itertools.count)

    def environ(self, **extra: str) -> dict[str, str]:
        """The process environment plus the cluster's variables (SLURM_CONF)."""
        env = dict(os.environ)
        env.update(self.env)
        env.update(extra)
        return env

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """Point in-process code (rulesmon.probes.slurm) at the cluster while inside."""
        old = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def workdir(self, name: str) -> Path:
        """A new empty folder for one test's scripts and outputs."""
        base = Path(self.env.get("RULESMON_SLURM_DIR", "/tmp")) / "tests" / str(os.getpid())
        base.mkdir(parents=True, exist_ok=True)
        folder = base / f"{name}-{next(self._count)}"
        folder.mkdir()
        if base not in self._folders:
            self._folders.append(base)
        return folder

    def tool(self, name: str, *args: str, cwd: Path | None = None, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a SLURM command with the cluster's environment."""
        proc = subprocess.run([name, *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False, env=self.environ(),
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def sbatch(self, folder: Path, *args: str) -> str:
        """sbatch --parsable from `folder`; the job id (cancelled at session end if alive)."""
        jid = self.tool("sbatch", "--parsable", *args, cwd=folder).stdout.strip()
        jid = jid.split(";", 1)[0]
        self._jobs.append(jid)
        return jid

    def track(self, jid: str) -> None:
        """Cancel this job at session end if it is still alive (jobs rulesmon submitted)."""
        self._jobs.append(jid)

    def squeue(self, *args: str) -> str:
        return self.tool("squeue", "-h", *args).stdout

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 120,
                 every: float = 0.5) -> Any:
        """Poll `check` until it returns something truthy; fail the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(every)

    def cleanup(self) -> None:
        """Cancel this session's jobs still alive, then remove their folders."""
        if self._jobs:
            with contextlib.suppress(Exception):
                self.tool("scancel", *self._jobs, check=False)
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"SLURM development cluster unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"SLURM development cluster unavailable: {reason}")


def _installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                          text=True, check=False)
    return "install ok installed" in proc.stdout


def why_not() -> str | None:
    """Why this machine cannot run the cluster, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "scripts/dev-slurm needs root (it starts SLURM's daemons)"
    if all(_installed(p) for p in PACKAGES):
        return None
    if shutil.which("apt-get") is None:
        return "needs a Debian machine (apt-get) or SLURM's packages installed"
    return None


def _read_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            env[name.strip()] = value.strip()
    return env


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


_STATE: list[SlurmCluster | str] = []


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The running development cluster (started here if needed, and then stopped)."""
    if _STATE and isinstance(_STATE[0], str):
        _unavailable(_STATE[0])
    why = why_not()
    if why is not None:
        _STATE.append(why)
        _unavailable(why)
    started = False
    if _script("status", timeout=60).returncode != 0:
        try:
            proc = _script("start", timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            _STATE.append(f"scripts/dev-slurm start took over {START_TIMEOUT:g}s")
            _unavailable(str(_STATE[0]))
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            _STATE.append(f"scripts/dev-slurm start failed: {tail}")
            _unavailable(str(_STATE[0]))
        started = True
    env = _read_env(_script("env", timeout=30).stdout)
    if "SLURM_CONF" not in env:
        _STATE.append("scripts/dev-slurm env printed no SLURM_CONF")
        _unavailable(str(_STATE[0]))
    cluster = SlurmCluster(env, started_here=started)
    _STATE.append(cluster)
    try:
        yield cluster
    finally:
        cluster.cleanup()
        if started and os.environ.get("RULESMON_KEEP_CLUSTERS") != "1":
            _script("stop", timeout=300)
