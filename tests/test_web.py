"""`rulesmon serve`: the web dashboard over real history, fetched from a real server process."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from rulesmon.history import rows
from rulesmon.history.schema import BASE, connect
from rulesmon.web.gate import MAX_CONNECTIONS, WORKERS, GatedHTTPServer
from rulesmon.web.svg import DAG_FULL_LIMIT, STATUS_COLOURS

from .conftest import ROOT, run_cli
from .receiver import Receiver

HOSTILE = '<script>alert("x")</script>'

WORKER = """\
import sys, time
items, code = int(sys.argv[1]), int(sys.argv[2])
hold = []
for i in range(1, items + 1):
    hold.append(bytearray(2 << 20))  # memory grows 2 MiB per item
    time.sleep(0.15)
    print(f"Processed {i}/{items} items", flush=True)
print('<script>alert("tail")</script>', flush=True)
sys.exit(code)
"""

RULESET = """\
version: 1
name: web
every: 0.2s
history: {sample_every: 0s}
notify:
  hook: "${HOOK}"
jobs:
  train:
    local:
      command: ["PYTHON", "worker.py", "12", "{{ 3 if worker == 1 else 0 }}"]
      workers: 2
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
    message: "{{ job.name }} exited {{ job.exit_code }}: {{ log.tail }}"
"""


# --- real history -------------------------------------------------------------------------

def _engine_run(folder: Path, hook: str) -> subprocess.CompletedProcess[str]:
    return run_cli("run", str(folder / "web.yaml"), cwd=folder,
                   env=dict(os.environ, HOOK=hook), timeout=90)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `rulesmon run` of two local workers (worker 1 exits 3 and a rule notifies a
    local receiver), plus one hostile `rulesmon track` record in the same database; returns
    the folder (the database is .rulesmon/web.db)."""
    folder = tmp_path_factory.mktemp("web")
    (folder / "worker.py").write_text(WORKER, encoding="utf-8")
    (folder / "web.yaml").write_text(RULESET.replace("PYTHON", sys.executable),
                                     encoding="utf-8")
    with Receiver() as rx:
        result = _engine_run(folder, rx.url())
    assert result.returncode == 1, result.stderr
    tracked = run_cli("track", "--db", str(folder / ".rulesmon" / "web.db"), "--tool",
                      "<img src=x onerror=alert(1)>", "--name", HOSTILE, "-q", "--",
                      sys.executable, "-c", "pass", cwd=folder)
    assert tracked.returncode == 0, tracked.stderr
    return folder


def _copy(folder: Path, tmp: Path) -> Path:
    """A private copy of the recorded folder, for tests that change the database."""
    target = tmp / "copy"
    shutil.copytree(folder, target)
    return target


def _db(folder: Path) -> Path:
    return folder / ".rulesmon" / "web.db"


def dag_history(path: Path, nodes: Sequence[tuple[str, str, str, list[str]]], *,
                with_links: bool = True) -> int:
    """A run of DAG nodes written through the real schema and row writer, as the engine
    records a dagman job: (name, state, status, parents) each; returns the run id."""
    con = connect(path)
    now = time.time() - 100.0
    run_id = int(con.execute("INSERT INTO runs (ruleset, started, ended, ticks, exit_code, "
                             "summary) VALUES ('dagrun', ?, ?, 50, 1, 'a DAG')",
                             (now, now + 90.0)).lastrowid or 0)
    children: dict[str, list[str]] = {name: [] for name, *_ in nodes}
    for name, _state, _status, parents in nodes:
        for parent in parents:
            children[parent].append(name)
    start = int(con.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchone()[0]) + 1
    batch = []
    for i, (name, state, status, parents) in enumerate(nodes):
        details: dict[str, Any] = {"node.name": name, "node.state": state}
        if with_links:
            details.update({"node.parents": parents, "node.children": children[name]})
        values = {"job_id": str(1000 + i), "name": name, "source": "dagman",
                  "tool": "pipeline", "state": state, "status": status,
                  "exit_code": 3 if status == "failed" else None,
                  "details": rows.dumps(details)}
        batch.append((start + i, rows.new_uid(), run_id, "dagrun", f"pipeline/{name}",
                      now + i * 0.01, values))
    with con:
        con.execute("BEGIN")
        rows.insert_many(con, batch)
    con.close()
    return run_id


