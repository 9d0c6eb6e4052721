"""Secrets interpolated from the environment reach only the message delivered to its target.

Each end-to-end test runs the real `rulesmon` (a subprocess) against a real HTTP receiver on
127.0.0.1 (tests/receiver.py) and then searches everything rulesmon wrote itself for the value:
stdout, stderr, the JSON log, every table of the state database (read raw with sqlite3, and the
database files' bytes), the state file, `rulesmon history`/`show`/`facts` and the web pages and
JSON of `rulesmon serve`. The policy (which values are secret, docs/security.md) is tested on
both sides: a secret-named or token-like value is masked, `${USER}`-like values are not.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rulesmon.lint import lint_file
from rulesmon.redact import Secrets, value_is_secret

from ..conftest import ROOT, run_cli
from ..receiver import Receiver

#: A realistic fake AWS secret access key (the shape AWS documents, not a real key).
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq3Xk9Tn2w"
#: Its distinctive pieces: none of them may appear either.
PIECES = ("wJalrXUtnFEMI", "bPxRfiCYzq3Xk9Tn2w")
OWNER = "alice"

JOB = """\
import sys
print("training with key " + sys.argv[2], flush=True)
sys.exit(3)
"""

RULESET = """\
version: 1
name: secrets
every: 0.3s
state_file: {{path: state.json, fields: [job.state, job.exit_code, log.tail]}}
notify:
  hook: "${{HOOK_URL}}"
jobs:
  train:
    local:
      command: ["{python}", "job.py", "--key", "${{AWS_SECRET_ACCESS_KEY}}"]
      stdout: job.log
    logs:
      - path: job.log
        tail: 5
rules:
  - name: crashed
    when: job.terminal and job.exit_code != 0
    resolve: false
    notify: hook
    title: "train of ${{OWNER}} failed"
    message: "exit {{{{ job.exit_code }}}}; rotate ${{AWS_SECRET_ACCESS_KEY}} now"
"""

#: A job made of a flag file: firing while it exists (the kill -9 test).
FLAGGED = """\
version: 1
name: flagged
every: 0.2s
notify:
  hook:
    urls: ["${HOOK_URL}"]
    retry_max: 0.5s
jobs:
  w:
    files:
      f: {glob: "*.flag"}
rules:
  - name: flagged
    when: files.f.count > 0
    once: true
    resolve: false
    notify: hook
    message: "the key is ${AWS_SECRET_ACCESS_KEY}"
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_SECRET_ACCESS_KEY", "OWNER")}
    env.update(extra)
    return env


