# Over 800 lines: launching, watching, sampling and ending processes in one module (what a
# restart adopts is apart already: local_state.py, local_adopt.py); it is to become a local/
# package (launch, watch, sample, adopt) with the layout of issue 16.
"""Processes on this machine: launched by rulesmon (`command:`) or only watched (`pid_file`,
`pids`, `pattern`).

One instance per launched worker (`train/0`, `train/1`, ...) or per watched process
(`train/4242`). Facts are read with psutil; the Process objects are kept between ticks (so
`cpu_percent` measures the time since the last tick) and identified by (pid, create_time), so a
reused pid never passes for the process we watched.

How an end is classified (terminal states never change back):

| how it ended                                | job.state  | job.diagnosis |
| ------------------------------------------- | ---------- | ------------- |
| exit code 0                                 | COMPLETED  | ok            |
| exit code != 0                              | FAILED     | nonzero_exit  |
| SIGTERM or SIGINT (or exit 143 / 130)       | CANCELLED  | cancelled     |
| SIGKILL or exit 137 (oom only with evidence)| FAILED     | killed        |
| any other signal                            | FAILED     | signal        |
| a watched process became a zombie           | FAILED     | zombie        |
| (an orphan zombie, init about to reap it:   |            |               |
| classified by the wait status /proc shows)  |            |               |
| a watched process vanished (exit unknown)   | COMPLETED  | unknown       |
| a watched pid not found in 10 looks         | UNKNOWN    | unknown       |
| preflight or exec failed                    | FAILED     | launch_failed |

A process killed by signal N reports `exit_code` 128+N (as a shell would) and `signal` N.
`worker.cpu_pct` and `worker.rss` are the worker's own process; `job.cpu_pct`, `job.rss`,
`job.cpu_user` and `job.cpu_sys` include all its descendants, and `job.children` counts them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psutil

from .. import regex
from .base import Facts, TickContext, instance_key, job_base, render_path
from .local_state import MARKER, Registry

if TYPE_CHECKING:
    from ..config.models import Job, LocalSource, Preflight, Ruleset

#: Exit codes a shell gives a child killed by a signal, treated as that signal.
_SHELL_SIGNALS = {130: signal.SIGINT, 137: signal.SIGKILL, 143: signal.SIGTERM}
_CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_WORKER_STATE = {"running": "running", "zombie": "zombie", "dead": "dead"}
_SUSPENDED = ("stopped", "tracing-stop")
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied)  # ZombieProcess is a NoSuchProcess
_PID_FILE_UNIT = "pid_file"
#: Looks at a watched pid that does not exist (its pid file unchanged) before it is UNKNOWN and
#: terminal, as an HTCondor id is looked up ten times: a watched job that could not be found
#: ends the run, with exit status 1, on every source.
_MISSING_LOOKS = 10


@dataclass(frozen=True)
class _End:
    """How a process ended; fixed once known."""

    state: str
    raw: str
    outcome: str
    diagnosis: str
    detail: str
    worker_state: str
    time: float
    exit_code: int | None = None
    signal: int | None = None
    succeeded: bool | None = None
    #: False when the end was only found after it happened (while rulesmon was down): no
    #: `job.end_time` or `job.elapsed` is claimed
    time_known: bool = True


@dataclass
class _Plan:
    """One worker's launch, rendered."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    stdout: Path
    stderr: Path | None

    @property
    def gpu(self) -> int | None:
        return _gpu(self.env.get("CUDA_VISIBLE_DEVICES"))


@dataclass
class _Proc:
    """A process followed across ticks: a launched worker or a watched process."""

    index: int
    pid: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    proc: Any = None  # psutil.Process while it may still exist
    create_time: float | None = None  # psutil's, for identity (it can be ~1 s off)
    started: float | None = None
    missing: bool = False  # a watched pid that did not exist when we looked
    misses: int = 0  # looks at it while missing
    terminated: bool = False  # rulesmon sent the signal
    kids: dict[int, Any] = field(default_factory=dict)
    seen: bool = False
    status: str = ""
    cpu_pct: float | None = None
    rss: int | None = None
    total_pct: float | None = None
    total_rss: int | None = None
    children: int | None = None
    cpu_user: float | None = None
    cpu_sys: float | None = None
    peak_rss: int = 0
    gpu: int | None = None
    workdir: str | None = None
    log: str | None = None
    err: str | None = None
    end: _End | None = None
    adopted: bool = False  # a launched worker taken over after a restart (not our child)
    recorded: bool = False  # its pid and start time are in the registry
    end_saved: bool = False  # its end is in the registry

    @property
    def alive(self) -> bool:
        return self.end is None and self.seen and not self.missing


