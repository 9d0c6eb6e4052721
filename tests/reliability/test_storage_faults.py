"""A full disk, a damaged or foreign state file, a folder that cannot be written: never a
traceback, never an orphaned worker, nothing already recorded lost.

The full disk is real: the file size limit of the running `rulesmon run` is lowered with
prlimit (as `ulimit -f` would at its start; CPython ignores SIGXFSZ, so a write past it fails
with EFBIG) and raised again to free the disk. A damaged page is real bytes overwritten in
the middle of a real database. Waits poll for what can be observed; deadlines bound a hang.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from rulesmon.history.recorder import Recorder
from rulesmon.store import StateDamaged, StateStore
from tests.reliability.conftest import HookReceiver, Procs, db_rows, wait_for

WORKER = """\
import os, sys, time
from pathlib import Path
Path(sys.argv[1], f"launched-{os.getpid()}").write_text("")
time.sleep(600)
"""

RULESET = """\
version: 1
name: faults
every: 0.2s
notify:
  hook: "{hook}"
jobs:
  train:
    local:
      command: "{python} {folder}/worker.py {folder}/launches"
      workers: 1
    files:
      flag: {{glob: "flag*"}}
rules:
  - name: flag-up
    when: files.flag.count > 0
    notify: hook
    title: 'flag up'
