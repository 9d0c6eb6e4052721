"""The SQLite schema of the state and history database, and its numbered migrations.

One file holds both what the engine needs to resume (rule states, the outbox) and the
history the views read (jobs, state changes, samples, progress). Version 2 is the engine's
state as first released; each later version is one entry of `MIGRATIONS`, applied in order
inside one transaction, so a database of any older version opens as the current one and a
half-applied migration never exists. docs/history.md documents every table.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 5

#: Version 2: the engine's state. Statements are idempotent, so files written before the
#: version was recorded (they only ever gained tables) are brought to version 2 by running it.
BASE = """
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

#: Version 3: job history. Times are Unix seconds (REAL), sizes bytes, CPU times seconds.
_V3 = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    run_id INTEGER,
    ruleset TEXT NOT NULL DEFAULT '',
    instance TEXT NOT NULL,
    job_id TEXT,
    name TEXT,
    source TEXT NOT NULL,
    tool TEXT NOT NULL DEFAULT '',
    script TEXT,
    state TEXT,
    status TEXT NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    error TEXT,
    diagnosis TEXT,
    partition TEXT NOT NULL DEFAULT '',
    resource TEXT NOT NULL DEFAULT '',
    node TEXT,
    user TEXT,
    cpus INTEGER,
    gpus INTEGER,
    submit_time REAL,
    start_time REAL,
    end_time REAL,
    duration REAL,
    time_limit REAL,
    cpu_user REAL,
    cpu_sys REAL,
    cpu_total REAL,
    mem_peak INTEGER,
    mem_req INTEGER,
    cpu_eff REAL,
    mem_eff REAL,
    time_eff REAL,
    gpu_hours REAL,
    params TEXT,
    details TEXT,
    log_tail TEXT,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX jobs_first_seen ON jobs(first_seen);
CREATE INDEX jobs_status ON jobs(status, first_seen);
CREATE INDEX jobs_instance ON jobs(ruleset, instance, first_seen);
CREATE INDEX jobs_job_id ON jobs(job_id);
CREATE INDEX jobs_stats ON jobs(source, tool, partition, resource, status, duration, cpu_total,
                                mem_peak, gpu_hours, first_seen);
CREATE TABLE job_states (
    job INTEGER NOT NULL,
    t REAL NOT NULL,
    state TEXT NOT NULL,
    previous TEXT
);
CREATE INDEX job_states_job ON job_states(job, t);
CREATE TABLE samples (
    job INTEGER NOT NULL,
    t REAL NOT NULL,
    cpu_user REAL,
    cpu_sys REAL,
    cpu_pct REAL,
    mem_rss INTEGER,
    mem_peak INTEGER,
    gpu_util REAL,
    gpu_mem INTEGER,
    elapsed REAL,
    done REAL,
    total REAL,
    pct REAL,
    rate REAL,
    eta REAL
);
CREATE INDEX samples_job ON samples(job, t);
CREATE TABLE job_totals (
    week INTEGER NOT NULL,
    source TEXT NOT NULL,
    tool TEXT NOT NULL,
    partition TEXT NOT NULL,
    resource TEXT NOT NULL,
    status TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    timed INTEGER NOT NULL,
    duration REAL NOT NULL,
    max_duration REAL,
    cpu REAL NOT NULL,
    max_mem INTEGER,
    gpu_hours REAL NOT NULL,
    PRIMARY KEY (source, tool, partition, resource, status, week)
) WITHOUT ROWID;
CREATE TRIGGER jobs_totals_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_totals VALUES (
        CAST(NEW.first_seen / 604800 AS INTEGER), NEW.source, NEW.tool, NEW.partition,
        NEW.resource, NEW.status, 1, NEW.duration IS NOT NULL, coalesce(NEW.duration, 0),
        NEW.duration, coalesce(NEW.cpu_total, 0), NEW.mem_peak, coalesce(NEW.gpu_hours, 0))
    ON CONFLICT DO UPDATE SET
        jobs = jobs + 1, timed = timed + excluded.timed,
        duration = duration + excluded.duration,
        max_duration = max(coalesce(max_duration, excluded.max_duration),
                           coalesce(excluded.max_duration, max_duration)),
        cpu = cpu + excluded.cpu,
        max_mem = max(coalesce(max_mem, excluded.max_mem), coalesce(excluded.max_mem, max_mem)),
        gpu_hours = gpu_hours + excluded.gpu_hours;
END;
CREATE TRIGGER jobs_totals_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_totals SET
        jobs = jobs - 1, timed = timed - (OLD.duration IS NOT NULL),
        duration = duration - coalesce(OLD.duration, 0), cpu = cpu - coalesce(OLD.cpu_total, 0),
        gpu_hours = gpu_hours - coalesce(OLD.gpu_hours, 0)
    WHERE week = CAST(OLD.first_seen / 604800 AS INTEGER) AND source = OLD.source
        AND tool = OLD.tool AND partition = OLD.partition AND resource = OLD.resource
        AND status = OLD.status;
    DELETE FROM job_totals
    WHERE week = CAST(OLD.first_seen / 604800 AS INTEGER) AND source = OLD.source
        AND tool = OLD.tool AND partition = OLD.partition AND resource = OLD.resource
        AND status = OLD.status AND jobs <= 0;
