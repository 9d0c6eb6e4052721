"""Job history: what ran, how it ended and what it used, in the state database.

schema.py holds the tables and migrations, rows.py how a job becomes a row, recorder.py the
engine's writer, retention.py the hourly clean-up, queries.py the read API behind the views
and scripts, views.py the table/JSON/CSV rendering. See docs/history.md.
"""