"""


class Run:
    """A real `rulesmon run` whose stderr is read as it comes (a pipe: no file size limit)."""

    def __init__(self, procs: Procs, folder: Path, *extra: str) -> None:
        self.proc = procs.spawn([sys.executable, "-m", "rulesmon", "run", "r.yaml", "--state",
                                 "state.db", *extra], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, cwd=folder)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", "replace"))

    def count(self, word: str) -> int:
        return sum(word in line for line in list(self.lines))

    def finish(self, timeout: float = 120.0) -> str:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return "".join(self.lines)

    def file_limit(self, size: int) -> None:
        """The disk is full past `size` bytes for this process (RLIM_INFINITY: freed)."""
        resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def _setup(tmp_path: Path, hook: str = "json://127.0.0.1:9/hook") -> Path:
    (tmp_path / "worker.py").write_text(WORKER, encoding="utf-8")
    (tmp_path / "launches").mkdir(exist_ok=True)
    (tmp_path / "r.yaml").write_text(RULESET.format(hook=hook, python=sys.executable,
                                                    folder=tmp_path), encoding="utf-8")
    return tmp_path / "state.db"


def _launched(tmp_path: Path) -> list[int]:
    return [int(p.name.split("-", 1)[1]) for p in (tmp_path / "launches").iterdir()]


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _ticks(db: Path) -> int:
    rows = db_rows(db, "SELECT max(ticks) FROM runs")
    return int(rows[0][0] or 0) if rows else 0


def test_full_disk_keeps_watching_and_writes_what_it_owes_once_freed(
        tmp_path: Path, procs: Procs, receiver: HookReceiver) -> None:
    """With the disk full the run goes on, says so once, and the notification owed meanwhile
    is recorded and delivered once the disk is freed; no traceback."""
    db = _setup(tmp_path, receiver.url())
    run = Run(procs, tmp_path)
    wait_for(lambda: _ticks(db) >= 3, what="three ticks written")
    run.file_limit(4096)  # every write of the state database now fails
    (tmp_path / "flag1").write_text("")
    wait_for(lambda: run.count("state_not_saved") == 1, what="the warning")
    assert run.proc.poll() is None
    assert not db_rows(db, "SELECT id FROM outbox")  # owed, in memory only
    assert receiver.accepted() == []
    run.file_limit(resource.RLIM_INFINITY)  # the disk is freed
    wait_for(lambda: any(r.title == "flag up" for r in receiver.accepted()),
             what="the owed notification delivered")
    wait_for(lambda: run.count("state_saved") >= 1, what="the state written again")
    run.proc.send_signal(signal.SIGTERM)
    text = run.finish()
    assert run.proc.returncode == 128 + signal.SIGTERM, text
    assert "Traceback" not in text
    assert run.count("state_not_saved") == 1, text  # said once, not every tick
    assert db_rows(db, "SELECT status FROM outbox") == [("delivered",)]
    assert db_rows(db, "SELECT count(*) FROM events WHERE rule = 'flag-up'")[0][0] >= 1


def test_message_sent_while_its_mark_cannot_be_written_is_not_sent_again(
        tmp_path: Path, procs: Procs, receiver: HookReceiver) -> None:
    """A message the service took while the disk was full is marked delivered once the disk
    is freed, and never sent twice; the delivery worker survives."""
    db = _setup(tmp_path, receiver.url())
    receiver.hold_next = True  # the first message stays in flight until released
    run = Run(procs, tmp_path)
    wait_for(lambda: _ticks(db) >= 2, what="two ticks written")
    (tmp_path / "flag1").write_text("")
    assert receiver.held.wait(120), "the message never reached the receiver"
    run.file_limit(4096)  # the disk fills while the service is answering
    receiver.release()
    wait_for(lambda: run.count("delivery_state_unavailable") >= 1, what="the mark failing")
    run.file_limit(resource.RLIM_INFINITY)
    wait_for(lambda: db_rows(db, "SELECT status FROM outbox") == [("delivered",)],
             what="the message marked delivered")
    run.proc.send_signal(signal.SIGTERM)
    text = run.finish()
    assert "Traceback" not in text and "delivery_worker_failed" not in text, text
    assert [r.title for r in receiver.accepted()] == ["flag up"]


def test_run_started_on_a_full_disk_is_refused_before_launching(tmp_path: Path) -> None:
    """A run whose state cannot be written at start (the disk full) is one line, exit 2, and
    launches nothing."""
    _setup(tmp_path)

    def full() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

    done = subprocess.run([sys.executable, "-m", "rulesmon", "run", "r.yaml", "--state",
                           "state.db"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, check=False, preexec_fn=full)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("rulesmon: state state.db cannot be written ("), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _launched(tmp_path) == []


def test_full_disk_at_sigterm_names_what_it_could_not_record(
        tmp_path: Path, procs: Procs) -> None:
    """A run ended while the disk is still full stops its worker, exits 143 without a
    traceback, and says which owed notification it could not record."""
    db = _setup(tmp_path)
    run = Run(procs, tmp_path)
    wait_for(lambda: _ticks(db) >= 3 and len(_launched(tmp_path)) == 1, what="the launch")
    run.file_limit(4096)
    (tmp_path / "flag1").write_text("")
    wait_for(lambda: run.count("state_not_saved") == 1, what="the warning")
    run.proc.send_signal(signal.SIGTERM)
    text = run.finish()
    assert run.proc.returncode == 128 + signal.SIGTERM, text
    assert "Traceback" not in text
    assert "state_not_saved_at_exit" in text and "flag up" in text
    assert "rulesmon: state" not in text  # the run was not ended by the fault
    wait_for(lambda: not _alive(_launched(tmp_path)[0]), what="the worker stopped")


def _corrupt_page(db: Path, table: str) -> None:
    """Overwrite the root page of `table` in the main file, while no tick can write: the
    running process then meets the damage on its next write of that table."""
    con = sqlite3.connect(str(db), timeout=60, isolation_level=None)
    try:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                           (table,)).fetchone()[0]
        deadline = time.monotonic() + 120
        while True:  # every page in the main file, the WAL empty, the writer held off
            assert time.monotonic() < deadline, "the WAL never emptied"
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.execute("BEGIN IMMEDIATE")
            if Path(f"{db}-wal").stat().st_size == 0:
                break
            con.execute("ROLLBACK")
        with open(db, "r+b") as fh:
            fh.seek((root - 1) * page_size)
            fh.write(b"\xa5" * page_size)
        # a write of our own changes the WAL, so the running process drops its cached pages
        con.execute("INSERT INTO meta VALUES ('poke', '1') ON CONFLICT(key) DO NOTHING")
        con.execute("COMMIT")
    finally:
        con.close()


def test_page_damaged_while_running_ends_as_on_sigterm(tmp_path: Path, procs: Procs) -> None:
    """A state page damaged under a running run ends it with exit 2 and one line naming the
    file and what to do, its worker stopped, not orphaned; no traceback."""
    db = _setup(tmp_path)
    run = Run(procs, tmp_path)
    wait_for(lambda: _ticks(db) >= 3 and len(_launched(tmp_path)) == 1, what="the launch")
    _corrupt_page(db, "runs")
    text = run.finish()
    assert run.proc.returncode == 2, text
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("rulesmon: state state.db is damaged"), text
    assert "mv state.db state.db.damaged" in last
    assert not _alive(_launched(tmp_path)[0])


def _refuses(tmp_path: Path, *, state: str = "state.db") -> str:
    done = subprocess.run([sys.executable, "-m", "rulesmon", "run", "r.yaml", "--state", state],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert _launched(tmp_path) == []
    return done.stderr


def test_damaged_page_at_start_is_refused_before_launching(tmp_path: Path) -> None:
    """A state file with a damaged page in the middle is refused at start (exit 2, one line
    naming it and what to do) before anything is launched."""
    db = _setup(tmp_path)
    con = sqlite3.connect(str(db))
    con.execute("CREATE TABLE filler (x TEXT)")
    con.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    con.commit()
    con.close()
    StateStore(db).close()  # a real rulesmon state file (the schema), filler in the middle
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(b"\x00\xff" * 2048)
    err = _refuses(tmp_path)
    assert err.startswith("rulesmon: state state.db is damaged"), err
    assert "mv state.db state.db.damaged" in err


def test_a_file_that_is_not_sqlite_is_refused_before_launching(tmp_path: Path) -> None:
    """A state file that is not a database is refused at start with one line, exit 2."""
    db = _setup(tmp_path)
    db.write_text("these are not the droids\n" * 400, encoding="utf-8")
    err = _refuses(tmp_path)
    assert "state.db" in err


def test_state_folder_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    """A state path under a plain file (no folder can be made there, even for root) is one
    line at start, exit 2, nothing launched."""
    _setup(tmp_path)
    (tmp_path / "plain").write_text("", encoding="utf-8")
    err = _refuses(tmp_path, state="plain/state.db")
    assert "state plain/state.db cannot be used: not a folder (plain)" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder modes: a 0555 folder is "
                    "writable for it (the folder-cannot-be-made test covers the path)")
def test_read_only_state_folder_is_refused(tmp_path: Path) -> None:
    """A read-only state folder is one line at start, exit 2, nothing launched."""
    _setup(tmp_path)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        err = _refuses(tmp_path, state="ro/state.db")
    finally:
        folder.chmod(0o755)
    assert "state ro/state.db cannot be used: permission denied" in err


# --- the writers, in this process --------------------------------------------------------


def _with_file_limit(size: int, work: Callable[[], Any]) -> Any:
    """Run `work` with this process's writes failing past `size` bytes (CPython ignores
    SIGXFSZ, so they fail with EFBIG), then restore the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        return work()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **_kw: self.events.append(event)


