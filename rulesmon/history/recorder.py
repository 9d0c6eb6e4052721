"""The engine's history writer: jobs, state changes, and samples (resources, progress).

Built for thousands of jobs per tick. Each instance's interesting facts are reduced to a
tuple compared with the last one written, so an unchanged job costs a tuple and a compare;
a job row is written only when that tuple changes (state, exit code, accounting that arrives
late, ...). A sample (resources and the progress point) is written whenever the row is, so
the figures at launch, at each change and at the end (the last ones) are never lost, and
between changes at most every `sample_every` per job, with each job's schedule offset by its
key so the writes spread over the interval instead of landing in the same tick. Everything
goes into the tick's own transaction (`stage` returns the work; the store runs it inside
`save_tick`), and retention runs hourly in small batches.
"""

from __future__ import annotations

import copy
import sqlite3
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..redact import Secrets
from ..store import TickWriter
from . import retention, rows
from .rows import status_of

#: Facts whose change rewrites the job row.
_SIG = ("job.source", "job.id", "job.state", "job.terminal", "job.exit_code",
        "job.hold_reason", "job.restarts", "node.state", "node.retries")
#: Facts that move all the time while a job runs, or change only with its state; they join
#: the signature once the job has ended, so accounting figures that arrive after the end
#: (sacct's lag) still reach the row.
_FINAL = ("job.outcome", "job.signal", "job.diagnosis", "job.name", "job.partition",
          "job.node_list", "job.remote_host", "job.status", "job.cpu_user", "job.cpu_sys",
          "job.cpu_time", "job.mem_used", "job.mem_req", "job.cpu_eff", "job.mem_eff",
          "job.time_eff", "job.gpu_hours", "job.elapsed", "job.end_time", "job.verified",
          "job.diagnosis_detail")
_TERMINAL = _SIG.index("job.terminal")
#: One sample row: resources, then the progress point (the last five, kept only when moved;
#: `progress.done` comes last so a sample without progress is recognised at once).
_SAMPLE = ("job.cpu_user", "job.cpu_sys", "job.cpu_pct", "job.rss", "job.mem_used",
           "gpu.util", "gpu.mem_used", "job.elapsed", "progress.total", "progress.pct",
           "progress.rate", "progress.eta", "progress.done")
