"""SIGHUP reloads the ruleset of a running `rulesmon run`, as Prometheus users expect.

Each test starts a real `rulesmon run` (a subprocess, ticking every 0.2 s over a folder of
files), rewrites its ruleset, sends SIGHUP, and watches what a real receiver on 127.0.0.1
gets and what the state database records. Every wait polls for an observable condition; the
deadlines only bound a hang.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.receiver import Receiver

HEAD = """\
version: 1
name: reload
every: 0.2s
notify:
  hook: ${HOOK}
jobs:
  sim:
    files:
      out: {glob: '*.dat'}
rules:
"""

#: a rule per (name, condition, title); each notifies the hook
RULE = """\
  - name: {name}
    when: {when}
    notify: hook
    title: '{title}'
"""


def _ruleset(*rules: tuple[str, str, str], jobs_extra: str = "") -> str:
    head = HEAD.replace("rules:\n", jobs_extra + "rules:\n")
    return head + "".join(RULE.format(name=n, when=w, title=t) for n, w, t in rules)


def _until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """A query on the state database the run writes; [] while it cannot be read."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return list(con.execute(sql))
        finally:
            con.close()
    except sqlite3.Error:
        return []


class Run:
    """One `rulesmon run` of tmp_path/r.yaml, its output in files, and its receiver."""

    def __init__(self, tmp_path: Path, rx: Receiver, text: str) -> None:
        self.dir = tmp_path
        self.rx = rx
        self.ruleset = tmp_path / "r.yaml"
        self.ruleset.write_text(text, encoding="utf-8")
        self.db = tmp_path / "s.db"
        self.err_path = tmp_path / "err.txt"
        with (tmp_path / "out.txt").open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rulesmon", "run", str(self.ruleset), "--state",
                 str(self.db)], cwd=tmp_path, stdout=out, stderr=err,
                env={**os.environ, "HOOK": rx.url(), "HOOK2": rx.url(path="moved")})

    def ticks(self) -> int:
        rows = _rows(self.db, "SELECT max(ticks) FROM runs")
        return int(rows[0][0] or 0) if rows else 0

    def after_ticks(self, n: int) -> None:
        """Wait until `n` more ticks than now are recorded."""
        start = self.ticks()
        _until(lambda: self.ticks() >= start + n, f"{n} ticks")

    def paths(self) -> list[tuple[str, str]]:
        with self.rx.lock:
            return [(str(r["path"]), str(r["body"].get("title", ""))) for r in self.rx.received]

    def titles(self) -> list[str]:
        with self.rx.lock:
            return [str(r["body"].get("title", "")) for r in self.rx.received]

    def ids(self) -> list[str]:
        with self.rx.lock:
            return [str(r["headers"].get("X-Rulesmon-Id", "")) for r in self.rx.received]

    def delivered_all(self) -> bool:
        rows = _rows(self.db, "SELECT count(*) FROM outbox WHERE status = 'owed'")
        return bool(rows) and rows[0][0] == 0

    def reload(self, text: str) -> None:
        self.ruleset.write_text(text, encoding="utf-8")
        self.proc.send_signal(signal.SIGHUP)

    def err(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def events(self, kind: str) -> list[tuple[Any, ...]]:
        return _rows(self.db, f"SELECT kind, title, body FROM events WHERE kind = '{kind}'")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], Run]]:
    """Start runs in tmp_path; each is killed afterwards if still running."""
    runs: list[Run] = []
    with Receiver() as rx:

        def starter(text: str) -> Run:
            run = Run(tmp_path, rx, text)
            runs.append(run)
            return run

        yield starter
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
            run.proc.wait(timeout=60)


def test_a_changed_threshold_and_title_apply_after_sighup(
        tmp_path: Path, start: Callable[[str], Run]) -> None:
    """After SIGHUP a rule's new threshold and title apply: an alert the old threshold kept
    quiet fires, with the new title, and no message ever carries the old title."""
    (tmp_path / "a.dat").write_text("x")
    run = start(_ruleset(("many-outputs", "files.out.count > 5", "old title")))
    run.after_ticks(2)
    run.reload(_ruleset(("many-outputs", "files.out.count > 0", "new: {{ files.out.count }}")))
    _until(lambda: "new: 1" in run.titles(), "the new rule's notification")
    assert run.stop() == 128 + signal.SIGTERM
    assert run.titles() == ["new: 1"]
    assert "ruleset_reloaded" in run.err()
    assert [e[0] for e in run.events("reload")] == ["reload"]