def _facts(state: str) -> dict[str, dict[str, Any]]:
    return {"train/0": {"job.source": "local", "job.id": "4242", "job.state": state,
                        "job.terminal": state == "COMPLETED"}}


def test_history_of_ticks_not_written_is_written_with_the_next(tmp_path: Path) -> None:
    """History rows of a tick whose commit failed are written, complete, with a later tick
    (the recorder takes back what it believed written)."""
    log = _Log()
    store = StateStore(tmp_path / "s.db", log=log)
    run_id = store.start_run("hist", time.time())
    rec = Recorder("hist", run_id, sample_every=60.0, retention=1e9, sample_retention=1e9)
    assert store.save_tick((), (), (), run_id, 1, 0,
                           history=rec.stage(1.0, _facts("PENDING"), {}))
    saved = _with_file_limit(4096, lambda: store.save_tick(
        (), (), (), run_id, 2, 0, history=rec.stage(2.0, _facts("RUNNING"), {})))
    assert saved is False
    assert log.events == ["state_not_saved"]
    assert store.save_tick((), (), (), run_id, 3, 0,
                           history=rec.stage(3.0, _facts("COMPLETED"), {}))
    assert log.events == ["state_not_saved", "state_saved"]
    store.close()
    con = sqlite3.connect(str(tmp_path / "s.db"))
    states = [s for (s,) in con.execute("SELECT state FROM job_states ORDER BY t")]
    jobs = list(con.execute("SELECT state FROM jobs"))
    ticks = con.execute("SELECT ticks FROM runs").fetchone()[0]
    con.close()
    assert states == ["PENDING", "RUNNING", "COMPLETED"]
    assert jobs == [("COMPLETED",)]
    assert ticks == 3