def _wait(cond: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _leaks(text: str) -> list[str]:
    """The secret, or a distinctive piece of it, where it appears in the text."""
    return [s for s in (SECRET, *PIECES) if s in text]


def _dump_db(path: Path) -> str:
    """Every row of every table, as text, read with sqlite3."""
    con = sqlite3.connect(str(path))
    try:
        out = []
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                out.append(f"{table}: {row!r}")
        return "\n".join(out)
    finally:
        con.close()


def _raw_files(folder: Path, prefix: str) -> bytes:
    """The bytes of the database and its WAL/journal files (free pages included)."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob(prefix + "*")))


def _serve_pages(db: Path, paths: list[str]) -> dict[str, str]:
    """`rulesmon serve DB` on 127.0.0.1, each path fetched, then stopped with SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "serve", str(db), "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pages: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        ready, _w, _x = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, line
        for path in paths:
            with urllib.request.urlopen(found.group(0) + path.lstrip("/"), timeout=30) as resp:
                pages[path] = resp.read().decode("utf-8")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    pages["serve output"] = out + err
    return pages


def test_interpolated_secret_reaches_only_the_delivered_message(tmp_path: Path) -> None:
    """A secret interpolated into a message (and into a job's command line, so into its log
    tail) is delivered raw to the receiver, and appears nowhere rulesmon writes itself: not on
    stdout or stderr, the JSON log, any table or byte of the state database, the state file,
    `rulesmon history`/`show`/`facts`, nor the web pages and JSON."""
    (tmp_path / "job.py").write_text(JOB, encoding="utf-8")
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text(RULESET.format(python=sys.executable), encoding="utf-8")
    db = tmp_path / "s.db"
    with Receiver() as rx:
        env = _env(HOOK_URL=rx.url(), AWS_SECRET_ACCESS_KEY=SECRET, OWNER=OWNER)
        run = subprocess.run([sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state",
                              str(db), "--log-json", str(tmp_path / "log.json"), "-v"],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=180, check=False)
        assert run.returncode == 1, run.stderr[-3000:]  # the job failed
        bodies = [r["body"] for r in rx.received]
    # the target gets the real message
    assert len(bodies) == 1, bodies
    assert SECRET in bodies[0]["message"] and f"train of {OWNER} failed" in bodies[0]["title"]
    # rulesmon's own outputs do not
    outputs = {"stdout": run.stdout, "stderr": run.stderr,
               "json log": (tmp_path / "log.json").read_text(encoding="utf-8"),
               "state db rows": _dump_db(db),
               "state file": (tmp_path / "state.json").read_text(encoding="utf-8")}
    raw = _raw_files(tmp_path, "s.db")
    assert SECRET.encode() not in raw and all(p.encode() not in raw for p in PIECES)
    history = run_cli("history", "--db", str(db), "--format", "json")
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    outputs["history"] = history.stdout + history.stderr
    outputs["history table"] = run_cli("history", "--db", str(db)).stdout
    instance = rows[0]["instance"]
    for fmt in ("table", "json"):
        show = run_cli("show", instance, "--db", str(db), "--format", fmt)
        assert show.returncode == 0, show.stderr
        outputs[f"show {fmt}"] = show.stdout + show.stderr
    for fmt in ("text", "json"):
        facts = run_cli("facts", str(ruleset), "--format", fmt, cwd=tmp_path, env=env)
        assert facts.returncode == 0, facts.stderr
        outputs[f"facts {fmt}"] = facts.stdout + facts.stderr
    run_id = _dump_db(db).count("runs: (")
    pages = _serve_pages(db, ["/", "/api/runs", f"/run/{run_id}", f"/api/run/{run_id}",
                              f"/job/{instance}", f"/api/job/{instance}", "/api/stats"])
    outputs.update({f"web {k}": v for k, v in pages.items()})
    leaked = {name: _leaks(text) for name, text in outputs.items() if _leaks(text)}
    assert leaked == {}
    # the secret was there to leak: masked where it was (log tail, event, command line)
    assert "training with key ***" in outputs["state db rows"]
    assert "rotate *** now" in outputs["state db rows"]
    assert "training with key ***" in outputs["facts text"]
    assert "training with key ***" in outputs["state file"]
    assert "rotate *** now" in outputs["stdout"]  # the plain lines' ALERT
    # and a value that is not secret (${OWNER} = alice) is shown as it is
    assert f"train of {OWNER} failed" in outputs["state db rows"]


def test_live_dashboard_shows_the_secret_masked(tmp_path: Path) -> None:
    """`rulesmon run --live` in a pseudo-terminal: its frames (the alert message logged, the
    job's log tail) show `***` where the secret was, never the value."""
    (tmp_path / "job.py").write_text(JOB, encoding="utf-8")
    ruleset = tmp_path / "r.yaml"
    text = RULESET.format(python=sys.executable).replace("    notify: hook\n",
                                                          "    do: [log]\n")
    ruleset.write_text(text, encoding="utf-8")
    env = _env(HOOK_URL="json://127.0.0.1:9/hook", AWS_SECRET_ACCESS_KEY=SECRET, OWNER=OWNER,
               TERM="xterm-256color")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "run", "--live", str(ruleset),
                             "--state", str(tmp_path / "s.db")], cwd=tmp_path, stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    raw = b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _w, _x = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                raw += chunk
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        os.close(master)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]", "",
                    raw.decode("utf-8", "replace"))
    assert proc.returncode == 1, screen[-3000:]
    assert "rotate *** now" in screen, screen[-3000:]
    assert _leaks(screen) == []


