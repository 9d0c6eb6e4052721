"""`notify`: hand the rendered notification to the sender for the named targets."""

from __future__ import annotations

from dataclasses import replace

from ..config.models import NotifyAction
from .base import ActionContext, Notification


def run(action: NotifyAction, ctx: ActionContext, note: Notification) -> None:
    if action.title or action.message:
        note = replace(note,
                       title=ctx.render(action.title) if action.title else note.title,
                       body=ctx.render(action.message) if action.message else note.body)
    if ctx.dry_run:
        ctx.log.info("would_notify", targets=",".join(action.notify), title=note.title)
        return
    ctx.sender.send(list(action.notify), note)