@dataclass
class _Run:
    """One job with a `local:` source and what the probe knows of it."""

    key: str
    spec: LocalSource
    base: Path
    procs: dict[str, _Proc] = field(default_factory=dict)
    started: bool = False
    dry_note: str | None = None
    launch_time: float | None = None
    launch_ok: bool | None = None
    launch_error: str | None = None
    regex: Any = None  #: a ruleset pattern: RE2, or the time-bounded `re` fallback
    pid_file_seen: tuple[int, str] | None = None  # (mtime_ns, text) last adopted from
    pid_file_note: str | None = None
    token: str | None = None  # the launch's marker (local_state.MARKER)
    launch_saved: bool = False  # launch_ok is in the registry

    @property
    def launched(self) -> bool:
        return bool(self.spec.command)


def visible_gpus() -> int:
    """GPUs NVML sees; 0 without pynvml or a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


class LocalProbe:
    """Launches and watches the local processes of every job with a `local:` source."""

    name = "local"

    def __init__(self, ruleset: Ruleset, base_dir: Path) -> None:
        self.base_dir = base_dir
        self._runs: list[_Run] = []
        self._lock = threading.Lock()
        #: called with each launched worker's pid (the engine tells its signal watchdog)
        self.on_launch: Callable[[int], None] | None = None
        #: where launches, watched pids and ends survive a restart (`use_state`)
        self._registry: Registry | None = None
        self._restored = False
        for key, job in ruleset.jobs.items():
            if job.local is None:
                continue
            run = _Run(key, job.local, _base(job, base_dir))
            if job.local.pattern:
                run.regex = regex.compile_search(job.local.pattern, dotall=True)
            self._runs.append(run)

    # --- Probe protocol --------------------------------------------------------------------

    def use_state(self, state_path: Path) -> None:
        """Keep launches, watched pids and ends beside the engine's state database, so a
        restart adopts them (local_state.py)."""
        if self._runs:
            self._registry = Registry(state_path.with_suffix(".local.db"))

    def new_run(self, launches_only: bool = False) -> None:
        """The previous run is over: this run adopts nothing of it and launches again
        (`launches_only`: its launched workers were stopped; watched pids are resumed)."""
        if self._registry is not None:
            self._registry.forget([r.key for r in self._runs if r.launched]
                                  if launches_only else None)

    def start(self, ctx: TickContext) -> None:
        """Adopt what an unfinished previous run left, then run the preflight checks and
        launch the workers of every `command:` job not adopted."""
        with self._lock:
            self._restore(ctx)
            for run in self._runs:
                if run.launched and not run.started:
                    self._launch(run, ctx)

    def _restore(self, ctx: TickContext) -> None:
        if self._restored or self._registry is None or ctx.dry_run:
            self._restored = True
            return
        from . import local_adopt

        self._restored = True
        for run in self._runs:
            if run.launched:
                for pid in local_adopt.restore_launched(run, self._registry, ctx.now):
                    if self.on_launch is not None:
                        self.on_launch(pid)
            else:
                local_adopt.restore_watched(run, self._registry, ctx.now)

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        with self._lock:
            self._restore(ctx)
            tree = _Tree()
            scan = self._scan() if any(r.regex for r in self._runs) else []
            out: dict[str, Facts] = {}
            for run in self._runs:
                if not run.launched:
                    self._discover(run, scan, ctx.now)
                for proc in run.procs.values():
                    _update(proc, tree, ctx.now)
                if run.launched:
                    _verify_launch(run, ctx.now)
                if self._registry is not None and run.dry_note is None:
                    self._registry.persist(run)
                out.update(self._facts(run, ctx.now))
            return out

    def close(self) -> None:
        """Launched workers keep running until `terminate` is called (a `--once` run leaves
        them to the next run, which adopts them)."""
        if self._registry is not None:
            self._registry.close()

    def terminate(self, grace: float = 5.0) -> None:
        """SIGTERM every launched worker's process group, then SIGKILL what is left after
        `grace` seconds. The next collect reports them as CANCELLED. A collect stuck while
        holding the probe's lock (a signal arrived mid-tick) is not waited for beyond 0.5 s:
        the workers are stopped anyway."""
        locked = self._lock.acquire(timeout=0.5)
        try:
            live = [p for run in list(self._runs) for p in list(run.procs.values())
                    if p.pid is not None and p.end is None and (
                        (p.popen is not None and p.popen.returncode is None)
                        or (p.adopted and p.proc is not None))]
            for p in live:
                p.terminated = True
                _signal_group(p, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while any(_group_alive(p) for p in live) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = [p for p in live if _group_alive(p)]
            for p in left:
                _signal_group(p, signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while any(_group_alive(p) for p in left) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            if locked:
                self._lock.release()

    # --- launching ---------------------------------------------------------------------------

    def _launch(self, run: _Run, ctx: TickContext) -> None:
        run.started = True
        run.launch_time = ctx.now
        spec = run.spec
        jctx = {"key": run.key, "name": run.key}
        plans: list[_Plan | None] = []
        problems: list[str] = []
        for i in range(spec.workers):
            try:
                plans.append(_plan(spec, run, i))
            except Exception as exc:
                plans.append(None)
                problems.append(f"worker {i}: cannot render its launch: {_one_line(exc)}")
        for i, plan in enumerate(plans):
            proc = _Proc(i)
            if plan is not None:
                proc.log = str(plan.stdout)
                proc.err = str(plan.stderr or plan.stdout)
                proc.workdir = str(plan.cwd)
                proc.gpu = plan.gpu
            run.procs[str(i)] = proc
        if spec.preflight is not None:
            try:
                problems += _preflight(spec.preflight, run.base, {"job": jctx})
            except Exception as exc:  # a path template that does not render
                problems.append(f"preflight: {_one_line(exc)}")
        if ctx.dry_run:
            run.dry_note = ("dry run: preflight would fail: " + "; ".join(problems)
                            if problems else "dry run: not launched")
            return
        if not problems:
            problems += _log_folders([p for p in plans if p is not None])
        if problems:
            reason = "; ".join(problems)
            run.launch_ok, run.launch_error = False, reason
            for proc in run.procs.values():
                proc.end = _launch_failed(reason, ctx.now)
            return
        errors: list[str] = []
        run.token = uuid.uuid4().hex
        if self._registry is not None:  # before any spawn: a restart never launches twice
            self._registry.launch(run.key, run.token, ctx.now)
        for i, plan in enumerate(plans):
            assert plan is not None
            plan.env[MARKER] = f"{run.token}:{i}"
            proc = run.procs[str(i)]
            error = _spawn(proc, plan)
            pid = proc.pid
            if not error and pid is not None and self._registry is not None:
                self._registry.spawned(run.key, str(i), proc)
            if not error and pid is not None and self.on_launch is not None:
                self.on_launch(pid)
            if error:
                errors.append(f"worker {i}: {error}")
                run.procs[str(i)].end = _launch_failed(error, ctx.now)
        if errors:
            run.launch_ok, run.launch_error = False, "; ".join(errors)

    # --- watching ----------------------------------------------------------------------------

    def _scan(self) -> list[tuple[int, float, str, Any]]:
        """Every process's command line, once per tick for all `pattern` jobs."""
        me = os.getpid()
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            info = proc.info
            cmdline = info.get("cmdline")
            if not cmdline or info["pid"] == me or info.get("create_time") is None:
                continue
            found.append((info["pid"], info["create_time"], " ".join(cmdline), proc))
        return found

    def _discover(self, run: _Run, scan: list[tuple[int, float, str, Any]],
                  now: float) -> None:
        spec = run.spec
        if spec.pids and not run.procs:
            for pid in spec.pids:
                _adopt(run, pid)
        if spec.pid_file:
            self._read_pid_file(run)
        if run.regex is not None:
            for pid, created, cmdline, proc in scan:
                try:
                    if not run.regex.search(cmdline):
                        continue
                except regex.RegexTimeout as exc:  # stopped for good: adopts nothing more
                    logging.getLogger(__name__).warning("local job %s: %s", run.key, exc)
                    break
                known = run.procs.get(str(pid))
                if known is not None and known.create_time == created:
                    continue
                if known is not None and known.end is None:
                    known.end = _vanished(known, now)  # the pid was reused: ours ended
                _adopt(run, pid, proc)

    def _read_pid_file(self, run: _Run) -> None:
        assert run.spec.pid_file is not None
        try:
            path = render_path(run.spec.pid_file, {"job": {"key": run.key, "name": run.key}},
                               run.base)
        except Exception as exc:
            run.pid_file_note = f"pid file path does not render: {_one_line(exc)}"
            return
        try:
            text = path.read_text(encoding="utf-8", errors="replace")[:100]
            version = (path.stat().st_mtime_ns, text)
        except OSError:
            run.pid_file_note = f"pid file missing: {path}"
            return
        try:
            pid = int(text.strip())
            if pid <= 0:
                raise ValueError(text)
        except ValueError:
            run.pid_file_note = f"pid file {path} holds no pid: {text.strip()[:40]!r}"
            return
        run.pid_file_note = None
        if version == run.pid_file_seen:
            return
        run.pid_file_seen = version
        if self._registry is not None:
            self._registry.pid_file(run.key, version)
        known = run.procs.get(str(pid))
        if known is not None and (known.end is None or known.missing):
            return
        for unit in [u for u, p in run.procs.items() if p.missing]:
            del run.procs[unit]  # a stale pid the file no longer names
        _adopt(run, pid)

    # --- facts -------------------------------------------------------------------------------

    def _facts(self, run: _Run, now: float) -> dict[str, Facts]:
        spec = run.spec
        procs = list(run.procs.values())
        running = sum(1 for p in procs if p.alive)
        if run.launched:
            workers = spec.workers
        elif spec.pid_file:
            workers = 1
        elif spec.pids:
            workers = len(spec.pids)
        else:
            workers = len(procs)
        common: Facts = {"job.key": run.key, "job.name": run.key, "job.source": "local",
                         "job.workers": workers, "job.workers_running": running}
        if run.launched:
            if run.launch_time is not None and run.dry_note is None:
                common["job.submit_time"] = run.launch_time
            if run.launch_ok is not None:
                common["job.launch_ok"] = run.launch_ok
            if run.launch_error:
                common["job.launch_error"] = run.launch_error
        out: dict[str, Facts] = {}
        if not procs and spec.pid_file:
            note = run.pid_file_note or "pid file not read yet"
            state = "PENDING" if note.startswith("pid file missing") else "UNKNOWN"
            out[instance_key(run.key, _PID_FILE_UNIT)] = {
                **common, "job.state": state, "job.raw_state": note, "job.terminal": False,
                "job.outcome": "unknown", "worker.index": 0, "worker.state": "missing"}
            return out
        if run.launched and not procs:  # collect before start
            for i in range(spec.workers):
                out[instance_key(run.key, i)] = {
                    **common, "job.state": "PENDING", "job.raw_state": "not launched yet",
                    "job.terminal": False, "job.outcome": "unknown", "worker.index": i,
                    "worker.state": "starting"}
            return out
        for unit, p in run.procs.items():
            out[instance_key(run.key, unit)] = {**common, **_proc_facts(run, p, now)}
        return out


