"""Notifications arrive when they should: outbox, retries, order, grouping, inhibition,
silences, caps, ids, email — counted at real receivers on 127.0.0.1."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.delivery import Delivery
from rulesmon.engine import Engine
from rulesmon.testing import NullLog

from .receiver import Receiver


def _wait(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _ids(rx: Receiver) -> list[str]:
    out: list[str] = []
    for r in rx.received:
        out += str(r["body"]["rulesmon_ids"]).split(",")
    return out


class Facts:
    """A probe whose facts the test sets between ticks."""

    name = "slurm"

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def start(self, ctx: Any) -> None:
        return None

    def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.rows.items()}

    def close(self) -> None:
        return None


def _engine(tmp_path: Path, text: str, probe: Facts, env: dict[str, str]) -> Engine:
    loaded = load_text(text, env=env)
    db = tmp_path / "s.db"
    engine = Engine(loaded, state_path=db, log=NullLog(), probes=[probe])
    engine.delivery = Delivery(db, loaded.ruleset.notify, loaded.secrets, NullLog())
    engine.delivery.start()
    return engine


STORM = """\
version: 1
name: storm
every: 1s
notify:
  team: {urls: ["${HOOK}"], retry_max: 1s}
defaults:
  notify: [team]
jobs:
  train:
    slurm: {user: a}
rules:
  - name: node-down
    when: job.state == "NODE_FAIL"
    severity: critical
    inhibits: [{rule: job-failed, equal: [job.node_list]}]
    message: "node {{ job.node_list }} failed under {{ job.id }}"
  - name: job-failed
    when: job.state in ("FAILED", "NODE_FAIL")
    severity: critical
    message: "{{ job.id }} failed"
"""


def test_a_storm_becomes_a_few_messages(tmp_path: Path) -> None:
    """One node down under 20 jobs: one grouped node-down message and no per-job failures
    for that node; a failure elsewhere still gets its own message."""
    with Receiver() as rx:
        rx.url()
        probe = Facts()
        engine = _engine(tmp_path, STORM.replace("${HOOK}", rx.url()), probe, {})
        for i in range(20):
            probe.rows[f"train/{i}"] = {"job.key": "train", "job.source": "slurm",
                                        "job.id": str(i), "job.state": "RUNNING",
                                        "job.node_list": "gpu01"}
        probe.rows["train/99"] = {"job.key": "train", "job.source": "slurm", "job.id": "99",
                                  "job.state": "RUNNING", "job.node_list": "gpu02"}
        engine.tick(1000.0)
        for i in range(20):
            probe.rows[f"train/{i}"]["job.state"] = "NODE_FAIL"
        probe.rows["train/99"]["job.state"] = "FAILED"
        engine.tick(1001.0)
        assert engine.delivery.drain(10)
        titles = sorted(r["body"]["title"] for r in rx.received)
        assert titles == ["[CRITICAL] job-failed: train/99", "[CRITICAL] node-down: 20 "
                          "instances firing"]
        grouped = next(r for r in rx.received if "node-down" in r["body"]["title"])
        assert len(str(grouped["body"]["rulesmon_ids"]).split(",")) == 20
        muted = engine.store.db.execute(
            "SELECT count(*) FROM events WHERE kind = 'muted'").fetchone()[0]
        assert muted == 20
        engine.close()


def test_outage_then_recovery_delivers_everything_in_order_once(tmp_path: Path) -> None:
    """While the receiver answers 500 and then refuses connections, notifications wait; once
    it is back every one arrives, in order, once, and each failed attempt is recorded with
    the service's error."""
    with Receiver() as rx:
        probe = Facts()
        text = STORM.replace("${HOOK}", rx.url()).replace("retry_max: 1s", "retry_max: 0.3s")
        engine = _engine(tmp_path, text, probe, {})
        rx.status = 500
        for i in range(6):
            probe.rows[f"train/{i}"] = {"job.key": "train", "job.source": "slurm",
                                        "job.id": str(i), "job.state": "FAILED",
                                        "job.node_list": f"n{i}"}
            engine.tick(1000.0 + i)
            time.sleep(0.2)
        rx.stop()  # the service goes away entirely
        time.sleep(1.0)
        failures = engine.store.db.execute("SELECT count(*), min(error) FROM attempts "
                                           "WHERE ok = 0").fetchone()
        assert failures[0] >= 2 and failures[1]
        assert engine.store.db.execute("SELECT count(*) FROM outbox WHERE status = 'owed'"
                                       ).fetchone()[0] == 6
        rx.status = 200
        rx.start()
        assert engine.delivery.drain(20)
        ids = _ids(rx)
        assert len(ids) == len(set(ids)) == 6
        seq = [r[0] for r in engine.store.db.execute("SELECT id FROM outbox ORDER BY seq")]
        assert ids == seq
        engine.close()