def test_kill_9_with_a_delivery_pending_still_delivers_the_real_message(tmp_path: Path) -> None:
    """A run killed with SIGKILL while its message is owed (the receiver failing) leaves the
    outbox sealed (`${AWS_SECRET_ACCESS_KEY}`, never the value); the restarted run delivers the
    real message, the value taken from its own environment."""
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text(FLAGGED, encoding="utf-8")
    (tmp_path / "on.flag").write_text("x")
    db = tmp_path / "s.db"
    with Receiver() as rx:
        rx.status = 500  # the service is down: the message stays owed
        env = _env(HOOK_URL=rx.url(), AWS_SECRET_ACCESS_KEY=SECRET)
        proc = subprocess.Popen([sys.executable, "-m", "rulesmon", "run", str(ruleset),
                                 "--state", str(db)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            def attempted() -> bool:
                if not db.exists() or proc.poll() is not None:
                    return proc.poll() is not None
                try:
                    return "attempts: (" in _dump_db(db)
                except sqlite3.OperationalError:  # tables not created yet
                    return False

            _wait(attempted, 120)
            assert proc.poll() is None, proc.communicate()[1][-2000:]
        finally:
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        assert rx.received == []
        rows = _dump_db(db)
        assert "the key is ${AWS_SECRET_ACCESS_KEY}" in rows
        assert _leaks(rows) == [] and _leaks((out + err).decode()) == []
        assert SECRET.encode() not in _raw_files(tmp_path, "s.db")
        rx.status = 200
        (tmp_path / "on.flag").unlink()
        again = subprocess.run([sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state",
                                str(db), "--once"], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=120, check=False)
        assert again.returncode == 0, again.stderr[-3000:]
        assert [r["body"]["message"] for r in rx.received] == [f"the key is {SECRET}"]
        assert _leaks(again.stdout + again.stderr) == []
        left = sqlite3.connect(str(db)).execute(
            "SELECT count(*) FROM outbox WHERE status != 'delivered'").fetchone()[0]
        assert left == 0


def test_notify_url_token_is_never_printed_in_delivery_failures(tmp_path: Path) -> None:
    """A webhook URL's token (here a literal URL in the file, to a port where nothing listens)
    appears neither in the delivery failures logged on stderr and in the JSON log nor in the
    state database's attempts."""
    token = "T0KEN9f8e7d6c5b4a3Zz"
    with Receiver() as rx:  # a free port, then closed: connections are refused
        port = rx.port
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text(FLAGGED.replace("${HOOK_URL}", f"json://127.0.0.1:{port}/{token}")
                       .replace("${AWS_SECRET_ACCESS_KEY}", "gone"), encoding="utf-8")
    (tmp_path / "on.flag").write_text("x")
    db = tmp_path / "s.db"
    run = subprocess.run([sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state",
                          str(db), "--once", "--log-json", str(tmp_path / "log.json"), "-v"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "notify_failed" in run.stderr or "notifications_pending" in run.stderr, run.stderr
    for text in (run.stdout, run.stderr, (tmp_path / "log.json").read_text(encoding="utf-8"),
                 _dump_db(db)):
        assert token not in text
    lint = run_cli("lint", str(ruleset))
    assert token not in lint.stdout + lint.stderr


def test_lint_reports_a_secret_in_a_message_as_rm690(tmp_path: Path) -> None:
    """`rulesmon lint` points at a secret-named `${VAR}` in a notification message (RM690,
    file:line:col), without printing its value."""
    ruleset = tmp_path / "r.yaml"
    (tmp_path / "job.py").write_text(JOB, encoding="utf-8")
    ruleset.write_text(RULESET.format(python=sys.executable), encoding="utf-8")
    diags = lint_file(ruleset, {"HOOK_URL": "json://127.0.0.1:9/hook",
                                "AWS_SECRET_ACCESS_KEY": SECRET, "OWNER": OWNER})
    found = [(d.line, d.col) for d in diags if d.code == "RM690"]
    assert found == [(21, 14)]  # the message; the title's ${OWNER} is not secret
    result = run_cli("lint", str(ruleset), env=_env(HOOK_URL="json://127.0.0.1:9/hook",
                                                     AWS_SECRET_ACCESS_KEY=SECRET, OWNER=OWNER))
    assert f"{ruleset}:21:14: warning RM690" in result.stdout
    assert _leaks(result.stdout + result.stderr) == []


def test_rule_test_diffs_are_masked(tmp_path: Path) -> None:
    """`rulesmon test` prints a mismatching rendered message with the secret masked."""
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text("""\
version: 1
name: t
every: 10s
jobs:
  train:
    slurm: {user: alice}
rules:
  - name: hot
    when: gpu.temp > 80
    do: [log]
    message: "hot; key ${AWS_SECRET_ACCESS_KEY}"
""", encoding="utf-8")
    (tmp_path / "r.test.yaml").write_text("""\
interval: 10s
tests:
  - name: the message differs
    series:
      train/1:
        gpu.temp: 85
    expect:
      - {tick: 1, rule: hot, instance: train/1, kind: fire, message: "cold"}
""", encoding="utf-8")
    result = run_cli("test", str(ruleset), env=_env(AWS_SECRET_ACCESS_KEY=SECRET))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "hot; key ***" in result.stdout
    assert _leaks(result.stdout + result.stderr) == []


def test_log_lines_and_tracebacks_are_masked(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Console and JSON log lines mask the active secrets in values, nested values and an
    exception's traceback."""
    from rulesmon import logsetup, redact

    secrets = Secrets()
    secrets.add(SECRET, "AWS_SECRET_ACCESS_KEY")
    before = redact.active()
    redact.activate(secrets)
    try:
        log = logsetup.setup("info", tmp_path / "log.json", color=False)
        log.warning("leaky", value=f"key {SECRET}", nested={"k": [SECRET]})
        try:
            raise RuntimeError(f"failed with {SECRET}")
        except RuntimeError:
            log.exception("crashed")
    finally:
        redact.activate(before)
    err = capsys.readouterr().err
    text = (tmp_path / "log.json").read_text(encoding="utf-8")
    assert "key ***" in err and "failed with ***" in err and "failed with ***" in text
    assert _leaks(err) == [] and _leaks(text) == []


@pytest.mark.parametrize(("name", "value"), [
    ("AWS_SECRET_ACCESS_KEY", SECRET),
    ("GH_TOKEN", "ghp_abc123def"),
    ("DB_PASSWORD", "hunter22"),
    ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/xyz"),
    ("NOTIFY", "json://127.0.0.1:8080/some/hook/path"),  # any URL
    ("FOO", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),  # token-shaped, any name
])
def test_secret_values_are_masked(name: str, value: str) -> None:
    """A secret-named variable's value, a URL or a token-shaped value is a secret."""
    secrets = Secrets()
    secrets.add(value, name)
    assert value_is_secret(name, value)
    assert value not in secrets.scrub(f"x {value} y")


@pytest.mark.parametrize(("name", "value"), [
    ("USER", "alice"),
    ("OWNER", "alice"),
    ("HOME", "/home/alice"),
    ("SCRATCH", "/scratch/alice/runs/2026-12-07"),
    ("NTASKS", "128"),
    ("API_PIN", "12345678"),  # a number is never masked (it would break JSON text)
    ("API_KEY", "abc"),  # shorter than MIN_NAMED: masking it would mask common text
    ("CONDA_DEFAULT_ENV", "pytorch-2.1-cuda12"),
])
def test_plain_values_are_not_masked(name: str, value: str) -> None:
    """User names, paths, numbers and short values stay readable in every output."""
    secrets = Secrets()
    secrets.add(value, name)
    assert not value_is_secret(name, value)
    assert secrets.scrub(f"x {value} y") == f"x {value} y"


def test_seal_and_unseal_round_trip() -> None:
    """The outbox form names each secret's variable, keeps a literal `${` distinct, and
    unseals to the real text from the environment when this process did not interpolate it."""
    secrets = Secrets()
    secrets.add(SECRET, "AWS_SECRET_ACCESS_KEY")
    text = f"literal ${{HOME}} and {SECRET}"
    sealed = secrets.seal(text)
    assert sealed == "literal $${HOME} and ${AWS_SECRET_ACCESS_KEY}"
    assert secrets.unseal(sealed) == text
    fresh = Secrets()  # a restarted process that has the variable only in its environment
    assert fresh.unseal(sealed, {"AWS_SECRET_ACCESS_KEY": SECRET}) == text
    missing: list[str] = []
    assert fresh.unseal(sealed, {}, missing) == "literal ${HOME} and ${AWS_SECRET_ACCESS_KEY}"
    assert missing == ["AWS_SECRET_ACCESS_KEY"]