DIAMOND = [
    ("prep", "COMPLETED", "success", []),
    ("train_a", "COMPLETED", "success", ["prep"]),
    ("train_b", "FAILED", "failed", ["prep"]),
    (HOSTILE, "RUNNING", "running", ["prep"]),
    ("eval", "CANCELLED", "cancelled", ["train_a", "train_b", "prep"]),
    ("report", "PENDING", "pending", ["eval"]),
]


# --- the server ---------------------------------------------------------------------------

class Served:
    """A `rulesmon serve` subprocess on 127.0.0.1 and a free port."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def get(self, path: str) -> tuple[int, Mapping[str, str], str]:
        try:
            with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode("utf-8")

    def page(self, path: str) -> str:
        status, _headers, body = self.get(path)
        assert status == 200, (path, body)
        return body

    def json(self, path: str) -> Any:
        return json.loads(self.page(path))


def _start(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rulesmon", "serve", *args, "--port", "0"],
                            cwd=cwd or ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@contextmanager
def served(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
           stop: int = signal.SIGTERM) -> Iterator[Served]:
    """Start the server, read the URL it prints, and stop it with `stop` at the end, which
    must end it cleanly (exit 0, no traceback)."""
    proc = _start(*args, env=env, cwd=cwd)
    try:
        assert proc.stdout is not None
        ready, _w, _x = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            proc.kill()
            _out, err = proc.communicate(timeout=20)
            raise AssertionError(f"no URL printed: {line!r} {err!r}")
        yield Served(proc, found.group(0))
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
        try:
            _out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err.rstrip().endswith("rulesmon serve: stopped"), err


def _svg(body: str, cls: str) -> list[ET.Element]:
    """Every inline SVG of the page with that class, parsed as XML."""
    return [ET.fromstring(m.group(0)) for m in
            re.finditer(rf'<svg class="{cls}"[^>]*>.*?</svg>', body, flags=re.S)]


def _chart_points(body: str, chart: str) -> dict[str, list[tuple[float, float]]]:
    for svg in _svg(body, "chart"):
        if svg.get("data-chart") == chart:
            return {p.get("data-series", ""): [tuple(map(float, xy.split(",")))  # type: ignore[misc]
                                               for xy in (p.get("points") or "").split()]
                    for p in svg.iter("polyline")}
    return {}


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _assert_linear(values: Sequence[float], coords: Sequence[float], *, falling: bool) -> None:
    """coords = a + b * values for one a and b (b < 0 when `falling`), within rounding."""
    lo, hi = min(range(len(values)), key=values.__getitem__), max(range(len(values)),
                                                                   key=values.__getitem__)
    assert values[hi] > values[lo]
    slope = (coords[hi] - coords[lo]) / (values[hi] - values[lo])
    assert (slope < 0) if falling else (slope > 0)
    for v, c in zip(values, coords, strict=True):
        assert c == pytest.approx(coords[lo] + slope * (v - values[lo]), abs=0.15)


# --- tests --------------------------------------------------------------------------------

def test_runs_page_lists_the_run_with_counts_and_success_rate(recorded: Path) -> None:
    """/ lists the recorded run (ruleset, ended, jobs by outcome, success rate) and the
    tracked work; /api/runs says the same in JSON."""
    with served(str(_db(recorded))) as srv:
        body = srv.page("/")
        runs = srv.json("/api/runs")
    assert len(runs) == 1
    run = runs[0]
    assert (run["ruleset"], run["state"], run["exit_code"]) == ("web", "ended", 1)
    assert run["jobs"] == {"total": 2, "finished": 2, "by_status": {"failed": 1, "success": 1},
                           "success_rate": 50.0}
    assert run["ticks"] > 5 and run["duration_seconds"] > 1.0
    assert '<a href="/run/1">web</a>' in body and "50.0%" in body
    assert "Tracked work" in body and '<a href="/tracked">' in body


def test_run_page_has_jobs_figures_alerts_and_deliveries(recorded: Path) -> None:
    """/run/1 shows both workers with outcome and exit code, the run's figures, the
    `crashed` alert with its delivery to the receiver; /api/run/1 holds the jobs exactly as
    `rulesmon history --format json` shows them."""
    history = json.loads(run_cli("history", "--db", str(_db(recorded)), "--format",
                                 "json").stdout)
    watched = {j["id"]: j for j in history if j["run_id"] == 1}
    with served(str(_db(recorded))) as srv:
        body = srv.page("/run/1")
        data = srv.json("/api/run/1")
        failed_only = srv.page("/run/1?status=failed")
    assert {j["id"]: {k: v for k, v in j.items() if k != "details"}
            for j in data["jobs"]} == watched
    stats = data["stats"]
    assert (stats["total_jobs"], stats["successful"], stats["failed"],
            stats["success_rate"]) == (2, 1, 1, 50.0)
    assert stats["by_state"] == {"COMPLETED": 1, "FAILED": 1}
    assert stats["total_cpu_time_seconds"] == pytest.approx(
        sum(j["resource_usage"]["cpu_total_seconds"] for j in watched.values()), abs=0.02)
    for job in watched.values():
        assert f'<a href="/job/{job["id"]}">{job["instance"]}</a>' in body
    assert re.search(r"<td>FAILED</td><td><span class=\"badge\"[^>]*>failed</span></td>"
                     r"<td class=\"n\">3</td>", body)
    [alert] = [a for a in data["alerts"] if a["rule"] == "crashed"]
    assert alert["instance"] == "train/1" and alert["kind"] == "fire"
    assert [(d["target"], d["status"]) for d in alert["deliveries"]] == [("hook", "delivered")]
    assert "hook: delivered (1 attempt)" in body
    assert data["notifications"]["by_target"]["hook"]["delivered"] == 1
    assert "train/1" in failed_only and "train/0" not in failed_only
    assert data["dag"] is None and "Workflow DAG" not in body


def test_job_page_plots_the_recorded_samples(recorded: Path) -> None:
    """/job/<id> draws CPU, memory and progress from the job's samples: one point per
    sample, x in time order and y a linear function of the value; /api/job/<id> is what
    `rulesmon show --format json` prints."""
    show = json.loads(run_cli("show", "train/0", "--db", str(_db(recorded)), "--format",
                              "json").stdout)
    with served(str(_db(recorded))) as srv:
        body = srv.page(f"/job/{show['id']}")
        api = srv.json(f"/api/job/{show['id']}")
        by_instance = srv.page("/job/train/0")
    assert {k: v for k, v in api.items() if k != "dag"} == show and api["dag"] is None
    assert by_instance.split("<main>")[1] == body.split("<main>")[1]
    memory = [s for s in show["samples"] if s["memory_bytes"] is not None]
    assert len(memory) >= 5
    drawn = _chart_points(body, "memory")["resident"]
    assert len(drawn) == len(memory)
    xs, ys = [p[0] for p in drawn], [p[1] for p in drawn]
    _assert_linear([_ts(s["time"]) for s in memory], xs, falling=False)
    _assert_linear([float(s["memory_bytes"]) for s in memory], ys, falling=True)
    assert memory[-1]["memory_bytes"] > memory[0]["memory_bytes"]  # it grew
    progress = _chart_points(body, "progress")["progress"]
    assert len(progress) == len(show["progress"])
    _assert_linear([p["pct"] for p in show["progress"]], [y for _x, y in progress],
                   falling=True)
    cpu = [s for s in show["samples"] if s["cpu_pct"] is not None]
    assert len(_chart_points(body, "cpu")["cpu"]) == len(cpu)
    assert _chart_points(body, "gpu_util") == {}  # no GPU samples: no chart
    states = [r.get("data-state") for svg in _svg(body, "timeline") for r in svg.iter("rect")]
    assert states == [e["state"] for e in show["timeline"]]
    assert "Processed 12/12 items" in body


def test_database_text_is_escaped_everywhere(recorded: Path) -> None:
    """A hostile tracked name and tool, a log line and an alert body holding markup reach
    the pages as text, never as markup; every page forbids scripts by its CSP."""
    with served(str(_db(recorded))) as srv:
        tracked = srv.page("/tracked")
        [hostile] = srv.json("/api/tracked")["jobs"]
        job = srv.page(f"/job/{hostile['id']}")
        worker = srv.page("/job/train/1")
        run_status, headers, run = srv.get("/run/1")
    assert hostile["name"] == HOSTILE
    for body in (tracked, job, worker, run):
        assert "<script" not in body and "<img" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in tracked
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in job
    assert "&lt;script&gt;alert(&quot;tail&quot;)&lt;/script&gt;" in worker  # log tail
    assert run_status == 200 and "&lt;script&gt;alert(&quot;tail&quot;)" in run  # alert body
    assert "script-src" not in headers["Content-Security-Policy"]
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_dag_nodes_are_layered_by_longest_path_and_coloured_by_state(tmp_path: Path) -> None:
    """A run whose nodes name their parents and children is drawn as a DAG: each node in the
    layer of its longest path from a root, filled with its outcome's colour, linked to its
    job; the job page lists its parents and children."""
    path = tmp_path / "dag.db"
    run_id = dag_history(path, DIAMOND)
    with served(str(path)) as srv:
        body = srv.page(f"/run/{run_id}")
        data = srv.json(f"/api/run/{run_id}")
        uid = {n["name"]: n["id"] for n in data["dag"]["nodes"]}
        eval_page = srv.page(f"/job/{uid['eval']}")
    [svg] = _svg(body, "dag")
    nodes = {}
    for a in svg.iter("a"):
        g = a.find("g")
        assert g is not None
        rect = g.find("rect")
        assert rect is not None
        nodes[g.get("data-name")] = (int(g.get("data-layer") or -1), g.get("data-status"),
                                     rect.get("fill"), a.get("href"))
    assert {name: layer for name, (layer, *_r) in nodes.items()} == {
        "prep": 0, "train_a": 1, "train_b": 1, HOSTILE: 1, "eval": 2, "report": 3}
    for name, _state, status, _parents in DIAMOND:
        assert nodes[name][1:] == (status, STATUS_COLOURS[status], f"/job/{uid[name]}")
    assert len(set(STATUS_COLOURS.values())) == len(STATUS_COLOURS)
    assert len(list(svg.iter("path"))) == len(data["dag"]["edges"]) == 7
    assert "<script" not in body
    legend = re.search(r"<h2>Workflow DAG</h2><p>(.*?)</p>", body)
    assert legend and all(f"background:{STATUS_COLOURS[s]}" in legend.group(1)
                          for s in ("success", "failed", "running", "cancelled", "pending"))
    parents = re.search(r"<th>Parents</th><td>(.*?)</td>", eval_page)
    children = re.search(r"<th>Children</th><td>(.*?)</td>", eval_page)
    assert parents and children
    for name in ("train_a", "train_b", "prep"):
        assert f'<a href="/job/{uid[name]}">{name}</a>' in parents.group(1)
    assert f'<a href="/job/{uid["report"]}">report</a>' in children.group(1)


def test_a_large_dag_is_drawn_by_layer(tmp_path: Path) -> None:
    """Beyond DAG_FULL_LIMIT nodes the DAG is one bar per layer split by outcome (counts
    adding up to the nodes), not a node per box; every job is still listed."""
    wide = DAG_FULL_LIMIT + 50
    nodes = [("root", "COMPLETED", "success", [])]
    nodes += [(f"n{i}", "FAILED" if i % 10 == 0 else "COMPLETED",
               "failed" if i % 10 == 0 else "success", ["root"]) for i in range(wide)]
    nodes.append(("join", "PENDING", "pending", [f"n{i}" for i in range(wide)]))
    path = tmp_path / "big.db"
    run_id = dag_history(path, nodes)
    with served(str(path)) as srv:
        body = srv.page(f"/run/{run_id}")
    assert _svg(body, "dag") == []
    [svg] = _svg(body, "dag-layers")
    bars = [(r.get("data-status"), int(r.get("data-count") or 0)) for r in svg.iter("rect")]
    assert bars == [("success", 1), ("failed", wide // 10), ("success", wide - wide // 10),
                    ("pending", 1)]
    assert body.count('<a href="/job/') >= len(nodes)


def test_runs_recorded_without_node_links_show_no_dag(tmp_path: Path) -> None:
    """Jobs recorded before the history kept node parents and children still list, with no
    DAG drawn."""
    path = tmp_path / "old.db"
    run_id = dag_history(path, DIAMOND, with_links=False)
    with served(str(path)) as srv:
        body = srv.page(f"/run/{run_id}")
        data = srv.json(f"/api/run/{run_id}")
    assert data["dag"] is None and "Workflow DAG" not in body
    assert len(data["jobs"]) == len(DIAMOND) and "pipeline/train_b" in body


def test_unknown_pages_and_ids_are_plain_404s(recorded: Path) -> None:
    """An unknown run, job or page is a 404 with one line (JSON under /api/), no
    traceback."""
    with served(str(_db(recorded))) as srv:
        answers = {p: srv.get(p) for p in ("/run/999", "/run/abc", "/job/nothing-like-it",
                                          "/nowhere", "/api/run/999", "/api/job/zzzz")}
    for path, (status, headers, body) in answers.items():
        assert status == 404, path
        assert "Traceback" not in body
        if path.startswith("/api/"):
            assert headers["Content-Type"].startswith("application/json")
            assert list(json.loads(body)) == ["error"]
    assert "no run 999 in this history" in answers["/run/999"][2]
    assert "no job &#x27;nothing-like-it&#x27; in the history" in \
        answers["/job/nothing-like-it"][2]


def test_serving_never_writes_the_database_and_an_engine_runs_beside_it(
        recorded: Path, tmp_path: Path) -> None:
    """Serving every page leaves the database file byte for byte and mtime as it was; a
    second `rulesmon run` writing the same database while pages are fetched completes,
    and its run then shows up."""
    folder = _copy(recorded, tmp_path)
    db = _db(folder)
    before = (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns)
    with served(str(db)) as srv:
        jobs = srv.json("/api/run/1")["jobs"]
        for path in ("/", "/api/runs", "/run/1", "/tracked", "/api/tracked", "/api/stats",
                     *(f"/job/{j['id']}" for j in jobs)):
            srv.page(path)
        assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before
        with Receiver() as rx:
            engine = subprocess.Popen(
                [sys.executable, "-m", "rulesmon", "run", str(folder / "web.yaml")],
                cwd=folder, env=dict(os.environ, HOOK=rx.url()), stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True)
            try:
                fetched = 0
                while engine.poll() is None:
                    srv.page("/")
                    srv.page("/api/runs")
                    fetched += 1
                _out, err = engine.communicate(timeout=90)
            finally:
                if engine.poll() is None:
                    engine.kill()
                    engine.communicate()
        assert engine.returncode == 1, err
        assert fetched > 0
        runs = srv.json("/api/runs")
    assert [(r["id"], r["state"], r["jobs"]["total"]) for r in runs] == [(2, "ended", 2),
                                                                        (1, "ended", 2)]
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM runs WHERE ended IS NOT NULL").fetchone() == (2,)
    con.close()


def test_a_database_that_cannot_be_shown_is_one_line_at_startup(tmp_path: Path,
                                                                recorded: Path) -> None:
    """A missing file, a file that is not SQLite, a database without history tables or from
    a newer rulesmon, and a taken port each stop `serve` with one line and status 1."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.executescript(BASE + "INSERT INTO meta VALUES ('schema_version', '2');")
    con.close()
    newer = tmp_path / "newer.db"
    shutil.copy(_db(recorded), newer)
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    cases = {str(tmp_path / "missing.db"): "no history at",
             str(garbage): "not a usable rulesmon database",
             str(old): "has no job history yet (schema version 2)",
             str(newer): "schema version 99, newer than this rulesmon"}
    for target, expected in cases.items():
        result = run_cli("serve", target, "--port", "0", timeout=30)
        assert result.returncode == 1, target
        assert expected in result.stderr and len(result.stderr.splitlines()) == 1, \
            result.stderr
        assert result.stdout == ""
    old_bytes = old.read_bytes()
    assert run_cli("serve", str(old), "--port", "0").returncode == 1
    assert old.read_bytes() == old_bytes  # not migrated
    with served(str(_db(recorded))) as srv:
        port = srv.url.rsplit(":", 1)[1].strip("/")
        taken = run_cli("serve", str(_db(recorded)), "--port", port, timeout=30)
    assert taken.returncode == 1 and taken.stderr.startswith(f"rulesmon: cannot listen on "
                                                              f"127.0.0.1:{port}")
    assert len(taken.stderr.splitlines()) == 1


