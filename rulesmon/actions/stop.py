"""`stop`: end the run after this tick, with the action's exit code or the run's own."""

from __future__ import annotations

from ..config.models import StopAction
from .base import ActionContext, Notification


def run(action: StopAction, ctx: ActionContext, note: Notification) -> None:
    # A bare `stop` (no code) leaves the code to the engine, so a ruleset that stops at the
    # end of the run still exits 1 when a job failed, as `rulesmon run` promises.
    ctx.log.info("stop_requested", rule=note.rule,
                 exit_code="the run's own" if action.stop is None else action.stop)
    ctx.request_stop(action.stop)
