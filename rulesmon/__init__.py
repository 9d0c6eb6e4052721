"""rulesmon: a declarative rules engine that watches cluster jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .history import get_job, get_job_history, get_job_stats, get_summary_statistics
    from .track import track

#: Imported on first use, so `import rulesmon` (and `rulesmon --help`) stays fast.
_LAZY = {"track": "track", "get_job_history": "history", "get_job": "history",
         "get_job_stats": "history", "get_summary_statistics": "history"}

__all__ = ["__version__", "get_job", "get_job_history", "get_job_stats",
           "get_summary_statistics", "track"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rulesmon' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    if name != "track":  # rulesmon.track is the (callable) module once imported
        globals()[name] = value
    return value
