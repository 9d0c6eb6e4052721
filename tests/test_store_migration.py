"""The state database's schema migrations: a version-2 file opens as the current version."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from rulesmon.history.schema import MIGRATIONS, SCHEMA_VERSION
from rulesmon.store import SchemaError, StateStore

from .conftest import run_cli

#: The state database exactly as rulesmon wrote it at schema version 2 (before history).
V2_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    instance TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status);
CREATE TABLE IF NOT EXISTS last_values (
    instance TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (instance, key)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT,
    instance TEXT,
    severity TEXT,
    title TEXT,
    body TEXT
);
CREATE INDEX IF NOT EXISTS events_t ON events(t);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    instance TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    release_at REAL NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'owed',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at REAL,
    UNIQUE (id, target)
);
CREATE INDEX IF NOT EXISTS outbox_owed ON outbox(target, status, seq);
CREATE TABLE IF NOT EXISTS attempts (
    outbox_seq INTEGER NOT NULL,
    t REAL NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    rule TEXT NOT NULL,
    instance TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ruleset TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    ticks INTEGER NOT NULL DEFAULT 0,
    overruns INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    summary TEXT
);
"""


def _v2(path: Path) -> None:
    """A version-2 database with a firing alert, a run and a delivered notification."""
    con = sqlite3.connect(str(path))
    con.executescript(V2_SCHEMA)
    con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    state = {"status": "firing", "since": 100.0, "last_eval": 100.0, "held_for": 0.0,
             "notifications": 1}
    con.execute("INSERT INTO alerts VALUES ('fp1', 'crashed', 'train/1', 'firing', ?, 100.0)",
                (json.dumps(state),))
    con.execute("INSERT INTO runs (ruleset, started, ended, exit_code) VALUES ('r', 1, 2, 0)")
    con.execute("INSERT INTO outbox (id, target, kind, rule, instance, severity, title, body,"
                " created, release_at, group_key, status) VALUES ('n1', 'team', 'fire', "
                "'crashed', 'train/1', 'critical', 't', 'b', 100.0, 100.0, 'g', 'delivered')")
    con.execute("INSERT INTO attempts VALUES (1, 101.0, 1, NULL)")
    con.commit()
    con.close()


def test_a_version_2_database_is_migrated_in_place(tmp_path: Path) -> None:
    """Opening a version-2 state file adds the history tables and indexes, records the new
    version, and keeps every alert, run and delivery it held."""
    db = tmp_path / "old.db"
    _v2(db)
    store = StateStore(db)
    try:
        assert store.db.execute("SELECT value FROM meta WHERE key='schema_version'"
                                ).fetchone() == (str(SCHEMA_VERSION),)
        tables = {r[0] for r in store.db.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"jobs", "job_states", "samples"} <= tables
        indexes = {r[0] for r in store.db.execute(
            "SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"jobs_stats", "attempts_seq", "outbox_instance"} <= indexes
        alerts = store.alerts()
        assert alerts["fp1"][:2] == ("crashed", "train/1")
        assert alerts["fp1"][2].status == "firing"
        assert store.outbox_counts() == {"delivered": 1}
    finally:
        store.close()
    StateStore(db).close()  # opening again is a no-op


def test_views_read_a_migrated_file(tmp_path: Path) -> None:
    """`rulesmon history` and `stats` on a version-2 file answer (no jobs yet; the old
    delivery counted)."""
    db = tmp_path / "old.db"
    _v2(db)
    assert run_cli("history", "--db", str(db), "--format", "json").stdout.strip() == "[]"
    stats = json.loads(run_cli("stats", "--db", str(db), "--format", "json").stdout)
    assert stats["total_jobs"] == 0
    assert stats["notifications"]["by_target"] == {"team": {"delivered": 1}}


def test_a_newer_database_is_refused_in_one_line(tmp_path: Path) -> None:
    """A file written by a newer rulesmon is not touched: the store raises SchemaError and
    the commands say so in one line."""
    db = tmp_path / "new.db"
    _v2(db)
    con = sqlite3.connect(str(db))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(SchemaError, match="newer than this rulesmon understands"):
        StateStore(db)
    result = run_cli("history", "--db", str(db))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "upgrade rulesmon" in result.stderr
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text("version: 1\nname: r\njobs:\n  a:\n    files:\n      x: {glob: '*.x'}\n",
                       encoding="utf-8")
    run = run_cli("run", str(ruleset), "--once", "--state", str(db), cwd=tmp_path)
    assert run.returncode == 2 and "newer than this rulesmon" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    """A state path holding something else is a one-line error, not a traceback."""
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not sqlite at all\n" * 100, encoding="utf-8")
    result = run_cli("history", "--db", str(bogus))
    assert result.returncode == 1
    assert "not a usable rulesmon database" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrations_are_numbered_from_3() -> None:
    """Each version after 2 has exactly one migration, so every old file has a path."""
    assert sorted(MIGRATIONS) == list(range(3, SCHEMA_VERSION + 1))


def test_a_version_3_database_gains_the_run_index(tmp_path: Path) -> None:
    """A file of version 3 (history, no index of jobs by run) becomes version 4 with its jobs
    kept, and one run's jobs are then found through the index."""
    db = tmp_path / "v3.db"
    StateStore(db).close()
    con = sqlite3.connect(str(db))
    con.execute("DROP INDEX jobs_run")
    con.execute("ALTER TABLE runs DROP COLUMN outcome")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.execute("INSERT INTO jobs (uid, run_id, instance, source, status, first_seen, "
                "last_seen) VALUES ('u1', 7, 'train/1', 'local', 'success', 1.0, 2.0)")
    con.commit()
    con.close()
    store = StateStore(db)
    try:
        assert store.db.execute("SELECT value FROM meta WHERE key='schema_version'"
                                ).fetchone() == (str(SCHEMA_VERSION),)
        plan = " ".join(str(r[-1]) for r in store.db.execute(
            "EXPLAIN QUERY PLAN SELECT status, count(*) FROM jobs WHERE run_id = 7 "
            "GROUP BY status"))
        assert "jobs_run" in plan
        assert store.db.execute("SELECT uid FROM jobs WHERE run_id = 7").fetchall() == [("u1",)]
    finally:
        store.close()


def test_a_version_4_database_gains_the_run_outcome(tmp_path: Path) -> None:
    """A file of version 4 keeps its runs and gains `runs.outcome`, NULL for its old runs
    (read as killed, so the next run resumes them), and the next end records why it ended."""
    db = tmp_path / "v4.db"
    StateStore(db).close()
    con = sqlite3.connect(str(db))
    con.execute("ALTER TABLE runs DROP COLUMN outcome")
    con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    con.execute("INSERT INTO runs (ruleset, started, ended, exit_code) VALUES ('r', 1, 2, 0)")
    con.commit()
    con.close()
    store = StateStore(db)
    try:
        assert store.previous_run() == (1, None)
        run = store.start_run("r", 3.0)
        store.end_run(run, 4.0, 0, "done", outcome="all jobs terminal")
        assert store.previous_run() == (run, "all jobs terminal")
    finally:
        store.close()
