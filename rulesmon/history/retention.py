"""Retention: old history goes away in small batches, so no tick ever waits on a big delete.

Jobs whose last sighting is older than `retention` are deleted with their state changes,
samples and progress points; samples and progress of jobs older than `sample_retention` go
earlier (the job keeps its totals); alert events and delivered notifications older than
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
    ids = [r[0] for r in db.execute(
        "SELECT id FROM jobs WHERE last_seen < ? ORDER BY last_seen LIMIT ?", (cutoff, batch))]
    if ids:
        _delete_children(db, ids)
        marks = ",".join("?" * len(ids))
        db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
        more = more or len(ids) == batch
    sample_cutoff = now - min(sample_retention, retention)
    row = db.execute("SELECT value FROM meta WHERE key = ?", (_WATERMARK,)).fetchone()
    mark = float(row[0]) if row else 0.0
    rows = list(db.execute(
        "SELECT id, last_seen FROM jobs WHERE last_seen >= ? AND last_seen < ? "
        "AND status NOT IN ('running', 'pending') ORDER BY last_seen LIMIT ?",
        (mark, sample_cutoff, batch)))
    if rows:
        marks = ",".join("?" * len(rows))
        job_ids = [r[0] for r in rows]
        db.execute(f"DELETE FROM samples WHERE job IN ({marks})", job_ids)
        db.execute(f"DELETE FROM progress WHERE job IN ({marks})", job_ids)
        more = more or len(rows) == batch
        # Jobs at the watermark itself are processed again next time; cheap and never missed.
        mark = rows[-1][1]
        db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                   "value = excluded.value", (_WATERMARK, repr(mark)))
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
    for table in ("job_states", "samples", "progress"):
        db.execute(f"DELETE FROM {table} WHERE job IN ({marks})", ids)


def due(db: sqlite3.Connection, now: float) -> bool:
    """Whether an hour has passed since the last prune recorded in this database."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_AT,)).fetchone()
    return row is None or now - float(row[0]) >= PRUNE_EVERY
