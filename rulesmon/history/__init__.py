"""Job history: what ran, how it ended and what it used, in the state database.

schema.py holds the tables and migrations, rows.py how a job becomes a row, recorder.py the
engine's writer, retention.py the hourly clean-up, queries.py the read API behind the views
and scripts, views.py the table/JSON/CSV rendering. See docs/history.md.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["get_job", "get_job_history", "get_job_stats", "get_summary_statistics"]


def get_job_history(limit: int | None = None, *, status: str | None = None,
                    tool: str | None = None, source: str | None = None,
                    job: str | None = None, since: float | str | datetime | None = None,
                    ruleset: str | None = None,
                    db: Path | str | None = None) -> list[dict[str, Any]]:
    """Recorded jobs, newest first, filtered like `rulesmon history` (same JSON shape);
    an empty list while nothing has been recorded."""
    from . import queries

    with _open(db) as con:
        return queries.jobs(con, _filters(status, job, tool, source, since, ruleset), limit)


def get_job(job: str, *, db: Path | str | None = None) -> dict[str, Any] | None:
    """Everything about one job (as `rulesmon show --format json`), or None."""
    from . import queries

    with _open(db) as con:
        try:
            return queries.job(con, job)
        except queries.HistoryError:
            return None


#: The Keystone job monitor's name for `get_job`, for scripts written against it.
get_job_stats = get_job


def get_summary_statistics(*, since: float | str | datetime | None = None,
                           tool: str | None = None, source: str | None = None,
                           status: str | None = None,
                           db: Path | str | None = None) -> dict[str, Any]:
    """Totals, success rate, CPU time, durations, by source/tool/partition/resource (as
    `rulesmon stats --format json`)."""
    from . import queries

    with _open(db) as con:
        return queries.summary(con, _filters(status, None, tool, source, since, None))


class _open:
    """The database at `db` (default: the tracking database); an empty in-memory one when
    the file does not exist yet, so reading never creates it."""

    def __init__(self, db: Path | str | None) -> None:
        import time

        from .liveness import reap
        from .location import default_path
        from .schema import connect

        path = Path(db) if db is not None else default_path()
        self.con = connect(path if path.is_file() else ":memory:")
        reap(self.con, time.time())

    def __enter__(self) -> Any:
        return self.con

    def __exit__(self, *_exc: object) -> None:
        self.con.close()


def _filters(status: str | None, job: str | None, tool: str | None, source: str | None,
             since: float | str | datetime | None, ruleset: str | None) -> Any:
    import time

    from .queries import Filters, parse_since

    when: float | None
    if isinstance(since, str):
        when = parse_since(since, time.time())
    elif isinstance(since, datetime):
        when = since.timestamp()
    else:
        when = since
    return Filters(status=status, job=job, tool=tool, source=source, since=when,
                   ruleset=ruleset)
