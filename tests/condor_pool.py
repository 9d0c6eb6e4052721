"""The HTCondor development pool as a session-scoped pytest fixture.

    def test_something(condor_pool: CondorPool) -> None:
        folder = condor_pool.workdir("held")          # under the pool's shared folder
        (folder / "job.sub").write_text(...)
        ids = condor_pool.submit(folder / "job.sub")  # as the pool's ordinary user
        result = run_cli("run", str(ruleset), env=condor_pool.environ())

How the pool is found or started, once per test session:

- a pool that already answers (`scripts/dev-condor status`) is used and left running;
- otherwise, when the machine allows it (Linux, root, Debian's apt or an already built chroot),
  `scripts/dev-condor start` builds or reuses the chroot and starts it; this session then stops
  it at the end, unless RULESMON_KEEP_CLUSTERS=1;
- when the machine does not allow it, or the start fails, the tests that use the fixture are
  skipped with the reason; under CI=true they fail instead, so CI never passes by skipping.

Interface kept stable for other test modules: `CondorPool.bin`, `.work`, `.user`, `.uid`,
`.env` (the variables of the pool's env file), `.environ()`, `.workdir()`, `.submit()`,
`.submit_dag()`, `.tool()`, `.q()`, `.history()`, `.wait_for()`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rulesmon.probes import condor_cli as cli

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "dev-condor"
START_TIMEOUT = 1200.0


@dataclass
class CondorPool:
    """A running development pool and helpers to use it as its ordinary user."""

    env: dict[str, str]
    started_here: bool = False
    _folders: list[Path] = field(default_factory=list)
    _count: Iterator[int] = field(default_factory=itertools.count)

    @property
    def bin(self) -> Path:
        return Path(self.env["RULESMON_CONDOR_BIN"])

    @property
    def work(self) -> Path:
        return Path(self.env["RULESMON_CONDOR_WORK"])

    @property
    def user(self) -> str:
        return self.env["RULESMON_CONDOR_USER"]

    @property
    def uid(self) -> int:
        return int(self.env["RULESMON_CONDOR_UID"])

    def environ(self, **extra: str) -> dict[str, str]:
        """The process environment plus the pool's variables, for `rulesmon run` and tools."""
        env = dict(os.environ)
        env.update({k: v for k, v in self.env.items() if k != "PATH"})
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """Point in-process code (rulesmon.probes.condor_cli) at the pool while inside."""
        old = os.environ.get("RULESMON_CONDOR_BIN")
        os.environ["RULESMON_CONDOR_BIN"] = str(self.bin)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("RULESMON_CONDOR_BIN", None)
            else:
                os.environ["RULESMON_CONDOR_BIN"] = old

    def workdir(self, name: str) -> Path:
        """A new empty folder under the shared folder, writable by the job owner."""
        base = self.work / f"tests-{os.getpid()}"
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o1777)
        folder = base / f"{name}-{next(self._count)}"
        folder.mkdir()
        folder.chmod(0o1777)
        if base not in self._folders:
            self._folders.append(base)
        return folder

    def tool(self, name: str, *args: str, cwd: Path | None = None, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one of the pool's tools (job-changing ones run as the pool's user)."""
        proc = subprocess.run([str(self.bin / name), *args], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def submit(self, file: Path, *append: str) -> list[tuple[int, int]]:
        """condor_submit a description file from its folder; the (cluster, proc) ids."""
        args = ["-terse"]
        for line in append:
            args += ["-append", line]
        out = self.tool("condor_submit", *args, file.name, cwd=file.parent).stdout
        ids: list[tuple[int, int]] = []
        for line in out.splitlines():
            if " - " in line:
                first, last = (part.strip() for part in line.split(" - "))
                cluster, p1 = (int(x) for x in first.split("."))
                p2 = int(last.split(".")[1])
                ids += [(cluster, p) for p in range(p1, p2 + 1)]
        if not ids:
            raise RuntimeError(f"condor_submit printed no ids: {out!r}")
        return ids

    def submit_dag(self, dag: Path, *args: str) -> int:
        """condor_submit_dag a .dag file from its folder; the DAGMan job's cluster id."""
        out = self.tool("condor_submit_dag", "-batch-name", dag.stem, *args, dag.name,
                        cwd=dag.parent).stdout
        for line in out.splitlines():
            if "submitted to cluster" in line:
                return int(line.rsplit(" ", 1)[1].rstrip("."))
        raise RuntimeError(f"condor_submit_dag printed no cluster: {out!r}")

    def q(self, *args: str) -> list[dict[str, Any]]:
        """condor_q -json (args are constraints or options)."""
        out = self.tool("condor_q", "-allusers", "-json", *args).stdout.strip()
        return json.loads(out) if out else []

    def history(self, *args: str) -> list[dict[str, Any]]:
        """condor_history -json."""
        out = self.tool("condor_history", "-json", *args).stdout.strip()
        return json.loads(out) if out else []

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
        """Remove this session's jobs still queued, then their folders (a job whose folder
        vanished would sit held in the queue for ever)."""
        for folder in self._folders:
            pattern = cli.quote("^" + cli.regex_literal(f"{folder}/"))
            with contextlib.suppress(Exception):
                self.tool("condor_rm", "-constraint", f"regexp({pattern}, Iwd)", check=False)
            shutil.rmtree(folder, ignore_errors=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"HTCondor development pool unavailable under CI: {reason}",
                    pytrace=False)
    pytest.skip(f"HTCondor development pool unavailable: {reason}")


def _why_not() -> str | None:
    """Why this machine cannot run the pool, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "scripts/dev-condor needs root (chroot and mounts)"
    if shutil.which("chroot") is None:
        return "no chroot command"
    if shutil.which("apt-get") is None and shutil.which("debootstrap") is None:
        return "needs a Debian machine (apt-get or debootstrap)"
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


_POOL: list[CondorPool | str] = []


@pytest.fixture(scope="session")
def condor_pool() -> Iterator[CondorPool]:
    """The running development pool (started here if needed, and then stopped at the end)."""
    if _POOL and isinstance(_POOL[0], str):
        _unavailable(_POOL[0])
    why = _why_not()
    if why is not None:
        _POOL.append(why)
        _unavailable(why)
    started = False
    if _script("status", timeout=60).returncode != 0:
        try:
            proc = _script("start", timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            _POOL.append(f"scripts/dev-condor start took over {START_TIMEOUT:g}s")
            _unavailable(str(_POOL[0]))
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            _POOL.append(f"scripts/dev-condor start failed: {tail}")
            _unavailable(str(_POOL[0]))
        started = True
    env_proc = _script("env", timeout=30)
    env = _read_env(env_proc.stdout)
    if "RULESMON_CONDOR_BIN" not in env:
        _POOL.append(f"scripts/dev-condor env printed no RULESMON_CONDOR_BIN: "
                     f"{env_proc.stderr.strip()}")
        _unavailable(str(_POOL[0]))
    pool = CondorPool(env, started_here=started)
    try:
        yield pool
    finally:
        pool.cleanup()
        if started and os.environ.get("RULESMON_KEEP_CLUSTERS") != "1":
            _script("stop", timeout=300)


def submit_file(folder: Path, name: str, lines: Sequence[str]) -> Path:
    """Write a submit description (one statement per line) into `folder`."""
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
