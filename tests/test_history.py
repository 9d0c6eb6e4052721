"""History written by real engine runs and read back by `rulesmon history / stats / show`."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.engine import Engine
from rulesmon.history import queries
from rulesmon.history.rows import status_of
from rulesmon.testing import NullLog

from .conftest import run_cli
from .receiver import Receiver

WORKER = str(Path(__file__).parent / "fixtures" / "local" / "worker.py")

RULESET = """\
version: 1
name: hist
every: 0.2s
notify:
  hook: "${HOOK}"
jobs:
  train:
    local:
      command: ["PYTHON", "WORKER", "--worker", "{{ worker }}", "--items", "12",
                "--sleep", "0.1", "--exit", "{{ 3 if worker == 1 else 0 }}"]
      workers: 3
      stdout: "logs/w{{ worker }}.log"
    logs:
      - path: "logs/w{{ worker }}.log"
        preset: python-logging
        tail: 5
    progress: {done: log.done, total: log.total}
rules:
  - name: crashed
    when: job.terminal and job.exit_code != 0
    notify: hook
    message: "{{ job.name }} exited {{ job.exit_code }}"
"""


def _cli_json(*args: str, cwd: Path) -> Any:
    result = run_cli(*args, "--format", "json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Any]]:
    """One real `rulesmon run` of three local workers, worker 1 exiting 3, with a rule that
    notifies a local receiver."""
    tmp = tmp_path_factory.mktemp("hist")
    ruleset = tmp / "hist.yaml"
    ruleset.write_text(RULESET.replace("PYTHON", sys.executable).replace("WORKER", WORKER),
                       encoding="utf-8")
    with Receiver() as rx:
        result = run_cli("run", str(ruleset), cwd=tmp,
                         env=dict(os.environ, HOOK=rx.url()), timeout=90)
        received = list(rx.received)
    assert result.returncode == 1, result.stderr
    return tmp, ruleset, received


def test_history_lists_every_job_of_the_run_with_its_outcome(recorded: Any) -> None:
    """`rulesmon history RULESET` lists the three workers newest first, with success or
    failed, the exit code, duration and CPU time of each."""
    tmp, ruleset, _ = recorded
    jobs = _cli_json("history", str(ruleset), cwd=tmp)
    assert len(jobs) == 3
    by_instance = {j["instance"]: j for j in jobs}
    assert sorted(by_instance) == ["train/0", "train/1", "train/2"]
    failed = by_instance["train/1"]
    assert (failed["status"], failed["returncode"], failed["state"]) == ("failed", 3, "FAILED")
    assert {by_instance[k]["status"] for k in ("train/0", "train/2")} == {"success"}
    for job in jobs:
        assert job["source"] == "local" and job["tool"] == "train" and job["ruleset"] == "hist"
        assert job["duration_seconds"] > 1.0
        assert job["resource_usage"]["cpu_total_seconds"] > 0
        assert job["resource_usage"]["memory_peak_bytes"] > 1_000_000
        assert job["end_time"] > job["start_time"]
        assert len(job["id"]) == 32


def test_history_filters_by_status_job_source_and_since(recorded: Any) -> None:
    """--status, --job (prefix, instance or glob), --source and --since narrow the list."""
    tmp, ruleset, _ = recorded
    failed = _cli_json("history", str(ruleset), "--status", "failed", cwd=tmp)
    assert [j["instance"] for j in failed] == ["train/1"]
    assert len(_cli_json("history", str(ruleset), "--status", "failed,success", cwd=tmp)) == 3
    prefix = failed[0]["id"][:8]
    assert [j["instance"] for j in _cli_json("history", str(ruleset), "--job", prefix,
                                             cwd=tmp)] == ["train/1"]
    assert len(_cli_json("history", str(ruleset), "--job", "train/*", cwd=tmp)) == 3
    assert _cli_json("history", str(ruleset), "--source", "slurm", cwd=tmp) == []
    assert len(_cli_json("history", str(ruleset), "--since", "1h", cwd=tmp)) == 3
    assert _cli_json("history", str(ruleset), "--since", "2999-01-01", cwd=tmp) == []
    assert len(_cli_json("history", str(ruleset), "--limit", "2", cwd=tmp)) == 2


def test_stats_count_outcomes_cpu_and_deliveries(recorded: Any) -> None:
    """`rulesmon stats` gives totals, the success rate, CPU and duration sums, per source and
    per tool, and the notification deliveries by target."""
    tmp, ruleset, received = recorded
    stats = _cli_json("stats", str(ruleset), cwd=tmp)
    assert (stats["total_jobs"], stats["finished"], stats["successful"], stats["failed"]) == \
        (3, 3, 2, 1)
    assert stats["success_rate"] == pytest.approx(66.67)
    assert stats["by_status"] == {"failed": 1, "success": 2}
    assert stats["total_cpu_time_seconds"] > 0
    assert stats["average_duration_seconds"] == pytest.approx(
        stats["total_duration_seconds"] / 3, abs=0.01)
    assert stats["by_source"]["local"]["jobs"] == 3
    assert stats["by_tool"]["train"]["successful"] == 2
    assert stats["by_partition"] == {}
    assert stats["notifications"]["by_target"]["hook"]["delivered"] == len(received) == 1


def test_show_has_timeline_samples_progress_alerts_and_log(recorded: Any) -> None:
    """`rulesmon show JOB` returns the failed worker's state changes, resource samples,
    progress series, the alert with its delivery, and the last log lines."""
    tmp, ruleset, _ = recorded
    job = _cli_json("show", "train/1", str(ruleset), cwd=tmp)
    assert job["status"] == "failed" and job["returncode"] == 3
    states = [e["state"] for e in job["timeline"]]
    assert states[-1] == "FAILED" and "RUNNING" in states
    first, last = job["samples"][0], job["samples"][-1]
    assert first["time"] == job["first_seen"] and first["memory_bytes"]
    assert last["memory_peak_bytes"] == job["resource_usage"]["memory_peak_bytes"]
    assert job["progress"][-1]["total"] == 12
    assert [p["done"] for p in job["progress"]] == sorted(p["done"] for p in job["progress"])
    fired = [a for a in job["alerts"] if a["kind"] == "fire"]
    assert [a["rule"] for a in fired] == ["crashed"]
    assert fired[0]["body"].endswith("exited 3")
    delivery = fired[0]["deliveries"][0]
    assert (delivery["target"], delivery["status"], delivery["attempts"]) == \
        ("hook", "delivered", 1)
    assert delivery["tries"][0]["ok"] is True
    assert job["log_tail"][-1] == "Processed 12/12 items"
    assert job["details"]["worker.index"] == 1


def test_show_table_reads_like_seff(recorded: Any) -> None:
    """The table form of `show` has seff's lines (CPU Utilized, CPU Efficiency, wall-clock
    time, Memory Utilized), the alert and its delivery, and the log lines."""
    tmp, ruleset, _ = recorded
    result = run_cli("show", "train/1", str(ruleset), cwd=tmp)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for line in ("Status:       FAILED", "State:        FAILED (exit code 3)", "CPU Utilized:",
                 "CPU Efficiency:", "core-walltime", "Job Wall-clock time:",
                 "Memory Utilized:", "crashed", "-> hook: delivered",
                 "Processed 12/12 items"):
        assert line in text, line


def test_tables_and_csv_render(recorded: Any) -> None:
    """The table views fit 80 columns and the CSV has one row per job with the JSON's keys."""
    tmp, ruleset, _ = recorded
    env = dict(os.environ, COLUMNS="80")
    table = run_cli("history", str(ruleset), cwd=tmp, env=env)
    assert table.returncode == 0, table.stderr
    assert "train/1" in table.stdout and "failed" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    stats = run_cli("stats", str(ruleset), cwd=tmp, env=env)
    assert "Success rate:   66.7%" in stats.stdout and "By tool" in stats.stdout
    result = run_cli("history", str(ruleset), "--format", "csv", cwd=tmp)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 3
    assert {r["status"] for r in rows} == {"success", "failed"}
    assert {"cpu_user_seconds", "memory_peak_mb", "duration_seconds"} <= set(rows[0])
    stats_csv = list(csv.DictReader(io.StringIO(run_cli(
        "stats", str(ruleset), "--format", "csv", cwd=tmp).stdout)))
    assert stats_csv[0]["group"] == "all" and stats_csv[0]["jobs"] == "3"