def test_damage_found_by_a_tick_is_state_damaged_not_sqlite3(tmp_path: Path) -> None:
    """A write that meets a damaged page raises StateDamaged with one line naming the file."""
    db = tmp_path / "s.db"
    store = StateStore(db)
    run_id = store.start_run("x", time.time())
    store.close()
    _corrupt_page(db, "runs")
    store = StateStore(db)
    with pytest.raises(StateDamaged, match=r"s\.db is damaged .* \.recover \|"):
        store.save_tick((), (), (), run_id, 1, 0)
    store.close()


def test_files_state_that_fills_up_falls_back_to_memory(tmp_path: Path, caplog: Any) -> None:
    """The files probe's own database failing mid-run (the disk full) is one warning, never
    an exception; what is known stays known in memory."""
    from rulesmon.probes.files import SeenStore

    seen = SeenStore(tmp_path / "state.files.db")
    seen.add("sim/-", "res", ["a.txt"])
    assert seen.load("sim/-", "res") == {"a.txt"}
    paths = [f"{i:04d}-{'x' * 200}.txt" for i in range(200)]
    with caplog.at_level("WARNING", logger="rulesmon.probes.files"):
        _with_file_limit(4096, lambda: seen.add("sim/-", "res", paths))
        seen.add("sim/-", "res", ["b.txt"])
    assert seen.load("sim/-", "res") is None  # memory only from now on: the probe's sets
    warnings = [r for r in caplog.records if "files_state_unavailable" in r.getMessage()]
    assert len(warnings) == 1
    seen.close()


def test_json_log_on_a_full_disk_is_said_once_not_a_traceback_per_line(
        tmp_path: Path, procs: Procs) -> None:
    """With `--log-json` on the full disk, the log file's failed writes are one line on
    stderr (and one more when writes work again), never logging's traceback per line."""
    db = _setup(tmp_path)
    run = Run(procs, tmp_path, "--log-json", "log.jsonl")
    wait_for(lambda: _ticks(db) >= 3, what="three ticks written")
    run.file_limit(1)  # the state database and the JSON log are both past it
    (tmp_path / "flag1").write_text("")
    wait_for(lambda: run.count("state_not_saved") == 1, what="the warning")
    wait_for(lambda: run.count("cannot write the JSON log") == 1, what="the log's failure")
    run.file_limit(resource.RLIM_INFINITY)
    wait_for(lambda: run.count("state_saved") >= 1, what="the state written again")
    wait_for(lambda: run.count("works again") == 1, what="the log's recovery")
    run.proc.send_signal(signal.SIGTERM)
    text = run.finish()
    assert "Traceback" not in text and "Logging error" not in text, text
    assert run.count("cannot write the JSON log") == 1, text
    assert '"event": "state_saved"' in (tmp_path / "log.jsonl").read_text(encoding="utf-8")


def test_silence_commands_on_a_foreign_state_are_one_line(tmp_path: Path) -> None:
    """`rulesmon silence add/list/remove` on a state file that is not SQLite say so in one
    line and exit 2, without a traceback."""
    _setup(tmp_path)
    (tmp_path / "state.db").write_text("not a database, only text\n" * 200, encoding="utf-8")
    for args in (["add", "--for", "1h"], ["list"], ["remove", "1"]):
        cmd = [sys.executable, "-m", "rulesmon", "silence", args[0], "r.yaml", *args[1:],
               "--state", "state.db"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                               check=False)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("rulesmon: state state.db is not an SQLite database")
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
