"""The fault soak (benchmarks/soak.py), short and small: a fake scheduler that hangs, fails
and prints garbage, a webhook down for a third of the run, and SIGKILLs with restarts lose no
notification and leak no fd or thread, while jobs end and new job ids replace them. Only the
counting promises are asserted here; memory and tick time are the soak's report, judged in
the long run by hand (this one is too short for a steady state)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak_loses_nothing_and_leaks_no_fd_or_thread(tmp_path: Path) -> None:
    """60 s of 300 job slots (about 1,350 jobs) x 20 rules with scheduler faults, a receiver
    outage and 3 kills: every owed notification is delivered once deduplicated on its id, an
    id never carries two payloads, a message is sent again only for a delivery a kill
    interrupted, exit codes in messages are the jobs' own, fds and threads do not grow, and
    the run ends with exit 1."""
    out = tmp_path / "soak.json"
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--duration", "60s", "--jobs",
         "300", "--rules", "20", "--every", "1", "--kills", "3", "--sample-every", "0.5",
         "--warmup-ticks", "5", "--dir", str(work), "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    figures = {k: v for k, v in result.items() if k not in ("stderr_tail", "lives")}
    assert result["kills"] == 3, figures
    assert result["owed"] > 300, figures
    assert result["lost"] == 0, figures
    assert result["payload_conflicts"] == 0, figures
    assert result["sent_again"] <= result["kills"], figures
    assert result["notifications_under_two_ids"] == 0, figures
    assert result["wrong_content"] == 0, figures
    assert result["fd_growth"] <= 0, result["lives"]
    assert result["thread_growth"] <= 0, result["lives"]
    assert result["exit_code"] == 1, result["stderr_tail"]
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if any(str(work) in a for a in p.info["cmdline"] or ())]
    assert left == []
