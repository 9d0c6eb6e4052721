"""Delivering notifications through apprise, off the evaluation path.

A worker thread sends what the actions hand over, so a slow or dead service never delays a
tick. (The persistent outbox with retries, grouping and inhibition builds on this.)
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from .actions.base import Notification
from .config.models import Target


class AppriseSender:
    """Send notifications to named targets; secrets never leave this class in logs."""

    def __init__(self, targets: dict[str, Target], log: Any) -> None:
        self.targets = targets
        self.log = log
        self.queue: queue.Queue[tuple[list[str], Notification] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self.thread.start()
        self.sent = 0
        self.failed = 0

    def send(self, targets: list[str], note: Notification) -> None:
        self.queue.put((targets, note))

    def close(self, timeout: float = 10.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _work(self) -> None:
        import apprise

        logging.getLogger("apprise").setLevel(logging.CRITICAL)
        while True:
            item = self.queue.get()
            if item is None:
                return
            names, note = item
            for name in names:
                target = self.targets.get(name)
                urls = [u for u in (target.urls if target else []) if u.strip()]
                if not urls:
                    self.log.warning("notify_no_url", target=name, rule=note.rule,
                                     hint="set the target's URL; the message was only logged")
                    continue
                ap = apprise.Apprise()
                for url in urls:
                    ap.add(url)
                try:
                    ok = bool(ap.notify(title=note.title, body=note.body))
                except Exception as exc:  # apprise plugins raise assorted errors
                    ok = False
                    self.log.error("notify_error", target=name, rule=note.rule,
                                   error=type(exc).__name__)
                if ok:
                    self.sent += 1
                    self.log.debug("notify_sent", target=name, rule=note.rule, id=note.id)
                else:
                    self.failed += 1
                    self.log.warning("notify_failed", target=name, rule=note.rule, id=note.id)
