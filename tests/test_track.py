"""`rulesmon.track` (context manager, decorator), `rulesmon track -- CMD`, and the read API."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import rulesmon
from rulesmon.history import get_job, get_job_history, get_summary_statistics

from .conftest import run_cli


def _spin(seconds: float) -> int:
    """Burn CPU for about `seconds`."""
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def test_context_manager_records_cpu_memory_duration_and_params(tmp_path: Path) -> None:
    """A block tracked with `with rulesmon.track(...)` is one successful job with its CPU
    time, peak memory (including memory allocated just before the end), duration and
    parameters."""
    db = tmp_path / "h.db"
    with rulesmon.track(tool="fenicsx", script="poisson.py", params={"mesh_size": 64},
                        db=db) as t:
        _spin(0.3)
        block = bytearray(60 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])
    assert t.result is not None and t.result["status"] == "success"
    jobs = get_job_history(db=db)
    assert len(jobs) == 1
    job = jobs[0]
    assert (job["tool"], job["script"], job["source"], job["status"]) == \
        ("fenicsx", "poisson.py", "track", "success")
    assert job["params"] == {"mesh_size": 64}
    usage = job["resource_usage"]
    assert usage["cpu_user_seconds"] + usage["cpu_system_seconds"] >= 0.25
    assert usage["memory_peak_bytes"] >= 60 * 1024 * 1024
    assert job["duration_seconds"] >= 0.25
    assert job["id"] == t.uid
    del block


def test_exceptions_decide_the_status_and_still_propagate(tmp_path: Path) -> None:
    """An exception is recorded as error (TimeoutError as timeout, SystemExit(2) as failed
    with return code 2) and reaches the caller unchanged."""
    db = tmp_path / "h.db"
    with pytest.raises(ValueError, match="diverged"), rulesmon.track(tool="solver", db=db):
        raise ValueError("diverged at step 7")
    with pytest.raises(TimeoutError), rulesmon.track(tool="solver", db=db):
        raise TimeoutError("wall time")
    with pytest.raises(SystemExit), rulesmon.track(tool="solver", db=db):
        sys.exit(2)
    jobs = list(reversed(get_job_history(db=db)))
    assert [(j["status"], j["returncode"]) for j in jobs] == \
        [("error", None), ("timeout", None), ("failed", 2)]
    assert jobs[0]["error"] == "ValueError: diverged at step 7"


def test_set_status_records_a_failure_without_an_exception(tmp_path: Path) -> None:
    """`tracker.set_status("failed", returncode, error)` is what the record says."""
    db = tmp_path / "h.db"
    with rulesmon.track(tool="lammps", db=db) as t:
        t.set_status("failed", returncode=1, error="lost atoms")
    job = get_job_history(db=db)[0]
    assert (job["status"], job["returncode"], job["error"]) == ("failed", 1, "lost atoms")
    with pytest.raises(ValueError, match="status must be one of"):
        t.set_status("fine")


def test_decorator_records_each_call(tmp_path: Path) -> None:
    """`@rulesmon.track(...)` and bare `@rulesmon.track` record every call as its own job."""
    db = tmp_path / "h.db"

    @rulesmon.track(tool="sim", db=db)
    def simulate(n: int) -> int:
        return n * 2

    assert [simulate(1), simulate(2)] == [2, 4]
    os.environ["RULESMON_HISTORY"] = str(db)
    try:
        @rulesmon.track
        def bare() -> str:
            return "ok"

        assert bare() == "ok"
    finally:
        del os.environ["RULESMON_HISTORY"]
    jobs = get_job_history(db=db)
    assert len({j["id"] for j in jobs}) == 3
    assert sorted(j["tool"] for j in jobs) == \
        ["sim", "sim", "test_decorator_records_each_call.<locals>.bare"]


def test_read_api_filters_and_summarises_by_source(tmp_path: Path) -> None:
    """get_job_history filters like the views, get_job finds a job by id prefix, and
    get_summary_statistics gives the success rate and per-source and per-tool groups."""
    db = tmp_path / "h.db"
    for tool, ok in (("a", True), ("a", False), ("b", True)):
        with rulesmon.track(tool=tool, db=db) as t:
            if not ok:
                t.set_status("failed", 1)
    assert len(get_job_history(limit=2, db=db)) == 2
    assert [j["tool"] for j in get_job_history(status="failed", db=db)] == ["a"]
    assert len(get_job_history(tool="a", since="1h", db=db)) == 2
    first = get_job_history(db=db)[0]
    found = get_job(first["id"][:10], db=db)
    assert found is not None and found["id"] == first["id"]
    assert found["timeline"][0]["state"] == "RUNNING"
    assert get_job("nothing-like-it", db=db) is None
    stats = get_summary_statistics(db=db)
    assert (stats["total_jobs"], stats["successful"], stats["success_rate"]) == (3, 2, 66.67)
    assert stats["by_source"]["track"]["jobs"] == 3
    assert stats["by_tool"]["a"]["failed"] == 1


def test_keystone_style_scripts_work_unchanged(tmp_path: Path) -> None:
    """Code written against the Keystone job monitor runs as is: `get_job_stats(task_id)`,
    `stats["by_tool"][tool]["total_duration"] / ["count"]`, `success_rate` and
    `total_cpu_time_seconds`, and the CLI's `job-history`, `job-stats`, `job-details`."""
    db = tmp_path / "h.db"
    for task_id, tool in (("task-1", "fenicsx"), ("task-2", "fenicsx"), ("task-3", "lammps")):
        with rulesmon.track(tool=tool, script="poisson.py", task_id=task_id, db=db):
            _spin(0.05)
    job = rulesmon.get_job_stats("task-2", db=db)
    assert job is not None and (job["tool"], job["status"]) == ("fenicsx", "success")
    stats = get_summary_statistics(db=db)
    averages = {tool: s["total_duration"] / s["count"] for tool, s in stats["by_tool"].items()}
    assert set(averages) == {"fenicsx", "lammps"} and all(a > 0 for a in averages.values())
    assert stats["by_tool"]["fenicsx"]["count"] == 2
    assert stats["by_tool"]["fenicsx"]["total_duration"] == \
        stats["by_tool"]["fenicsx"]["total_duration_seconds"]
    assert stats["success_rate"] == 100.0 and stats["total_cpu_time_seconds"] > 0
    for alias, plain in ((("job-history", "--db", str(db)), ("history", "--db", str(db))),
                         (("job-stats", "--db", str(db)), ("stats", "--db", str(db))),
                         (("job-details", "task-3", "--db", str(db)),
                          ("show", "task-3", "--db", str(db)))):
        aliased = run_cli(*alias, "--format", "json")
        assert aliased.returncode == 0, aliased.stderr
        assert json.loads(aliased.stdout)
        assert aliased.stdout == run_cli(*plain, "--format", "json").stdout
    assert "job-history" not in run_cli("--help").stdout  # aliases stay out of the way


