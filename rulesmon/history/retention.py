"""Retention: old history goes away in small batches, so no tick ever waits on a big delete.

Jobs first and last seen longer than `retention` ago are deleted with their state changes
and samples; samples of jobs that ended longer than `sample_retention` ago go earlier (the
job keeps its totals; a job that ran for longer than that keeps its samples until the job
itself goes); alert events and delivered notifications older than
`retention` go too. Each call deletes at most `batch` rows per kind and says whether more
is left, so the caller comes back on its next tick instead of holding the database.
"""

from __future__ import annotations

import sqlite3

BATCH = 2000
#: How often a long-lived writer checks for expired rows.
PRUNE_EVERY = 3600.0
_WATERMARK = "history_samples_pruned_to"
PRUNED_AT = "history_pruned_at"


def prune(db: sqlite3.Connection, now: float, retention: float, sample_retention: float,
          batch: int = BATCH) -> bool:
    """One batch of deletes inside the caller's transaction; True when more is left."""
    more = False
    cutoff = now - retention
    # Walk jobs oldest first by first_seen (indexed); a long job seen recently is skipped.
    ids = [r[0] for r in db.execute(
        "SELECT id FROM jobs WHERE first_seen < ? AND last_seen < ? ORDER BY first_seen "
        "LIMIT ?", (cutoff, cutoff, batch))]
    if ids:
        _delete_children(db, ids)
        marks = ",".join("?" * len(ids))
        db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
        more = more or len(ids) == batch
    sample_cutoff = now - min(sample_retention, retention)
    row = db.execute("SELECT value FROM meta WHERE key = ?", (_WATERMARK,)).fetchone()
    mark_t, mark_id = (float(row[0].split()[0]), int(row[0].split()[1])) \
        if row and " " in row[0] else (0.0, 0)
    rows = list(db.execute(
        "SELECT id, first_seen, last_seen, status FROM jobs WHERE (first_seen, id) > (?, ?) "
        "AND first_seen < ? ORDER BY first_seen, id LIMIT ?",
        (mark_t, mark_id, sample_cutoff, batch)))
    if rows:
        done = [r[0] for r in rows if r[2] < sample_cutoff and r[3] not in ("running",
                                                                              "pending")]
        if done:
            marks = ",".join("?" * len(done))
            db.execute(f"DELETE FROM samples WHERE job IN ({marks})", done)
        more = more or len(rows) == batch
        db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                   "value = excluded.value", (_WATERMARK, f"{rows[-1][1]!r} {rows[-1][0]}"))
    cur = db.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE t < ? "
                     "ORDER BY t LIMIT ?)", (cutoff, batch))
    more = more or cur.rowcount == batch
    seqs = [r[0] for r in db.execute(
        "SELECT seq FROM outbox WHERE created < ? AND status != 'owed' ORDER BY seq LIMIT ?",
        (cutoff, batch))]
    if seqs:
        marks = ",".join("?" * len(seqs))
        db.execute(f"DELETE FROM attempts WHERE outbox_seq IN ({marks})", seqs)
        db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", seqs)
        more = more or len(seqs) == batch
    db.execute("DELETE FROM runs WHERE ended IS NOT NULL AND ended < ?", (cutoff,))
    db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
               "value = excluded.value", (PRUNED_AT, repr(now)))
    return more


def _delete_children(db: sqlite3.Connection, ids: list[int]) -> None:
    marks = ",".join("?" * len(ids))
    for table in ("job_states", "samples"):
        db.execute(f"DELETE FROM {table} WHERE job IN ({marks})", ids)


def due(db: sqlite3.Connection, now: float) -> bool:
    """Whether an hour has passed since the last prune recorded in this database."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_AT,)).fetchone()
    return row is None or now - float(row[0]) >= PRUNE_EVERY