def test_a_page_that_fails_is_a_500_with_one_line(recorded: Path, tmp_path: Path) -> None:
    """When the database turns to garbage under a running server, a page is a 500 with one
    line (and one line on the server's stderr), and the server keeps serving."""
    folder = _copy(recorded, tmp_path)
    db = _db(folder)
    proc = _start(str(db))
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = re.search(r"http://[^ ]+/", proc.stdout.readline())
        assert url
        srv = Served(proc, url.group(0))
        assert srv.get("/run/1")[0] == 200
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)
        status, _headers, body = srv.get("/run/1")
        assert status == 500
        assert "could not read the history: DatabaseError" in body and "Traceback" not in body
        assert srv.get("/nowhere")[0] in (404, 500)  # still answering
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    lines = err.splitlines()
    assert lines[0].startswith("rulesmon serve: /run/1: DatabaseError: ")
    assert "Traceback" not in err and lines[-1] == "rulesmon serve: stopped"


def test_serve_finds_the_database_like_the_history_views(recorded: Path) -> None:
    """`serve RULESET` reads the ruleset's state database and plain `serve` the tracking
    database of RULESMON_HISTORY, as `rulesmon history` does; Ctrl-C stops it cleanly."""
    env = {k: v for k, v in os.environ.items() if k != "HOOK"}
    with served(str(recorded / "web.yaml"), env=env, stop=signal.SIGINT) as srv:
        assert [r["ruleset"] for r in srv.json("/api/runs")] == ["web"]
    env["RULESMON_HISTORY"] = str(_db(recorded))
    with served(env=env) as srv:
        assert srv.json("/api/tracked")["counts"]["total"] == 1