# --- launching helpers -----------------------------------------------------------------------


def _base(job: Job, base: Path) -> Path:
    try:
        return job_base(job, base)
    except Exception:
        return base


def _plan(spec: LocalSource, run: _Run, i: int) -> _Plan:
    from ..templates import render

    ctx: dict[str, Any] = {"worker": i, "job": {"key": run.key, "name": run.key}}
    command = spec.command
    if isinstance(command, str):
        argv = shlex.split(render(command, ctx))
    else:
        argv = [render(part, ctx) for part in command or []]
    if not argv:
        raise ValueError("the command is empty")
    env = dict(os.environ)
    env.update({name: render(value, ctx) for name, value in spec.env.items()})
    cwd = render_path(spec.cwd, ctx, run.base) if spec.cwd else run.base
    stdout = (render_path(spec.stdout, ctx, run.base) if spec.stdout
              else run.base / "logs" / f"{run.key}_{i}.log")
    stderr = render_path(spec.stderr, ctx, run.base) if spec.stderr else None
    return _Plan(argv, env, cwd, stdout, stderr)


def _preflight(pre: Preflight, base: Path, ctx: dict[str, Any]) -> list[str]:
    """What stops a launch, as short phrases; read-only."""
    problems: list[str] = []
    folders = [base]
    for template in pre.dirs:
        path = render_path(template, ctx, base)
        if not path.is_dir():
            problems.append(f"folder missing: {path}")
        elif not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"folder not writable: {path}")
        else:
            folders.append(path)
    for template in pre.inputs:
        path = render_path(template, ctx, base)
        if not path.exists():
            problems.append(f"input missing: {path}")
        elif not os.access(path, os.R_OK):
            problems.append(f"input not readable: {path}")
    if pre.min_free_disk is not None or pre.min_free_pct is not None:
        for folder in dict.fromkeys(folders):
            try:
                usage = shutil.disk_usage(folder)
            except OSError as exc:
                problems.append(f"cannot read free space of {folder}: {exc.strerror}")
                continue
            if pre.min_free_disk is not None and usage.free < pre.min_free_disk:
                problems.append(f"only {_gb(usage.free)} free in {folder} "
                                f"(need {_gb(pre.min_free_disk)})")
            pct = 100.0 * usage.free / usage.total if usage.total else 0.0
            if pre.min_free_pct is not None and pct < pre.min_free_pct:
                problems.append(f"only {pct:.1f}% free in {folder} "
                                f"(need {pre.min_free_pct:g}%)")
    if pre.gpus:
        seen = visible_gpus()
        if seen < pre.gpus:
            problems.append(f"{seen} GPU(s) visible, {pre.gpus} needed")
    return problems


