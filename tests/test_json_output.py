"""Every JSON document rulesmon writes is valid JSON for a strict parser, also when facts hold
NaN or infinity (a loss that overflowed): such numbers are written as null, as the state file
always did."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rulesmon import jsonout
from rulesmon.config.loader import load_text
from rulesmon.engine import Engine
from rulesmon.testing import NullLog

from .test_notifications import Facts

ROOT = Path(__file__).resolve().parent.parent
NAN_LOG = Path(__file__).parent / "fixtures" / "logs" / "tqdm_nan.log"
RULESET = """\
version: 1
name: overflow
every: 1s
state_file: {path: state.json, fields: [job.source, log.loss, log.grad_norm, log.step]}
jobs:
  train:
    logs:
      - path: train.log
        preset: tqdm
        extract: {m: 'step=(?P<step>\\d+) loss=(?P<loss>\\S+) grad_norm=(?P<grad_norm>\\S+)'}
rules:
  - name: loss-not-finite
    when: log.loss > 1e300
    do: [log]
"""
NASTY = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.5,
         "nested": {"list": [math.nan, 2, {"deep": math.inf}], "tuple": (math.nan,)}}
CLEAN = {"nan": None, "inf": None, "ninf": None, "ok": 1.5,
         "nested": {"list": [None, 2, {"deep": None}], "tuple": [None]}}


def strict(text: str | bytes) -> Any:
    """Parsed as a strict parser does: `NaN`, `Infinity` and `-Infinity` are refused."""
    return jsonout.loads_strict(text)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rulesmon", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, check=False)


@pytest.fixture
def overflow(tmp_path: Path) -> Path:
    """A logs-only job over the real log of a training run whose loss overflowed to inf and
    whose gradient norm became nan."""
    (tmp_path / "train.log").write_bytes(NAN_LOG.read_bytes())
    path = tmp_path / "r.yaml"
    path.write_text(RULESET, encoding="utf-8")
    return path


def test_the_strict_parser_refuses_nan() -> None:
    """The parser these tests use refuses what Python's `json.dumps` writes for NaN and inf,
    so a test that parses with it would catch a bare NaN."""
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        with pytest.raises(ValueError, match="not JSON"):
            strict(text)
    assert strict(json.dumps(CLEAN)) == CLEAN


def test_dumps_writes_non_finite_numbers_as_null() -> None:
    """The one helper writes NaN and both infinities as null at any depth, keeps every other
    value, and writes values that are not JSON as their text."""
    assert strict(jsonout.dumps(NASTY)) == CLEAN
    assert strict(jsonout.dumps(NASTY, indent=2, sort_keys=True)) == CLEAN
    assert strict(jsonout.dumps({"path": Path("/x"), "n": 3})) == {"path": "/x", "n": 3}
    assert jsonout.dumps([1.25, "a"], separators=(",", ":")) == '[1.25,"a"]'


def test_facts_json_is_strict_with_nan_and_inf(overflow: Path) -> None:
    """`rulesmon facts --format json` on a logs-only job whose log shows `loss=inf
    grad_norm=nan` writes them as null, and the job's other log facts as they are."""
    result = run_cli("facts", "--format", "json", str(overflow), cwd=overflow.parent)
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    rows = strict(result.stdout)
    facts = rows["train/-"]["facts"]
    assert facts["job.source"] == "none" and facts["log.available"] is True
    assert (facts["log.step"], facts["log.loss"], facts["log.grad_norm"]) == (100, None, None)
    assert (facts["log.done"], facts["log.total"]) == (100, 100)
    assert rows["train/-"]["unknown"] == []


def test_state_file_and_json_log_of_a_run_are_strict(overflow: Path) -> None:
    """A real `rulesmon run --once` over that log writes its state file and its JSON log as
    strict JSON, the non-finite facts as null."""
    log_json = overflow.parent / "run.jsonl"
    result = run_cli("run", "--once", "--log-json", str(log_json), str(overflow),
                     cwd=overflow.parent)
    assert result.returncode in (0, 1), result.stderr
    state = strict((overflow.parent / "state.json").read_text(encoding="utf-8"))
    job = state["jobs"]["train/-"]
    assert (job["log.step"], job["log.loss"], job["log.grad_norm"]) == (100, None, None)
    lines = log_json.read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        strict(line)


