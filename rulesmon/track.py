"""Record a piece of work (a Celery task, a simulation, any command) in the job history.

    with rulesmon.track(tool="fenicsx", script="poisson.py", params={"mesh_size": 64}):
        run_simulation()

    @rulesmon.track(tool="lammps")
    def simulate(...): ...

    rulesmon track -- python train.py --lr 3e-4

Each record holds CPU user/system time, peak memory, duration, status (success / failed /
timeout / cancelled / error), return code and error, in the same `jobs` table the engine
writes, so `rulesmon history / stats / show` list tracked work beside watched jobs. The
database is `$RULESMON_HISTORY`, else `$XDG_DATA_HOME/rulesmon/history.db`
(~/.local/share/rulesmon/history.db); `db=` overrides it.

In-process tracking measures the whole process (as a profiler of one task per worker
process would): CPU from getrusage of the process and its reaped children, memory by
sampling the resident size of the process and its children on a background thread. A
tracked command's CPU time comes from wait4, exactly; its peak memory from the kernel's
high-water mark of the command and its descendants (VmHWM, read once the exec is done and
on the meter thread). The wait4 peak is used only when it is clearly above rulesmon's own
peak at launch (by more than the kernel's per-CPU counting slack): a forked child starts
with its parent's pages, and wait4 counts them, so `sleep 5` would otherwise "use" all of
rulesmon's memory. A command that never starts (not found, not executable) is recorded as
an error with its CPU time and memory unknown, never rulesmon's own.
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast, overload

from .history import liveness, retention, rows
from .history.location import default_path
from .history.schema import SchemaError, connect

log = logging.getLogger("rulesmon.track")
log.addHandler(logging.NullHandler())  # a library stays quiet unless the app configures logging

F = TypeVar("F", bound=Callable[..., Any])
MAX_POINTS = 720
#: Tracked records are kept this long by default (as a ruleset's `history.retention`);
#: `retention=` or $RULESMON_HISTORY_RETENTION (a duration: 90d, 2w) says otherwise.
RETENTION = 365 * 86400.0
RETENTION_ENV = "RULESMON_HISTORY_RETENTION"
SAMPLE_RETENTION = 30 * 86400.0
_SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2")
#: A command ended by one of these was stopped by someone (Ctrl-C, scancel, kill), not broken.
_CANCEL = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class _Meter:
    """Resident memory of a process tree, sampled on a daemon thread until stopped.

    For another process (`child`), each sample also reads the kernel's high-water marks
    (VmHWM) of the process and its descendants, so a peak between two samples is not
    missed. Sampling starts fast (10 ms, doubling up to `interval`) so short commands get
    figures too.
    """

    def __init__(self, pid: int, interval: float, record_every: float, *,
                 child: bool = False) -> None:
        self.pid = pid
        self.interval = interval
        self.record_every = record_every
        self.child = child
        self.peak = 0
        self.points: list[tuple[float, float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rulesmon-track")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        try:  # the last moments count too (memory allocated just before the end)
            import psutil

            proc = psutil.Process(self.pid)
            children = proc.children(recursive=True)
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in children)
            self.peak = max(self.peak, rss, self._hwm([self.pid, *(c.pid for c in children)]))
        except Exception:  # the process has ended: its rusage has the peak
            pass

    def _hwm(self, pids: Sequence[int]) -> int:
        """The highest VmHWM among `pids` (0 when measuring this very process, whose
        high-water mark predates the tracked work)."""
        if not self.child:
            return 0
        return max((_vm_hwm(str(pid)) or 0 for pid in pids), default=0)

    def _run(self) -> None:
        try:
            import psutil

            proc = psutil.Process(self.pid)
        except Exception:  # psutil missing or the process already gone: no samples
            return
        children: list[Any] = []
        last_scan = last_point = 0.0
        wait = min(0.01, self.interval)
        while True:
            now = time.monotonic()
            try:
                if now - last_scan >= 1.0:
                    children = proc.children(recursive=True)
                    last_scan = now
                rss = proc.memory_info().rss
                for child in children:
                    try:
                        rss += child.memory_info().rss
                    except Exception:  # a child that just ended
                        continue
                self.peak = max(self.peak, rss,
                                self._hwm([self.pid, *(c.pid for c in children)]))
                if now - last_point >= self.record_every:
                    last_point = now
                    times = proc.cpu_times()
                    self._record(time.time(), times.user + times.children_user,
                                 times.system + times.children_system, rss)
            except Exception:  # the process ended between two samples
                return
            if self._stop.wait(wait):
                return
            wait = min(wait * 2, self.interval)

    def _record(self, t: float, user: float, system: float, rss: int) -> None:
        self.points.append((t, user, system, rss))
        if len(self.points) > MAX_POINTS:  # keep a bounded series: drop every other point
            self.points = self.points[::2]


class Tracking:
    """One tracked piece of work: a context manager, and a decorator that tracks each call."""

    def __init__(self, tool: str | None = None, script: str | None = None,
                 params: Mapping[str, Any] | None = None, *, name: str | None = None,
                 task_id: str | None = None, db: Path | str | None = None,
                 source: str = "track", sample_interval: float = 0.2,
                 retention: float | str | None = None) -> None:
        self.retention = retention_seconds(retention)
        self.tool = tool
        self.script = script
        self.params = dict(params) if params else {}
        self.name = name
        self.task_id = task_id
        self.db_path = Path(db) if db is not None else default_path()
        self.source = source
        self.sample_interval = sample_interval
        self.uid: str | None = None
        self.result: dict[str, Any] | None = None
        self._status: tuple[str, int | None, str | None] | None = None
        self._rid: int | None = None
        self._started = 0.0
        self._clock0 = 0.0
        self._ru0: tuple[float, float] = (0.0, 0.0)
        self._maxrss0 = 0
        self.recorded = True
        self.problem = ""
        self._meter: _Meter | None = None
        self._own = True
        self._measured = True

    # --- context manager and decorator -----------------------------------------------------

    def __enter__(self) -> Tracking:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        if exc is None:
            self.finish()
        else:
            self.finish(*_from_exception(exc))

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh(fn):
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    def _fresh(self, fn: Callable[..., Any]) -> Tracking:
        """A new record per call, with this one's settings."""
        return Tracking(self.tool or getattr(fn, "__qualname__", None), self.script,
                        self.params, name=self.name, db=self.db_path, source=self.source,
                        sample_interval=self.sample_interval, retention=self.retention)

    def set_status(self, status: str, returncode: int | None = None,
                   error: str | None = None) -> None:
        """Say how the work ended when no exception says it (a failed solver run)."""
        if status not in rows.FINAL:
            raise ValueError(f"status must be one of {', '.join(rows.FINAL)}, not {status!r}")
        self._status = (status, returncode, error)

    # --- the record --------------------------------------------------------------------------

    def start(self, pid: int | None = None, *, measure: bool = True) -> None:
        """Open the record (status running) and start measuring `pid` (default: this
        process). With `measure=False` (a command that never started) nothing is measured:
        the record's CPU time and memory stay unknown, never this process's."""
        self._started = time.time()
        self._clock0 = time.perf_counter()
        self._ru0 = _cpu()
        self._maxrss0 = _maxrss()
        self._measured = measure
        self._own = measure and (pid is None or pid == os.getpid())
        if measure:
            self._meter = _Meter(pid or os.getpid(), self.sample_interval,
                                 max(1.0, self.sample_interval), child=not self._own)
            self._meter.start()
        else:
            self._meter = None
        values = self._values("running")
        values["start_time"] = self._started
        values["details"] = rows.dumps(liveness.identity(
            os.getpid(), command=None if self._own else pid))
        self._write(lambda db: self._insert(db, values), reap=True)
        log.info("job %s started: tool=%s script=%s", self.uid, self.tool, self.script)

    def finish(self, status: str | None = None, returncode: int | None = None,
               error: str | None = None, *, cpu: tuple[float, float] | None = None,
               mem_peak: int | None = None, signum: int | None = None) -> dict[str, Any]:
        """Close the record; returns it in the history's JSON shape (as `rulesmon show
        --format json` prints it, without the series)."""
        if not self._started:
            raise RuntimeError("finish() before start(): use `with track(...)` or call start()")
        duration = time.perf_counter() - self._clock0
        end = self._started + duration
        if self._meter is not None:
            self._meter.stop()
        if cpu is None and self._measured:
            now_cpu = _cpu()
            cpu = (max(0.0, now_cpu[0] - self._ru0[0]), max(0.0, now_cpu[1] - self._ru0[1]))
        if status is None:
            status, returncode, error = self._status or ("success", returncode, error)
        if mem_peak is None and self._own and _maxrss() > self._maxrss0:
            mem_peak = _maxrss()  # the process's lifetime peak was reached during the work
        peak = max(mem_peak or 0, self._meter.peak if self._meter else 0) or None
        values = self._values(status)
        values.update({
            "exit_code": returncode, "error": error, "start_time": self._started,
            "end_time": end, "duration": duration,
            "cpu_user": cpu[0] if cpu else None, "cpu_sys": cpu[1] if cpu else None,
            "cpu_total": cpu[0] + cpu[1] if cpu else None, "mem_peak": peak, "signal": signum,
            "cpu_eff": 100.0 * (cpu[0] + cpu[1]) / duration if cpu and duration > 0 else None,
        })
        points = self._meter.points if self._meter else []

        def close(db: sqlite3.Connection) -> None:
            if self._rid is None:
                self._insert(db, values)
            rows.update_many(db, [(cast(int, self._rid), end, values)])
            if points:
                _t0, u0, s0, _rss0 = points[0]
                db.executemany(
                    "INSERT INTO samples (job, t, cpu_user, cpu_sys, mem_rss, elapsed) VALUES "
                    "(?, ?, ?, ?, ?, ?)",
                    [(self._rid, t, u - u0, s - s0, rss, t - self._started)
                     for t, u, s, rss in points])
            db.execute("INSERT INTO job_states VALUES (?, ?, ?, ?)",
                       (self._rid, end, status.upper(), "RUNNING"))
            if retention.due(db, end):
                retention.prune(db, end, self.retention, SAMPLE_RETENTION)

        self._write(close)
        level = {"success": logging.INFO, "timeout": logging.WARNING,
                 "cancelled": logging.WARNING}.get(status, logging.ERROR)
        log.log(level, "job %s ended %s after %.2fs (cpu %s)%s", self.uid, status, duration,
                f"{cpu[0] + cpu[1]:.2f}s" if cpu else "unknown", f": {error}" if error else "")
        self.result = {
            "id": self.uid, "job_id": self.task_id, "tool": self.tool, "script": self.script,
            "params": self.params, "status": status, "returncode": returncode, "error": error,
            "start_time": _iso(self._started), "end_time": _iso(end),
            "duration_seconds": round(duration, 3),
            "resource_usage": {
                "cpu_user_seconds": round(cpu[0], 3) if cpu else None,
                "cpu_system_seconds": round(cpu[1], 3) if cpu else None,
                "cpu_total_seconds": round(cpu[0] + cpu[1], 3) if cpu else None,
                "memory_peak_bytes": peak,
                "memory_peak_mb": round(peak / 1048576, 3) if peak else None},
        }
        return self.result

    def _values(self, status: str) -> dict[str, Any]:
        return {
            "job_id": self.task_id, "name": self.name or self.script or self.tool,
            "source": self.source, "tool": self.tool or "", "script": self.script,
            "state": status.upper(), "status": status, "node": _host(), "user": _user(),
            "params": rows.dumps(self.params),
        }

    def _insert(self, db: sqlite3.Connection, values: Mapping[str, Any]) -> None:
        uid = self.task_id or rows.new_uid()
        taken = db.execute("SELECT count(*) FROM jobs WHERE uid = ? OR job_id = ?",
                           (uid, self.task_id)).fetchone()[0]
        if taken:  # a retried task keeps its id: later attempts get a suffix
            uid = f"{uid}.{taken + 1}"
        self.uid = uid
        self._rid = rows.insert(db, uid=uid, run_id=None, ruleset="", instance=
                                f"{self.tool or self.source}/{uid[:12]}", now=self._started,
                                values=values)
        db.execute("INSERT INTO job_states VALUES (?, ?, 'RUNNING', NULL)",
                   (self._rid, self._started))

    def _write(self, work: Callable[[sqlite3.Connection], None], *,
               reap: bool = False) -> None:
        """History is a side record: a locked or unwritable database is logged, never raised
        into the user's work. `reap` first closes this host's records whose processes died:
        done when work starts, not again when it ends (it costs a process lookup per running
        record, under the write lock)."""
        try:
            db = connect(self.db_path, timeout=30.0)
        except (OSError, sqlite3.Error, SchemaError) as exc:
            self.recorded, self.problem = False, str(exc)
            log.warning("history_unavailable: %s", exc)
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if reap:
                    liveness.mark(db, liveness.dead(db, _host()), time.time())
                work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.recorded, self.problem = False, str(exc)
            log.warning("history_write_failed: %s", exc)
        finally:
            db.close()