def test_auto_refresh_toggle_and_foreign_host_names(recorded: Path) -> None:
    """`?refresh=5` adds a meta refresh and the toggle links keep the page; a request for
    another host name (DNS rebinding) is refused."""
    with served(str(_db(recorded))) as srv:
        plain = srv.page("/run/1?status=failed")
        live = srv.page("/run/1?status=failed&refresh=5")
        host, port = srv.url[len("http://"):].rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/", headers={"Host": f"attacker.example:{port}"})
        refused = conn.getresponse()
        refused.read()
        conn.close()
    assert 'http-equiv="refresh"' not in plain
    assert '<meta http-equiv="refresh" content="5">' in live
    assert '<a href="/run/1?status=failed&amp;refresh=5">5s</a>' in plain
    assert '<a href="/run/1?status=failed">off</a>' in live
    assert refused.status == 421


def _dagman_run(folder: Path) -> Path:
    """A real `rulesmon run --once` of the recorded failed DAGMan run (A then B succeed; C
    fails after its retry, so D is futile); returns the state database."""
    from .test_dagman_probe import RULESET as DAG_RULESET
    from .test_dagman_probe import stage_run1

    dag = stage_run1(folder)
    ruleset = folder / "r.yaml"
    ruleset.write_text(DAG_RULESET.format(dag=dag.name), encoding="utf-8")
    result = run_cli("run", str(ruleset), "--once", "--state", str(folder / "dag.db"),
                     cwd=folder)
    assert result.returncode == 1, result.stderr
    return folder / "dag.db"


