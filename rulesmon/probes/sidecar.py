"""A probe's own small SQLite file beside the state database (`<state>.files.db`,
`<state>.local.db`): what the probe must know after a restart, written by the probe's worker
threads at once (the state database belongs to the engine's thread and commits once a tick,
which a kill may never reach).

A file that cannot be opened or written is logged once and the probe goes on from memory: a
sidecar never stops the watching; what is lost is only what a restart could have adopted.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class Sidecar:
    """Opened on first use with `schema`; `unavailable` names the warning said once when it
    fails, `consequence` says what the probe loses."""

    schema: Sequence[str] = ()
    unavailable = "sidecar_unavailable"
    consequence = ""
    #: the probe's own logger, so its warnings keep the probe's name
    logger = log

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._failed = False

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is not None or self._failed:
            return self._db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5, check_same_thread=False,
                                 isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            for statement in self.schema:
                db.execute(statement)
            self._opened(db)
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)
            return None
        self._db = db
        return db

    def _opened(self, db: sqlite3.Connection) -> None:
        """Clean-up once open (old rows), inside the same failure handling."""

    def _fail(self, exc: Exception) -> None:
        if not self._failed:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.logger.warning("%s path=%s error=%s (%s)", self.unavailable, self.path,
                                text, self.consequence)
        self._failed = True
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None