def test_views_explain_bad_input_in_one_line(recorded: Any, tmp_path: Path) -> None:
    """A missing database, an unknown job, an ambiguous id or a bad --since is one line on
    stderr and a non-zero exit, never a traceback."""
    tmp, ruleset, _ = recorded
    for args in (("history", "--db", str(tmp_path / "none.db")),
                 ("show", "nosuchjob", str(ruleset)),
                 ("history", str(ruleset), "--since", "last tuesday")):
        result = run_cli(*args, cwd=tmp)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) <= 3, result.stderr
    assert not (tmp_path / "none.db").exists()


def test_unknown_status_or_source_is_refused_with_a_suggestion(recorded: Any) -> None:
    """`--status faild` or `--source sluurm` is one line naming the value and the closest
    valid one, exit 1, instead of an empty list; the read API raises ValueError."""
    tmp, ruleset, _ = recorded
    for view, option, value, hint in (("history", "--status", "faild", "failed"),
                                      ("stats", "--source", "sluurm", "slurm"),
                                      ("history", "--status", "success,bogus", None)):
        result = run_cli(view, str(ruleset), option, value, cwd=tmp)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"rulesmon: {option}: unknown value")
        if hint:
            assert f'(did you mean "{hint}"?)' in lines[0]
    from rulesmon.history import get_job_history

    with pytest.raises(ValueError, match="unknown value 'runing'"):
        get_job_history(status="runing", db=tmp / ".rulesmon" / "hist.db")


