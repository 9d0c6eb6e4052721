"""Benchmark: 1,000 notifications owed in one tick, delivered to a local HTTP receiver.

The tick only records them (in its transaction); delivery runs on its own thread. Measured
in the same run: a tick with nothing owed (baseline), the tick that owes 1,000, and the time
until the receiver has all 1,000. Run: python benchmarks/notify_1000.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rulesmon.config.loader import load_text
from rulesmon.delivery import Delivery
from rulesmon.engine import Engine
from rulesmon.testing import NullLog
from tests.receiver import Receiver

N = 1000


class Flip:
    name = "slurm"

    def __init__(self) -> None:
        self.state = "RUNNING"

    def start(self, ctx: Any) -> None:
        return None

    def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
        return {"train/1": {"job.key": "train", "job.source": "slurm", "job.state": self.state}}

    def close(self) -> None:
        return None


def main() -> None:
    rules = "\n".join(f"  - {{name: r{i:04d}, when: 'job.state == \"FAILED\"', notify: hook}}"
                      for i in range(N))
    with Receiver() as rx, tempfile.TemporaryDirectory() as tmp:
        text = (f"version: 1\nname: n\nevery: 10s\nnotify:\n  hook: {rx.url()}\njobs:\n"
                f"  train:\n    slurm: {{user: a}}\nrules:\n{rules}\n")
        loaded = load_text(text)
        db = Path(tmp) / "s.db"
        probe = Flip()
        engine = Engine(loaded, state_path=db, log=NullLog(), probes=[probe])
        engine.delivery = Delivery(db, loaded.ruleset.notify, loaded.secrets, NullLog())
        engine.delivery.start()
        engine.tick(1000.0)
        t0 = time.perf_counter()
        engine.tick(1010.0)
        quiet = time.perf_counter() - t0
        probe.state = "FAILED"
        t0 = time.perf_counter()
        engine.tick(1020.0)
        busy = time.perf_counter() - t0
        while len(rx.received) < N and time.perf_counter() - t0 < 300:
            time.sleep(0.05)
        delivered = time.perf_counter() - t0
        engine.close()
    print(f"tick with nothing owed: {quiet * 1000:.0f} ms")
    print(f"tick that owes {N} notifications: {busy * 1000:.0f} ms "
          f"({busy / max(quiet, 1e-9):.1f}x the quiet tick; interval 10 s)")
    print(f"all {len(rx.received)} delivered after {delivered:.1f} s "
          f"({len(rx.received) / delivered:.0f} per second, off the tick)")


if __name__ == "__main__":
    main()
