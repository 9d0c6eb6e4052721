"""The SLURM development clusters (scripts/dev-slurm) as a session-scoped pytest fixture.

    def test_something(slurm_cluster: SlurmCluster) -> None:
        folder = slurm_cluster.workdir("exit3")     # shared with the cluster's node
        jid = slurm_cluster.sbatch(folder, "--wrap", "exit 3")
        result = run_cli("run", str(ruleset), env=slurm_cluster.environ())

The fixture is parametrised by SLURM version: every test that uses it runs once against the
host's SLURM 22.05 (`scripts/dev-slurm`, id "22.05") and once against SLURM 24.11 in a Debian
13 chroot (`scripts/dev-slurm --version 24.11`, id "24.11"). RULESMON_SLURM_VERSIONS (e.g.
"22.05" or "24.11", comma-separated) narrows the versions run. `slurm_cluster.version` says
which one a test has; `slurm_cluster.python` is an interpreter that job scripts can run on the
node (the chroot has its own /usr/bin/python3; the host cluster's node is the host).

How a cluster is found or started, once per test session and version:

- a cluster that already answers (`scripts/dev-slurm --version V status`) is used and left
  running;
- otherwise, when the machine allows it (Linux, root, Debian with apt-get, or SLURM's packages
  already installed; for 24.11 debootstrap or apt-get to get it, or a chroot already built),
  `scripts/dev-slurm --version V start` installs and starts it; this session then stops it at
  the end, unless RULESMON_KEEP_CLUSTERS=1;
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
#: The versions the fixture runs, in order: the host's packages, then the Debian 13 chroot.
VERSIONS = ("22.05", "24.11")
HOST_VERSION = "22.05"


@dataclass
class SlurmCluster:
    """A running development cluster and helpers to submit and inspect jobs."""

    env: dict[str, str]
    started_here: bool = False
    version: str = HOST_VERSION
    _folders: list[Path] = field(default_factory=list)
    _jobs: list[str] = field(default_factory=list)
    _count: Iterator[int] = field(default_factory=itertools.count)

    @property
    def python(self) -> str:
        """A Python interpreter that job scripts can run on the cluster's node."""
        return sys.executable if self.version == HOST_VERSION else "/usr/bin/python3"

    def environ(self, **extra: str) -> dict[str, str]:
        """The process environment plus the cluster's variables (SLURM_CONF, or PATH with the
        chroot's wrappers first)."""
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
        shared = self.env.get("RULESMON_SLURM_WORK") or self.env.get("RULESMON_SLURM_DIR", "/tmp")
        base = Path(shared) / "tests" / str(os.getpid())
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


def _unavailable(reason: str, version: str = HOST_VERSION) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"SLURM {version} development cluster unavailable under CI: {reason}",
                    pytrace=False)
    pytest.skip(f"SLURM {version} development cluster unavailable: {reason}")


def _installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                          text=True, check=False)
    return "install ok installed" in proc.stdout


def _chroot_dir(version: str) -> Path:
    base = os.environ.get("RULESMON_SLURM_CHROOT_DIR") or os.path.join(
        os.environ.get("TMPDIR") or "/tmp", f"rulesmon-slurm-{version}")
    return Path(base)


def why_not(version: str = HOST_VERSION) -> str | None:
    """Why this machine cannot run the cluster of `version`, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "scripts/dev-slurm needs root (it starts SLURM's daemons)"
    if version != HOST_VERSION:
        if shutil.which("chroot") is None:
            return "needs chroot"
        if (_chroot_dir(version) / "rootfs" / ".rulesmon-built").exists():
            return None
        if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
            return "needs a Debian machine (debootstrap or apt-get) to build the chroot"
        return None
    if all(_installed(p) for p in PACKAGES):
        return None
    if shutil.which("apt-get") is None:
        return "needs a Debian machine (apt-get) or SLURM's packages installed"
    return None


def _read_env(text: str) -> dict[str, str]:
    """The variables an env file exports; `$PATH` in a value is this process's PATH."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            env[name.strip()] = value.strip().replace("$PATH", os.environ.get("PATH", ""))
    return env


def _script(version: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), "--version", version, *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def selected_versions() -> list[str]:
    """The versions to run: RULESMON_SLURM_VERSIONS (comma-separated), else all of VERSIONS."""
    wanted = [v.strip() for v in os.environ.get("RULESMON_SLURM_VERSIONS", "").split(",")
              if v.strip()]
    return [v for v in VERSIONS if v in wanted] if wanted else list(VERSIONS)


#: Per version: the cluster, or why it is unavailable (so a failed start is not retried).
_STATE: dict[str, SlurmCluster | str] = {}
#: The variable each version's env file must set.
_ENV_KEY = {HOST_VERSION: "SLURM_CONF"}


def _start(version: str) -> SlurmCluster:
    """Find or start the cluster of `version`; skip (fail under CI) when it cannot run."""
    why = why_not(version)
    if why is not None:
        _STATE[version] = why
        _unavailable(why, version)
    started = False
    if _script(version, "status", timeout=60).returncode != 0:
        try:
            proc = _script(version, "start", timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            _STATE[version] = f"scripts/dev-slurm start took over {START_TIMEOUT:g}s"
            _unavailable(str(_STATE[version]), version)
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            _STATE[version] = f"scripts/dev-slurm --version {version} start failed: {tail}"
            _unavailable(str(_STATE[version]), version)
        started = True
    env = _read_env(_script(version, "env", timeout=30).stdout)
    key = _ENV_KEY.get(version, "RULESMON_SLURM_WORK")
    if key not in env:
        _STATE[version] = f"scripts/dev-slurm --version {version} env printed no {key}"
        _unavailable(str(_STATE[version]), version)
    cluster = SlurmCluster(env, started_here=started, version=version)
    _STATE[version] = cluster
    return cluster


@pytest.fixture(scope="session", params=selected_versions())
def slurm_cluster(request: pytest.FixtureRequest) -> Iterator[SlurmCluster]:
    """The running development cluster of one SLURM version (started here if needed, and then
    stopped)."""
    version = str(request.param)
    known = _STATE.get(version)
    if isinstance(known, str):
        _unavailable(known, version)
    cluster = _start(version)
    try:
        yield cluster
    finally:
        cluster.cleanup()
        if cluster.started_here and os.environ.get("RULESMON_KEEP_CLUSTERS") != "1":
            _script(version, "stop", timeout=300)
