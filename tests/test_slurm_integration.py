"""The slurm probe against a real SLURM (scripts/dev-slurm): seven scenarios submitted by one
`rulesmon run` and run side by side, then selections of jobs submitted outside rulesmon and
control of a real job."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext
from rulesmon.probes.slurm import SlurmProbe, control

from .receiver import Receiver
from .slurm_cluster import SlurmCluster

SCRIPTS = {
    # busy on its one CPU for 4 s: a CPU efficiency well above zero
    "ok": ("echo all good; {python} -c 'import time\nt = time.time()\n"
           "while time.time() - t < 4: pass'"),
    "exit3": "sleep 4; echo failing >&2; exit 3",
    "timeout": "echo start; sleep 300",
    "cancel": "sleep 300",
    "array": "sleep 4; echo task $SLURM_ARRAY_TASK_ID",
    "progress": "for i in 1 2 3 4 5 6; do echo \"INFO Processed $i/6 items\"; sleep 1; done",
    # 2 MiB every 0.2 s: over its 40 MiB after about 4 s, long enough to be seen RUNNING
    "oom": ("{python} -c 'import time\nchunks = []\nwhile True:\n"
            "    chunks.append(b\"x\" * (2 << 20)); time.sleep(0.2)'"),
}
OPTIONS = {
    "ok": ["--time=5", "--mem=32M"],
    "exit3": ["--time=5", "--mem=32M"],
    "timeout": ["--time=1", "--mem=32M"],
    "cancel": ["--time=5", "--mem=32M"],
    "array": ["--time=5", "--mem=32M", "--array=0-2"],
    "progress": ["--time=5", "--mem=32M"],
    "oom": ["--time=5", "--mem=40M"],
}

RULESET_HEAD = """\
version: 1
name: slurm-it
every: 1s
state_file: run-state.json
notify:
  hook: "${HOOK}"
defaults:
  notify: [hook]
jobs:
"""
RULES = """\
rules:
  - name: ended
    when: job.terminal
    resolve: false
    message: >-
      END {{ job.key }} {{ job.id }} {{ job.state }} exit={{ job.exit_code }}
      sig={{ job.signal }} diag={{ job.diagnosis }} cpu={{ job.cpu_eff }}
      mem={{ job.mem_eff }} used={{ job.mem_used }} time={{ job.time_eff }}
      exceeded={{ job.exceeded }} limit={{ job.time_limit }} out={{ job.stdout }}
      acct={{ job.accounted }} cputime={{ job.cpu_time }}
  - name: crash-log
    when: job.key == "exit3" and job.terminal
    resolve: false
    message: "LOG {{ job.id }} {{ log.errors.traceback.count }} {{ log.tail }}"
  - name: stop-the-sleeper
    when: job.key == "cancel" and job.state == "RUNNING"
    resolve: false
    message: "CANCELLING {{ job.id }}"
    do:
      - notify: hook
      - control: cancel
        reason: "cancelled by the integration test"
  - name: halfway
    when: progress.pct >= 50
    once: true
    resolve: false
    message: "HALF {{ job.key }} {{ progress.done | int }}/{{ progress.total | int }}"
  - name: array-pending-or-running
    when: job.key == "array" and job.array_task == 2 and job.state == "RUNNING"
    once: true
    resolve: false
    message: "ARRAY {{ job.id }} task {{ job.array_task }} of {{ job.array_id }}"