@overload
def track(tool: F, /) -> F: ...


@overload
def track(tool: str | None = None, script: str | None = None,
          params: Mapping[str, Any] | None = None, *, name: str | None = None,
          task_id: str | None = None, db: Path | str | None = None,
          source: str = "track", retention: float | str | None = None) -> Tracking: ...


def track(tool: str | Callable[..., Any] | None = None, script: str | None = None,
          params: Mapping[str, Any] | None = None, *, name: str | None = None,
          task_id: str | None = None, db: Path | str | None = None,
          source: str = "track", retention: float | str | None = None) -> Any:
    """A `Tracking`: `with track(...):`, `@track(...)`, or bare `@track`. `retention`
    (seconds or a duration such as "90d") is how long the database keeps tracked records."""
    if callable(tool):
        return Tracking(None, script, params, name=name, db=db, source=source,
                        retention=retention)(tool)
    return Tracking(tool, script, params, name=name, task_id=task_id, db=db, source=source,
                    retention=retention)


def retention_seconds(value: float | str | None) -> float:
    """The retention asked for, else $RULESMON_HISTORY_RETENTION, else a year. A bad
    argument is the caller's mistake (ValueError); a bad environment value is logged and
    the default used, so a typo in a worker's environment never stops its tasks."""
    from .config.units import parse_duration

    if value is not None:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
        if seconds <= 0:
            raise ValueError(f"retention must be more than 0, not {value!r}")
        return seconds
    text = os.environ.get(RETENTION_ENV, "").strip()
    if text:
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            seconds = 0.0
            log.warning("history_retention_invalid: %s=%r: %s", RETENTION_ENV, text, exc)
        if seconds > 0:
            return seconds
    return RETENTION