def test_show_accepts_its_arguments_swapped(recorded: Any) -> None:
    """`rulesmon show RULESET JOB` shows the job as `show JOB RULESET` does, and a ruleset
    alone is told to name a job."""
    tmp, ruleset, _ = recorded
    swapped = run_cli("show", str(ruleset), "train/1", "--format", "json", cwd=tmp)
    assert swapped.returncode == 0, swapped.stderr
    assert json.loads(swapped.stdout) == _cli_json("show", "train/1", str(ruleset), cwd=tmp)
    alone = run_cli("show", str(ruleset), cwd=tmp)
    assert alone.returncode == 1
    assert alone.stderr.strip() == f"rulesmon: {ruleset} is a ruleset, not a job: " \
        f"rulesmon show JOB {ruleset}"


def test_limit_zero_lists_every_job(tmp_path: Path) -> None:
    """`--limit 0` lists all the jobs, past the default of 20."""
    import rulesmon

    db = tmp_path / "h.db"
    for _ in range(23):
        with rulesmon.track(tool="sim", db=db):
            pass
    assert len(_cli_json("history", "--db", str(db), cwd=tmp_path)) == 20
    assert len(_cli_json("history", "--db", str(db), "--limit", "0", cwd=tmp_path)) == 23


def test_history_table_shows_errors_and_cuts_names_before_figures(tmp_path: Path) -> None:
    """The history table has an ERROR column; at 60 columns a long job name is cut with an
    ellipsis while status, duration, CPU and memory stay whole, and every line fits."""
    import rulesmon

    db = tmp_path / "h.db"
    with pytest.raises(RuntimeError), rulesmon.track(
            tool="openfoam", script="a-very-long-simulation-script-name-for-the-mesh.py",
            db=db):
        raise RuntimeError("solver diverged at step 7")
    with rulesmon.track(tool="lammps", script="melt.in", db=db):
        pass
    jobs = _cli_json("history", "--db", str(db), cwd=tmp_path)
    figures = [(j["status"], j["resource_usage"]["memory_peak_mb"]) for j in jobs]
    wide = run_cli("history", "--db", str(db), cwd=tmp_path, env=dict(os.environ,
                                                                      COLUMNS="120"))
    assert "ERROR" in wide.stdout and "RuntimeError: solver diverged at step 7" in wide.stdout
    for columns in (60, 80):
        table = run_cli("history", "--db", str(db), cwd=tmp_path,
                        env=dict(os.environ, COLUMNS=str(columns))).stdout
        lines = table.splitlines()
        assert max(len(line.rstrip()) for line in lines) <= columns
        assert "openfoam a-very-long-simulation-script-name-for-the-mesh.py" not in table
        assert "openfoam a-very" in table and "…" in table
        for status, mb in figures:
            assert f" {status} " in table and f"{mb:.1f} MB" in table
        assert "lammps melt.in" in table
        assert "…" not in " ".join(line.split("openfoam")[0] for line in lines)


def test_stats_csv_has_maxima_gpu_hours_and_notifications(recorded: Any) -> None:
    """`stats --format csv` carries the longest duration, highest peak memory and GPU hours
    of every group, the notification total, and one row per notification target."""
    tmp, ruleset, _ = recorded
    stats = _cli_json("stats", str(ruleset), cwd=tmp)
    rows = list(csv.DictReader(io.StringIO(run_cli(
        "stats", str(ruleset), "--format", "csv", cwd=tmp).stdout)))
    first = rows[0]
    assert float(first["max_duration_seconds"]) == stats["max_duration_seconds"]
    assert float(first["memory_peak_max_mb"]) == stats["memory_peak_max_mb"]
    assert float(first["gpu_hours"]) == stats["gpu_hours"]
    assert first["notifications"] == "1"
    tool = next(r for r in rows if r["group"] == "tool")
    assert float(tool["max_duration_seconds"]) == \
        stats["by_tool"]["train"]["max_duration_seconds"]
    target = next(r for r in rows if r["group"] == "target")
    assert (target["key"], target["notifications"], target["notifications_delivered"]) == \
        ("hook", "1", "1")


