"""Benchmark: following a 100 MB DAG node log; the second tick must read only the new bytes.

The log is made of the events a real DAG run wrote (submit with `DAG Node:`, execute, image
size, terminate with usage and resources; recorded from HTCondor 23.9), renumbered so that
10,000 nodes run about six attempts each: ~100 MB, ~290,000 events. In the same run:

- baseline: reading the whole file in 4 MiB chunks (what any full re-read costs at least),
  and parsing it whole with a fresh `UserLogFollower` (what a monitor that re-reads the log
  each tick pays);
- rulesmon: the dagman probe over a 10,000-node DAG and that log, ticking every 30 s with the
  engine's own TickContext (its deadline is the engine's probe timeout): the log found at
  start is caught up over a few ticks, each within the node log's budget (64 MiB, and no new
  chunk after half the time left before the deadline, at most 10 s), with `dag.catching_up`
  true until the last; then 1 MB of events is appended and the next collect must read
  exactly the appended bytes; one more with nothing new reads none.

Reported: the catch-up ticks (count, longest, bytes), then bytes read per tick and its time
against the full read. Targets: no catch-up tick outlasts the probe timeout (and the catch-up
ends within CATCH_UP_TICKS ticks); once caught up a tick reads only the appended bytes (and
costs a small fraction of the full read). The files are deleted at the end. Takes 20-60
seconds.
Run: python benchmarks/userlog_follow.py
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from rulesmon.config.loader import load_text
from rulesmon.engine import Engine
from rulesmon.probes.dagman import DagmanProbe
from rulesmon.probes.userlog import UserLogFollower
from rulesmon.testing import NullLog

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "dagman" / "pipe" / \
    "run1.nodes.log"
NODES = 10_000
SIZE = 100 << 20
APPEND = 1 << 20
CATCH_UP_TICKS = 20  #: a log not caught up by then is a failure, not a longer wait
_ID = re.compile(r"^(\d{3}) \((\d+)\.(\d{3})\.(\d{3})\)", re.M)


def one_attempt(template: list[str], cluster: int, node: str) -> str:
    """A submit-execute-image-terminate sequence for one cluster of one node."""
    out = []
    for event in template:
        text = _ID.sub(lambda m: f"{m.group(1)} ({cluster:03d}.000.000)", event, count=1)
        text = text.replace("DAG Node: A", f"DAG Node: {node}")
        out.append(text)
    return "".join(out)


def template_events() -> list[str]:
    """Node A's events from the recorded run, plus an image size event."""
    blocks = [b + "...\n" for b in FIXTURE.read_text(encoding="utf-8").split("...\n")
              if b.strip()]
    mine = [b for b in blocks if "(009.000.000)" in b.split("\n", 1)[0]]
    image = ("006 (009.000.000) 2026-11-22 08:22:40 Image size of job updated: 7176\n"
             "\t210  -  MemoryUsage of job (MB)\n\t214520  -  ResidentSetSize of job (KB)\n...\n")
    return [mine[0], mine[1], image, mine[2]]


def make_log(path: Path, template: list[str], size: int, start: int) -> tuple[int, int]:
    """Append attempts until the file reaches `size` bytes; returns (next cluster, events)."""
    cluster, events = start, 0
    with path.open("a", encoding="utf-8") as fh:
        written = path.stat().st_size if path.exists() else 0
        while written < size:
            chunk = []
            for _ in range(200):
                chunk.append(one_attempt(template, cluster, f"n{cluster % NODES:05d}"))
                cluster += 1
                events += len(template)
            text = "".join(chunk)
            fh.write(text)
            written += len(text.encode())
    return cluster, events


def main() -> None:
    template = template_events()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dag = folder / "big.dag"
        dag.write_text("".join(f"JOB n{i:05d} node.sub\nRETRY n{i:05d} 9\n"
                               for i in range(NODES)), encoding="utf-8")
        log = folder / "big.dag.nodes.log"
        cluster, events = make_log(log, template, SIZE, 100)
        size = log.stat().st_size

        t0 = time.perf_counter()
        with log.open("rb") as fh:
            while fh.read(4 << 20):
                pass
        raw = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = UserLogFollower(log).read()
        parse_all = time.perf_counter() - t0
        assert len(full.events) == events and full.garbage == 0

        loaded = load_text("version: 1\nname: big\nevery: 30s\njobs:\n  big:\n"
                           "    dagman: {dag: big.dag}\n", base=folder)
        probe = DagmanProbe(loaded.ruleset, folder)
        # the engine gives each tick's probes its deadline: the probe is called directly (to
        # time it alone) with the TickContext the engine would hand it
        engine = Engine(loaded, state_path=folder / "state.db", log=NullLog(), probes=[probe],
                        dry_run=True)
        timeout = engine.probe_timeout

        def tick() -> tuple[float, int, bool]:
            watch = probe._watches[0]
            before = watch.node_log.follower.total_bytes if watch.node_log else 0
            t = time.perf_counter()
            facts = probe.collect(engine._ctx(time.time()))
            took = time.perf_counter() - t
            assert len(facts) == NODES + 1
            assert watch.node_log is not None
            return (took, watch.node_log.follower.total_bytes - before,
                    bool(facts["big/big.dag"]["dag.catching_up"]))

        try:
            catch_up: list[tuple[float, int]] = []
            for _ in range(CATCH_UP_TICKS):
                took, got, behind = tick()
                catch_up.append((took, got))
                if not behind:
                    break
            else:
                raise SystemExit(f"still catching up after {CATCH_UP_TICKS} ticks: " +
                                 ", ".join(f"{b / 1e6:.1f} MB in {t:.2f} s"
                                           for t, b in catch_up))
            _, new_events = make_log(log, template, size + APPEND, cluster)
            appended = log.stat().st_size - size
            second, second_bytes, _ = tick()
            third, third_bytes, _ = tick()
            runs = probe._watches[0].node_log.nodes["n00042"].run_count  # type: ignore[union-attr]
        finally:
            engine.close()

    print(f"node log: {size / 1e6:.1f} MB, {events:,} events, {NODES:,} nodes "
          f"(~{runs} attempts each)")
    print(f"baseline: raw read {raw * 1000:.0f} ms ({size / raw / 1e6:.0f} MB/s); full parse "
          f"with a fresh follower {parse_all:.2f} s ({size / parse_all / 1e6:.0f} MB/s)")
    longest = max(t for t, _ in catch_up)
    print(f"catch-up (log found at start, 10,001 instances): {len(catch_up)} ticks, "
          f"{sum(t for t, _ in catch_up):.2f} s in all, longest {longest:.2f} s (tick 30 s, "
          f"probe timeout {timeout:g} s); read " +
          ", ".join(f"{b / 1e6:.1f} MB in {t:.2f} s" for t, b in catch_up))
    exact = "exactly" if second_bytes == appended else "NOT"
    print(f"next tick after appending {appended / 1e6:.2f} MB ({new_events:,} events): "
          f"{second * 1000:.0f} ms, read {second_bytes:,} bytes ({exact} the appended "
          f"bytes); {second / parse_all * 100:.1f}% of a full parse")
    print(f"tick 3 (nothing new): {third * 1000:.0f} ms, read {third_bytes:,} bytes")
    ok = second_bytes == appended and third_bytes == 0
    print(f"target: each tick reads only new bytes ({'meets' if ok else 'misses'}); "
          f"catch-up ticks within the probe timeout "
          f"({'meets' if longest < timeout else 'misses'})")


if __name__ == "__main__":
    main()