def test_a_recorded_dagman_run_lists_every_node(tmp_path: Path) -> None:
    """The nodes of a real DAGMan run, recorded by the engine, are the run's jobs with
    their node states and outcomes."""
    path = _dagman_run(tmp_path)
    with served(str(path)) as srv:
        data = srv.json("/api/run/1")
        body = srv.page("/run/1")
    outcomes = {j["instance"]: (j["state"], j["status"]) for j in data["jobs"]}
    assert outcomes == {"pipeline/A": ("COMPLETED", "success"),
                        "pipeline/B": ("COMPLETED", "success"),
                        "pipeline/C": ("FAILED", "failed"),
                        "pipeline/D": ("CANCELLED", "cancelled"),
                        "pipeline/pipe.dag": ("FAILED", "failed")}
    for job in data["jobs"]:
        assert f'<a href="/job/{job["id"]}">{job["instance"]}</a>' in body


def test_a_recorded_dagman_run_draws_its_dag(tmp_path: Path) -> None:
    """From the node parents and children the engine records, a real DAGMan run's page
    draws A -> B and C -> D, coloured by outcome (C failed, D cancelled as futile); the DAG's
    own instance is no node."""
    path = _dagman_run(tmp_path)
    with served(str(path)) as srv:
        data = srv.json("/api/run/1")
        body = srv.page("/run/1")
    dag = data["dag"]
    names = {n["id"]: n["name"] for n in dag["nodes"]}
    assert sorted((names[a], names[b]) for a, b in dag["edges"]) == [("A", "B"), ("C", "D")]
    [svg] = _svg(body, "dag")
    fills = {g.get("data-name"): (g.get("data-layer"), rect.get("fill"))
             for g in svg.iter("g") for rect in g.iter("rect")}
    assert fills == {"A": ("0", STATUS_COLOURS["success"]), "B": ("1", STATUS_COLOURS["success"]),
                     "C": ("0", STATUS_COLOURS["failed"]),
                     "D": ("1", STATUS_COLOURS["cancelled"])}


