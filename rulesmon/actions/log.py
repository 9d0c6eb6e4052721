"""`log`: a line on the console and in the JSON log, at the rule's severity."""

from __future__ import annotations

from ..config.models import LogAction
from .base import ActionContext, Notification

_LEVELS = {"info": "info", "warning": "warning", "error": "error", "critical": "critical"}


def run(action: LogAction, ctx: ActionContext, note: Notification) -> None:
    level = action.log or _LEVELS.get(note.severity, "warning")
    text = ctx.render(action.message) if action.message else note.body
    event = {"fire": "alert_firing", "repeat": "alert_repeat", "resolve": "alert_resolved",
             "summary": "run_summary"}[note.kind]
    getattr(ctx.log, level)(event, rule=note.rule, instance=note.instance, message=text)
