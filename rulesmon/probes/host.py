"""The machine rulesmon runs on: `host.*` facts for every scope."""

from __future__ import annotations

import os
import socket

import psutil

from .base import Facts, TickContext


class HostProbe:
    name = "host"

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # the first call only starts the measurement

    def start(self, ctx: TickContext) -> None:
        return None

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        mem = psutil.virtual_memory()
        return {"": {
            "host.name": socket.gethostname(),
            "host.load1": os.getloadavg()[0],
            "host.cpu_pct": psutil.cpu_percent(None),
            "host.mem_pct": mem.percent,
            "host.mem_available": mem.available,
        }}

    def close(self) -> None:
        return None