def test_stats_notifications_follow_the_job_filters(recorded: Any) -> None:
    """Notification counts in `stats` cover only notifications about the jobs the filters
    select: the failed worker's alert counts for --status failed and --tool train, not for
    --status success or --source slurm."""
    tmp, ruleset, _ = recorded

    def notes(*args: str) -> int:
        return int(_cli_json("stats", str(ruleset), *args, cwd=tmp)["notifications"]["total"])

    assert notes() == notes("--status", "failed") == notes("--tool", "train") == 1
    assert notes("--status", "success") == notes("--source", "slurm") == 0
    assert notes("--tool", "other") == 0
    import shutil

    copy = tmp / "attempts.db"
    shutil.copy(tmp / ".rulesmon" / "hist.db", copy)
    con = queries.open_db(copy)
    try:  # a failed attempt before the delivery counts the same, filtered or not
        con.execute("INSERT INTO attempts SELECT seq, created, 0, 'HTTP 503' FROM outbox")
        everything = queries.summary(con)["notifications"]
        assert everything["by_target"]["hook"] == {"delivered": 1, "failed_attempts": 1}
        assert queries.summary(con, queries.Filters(status="failed,success"))[
            "notifications"] == everything
        assert queries.summary(con, queries.Filters(status="success"))["notifications"] == \
            {"total": 0, "by_target": {}}
    finally:
        con.close()


def _doc_json_blocks() -> list[Any]:
    text = (Path(__file__).parent.parent / "docs" / "history.md").read_text(encoding="utf-8")
    section = text.split("## JSON shapes", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block.split("```", 1)[0]) for block in section.split("```json\n")[1:]]


def test_json_keys_are_the_documented_ones(recorded: Any) -> None:
    """The keys of `history`, `show` and `stats` JSON are exactly those docs/history.md
    documents, nested objects included, so the promise that the shapes are stable is
    checked rather than hoped for."""
    tmp, ruleset, _ = recorded
    doc_job, doc_show, doc_stats = _doc_json_blocks()
    job = _cli_json("history", str(ruleset), "--status", "failed", cwd=tmp)[0]
    assert set(job) == set(doc_job)
    for nested in ("resource_usage", "efficiency"):
        assert set(job[nested]) == set(doc_job[nested]), nested
    shown = _cli_json("show", "train/1", str(ruleset), cwd=tmp)
    assert set(shown) == set(doc_job) | set(doc_show)
    for key in ("timeline", "samples", "progress", "alerts"):
        assert set(shown[key][0]) == set(doc_show[key][0]), key
    delivery = shown["alerts"][-1]["deliveries"][0]
    assert set(delivery) == set(doc_show["alerts"][0]["deliveries"][0])
    assert set(delivery["tries"][0]) == set(doc_show["alerts"][0]["deliveries"][0]["tries"][0])
    stats = _cli_json("stats", str(ruleset), cwd=tmp)
    assert set(stats) == set(doc_stats)
    assert set(stats["filters"]) == set(doc_stats["filters"])
    assert set(stats["by_tool"]["train"]) == set(stats["by_source"]["local"]) == \
        set(doc_stats["by_source"]["local"])
    assert set(stats["notifications"]) == set(doc_stats["notifications"])


def test_documented_sql_queries_run_and_count_no_success_as_zero(recorded: Any) -> None:
    """Every query in the README and docs/history.md runs against a real history, and the
    success rate per tool is 0, not NULL, for a tool none of whose jobs succeeded."""
    import shutil

    tmp, _ruleset, _ = recorded
    root = Path(__file__).parent.parent
    db = tmp / "queries.db"
    shutil.copy(tmp / ".rulesmon" / "hist.db", db)
    con = sqlite3.connect(str(db))
    try:
        con.execute("UPDATE jobs SET tool = 'broken' WHERE status = 'failed'")
        con.commit()
        for doc in (root / "README.md", root / "docs" / "history.md"):
            text = doc.read_text(encoding="utf-8")
            blocks = [b.split("```", 1)[0] for b in text.split("```sql\n")[1:]]
            assert blocks, doc
            for block in blocks:
                statements = [s for s in block.split(";") if s.strip(" \n")]
                for statement in statements:
                    sql = "\n".join(line for line in statement.splitlines()
                                    if not line.strip().startswith("--"))
                    rows = list(con.execute(sql))
                    if "success" in sql and "job_totals" in sql:
                        rates = {r[0]: r[2] for r in rows}
                        assert rates["broken"] == 0, (doc.name, rows)
                        assert rates["train"] == 100
    finally:
        con.close()


