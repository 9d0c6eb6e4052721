"""rulesmon: a declarative rules engine that watches cluster jobs."""

from __future__ import annotations

__version__ = "0.1.0"
