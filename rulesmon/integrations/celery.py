"""Record every Celery task in the rulesmon history.

    from rulesmon.integrations.celery import install
    install(app)                      # in the module that creates the Celery app

Each task run becomes one job (source `celery`, tool = the task's name, job id = the task
id, params = its arguments) with CPU user/system time, peak memory, duration, status and
error, measured in the worker process that runs it, from `task_prerun` to `task_postrun`.
Status: SUCCESS is success (unless the task returns a mapping whose `returncode` is not 0:
failed); an exception is error, a time limit timeout, a revoked task cancelled (one revoked
before it started too, as a record of zero duration), a retry failed (the retry is a new
record under the same task id; in eager mode it runs inside the first attempt, so the
attempts of one task id are kept as a stack).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..track import Tracking, describe, retention_seconds

MAX_PARAM = 2000
_UID = "rulesmon-history"


class _Hook:
    """The signal receivers of one `install` call."""

    def __init__(self, app: Any, db: Path | str | None,
                 retention: float | str | None = None) -> None:
        self.app = app
        self.db = db
        self.retention = retention
        self.running: dict[str, list[Tracking]] = {}
        self.errors: dict[str, tuple[str, str]] = {}
        self.lock = threading.Lock()

    def _mine(self, task: Any) -> bool:
        return self.app is None or getattr(task, "app", None) is self.app

    def prerun(self, sender: Any = None, task_id: str | None = None, task: Any = None,
               args: Any = None, kwargs: Any = None, **_: Any) -> None:
        task = task or sender
        if task_id is None or not self._mine(task):
            return
        tracking = self._tracking(task, task_id, args, kwargs)
        tracking.start()
        with self.lock:
            self.running.setdefault(task_id, []).append(tracking)

    def _tracking(self, task: Any, task_id: str, args: Any, kwargs: Any) -> Tracking:
        name = getattr(task, "name", None) if not isinstance(task, str) else task
        return Tracking(name or "task", None,
                        {"args": _safe(args or ()), "kwargs": _safe(kwargs or {})},
                        task_id=task_id, db=self.db, source="celery",
                        retention=self.retention)

    def _pop(self, task_id: str) -> Tracking | None:
        """The innermost running attempt of `task_id` (an eager retry nests in the first)."""
        with self.lock:
            stack = self.running.get(task_id)
            if not stack:
                return None
            tracking = stack.pop()
            if not stack:
                del self.running[task_id]
            return tracking

    def failure(self, sender: Any = None, task_id: str | None = None,
                exception: BaseException | None = None, **_: Any) -> None:
        if task_id is None or exception is None:
            return
        name = type(exception).__name__
        status = "timeout" if name in ("SoftTimeLimitExceeded", "TimeLimitExceeded",
                                       "TimeoutError") else "error"
        with self.lock:
            self.errors[task_id] = (status, describe(exception))

    def postrun(self, sender: Any = None, task_id: str | None = None, retval: Any = None,
                state: str | None = None, **_: Any) -> None:
        if task_id is None:
            return
        tracking = self._pop(task_id)
        with self.lock:
            failure = self.errors.pop(task_id, None)
        if tracking is None:
            return
        returncode = retval.get("returncode") if isinstance(retval, Mapping) else None
        if not isinstance(returncode, int) or isinstance(returncode, bool):
            returncode = None
        if failure is not None:
            status, error = failure
        elif state == "RETRY":
            status, error = "failed", f"retry: {retval}"[:MAX_PARAM]
        elif state == "REVOKED":
            status, error = "cancelled", "revoked"
        elif returncode not in (None, 0):
            status, error = "failed", f"returncode {returncode}"
        elif state in (None, "SUCCESS"):
            status, error = "success", None
        else:
            status, error = "error", f"state {state}"
        tracking.finish(status, returncode, error)

    def revoked(self, sender: Any = None, request: Any = None, terminated: bool = False,
                expired: bool = False, **_: Any) -> None:
        task_id = getattr(request, "id", None)
        if task_id is None or not self._mine(sender):
            return
        why = "expired" if expired else "revoked" + (" (terminated)" if terminated else "")
        tracking = self._pop(task_id)
        if tracking is None:  # revoked before it started: the record says it never ran
            tracking = self._tracking(sender if sender is not None else
                                      getattr(request, "task", None), task_id,
                                      getattr(request, "args", None),
                                      getattr(request, "kwargs", None))
            tracking.start()
            why += " before it started"
        tracking.finish("cancelled", None, why)


def install(app: Any = None, *, db: Path | str | None = None,
            retention: float | str | None = None) -> Callable[[], None]:
    """Track every task of `app` (every task of any app when None) into the history at `db`
    (default: the tracking database), keeping records for `retention` (default
    $RULESMON_HISTORY_RETENTION, else a year). Returns a function that removes the hooks."""
    from celery import signals

    hook = _Hook(app, db, retention_seconds(retention))  # a bad value fails here, not later
    uid = f"{_UID}-{id(hook)}"
    pairs = ((signals.task_prerun, hook.prerun), (signals.task_failure, hook.failure),
             (signals.task_postrun, hook.postrun), (signals.task_revoked, hook.revoked))
    for signal, receiver in pairs:
        signal.connect(receiver, weak=False, dispatch_uid=uid)

    def uninstall() -> None:
        for signal, _receiver in pairs:
            signal.disconnect(dispatch_uid=uid)

    return uninstall


def _safe(value: Any) -> Any:
    """Arguments as JSON-friendly values, each bounded in size (a task may get a big list)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value if not isinstance(value, str) else value[:MAX_PARAM]
    if isinstance(value, Mapping):
        return {str(k): _safe(v) for k, v in list(value.items())[:100]}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value[:100]]
    return repr(value)[:MAX_PARAM]
