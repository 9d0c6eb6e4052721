"""The README's first command, and a first real delivery through apprise."""

from __future__ import annotations

import time
from pathlib import Path

from .conftest import run_cli
from .receiver import Receiver


def test_demo_shows_launch_progress_crash_and_summary(tmp_path: Path) -> None:
    """`rulesmon demo` launches the workers, reports progress and checkpoints, catches the
    crashed worker with its log, and ends with the summary and exit 0."""
    result = run_cli("demo", "--dir", str(tmp_path / "demo"), timeout=120)
    err = result.stderr
    assert result.returncode == 0, err[-3000:]
    assert "all 3 workers are up" in err
    assert "rule=halfway" in err and "items/s, ETA" in err
    assert "rule=checkpoint-saved" in err
    assert "worker 2 crashed with exit code 1, diagnosis oom: out of memory" in err
    assert "CUDA out of memory" in err
    assert "3 job instance(s): 2 COMPLETED, 1 FAILED" in err
    assert "Traceback" not in err.split("crashed")[0]


def test_notify_delivers_to_a_real_receiver(tmp_path: Path) -> None:
    """A notify action reaches an HTTP receiver on 127.0.0.1 through apprise, and the
    webhook URL never appears in the output."""
    with Receiver() as rx:
        ruleset = tmp_path / "n.yaml"
        ruleset.write_text(
            "version: 1\nname: n\nevery: 0.2s\nnotify:\n  hook: ${HOOK}\njobs:\n  sim:\n"
            "    files:\n      out: {glob: '*.txt'}\nrules:\n  - name: output-appeared\n"
            "    when: files.out.count > 0\n    notify: hook\n"
            "    title: 'new output'\n    message: '{{ files.out.count }} file(s)'\n",
            encoding="utf-8")
        (tmp_path / "a.txt").write_text("x")
        import os

        env = dict(os.environ, HOOK=rx.url())
        result = run_cli("run", str(ruleset), "--once", "--state", str(tmp_path / "s.db"),
                         env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 10
        while not rx.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(rx.received) == 1
        body = rx.received[0]["body"]
        assert body["title"] == "new output" and body["message"] == "1 file(s)"
        assert str(rx.port) not in result.stderr + result.stdout
