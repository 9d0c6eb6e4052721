"""The dagman probe against a real personal HTCondor (scripts/dev-condor): a DAG of two
training runs submitted and followed by one `rulesmon run`, with a retry that succeeds, a node
that fails after its retry, a futile child, per-run notifications, and the rescue DAG
resubmitted by a control action and followed to its end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext
from rulesmon.probes.dagman import DagmanProbe, control

from .condor_pool import CondorPool
from .receiver import Receiver

NODE_SH = """\
#!/bin/sh
# node.sh NODE RETRY RC: B fails on its first attempt only; C exits RC on its first two
# attempts (the first run and its retry), so the rescue run succeeds; the others exit RC
echo "node $1 attempt $2"
sleep 1
if [ "$1" = B ] && [ "$2" = 0 ]; then exit 1; fi
if [ "$1" = C ]; then
  n=$(cat C.count 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > C.count
  if [ "$n" -gt 2 ]; then exit 0; fi
fi
exit "$3"
"""

NODE_SUB = """\
universe = vanilla
executable = node.sh
arguments = "$(JOB) $(RETRY) $(rc)"
output = $(JOB).$(RETRY).out
error = $(JOB).$(RETRY).err
request_memory = 32M
request_disk = 1M
should_transfer_files = NO
queue
"""

PIPE_DAG = """\
# two training runs: r1 (A then B, B fails once), r2 (C always fails, so D never runs)
JOB A node.sub
VARS A run_uuid="r1" epoch="1" ResourceName="gpu-a" rc="0"
JOB B node.sub
VARS B run_uuid="r1" epoch="2" ResourceName="gpu-b" rc="0"
RETRY B 2
JOB C node.sub
VARS C run_uuid="r2" epoch="1" ResourceName="gpu-a" rc="3"
RETRY C 1
JOB D node.sub
VARS D run_uuid="r2" epoch="2" ResourceName="gpu-b" rc="0"
PARENT A CHILD B
PARENT C CHILD D
NODE_STATUS_FILE pipe.dag.status 2
"""

RULESET = """\
version: 1
name: dag-it
every: 1s
notify:
  hook: "${HOOK}"
defaults:
  notify: [hook]
jobs:
  pipe:
    dagman: {dag: pipe.dag, submit: true, live_usage: true}
    group_by: [run_uuid]
rules:
  - name: node-failed
    when: node.state == "ERROR" and job.state == "FAILED"
    resolve: false
    message: >-
      NODEFAIL {{ node.name }} run {{ node.vars.run_uuid }} exit {{ job.exit_code }}
      retries {{ node.retries }}/{{ node.max_retries }} cluster {{ job.cluster }}
  - name: node-retried
    when: changed(node.retries) and node.retries > 0
    resolve: false
    message: "RETRY {{ node.name }} {{ node.retries }}"
  - name: run-failed
    scope: group
    when: group.failed > 0
    resolve: false
    message: >-
      RUNFAIL {{ group.key }} failed {{ group.failed }} cancelled {{ group.cancelled }}
      of {{ group.total }}
  - name: run-done
    scope: group
    when: group.all_done
    resolve: false
    message: >-
      RUNDONE {{ group.key }} {{ group.done }}/{{ group.total }} epochs
      {{ group.epochs_done }}/{{ group.epochs_total }} gpu-a {{ group.resources["gpu-a"] }}
      retried {{ group.retried }}
  - name: rescue
    when: dag.finished and dag.rescue_written
    resolve: false
    message: >-
      RESCUE {{ dag.name }} exit {{ dag.exit_code }} {{ dag.rescue_file }}
      failed {{ dag.failed_nodes | join(',') }}
    do:
      - notify: hook
      - control: resubmit
"""


def _bodies(rx: Receiver) -> list[str]:
    return [" ".join(str(r["body"].get("message", "")).split()) for r in rx.received]


def test_dag_with_retry_failure_and_rescue(condor_pool: CondorPool) -> None:
    """rulesmon submits the DAG, follows it to its end (B succeeds on its retry, C fails after
    its retry, D is futile), notifies per node and per training run, resubmits the rescue DAG
    and follows the rescue run to its end (C succeeds, D runs), then exits 0."""
    folder = condor_pool.workdir("dag")
    (folder / "node.sh").write_text(NODE_SH, encoding="utf-8")
    (folder / "node.sh").chmod(0o755)
    (folder / "node.sub").write_text(NODE_SUB, encoding="utf-8")
    (folder / "pipe.dag").write_text(PIPE_DAG, encoding="utf-8")
    ruleset = folder / "ruleset.yaml"
    ruleset.write_text(RULESET, encoding="utf-8")
    log = folder / "run.jsonl"
    with Receiver() as rx:
        env = condor_pool.environ(HOOK=rx.url())
        result = subprocess.run(
            [sys.executable, "-m", "rulesmon", "run", str(ruleset), "--allow-control",
             "--log-json", str(log)], env=env, capture_output=True, text=True, timeout=300,
            check=False)
        bodies = _bodies(rx)
    out = folder / "pipe.dag.dagman.out"
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        assert "dag_live_usage_failed" not in result.stderr  # the real condor_q answered
        events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
        changes: dict[str, list[str]] = {}
        for e in events:
            if e.get("event") == "state_change":
                changes.setdefault(e["instance"], []).append(e["current"])
        final = {e["instance"]: e for e in events if e.get("event") == "state_change"}
        assert final["pipe/A"]["current"] == "COMPLETED"
        assert final["pipe/B"]["current"] == "COMPLETED"
        # the first run: C fails after its retry and D is futile; the DAG fails. Once the
        # rescue DAG is resubmitted they wait again, and the rescue run completes them.
        for key, ended in (("pipe/C", "FAILED"), ("pipe/D", "CANCELLED"),
                           ("pipe/pipe.dag", "FAILED")):
            seen = changes[key]
            assert ended in seen and seen[-1] == "COMPLETED", (key, seen)
            assert "PENDING" in seen[seen.index(ended):], (key, seen)
        assert [e.get("exit_code") for e in events if e.get("event") == "state_change"
                and e["instance"] == "pipe/C" and e["current"] == "FAILED"] == [3]
        assert final["pipe/pipe.dag"]["exit_code"] == 0
        assert (folder / "C.count").read_text(encoding="utf-8").strip() == "3"
        assert not (folder / "pipe.dag.rescue002").exists()

        def one(prefix: str) -> str:
            found = [b for b in bodies if b.startswith(prefix)]
            assert len(found) == 1, (prefix, bodies)
            return found[0]

        assert one("NODEFAIL C").startswith("NODEFAIL C run r2 exit 3 retries 1/1 cluster ")
        assert one("RETRY B") == "RETRY B 1"
        assert one("RETRY C") == "RETRY C 1"
        assert one("RUNFAIL r2") == "RUNFAIL r2 failed 1 cancelled 1 of 2"
        assert one("RUNDONE r1") == "RUNDONE r1 2/2 epochs 2/2 gpu-a 1 retried 1"
        assert one("RUNDONE r2") == "RUNDONE r2 2/2 epochs 2/2 gpu-a 1 retried 0"
        assert not [b for b in bodies if b.startswith("NODEFAIL B")]
        assert bodies.index(one("RUNFAIL r2")) < bodies.index(one("RUNDONE r2"))
        rescue = one("RESCUE pipe.dag")
        assert rescue == f"RESCUE pipe.dag exit 1 {folder / 'pipe.dag.rescue001'} failed C"
        control = [e for e in events if e.get("event") == "control_done"]
        assert len(control) == 1 and "from pipe.dag.rescue001" in control[0]["result"], \
            events[-5:]
        # DAGMan really ran again from the rescue DAG, and rulesmon saw that run end
        text = out.read_text(encoding="utf-8")
        assert "USING RESCUE DAG pipe.dag.rescue001" in text
        assert text.count("EXITING WITH STATUS 0") == 1
    finally:
        _remove_dags(condor_pool, folder)


def _remove_dags(pool: CondorPool, folder: Path) -> None:
    """Remove every DAGMan job this test left in the queue (the rescue run)."""
    for ad in pool.q("-constraint", f'Iwd == "{folder}"'):
        pool.tool("condor_rm", str(ad["ClusterId"]), check=False)
    deadline = time.monotonic() + 60
    while pool.q("-constraint", f'Iwd == "{folder}"') and time.monotonic() < deadline:
        time.sleep(1)


ABORT_DAG = """\
JOB H held.sub
JOB L node.sub
VARS L rc="0" sleep="120"
JOB X node.sub
VARS X rc="7" sleep="12"
ABORT-DAG-ON X 7 RETURN 1
"""

SLEEP_SH = """\
#!/bin/sh
sleep "$2"
exit "$1"
"""


def _collect_until(probe: Any, rs: Any, base: Path, what: str, check: Any,
                   timeout: float = 120) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        facts: dict[str, dict[str, Any]] = probe.collect(
            TickContext(now=time.time(), ruleset=rs, base_dir=base))
        if check(facts):
            return facts
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached: {facts}")
        time.sleep(0.5)


def test_held_node_control_and_abort_dag_on(condor_pool: CondorPool) -> None:
    """A node held for a missing input shows its hold reason; control holds and releases
    another node's job (held by a user: code 1, no diagnosis); ABORT-DAG-ON then aborts the
    DAG, which ends with the abort named and the queued nodes cancelled."""
    folder = condor_pool.workdir("abort")
    (folder / "node.sh").write_text(SLEEP_SH, encoding="utf-8")
    (folder / "node.sh").chmod(0o755)
    (folder / "node.sub").write_text(NODE_SUB.replace('"$(JOB) $(RETRY) $(rc)"',
                                                      '"$(rc) $(sleep)"'), encoding="utf-8")
    (folder / "held.sub").write_text(NODE_SUB.replace("queue", "input = missing.txt\nqueue"),
                                     encoding="utf-8")
    (folder / "abort.dag").write_text(ABORT_DAG, encoding="utf-8")
    rs = load_text("version: 1\nname: abort\njobs:\n  a:\n    dagman: {dag: abort.dag}\n",
                   base=folder).ruleset
    probe = DagmanProbe(rs, folder)
    cluster = condor_pool.submit_dag(folder / "abort.dag")
    try:
        with condor_pool.activated():
            held = _collect_until(probe, rs, folder, "H held and L running", lambda f: (
                f["a/H"]["job.state"] == "HELD" and f["a/L"]["job.state"] == "RUNNING"))
            h = held["a/H"]
            assert "missing.txt" in h["job.hold_reason"] and h["job.diagnosis"] == \
                "launch_failed"
            assert held["a/abort.dag"]["dag.held"] == 1
            assert held["a/abort.dag"]["job.cluster"] == cluster
            lnode = held["a/L"]
            assert control("hold", lnode, "paused by test", 30).startswith(
                f"condor_hold {lnode['job.cluster']}")
            paused = _collect_until(probe, rs, folder, "L held",
                                    lambda f: f["a/L"]["job.state"] == "HELD")
            assert paused["a/L"]["job.hold_reason"].startswith("paused by test")
            assert paused["a/L"]["job.hold_code"] == 1  # held by a user: no diagnosis
            assert "job.diagnosis" not in paused["a/L"]
            control("release", paused["a/L"], None, 30)
            _collect_until(probe, rs, folder, "L released",
                           lambda f: f["a/L"]["job.state"] in ("PENDING", "RUNNING"))
            end = _collect_until(probe, rs, folder, "the DAG aborted",
                                 lambda f: f["a/abort.dag"]["dag.finished"])
        dag = end["a/abort.dag"]
        assert (dag["dag.aborted"], dag["dag.exit_code"], dag["job.state"]) == (
            True, 1, "FAILED")
        assert dag["dag.abort_reason"] == "ABORT-DAG-ON: node X exited 7 (DAG returns 1)"
        assert dag["dag.dag_status"] == "ABORT" and dag["dag.rescue_written"] is True
        assert (end["a/X"]["job.state"], end["a/X"]["job.exit_code"]) == ("FAILED", 7)
        assert end["a/H"]["job.state"] == end["a/L"]["job.state"] == "CANCELLED"
        assert "missing.txt" in end["a/H"]["job.hold_reason"]
    finally:
        _remove_dags(condor_pool, folder)


STRICT_DAG = """\
CONFIG strict.config
JOB A node.sub
VARS A rc="0" sleep="1"
"""


def test_strict_abort_is_reported_and_no_node_log_is_missed(condor_pool: CondorPool) -> None:
    """A DAG whose CONFIG file sets DAGMAN_USE_STRICT = 1, submitted by `rulesmon run` with
    builtin:dagman-training: DAGMan aborts while starting up (the node log would be under
    /tmp, a warning made fatal) and never creates the node log; the run ends with exit 1 and
    the dag-aborted alert naming the warning, and no alert about unreadable files."""
    folder = condor_pool.workdir("strict")
    assert str(folder).startswith("/tmp/"), "the pool's folder must be under /tmp"
    (folder / "node.sh").write_text(SLEEP_SH, encoding="utf-8")
    (folder / "node.sh").chmod(0o755)
    (folder / "node.sub").write_text(NODE_SUB.replace('"$(JOB) $(RETRY) $(rc)"',
                                                      '"$(rc) $(sleep)"'), encoding="utf-8")
    (folder / "strict.config").write_text("DAGMAN_USE_STRICT = 1\n", encoding="utf-8")
    (folder / "strict.dag").write_text(STRICT_DAG, encoding="utf-8")
    ruleset = folder / "ruleset.yaml"
    ruleset.write_text("version: 1\nname: strict\nevery: 1s\n"
                       "extends: [builtin:dagman-training]\ndefaults: {notify: []}\n"
                       "jobs:\n  s:\n    dagman: {dag: strict.dag, submit: true}\n",
                       encoding="utf-8")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state",
             str(folder / "state.db")], env=condor_pool.environ(), capture_output=True,
            text=True, timeout=300, check=False)
        out = (folder / "strict.dag.dagman.out").read_text(encoding="utf-8")
        assert "ERROR: Warning is fatal error because of DAGMAN_USE_STRICT setting" in out
        assert "Aborting DAG..." in out and not (folder / "strict.dag.nodes.log").exists()
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        warning = (f"Warning: default node log file {folder}/./strict.dag.nodes.log is in "
                   "/tmp")
        assert (f"strict.dag aborted: DAGMAN_USE_STRICT makes a warning fatal: {warning} "
                "(0/1 nodes done)") in result.stdout
        assert "unreadable" not in result.stdout + result.stderr
        assert "dag_problem" not in result.stderr
    finally:
        _remove_dags(condor_pool, folder)