def _age(db: Path, days: float) -> None:
    """Move every record `days` into the past and forget when retention last ran."""
    con = sqlite3.connect(str(db))
    with con:
        con.execute("UPDATE jobs SET first_seen = first_seen - ?, last_seen = last_seen - ?",
                    (days * 86400, days * 86400))
        con.execute("DELETE FROM meta WHERE key = 'history_pruned_at'")
    con.close()


def test_tracked_retention_is_configurable(tmp_path: Path, monkeypatch: Any,
                                           caplog: Any) -> None:
    """Tracked records older than `retention=` (or $RULESMON_HISTORY_RETENTION) are pruned
    by the next tracked write; a bad environment value is logged and the year kept; a bad
    argument is refused at once."""
    caplog.set_level(logging.WARNING, logger="rulesmon.track")  # whatever the root's level
    db = tmp_path / "h.db"
    with rulesmon.track(tool="old", db=db):
        pass
    _age(db, 100)
    monkeypatch.setenv("RULESMON_HISTORY_RETENTION", "soon")
    with rulesmon.track(tool="mid", db=db):
        pass
    assert "history_retention_invalid" in caplog.text
    assert sorted(j["tool"] for j in get_job_history(db=db)) == ["mid", "old"]  # a year
    _age(db, 1)
    monkeypatch.setenv("RULESMON_HISTORY_RETENTION", "100d")
    with rulesmon.track(tool="new", db=db):
        pass
    assert sorted(j["tool"] for j in get_job_history(db=db)) == ["mid", "new"]
    _age(db, 30)
    monkeypatch.delenv("RULESMON_HISTORY_RETENTION")
    assert _track(db, "-q", "--retention", "10d", "--", "true").returncode == 0
    assert [j["tool"] for j in get_job_history(db=db)] == ["true"]
    with pytest.raises(ValueError, match="retention must be more than 0"):
        rulesmon.track(tool="x", db=db, retention=0)
    refused = _track(db, "--retention", "0s", "--", "true")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


