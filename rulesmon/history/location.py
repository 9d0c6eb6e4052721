"""Where history lives when no ruleset says: the database `rulesmon.track` writes by default."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "RULESMON_HISTORY"


def default_path() -> Path:
    """`$RULESMON_HISTORY`, else `$XDG_DATA_HOME/rulesmon/history.db` (XDG_DATA_HOME defaults
    to ~/.local/share): one file per user that every tracked task and command shares."""
    explicit = os.environ.get(ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "rulesmon" / "history.db"