def describe(exc: BaseException) -> str:
    """`Type: message`, once: exceptions whose str() is their repr (Celery's time limits:
    `SoftTimeLimitExceeded('limit',)`) give their arguments instead."""
    name = type(exc).__name__
    text = str(exc).strip()
    if text.startswith(name + "("):
        text = ", ".join(str(a) for a in exc.args)
    return f"{name}: {text}" if text else name


def _from_exception(exc: BaseException) -> tuple[str, int | None, str | None]:
    text = describe(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled", None, "interrupted"
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return ("success" if code == 0 else "failed"), code, None if code == 0 else text
    if isinstance(exc, subprocess.CalledProcessError):
        return "failed", exc.returncode, text
    if isinstance(exc, TimeoutError | subprocess.TimeoutExpired) or \
            type(exc).__name__ in ("SoftTimeLimitExceeded", "TimeLimitExceeded"):
        return "timeout", None, text
    return "error", None, text


def _cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _high_water() -> int:
    """This process's peak resident size since it started its program (VmHWM); the
    lifetime figure of getrusage, which may include a parent's pages, where /proc is
    missing."""
    hwm = _vm_hwm("self")
    return hwm if hwm is not None else _maxrss()


@functools.cache
def _rss_slack() -> int:
    """How far two readings of one process's resident size may differ in bytes: the kernel
    keeps each of its three RSS counters per CPU and folds a CPU's share in only past a batch
    of max(32, 2 x CPUs) pages (percpu_counter_batch), so a reading may miss that many pages
    per CPU and counter."""
    cpus = os.cpu_count() or 1
    return 3 * max(32, 2 * cpus) * cpus * resource.getpagesize()


def _vm_hwm(pid: str) -> int | None:
    """VmHWM of /proc/<pid>/status in bytes; None when the process has ended (or released
    its memory) or there is no /proc."""
    try:
        with Path(f"/proc/{pid}/status").open("rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _iso(t: float) -> str:
    from .history.queries import iso

    return str(iso(t))


def _host() -> str:
    return liveness.host()


@functools.cache
def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return None


# --- rulesmon track -- CMD ----------------------------------------------------------------


def run_command(argv: Sequence[str], *, tool: str | None = None, script: str | None = None,
                name: str | None = None, params: Mapping[str, Any] | None = None,
                task_id: str | None = None, db: Path | str | None = None,
                timeout: float | None = None, grace: float = 10.0,
                quiet: bool = False, retention: float | str | None = None) -> int:
    """Run a command as a tracked job and return its exit status (128+N after signal N).

    Signals sent to rulesmon are passed on to the command. With a terminal on stdin the
    command shares rulesmon's process group (Ctrl-C reaches both once, from the terminal);
    otherwise it gets its own group and SIGINT is passed on too.
    """
    argv = list(argv)
    base = Path(argv[0]).name
    if script is None:  # `python train.py ...`: the first file-like argument names the work
        after_c = {i + 1 for i, a in enumerate(argv) if a == "-c"}
        script = next((a for i, a in enumerate(argv[1:], 1) if i not in after_c
                       and not a.startswith("-") and Path(a).suffix
                       and not any(ch.isspace() or ch in ";()" for ch in a)), None)
    tracking = Tracking(tool or base, script, {"argv": argv, **(params or {})},
                        name=name or " ".join(argv)[:200], task_id=task_id, db=db,
                        source="command", sample_interval=0.5, retention=retention)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    forwarded: list[int] = []
    child: list[int] = []
    timed_out = threading.Event()

    def forward(signum: int, _frame: Any) -> None:
        forwarded.append(signum)  # one that arrives before the command exists is sent after
        if child:
            _kill(child[0], signum, group=not interactive)

    def from_terminal(_signum: int, _frame: Any) -> None:
        """Ctrl-C from the terminal reaches the command directly (same process group).
        A Python handler, not SIG_IGN: an ignored signal would stay ignored in the command."""

    # Handlers first, so a signal sent while the command starts is not lost (or fatal).
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig_name in _SIGNALS:
            signum = getattr(signal, sig_name)
            terminal = interactive and sig_name in ("SIGINT", "SIGQUIT")
            previous[signum] = signal.signal(signum, from_terminal if terminal else forward)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    try:
        proc = subprocess.Popen(argv, process_group=None if interactive else 0)
    except (FileNotFoundError, PermissionError, OSError) as exc:
        restore()
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        tracking.start(measure=False)  # no process ran: its CPU and memory are unknown
        tracking.finish("error", code, f"cannot run {argv[0]}: {exc.strerror or exc}")
        _say(quiet, f"rulesmon: cannot run {argv[0]}: {exc.strerror or exc}")
        return code
    child.append(proc.pid)
    # The command's wait4 peak counts the pages it had before exec: ours, at most our peak so
    # far (read after the exec, so it covers the moment of the fork). Its own high-water mark
    # since exec (VmHWM, Popen returns once the exec is done) holds none of them.
    inherited = _high_water()
    own_hwm = _vm_hwm(str(proc.pid)) or 0
    for signum in list(forwarded):
        _kill(proc.pid, signum, group=not interactive)
    tracking.start(pid=proc.pid)
    timer = None
    if timeout is not None:
        def expire() -> None:
            timed_out.set()
            _kill(proc.pid, signal.SIGTERM, group=not interactive)
            if not _exited(proc.pid, grace):
                _kill(proc.pid, signal.SIGKILL, group=not interactive)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        _pid, wait_status, usage = os.wait4(proc.pid, 0)
    finally:
        if timer is not None:
            timer.cancel()
        restore()
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    code = proc.returncode
    error: str | None
    if code < 0:
        status = "timeout" if timed_out.is_set() else \
            "cancelled" if -code in forwarded or -code in _CANCEL else "failed"
        error = f"killed by signal {-code} ({signal.Signals(-code).name})"
        exit_code: int = 128 - code
    else:
        status = "timeout" if timed_out.is_set() else "success" if code == 0 else "failed"
        error = None if code == 0 else f"exit code {code}"
        exit_code = code
    if timed_out.is_set():
        error = f"timed out after {timeout:g}s" + (f"; {error}" if error else "")
    waited = usage.ru_maxrss * 1024
    # wait4's figure is the command's only when clearly above what the fork carried in: the
    # kernel's resident-size counters are per-CPU approximations, so the copy counted at exec
    # and our own mark read after it differ by a few pages either way (a `sleep` under load
    # was recorded with its parent's 200 MB). Otherwise the command's own VmHWM readings.
    mem_peak = waited if waited > inherited + _rss_slack() else None
    result = tracking.finish(status, proc.returncode if code >= 0 else None, error,
                             cpu=(usage.ru_utime, usage.ru_stime),
                             mem_peak=max(mem_peak or 0, own_hwm) or None,
                             signum=-code if code < 0 else None)
    where = f"recorded in {tracking.db_path}" if tracking.recorded else \
        f"NOT recorded: {tracking.problem}"
    _say(quiet, f"rulesmon: {str(result['id'])[:12]} {status} in "
         f"{result['duration_seconds']:.2f}s (exit {exit_code}), {where}")
    return exit_code


def _kill(pid: int, signum: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _exited(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still accepts signal 0: it has exited once its state is Z
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr)


class _CallableModule(types.ModuleType):
    """`rulesmon.track` is this module once it is imported; calling it calls `track`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return track(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