def _log_folders(plans: Iterable[_Plan]) -> list[str]:
    problems: list[str] = []
    for folder in dict.fromkeys(p.parent for plan in plans
                                for p in (plan.stdout, plan.stderr) if p is not None):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(f"cannot create log folder {folder}: {exc.strerror}")
    return problems


def _spawn(proc: _Proc, plan: _Plan) -> str | None:
    """Start one worker; the reason on failure."""
    files: list[IO[bytes]] = []
    try:
        out = plan.stdout.open("wb")
        files.append(out)
        err: IO[bytes] | int = subprocess.STDOUT
        if plan.stderr is not None:
            err = plan.stderr.open("wb")
            files.append(err)
        popen = subprocess.Popen(plan.argv, env=plan.env, cwd=plan.cwd, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, start_new_session=True)
    except OSError as exc:
        what = exc.strerror or type(exc).__name__
        return f"{what}: {exc.filename}" if exc.filename else what
    except (ValueError, subprocess.SubprocessError) as exc:  # e.g. a NUL byte in an argument
        return _one_line(exc)
    finally:
        for f in files:
            f.close()
    proc.popen, proc.pid, proc.started = popen, popen.pid, time.time()
    with contextlib.suppress(*_GONE):
        proc.proc = psutil.Process(popen.pid)
        proc.create_time = proc.proc.create_time()
    return None


