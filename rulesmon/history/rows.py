"""How a job becomes a row of `jobs`: the columns, the final status, and the writes.

Shared by the engine's recorder and by `rulesmon.track`, so a SLURM job, a local worker and a
tracked Celery task land in the same shape and the views need not know where a row came from.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Mapping
from typing import Any

from .. import jsonout

#: Columns a writer may set (besides uid, run_id, ruleset, instance, first_seen, last_seen).
COLUMNS = ("job_id", "name", "source", "tool", "script", "state", "status", "exit_code",
           "signal", "error", "diagnosis", "partition", "resource", "node", "user", "cpus",
           "gpus", "submit_time", "start_time", "end_time", "duration", "time_limit",
           "cpu_user", "cpu_sys", "cpu_total", "mem_peak", "mem_req", "cpu_eff", "mem_eff",
           "time_eff", "gpu_hours", "params", "details", "log_tail")

#: Values of `jobs.status`; the first five are final outcomes.
FINAL = ("success", "failed", "timeout", "cancelled", "error")
STATUSES = (*FINAL, "running", "pending", "unknown")

_BY_STATE = {
    "COMPLETED": "success", "FAILED": "failed", "OUT_OF_MEMORY": "failed",
    "NODE_FAIL": "failed", "BOOT_FAIL": "failed", "TIMEOUT": "timeout", "DEADLINE": "timeout",
    "CANCELLED": "cancelled", "REMOVED": "cancelled", "PREEMPTED": "cancelled",
}
_WAITING = ("PENDING", "HELD", "UNKNOWN")


def status_of(state: Any, outcome: Any, terminal: Any, exit_code: Any) -> str:
    """The final outcome from `job.outcome` when a source gave one, else from the state."""
    if outcome in FINAL:
        return str(outcome)
    if terminal or state in _BY_STATE:
        status = _BY_STATE.get(str(state), "unknown")
        if status == "success" and isinstance(exit_code, int) and exit_code != 0:
            return "failed"
        return status
    if state in _WAITING:
        return "pending"
    return "running" if state is not None else "unknown"


def new_uid() -> str:
    return uuid.uuid4().hex


def dumps(value: Any) -> str | None:
    """JSON for params/details columns; None stays NULL, unserialisable values become text,
    NaN and infinity null (jsonout)."""
    if value is None or value == {}:
        return None
    return jsonout.dumps(value, sort_keys=True, ensure_ascii=False)


#: Columns a writer may also give an estimate for (`cpu_eff~`): the estimate is used only
#: while no source has reported the value itself.
ESTIMATED = ("cpu_eff", "mem_eff", "time_eff")

_INSERT = (f"INSERT INTO jobs (uid, run_id, ruleset, instance, first_seen, last_seen, "
           f"{', '.join(COLUMNS)}) VALUES ({', '.join('?' * (6 + len(COLUMNS)))})")
#: Known values are never erased by a tick that lacks them (accounting arrives late).
_UPDATE = ("UPDATE jobs SET last_seen = ?, " +
           ", ".join(f"{c} = coalesce(?, {c}, ?)" if c in ESTIMATED else f"{c} = coalesce(?, {c})"
                     for c in COLUMNS) + " WHERE id = ?")


_NOT_NULL = ("tool", "partition", "resource")


def insert(db: sqlite3.Connection, *, uid: str, run_id: int | None, ruleset: str,
           instance: str, now: float, values: Mapping[str, Any]) -> int:
    cur = db.execute(_INSERT, (uid, run_id, ruleset, instance, now, now,
                               *(_insert_value(values, c) for c in COLUMNS)))
    return int(cur.lastrowid or 0)


_INSERT_WITH_ID = (f"INSERT INTO jobs (id, uid, run_id, ruleset, instance, first_seen, "
                   f"last_seen, {', '.join(COLUMNS)}) VALUES "
                   f"({', '.join('?' * (7 + len(COLUMNS)))})")


def insert_many(db: sqlite3.Connection,
                rows: list[tuple[int, str, int | None, str, str, float, Mapping[str, Any]]]
                ) -> None:
    """(row id, uid, run id, ruleset, instance, now, values) per new job, ids chosen by the
    caller inside its write transaction (so they need not be read back one by one)."""
    db.executemany(_INSERT_WITH_ID, [
        (rid, uid, run_id, ruleset, instance, now, now,
         *(_insert_value(values, c) for c in COLUMNS))
        for rid, uid, run_id, ruleset, instance, now, values in rows])


def _insert_value(values: Mapping[str, Any], column: str) -> Any:
    value = values.get(column)
    if value is None and column in ESTIMATED:
        return values.get(column + "~")
    if value is None and column in _NOT_NULL:
        return ""
    return value


def _update_args(values: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for column in COLUMNS:
        out.append(values.get(column))
        if column in ESTIMATED:
            out.append(values.get(column + "~"))
    return out


def update_many(db: sqlite3.Connection, rows: list[tuple[int, float, Mapping[str, Any]]]) -> None:
    """(row id, now, values) for each changed job, in one statement."""
    db.executemany(_UPDATE, [(now, *_update_args(values), rid) for rid, now, values in rows])
