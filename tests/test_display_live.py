"""Real runs: `rulesmon run` without a terminal prints plain lines; `rulesmon run --live` in a
pseudo-terminal (and in tmux, when installed) draws the dashboard, updates it, follows a
resize and leaves the final frame on the screen."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, run_cli

WORKER = """\
import json, os, sys, time
w, steps, code = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"out{w}", exist_ok=True)
for i in range(1, steps + 1):
    time.sleep(0.15)
    print(f"Processed {i * 10}/{steps * 10} items - 66.0 items/s", flush=True)
    with open(f"out{w}/part.jsonl", "a") as f:
        f.write(json.dumps({"i": i}) + "\\n")
    with open(f"gpu_{w}.tmp", "w") as f:  # one sample, replaced whole
        f.write("timestamp,gpu_util,gpu_mem_used,gpu_mem_total\\n")
        f.write(f"{time.time():.3f},{90 + w},{14.5 + w},16\\n")
    os.replace(f"gpu_{w}.tmp", f"gpu_{w}.csv")
sys.exit(code)
"""

RULESET = """\
version: 1
name: disp
every: 0.2s
jobs:
  train:
    local:
      command: ["{python}", "worker.py", "{{{{ worker }}}}", "{steps}", "{{{{ worker * 3 }}}}"]
      workers: 2
      stdout: "w{{{{ worker }}}}.log"
    logs:
      - path: "w{{{{ worker }}}}.log"
        preset: [python-logging]
    files:
      outputs: {{root: "out{{{{ worker }}}}", glob: "*.jsonl"}}
    gpu: {{csv: "gpu_{{{{ worker }}}}.csv"}}
    progress: {{done: log.done, total: log.total}}
rules:
  - name: worker-failed
    when: job.terminal and job.exit_code != 0
    severity: critical
    resolve: false
    do: [log]
    message: "worker {{{{ worker.index }}}} failed with exit code {{{{ job.exit_code }}}}"