def _launch_failed(reason: str, now: float) -> _End:
    return _End("FAILED", "launch failed", "error", "launch_failed", reason, "missing", now,
                succeeded=False)


def _verify_launch(run: _Run, now: float) -> None:
    """ok once every worker is alive or exited 0 at one tick; False after launch_timeout."""
    if run.launch_ok is not None or run.launch_time is None or run.dry_note is not None:
        return
    procs = list(run.procs.values())
    if all(p.alive or (p.end is not None and p.end.exit_code == 0
                       and p.end.signal == 0) for p in procs):
        run.launch_ok = True
    elif now - run.launch_time >= run.spec.launch_timeout:
        down = [f"worker {p.index} {_why(p.end)}" for p in procs if not p.alive]
        up = len(procs) - len(down)
        run.launch_ok = False
        run.launch_error = (f"{up}/{len(procs)} workers up after "
                            f"{run.spec.launch_timeout:g}s: " + "; ".join(down))


def _why(end: _End | None) -> str:
    if end is None:
        return "not seen yet"
    if end.signal:
        return f"killed by {_signame(end.signal)}"
    if end.exit_code is not None:
        return f"exited with code {end.exit_code}"
    return end.raw


# --- watching helpers ------------------------------------------------------------------------


def _adopt(run: _Run, pid: int, proc: Any = None) -> None:
    """Start following a watched pid (missing if it does not exist)."""
    p = _Proc(len(run.procs), pid)
    try:
        p.proc = proc if proc is not None else psutil.Process(pid)
        p.create_time = p.started = p.proc.create_time()
    except _GONE:
        p.proc, p.missing = None, True
    if p.proc is not None:
        with contextlib.suppress(*_GONE, OSError):
            p.gpu = _gpu(p.proc.environ().get("CUDA_VISIBLE_DEVICES"))
        with contextlib.suppress(*_GONE, OSError):
            p.workdir = p.proc.cwd()
    run.procs[str(pid)] = p