END;
CREATE TRIGGER jobs_totals_update AFTER UPDATE ON jobs
WHEN OLD.status IS NOT NEW.status OR OLD.duration IS NOT NEW.duration
    OR OLD.cpu_total IS NOT NEW.cpu_total OR OLD.mem_peak IS NOT NEW.mem_peak
    OR OLD.gpu_hours IS NOT NEW.gpu_hours OR OLD.source IS NOT NEW.source
    OR OLD.tool IS NOT NEW.tool OR OLD.partition IS NOT NEW.partition
    OR OLD.resource IS NOT NEW.resource OR OLD.first_seen IS NOT NEW.first_seen
BEGIN
    UPDATE job_totals SET
        jobs = jobs - 1, timed = timed - (OLD.duration IS NOT NULL),
        duration = duration - coalesce(OLD.duration, 0), cpu = cpu - coalesce(OLD.cpu_total, 0),
        gpu_hours = gpu_hours - coalesce(OLD.gpu_hours, 0)
    WHERE week = CAST(OLD.first_seen / 604800 AS INTEGER) AND source = OLD.source
        AND tool = OLD.tool AND partition = OLD.partition AND resource = OLD.resource
        AND status = OLD.status;
    INSERT INTO job_totals VALUES (
        CAST(NEW.first_seen / 604800 AS INTEGER), NEW.source, NEW.tool, NEW.partition,
        NEW.resource, NEW.status, 1, NEW.duration IS NOT NULL, coalesce(NEW.duration, 0),
        NEW.duration, coalesce(NEW.cpu_total, 0), NEW.mem_peak, coalesce(NEW.gpu_hours, 0))
    ON CONFLICT DO UPDATE SET
        jobs = jobs + 1, timed = timed + excluded.timed,
        duration = duration + excluded.duration,
        max_duration = max(coalesce(max_duration, excluded.max_duration),
                           coalesce(excluded.max_duration, max_duration)),
        cpu = cpu + excluded.cpu,
        max_mem = max(coalesce(max_mem, excluded.max_mem), coalesce(excluded.max_mem, max_mem)),
        gpu_hours = gpu_hours + excluded.gpu_hours;
    DELETE FROM job_totals
    WHERE week = CAST(OLD.first_seen / 604800 AS INTEGER) AND source = OLD.source
        AND tool = OLD.tool AND partition = OLD.partition AND resource = OLD.resource
        AND status = OLD.status AND jobs <= 0;
END;
CREATE INDEX IF NOT EXISTS attempts_seq ON attempts(outbox_seq);
CREATE INDEX IF NOT EXISTS events_instance ON events(instance, t);
CREATE INDEX IF NOT EXISTS outbox_instance ON outbox(instance, created);
"""

#: Version 4: the jobs of one run found by index (the web dashboard's run pages, which would
#: otherwise read every job ever recorded).
_V4 = """
CREATE INDEX IF NOT EXISTS jobs_run ON jobs(run_id, status);
"""

#: Version 5: why each run ended (`outcome`: "all jobs terminal", "stop action", "one tick",
#: "tick limit", "interrupted by signal N", ...; NULL while it runs or when it was killed), so
#: the next run knows whether it resumes an unfinished run or starts a new one.
_V5 = """
ALTER TABLE runs ADD COLUMN outcome TEXT;
"""

MIGRATIONS: dict[int, str] = {3: _V3, 4: _V4, 5: _V5}


class SchemaError(Exception):
    """The database cannot be used by this rulesmon (one line, for the user)."""


def version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 2


def migrate(db: sqlite3.Connection, path: str = "") -> int:
    """Bring the database to `SCHEMA_VERSION`; returns the version it had before.

    Runs under BEGIN IMMEDIATE, so two processes opening an old file at once migrate it once;
    a current file is only read (a view never waits for the engine's write lock).
    """
    try:
        current = version(db)
    except sqlite3.OperationalError:  # no meta table: a new file, or one from before versions
        current = 0
    if current == SCHEMA_VERSION:
        return current
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(BASE):
            db.execute(statement)
        before = version(db)
        if before > SCHEMA_VERSION:
            raise SchemaError(
                f"{path or 'the database'} has schema version {before}, newer than this "
                f"rulesmon understands ({SCHEMA_VERSION}): upgrade rulesmon")
        for number in range(before + 1, SCHEMA_VERSION + 1):
            for statement in _statements(MIGRATIONS[number]):
                db.execute(statement)
        db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE "
                   "SET value = excluded.value", (str(SCHEMA_VERSION),))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return before


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements, so they run inside the caller's transaction
    (executescript would commit first); a trigger body's statements stay together."""
    out: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    return out


def connect(path: Path | str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with the schema current."""
    target = str(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(target, isolation_level=None, check_same_thread=False,
                         timeout=timeout)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes
        db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        migrate(db, target)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise SchemaError(f"{target}: not a usable rulesmon database ({exc})") from None
    except BaseException:
        db.close()
        raise
    return db