RESTART = """\
version: 1
name: restart
every: 0.2s
notify:
  hook: "${HOOK}"
jobs:
  w:
    files:
      f: {glob: "*.flag"}
rules:
  - name: heartbeat
    when: files.f.count > 0
    repeat: 0.2s
    resolve: false
    notify: hook
    message: "beat {{ alert.count }}"
"""


def _owed(db: Path) -> int:
    """How many notifications the state database has recorded (0 before it exists)."""
    if not db.exists():
        return 0
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return int(con.execute("SELECT count(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:  # the first run has not created its tables yet
        return 0
    finally:
        con.close()


def _messages(rx: Receiver) -> list[tuple[str, tuple[str, ...]]]:
    """Each received message as (X-Rulesmon-Id, the notification ids it carries)."""
    return [(str(r["headers"]["X-Rulesmon-Id"]),
             tuple(str(r["body"]["rulesmon_ids"]).split(","))) for r in rx.received]


def test_sigkill_at_random_ticks_loses_nothing(tmp_path: Path) -> None:
    """20 runs killed with SIGKILL at random moments of their ticking: every owed notification
    reaches the receiver, and a repeat is only ever the very same message again (at most one
    per kill: the delivery the kill interrupted)."""
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text(RESTART, encoding="utf-8")
    (tmp_path / "on.flag").write_text("x")
    db = tmp_path / "s.db"
    rng = random.Random(1234)
    kills = 20
    with Receiver() as rx:
        env = dict(os.environ, HOOK=rx.url())
        for k in range(kills):
            before, seen = _owed(db), len(rx.received)
            err = tmp_path / f"run{k}.err"
            with err.open("wb") as stderr:
                proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "run", str(ruleset),
                                         "--state", str(db)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                # a random moment of the run's work, whatever its start-up costs: up to two
                # ticks (0.2 s) after it has recorded a notification (even runs) or after
                # its delivery has sent a message (odd runs, so kills land while messages
                # are going out)
                if k % 2:
                    _wait(lambda p=proc, n=seen: len(rx.received) > n or p.poll() is not None,
                          120)
                else:
                    _wait(lambda p=proc, n=before: _owed(db) > n or p.poll() is not None, 120)
                assert proc.poll() is None, err.read_text(errors="replace")[-2000:]
                time.sleep(rng.uniform(0.0, 0.4))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        (tmp_path / "on.flag").unlink()
        final = subprocess.run([sys.executable, "-m", "rulesmon", "run", str(ruleset),
                                "--state", str(db), "--once"], env=env, capture_output=True,
                               timeout=60, check=False)
        assert final.returncode == 0, final.stderr[-2000:]
        con = sqlite3.connect(str(db))
        owed = [r[0] for r in con.execute("SELECT id FROM outbox ORDER BY seq")]
        left = con.execute("SELECT count(*) FROM outbox WHERE status != 'delivered'"
                           ).fetchone()[0]
        con.close()
        messages = _messages(rx)
        got = Counter(_ids(rx))
        payloads = set(messages)
        again = len(messages) - len(payloads)
        print(f"\n{len(owed)} notifications owed over {kills} killed runs; received "
              f"{sum(got.values())} in {len(messages)} messages; messages sent again after "
              f"an interrupted delivery: {again}")
        assert len(owed) >= kills  # every run was killed after recording one
        assert len(messages) >= kills // 2  # and every odd one after sending one
        assert left == 0
        assert [i for i in owed if i not in got] == []
        assert set(got) == set(owed)
        # one message id, one payload; each notification in one message only
        assert len({m for m, _ in payloads}) == len(payloads)
        assert Counter(i for _, ids in payloads for i in ids) == Counter(set(got))
        assert all(m == ids[0] for m, ids in payloads)
        assert again <= kills


SEND_THEN_DIE = """\
import os, signal, sys
from pathlib import Path
from rulesmon.config.loader import load_text
from rulesmon.delivery import Delivery, apprise_send
from rulesmon.testing import NullLog

def send_then_die(target, urls, title, body, timeout):
    apprise_send(target, urls, title, body, timeout)
    os.kill(os.getpid(), signal.SIGKILL)  # after the service has it, before it is marked
    return True, ""

loaded = load_text(Path(sys.argv[1]).read_text(encoding="utf-8"))
delivery = Delivery(Path(sys.argv[2]), loaded.ruleset.notify, loaded.secrets, NullLog(),
                    send=send_then_die)
delivery.start()
delivery.drain(120)
"""


def test_a_message_killed_in_flight_is_sent_again_unchanged(tmp_path: Path) -> None:
    """A process killed after the service got a message but before marking it delivered
    leaves it owed; the next delivery sends the very same message (same id, same
    notifications), and a notification owed meanwhile goes in a message of its own."""
    with Receiver() as rx:
        text = STORM.replace("${HOOK}", rx.url())
        ruleset = tmp_path / "r.yaml"
        ruleset.write_text(text, encoding="utf-8")
        probe = Facts()
        engine = Engine(load_text(text), state_path=tmp_path / "s.db", log=NullLog(),
                        probes=[probe])
        probe.rows["train/1"] = {"job.key": "train", "job.source": "slurm", "job.id": "1",
                                 "job.state": "FAILED", "job.node_list": "n1"}
        engine.tick(1000.0)
        killed = subprocess.run([sys.executable, "-c", SEND_THEN_DIE, str(ruleset),
                                 str(tmp_path / "s.db")], capture_output=True, timeout=120,
                                check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert len(rx.received) == 1
        probe.rows["train/2"] = {"job.key": "train", "job.source": "slurm", "job.id": "2",
                                 "job.state": "FAILED", "job.node_list": "n2"}
        engine.tick(1001.0)  # the same rule and transition, owed while nothing ran
        engine.delivery = Delivery(tmp_path / "s.db", engine.loaded.ruleset.notify,
                                   engine.loaded.secrets, NullLog())
        engine.delivery.start()
        assert engine.delivery.drain(60)
        first, again, second = _messages(rx)
        assert again == first and len(first[1]) == 1
        assert second[1] != first[1] and len(second[1]) == 1
        assert [r["body"]["title"] for r in rx.received][1:] == [
            "[CRITICAL] job-failed: train/1", "[CRITICAL] job-failed: train/2"]
        engine.close()


def test_silence_mutes_and_expires(tmp_path: Path) -> None:
    """A silence mutes matching notifications (recorded), and they flow again after it."""
    with Receiver() as rx:
        probe = Facts()
        engine = _engine(tmp_path, STORM.replace("${HOOK}", rx.url()), probe, {})
        engine.store.add_silence("job-*", "train/1", 1010.0, "maintenance")
        for i in (1, 2):
            probe.rows[f"train/{i}"] = {"job.key": "train", "job.source": "slurm",
                                        "job.id": str(i), "job.state": "FAILED",
                                        "job.node_list": f"n{i}"}
        engine.tick(1000.0)
        assert engine.delivery.drain(10)
        assert [r["body"]["title"] for r in rx.received] == ["[CRITICAL] job-failed: train/2"]
        reason = engine.store.db.execute("SELECT body FROM events WHERE kind = 'muted'"
                                         ).fetchone()[0]
        assert reason.startswith("silence ")
        engine.close()


def test_cap_per_hour_summarises_the_rest(tmp_path: Path) -> None:
    """Past max_per_hour a target gets nothing more until the hour allows, then one
    'N more suppressed' message."""
    sent: list[tuple[str, str]] = []
    clock = [1000.0]

    def send(target: str, urls: list[str], title: str, body: str, timeout: float) -> tuple[
            bool, str]:
        sent.append((title, body))
        return True, ""

    probe = Facts()
    text = STORM.replace('{urls: ["${HOOK}"], retry_max: 1s}',
                         '{urls: ["json://127.0.0.1:9/x"], max_per_hour: 2}')
    loaded = load_text(text)
    db = tmp_path / "s.db"
    engine = Engine(loaded, state_path=db, log=NullLog(), probes=[probe],
                    clock=lambda: clock[0])
    engine.delivery = Delivery(db, loaded.ruleset.notify, loaded.secrets, NullLog(),
                               send=send, clock=lambda: clock[0])
    engine.delivery.start()
    for i in range(5):
        probe.rows[f"train/{i}"] = {"job.key": "train", "job.source": "slurm",
                                    "job.id": str(i), "job.state": "FAILED",
                                    "job.node_list": f"n{i}"}
        engine.tick(clock[0])
        assert engine.delivery.drain(5)
        clock[0] += 10
    assert len(sent) == 2
    clock[0] += 3600
    engine.delivery.poke()
    _wait(lambda: len(sent) == 3)
    assert sent[2][0] == "3 more notifications suppressed"
    engine.close()


def test_email_through_a_real_smtp_server(tmp_path: Path) -> None:
    """mailto:// delivers to an SMTP server on 127.0.0.1 with the notification id header."""
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.handlers import Message

    inbox: list[Any] = []

    class Keep(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            inbox.append(message)

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = aiosmtpd.Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        url = f"mailto://127.0.0.1:{port}?from=rulesmon@example.com&to=me@example.com"
        probe = Facts()
        engine = _engine(tmp_path, STORM.replace("${HOOK}", url), probe, {})
        probe.rows["train/1"] = {"job.key": "train", "job.source": "slurm", "job.id": "1",
                                 "job.state": "FAILED", "job.node_list": "n1"}
        engine.tick(1000.0)
        assert engine.delivery.drain(20)
        _wait(lambda: bool(inbox), 10)
        msg = inbox[0]
        if isinstance(msg, bytes):
            msg = message_from_bytes(msg)
        assert "job-failed" in msg["Subject"]
        assert msg["X-Rulesmon-Id"]
        engine.close()
    finally:
        controller.stop()