"""

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


def make_run(tmp_path: Path, steps: int) -> Path:
    (tmp_path / "worker.py").write_text(WORKER)
    ruleset = tmp_path / "ruleset.yaml"
    ruleset.write_text(RULESET.format(python=sys.executable, steps=steps))
    return ruleset


def test_run_without_terminal_prints_plain_lines(tmp_path: Path) -> None:
    """`rulesmon run` with stdout on a pipe prints SLURM-style timestamped lines: checks,
    state changes, compute metrics, GPU status every 5th tick, the alert and ALL_COMPLETE."""
    ruleset = make_run(tmp_path, steps=12)
    result = run_cli("run", str(ruleset), "--state", str(tmp_path / "s.db"), cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 1, result.stderr  # worker 1 exits 3
    stamp = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] "
    assert re.search(stamp + r"STATUS_CHECK: tick 1, polled .*\n  Result: 2 jobs found - "
                     r"0 PENDING, 2 RUNNING, 0 COMPLETED\n", out), out
    assert re.search(stamp + r"STATE_CHANGE: train/1\n  Previous: RUNNING\n  Current: FAILED\n"
                     r"  Job ID: \d+\n  Ended: .*\n  Elapsed: \d+s\n  Exit code: 3", out), out
    assert re.search(stamp + r"STATE_CHANGE: train/0\n  Previous: RUNNING\n"
                     r"  Current: COMPLETED\n", out), out
    assert re.search(stamp + r"COMPUTE_METRICS: train/0\n  Job ID: \d+\n  Wall time: \d+s\n"
                     r"  Memory: [\d.]+ MB\n  CPU time: ", out), out
    assert re.search(stamp + r"RESOURCE_STATUS: train/1\n  GPU Utilization: 91% \| "
                     r"GPU Memory: 15\.5 GB/16\.0 GB", out), out
    assert re.search(stamp + r"ALERT: worker-failed train/1 \(critical\)\n"
                     r"  worker 1 failed with exit code 3\n", out), out
    assert re.search(stamp + r"ALL_COMPLETE: Monitoring finished\n  Summary: 2 jobs - "
                     r"1 COMPLETED, 1 FAILED\n  Succeeded: 1, failed: 1\n  Total time: \d+s\n$",
                     out), out
    assert "state_change" in result.stderr  # the structured log stays on stderr


def test_live_without_terminal_falls_back_to_plain_lines(tmp_path: Path) -> None:
    """`--live` with stdout on a pipe says why and prints the plain lines instead."""
    ruleset = make_run(tmp_path, steps=2)
    result = run_cli("run", str(ruleset), "--live", "--once", "--state",
                     str(tmp_path / "s.db"), cwd=tmp_path)
    assert "--live needs a terminal on stdout; printing plain lines" in result.stderr
    assert "STATUS_CHECK: tick 1" in result.stdout
    assert "STOPPED: monitoring ended before every job finished (exit code 0)" in result.stdout


def _winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@contextlib.contextmanager
def in_pty(argv: list[str], cwd: Path, rows: int = 24,
           cols: int = 80) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    master, slave = pty.openpty()
    _winsize(slave, rows, cols)
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "", "LINES": ""}
    env.pop("COLUMNS")
    env.pop("LINES")
    proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.poll() is None:  # a failed test: Ctrl+C stops rulesmon and its workers
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        os.close(master)


def _read(master: int, until: float) -> bytes:
    out = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    return out


def test_live_dashboard_in_a_pseudo_terminal(tmp_path: Path) -> None:
    """In a terminal, `run --live` draws full-screen frames that advance tick by tick, keeps
    log lines off the screen, follows a resize, and leaves the final frame behind."""
    ruleset = make_run(tmp_path, steps=16)
    argv = [sys.executable, "-m", "rulesmon", "run", "--live", str(ruleset), "--state",
            str(tmp_path / "s.db")]
    with in_pty(argv, tmp_path) as (proc, master):
        first = b""  # until the first whole frame is drawn, however slow the start-up
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not re.search(
                r"╭─ rulesmon · disp[^╮]*╮", ANSI.sub("", first.decode("utf-8", "replace"))):
            first += _read(master, time.monotonic() + 0.2)
        _winsize(master, 40, 120)
        os.killpg(proc.pid, signal.SIGWINCH)
        rest = b""
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            rest += _read(master, time.monotonic() + 0.5)
        rest += _read(master, time.monotonic() + 0.5)
        code = proc.wait(timeout=10)
    raw = (first + rest).decode("utf-8", "replace")
    assert code == 1, raw[-2000:]
    assert "\x1b[?1049h" in raw and "\x1b[?1049l" in raw  # alternate screen in, then out
    text = ANSI.sub("", raw)
    ticks = [int(t) for t in re.findall(r"tick (\d+) every", text)]
    assert len(set(ticks)) >= 3 and ticks == sorted(ticks), ticks
    assert "rulesmon · disp" in text and "─ Jobs" in text and "Workers and GPUs" in text
    assert "✓ train/0" in text and "✗ train/1" in text
    # frames before the resize are 80 cells wide, later ones 120
    first_text = ANSI.sub("", first.decode("utf-8", "replace"))
    assert re.search(r"╭─ rulesmon · disp[^╮]*╮", first_text)
    assert max(len(m) for m in re.findall(r"╭─ rulesmon[^╮]*╮", first_text)) == 80
    assert max(len(m) for m in re.findall(r"╭─ rulesmon[^╮]*╮", text)) == 120
    # the console log was routed away from the screen while live
    assert "state_change" not in text and "alert_firing" not in text
    # after the alternate screen: the final frame and the exit line
    after = ANSI.sub("", raw[raw.rindex("\x1b[?1049l"):])
    assert "finished" in after and "1 ok, 1 failed" in after
    assert "worker 1 failed with exit code 3" in after
    assert "exit code 1 · 2 job instance(s)" in after


def _tmux(sock: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", *args], capture_output=True,
                          text=True, timeout=10, check=False)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_dashboard_in_tmux_fits_the_screen(tmp_path: Path) -> None:
    """On a real terminal screen (tmux) the dashboard fills 80x24 exactly, updates in place,
    and redraws at 120x40 after the window is resized."""
    ruleset = make_run(tmp_path, steps=200)
    sock = f"rulesmon-test-{os.getpid()}"
    command = (f"cd {tmp_path} && TERM=xterm-256color {sys.executable} -m rulesmon run --live "
               f"{ruleset} --state {tmp_path / 's.db'}; sleep 30")
    env_root = str(ROOT)
    started = _tmux(sock, "new-session", "-d", "-s", "t", "-x", "80", "-y", "24", "-c",
                    env_root, command)
    assert started.returncode == 0, started.stderr
    stopped = False
    try:
        def screen() -> list[str]:
            return _tmux(sock, "capture-pane", "-p", "-t", "t").stdout.rstrip("\n").split("\n")

        small: list[list[str]] = []
        deadline = time.monotonic() + 60  # a bound for a stuck run, not a speed target
        while time.monotonic() < deadline and len(small) < 3:
            lines = screen()
            if lines and lines[0].startswith("╭─ rulesmon · disp · tick") and \
                    (not small or lines[0] != small[-1][0]):
                small.append(lines)
            time.sleep(0.3)
        assert len(small) == 3, small
        for lines in small:
            assert len(lines) == 24 and lines[-1].startswith("╰"), lines
            assert all(len(line) <= 80 for line in lines)
            assert any(line.startswith("│ ✓ train/0") for line in lines)
        resized = _tmux(sock, "resize-window", "-t", "t", "-x", "120", "-y", "40")
        assert resized.returncode == 0, resized.stderr
        big: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = screen()
            if len(lines) == 40 and lines[0].startswith("╭") and len(lines[0]) == 120:
                big = lines
                break
            time.sleep(0.3)
        assert big, screen()
        assert big[-1].startswith("╰") and big[-1].endswith("╯")
        # Ctrl+C: the run stops its workers and leaves the final frame and exit code, the
        # frame whole (its top border too) above a one-line exit line
        stopped = _interrupt(sock, screen)
        assert stopped, screen()
        final = screen()
        exit_line = next(i for i, line in enumerate(final) if "exit code 130" in line)
        tops = [i for i, line in enumerate(final) if line.startswith("╭─ rulesmon · disp")]
        assert tops and final[exit_line - 1].startswith("╰"), final
        assert exit_line + 1 == len(final) or not final[exit_line + 1].strip(), final
    finally:
        if not stopped:
            _interrupt(sock, lambda: _tmux(sock, "capture-pane", "-p", "-t", "t").stdout
                       .split("\n"))
        _tmux(sock, "kill-server")


def _interrupt(sock: str, screen: Callable[[], list[str]]) -> bool:
    """Ctrl+C in the pane; True once rulesmon has printed its exit line."""
    _tmux(sock, "send-keys", "-t", "t", "C-c")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any("exit code 130" in line for line in screen()):
            return True
        time.sleep(0.3)
    return False
