"""`control`: cancel, requeue, hold, release, remove or resubmit a job through its scheduler,
only under `rulesmon run --allow-control`.

The scheduler command lives with the source that knows it (`rulesmon.probes.<source>.control`),
so this module only checks permission, finds the job's source and runs the command off the
engine thread.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from ..config.models import ControlAction
from ..probes.base import ProbeError
from .base import ActionContext, Notification

Controller = Callable[[str, Mapping[str, Any], str | None, float], str]
SOURCES = ("slurm", "htcondor", "dagman")


def controller(source: str) -> Controller | None:
    """The source module's `control` function (imported lazily: most runs never control)."""
    if source not in SOURCES:
        return None
    module = importlib.import_module(f"rulesmon.probes.{source}")
    fn = getattr(module, "control", None)
    return fn if callable(fn) else None


def run(action: ControlAction, ctx: ActionContext, note: Notification) -> None:
    verb = action.control
    source = str(ctx.facts.get("job.source", "none"))
    job_id = str(ctx.facts.get("job.id", "?"))
    what = f"{verb} {source} job {job_id}"
    if not ctx.allow_control:
        ctx.log.warning("control_skipped", rule=note.rule, action=what,
                        reason="needs rulesmon run --allow-control")
        ctx.record("control_skipped", note, what)
        return
    fn = controller(source)
    if fn is None:
        ctx.log.error("control_failed", rule=note.rule, action=what,
                      error=f"a {source} job cannot be controlled")
        ctx.record("control", note, f"{what}: failed: a {source} job cannot be controlled")
        return
    reason = ctx.render(action.reason) if action.reason else None
    if ctx.dry_run:
        ctx.log.info("would_control", rule=note.rule, action=what)
        return
    facts = dict(ctx.facts)

    def work() -> None:
        try:
            result = fn(verb, facts, reason, action.timeout)
        except ProbeError as exc:
            ctx.record("control", note, f"{what}: failed: {exc}")
            ctx.log.error("control_failed", rule=note.rule, action=what, error=str(exc))
            return
        ctx.record("control", note, f"{what}: {result}")
        ctx.log.info("control_done", rule=note.rule, action=what, result=result)

    ctx.background(work, f"control-{note.rule}")