_NO_PROGRESS = (None, None, None, None, None)
_INSERT_SAMPLE = ("INSERT INTO samples (job, t, cpu_user, cpu_sys, cpu_pct, mem_rss, mem_peak, "
                  "gpu_util, gpu_mem, elapsed, total, pct, rate, eta, done) VALUES "
                  "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
#: Kept in the `details` JSON column when present.
_DETAILS = ("job.raw_state", "job.workdir", "job.stdout", "job.stderr", "job.hold_reason",
            "job.hold_code", "job.restarts", "job.account", "job.qos", "job.reason",
            "job.array_id", "job.array_task", "job.cluster", "job.proc", "job.batch_name",
            "job.run_count", "job.gpus_assigned", "job.diagnosis_detail", "job.verified",
            "job.verify_detail", "job.launch_error", "job.node_list", "job.remote_host",
            "job.time_left", "job.wait", "node.name", "node.state", "node.retries",
            "node.max_retries", "node.cluster", "node.parents", "node.children", "worker.index",
            "worker.gpu")
_BAD = ("failed", "timeout", "cancelled", "error")


@dataclass(slots=True)
class _Live:
    """What the recorder remembers of one instance between ticks."""

    rid: int
    sig: tuple[Any, ...]
    state: str | None
    job_id: str | None
    next_sample: float
    last_progress: tuple[Any, ...] = (None, None)
    ended: bool = False


class Recorder:
    """Turns the tick's snapshots into history rows."""

    def __init__(self, ruleset: str, run_id: int, *, sample_every: float, retention: float,
                 sample_retention: float, secrets: Secrets | None = None) -> None:
        self.ruleset = ruleset
        #: masked (`***`) in every row written (rulesmon/redact.py)
        self.secrets = secrets or Secrets()
        self.run_id = run_id
        self.sample_every = sample_every
        self.retention = retention
        self.sample_retention = sample_retention
        self.live: dict[str, _Live] = {}
        self._next_prune: float | None = None

    # --- per tick -----------------------------------------------------------------------------

    def stage(self, now: float, instances: Mapping[str, Mapping[str, Any]],
              run_facts: Mapping[str, Any]) -> TickWriter | None:
        """The tick's history writes as a function of the connection (run by the store
        inside the tick's transaction), or None when there is nothing to write. When that
        transaction fails, the store calls its `rollback` and may run it again later."""
        changed: list[tuple[str, Mapping[str, Any], tuple[Any, ...]]] = []
        samples: list[tuple[Any, ...]] = []
        live_map = self.live
        every = self.sample_every
        sig_keys, final_keys, terminal = _SIG, _FINAL, _TERMINAL
        empty = len(_SAMPLE)
        for key, facts in instances.items():
            get = facts.get
            sig = tuple(map(get, sig_keys))
            if sig[0] is None or sig[0] == "none":  # no source: not a job (files only)
                continue
            if sig[terminal]:
                sig += tuple(map(get, final_keys))
            live = live_map.get(key)
            if live is None or live.sig != sig:
                # the row is rewritten this tick (and may become a new job's): its sample is
                # written with it, once the row id is known
                changed.append((key, facts, sig))
                continue
            if live.ended or now < live.next_sample:
                continue
            live.next_sample = now + every
            row = _sample(live, now, facts)
            if row.count(None) < empty:
                samples.append(row)
        prune = self._next_prune is None or now >= self._next_prune
        if not (changed or samples or prune):
            return None

        return _TickWrite(self, now, changed, samples, run_facts, prune)

    def _write(self, db: sqlite3.Connection, now: float,
               changed: list[tuple[str, Mapping[str, Any], tuple[Any, ...]]],
               run_facts: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Insert or update the changed rows; returns the sample of each (its figures at
        this change)."""
        updates: list[tuple[int, float, Mapping[str, Any]]] = []
        inserts: list[tuple[int, str, Mapping[str, Any]]] = []
        adopted: list[tuple[int, int]] = []
        transitions: list[tuple[int, float, str, str | None]] = []
        host = run_facts.get("host.name")
        staged = [(key, facts, sig, _columns(facts, host)) for key, facts, sig in changed]
        if self.secrets:  # only the rows written are masked, not every fact of every tick
            mask = self.secrets.scrub_obj
            staged = [(key, facts, sig, {c: mask(v) for c, v in values.items()})
                      for key, facts, sig, values in staged]
        fresh = [key for key, _f, _s, values in staged
                 if not self._continues(self.live.get(key), values["job_id"])]
        earlier = self._earlier(db, fresh) if fresh else {}
        next_id = 0
        samples: list[tuple[Any, ...]] = []
        for key, facts, sig, values in staged:
            state, job_id = values["state"], values["job_id"]
            live = self.live.get(key)
            if self._continues(live, job_id):
                assert live is not None
                updates.append((live.rid, now, values))
                previous = live.state
                live.job_id = live.job_id or job_id
            else:
                found = earlier.get(key)
                if found is not None and _same_job(found, job_id):
                    rid, previous = found[0], found[2]
                    updates.append((rid, now, values))
                    adopted.append((self.run_id, rid))
                else:
                    if not next_id:
                        next_id = int(db.execute("SELECT coalesce(max(id), 0) FROM jobs"
                                                 ).fetchone()[0]) + 1
                    rid, previous = next_id, None
                    next_id += 1
                    inserts.append((rid, key, values))
                live = self.live[key] = _Live(rid, sig, previous, job_id,
                                              self._first_sample(key, now))
            live.sig = sig
            live.ended = values["status"] in rows.FINAL
            if state is not None and state != previous:
                transitions.append((live.rid, now, state, previous))
                live.state = state
            row = _sample(live, now, facts)
            if row.count(None) < len(_SAMPLE):
                samples.append(row)
        if inserts:
            rows.insert_many(db, [(rid, rows.new_uid(), self.run_id, self.ruleset,
                                   self.secrets.scrub(key), now, values)
                                  for rid, key, values in inserts])
        if updates:
            rows.update_many(db, updates)
        if adopted:
            db.executemany("UPDATE jobs SET run_id = ? WHERE id = ?", adopted)
        if transitions:
            db.executemany("INSERT INTO job_states VALUES (?, ?, ?, ?)", transitions)
        return samples

    def _first_sample(self, key: str, now: float) -> float:
        """When a new job's first scheduled sample is due (one was just written with its
        row): on the job's own phase of the interval, offset by its key so 1,000 jobs that
        start together do not all sample in the same later tick, and never sooner than half
        an interval."""
        every = self.sample_every
        offset = (zlib.crc32(key.encode()) % 1000) / 1000 * every
        return now + offset + (every if offset < every / 2 else 0.0)

    @staticmethod
    def _continues(live: _Live | None, job_id: str | None) -> bool:
        """The instance is the job this run already records (a new job id is a new job)."""
        return live is not None and (job_id is None or live.job_id in (None, job_id))

    def _earlier(self, db: sqlite3.Connection,
                 keys: list[str]) -> dict[str, tuple[int, str | None, str | None, str]]:
        """The latest row of each instance key recorded before (an earlier run, or this
        one under another job id): (row id, job id, state, status)."""
        out: dict[str, tuple[int, str | None, str | None, str]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for instance, rid, job_id, state, status in db.execute(
                    "SELECT instance, id, job_id, state, status FROM jobs WHERE ruleset = ? AND "
                    f"instance IN ({','.join('?' * len(chunk))}) ORDER BY first_seen, id",
                    [self.ruleset, *chunk]):
                out[instance] = (rid, job_id, state, status)  # the latest wins
        return out

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        more = retention.prune(db, now, self.retention, self.sample_retention)
        self._next_prune = now if more else now + retention.PRUNE_EVERY

    # --- at the end ---------------------------------------------------------------------------

    def finish(self, db: sqlite3.Connection, now: float) -> None:
        """Jobs still live when the run ends were seen until now."""
        rids = [(now, live.rid) for live in self.live.values() if not live.ended]
        if rids:
            db.executemany("UPDATE jobs SET last_seen = ? WHERE id = ?", rids)


def _sample(live: _Live, now: float, facts: Mapping[str, Any]) -> tuple[Any, ...]:
    """One samples row of the job's current figures; the progress point is left out when it
    has not moved since the last one written."""
    row = (live.rid, now, *map(facts.get, _SAMPLE))
    if row[-1] is not None:
        point = (row[-1], row[-5])
        if point == live.last_progress:
            return row[:-5] + _NO_PROGRESS
        live.last_progress = point
    return row


def _same_job(found: tuple[int, str | None, str | None, str], job_id: str | None) -> bool:
    """An earlier row continues when it has the same job id, or when it never ended and
    one of the two ids is unknown (the job was pending, or the id is not reported yet)."""
    _rid, old_id, _state, old_status = found
    if job_id is not None and old_id == job_id:
        return True
    return old_status not in rows.FINAL and (job_id is None or old_id is None)


def _columns(facts: Mapping[str, Any], host: Any) -> dict[str, Any]:
    """The jobs-row values of one snapshot (None where a fact is missing)."""
    get = facts.get
    state = get("job.state")
    exit_code = _int(get("job.exit_code"))
    status = status_of(state, get("job.outcome"), get("job.terminal"), exit_code)
    final = status in rows.FINAL
    cpu_user, cpu_sys = _num(get("job.cpu_user")), _num(get("job.cpu_sys"))
    cpu_total = _num(get("job.cpu_time"))
    if cpu_total is None and cpu_user is not None:
        cpu_total = cpu_user + (cpu_sys or 0.0)
    duration = None
    if final:
        duration = _num(get("job.elapsed"))
        start, end = _num(get("job.start_time")), _num(get("job.end_time"))
        if duration is None and start is not None and end is not None:
            duration = max(0.0, end - start)
    cpus = _int(get("job.cpus"))
    mem_peak, mem_req = _int(get("job.mem_used")), _int(get("job.mem_req"))
    time_limit = _num(get("job.time_limit"))
    # Estimates as seff computes them, used until (unless) the source reports its own.
    cpu_est = time_est = mem_est = None
    if final and duration:
        if cpu_total is not None:
            cpu_est = 100.0 * cpu_total / (duration * (cpus or 1))
        if time_limit:
            time_est = 100.0 * duration / time_limit
    if final and mem_peak is not None and mem_req:
        mem_est = 100.0 * mem_peak / mem_req
    source = get("job.source")
    vars_ = get("node.vars")
    params: dict[str, Any] = dict(vars_) if isinstance(vars_, Mapping) else {}
    attrs: dict[str, Any] = {}
    if source in ("htcondor", "dagman"):  # maps that may only exist as flat keys
        for k, v in facts.items():
            if k.startswith("node.vars.") and not isinstance(vars_, Mapping):
                params[k[10:]] = v
            elif k.startswith("job.attrs."):
                attrs[k[10:]] = v
    resource = params.get("ResourceName") or attrs.get("ResourceName") or ""
    error = None
    if status in _BAD or status == "unknown":
        error = get("job.diagnosis_detail") or get("job.hold_reason") or \
            get("job.launch_error")
    elif get("job.hold_reason"):
        error = get("job.hold_reason")
    node = get("job.node_list") or get("job.remote_host") or (host if source == "local"
                                                                 else None)
    job_id = get("job.id")
    tail = get("log.tail")
    return {
        "job_id": None if job_id is None else str(job_id),
        "name": get("job.name"), "source": source, "tool": get("job.key") or "",
        "script": get("node.submit_file"), "state": state, "status": status,
        "exit_code": exit_code, "signal": _int(get("job.signal")), "error": error,
        "diagnosis": get("job.diagnosis"), "partition": get("job.partition") or "",
        "resource": str(resource), "node": node, "user": get("job.user") or get("job.owner"),
        "cpus": cpus, "gpus": _int(get("job.gpus")),
        "submit_time": _num(get("job.submit_time")), "start_time": _num(get("job.start_time")),
        "end_time": _num(get("job.end_time")), "duration": duration, "time_limit": time_limit,
        "cpu_user": cpu_user, "cpu_sys": cpu_sys, "cpu_total": cpu_total, "mem_peak": mem_peak,
        "mem_req": mem_req, "cpu_eff": _num(get("job.cpu_eff")), "cpu_eff~": cpu_est,
        "mem_eff": _num(get("job.mem_eff")), "mem_eff~": mem_est,
        "time_eff": _num(get("job.time_eff")), "time_eff~": time_est,
        "gpu_hours": _num(get("job.gpu_hours")),
        "params": rows.dumps(params or attrs or None),
        "details": rows.dumps(_details(facts)),
        "log_tail": tail if isinstance(tail, str) and tail else None,
    }


def _details(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The other facts worth keeping; a DAG node's `node.name`, `node.parents` and
    `node.children` let the DAG be rebuilt from history (its VARS are the `params`)."""
    return {k: facts[k] for k in _DETAILS if facts.get(k) is not None}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


class _TickWrite:
    """One tick's history writes. What the recorder remembers of the rows it writes is
    changed as they are written, so a transaction that fails (a full disk) takes that memory
    back with `rollback`: otherwise later ticks would update rows that were never written."""

    def __init__(self, recorder: Recorder, now: float,
                 changed: list[tuple[str, Mapping[str, Any], tuple[Any, ...]]],
                 samples: list[tuple[Any, ...]], run_facts: Mapping[str, Any],
                 prune: bool) -> None:
        self.recorder = recorder
        self.now = now
        self.changed = changed
        self.samples = samples
        self.run_facts = run_facts
        self.prune = prune
        self._undo: tuple[dict[str, _Live | None], float | None] | None = None

    def __call__(self, db: sqlite3.Connection) -> None:
        rec = self.recorder
        self._undo = ({key: copy.copy(rec.live.get(key)) for key, _f, _s in self.changed},
                      rec._next_prune)
        samples = list(self.samples)  # run again after a rollback: never the rows twice
        if self.changed:
            samples.extend(rec._write(db, self.now, self.changed, self.run_facts))
        if samples:
            db.executemany(_INSERT_SAMPLE, samples)
        if self.prune:
            rec._prune(db, self.now)

    def rollback(self) -> None:
        """The transaction this ran in was not committed."""
        if self._undo is None:
            return
        before, self._undo = self._undo, None
        rec = self.recorder
        for key, live in before[0].items():
            if live is None:
                rec.live.pop(key, None)
            else:
                rec.live[key] = live
        rec._next_prune = before[1]
