"""What every action receives: the notification being acted on and the engine's services."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Transition = Literal["fire", "repeat", "resolve", "summary"]


@dataclass(frozen=True)
class Notification:
    """One rendered alert transition; `id` is stable so receivers can deduplicate."""

    id: str
    kind: Transition
    rule: str
    instance: str
    severity: str
    title: str
    body: str
    at: float
    labels: dict[str, str] = field(default_factory=dict)


class Sender(Protocol):
    def send(self, targets: list[str], note: Notification) -> None: ...


@dataclass
class ActionContext:
    """Services the engine lends to actions; actions never reach into the engine."""

    base_dir: Path
    sender: Sender
    render: Callable[[str], str]
    log: Any
    record: Callable[[str, Notification, str], None]
    #: end the run after this tick with this exit code (None: the run's own, 0 or 1)
    request_stop: Callable[[int | None], None]
    background: Callable[[Callable[[], None], str], None]
    allow_exec: bool = False
    allow_control: bool = False
    #: the firing instance's facts (flat names), for actions that act on the job itself
    facts: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False