def test_killed_tracked_work_reads_as_error_without_writing(tmp_path: Path) -> None:
    """Tracked work whose process was killed shows as error, "process died without
    reporting", in the runs page's counts, /tracked and its job page, while the database
    is left byte for byte as it was, still holding the record running."""
    db = tmp_path / "h.db"
    code = ("import os, rulesmon\n"
            f"rulesmon.track(tool='sim', db={str(db)!r}).start()\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with served(str(db)) as srv:
        index = srv.page("/")
        tracked = srv.json("/api/tracked")
        [job] = tracked["jobs"]
        shown = srv.json(f"/api/job/{job['id']}")
    assert "Tracked work" in index and ">error</span>" in index
    assert ">running</span>" not in index
    assert tracked["counts"]["by_status"] == {"error": 1}
    assert (tracked["stats"]["failed"], tracked["stats"]["active"]) == (1, 0)
    for seen in (job, shown):
        assert (seen["status"], seen["state"], seen["error"]) == \
            ("error", "ERROR", "process died without reporting")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM jobs").fetchall() == [("running",)]
    con.close()


def test_a_run_without_an_end_is_interrupted_once_a_later_run_started(tmp_path: Path) -> None:
    """A run that recorded no end is `interrupted` when a later run of the same ruleset
    started, else `running`; a run that ended is `ended`, whatever came after."""
    path = tmp_path / "runs.db"
    con = connect(path)
    with con:
        for ruleset, started, ended in (("a", 100.0, None), ("a", 200.0, 250.0),
                                        ("a", 300.0, None), ("b", 150.0, None)):
            con.execute("INSERT INTO runs (ruleset, started, ended) VALUES (?, ?, ?)",
                        (ruleset, started, ended))
    con.close()
    with served(str(path)) as srv:
        runs = srv.json("/api/runs")
        one = srv.json("/api/run/1")["run"]
    assert [(r["id"], r["state"]) for r in runs] == [(4, "running"), (3, "running"),
                                                      (2, "ended"), (1, "interrupted")]
    assert one["state"] == "interrupted"


def test_a_job_reads_alike_in_show_and_on_its_page(recorded: Path) -> None:
    """A job's duration, CPU time and peak memory are written the same way by `rulesmon
    show` and by its page."""
    from rulesmon.config.units import format_seconds, format_size

    show = json.loads(run_cli("show", "train/0", "--db", str(_db(recorded)), "--format",
                              "json").stdout)
    text = run_cli("show", "train/0", "--db", str(_db(recorded))).stdout
    with served(str(_db(recorded))) as srv:
        body = srv.page(f"/job/{show['id']}")
    duration = format_seconds(show["duration_seconds"])
    peak = format_size(show["resource_usage"]["memory_peak_bytes"])
    assert f"Duration:     {duration}" in text and f"Memory Utilized: {peak}" in text
    assert f"<th>Duration</th><td>{duration}</td>" in body
    assert f"<th>Peak memory</th><td>{peak}</td>" in body


# --- connections: idle sockets, slow requests, the wrong file ------------------------------------


def _eof(sock: socket.socket) -> bool:
    """The server closed this connection (it reads as EOF or a reset)."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _wait(cond: Any, timeout: float = 60.0) -> None:
    """Poll `cond` until it holds; the deadline only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_idle_connections_hold_no_thread_and_the_server_still_answers(recorded: Path) -> None:
    """300 idle connections to `rulesmon serve` leave its thread count bounded (no thread per
    connection) and its descriptors under its connection cap, the longest waiting ones are
    closed to make room, and a normal request is still answered."""
    idle: list[socket.socket] = []
    with served(str(_db(recorded))) as srv:
        host, port = "127.0.0.1", int(srv.url.rsplit(":", 1)[1].strip("/"))
        try:
            for _ in range(300):
                idle.append(socket.create_connection((host, port), timeout=30))
            for sock in idle:
                sock.setblocking(False)
            # past the cap the server closes the longest waiting: it has accepted all 300
            _wait(lambda: sum(_eof(s) for s in idle) >= 300 - MAX_CONNECTIONS)
            status, _headers, body = srv.get("/api/runs")
            assert status == 200 and json.loads(body)[0]["ruleset"] == "web"
            threads = len(os.listdir(f"/proc/{srv.proc.pid}/task"))
            fds = len(os.listdir(f"/proc/{srv.proc.pid}/fd"))
            assert threads <= WORKERS + 6, threads
            assert fds <= MAX_CONNECTIONS + 32, fds
        finally:
            for sock in idle:
                sock.close()


@contextmanager
def _gated(**options: Any) -> Iterator[tuple[GatedHTTPServer, int]]:
    """A GatedHTTPServer on 127.0.0.1 answering every GET with "ok", in this process."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = GatedHTTPServer(("127.0.0.1", 0), Handler, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def _get(port: int, request: bytes = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n") -> bytes:
    """What the server answers to `request` (to nothing, if empty) before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if request:
            sock.sendall(request)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


def test_an_idle_connection_is_closed_after_the_idle_timeout_and_holds_no_thread() -> None:
    """A connection that sends nothing is closed once the idle timeout has passed, and while
    it waits it holds no thread of the server."""
    before = threading.active_count()
    with _gated(idle_timeout=0.5, workers=2) as (_server, port):
        started = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(20)]
        try:
            assert _get(port).endswith(b"ok")
            assert threading.active_count() <= started  # no thread per connection
            for sock in idle:
                sock.setblocking(False)
            _wait(lambda: all(_eof(s) for s in idle))
        finally:
            for sock in idle:
                sock.close()
    assert started <= before + 4  # serve_forever's, the gate's and the two workers


