"""Actions a rule can take, one module each, registered here by the key a ruleset uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config.models import ControlAction, ExecAction, LogAction, NotifyAction, StopAction
from . import control, log, notify, stop
from . import exec as exec_action
from .base import ActionContext, Notification

ACTIONS: dict[type[Any], Callable[[Any, ActionContext, Notification], None]] = {
    NotifyAction: notify.run,
    LogAction: log.run,
    ExecAction: exec_action.run,
    ControlAction: control.run,
    StopAction: stop.run,
}

__all__ = ["ACTIONS", "ActionContext", "Notification"]