def test_default_settings_keep_launch_change_and_end_figures(tmp_path: Path) -> None:
    """With the default `sample_every` (60 s, longer than the whole run), the quick-start
    example still records a sample of every job when it is first seen and when it ends, the
    crashed worker's 50% progress point, and its real peak memory in `history`."""
    import shutil

    work = tmp_path / "quickstart"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "quickstart", work)
    ruleset = work / "ruleset.yaml"
    text = ruleset.read_text(encoding="utf-8")
    assert "history:" not in text  # the defaults are what this test is about
    text = text.replace("every: 2s", "every: 0.5s").replace(
        '"--worker", "{{ worker }}"]',
        '"--worker", "{{ worker }}", "--items", "120", "--delay", "0.15"]')
    ruleset.write_text(text.replace('"python3"', json.dumps(sys.executable)), encoding="utf-8")
    result = run_cli("run", str(ruleset), cwd=work, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = {j["instance"]: j for j in _cli_json("history", str(ruleset), cwd=work)}
    assert sorted(jobs) == ["train/0", "train/1", "train/2"]
    for key in jobs:
        job = _cli_json("show", key, str(ruleset), cwd=work)
        samples = job["samples"]
        assert samples[0]["time"] == job["first_seen"], key
        assert samples[-1]["time"] == job["last_seen"], key
        assert samples[-1]["memory_peak_bytes"] == job["resource_usage"]["memory_peak_bytes"]
        assert job["resource_usage"]["memory_peak_bytes"] > 5_000_000  # a Python process
        assert job["progress"][-1]["done"] == (60 if key == "train/2" else 120)
    crashed = _cli_json("show", "train/2", str(ruleset), cwd=work)
    assert crashed["status"] == "failed"
    assert crashed["progress"][-1]["pct"] == pytest.approx(50.0)
    # the text view's sample summary counts the peak taken as the job ended
    text = run_cli("show", "train/2", str(ruleset), cwd=work).stdout
    peak = crashed["resource_usage"]["memory_peak_bytes"]
    assert f"memory up to {peak / 1048576:.2f} MB" in text


# --- the recorder, driven tick by tick -----------------------------------------------------


class Source:
    """A scripted scheduler: facts per instance, changed by the test between ticks."""

    name = "slurm"

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def start(self, ctx: Any) -> None:
        return None

    def collect(self, ctx: Any) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.rows.items()}

    def close(self) -> None:
        return None


BASE = """\
version: 1
name: sched
every: 1s
history: {sample_every: 10s}
jobs:
  train:
    slurm: {user: a}
"""


def _job(job_id: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"job.key": "train", "job.source": "slurm", "job.id": job_id, "job.state": state,
            "job.name": f"ft-{job_id}", "job.partition": "gpu", **extra}


def _engine(db: Path, source: Source, text: str = BASE) -> Engine:
    return Engine(load_text(text), state_path=db, log=NullLog(), probes=[source])


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(str(db))
    try:
        return list(con.execute(sql, args))
    finally:
        con.close()


def test_a_job_row_is_written_only_when_something_changes(tmp_path: Path) -> None:
    """Ticks where nothing about a job changed leave its row alone; a state change rewrites
    it and adds a state-change row; samples follow sample_every, not the tick."""
    db = tmp_path / "s.db"
    source = Source()
    source.rows["train/1"] = _job("1", "RUNNING", **{"job.cpu_user": 1.0, "job.rss": 100})
    engine = _engine(db, source)
    try:
        for i in range(31):
            source.rows["train/1"]["job.cpu_user"] = 1.0 + i  # moves every tick
            engine.tick(1000.0 + i)
        assert _rows(db, "SELECT last_seen, status FROM jobs") == [(1000.0, "running")]
        samples = _rows(db, "SELECT t, cpu_user FROM samples ORDER BY t")
        assert 3 <= len(samples) <= 4
        assert all(b[0] - a[0] >= 10 for a, b in itertools.pairwise(samples))
        source.rows["train/1"].update({"job.state": "COMPLETED", "job.exit_code": 0,
                                       "job.elapsed": 31.0})
        engine.tick(1031.0)
        engine.tick(1032.0)
    finally:
        engine.close()
    assert _rows(db, "SELECT last_seen, status, duration, partition FROM jobs") == \
        [(1031.0, "success", 31.0, "gpu")]
    assert _rows(db, "SELECT t, state, previous FROM job_states ORDER BY t") == \
        [(1000.0, "RUNNING", None), (1031.0, "COMPLETED", "RUNNING")]