def test_a_broken_file_keeps_the_old_rules_running_and_says_why_in_one_line(
        tmp_path: Path, start: Callable[[str], Run]) -> None:
    """A reloaded file that lint refuses (a misspelt fact) is refused with one stderr line
    naming its file:line:col; the old rules keep working: the old rule still fires."""
    run = start(_ruleset(("two-outputs", "files.out.count > 1", "two outputs")))
    run.after_ticks(2)
    broken = _ruleset(("two-outputs", "files.out.cuont > 0", "broken"))
    run.reload(broken)
    _until(lambda: "reload refused" in run.err(), "the refusal")
    lines = [ln for ln in run.err().splitlines() if ln.startswith("rulesmon: reload refused")]
    line_no = broken.splitlines().index("    when: files.out.cuont > 0") + 1
    assert len(lines) == 1 and f"r.yaml:{line_no}:" in lines[0], run.err()
    assert "Traceback" not in run.err()
    (tmp_path / "a.dat").write_text("x")
    (tmp_path / "b.dat").write_text("x")
    _until(lambda: "two outputs" in run.titles(), "the old rule's notification")
    assert run.stop() == 128 + signal.SIGTERM
    assert run.titles() == ["two outputs"]
    assert len(run.events("reload_refused")) == 1


def test_a_firing_alert_of_a_kept_rule_is_not_notified_again(
        tmp_path: Path, start: Callable[[str], Run]) -> None:
    """A rule that fires before the reload and still exists after it (its title changed)
    keeps its firing state: no second notification, while a rule added by the reload fires."""
    (tmp_path / "a.dat").write_text("x")
    run = start(_ruleset(("any-output", "files.out.count > 0", "fired")))
    _until(lambda: "fired" in run.titles(), "the first notification")
    run.reload(_ruleset(("any-output", "files.out.count > 0", "fired again?"),
                        ("added-later", "files.out.count > 0", "added")))
    _until(lambda: "added" in run.titles(), "the added rule's notification")
    run.after_ticks(2)
    _until(run.delivered_all, "the outbox to be delivered")
    assert run.stop() == 128 + signal.SIGTERM
    assert sorted(run.titles()) == ["added", "fired"]


def test_a_kept_rule_whose_new_condition_is_false_resolves_its_firing_alert(
        tmp_path: Path, start: Callable[[str], Run]) -> None:
    """A rule kept by name whose condition changed keeps its firing alert, and the new
    condition, false, resolves it on the next tick with one resolved message (as Prometheus
    keeps an alert's state by rule name and judges it by the new expression)."""
    (tmp_path / "a.dat").write_text("x")
    run = start(_ruleset(("any-output", "files.out.count > 0", "fired")))
    _until(lambda: "fired" in run.titles(), "the first notification")
    run.reload(_ruleset(("any-output", "files.out.count > 5", "fired")))
    _until(lambda: any(i.endswith("-resolve") for i in run.ids()), "the resolved message")
    assert run.stop() == 128 + signal.SIGTERM
    assert [i.rsplit("-", 1)[1] for i in run.ids()] == ["fire", "resolve"]


def test_a_removed_rules_alert_is_retired_without_a_resolved_message(
        tmp_path: Path, start: Callable[[str], Run]) -> None:
    """The firing alert of a rule the reload removes sends no resolved message (nor any
    other) and leaves no state behind; the reload event counts it as retired."""
    (tmp_path / "a.dat").write_text("x")
    run = start(_ruleset(("any-output", "files.out.count > 0", "fired"),
                         ("quiet", "files.out.count > 9", "quiet")))
    _until(lambda: "fired" in run.titles(), "the first notification")
    run.reload(_ruleset(("marker", "files.out.count > 0", "marker")))
    _until(lambda: "marker" in run.titles(), "the new rule's notification")
    run.after_ticks(2)
    _until(run.delivered_all, "the outbox to be delivered")
    assert run.stop() == 128 + signal.SIGTERM
    assert sorted(run.titles()) == ["fired", "marker"]
    assert not [i for i in run.ids() if i.endswith("-resolve")]
    assert _rows(run.db, "SELECT rule FROM alerts WHERE rule = 'any-output'") == []
    assert _rows(run.db, "SELECT count(*) FROM outbox WHERE rule = 'any-output'") == [(1,)]
    (_, _, body), = run.events("reload")
    assert "1 added, 2 removed" in body and "1 alerts of removed rules retired" in body