def test_a_request_that_stops_half_way_frees_its_worker_after_the_request_timeout() -> None:
    """A client that sends half a request and stalls holds its worker only until the request
    timeout: the server's one worker then answers the next request."""
    with _gated(workers=1, request_timeout=0.5) as (_server, port):
        stalled = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            stalled.sendall(b"GET / HTTP/1.0\r\nHo")
            assert _get(port).endswith(b"ok")
            stalled.settimeout(30)
            _wait(lambda: _closed(stalled))  # its worker gave up on it
        finally:
            stalled.close()


def test_a_request_trickled_a_byte_at_a_time_is_cut_off_at_the_answer_deadline() -> None:
    """A client that keeps a request going a byte at a time, within the request timeout,
    holds its worker no longer than the answer deadline: the server ends the connection."""
    with _gated(workers=1, request_timeout=30, answer_deadline=1.0) as (_server, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            sock.sendall(b"GET / HTTP/1.0\r\n")
            sock.setblocking(False)

            def cut_off() -> bool:
                try:
                    sock.send(b"X")  # a header line that never ends
                    return _eof(sock)
                except OSError:  # reset, or a broken pipe
                    return True

            _wait(cut_off, timeout=60)
            assert _answered(port)  # the worker is free again
        finally:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    """The server has ended this connection (whatever it said before it)."""
    try:
        while data := sock.recv(4096):
            del data
        return True
    except TimeoutError:  # still open
        return False
    except OSError:  # reset
        return True


def test_past_the_connection_cap_with_none_idle_a_new_connection_gets_a_503() -> None:
    """When every held connection is being answered or waits for a worker, a new one is
    refused with a 503 and closed, and the server goes on answering afterwards."""
    with _gated(workers=1, max_connections=2, request_timeout=60) as (server, port):
        stalled = []
        try:
            for _ in range(2):  # ready (bytes sent) but incomplete: held, not idle
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(b"GET / HTTP/1.0\r\n")
                stalled.append(sock)
            _wait(lambda: server.held() == (0, 1, 1))  # one answered, one waits for it
            # the client sends nothing, so the refusal's close is not a reset hiding it
            assert _get(port, b"").startswith(b"HTTP/1.0 503")
        finally:
            for sock in stalled:
                sock.close()
        _wait(lambda: _answered(port), timeout=30)


def _answered(port: int) -> bool:
    """A GET is answered "ok" (not refused: a refusal may reset the connection)."""
    try:
        return _get(port).endswith(b"ok")
    except ConnectionResetError:
        return False


@pytest.mark.parametrize("content", ["version: 1\nname: x\njobs: {}\n", "just some text\n"])
def test_serving_a_db_file_that_is_not_sqlite_is_one_line_and_status_2(tmp_path: Path,
                                                                       content: str) -> None:
    """`rulesmon serve x.db` where x.db is a ruleset or text, not SQLite, stops with one line
    and status 2 and is never read as a ruleset."""
    target = tmp_path / "x.db"
    target.write_text(content, encoding="utf-8")
    for args in (("serve", str(target)), ("serve", "--db", str(target))):
        result = run_cli(*args, "--port", "0", timeout=30)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"rulesmon: {target}: not an SQLite database")
        assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