def test_accounting_that_arrives_after_the_end_reaches_the_row(tmp_path: Path) -> None:
    """Peak memory and CPU efficiency reported a tick after the job ended (sacct's lag) are
    written, and a later tick without them does not erase them."""
    db = tmp_path / "s.db"
    source = Source()
    source.rows["train/7"] = _job("7", "FAILED", **{"job.exit_code": 1, "job.elapsed": 60.0})
    engine = _engine(db, source)
    try:
        engine.tick(1000.0)
        source.rows["train/7"].update({"job.mem_used": 2 << 30, "job.mem_req": 8 << 30,
                                       "job.cpu_eff": 85.5, "job.cpu_time": 200.0})
        engine.tick(1001.0)
        for key in ("job.mem_used", "job.cpu_eff"):
            del source.rows["train/7"][key]
        engine.tick(1002.0)
    finally:
        engine.close()
    assert _rows(db, "SELECT status, mem_peak, mem_eff, cpu_eff, cpu_total FROM jobs") == \
        [("failed", 2 << 30, 25.0, 85.5, 200.0)]


def test_a_restarted_run_continues_the_same_job(tmp_path: Path) -> None:
    """After a restart, the job the earlier run was watching keeps its row (and its state
    history) instead of appearing twice; a new job id under the same key is a new row."""
    db = tmp_path / "s.db"
    source = Source()
    source.rows["train/5"] = _job("5", "RUNNING")
    first = _engine(db, source)
    first.tick(1000.0)
    first.close()
    source.rows["train/5"] = _job("5", "COMPLETED", **{"job.exit_code": 0})
    second = _engine(db, source)
    second.tick(2000.0)
    source.rows["train/5"] = _job("6", "PENDING")
    second.tick(2001.0)
    second.close()
    rows = _rows(db, "SELECT job_id, status, run_id FROM jobs ORDER BY id")
    assert rows == [("5", "success", second.run_id), ("6", "pending", second.run_id)]
    assert [s for (s,) in _rows(db, "SELECT state FROM job_states WHERE job = 1 ORDER BY t")] \
        == ["RUNNING", "COMPLETED"]


def test_history_can_be_turned_off(tmp_path: Path) -> None:
    """`history: {enabled: false}` records no job."""
    db = tmp_path / "s.db"
    source = Source()
    source.rows["train/1"] = _job("1", "RUNNING")
    engine = _engine(db, source, BASE.replace("sample_every: 10s", "enabled: false"))
    engine.tick(1000.0)
    engine.close()
    assert _rows(db, "SELECT count(*) FROM jobs") == [(0,)]


@pytest.mark.parametrize(("state", "outcome", "exit_code", "expect"), [
    ("COMPLETED", None, 0, "success"),
    ("COMPLETED", None, 2, "failed"),
    ("FAILED", None, 1, "failed"),
    ("OUT_OF_MEMORY", None, None, "failed"),
    ("TIMEOUT", None, None, "timeout"),
    ("CANCELLED", None, None, "cancelled"),
    ("REMOVED", None, None, "cancelled"),
    ("RUNNING", None, None, "running"),
    ("PENDING", None, None, "pending"),
    ("HELD", None, None, "pending"),
    ("FAILED", "error", None, "error"),
    ("COMPLETED", "success", None, "success"),
])
def test_final_status_from_outcome_or_state(state: str, outcome: str | None,
                                            exit_code: int | None, expect: str) -> None:
    """job.outcome wins when a source gave one; otherwise the state (and exit code) decide."""
    terminal = state not in ("RUNNING", "PENDING", "HELD")
    assert status_of(state, outcome, terminal, exit_code) == expect


def test_stats_group_by_partition_and_resource(tmp_path: Path) -> None:
    """Jobs carry their partition and DAG ResourceName; stats count them per group and the
    read filters combine."""
    db = tmp_path / "s.db"
    source = Source()
    source.rows = {
        "train/1": _job("1", "COMPLETED", **{"job.exit_code": 0, "job.elapsed": 10.0,
                                             "node.vars": {"ResourceName": "a100"}}),
        "train/2": _job("2", "TIMEOUT", **{"job.elapsed": 30.0, "job.partition": "cpu"}),
        "train/3": _job("3", "RUNNING"),
    }
    engine = _engine(db, source)
    engine.tick(1000.0)
    engine.close()
    con = queries.open_db(db)
    try:
        stats = queries.summary(con)
        assert stats["by_partition"]["gpu"]["jobs"] == 2
        assert stats["by_partition"]["cpu"]["failed"] == 1
        assert stats["by_resource"] == {"a100": stats["by_resource"]["a100"]}
        assert stats["by_resource"]["a100"]["successful"] == 1
        assert (stats["active"], stats["max_duration_seconds"]) == (1, 30.0)
        assert queries.summary(con, queries.Filters(status="timeout"))["total_jobs"] == 1
        params = queries.job(con, "train/1")["params"]
        assert params == {"ResourceName": "a100"}
    finally:
        con.close()


