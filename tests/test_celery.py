"""The Celery hook records every task: eager mode, and a real worker on an in-memory broker."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

celery = pytest.importorskip("celery")

from billiard.exceptions import SoftTimeLimitExceeded  # noqa: E402

from rulesmon.history import get_job, get_job_history  # noqa: E402
from rulesmon.integrations.celery import install  # noqa: E402


def _app(eager: bool) -> Any:
    app = celery.Celery("rulesmon-test", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = eager
    app.conf.task_store_eager_result = True

    @app.task(name="sim.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="sim.diverge", shared=False)
    def diverge(mesh: int) -> None:
        raise ValueError(f"solver diverged on mesh {mesh}")

    @app.task(name="sim.run", shared=False)
    def run(code: int) -> dict[str, int]:
        return {"returncode": code}

    @app.task(name="sim.flaky", bind=True, shared=False, max_retries=2)
    def flaky(self: Any, n: int) -> int:
        if self.request.retries < 1:
            raise self.retry(countdown=0, exc=RuntimeError("mesh not ready"))
        return n

    @app.task(name="sim.limited", shared=False)
    def limited() -> None:
        # what the worker raises inside a task that reaches its soft_time_limit
        raise SoftTimeLimitExceeded("limit")

    return app


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    db = tmp_path / "h.db"
    app = _app(eager=True)
    uninstall = install(app, db=db)
    try:
        yield app, db
    finally:
        uninstall()


_CELERY_ENV = ("CELERY_LOG_LEVEL", "CELERY_LOG_FILE")


def _process_logging() -> tuple[Any, ...]:
    """What an embedded Celery worker changes in this process's logging: every logger's
    level, handlers, propagation and disabled flag (the root's included), the warnings
    filters and capture, and the environment variables it sets."""
    loggers = {"": logging.getLogger(), **{
        name: logger for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)}}
    return ({name: (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
             for name, logger in loggers.items()},
            list(warnings.filters), logging._warnings_showwarning,  # type: ignore[attr-defined]
            {key: os.environ.get(key) for key in _CELERY_ENV})


@contextmanager
def _logging_kept() -> Iterator[None]:
    """Put this process's logging back as it was: Celery's worker setup hijacks the root
    logger (drops its handlers, sets it to the worker's level, ERROR here), so a later test
    in the same process would see no WARNING records at all."""
    from celery.app.log import Logging

    loggers, filters, showwarning, env = _process_logging()
    was_setup = Logging._setup
    try:
        yield
    finally:
        for name, (level, handlers, propagate, disabled) in loggers.items():
            logger = logging.getLogger(name or None)
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate, logger.disabled = propagate, disabled
        kept: list[Any] = warnings.filters  # type: ignore[assignment]
        kept[:] = filters
        if showwarning is None:
            logging.captureWarnings(False)
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        Logging._setup = was_setup


@contextmanager
def _worker(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A hooked app whose tasks a real (threaded, solo) worker runs off the in-memory
    broker, this process's logging left as it was found."""
    from celery.contrib.testing.worker import start_worker

    db = tmp_path / "h.db"
    app = _app(eager=False)
    app.conf.broker_connection_retry_on_startup = False
    uninstall = install(app, db=db)
    try:
        with _logging_kept(), start_worker(app, pool="solo", concurrency=1,
                                           perform_ping_check=False, shutdown_timeout=10):
            yield app, db
    finally:
        uninstall()


@pytest.fixture
def worker_hooked(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A hooked app whose tasks a real (threaded, solo) worker runs off the in-memory
    broker while the test runs."""
    with _worker(tmp_path) as hooked_worker:
        yield hooked_worker


def _closed(db: Path, count: int) -> list[dict[str, Any]]:
    """The history once `count` records are closed: the worker stores a task's result before
    its task_postrun (or task_revoked) signal writes the record."""
    deadline = time.monotonic() + 30
    while True:
        jobs = get_job_history(db=db) if db.exists() else []
        if len(jobs) >= count and all(j["status"] != "running" for j in jobs):
            return jobs
        assert time.monotonic() < deadline, f"records not closed: {jobs}"
        time.sleep(0.02)


def test_eager_tasks_are_recorded_with_their_outcome(hooked: tuple[Any, Path]) -> None:
    """Each task run is one job: success, an exception as error (with its message), a
    result with a non-zero returncode as failed; tool is the task name, id the task id."""
    app, db = hooked
    ok = app.tasks["sim.add"].delay(2, 3)
    bad = app.tasks["sim.diverge"].delay(mesh=64)
    failed = app.tasks["sim.run"].delay(2)
    assert ok.get() == 5 and bad.state == "FAILURE"
    jobs = {j["job_id"]: j for j in get_job_history(db=db)}
    assert set(jobs) == {ok.id, bad.id, failed.id}
    assert (jobs[ok.id]["status"], jobs[ok.id]["tool"], jobs[ok.id]["source"]) == \
        ("success", "sim.add", "celery")
    assert jobs[ok.id]["params"] == {"args": [2, 3], "kwargs": {}}
    assert jobs[bad.id]["status"] == "error"
    assert jobs[bad.id]["error"] == "ValueError: solver diverged on mesh 64"
    assert jobs[bad.id]["params"]["kwargs"] == {"mesh": 64}
    assert (jobs[failed.id]["status"], jobs[failed.id]["returncode"]) == ("failed", 2)
    shown = get_job(ok.id, db=db)
    assert shown is not None
    assert [e["state"] for e in shown["timeline"]] == ["RUNNING", "SUCCESS"]
    assert shown["resource_usage"]["memory_peak_bytes"] > 0


def test_uninstall_stops_recording(tmp_path: Path) -> None:
    """After the function `install` returned is called, tasks are no longer recorded."""
    db = tmp_path / "h.db"
    app = _app(eager=True)
    uninstall = install(app, db=db)
    app.tasks["sim.add"].delay(1, 1)
    uninstall()
    app.tasks["sim.add"].delay(1, 2)
    assert len(get_job_history(db=db)) == 1


def test_tasks_of_another_app_are_left_alone(tmp_path: Path) -> None:
    """`install(app)` records only that app's tasks."""
    db = tmp_path / "h.db"
    mine, other = _app(eager=True), _app(eager=True)
    uninstall = install(mine, db=db)
    try:
        other.tasks["sim.add"].delay(1, 1)
        mine.tasks["sim.add"].delay(1, 1)
    finally:
        uninstall()
    assert len(get_job_history(db=db)) == 1


def test_a_real_worker_on_an_in_memory_broker_is_tracked(
        worker_hooked: tuple[Any, Path]) -> None:
    """Tasks sent through the in-memory broker and run by a real (threaded) Celery worker
    are recorded by the worker's signals."""
    app, db = worker_hooked
    results = [app.tasks["sim.add"].delay(i, i) for i in range(3)]
    assert [r.get(timeout=30) for r in results] == [0, 2, 4]
    bad = app.tasks["sim.diverge"].delay(8)
    with pytest.raises(ValueError, match="diverged"):
        bad.get(timeout=30)
    jobs = _closed(db, 4)
    assert sorted(j["status"] for j in jobs) == ["error", "success", "success", "success"]
    assert {j["job_id"] for j in jobs} == {r.id for r in results} | {bad.id}


def test_a_worker_leaves_this_processes_logging_as_it_found_it(tmp_path: Path) -> None:
    """Running a task on an embedded worker leaves the root logger's level and handlers,
    the warnings setup and the environment as they were, so a later test still sees
    rulesmon's WARNING records (the retention test failed when run after this file)."""
    before = _process_logging()
    with _worker(tmp_path) as (app, _db):
        assert app.tasks["sim.add"].delay(1, 2).get(timeout=30) == 3
        assert logging.getLogger().getEffectiveLevel() == logging.ERROR  # what Celery does
    assert _process_logging() == before
    assert logging.getLogger("rulesmon.track").isEnabledFor(logging.WARNING)


def test_a_retried_task_records_each_attempt_and_ends_them_all(
        hooked: tuple[Any, Path]) -> None:
    """A task that retries once is two records under its task id: the first attempt failed
    with the retry's reason, the second (id suffixed .2) succeeded; none stays running,
    even though an eager retry runs inside the first attempt."""
    app, db = hooked
    result = app.tasks["sim.flaky"].delay(7)
    assert result.get() == 7
    jobs = sorted(get_job_history(db=db), key=lambda j: j["id"])
    assert [j["id"] for j in jobs] == [result.id, f"{result.id}.2"]
    assert {j["job_id"] for j in jobs} == {result.id}
    first, second = jobs
    assert first["status"] == "failed"
    assert first["error"].startswith("retry: ") and "mesh not ready" in first["error"]
    assert (second["status"], second["error"]) == ("success", None)


def test_a_time_limit_is_a_timeout_with_its_message_once(hooked: tuple[Any, Path]) -> None:
    """A task stopped by its soft time limit is recorded as timeout, and the error names
    the exception once with its message, not its repr."""
    app, db = hooked
    result = app.tasks["sim.limited"].delay()
    assert result.state == "FAILURE"
    job = get_job_history(db=db)[0]
    assert (job["status"], job["error"]) == ("timeout", "SoftTimeLimitExceeded: limit")


def test_a_task_revoked_before_it_runs_is_recorded_cancelled(
        worker_hooked: tuple[Any, Path]) -> None:
    """A task revoked while it waits for its countdown never runs; the real worker's
    task_revoked signal still records it, as cancelled."""
    from celery.exceptions import TaskRevokedError

    app, db = worker_hooked
    waiting = app.tasks["sim.add"].apply_async((1, 2), countdown=3)
    app.control.revoke(waiting.id)  # before or while the worker holds it
    with pytest.raises(TaskRevokedError):
        waiting.get(timeout=30)
    job = _closed(db, 1)[0]
    assert (job["job_id"], job["tool"], job["status"]) == (waiting.id, "sim.add", "cancelled")
    assert job["error"] == "revoked before it started"
    assert job["params"] == {"args": [1, 2], "kwargs": {}}
