"""`rulesmon serve`: a read-only web dashboard of the history (runs, jobs, DAGs, resource plots).

db.py opens the database read-only and holds the run-level queries, dag.py lays out a run's
DAG, svg.py draws charts and the DAG, fmt.py the page frame and value formats, pages.py the
pages and their JSON, server.py the HTTP server. Standard library only. See docs/web.md.
"""

from __future__ import annotations

from .db import WebError, is_database
from .server import serve

__all__ = ["WebError", "is_database", "serve"]