"""


def _ruleset(folder: Path, python: str = sys.executable) -> Path:
    lines = [RULESET_HEAD]
    for name, options in OPTIONS.items():
        script = folder / f"{name}.sh"
        body = SCRIPTS[name].format(python=python)  # an interpreter on the node
        script.write_text(f"#!/bin/bash\n{body}\n", encoding="utf-8")
        args = ", ".join(json.dumps(o) for o in [*options, f"--job-name=it-{name}",
                                                     "--output=%x-%j.out"
                                                     if name != "array" else
                                                     "--output=%x-%A_%a.out"])
        lines.append(f"  {name}:\n    slurm:\n      submit: {{script: {name}.sh, "
                     f"sbatch_args: [{args}]}}\n      min_interval: 1s\n")
        if name == "progress":
            lines.append('    logs:\n      - path: "{{ job.stdout }}"\n'
                         "        preset: python-logging\n"
                         "    progress: {done: log.done, total: log.total, unit: items}\n")
    path = folder / "ruleset.yaml"
    path.write_text("".join(lines) + RULES, encoding="utf-8")
    return path


def _fields(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split() if "=" in part)


def test_seven_scenarios_in_one_run(slurm_cluster: SlurmCluster) -> None:
    """A job that completes, one that exits 3, one that hits a 1-minute limit, one cancelled by
    a rule, a 3-task array, one printing progress and one exceeding its memory, all submitted
    and followed by one `rulesmon run`: right transitions, facts, efficiency figures and
    notifications at the receiver."""
    folder = slurm_cluster.workdir("seven")
    ruleset = _ruleset(folder, slurm_cluster.python)
    log = folder / "run.jsonl"
    with Receiver() as rx:
        result = subprocess.run(
            [sys.executable, "-m", "rulesmon", "run", str(ruleset), "--allow-control",
             "--log-json", str(log)], env=slurm_cluster.environ(HOOK=rx.url()),
            capture_output=True, text=True, timeout=400, check=False, cwd=folder)
        bodies = [str(r["body"].get("message", "")) for r in rx.received]
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    for event in events:
        if event.get("event") == "state_change" and "/" in str(event.get("instance", "")):
            slurm_cluster.track(str(event["instance"]).split("/", 1)[1])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 1, result.stderr[-3000:]  # jobs failed: exit 1

    changes: dict[str, list[str]] = {}
    for e in events:
        if e.get("event") == "state_change":
            changes.setdefault(str(e["instance"]), []).append(str(e["current"]))
    by_key = {k.split("/")[0]: v for k, v in changes.items() if not k.startswith("array/")}
    assert by_key["ok"][-1] == "COMPLETED" and "RUNNING" in by_key["ok"]
    assert by_key["exit3"][-1] == "FAILED" and "RUNNING" in by_key["exit3"]
    assert by_key["timeout"][-1] == "TIMEOUT" and "RUNNING" in by_key["timeout"]
    assert by_key["cancel"][-1] == "CANCELLED" and "RUNNING" in by_key["cancel"]
    assert by_key["progress"][-1] == "COMPLETED"
    assert by_key["oom"][-1] == "OUT_OF_MEMORY" and "RUNNING" in by_key["oom"]
    array = {k: v for k, v in changes.items() if k.startswith("array/")}
    assert len(array) == 3 and all(v[-1] == "COMPLETED" for v in array.values())
    assert all("RUNNING" in v for v in array.values())
    assert sorted(k.rsplit("_", 1)[1] for k in array) == ["0", "1", "2"]

    # full messages per instance from the run's log; the receiver gets them (grouped when
    # several fire in one tick, so a long line may be shortened there)
    ends = {str(e["instance"]).split("/")[0]: str(e["message"]) for e in events
            if e.get("event") == "alert_firing" and e.get("rule") == "ended"}
    assert sorted(ends) == ["array", "cancel", "exit3", "ok", "oom", "progress", "timeout"]
    delivered = "\n".join(bodies)
    for key in ends:
        assert f"END {key} " in delivered, (key, bodies)
    got = {key: _fields(body) for key, body in ends.items()}
    assert all(fields["acct"] == "done" for fields in got.values()), got
    assert got["ok"]["exit"] == "0" and got["ok"]["diag"] == "ok"
    assert float(got["ok"]["time"]) > 0 and got["ok"]["exceeded"] == "False"
    # busy for 4 s of a run of about 4-5 s on one CPU (it shares 2 cores with the other
    # jobs); accounting counts elapsed in whole seconds, so a busy job may show a little over
    # 100%, as seff does
    assert 20 < float(got["ok"]["cpu"]) <= 110 and float(got["ok"]["cputime"]) >= 1
    assert 0 < float(got["ok"]["mem"]) < 100 and int(got["ok"]["used"]) > 1 << 20
    assert float(got["timeout"]["cpu"]) < 10  # it slept for its whole minute
    assert got["ok"]["out"].endswith(f"it-ok-{ends['ok'].split()[2]}.out")
    assert got["exit3"]["exit"] == "3" and got["exit3"]["diag"] == "nonzero_exit"
    assert got["timeout"]["diag"] == "time_limit" and got["timeout"]["exceeded"] == "True"
    assert float(got["timeout"]["time"]) >= 100 and got["timeout"]["limit"] == "60.0"
    assert got["cancel"]["diag"] == "cancelled"
    assert got["oom"]["diag"] == "oom" and float(got["oom"]["mem"]) > 50
    assert int(got["oom"]["used"]) > 20 << 20
    assert delivered.count("END array ") == 3
    assert "CANCELLING " in delivered
    assert any(b.startswith("HALF progress ") and b.endswith("/6") for b in bodies)
    assert any(b.startswith("ARRAY ") and b.endswith("of " + b.split()[1].split("_")[0])
               for b in bodies)
    history = subprocess.run(
        [sys.executable, "-m", "rulesmon", "history", str(ruleset), "--format", "json",
         "-n", "50"], env=slurm_cluster.environ(), capture_output=True, text=True,
        timeout=60, check=True, cwd=folder)
    recorded = {row["tool"]: row for row in json.loads(history.stdout)}
    assert recorded["ok"]["status"] == "success" and recorded["ok"]["source"] == "slurm"
    assert recorded["ok"]["efficiency"]["cpu_pct"] is not None
    assert recorded["timeout"]["status"] == "timeout"
    assert recorded["timeout"]["efficiency"]["time_pct"] >= 100
    assert recorded["oom"]["efficiency"]["memory_pct"] > 50
    assert recorded["exit3"]["returncode"] == 3
    (crash_log,) = [str(e["message"]) for e in events if e.get("event") == "alert_firing"
                    and e.get("rule") == "crash-log"]
    assert crash_log.endswith("failing")  # its own output, followed without `logs:`
    state = json.loads((folder / "run-state.json").read_text(encoding="utf-8"))
    assert state["run"]["all_terminal"] is True and state["run"]["total"] == 9
    final = {k: v["job.state"] for k, v in state["jobs"].items()}
    assert sorted(final.values()) == sorted(["COMPLETED"] * 5 + [
        "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY"])
    assert all(v["job.accounted"] == "done" for v in state["jobs"].values())
    controls = [e for e in events if e.get("event") == "control_done"]
    assert controls and "scancel" in str(controls[0].get("result"))
    assert "all good" in next(folder.glob("it-ok-*.out")).read_text(encoding="utf-8")


def _collect_until(probe: SlurmProbe, rs: Any, base: Path, check: Any,
                   timeout: float = 90) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        facts = probe.collect(TickContext(now=time.time(), ruleset=rs, base_dir=base))
        facts.pop("", None)  # the run-level facts (probe.slurm.*)
        if check(facts):
            return facts
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached: {facts}")
        time.sleep(0.5)


def test_selections_and_control_on_real_jobs(slurm_cluster: SlurmCluster) -> None:
    """Jobs submitted outside rulesmon are found by id, name glob + user, array id, partition
    and account in one probe (a partition or account no job has selects nothing); control
    releases a held job, requeues an array task (its restart count goes up) and cancels a
    running job."""
    folder = slurm_cluster.workdir("select")
    tag = f"sel{uuid.uuid4().hex[:8]}"  # other runs' jobs stay visible for a while
    held = slurm_cluster.sbatch(folder, "-H", "--mem=16M", "-J", f"{tag}-held", "--wrap",
                                "sleep 1")
    sleeper = slurm_cluster.sbatch(folder, "--mem=16M", "-J", f"{tag}-sleep", "--wrap",
                                   "sleep 300")
    array = slurm_cluster.sbatch(folder, "--mem=16M", "-J", f"{tag}-array", "--array=0-1",
                                 "--wrap", "sleep 300")
    part = slurm_cluster.sbatch(folder, "--mem=16M", "-J", f"{tag}-part", "--partition=debug",
                                "--wrap", "sleep 300")
    acct = slurm_cluster.sbatch(folder, "--mem=16M", "-J", f"{tag}-acct", "--account=root",
                                "--wrap", "sleep 300")
    text = ("version: 1\nname: sel\njobs:\n"
            f"  byid:\n    slurm: {{ids: [{held}], min_interval: 0s}}\n"
            f"  byname:\n    slurm: {{user: root, name: '{tag}-sl*', min_interval: 0s}}\n"
            f"  byarray:\n    slurm: {{array: {array}, min_interval: 0s}}\n"
            f"  bypart:\n    slurm: {{partition: debug, name: '{tag}-pa*', min_interval: 0s}}\n"
            f"  byacct:\n    slurm: {{account: root, name: '{tag}-ac*', min_interval: 0s}}\n"
            f"  nopart:\n    slurm: {{partition: gpu, name: '{tag}-*', min_interval: 0s}}\n"
            f"  noacct:\n    slurm: {{account: other, name: '{tag}-*', min_interval: 0s}}\n")
    rs = load_text(text, base=folder).ruleset
    probe = SlurmProbe(rs, folder)
    with slurm_cluster.activated():
        facts = _collect_until(probe, rs, folder, lambda f: len(f) == 6 and all(
            x.get("job.state") in ("RUNNING", "HELD") for x in f.values()))
        assert sorted(facts) == sorted([f"byid/{held}", f"byname/{sleeper}",
                                        f"byarray/{array}_0", f"byarray/{array}_1",
                                        f"bypart/{part}", f"byacct/{acct}"])
        assert facts[f"bypart/{part}"]["job.partition"] == "debug"
        assert facts[f"byacct/{acct}"]["job.account"] == "root"
        before = dict(probe.calls)
        probe.collect(TickContext(now=time.time() + 1, ruleset=rs, base_dir=folder))
        # one squeue call serves all seven selections; nothing ended, so no sacct call
        assert probe.calls == {"squeue": before["squeue"] + 1, "sacct": before["sacct"]}
        assert facts[f"byid/{held}"]["job.state"] == "HELD"
        assert facts[f"byid/{held}"]["job.reason"] == "JobHeldUser"
        assert facts[f"byname/{sleeper}"]["job.node_list"]
        control("release", {"job.id": held}, None, 30)
        control("requeue", {"job.id": f"{array}_1"}, None, 30)
        control("cancel", {"job.id": sleeper}, "done with it", 30)
        facts = _collect_until(probe, rs, folder, lambda f: f[f"byid/{held}"].get(
            "job.state") == "COMPLETED" and f[f"byname/{sleeper}"].get(
            "job.state") == "CANCELLED" and f[f"byarray/{array}_1"].get("job.restarts") == 1)
        assert facts[f"byid/{held}"]["job.succeeded"] is True
        assert facts[f"byname/{sleeper}"]["job.diagnosis"] == "cancelled"
        control("cancel", {"job.id": array}, None, 30)
        control("cancel", {"job.id": part}, None, 30)
        control("cancel", {"job.id": acct}, None, 30)
        with pytest.raises(Exception, match="verbs"):
            control("resubmit", {"job.id": array}, None, 30)


def _hold(python: str, mib: int, secs: int) -> str:
    """A command that keeps `mib` MiB resident (touched) for `secs` seconds."""
    return (f"{python} -c 'import time; b = bytearray({mib} << 20); "
            f"b[::4096] = b\"x\" * len(b[::4096]); time.sleep({secs})'")


def test_json_path_running_time_and_exit_codes_match_parseable(
        slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the real cluster, the --json path (RULESMON_SLURM_FORMAT=json) and the parseable
    path agree: a running job has an elapsed time and a time left that add up to its limit;
    a job that timed out and one cancelled while running end with accounting's exit code 0
    and signal 0 on both paths (not squeue --json's 143); a 4-task srun step's memory used is
    its MaxRSS times 4, as seff counts it."""
    folder = slurm_cluster.workdir("jsonpath")
    python = slurm_cluster.python
    timeout = slurm_cluster.sbatch(folder, "-J", "i13-timeout", "--mem=32M", "-t", "1",
                                   "--wrap", "sleep 300")
    cancel = slurm_cluster.sbatch(folder, "-J", "i13-cancel", "--mem=32M", "-t", "5",
                                  "--wrap", "sleep 300")
    multi = slurm_cluster.sbatch(folder, "-J", "i13-multi", "-n", "4", "--mem=400M", "-t", "5",
                                 "--wrap", f"srun -n 4 {_hold(python, 60, 5)}")
    text = (f"version: 1\nname: jsonpath\njobs:\n  j:\n    slurm: {{ids: [{timeout}, {cancel}, "
            f"{multi}], min_interval: 0s, sacct_retries: 20}}\n")
    rs = load_text(text, base=folder).ruleset
    probes = {fmt: SlurmProbe(rs, folder) for fmt in ("json", "parseable")}

    def collect(fmt: str) -> dict[str, dict[str, Any]]:
        monkeypatch.setenv("RULESMON_SLURM_FORMAT", fmt)
        facts = probes[fmt].collect(TickContext(now=time.time(), ruleset=rs, base_dir=folder))
        facts.pop("", None)
        return facts

    seen_running: dict[str, dict[str, Any]] = {}
    cancelled = False
    deadline = time.monotonic() + 240
    with slurm_cluster.activated():
        while True:
            both = {fmt: collect(fmt) for fmt in probes}
            for fmt, facts in both.items():
                f = facts.get(f"j/{timeout}", {})
                if f.get("job.state") == "RUNNING" and fmt not in seen_running:
                    seen_running[fmt] = f
            if not cancelled and both["json"].get(f"j/{cancel}", {}).get(
                    "job.state") == "RUNNING":
                slurm_cluster.tool("scancel", cancel)
                cancelled = True
            if all(len(facts) == 3 and all(f.get("job.terminal") for f in facts.values())
                   for facts in both.values()):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"jobs did not end: {both}")
            time.sleep(1)
    assert cancelled and sorted(seen_running) == ["json", "parseable"]
    for fmt, f in seen_running.items():
        # squeue --json has no run time: computed from the start time and now, as squeue does
        assert isinstance(f.get("job.elapsed"), float), (fmt, f)
        assert isinstance(f.get("job.time_left"), float), (fmt, f)
        assert f["job.elapsed"] + f["job.time_left"] == pytest.approx(60.0, abs=1.0), (fmt, f)
    for fmt, facts in both.items():
        for jid, state in ((timeout, "TIMEOUT"), (cancel, "CANCELLED")):
            f = facts[f"j/{jid}"]
            assert (f["job.state"], f["job.accounted"]) == (state, "done"), (fmt, f)
            assert (f.get("job.exit_code"), f.get("job.signal")) == (0, 0), (fmt, f)
        assert facts[f"j/{timeout}"]["job.exceeded"] is True
        m = facts[f"j/{multi}"]
        assert m["job.state"] == "COMPLETED" and m["job.max_rss"] >= 60 << 20, (fmt, m)
        assert m["job.mem_used"] == 4 * m["job.max_rss"], (fmt, m)
        assert m["job.mem_eff"] == round(100 * m["job.mem_used"] / m["job.mem_req"], 2)
    for key in both["json"]:
        for name in ("job.exit_code", "job.signal", "job.cpu_eff", "job.mem_eff",
                     "job.elapsed", "job.exceeded"):
            assert both["json"][key].get(name) == both["parseable"][key].get(name), (key, name)