def test_a_moved_notify_target_gets_the_notifications_after_the_reload(
        tmp_path: Path, start: Callable[[str], Run]) -> None:
    """A reload that changes a target's URL restarts the delivery: what fires after it goes to
    the new URL, what was sent before went to the old one, and nothing is sent twice."""
    (tmp_path / "a.dat").write_text("x")
    run = start(_ruleset(("any-output", "files.out.count > 0", "before")))
    _until(lambda: "before" in run.titles(), "the first notification")
    moved = _ruleset(("any-output", "files.out.count > 0", "before"),
                     ("added-later", "files.out.count > 0", "after"))
    run.reload(moved.replace("${HOOK}", "${HOOK2}"))
    _until(lambda: "after" in run.titles(), "the added rule's notification")
    run.after_ticks(2)
    _until(run.delivered_all, "the outbox to be delivered")
    assert run.stop() == 128 + signal.SIGTERM
    assert sorted(run.paths()) == [("/hook", "before"), ("/moved", "after")]


def test_changed_jobs_wait_for_a_restart_while_the_rules_apply(
        tmp_path: Path, start: Callable[[str], Run]) -> None:
    """A reload that changes `jobs:` says "jobs changed: restart rulesmon to apply" and
    applies the rest: the changed rule fires over the jobs still watched."""
    (tmp_path / "a.dat").write_text("x")
    run = start(_ruleset(("any-output", "files.out.count > 3", "old")))
    run.after_ticks(2)
    extra = "  more:\n    files:\n      logs: {glob: '*.log'}\n"
    run.reload(_ruleset(("any-output", "files.out.count > 0", "new"), jobs_extra=extra))
    _until(lambda: "new" in run.titles(), "the changed rule's notification")
    assert run.stop() == 128 + signal.SIGTERM
    assert "jobs changed: restart rulesmon to apply" in run.err()
    (_, _, body), = run.events("reload")
    assert "jobs changed: restart rulesmon to apply" in body


def _loaded(tmp_path: Path, title: str) -> Any:
    from rulesmon.config.loader import load

    path = tmp_path / "r.yaml"
    path.write_text(_ruleset(("any-output", "files.out.count > 0", title)).replace(
        "notify:\n  hook: ${HOOK}\n", "").replace("    notify: hook\n", ""), encoding="utf-8")
    return load(path)


def test_sighups_during_a_tick_neither_cut_it_nor_reload_more_than_once(
        tmp_path: Path) -> None:
    """Three SIGHUPs sent in the middle of a tick let it run to its end and make one reload,
    applied before the next tick; SIGHUP is ignored once the run is over."""
    from rulesmon.engine import Engine, TickReport
    from rulesmon.testing import NullLog

    previous = signal.getsignal(signal.SIGHUP)
    seen: list[str] = []
    reloads: list[int] = []

    def observer(report: TickReport) -> None:
        if report.tick == 1:
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGHUP)  # handled at once, on this thread
            seen.append("tick 1 went on")

    engine = Engine(_loaded(tmp_path, "old"), state_path=tmp_path / "s.db", log=NullLog(),
                    observers=[observer])

    def load_again() -> Any:
        reloads.append(engine.ticks)
        return _loaded(tmp_path, "new")

    engine.reload_from = load_again
    try:
        assert engine.run(max_ticks=3) == 0
        assert seen == ["tick 1 went on"] and reloads == [1]
        assert engine.rules_by_name["any-output"].title == "new"
        os.kill(os.getpid(), signal.SIGHUP)  # after the run: ignored, not the default's kill
        assert reloads == [1]
    finally:
        engine.close()
        signal.signal(signal.SIGHUP, previous)