def test_retention_deletes_old_history_in_batches(tmp_path: Path) -> None:
    """Jobs last seen before the retention are deleted with their rows, a few per call;
    samples of jobs older than sample_retention go while the jobs keep their totals; old
    alert events and delivered notifications go too."""
    from rulesmon.history import retention

    db = tmp_path / "s.db"
    source = Source()
    day = 86400.0
    engine = _engine(db, source, BASE.replace("sample_every: 10s", "sample_every: 0s"))
    try:
        for i in range(5):  # five jobs ended 100 days ago, one 10 days ago, one running
            source.rows = {f"train/{i}": _job(str(i), "RUNNING", **{"job.rss": 10})}
            engine.tick(1000.0 + i * 10)
            engine.tick(1001.0 + i * 10)
            source.rows[f"train/{i}"].update({"job.state": "COMPLETED", "job.exit_code": 0})
            engine.tick(1002.0 + i * 10)
        source.rows = {"train/9": _job("9", "RUNNING", **{"job.rss": 10})}
        engine.tick(90 * day)
        engine.tick(90 * day + 1)
        source.rows["train/9"]["job.state"] = "COMPLETED"
        engine.tick(90 * day + 2)
    finally:
        engine.close()
    con = sqlite3.connect(str(db), isolation_level=None)
    try:
        con.execute("INSERT INTO events (t, kind, rule, instance) VALUES (5, 'fire', 'r', 'x')")
        now = 100 * day + 5000
        more = retention.prune(con, now, 30 * day, 5 * day, batch=2)
        assert more is True
        assert con.execute("SELECT count(*) FROM jobs").fetchone() == (4,)
        while retention.prune(con, now, 30 * day, 5 * day, batch=2):
            pass
        assert [r[0] for r in con.execute("SELECT job_id FROM jobs")] == ["9"]
        assert con.execute("SELECT count(*) FROM job_states").fetchone() == (2,)
        assert con.execute("SELECT count(*) FROM samples").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM events WHERE t < ?", (now - 30 * day,)
                           ).fetchone() == (0,)
        assert retention.due(con, now) is False
        assert retention.due(con, now + 3600) is True
    finally:
        con.close()


def test_weekly_totals_agree_with_the_rows(tmp_path: Path) -> None:
    """The per-week totals that triggers keep give the same statistics as aggregating the
    job rows, after inserts, state changes, late accounting and retention deletes, with and
    without a --since window that starts mid-week."""
    from rulesmon.history import retention

    db = tmp_path / "s.db"
    source = Source()
    engine = _engine(db, source)
    week = 7 * 86400.0
    try:
        for i in range(40):
            t = 1000.0 + i * 0.75 * week / 4
            key = f"train/{i}"
            source.rows = {key: _job(str(i), "RUNNING", **{"job.partition": f"p{i % 3}"})}
            engine.tick(t)
            final = {"COMPLETED": 0, "FAILED": 1, "TIMEOUT": None}
            state = list(final)[i % 3]
            source.rows[key].update({"job.state": state, "job.exit_code": final[state],
                                     "job.elapsed": 10.0 + i, "job.cpu_time": 2.0 * i})
            engine.tick(t + 1)
            source.rows[key]["job.mem_used"] = 1000 * i  # accounting a tick late
            engine.tick(t + 2)
    finally:
        engine.close()
    con = queries.open_db(db)
    try:
        con.execute("BEGIN")
        retention.prune(con, 1000.0 + 6 * week, 4 * week, 4 * week)
        con.execute("COMMIT")
        for since in (None, 1000.0 + 3.5 * week, 1000.0 + 5.2 * week):
            for extra in ({}, {"status": "failed,timeout"}, {"tool": "train"}):
                fast = queries.summary(con, queries.Filters(since=since, **extra))
                slow = queries.summary(con, queries.Filters(since=since, **extra),
                                       use_totals=False)
                for result in (fast, slow):
                    del result["filters"]
                assert fast == slow, (since, extra)
        assert 0 < queries.summary(con)["total_jobs"] < 40
        assert queries.summary(con, queries.Filters(job="*"))["total_jobs"] == \
            con.execute("SELECT count(*) FROM jobs").fetchone()[0]
        assert con.execute("SELECT count(*) FROM job_totals WHERE jobs <= 0").fetchone() == (0,)
    finally:
        con.close()


