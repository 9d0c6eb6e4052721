"""`stop`: end the run after this tick with an exit code."""

from __future__ import annotations

from ..config.models import StopAction
from .base import ActionContext, Notification


def run(action: StopAction, ctx: ActionContext, note: Notification) -> None:
    ctx.log.info("stop_requested", rule=note.rule, exit_code=action.stop)
    ctx.request_stop(action.stop)
