"""A restarted run takes over what the previous one left (see local_state.py for what is
recorded, and docs/reliability.md "Restarts" for the promises).

- A launched job whose launch is recorded is never launched again: each worker is adopted
  (alive, same pid and start time), or keeps its recorded end, or ended while rulesmon was down
  (outcome unknown), or, when rulesmon was killed between the launch record and the worker's
  own record, is found by its launch marker, else ends UNKNOWN ("launch interrupted").
- A watched process keeps its recorded end; one seen alive before and gone now ended while
  rulesmon was down (outcome unknown; a zombie's wait status is read from /proc).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from . import local_state
from .local import _GONE, _adopt, _End, _gpu, _plan, _Proc

if TYPE_CHECKING:
    from .local import _Run
    from .local_state import Record, Registry

DOWN = "ended while rulesmon was down"


def down_end(p: _Proc, now: float) -> _End:
    """Seen alive before the restart, gone at it: ended, how is not known."""
    who = "launched by rulesmon" if p.adopted else "watched"
    return _End("COMPLETED", DOWN, "unknown", "unknown",
                f"process {p.pid} ({who}) {DOWN}: its exit code and signal are unknown (it "
                "was no longer rulesmon's child and left no exit status)", "exited", now,
                time_known=False)


def adopted_end(p: _Proc, now: float) -> _End:
    """An adopted worker (not rulesmon's child since the restart) that ended while watched."""
    if p.terminated:
        return _End("CANCELLED", "stopped by rulesmon", "cancelled", "cancelled",
                    f"process {p.pid} was stopped by rulesmon; its exit status is unknown (not "
                    "rulesmon's child after a restart)", "exited", now, succeeded=False)
    return _End("COMPLETED", "ended", "unknown", "unknown",
                f"process {p.pid} ended; its exit code and signal are unknown (adopted after a "
                "restart, it was no longer rulesmon's child)", "exited", now)


def _restore_end(data: dict[str, Any]) -> _End | None:
    with contextlib.suppress(TypeError, ValueError):
        return _End(**data)
    return None


def _follow(p: _Proc, proc: Any, started: float | None) -> None:
    """Follow a live process again (its CPU percentage starts from its lifetime average)."""
    p.proc, p.pid = proc, proc.pid
    with contextlib.suppress(*_GONE):
        p.create_time = proc.create_time()
    p.started = started if started is not None else p.create_time
    if p.gpu is None:
        with contextlib.suppress(*_GONE, OSError):
            p.gpu = _gpu(proc.environ().get("CUDA_VISIBLE_DEVICES"))
    if p.workdir is None:
        with contextlib.suppress(*_GONE, OSError):
            p.workdir = proc.cwd()


def _from_record(rec: Record, now: float, *, launched: bool) -> _Proc:
    p = _Proc(rec.index, rec.pid)
    p.adopted = launched
    p.recorded = True
    p.create_time, p.started = rec.create_time, rec.started
    p.log, p.err = rec.info.get("log"), rec.info.get("err")
    p.workdir, p.gpu = rec.info.get("workdir"), rec.info.get("gpu")
    end = _restore_end(rec.end) if rec.end is not None else None
    if end is not None:
        p.end, p.seen, p.end_saved = end, True, True
        return p
    proc = local_state.same_process(rec.pid, rec.create_time) if rec.pid is not None else None
    if proc is not None:
        _follow(p, proc, rec.started)
        return p
    p.seen = True
    p.end = down_end(p, now)
    return p


def restore_launched(run: _Run, registry: Registry, now: float) -> list[int]:
    """Adopt a recorded launch of this job; returns the pids adopted alive. Leaves the job
    unlaunched (the caller launches it) when no launch is recorded."""
    recorded = registry.launch_of(run.key)
    if recorded is None:
        return []
    token, launched, run.launch_ok, run.launch_error = recorded
    run.started, run.launch_time, run.token = True, launched, token
    run.launch_saved = run.launch_ok is not None
    records = {r.index: r for r in registry.procs_of(run.key)}
    marked: dict[int, Any] | None = None
    alive: list[int] = []
    for i in range(run.spec.workers):
        rec = records.get(i)
        if rec is not None and (rec.pid is not None or rec.end is not None):
            p = _from_record(rec, now, launched=True)
            if p.proc is not None and local_state.carries(p.proc, token, i) is False:
                p.proc = None  # same pid and start time but not ours: cannot happen, but
                p.end = down_end(p, now)  # never adopt a process without our marker
        else:
            if marked is None:
                marked = local_state.find_marked(token)
            p = _Proc(i)
            p.adopted = True
            with contextlib.suppress(Exception):
                plan = _plan(run.spec, run, i)
                p.log, p.err = str(plan.stdout), str(plan.stderr or plan.stdout)
                p.workdir, p.gpu = str(plan.cwd), plan.gpu
            proc = marked.get(i)
            if proc is not None:
                _follow(p, proc, None)
            else:
                p.seen = True
                p.end = _End("UNKNOWN", "launch interrupted", "unknown", "unknown",
                             f"rulesmon was killed while launching worker {i}: no process "
                             "carries its launch marker, so it either never started or "
                             "ended while rulesmon was down; it is not launched again",
                             "missing", now, time_known=False)
        if p.end is None and p.pid is not None:
            alive.append(p.pid)
        run.procs[str(i)] = p
    return alive


def restore_watched(run: _Run, registry: Registry, now: float) -> None:
    """Watched processes recorded by the previous run: their ends, or their adoption."""
    for rec in registry.procs_of(run.key):
        if rec.pid is None and rec.end is None:
            continue
        run.procs[rec.unit] = _from_record(rec, now, launched=False)
    if run.spec.pid_file and run.procs:  # an unchanged pid file names what is restored
        run.pid_file_seen = registry.pid_file_of(run.key)
    if run.spec.pids and run.procs:  # pids not seen alive before are looked for again
        for pid in run.spec.pids:
            if str(pid) not in run.procs:
                _adopt(run, pid)