def test_dag_nodes_keep_parents_children_and_vars(tmp_path: Path) -> None:
    """Each DAG node's job records its name, parents and children in `details`, so the DAG
    (A -> B, C -> D) can be rebuilt from the history alone, and its VARS once, as `params`."""
    from rulesmon.config.loader import load

    from .test_dagman_probe import RULESET as DAG_RULESET
    from .test_dagman_probe import stage_run1

    dag = stage_run1(tmp_path)
    rs_path = tmp_path / "r.yaml"
    rs_path.write_text(DAG_RULESET.format(dag=dag.name), encoding="utf-8")
    engine = Engine(load(rs_path), state_path=tmp_path / "s.db", log=NullLog())
    try:
        engine.tick()
    finally:
        engine.close()
    con = queries.open_db(tmp_path / "s.db")
    try:
        nodes = {}
        params = {}
        for row in queries.jobs(con, queries.Filters(source="dagman"), None):
            shown = queries.job(con, row["id"])
            details = shown["details"]
            if "node.name" in details:
                nodes[details["node.name"]] = details
                params[details["node.name"]] = shown["params"]
    finally:
        con.close()
    assert sorted(nodes) == ["A", "B", "C", "D"]
    from_parents = {(p, n) for n, d in nodes.items() for p in d["node.parents"]}
    from_children = {(n, c) for n, d in nodes.items() for c in d["node.children"]}
    assert from_parents == from_children == {("A", "B"), ("C", "D")}
    assert params["C"] == {"run_uuid": "r2", "epoch": "1", "ResourceName": "gpu-a", "rc": "3"}
    assert not any("node.vars" in d for d in nodes.values())


def test_jobs_of_one_run_or_of_tracked_work_with_details_and_a_notification_window(
        tmp_path: Path) -> None:
    """`Filters(run_id=...)` selects one run's jobs and `Filters(tracked=True)` the work
    recorded outside runs; `details=True` adds each job's details, parsed as `job` parses
    them; `notifications(until=...)` counts only those created before that time."""
    from rulesmon.history import rows
    from rulesmon.history.schema import connect

    path = tmp_path / "h.db"
    con = connect(path)
    with con:
        run_ids = [int(con.execute("INSERT INTO runs (ruleset, started) VALUES ('r', ?)",
                                   (t,)).lastrowid or 0) for t in (100.0, 200.0)]
        for i, (run_id, ruleset) in enumerate(((run_ids[0], "r"), (run_ids[1], "r"),
                                               (None, ""))):
            rows.insert(con, uid=f"uid{i}", run_id=run_id, ruleset=ruleset,
                        instance=f"train/{i}", now=100.0 + i,
                        values={"source": "local", "status": "success", "state": "COMPLETED",
                                "details": rows.dumps({"job.workdir": f"/w{i}"})})
        con.execute("UPDATE jobs SET details = 'not json' WHERE uid = 'uid1'")
        for created, target in ((150.0, "hook"), (250.0, "mail")):
            con.execute("INSERT INTO outbox (id, target, kind, rule, instance, severity, title, "
                        "body, created, release_at, group_key, status) VALUES (?, ?, 'fire', "
                        "'r', 'train/0', 'warning', '', '', ?, ?, '', 'delivered')",
                        (f"n{created}", target, created, created))
    try:
        first = queries.jobs(con, queries.Filters(run_id=run_ids[0]), None, details=True)
        assert [(j["id"], j["details"]) for j in first] == [("uid0", {"job.workdir": "/w0"})]
        assert [j["details"] for j in queries.jobs(con, queries.Filters(run_id=run_ids[1]),
                                                   None, details=True)] == [{}]
        tracked = queries.jobs(con, queries.Filters(tracked=True), None, details=True)
        assert [j["id"] for j in tracked] == ["uid2"]
        assert tracked[0]["details"] == queries.job(con, "uid2")["details"]
        assert "details" not in queries.jobs(con)[0]
        assert queries.summary(con, queries.Filters(tracked=True))["total_jobs"] == 1
        window = queries.notifications(con, queries.Filters(since=100.0), until=200.0)
        assert window == {"total": 1, "by_target": {"hook": {"delivered": 1}}}
    finally:
        con.close()