def test_reading_a_missing_history_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    """The read API answers an empty history when no database exists yet, without making one."""
    db = tmp_path / "never.db"
    assert get_job_history(db=db) == []
    assert get_summary_statistics(db=db)["total_jobs"] == 0
    assert not db.exists()


def test_import_stays_light_and_track_is_callable_either_way() -> None:
    """`import rulesmon` loads neither the tracker nor sqlite3, and `rulesmon.track(...)`
    works before and after `import rulesmon.track`."""
    code = ("import sys, rulesmon; print('rulesmon.track' in sys.modules, 'sqlite3' in "
            "sys.modules); import rulesmon.track as m; "
            "print(callable(rulesmon.track), type(rulesmon.track(tool='x')).__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False", "True", "Tracking"]


def test_work_whose_process_was_killed_is_marked_error(tmp_path: Path) -> None:
    """A tracked block in a process killed with SIGKILL (as the OOM killer does) reads as
    running while the process lives and as error, "process died without reporting", once it
    is gone, in the read API, the views and the statistics."""
    db = tmp_path / "h.db"
    ready = tmp_path / "ready"
    code = ("import pathlib, time, rulesmon\n"
            f"with rulesmon.track(tool='sim', db={str(db)!r}):\n"
            f"    pathlib.Path({str(ready)!r}).write_text('up')\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for(ready)
        assert get_job_history(db=db)[0]["status"] == "running"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    listed = run_cli("history", "--db", str(db), "--format", "json")
    job = json.loads(listed.stdout)[0]
    assert (job["status"], job["state"], job["error"]) == \
        ("error", "ERROR", "process died without reporting")
    shown = get_job(job["id"], db=db)
    assert shown is not None and shown["details"]["pid"] == proc.pid
    assert shown["node"] == socket.gethostname()
    assert [e["state"] for e in shown["timeline"]] == ["RUNNING", "ERROR"]
    stats = get_summary_statistics(db=db)
    assert (stats["active"], stats["failed"], stats["by_status"]) == (0, 1, {"error": 1})


def test_a_killed_track_command_stays_running_while_its_command_runs(tmp_path: Path) -> None:
    """When `rulesmon track` itself is killed, the record stays running as long as the
    command it started still runs, and becomes error once that ends too."""
    db = tmp_path / "h.db"
    proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "track", "-q", "--db", str(db),
                             "--", "sleep", "60"], stdin=subprocess.DEVNULL)
    command_pid = None
    try:
        deadline = time.monotonic() + 20
        while command_pid is None:
            assert time.monotonic() < deadline, "the record never appeared"
            time.sleep(0.05)
            jobs = get_job_history(db=db) if db.exists() else []
            if jobs:
                found = get_job(jobs[0]["id"], db=db)
                command_pid = found["details"].get("command_pid") if found else None
        proc.kill()
        proc.wait(timeout=30)
        assert get_job_history(db=db)[0]["status"] == "running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if command_pid is not None:
            os.kill(command_pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{command_pid}").exists():  # reaped by init once it is killed
        assert time.monotonic() < deadline, "sleep did not end"
        time.sleep(0.05)
    job = get_job_history(db=db)[0]
    assert (job["status"], job["error"]) == ("error", "process died without reporting")


def test_a_reused_pid_does_not_keep_a_dead_record_running(tmp_path: Path) -> None:
    """A record whose pid now belongs to another process (a different start time) is closed
    as error on the next tracked write, while the work of live processes stays running."""
    db = tmp_path / "h.db"
    code = ("import os, rulesmon\n"
            f"rulesmon.track(tool='old', db={str(db)!r}).start()\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    con = sqlite3.connect(str(db))
    with con:  # the dead writer's pid now names this (live, later-started) test process
        details = json.loads(con.execute("SELECT details FROM jobs").fetchone()[0])
        details["pid"] = os.getpid()
        con.execute("UPDATE jobs SET details = ?", (json.dumps(details),))
    con.close()
    with rulesmon.track(tool="new", db=db) as live:
        by_tool = {j["tool"]: j["status"] for j in get_job_history(db=db)}
        assert by_tool == {"old": "error", "new": "running"}
    assert live.result is not None and live.result["status"] == "success"


def test_this_process_is_judged_alive_without_a_process_lookup(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A record of this very process (a solo or threaded Celery worker's own) is alive
    without asking the system, once its start time is known; the same pid with another
    start time is a dead process whose pid was reused."""
    import psutil

    from rulesmon.history import liveness

    me = liveness.identity(os.getpid())
    assert liveness.alive(me["pid"], me["pid_started"])  # reads this process's start once

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a process was looked up")

    monkeypatch.setattr(psutil, "Process", refuse)
    assert liveness.alive(me["pid"], me["pid_started"])
    assert not liveness.alive(me["pid"], me["pid_started"] - 100.0)


def test_a_process_found_gone_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a (pid, start time) is found gone it is not looked up again: a dashboard that
    may not close the record asks about it on every page otherwise."""
    import psutil

    from rulesmon.history import liveness

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = liveness.identity(proc.pid)["pid_started"]
    proc.wait()
    lookups: list[int] = []
    real = psutil.Process

    def counted(pid: int) -> Any:
        lookups.append(pid)
        return real(pid)

    monkeypatch.setattr(psutil, "Process", counted)
    assert not liveness.alive(proc.pid, started)
    assert not liveness.alive(proc.pid, started)
    assert lookups == [proc.pid]


def test_only_the_start_of_tracked_work_looks_for_dead_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dead records are looked for when tracked work starts, not again when it ends: each
    look costs a process lookup per running record, under the write lock."""
    from rulesmon.history import liveness

    looks: list[str | None] = []
    real = liveness.dead

    def counted(db: sqlite3.Connection, here: str | None = None) -> list[int]:
        looks.append(here)
        return real(db, here)

    monkeypatch.setattr(liveness, "dead", counted)
    with rulesmon.track(tool="sim", db=tmp_path / "h.db") as work:
        assert len(looks) == 1
    assert len(looks) == 1
    assert work.result is not None and work.result["status"] == "success"


def test_simulation_history_example_records_and_reads_back(tmp_path: Path) -> None:
    """examples/simulation-history/simulate.py records six runs (a block, a failed solver,
    an exception, three decorated calls) that its own summary and the README's commands
    (history --status, stats, show by id prefix) read back."""
    db = tmp_path / "runs.db"
    script = Path(__file__).parent.parent / "examples" / "simulation-history" / "simulate.py"
    ran = subprocess.run([sys.executable, str(script), "--db", str(db)], capture_output=True,
                         text=True, check=False, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "6 runs, success rate 66.67%" in ran.stdout
    assert "fenicsx: 4 runs" in ran.stdout and "lammps: 1 run," in ran.stdout
    bad = json.loads(run_cli("history", "--db", str(db), "--status", "failed,error",
                             "--format", "json").stdout)
    assert sorted((j["tool"], j["status"]) for j in bad) == [("lammps", "failed"),
                                                             ("openfoam", "error")]
    stats = json.loads(run_cli("stats", "--db", str(db), "--format", "json").stdout)
    assert stats["by_tool"]["fenicsx"]["count"] == 4
    shown = run_cli("show", bad[0]["id"][:8], "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert "Parameters:" in shown.stdout and "CPU Utilized:" in shown.stdout


# --- rulesmon track -- CMD -----------------------------------------------------------------


def _track(db: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_cli("track", "--db", str(db), *args, **kw)


def test_track_command_passes_the_exit_code_and_records_it(tmp_path: Path) -> None:
    """`rulesmon track -- CMD` exits with the command's status and records it as failed with
    its return code, CPU time and peak memory (from wait4)."""
    db = tmp_path / "h.db"
    script = tmp_path / "work.py"
    script.write_text("import sys\nb = bytearray(80 * 1024 * 1024)\nb[::4096] = b'x' * "
                      "len(b[::4096])\nsys.exit(3)\n", encoding="utf-8")
    result = _track(db, "--param", "size=80", "--", sys.executable, str(script))
    assert result.returncode == 3, result.stderr
    assert "failed" in result.stderr and "exit 3" in result.stderr
    job = get_job_history(db=db)[0]
    assert (job["source"], job["status"], job["returncode"], job["script"]) == \
        ("command", "failed", 3, str(script))
    assert job["params"]["size"] == "80"
    assert job["params"]["argv"] == [sys.executable, str(script)]
    assert job["resource_usage"]["memory_peak_bytes"] >= 80 * 1024 * 1024
    assert job["resource_usage"]["cpu_total_seconds"] > 0
    ok = _track(db, "-q", "--", sys.executable, "-c", "print('hello')")
    assert (ok.returncode, ok.stdout.strip(), ok.stderr) == (0, "hello", "")


def test_track_command_peak_memory_is_the_commands_not_rulesmons(tmp_path: Path) -> None:
    """A small command tracked from a process holding 200 MB is recorded with its own peak
    (a few MB, as GNU time reports for `sleep`), not the memory it inherited at fork; a
    command that allocates 80 MB is still recorded with at least that."""
    db = tmp_path / "h.db"
    code = (
        "import sys\n"
        "from rulesmon.track import run_command\n"
        "held = bytearray(200 << 20)\n"
        "held[::4096] = b'x' * len(held[::4096])\n"
        f"sys.exit(run_command(['sleep', '0.5'], db={str(db)!r}, quiet=True))\n")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    small = get_job_history(db=db)[0]["resource_usage"]["memory_peak_bytes"]
    assert small is not None and 0 < small < 16 << 20
    assert _track(db, "-q", "--", "sleep", "0.5").returncode == 0
    cli = get_job_history(db=db)[0]["resource_usage"]["memory_peak_bytes"]
    assert cli is not None and 0 < cli < 16 << 20
    big = "b = bytearray(80 << 20); b[::4096] = b'x' * len(b[::4096])"
    assert _track(db, "-q", "--", sys.executable, "-c", big).returncode == 0
    assert get_job_history(db=db)[0]["resource_usage"]["memory_peak_bytes"] >= 80 << 20


def test_a_parent_mark_read_a_few_pages_low_does_not_give_the_command_its_memory(
        tmp_path: Path) -> None:
    """A `sleep` tracked from a process holding 200 MB is recorded with its own few MB even
    when rulesmon's own high-water mark reads a few pages below what the kernel counted for
    the fork at exec (the kernel's per-CPU RSS counters, which made this flaky under load)."""
    db = tmp_path / "h.db"
    code = (
        "import sys\n"
        "import rulesmon.track as track\n"
        "real = track._high_water\n"
        "track._high_water = lambda: real() - (64 << 10)  # counters 16 pages behind\n"
        "held = bytearray(200 << 20)\n"
        "held[::4096] = b'x' * len(held[::4096])\n"
        f"sys.exit(track.run_command(['sleep', '0.5'], db={str(db)!r}, quiet=True))\n")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    small = get_job_history(db=db)[0]["resource_usage"]["memory_peak_bytes"]
    assert small is not None and 0 < small < 16 << 20


def test_a_command_that_never_starts_has_no_cpu_or_memory(tmp_path: Path) -> None:
    """A tracked command that cannot be executed is recorded with CPU time and peak memory
    unknown, not those of the rulesmon process that tried to start it."""
    db = tmp_path / "h.db"
    assert _track(db, "-q", "--", "/nonexistent").returncode == 127
    usage = get_job_history(db=db)[0]["resource_usage"]
    assert usage["memory_peak_bytes"] is None
    assert usage["cpu_total_seconds"] is None and usage["cpu_user_seconds"] is None


def test_track_command_that_cannot_start_is_recorded(tmp_path: Path) -> None:
    """A command that does not exist exits 127 with one line and an error record."""
    db = tmp_path / "h.db"
    result = _track(db, "--", "no-such-program-xyz", "--flag")
    assert result.returncode == 127
    assert result.stderr.strip().startswith("rulesmon: cannot run no-such-program-xyz")
    job = get_job_history(db=db)[0]
    assert (job["status"], job["returncode"]) == ("error", 127)


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path} never appeared")
        time.sleep(0.05)


def test_track_command_forwards_signals(tmp_path: Path) -> None:
    """SIGTERM sent to `rulesmon track` reaches the command: one that handles it exits with
    its own code, one that does not dies and is recorded as cancelled with exit 143."""
    db = tmp_path / "h.db"
    ready, got = tmp_path / "ready", tmp_path / "got"
    handler = (
        "import signal, sys, time, pathlib\n"
        "def on(n, f):\n"
        f"    pathlib.Path({str(got)!r}).write_text(str(n)); sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, on)\n"
        f"pathlib.Path({str(ready)!r}).write_text('up')\n"
        "time.sleep(60)\n")
    plain = f"import time, pathlib\npathlib.Path({str(ready)!r}).write_text('up')\ntime.sleep(60)\n"
    for code, expect_exit, expect_status in ((handler, 7, "failed"), (plain, 143, "cancelled")):
        ready.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "track", "-q", "--db",
                                 str(db), "--", sys.executable, "-c", code],
                                stdin=subprocess.DEVNULL)
        try:
            _wait_for(ready)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == expect_exit
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        job = get_job_history(limit=1, db=db)[0]
        assert job["status"] == expect_status
    assert got.read_text() == str(int(signal.SIGTERM))
    assert get_job_history(limit=1, db=db)[0]["signal"] == signal.SIGTERM


def test_track_command_timeout(tmp_path: Path) -> None:
    """--timeout stops a command that runs too long and records it as timeout."""
    db = tmp_path / "h.db"
    result = _track(db, "--timeout", "1s", "--", sys.executable, "-c",
                    "import time; time.sleep(60)", timeout=60)
    assert result.returncode == 143
    job = get_job_history(db=db)[0]
    assert job["status"] == "timeout"
    assert job["error"].startswith("timed out after 1s")


def test_track_command_shows_up_in_the_views(tmp_path: Path) -> None:
    """A tracked command is listed by `rulesmon history --db` and shown by `rulesmon show`."""
    db = tmp_path / "h.db"
    assert _track(db, "-q", "--tool", "lammps", "--id", "run-0042", "--", sys.executable,
                  "-c", "pass").returncode == 0
    listed = run_cli("history", "--db", str(db))
    assert "lammps" in listed.stdout and "success" in listed.stdout
    shown = run_cli("show", "run-0042", "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert "Job run-0042" in shown.stdout and "Tool:         lammps" in shown.stdout
    assert _track(db, "-q", "--id", "run-0043", "--", sys.executable, "-c", "pass"
                  ).returncode == 0
    ambiguous = run_cli("show", "run-004", "--db", str(db))
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.strip() == \
        "rulesmon: run-004 matches several jobs (run-0042, run-0043): give more of the id"


def test_ctrl_c_in_a_terminal_reaches_the_command_once(tmp_path: Path) -> None:
    """In a terminal, Ctrl-C reaches the command exactly once (it shares rulesmon's process
    group) and is not ignored by it; a command it ends is recorded as cancelled, exit 130."""
    import fcntl
    import pty
    import termios

    db = tmp_path / "h.db"
    ready, hits = tmp_path / "ready", tmp_path / "hits"
    counting = (  # counts the SIGINTs it gets for a second, then exits with that count
        "import signal, sys, time, pathlib\n"
        "got = []\n"
        "signal.signal(signal.SIGINT, lambda n, f: got.append(n))\n"
        f"pathlib.Path({str(ready)!r}).write_text('up')\n"
        "while not got: time.sleep(0.01)\n"
        "time.sleep(1.0)\n"
        f"pathlib.Path({str(hits)!r}).write_text(str(len(got)))\n"
        "sys.exit(len(got))\n")
    plain = f"import time, pathlib\npathlib.Path({str(ready)!r}).write_text('up')\ntime.sleep(60)\n"

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    for code, expect in ((counting, 1), (plain, 130)):
        ready.unlink(missing_ok=True)
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "track", "-q", "--db",
                                 str(db), "--", sys.executable, "-c", code],
                                stdin=slave, stdout=slave, stderr=slave,
                                preexec_fn=controlling_terminal)  # noqa: PLW1509
        os.close(slave)
        try:
            _wait_for(ready)
            os.write(master, b"\x03")
            assert proc.wait(timeout=30) == expect
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
    assert hits.read_text() == "1"
    job = get_job_history(db=db)[0]
    assert (job["status"], job["signal"]) == ("cancelled", signal.SIGINT)