HANGUP_RUN = """\
import os, signal, sys
if sys.argv[1] == "nohup":
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
os.execv(sys.executable, [sys.executable, "-m", "rulesmon", *sys.argv[2:]])
"""


@pytest.mark.parametrize("mode", ["terminal", "nohup"])
def test_closing_the_terminal_ends_the_run_unless_started_under_nohup(
        tmp_path: Path, mode: str) -> None:
    """A SIGHUP that comes with the loss of the controlling terminal (its window closed) ends
    the run as a signal does (129), not a reload; under nohup the run keeps going, and a
    later `kill -HUP` still reloads."""
    import pty
    import select
    import threading

    (tmp_path / "r.yaml").write_text(_ruleset(("any-output", "files.out.count > 9", "old")),
                                     encoding="utf-8")
    db = tmp_path / "s.db"
    argv = [sys.executable, "-c", HANGUP_RUN, mode, "run", str(tmp_path / "r.yaml"),
            "--state", str(db)]
    env = {**os.environ, "HOOK": "json://127.0.0.1:9/hook"}
    pid, master = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        try:
            os.chdir(tmp_path)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    output: list[bytes] = []

    closing = threading.Event()

    def drain() -> None:  # a full pty would block the run's writes
        while not closing.is_set():  # never blocked in a read: that would hold the pty open
            if not select.select([master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            output.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    status: list[int] = []

    def ended() -> bool:
        if not status:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(os.waitstatus_to_exitcode(st))
        return bool(status)

    try:
        _until(lambda: bool(_rows(db, "SELECT ticks FROM runs WHERE ticks >= 2")),
               "two ticks")
        closing.set()
        reader.join(30)
        os.close(master)  # the terminal window closes: the kernel hangs up the session
        if mode == "terminal":
            _until(ended, "the run to end")
            assert status == [128 + signal.SIGHUP], b"".join(output)[-2000:]
            assert _rows(db, "SELECT exit_code FROM runs") == [(128 + signal.SIGHUP,)]
            return
        start = int(_rows(db, "SELECT max(ticks) FROM runs")[0][0])
        _until(lambda: int(_rows(db, "SELECT max(ticks) FROM runs")[0][0]) > start + 2,
               "more ticks after the hangup")
        assert not ended()
        os.kill(pid, signal.SIGHUP)
        _until(lambda: bool(_rows(db, "SELECT kind FROM events WHERE kind = 'reload'")),
               "a reload")
        os.kill(pid, signal.SIGTERM)
        _until(ended, "the run to end")
        assert status == [128 + signal.SIGTERM]
    finally:
        if not ended():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        closing.set()
        reader.join(30)


WORKER_JOB = """\
  train:
    local:
      command: ["{python}", "-c",
                "import os, time; open('launches', 'a').write(f'{{os.getpid()}}\\\\n');
                 time.sleep(300)"]
"""


def test_a_reload_keeps_the_launched_worker_and_launches_nothing_again(
        tmp_path: Path, start: Callable[[str], Run]) -> None:
    """A reload that changes only rules keeps the jobs' probes as they are: the worker
    launched at start goes on running, watched, and is never launched a second time."""
    job = WORKER_JOB.format(python=sys.executable)
    launches = tmp_path / "launches"

    def pids() -> list[int]:
        return [int(x) for x in launches.read_text().split()] if launches.exists() else []

    run = start(_ruleset(("worker-running", 'job.state == "RUNNING"', "old"), jobs_extra=job))
    try:
        _until(lambda: "old" in run.titles(), "the worker to run")
        run.reload(_ruleset(("worker-running", 'job.state == "RUNNING"', "old"),
                            ("worker-seen", 'job.state == "RUNNING"', "new"),
                            jobs_extra=job))
        _until(lambda: "new" in run.titles(), "the added rule's notification")
        run.after_ticks(2)
        assert len(pids()) == 1
        os.kill(pids()[0], 0)  # still running
        assert "restart rulesmon to apply" not in run.err()
        assert run.stop() == 128 + signal.SIGTERM
        assert sorted(run.titles()) == ["new", "old"]
    finally:
        for pid in pids():  # the run stops its worker; this only covers a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