def test_json_log_writes_non_finite_event_values_as_null(tmp_path: Path) -> None:
    """An event logged with a NaN or infinite value is a strict JSON line in the JSON log."""
    from rulesmon import logsetup

    path = tmp_path / "log.jsonl"
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        logsetup.setup("info", path).info("figures", **NASTY)
        for handler in root.handlers:
            handler.flush()
        event = strict(path.read_text(encoding="utf-8").splitlines()[-1])
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()
    assert {k: event[k] for k in CLEAN} == CLEAN


def test_template_tojson_is_strict() -> None:
    """A notification template's `tojson` (a JSON webhook body built by hand) writes NaN and
    infinity as null."""
    from rulesmon.templates import environment

    text = environment().from_string("{{ facts | tojson }}").render(facts=NASTY)
    assert strict(text) == json.loads(json.dumps(CLEAN, sort_keys=True))


@pytest.fixture
def history_db(tmp_path: Path) -> Iterator[Path]:
    """A history database whose job row, sample and details hold inf (SQLite keeps inf; it
    turns NaN into NULL)."""
    db = tmp_path / "s.db"
    source = Facts()  # a scripted scheduler; its facts hold infinite figures
    source.rows["train/1"] = {
        "job.key": "train", "job.source": "slurm", "job.id": "1", "job.state": "RUNNING",
        "job.name": "ft", "job.cpu_eff": math.inf, "job.cpu_pct": math.inf,
        "job.time_left": math.inf, "job.elapsed": 5.0, "progress.done": 3,
        "progress.total": 10, "progress.rate": math.inf}
    text = ("version: 1\nname: sched\nevery: 1s\nhistory: {sample_every: 1s}\njobs:\n"
            "  train:\n    slurm: {user: a}\n")
    engine = Engine(load_text(text), state_path=db, log=NullLog(), probes=[source])
    try:
        engine.tick(1000.0)
        source.rows["train/1"].update({"job.state": "COMPLETED", "job.exit_code": 0})
        engine.tick(1002.0)
    finally:
        engine.close()
    yield db


@pytest.mark.parametrize("args", [("history",), ("show", "train/1"), ("stats",)])
def test_history_views_json_is_strict(history_db: Path, args: tuple[str, ...]) -> None:
    """`history`, `show` and `stats --format json` over a database holding inf write strict
    JSON."""
    result = run_cli(*args, "--db", str(history_db), "--format", "json", cwd=history_db.parent)
    assert result.returncode == 0, result.stderr
    assert "Infinity" not in result.stdout
    strict(result.stdout)


def test_history_show_json_has_null_for_inf(history_db: Path) -> None:
    """The infinite CPU share, rate and time left of the recorded job are null in its JSON."""
    from rulesmon.history.views import show
    from rulesmon.web.server import App

    status, _, body = App(history_db, log=io.StringIO()).handle("/api/job/train/1")
    assert status == 200
    job = strict(body)
    assert job["details"]["job.time_left"] is None
    assert job["samples"][0]["cpu_pct"] is None and job["progress"][0]["rate"] is None
    out = io.StringIO()
    show(job, "json", out)
    assert strict(out.getvalue()) == job


@pytest.mark.parametrize("target", ["/api/job/train/1", "/api/stats", "/api/runs",
                                    "/api/run/1", "/api/tracked", "/api/nothing"])
def test_web_json_is_strict(history_db: Path, target: str) -> None:
    """Every JSON answer of the web server, errors included, is strict JSON."""
    from rulesmon.web.server import App

    status, kind, body = App(history_db, log=io.StringIO()).handle(target)
    assert kind.startswith("application/json")
    assert b"Infinity" not in body and b"NaN" not in body, (status, body[:200])
    strict(body)


#: Where `json.dumps` may still be called directly, and why its output is safe or internal.
DIRECT = {
    "rulesmon/jsonout.py": "the helper itself",
    "rulesmon/config/schema.py": "the generated JSON schema: no float but bounds from the code",
    "rulesmon/diagnostics.py": "lint findings: text and line numbers only",
    "rulesmon/probes/slurm_parse.py": "quoting a malformed squeue/sacct record in an error",
    "rulesmon/store.py": "rulesmon's own state database, read back by Python (NaN survives)",
}


def test_json_leaves_rulesmon_only_through_the_helper() -> None:
    """No module but the listed ones calls `json.dumps`/`json.dump` or builds its own JSON
    encoder: everything else writes through `jsonout.dumps`."""
    direct = re.compile(r"\bjson\.(dumps?|JSONEncoder)\b|JSONRenderer\(\)")
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "rulesmon").rglob("*.py")
                   if direct.search(p.read_text(encoding="utf-8")))
    assert [p for p in found if p not in DIRECT] == []