def _vanished(p: _Proc, now: float) -> _End:
    if p.adopted:
        from .local_adopt import adopted_end

        return adopted_end(p, now)
    return _End("COMPLETED", "ended", "unknown", "unknown",
                f"process {p.pid} ended; its exit code is unknown (rulesmon did not launch it)",
                "exited", now)


def _zombie(p: _Proc, now: float) -> _End:
    code, sig = None, None
    status = _zombie_status(p.pid) if p.pid is not None else None
    if status is not None:
        code, sig = _split(os.waitstatus_to_exitcode(status))
    parent, ppid = "", None
    with contextlib.suppress(*_GONE):
        ppid = p.proc.ppid()
        parent = f" (pid {ppid})"
    if ppid == 1 and status is not None:  # an orphan init is about to reap: it just ended,
        return _exited(p, os.waitstatus_to_exitcode(status), now)  # and how is known
    return _End("FAILED", "zombie", "failed", "zombie",
                f"process {p.pid} is a zombie: it exited but its parent{parent} has not "
                "reaped it", "zombie", now, exit_code=code, signal=sig)


def _zombie_status(pid: int) -> int | None:
    """A zombie's wait status from /proc/<pid>/stat (field 52), when the kernel shows it."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
        fields = data[data.rfind(b")") + 2:].split()
        return int(fields[49])
    except (OSError, ValueError, IndexError):
        return None


# --- per-tick sampling -----------------------------------------------------------------------


class _Tree:
    """Descendants of a pid: /proc/<pid>/task/*/children where the kernel has them, else one
    ppid scan per tick shared by every process."""

    def __init__(self) -> None:
        self._ppid: dict[int, list[int]] | None = None

    def children(self, pid: int) -> list[int]:
        if _proc_children():
            found: list[int] = []
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                return []
            for task in tasks:
                with contextlib.suppress(OSError, ValueError):
                    found += [int(x) for x in (task / "children").read_text().split()]
            return found
        if self._ppid is None:
            self._ppid = {}
            for proc in psutil.process_iter(["ppid"]):
                ppid = proc.info.get("ppid")
                if ppid is not None:
                    self._ppid.setdefault(ppid, []).append(proc.pid)
        return self._ppid.get(pid, [])

    def descendants(self, pid: int) -> list[int]:
        found: list[int] = []
        seen = {pid}
        stack = [pid]
        while stack and len(found) < 10_000:
            for child in self.children(stack.pop()):
                if child not in seen:
                    seen.add(child)
                    found.append(child)
                    stack.append(child)
        return found


@cache
def _proc_children() -> bool:
    me = os.getpid()
    return Path(f"/proc/{me}/task/{me}/children").exists()


def _update(p: _Proc, tree: _Tree, now: float) -> None:
    """Refresh one process; never raises for a process that vanished."""
    if p.missing and p.end is None:
        p.misses += 1
        if p.misses >= _MISSING_LOOKS:
            p.end = _End("UNKNOWN", f"no process {p.pid}", "unknown", "unknown",
                         f"process {p.pid} was not found in {p.misses} looks (the pid "
                         "watched never ran here, or ended before rulesmon looked)",
                         "missing", now)
    if p.missing or (p.pid is None and p.end is None):  # missing, or not launched (dry run)
        return
    if p.end is not None:
        if p.proc is not None and p.end.worker_state == "zombie" and not _exists(p):
            p.proc = None
        return
    if p.popen is not None:
        code = _reap(p)
        if code is not None:
            p.end = _exited(p, code, now)
            p.proc = None
            return
    elif p.proc is None or not _exists(p):
        p.end = _vanished(p, now)
        p.proc = None
        return
    if p.proc is None:
        p.seen = True
        return
    try:
        _sample(p, tree, now)
    except psutil.NoSuchProcess:
        if p.popen is None:
            p.end = _vanished(p, now)
            p.proc = None
        return  # a launched worker's exit is read from its wait status next tick
    except psutil.AccessDenied:
        pass
    p.seen = True
    if p.status != psutil.STATUS_ZOMBIE:
        return
    if p.adopted:  # an adopted worker's wait status, while /proc still shows it
        status = _zombie_status(p.pid) if p.pid is not None else None
        if status is not None:
            p.end = _exited(p, os.waitstatus_to_exitcode(status), now)
    elif p.popen is None:
        p.end = _zombie(p, now)
    elif (code := _reap(p)) is not None:  # our worker exited while we sampled it
        p.end = _exited(p, code, now)
        p.proc = None


def _exists(p: _Proc) -> bool:
    try:
        return bool(p.proc.is_running())
    except _GONE:
        return False


def _sample(p: _Proc, tree: _Tree, now: float) -> None:
    proc = p.proc
    first = not p.seen
    with proc.oneshot():
        p.status = proc.status()
        if p.status == psutil.STATUS_ZOMBIE:
            p.cpu_pct = p.rss = p.total_pct = p.total_rss = None
            return
        times = proc.cpu_times()
        pct = proc.cpu_percent()
        rss = int(proc.memory_info().rss)
        created = proc.create_time()
    if rss == 0:  # it exited between the status and the memory read: statm of a zombie is
        p.cpu_pct = p.rss = p.total_pct = p.total_rss = None  # all zeros, not its memory
        return
    if first:
        pct = _lifetime_pct(times, p.started or created)
    user = times.user + times.children_user
    system = times.system + times.children_system
    total_pct, total_rss, kids = pct, rss, {}
    for pid in tree.descendants(proc.pid):
        kid = p.kids.get(pid)
        new = kid is None
        try:
            if kid is None:
                kid = psutil.Process(pid)
            with kid.oneshot():
                kt = kid.cpu_times()
                kpct = kid.cpu_percent()
                krss = int(kid.memory_info().rss)
                if krss == 0:  # an exiting child (zombie): no memory to count
                    continue
                if new:
                    kpct = _lifetime_pct(kt, kid.create_time())
        except _GONE:
            continue
        kids[pid] = kid
        total_pct += kpct
        total_rss += krss
        user += kt.user + kt.children_user
        system += kt.system + kt.children_system
    p.kids = kids
    p.cpu_pct, p.rss, p.children = pct, rss, len(kids)
    p.total_pct, p.total_rss = total_pct, total_rss
    p.cpu_user = max(p.cpu_user or 0.0, user)
    p.cpu_sys = max(p.cpu_sys or 0.0, system)
    p.peak_rss = max(p.peak_rss, total_rss)


def _lifetime_pct(times: Any, created: float) -> float:
    """The first reading: average CPU percent since the process started (as ps shows it).
    psutil's create_time can be a second off, so young processes count as one second old."""
    age = max(time.time() - created, 1.0)
    return float(100.0 * (times.user + times.system) / age)


def _reap(p: _Proc) -> int | None:
    """A launched worker's exit code (negative: signal), reaping it; None while it runs.

    wait4 rather than Popen.poll, for the worker's final CPU times (not its ru_maxrss: that
    counts the forked copy of rulesmon before exec)."""
    popen = p.popen
    assert popen is not None
    if popen.returncode is not None:
        return popen.returncode
    try:
        pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
    except ChildProcessError:  # reaped by someone else: its exit status is lost
        popen.returncode = _LOST
        return _LOST
    if pid == 0:
        return None
    popen.returncode = os.waitstatus_to_exitcode(status)
    p.cpu_user = max(p.cpu_user or 0.0, usage.ru_utime)
    p.cpu_sys = max(p.cpu_sys or 0.0, usage.ru_stime)
    return popen.returncode


_LOST = -(10**6)  # a returncode no real process has


def _exited(p: _Proc, code: int, now: float) -> _End:
    if code == _LOST:
        return _vanished(p, now)
    exit_code, sig = _split(code)
    if not sig:
        if exit_code == 0:
            return _End("COMPLETED", "exited 0", "success", "ok", "exited with code 0",
                        "exited", now, 0, 0, succeeded=True)
        return _End("FAILED", f"exited {exit_code}", "failed", "nonzero_exit",
                    f"exited with code {exit_code}", "exited", now, exit_code, 0,
                    succeeded=False)
    name = _signame(sig)
    how = f"killed by {name}" if code < 0 else f"exited with code {code} ({name} in a shell)"
    worker_state = "killed" if code < 0 else "exited"
    if p.terminated:
        return _End("CANCELLED", how, "cancelled", "cancelled", f"{how}: stopped by rulesmon",
                    worker_state, now, exit_code, sig, succeeded=False)
    if sig in _CANCEL_SIGNALS:
        return _End("CANCELLED", how, "cancelled", "cancelled", how, worker_state, now,
                    exit_code, sig, succeeded=False)
    if sig == signal.SIGKILL:  # oom only with evidence (the kernel's record): diagnosis.py
        return _End("FAILED", how, "failed", "killed", how, worker_state, now, exit_code, sig,
                    succeeded=False)
    return _End("FAILED", how, "failed", "signal", how, worker_state, now, exit_code, sig,
                succeeded=False)


def _split(code: int) -> tuple[int, int]:
    """(exit_code, signal) from a returncode: -N is signal N, reported as exit 128+N."""
    if code < 0:
        return 128 - code, -code
    sig = _SHELL_SIGNALS.get(code)
    return code, int(sig) if sig is not None else 0


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _signal_group(p: _Proc, sig: signal.Signals) -> None:
    assert p.pid is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, sig)
    if p.popen is not None and p.popen.returncode is None:  # not reaped: the pid is still ours
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, sig)


def _group_alive(p: _Proc) -> bool:
    """The worker or anything left in its process group still runs (reaping the worker)."""
    assert p.pid is not None
    leader = _reap(p) is None if p.popen is not None else _exists(p)
    try:
        os.killpg(p.pid, 0)
    except ProcessLookupError:
        return leader
    except PermissionError:
        return True
    return True


# --- facts -----------------------------------------------------------------------------------


def _proc_facts(run: _Run, p: _Proc, now: float) -> Facts:
    f: Facts = {"worker.index": p.index}
    if p.pid is not None:
        f.update({"job.id": str(p.pid), "job.pid": p.pid, "worker.pid": p.pid})
    for name, value in (("job.workdir", p.workdir), ("job.stdout", p.log),
                        ("job.stderr", p.err), ("worker.log", p.log), ("worker.gpu", p.gpu),
                        ("job.start_time", p.started)):
        if value is not None:
            f[name] = value
    if p.cpu_user is not None and p.cpu_sys is not None:
        f.update({"job.cpu_user": p.cpu_user, "job.cpu_sys": p.cpu_sys,
                  "job.cpu_time": p.cpu_user + p.cpu_sys})
    if p.peak_rss:
        f["job.mem_used"] = p.peak_rss
    end = p.end
    if end is not None:
        f.update({"job.state": end.state, "job.raw_state": end.raw, "job.terminal": True,
                  "job.outcome": end.outcome, "job.diagnosis": end.diagnosis,
                  "job.diagnosis_detail": end.detail, "job.end_time": end.time,
                  "worker.state": end.worker_state})
        if end.worker_state == "zombie" and p.proc is None:
            f["worker.state"] = "exited"  # reaped at last; the job stays FAILED
        if end.succeeded is not None:
            f["job.succeeded"] = end.succeeded
        if end.exit_code is not None:
            f["job.exit_code"] = f["worker.exit_code"] = end.exit_code
        if end.signal is not None:
            f["job.signal"] = f["worker.signal"] = end.signal
        if not end.time_known:
            del f["job.end_time"]
        elif p.started is not None:
            f["job.elapsed"] = max(0.0, end.time - p.started)
        return f
    if p.missing:
        f.update({"job.state": "UNKNOWN", "job.raw_state": f"no process {p.pid}",
                  "job.terminal": False, "job.outcome": "unknown", "worker.state": "missing"})
        return f
    if run.dry_note is not None:  # never launched in a dry run, which is one tick (engine)
        f.update({"job.state": "PENDING", "job.raw_state": run.dry_note, "job.terminal": False,
                  "job.outcome": "unknown", "worker.state": "starting"})
        return f
    if not p.seen:
        f.update({"job.state": "PENDING", "job.raw_state": run.dry_note or "starting",
                  "job.terminal": False, "job.outcome": "unknown", "worker.state": "starting"})
        return f
    status = p.status or "running"
    suspended = status in _SUSPENDED
    f.update({"job.state": "SUSPENDED" if suspended else "RUNNING", "job.raw_state": status,
              "job.terminal": False, "job.outcome": "running",
              "worker.state": _WORKER_STATE.get(status, "sleeping")})
    if p.started is not None:
        f["job.uptime"] = f["worker.uptime"] = f["job.elapsed"] = max(0.0, now - p.started)
    if p.cpu_pct is not None:
        f["worker.cpu_pct"] = p.cpu_pct
        f["job.cpu_pct"] = p.total_pct
    if p.rss is not None:
        f["worker.rss"] = p.rss
        f["job.rss"] = p.total_rss
    if p.children is not None:
        f["job.children"] = f["worker.children"] = p.children
    return f


def _gpu(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
