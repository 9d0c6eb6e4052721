"""The dagman probe on recorded DAG runs: node states through retries, failure, rescue runs,
ABORT-DAG-ON, holds and removal; DAG-level facts; per-run groups; files that are missing,
truncated or garbage; and the control verbs' refusals."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.engine import Engine, group_facts
from rulesmon.probes import condor_cli as cli
from rulesmon.probes.base import ProbeError, TickContext
from rulesmon.probes.dagman import DagmanProbe, control
from rulesmon.testing import NullLog

from .conftest import run_cli
from .htcondor_fakes import FakeCondor

FIXTURES = Path(__file__).parent / "fixtures" / "dagman"
PIPE = FIXTURES / "pipe"
ABORT = FIXTURES / "abort"

RULESET = """\
version: 1
name: dag
every: 1s
jobs:
  pipeline:
    dagman: {{dag: {dag}}}
    group_by: [run_uuid]
rules:
  - name: node-failed
    when: node.state == "ERROR"
    do: [log]
  - name: run-has-failures
    scope: group
    when: group.failed > 0
    do: [log]
  - name: dag-aborted
    when: dag.aborted
    do: [log]
"""


def _events(text: str) -> list[str]:
    return [b + "...\n" for b in text.split("...\n") if b.strip()]


def _cluster_events(path: Path, cluster: str) -> str:
    return "".join(e for e in _events(path.read_text(encoding="utf-8"))
                   if f"({cluster}." in e.split("\n", 1)[0])


def stage_run1(folder: Path) -> Path:
    """pipe.dag as its first, failed run left it: C failed after its retry, D futile."""
    shutil.copy(PIPE / "pipe.dag", folder / "pipe.dag")
    shutil.copy(PIPE / "run1.nodes.log", folder / "pipe.dag.nodes.log")
    shutil.copy(PIPE / "run1.dagman.out", folder / "pipe.dag.dagman.out")
    shutil.copy(PIPE / "run1.status", folder / "pipe.dag.status")
    shutil.copy(PIPE / "pipe.dag.rescue001", folder / "pipe.dag.rescue001")
    (folder / "pipe.dag.dagman.log").write_text(
        _cluster_events(PIPE / "pipe.dag.dagman.log", "008"), encoding="utf-8")
    return folder / "pipe.dag"


def stage_run2(folder: Path, *, truncate: bool = True) -> None:
    """The rescue run's files over a staged first run: the node log truncated in place (same
    inode, as DAGMan does) and written again, or with `truncate=False` appended to (a log
    kept across runs); run2's dagman.out and status file, rescue002, the DAGMan job's log."""
    with (folder / "pipe.dag.nodes.log").open("r+" if truncate else "a",
                                              encoding="utf-8") as fh:
        if truncate:
            fh.truncate(0)
        fh.write((PIPE / "run2.nodes.log").read_text(encoding="utf-8"))
    shutil.copy(PIPE / "run2.dagman.out", folder / "pipe.dag.dagman.out")
    shutil.copy(PIPE / "run2.status", folder / "pipe.dag.status")
    shutil.copy(PIPE / "pipe.dag.rescue002", folder / "pipe.dag.rescue002")
    shutil.copy(PIPE / "pipe.dag.dagman.log", folder / "pipe.dag.dagman.log")


class Probed:
    """A DagmanProbe over one staged DAG, collected on demand."""

    def __init__(self, dag: Path) -> None:
        self.loaded = load_text(RULESET.format(dag=dag.name), display=str(dag.parent / "r.yaml"))
        self.probe = DagmanProbe(self.loaded.ruleset, dag.parent)
        self.dag = dag

    def collect(self, deadline: float | None = None) -> dict[str, dict[str, Any]]:
        ctx = TickContext(now=time.time(), ruleset=self.loaded.ruleset,
                          base_dir=self.dag.parent, deadline=deadline)
        return self.probe.collect(ctx)


def test_failed_run_node_states_retries_and_dag_facts(tmp_path: Path) -> None:
    """A recorded failed run: A and B (after one retry) done, C failed after its retry with
    exit 3, D futile; the DAG failed with exit 1, NODE_FAILED, and wrote rescue001."""
    got = Probed(stage_run1(tmp_path)).collect()
    a, b, c, d = (got[f"pipeline/{n}"] for n in "ABCD")
    assert (a["node.state"], a["job.state"], a["job.id"], a["job.exit_code"]) == (
        "DONE", "COMPLETED", "9.0", 0)
    assert (b["node.state"], b["node.retries"], b["job.restarts"], b["job.run_count"],
            b["job.cluster"]) == ("DONE", 1, 1, 2, 13)
    assert (c["node.state"], c["job.state"], c["job.exit_code"], c["node.retries"],
            c["node.max_retries"]) == ("ERROR", "FAILED", 3, 1, 1)
    assert c["node.detail"] == "job 12 exited 3 (after 1 of 1 retries)"
    assert (d["node.state"], d["job.state"], d["job.outcome"]) == ("FUTILE", "CANCELLED",
                                                                    "cancelled")
    assert a["node.vars.run_uuid"] == "r1" and c["node.vars"]["ResourceName"] == "gpu-a"
    assert a["job.remote_host"] == "slot1_1@vm" and a["job.mem_used"] == 5 << 20
    assert a["job.mem_req"] == 64 << 20 and a["job.cpus"] == 1
    dag = got["pipeline/pipe.dag"]
    assert (dag["job.state"], dag["job.exit_code"], dag["job.cluster"], dag["job.name"]) == (
        "FAILED", 1, 8, "pipe.dag")
    assert (dag["dag.total"], dag["dag.done"], dag["dag.failed"], dag["dag.futile"],
            dag["dag.pct"], dag["dag.retries"]) == (4, 2, 1, 1, 50.0, 2)
    assert (dag["dag.finished"], dag["dag.aborted"], dag["dag.dag_status"],
            dag["dag.status"]) == (True, False, "NODE_FAILED", "ERROR")
    assert dag["dag.rescue_written"] is True and dag["dag.rescue_number"] == 1
    assert dag["dag.rescue_file"] == str(tmp_path / "pipe.dag.rescue001")
    assert dag["dag.failed_nodes"] == ["C"] and dag["dag.problem"] == ""
    assert dag["dag.last_error"] == "ERROR: the following job(s) failed:"


def _lines_until(path: Path, marker: str) -> str:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        out.append(line)
        if marker in line:
            break
    return "".join(out)


def test_following_a_run_shows_retry_pending_then_failure(tmp_path: Path) -> None:
    """Replayed tick by tick: C queued, then waiting for its retry (READY, not failed), then
    failed after the retry; reading appended events never counts one twice."""
    dag = tmp_path / "pipe.dag"
    shutil.copy(PIPE / "pipe.dag", dag)
    probed = Probed(dag)
    before = probed.collect()
    assert [before[f"pipeline/{n}"]["node.state"] for n in "ABCD"] == [
        "READY", "NOT_READY", "READY", "NOT_READY"]
    assert before["pipeline/pipe.dag"]["job.state"] == "PENDING"
    assert before["pipeline/pipe.dag"]["dag.problem"] == ""
    events = _events((PIPE / "run1.nodes.log").read_text(encoding="utf-8"))
    log = tmp_path / "pipe.dag.nodes.log"
    out = tmp_path / "pipe.dag.dagman.out"
    log.write_text("".join(events[:2]), encoding="utf-8")
    out.write_text(_lines_until(PIPE / "run1.dagman.out", "assigned HTCondor ID (10.0.0)"),
                   encoding="utf-8")
    queued = probed.collect()
    c = queued["pipeline/C"]
    assert (c["node.state"], c["job.state"], c["job.status"], c["job.id"]) == (
        "SUBMITTED", "PENDING", "idle", "10.0")
    assert queued["pipeline/pipe.dag"]["job.state"] == "RUNNING"
    log.write_text("".join(events[:6]), encoding="utf-8")  # C's first attempt exited 3
    out.write_text(_lines_until(PIPE / "run1.dagman.out", "Retrying node C"),
                   encoding="utf-8")
    waiting = probed.collect()["pipeline/C"]
    assert (waiting["node.state"], waiting["job.state"], waiting["node.retries"]) == (
        "READY", "PENDING", 1)
    assert waiting["node.detail"].startswith("retry 1 of 1 pending (job 10 exited 3")
    log.write_text("".join(events), encoding="utf-8")
    shutil.copy(PIPE / "run1.dagman.out", out)
    final = probed.collect()
    assert final["pipeline/C"]["node.state"] == "ERROR"
    assert final["pipeline/C"]["job.run_count"] == 2
    assert final["pipeline/B"]["job.run_count"] == 2
    assert final["pipeline/pipe.dag"]["dag.finished"] is True  # no dagman.log: dagman.out


def test_rescue_run_truncated_log_is_rebuilt_not_double_counted(tmp_path: Path) -> None:
    """When the rescue run starts, DAGMan truncates the node log: nodes marked DONE by
    rescue001 stay done, and C's runs are counted from the new log only."""
    dag = stage_run1(tmp_path)
    probed = Probed(dag)
    assert probed.collect()["pipeline/C"]["job.run_count"] == 2
    stage_run2(tmp_path)
    got = probed.collect()
    assert [got[f"pipeline/{n}"]["node.state"] for n in "ABCD"] == [
        "DONE", "DONE", "ERROR", "FUTILE"]
    assert "job.id" not in got["pipeline/A"]  # done by the rescue DAG, not run again
    c = got["pipeline/C"]
    assert (c["job.run_count"], c["node.retries"], c["job.cluster"]) == (2, 1, 21)
    dag_facts = got["pipeline/pipe.dag"]
    assert (dag_facts["dag.runs"], dag_facts["dag.cluster"], dag_facts["dag.rescue_number"]) == (
        2, 15, 2)
    assert dag_facts["dag.rescue_used"] == str(tmp_path / "pipe.dag.rescue001")
    assert dag_facts["dag.rescue_written"] is True
    assert dag_facts["job.state"] == "FAILED" and dag_facts["dag.done"] == 2


def test_resubmitted_dag_waits_for_its_rescue_run(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """After `control: resubmit`, the ended DAG and its nodes that will run again are waiting
    (not terminal) until the rescue run starts; the previous run's failures of those nodes
    are not taken for this run's, even before DAGMan truncates the node log."""
    fake = FakeCondor(tmp_path / "tools")
    monkeypatch.setenv(cli.ENV_BIN, str(fake.bin))
    fake.answer("condor_submit_dag", "Submitting job(s).\n1 job(s) submitted to cluster 15.\n")
    dag = stage_run1(tmp_path)
    probed = Probed(dag)
    ended = probed.collect()
    assert ended["pipeline/pipe.dag"]["dag.finished"] is True
    assert control("resubmit", ended["pipeline/pipe.dag"], None, 10).startswith(
        "condor_submit_dag pipe.dag from pipe.dag.rescue001: cluster 15")
    assert fake.calls("condor_submit_dag") == ["condor_submit_dag -dorescuefrom 1 pipe.dag"]

    waiting = probed.collect()
    whole = waiting["pipeline/pipe.dag"]
    assert (whole["dag.finished"], whole["job.state"], whole["job.cluster"]) == (
        False, "PENDING", 15)
    assert whole["job.raw_state"] == "resubmitted from pipe.dag.rescue001 as cluster 15"
    assert (whole["dag.rescue_written"], whole["dag.aborted"]) == (False, False)
    assert [waiting[f"pipeline/{n}"]["job.state"] for n in "ABCD"] == [
        "COMPLETED", "COMPLETED", "PENDING", "PENDING"]
    c = waiting["pipeline/C"]
    assert c["node.state"] == "READY" and "job.cluster" not in c
    assert c["node.detail"] == "to run again: resubmitted from pipe.dag.rescue001 as cluster 15"

    # the DAGMan job is queued, then starts from the rescue DAG; the old node log is still
    # there for a moment
    events = _events((PIPE / "pipe.dag.dagman.log").read_text(encoding="utf-8"))
    queued = next(i for i, e in enumerate(events) if e.startswith("000 (015."))
    (tmp_path / "pipe.dag.dagman.log").write_text("".join(events[:queued + 1]),
                                                  encoding="utf-8")
    assert probed.collect()["pipeline/pipe.dag"]["job.status"] == "idle"
    (tmp_path / "pipe.dag.dagman.out").write_text(
        (PIPE / "run1.dagman.out").read_text(encoding="utf-8") +
        _lines_until(PIPE / "run2.dagman.out", "USING RESCUE DAG"), encoding="utf-8")
    started = probed.collect()
    assert started["pipeline/C"]["job.state"] == "PENDING"
    assert started["pipeline/pipe.dag"]["dag.rescue_used"] == str(
        tmp_path / "pipe.dag.rescue001")
    # the first run's status file, stamped within a second of the rescue run's start (the
    # rescue run's DAGMan has not rewritten it yet), still says nothing about this run
    run2 = probed.probe._watches[0].out.run  # type: ignore[union-attr]
    assert run2 is not None and run2.started is not None
    status = (tmp_path / "pipe.dag.status").read_text(encoding="utf-8")
    (tmp_path / "pipe.dag.status").write_text(
        status.replace("Timestamp = 1795335770;", f"Timestamp = {int(run2.started) - 1};"),
        encoding="utf-8")
    again = probed.collect()
    assert again["pipeline/C"]["job.state"] == "PENDING"
    assert again["pipeline/C"]["node.state"] == "READY"

    # the rescue run to its end: C fails again, a second rescue DAG
    stage_run2(tmp_path)
    done = probed.collect()
    assert [done[f"pipeline/{n}"]["node.state"] for n in "ABCD"] == [
        "DONE", "DONE", "ERROR", "FUTILE"]
    assert done["pipeline/C"]["job.cluster"] == 21
    assert (done["pipeline/pipe.dag"]["dag.finished"],
            done["pipeline/pipe.dag"]["dag.rescue_number"]) == (True, 2)


def _with_cpu(text: str, cluster: str, user: int, sys_: int) -> str:
    """The log with `cluster`'s termination reporting that many seconds (under an hour) of
    remote user and system CPU."""
    usage = (f"Usr 0 00:{user // 60:02d}:{user % 60:02d}, "
             f"Sys 0 00:{sys_ // 60:02d}:{sys_ % 60:02d}  -  Run Remote Usage")
    return "".join(
        e.replace("Usr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage", usage)
        if f"({cluster}." in e.split("\n", 1)[0] else e for e in _events(text))


def test_a_node_log_kept_across_runs_counts_the_rescue_run_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the node log is appended to rather than truncated, a resubmitted DAG's node shows
    the new run's submissions only: job.run_count, CPU time, peak memory and host are the
    rescue run's, in step with node.retries, not summed over both runs."""
    fake = FakeCondor(tmp_path / "tools")
    monkeypatch.setenv(cli.ENV_BIN, str(fake.bin))
    fake.answer("condor_submit_dag", "1 job(s) submitted to cluster 15.\n")
    dag = stage_run1(tmp_path)
    log = tmp_path / "pipe.dag.nodes.log"
    text = log.read_text(encoding="utf-8")
    log.write_text(_with_cpu(_with_cpu(text, "010", 100, 10), "012", 100, 10), encoding="utf-8")
    probed = Probed(dag)
    ended = probed.collect()
    c = ended["pipeline/C"]
    assert (c["job.run_count"], c["job.cpu_user"], c["job.cpu_sys"], c["job.mem_used"]) == (
        2, 200.0, 20.0, 5 << 20)
    control("resubmit", ended["pipeline/pipe.dag"], None, 10)
    stage_run2(tmp_path, truncate=False)
    text = log.read_text(encoding="utf-8")
    log.write_text(_with_cpu(_with_cpu(text, "017", 7, 1), "021", 7, 1), encoding="utf-8")
    got = probed.collect()
    assert probed.probe._watches[0].node_log is not None
    assert [s.cluster for s in probed.probe._watches[0].node_log.nodes["C"].submissions] == [
        10, 12, 17, 21]  # both runs in the log: no truncation was seen
    assert [got[f"pipeline/{n}"]["node.state"] for n in "ABCD"] == [
        "DONE", "DONE", "ERROR", "FUTILE"]
    assert "job.id" not in got["pipeline/A"]  # done by the rescue DAG, not run again
    c = got["pipeline/C"]
    assert (c["job.cluster"], c["node.retries"], c["job.run_count"]) == (21, 1, 2)
    assert (c["job.cpu_user"], c["job.cpu_sys"], c["job.cpu_time"]) == (14.0, 2.0, 16.0)
    assert (c["job.mem_used"], c["job.remote_host"]) == (4 << 20, "slot1_4@vm")


def test_run_does_not_end_on_the_tick_of_a_resubmit(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick that starts a control action does not end the run even when every job is
    terminal: the next tick sees the resubmitted DAG waiting, so rulesmon keeps watching."""
    fake = FakeCondor(tmp_path / "tools")
    monkeypatch.setenv(cli.ENV_BIN, str(fake.bin))
    fake.answer("condor_submit_dag", "1 job(s) submitted to cluster 15.\n")
    dag = stage_run1(tmp_path)
    text = RULESET.format(dag=dag.name) + (
        "  - name: rescue\n    when: dag.finished and dag.rescue_written\n"
        "    resolve: false\n    do: [{control: resubmit}]\n")
    (tmp_path / "r.yaml").write_text(text, encoding="utf-8")
    from rulesmon.config.loader import load

    engine = Engine(load(tmp_path / "r.yaml"), state_path=tmp_path / "s.db", log=NullLog(),
                    allow_control=True)
    try:
        first = engine.tick()
        assert engine.run_facts["run.all_terminal"] is True and first.finished is False
        for worker in engine._workers:
            worker.join(30)
        second = engine.tick()
        whole = engine.instances["pipeline/pipe.dag"]
    finally:
        engine.close()
    assert fake.calls("condor_submit_dag") == ["condor_submit_dag -dorescuefrom 1 pipe.dag"]
    assert second.finished is False and whole["job.state"] == "PENDING"
    assert whole["job.terminal"] is False


def test_large_node_log_is_caught_up_over_several_ticks(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A node log larger than the per-tick budget is read over several ticks; meanwhile
    dag.catching_up and node.catching_up are true and the DAG is not judged finished (nodes
    not read yet are not taken for cancelled); then every fact is as from one whole read."""
    from rulesmon.probes import dagman

    (tmp_path / "whole").mkdir()
    (tmp_path / "budget").mkdir()
    whole = Probed(stage_run1(tmp_path / "whole")).collect()
    monkeypatch.setattr(dagman, "NODE_LOG_MAX_READ", 1500)
    probed = Probed(stage_run1(tmp_path / "budget"))
    size = (tmp_path / "budget" / "pipe.dag.nodes.log").stat().st_size
    ticks = [probed.collect()]
    while ticks[-1]["pipeline/pipe.dag"]["dag.catching_up"] and len(ticks) < 20:
        ticks.append(probed.collect())
    assert len(ticks) >= size // 1500
    for got in ticks[:-1]:
        dag_facts = got["pipeline/pipe.dag"]
        assert (dag_facts["dag.finished"], dag_facts["job.state"]) == (False, "COMPLETING")
        assert dag_facts["job.raw_state"].startswith("DAGMan ended; reading the node log (")
        assert 0 < dag_facts["dag.log_behind"] <= size
        assert all(got[f"pipeline/{n}"]["node.catching_up"] is True for n in "ABCD")
        assert all(got[f"pipeline/{n}"]["job.state"] != "CANCELLED" for n in "ABC")
    last = ticks[-1]
    assert (last["pipeline/pipe.dag"]["dag.log_behind"], last["pipeline/A"]["node.catching_up"],
            last["pipeline/pipe.dag"]["dag.finished"]) == (0, False, True)
    assert {k: _comparable(f) for k, f in last.items()} == {
        k: _comparable(f) for k, f in whole.items()}


def _comparable(facts: dict[str, Any]) -> dict[str, Any]:
    """Facts without the ones naming the staging folder or the clock."""
    return {k: v for k, v in facts.items()
            if k not in ("node.dag", "dag.file", "job.workdir", "dag.rescue_file",
                         "dag.status_age") and not k.startswith("job.elapsed")}


def test_node_log_reads_stop_at_the_tick_deadline(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The node log is read until the tick's deadline (TickContext.deadline): with it already
    past, each tick reads one chunk and the log is caught up over several ticks to the same
    facts as one read; without a deadline one tick reads it whole."""
    from rulesmon.probes import dagman

    (tmp_path / "whole").mkdir()
    (tmp_path / "late").mkdir()
    whole = Probed(stage_run1(tmp_path / "whole")).collect()
    assert whole["pipeline/pipe.dag"]["dag.catching_up"] is False
    monkeypatch.setattr(dagman, "_NODE_LOG_CHUNK", 1024)
    probed = Probed(stage_run1(tmp_path / "late"))
    size = (tmp_path / "late" / "pipe.dag.nodes.log").stat().st_size
    ticks = [probed.collect(deadline=time.monotonic() - 1)]
    assert size - 1024 <= ticks[0]["pipeline/pipe.dag"]["dag.log_behind"] < size
    while ticks[-1]["pipeline/pipe.dag"]["dag.catching_up"] and len(ticks) < 20:
        ticks.append(probed.collect(deadline=time.monotonic() - 1))
    assert len(ticks) >= size // 1024
    assert {k: _comparable(f) for k, f in ticks[-1].items()} == {
        k: _comparable(f) for k, f in whole.items()}


def test_engine_gives_probes_the_deadline_of_its_probe_timeout(tmp_path: Path) -> None:
    """Engine(probe_timeout=...) hands each probe a TickContext whose deadline is that many
    seconds after the probes are started, the timeout the engine enforces."""
    seen: list[float | None] = []

    class Spy:
        name = "spy"

        def start(self, ctx: TickContext) -> None:
            pass

        def collect(self, ctx: TickContext) -> dict[str, dict[str, Any]]:
            seen.append(ctx.deadline)
            return {}

        def close(self) -> None:
            pass

    engine = _engine(tmp_path, stage_run1(tmp_path), probes=[Spy()], probe_timeout=7.0)
    try:
        before = time.monotonic()
        engine.tick()
        after = time.monotonic()
    finally:
        engine.close()
    assert len(seen) == 1 and seen[0] is not None
    assert before + 7.0 <= seen[0] <= after + 7.0


def _renumbered(events: list[str], old: str, new: str, node: str | None = None) -> str:
    out = []
    for e in events:
        head, _, body = e.partition("\n")
        text = head.replace(f"({old}.", f"({new}.") + "\n" + body
        out.append(text.replace("DAG Node: A", f"DAG Node: {node}") if node else text)
    return "".join(out)


def test_live_usage_adds_condor_q_figures_to_running_nodes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `live_usage: true`, a running node's memory, CPU and host come from ONE condor_q
    call for the DAG's node jobs (the recorded 23.9 ad of a running node), asked at most
    every 30s; a failing call is logged and leaves the node log's facts as they were."""
    from rulesmon.probes import dagman

    fake = FakeCondor(tmp_path / "tools")
    monkeypatch.setenv(cli.ENV_BIN, str(fake.bin))
    fake.answer("condor_q", (Path(__file__).parent / "fixtures" / "htcondor" /
                             "condor_q-23.9-dag-node.json").read_text(encoding="utf-8"))
    (tmp_path / "rec.dag").write_text("JOB train node.sub\n", encoding="utf-8")
    dagman_log = _events((PIPE / "pipe.dag.dagman.log").read_text(encoding="utf-8"))[:2]
    (tmp_path / "rec.dag.dagman.log").write_text(_renumbered(dagman_log, "008", "021"),
                                                 encoding="utf-8")
    node_log = [e for e in _events((PIPE / "run1.nodes.log").read_text(encoding="utf-8"))
                if e.split("\n", 1)[0].split()[1] == "(009.000.000)"][:2]
    (tmp_path / "rec.dag.nodes.log").write_text(_renumbered(node_log, "009", "022", "train"),
                                                encoding="utf-8")
    loaded = load_text("version: 1\nname: live\njobs:\n  pipeline:\n"
                       "    dagman: {dag: rec.dag, live_usage: true}\n", base=tmp_path)
    probe = DagmanProbe(loaded.ruleset, tmp_path)
    now = 1_800_000_000.0

    def collect(at: float) -> dict[str, dict[str, Any]]:
        return probe.collect(TickContext(now=at, ruleset=loaded.ruleset, base_dir=tmp_path))

    node = collect(now)["pipeline/train"]
    assert (node["job.state"], node["job.cluster"]) == ("RUNNING", 22)
    assert (node["job.mem_used"], node["job.remote_host"], node["job.cpu_time"]) == (
        4500 * 1024, "slot1_1@vm", 0.0)
    calls = fake.calls("condor_q")
    assert len(calls) == 1 and "-constraint DAGManJobId == 21 -attributes ClusterId," in calls[0]
    assert collect(now + 10)["pipeline/train"]["job.mem_used"] == 4500 * 1024
    assert len(fake.calls("condor_q")) == 1
    fake.answer("condor_q", err="Error: communication error\n", rc=1)
    warned: list[str] = []
    monkeypatch.setattr(dagman.log, "warning", lambda msg, *a: warned.append(msg % a))
    for step in (40, 80):
        quiet = collect(now + step)["pipeline/train"]
        assert quiet["job.state"] == "RUNNING" and "job.mem_used" not in quiet
    assert len(fake.calls("condor_q")) == 3
    assert warned == ["dag_live_usage_failed error=condor_q failed (exit 1): Error: "
                      "communication error"]


def _live_ad(**changes: Any) -> str:
    """The recorded 23.9 ad of a running node job, with `changes`, as condor_q -json prints
    it."""
    ads = json.loads((Path(__file__).parent / "fixtures" / "htcondor" /
                      "condor_q-23.9-dag-node.json").read_text(encoding="utf-8"))
    ads[0].update(changes)
    return json.dumps(ads)


def _stage_retried_node(folder: Path) -> tuple[DagmanProbe, Any]:
    """rec.dag's node `train` (RETRY 1) in DAGMan job 21, watched with `live_usage: true`:
    its first attempt (cluster 22) on slot1_1@vm exited 1 after 30 s user and 5 s system CPU,
    its retry (cluster 23) runs on slot1_2@vm. Returns the probe and the ruleset."""
    (folder / "rec.dag").write_text("JOB train node.sub\nRETRY train 1\n", encoding="utf-8")
    dagman_log = _events((PIPE / "pipe.dag.dagman.log").read_text(encoding="utf-8"))[:2]
    (folder / "rec.dag.dagman.log").write_text(_renumbered(dagman_log, "008", "021"),
                                               encoding="utf-8")
    mine = [e for e in _events((PIPE / "run1.nodes.log").read_text(encoding="utf-8"))
            if e.split("\n", 1)[0].split()[1] == "(009.000.000)"]  # submit, execute, end
    first = _with_cpu(_renumbered(mine, "009", "022", "train"), "022", 30, 5).replace(
        "(return value 0)", "(return value 1)")
    retry = _renumbered(mine[:2], "009", "023", "train").replace("slot1_1@vm", "slot1_2@vm")
    (folder / "rec.dag.nodes.log").write_text(first + retry, encoding="utf-8")
    loaded = load_text("version: 1\nname: live\njobs:\n  pipeline:\n"
                       "    dagman: {dag: rec.dag, live_usage: true}\n", base=folder)
    return DagmanProbe(loaded.ruleset, folder), loaded.ruleset


def test_live_usage_adds_to_ended_attempts_and_names_the_live_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For a retried node, condor_q's CPU time of the running attempt is added to what its
    ended attempt used (from the node log), and condor_q's host replaces the one the node log
    last named."""
    fake = FakeCondor(tmp_path / "tools")
    monkeypatch.setenv(cli.ENV_BIN, str(fake.bin))
    now = 1_800_000_000.0
    fake.answer("condor_q", err="Error: communication error\n", rc=1)
    probe, rs = _stage_retried_node(tmp_path)
    alone = probe.collect(TickContext(now=now, ruleset=rs, base_dir=tmp_path))["pipeline/train"]
    assert (alone["job.state"], alone["job.cluster"], alone["node.retries"],
            alone["job.run_count"]) == ("RUNNING", 23, 1, 2)
    assert (alone["job.cpu_user"], alone["job.cpu_sys"], alone["job.remote_host"]) == (
        30.0, 5.0, "slot1_2@vm")  # the node log's figures only
    fake.answer("condor_q", _live_ad(ClusterId=23, RemoteUserCpu=12.0, RemoteSysCpu=3.0,
                                     RemoteHost="slot1_3@vm"))
    probe, rs = _stage_retried_node(tmp_path)
    node = probe.collect(TickContext(now=now, ruleset=rs, base_dir=tmp_path))["pipeline/train"]
    assert (node["job.cpu_user"], node["job.cpu_sys"], node["job.cpu_time"]) == (
        42.0, 8.0, 50.0)
    assert node["job.remote_host"] == "slot1_3@vm"
    assert node["job.mem_used"] == 5 << 20  # the ended attempt's peak is above the live RSS


def test_live_usage_condor_q_timeout_comes_from_the_tick_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """condor_q for `live_usage:` may take most of the time left before the tick's deadline
    (20 s at most, and without a deadline); with under a second left it is not asked, the
    last figures are kept, and it is asked on the next tick."""
    fake = FakeCondor(tmp_path / "tools")
    monkeypatch.setenv(cli.ENV_BIN, str(fake.bin))
    fake.answer("condor_q", _live_ad(ClusterId=23, RemoteHost="slot1_3@vm"))
    timeouts: list[float] = []
    query = cli.query

    def spy(*args: Any, **kw: Any) -> Any:
        timeouts.append(kw["timeout"])
        return query(*args, **kw)

    monkeypatch.setattr(cli, "query", spy)
    probe, rs = _stage_retried_node(tmp_path)
    now = 1_800_000_000.0

    def collect(at: float, deadline: float | None) -> dict[str, Any]:
        ctx = TickContext(now=at, ruleset=rs, base_dir=tmp_path, deadline=deadline)
        return probe.collect(ctx)["pipeline/train"]

    collect(now, time.monotonic() + 10.0)
    assert len(timeouts) == 1 and 1.0 <= timeouts[0] <= 8.0
    near = collect(now + 40, time.monotonic() + 0.5)  # due, but too little time is left
    assert len(timeouts) == 1 and near["job.remote_host"] == "slot1_3@vm"
    collect(now + 41, None)
    assert timeouts[1:] == [20.0]


def stage_abort(folder: Path, runs: int | None = None) -> Path:
    """abort.dag: ABORT-DAG-ON X 7 RETURN 9 made DAGMan exit 9 and HTCondor run it again
    four times, until the DAGMan job was removed; H waits held for a missing input."""
    for name in ("abort.dag", "abort.dag.status", "abort.dag.nodes.log",
                 "abort.dag.dagman.out", "abort.dag.dagman.log"):
        shutil.copy(ABORT / name, folder / name)
    if runs is not None:  # stop the recording after that many DAGMan exits
        out = (ABORT / "abort.dag.dagman.out").read_text(encoding="utf-8")
        lines, exits = [], 0
        for line in out.splitlines(keepends=True):
            lines.append(line)
            exits += "EXITING WITH STATUS" in line
            if exits == runs:
                break
        (folder / "abort.dag.dagman.out").write_text("".join(lines), encoding="utf-8")
        events = _events((ABORT / "abort.dag.dagman.log").read_text(encoding="utf-8"))
        evicted = [i for i, e in enumerate(events) if e.startswith("004")]
        (folder / "abort.dag.dagman.log").write_text(
            "".join(events[:evicted[runs - 1] + 1]), encoding="utf-8")
        (folder / "abort.dag.status").unlink()
        (folder / "abort.dag.nodes.log").write_text("", encoding="utf-8")
    return folder / "abort.dag"


def test_abort_dag_on_restarts_dagman_and_is_an_abort_not_an_end(tmp_path: Path) -> None:
    """After ABORT-DAG-ON X 7 RETURN 9, DAGMan exited 9 and HTCondor queued it again: the
    DAG is aborted (with the node and values named) but not finished."""
    got = Probed(stage_abort(tmp_path, runs=1)).collect()["pipeline/abort.dag"]
    assert got["dag.aborted"] is True
    assert got["dag.abort_reason"] == "ABORT-DAG-ON: node X exited 7 (DAG returns 9)"
    assert (got["dag.finished"], got["dag.dag_status"], got["job.state"]) == (
        False, "ABORT", "PENDING")
    assert got["dag.rescue_written"] is True and "dag.exit_code" not in got


def test_removed_dag_held_node_and_removed_nodes(tmp_path: Path) -> None:
    """The removed DAG: DAGMan job CANCELLED after 4 restarts, P done (status file), H held
    then removed with its hold reason kept, X failed with the abort value, L removed."""
    got = Probed(stage_abort(tmp_path)).collect()
    dag = got["pipeline/abort.dag"]
    assert (dag["job.state"], dag["job.restarts"], dag["dag.finished"], dag["dag.runs"]) == (
        "CANCELLED", 4, True, 5)
    assert dag["dag.aborted"] is True
    assert dag["dag.abort_reason"] == ("the DAGMan job was removed (condor_rm) by user "
                                       "rmcondor")
    p, h, x, lnode = (got[f"pipeline/{n}"] for n in "PHXL")
    assert (p["node.state"], p["job.state"]) == ("DONE", "COMPLETED")
    assert p["node.pre_script"] == "script.sh P 0"
    assert (h["node.state"], h["job.state"], h["job.hold_code"]) == ("ERROR", "CANCELLED", 8)
    assert "Failed to open" in h["job.hold_reason"]
    assert (x["node.state"], x["job.state"], x["job.exit_code"]) == ("ERROR", "FAILED", 7)
    assert (lnode["node.state"], lnode["job.state"]) == ("ERROR", "CANCELLED")


def test_a_held_node_is_held_with_reason_and_diagnosis(tmp_path: Path) -> None:
    """While H's job is held for a missing input, the node is SUBMITTED and the job HELD
    with the reason, code and a launch_failed diagnosis."""
    dag = stage_abort(tmp_path)
    events = _events((ABORT / "abort.dag.nodes.log").read_text(encoding="utf-8"))
    held = next(i for i, e in enumerate(events) if e.startswith("012"))
    (tmp_path / "abort.dag.nodes.log").write_text("".join(events[:held + 1]), encoding="utf-8")
    (tmp_path / "abort.dag.dagman.out").write_text(_lines_until(
        ABORT / "abort.dag.dagman.out", "Hold reason: Error from slot1_1@vm"), encoding="utf-8")
    dagman_log = _events((ABORT / "abort.dag.dagman.log").read_text(encoding="utf-8"))
    (tmp_path / "abort.dag.dagman.log").write_text("".join(dagman_log[:-2]), encoding="utf-8")
    (tmp_path / "abort.dag.status").unlink()
    got = Probed(dag).collect()
    h = got["pipeline/H"]
    assert (h["node.state"], h["job.state"], h["job.status"]) == ("SUBMITTED", "HELD", "held")
    assert (h["job.hold_code"], h["job.hold_subcode"], h["job.diagnosis"]) == (
        8, 2, "launch_failed")
    assert got["pipeline/abort.dag"]["dag.held"] == 1
    assert got["pipeline/abort.dag"]["job.state"] == "RUNNING"


HOLD_RELEASE = """\
012 (010.000.000) 2026-11-22 08:22:35 Job was held.
\tvia condor_hold (by user rmcondor)
\tCode 1 Subcode 0
...
013 (010.000.000) 2026-11-22 08:22:37 Job was released.
\tvia condor_release (by user rmcondor)
...
"""


def test_released_node_loses_its_hold_reason(tmp_path: Path) -> None:
    """A node held, then released, then failing with exit 3 reports the failure alone: the
    hold reason, code and diagnosis of the earlier hold are gone once it is released."""
    (tmp_path / "one.dag").write_text("JOB C node.sub\n", encoding="utf-8")
    events = [e for e in _events((PIPE / "run1.nodes.log").read_text(encoding="utf-8"))
              if e.split("\n", 1)[0].split()[1] == "(010.000.000)"]
    submit, execute, terminate = events
    log = tmp_path / "one.dag.nodes.log"
    hold, release = _events(HOLD_RELEASE)
    log.write_text(submit + hold, encoding="utf-8")
    probed = Probed(tmp_path / "one.dag")
    held = probed.collect()["pipeline/C"]
    assert (held["job.state"], held["job.hold_code"]) == ("HELD", 1)
    assert "job.diagnosis" not in held  # held by a user: a state, not an ending
    assert held["job.hold_reason"] == "via condor_hold (by user rmcondor)"
    with log.open("a", encoding="utf-8") as fh:
        fh.write(release)
    released = probed.collect()["pipeline/C"]
    assert released["job.state"] == "PENDING" and released["job.status"] == "idle"
    assert not {"job.hold_reason", "job.hold_code", "job.diagnosis"} & set(released)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(execute + terminate)
    failed = probed.collect()["pipeline/C"]
    assert (failed["job.state"], failed["job.exit_code"], failed["node.state"]) == (
        "FAILED", 3, "ERROR")
    assert not {"job.hold_reason", "job.hold_code", "job.hold_subcode"} & set(failed)
    assert failed["node.detail"] == "job 10 exited 3"


def test_bad_dag_file_is_a_problem_fact_until_fixed(tmp_path: Path) -> None:
    """A .dag file with a mistake gives dag.problem with file:line and a growing
    dag.read_failures; once fixed, the nodes appear and the problem clears."""
    dag = tmp_path / "pipe.dag"
    dag.write_text("JOB A a.sub\nVARS A epoch=1\n", encoding="utf-8")
    probed = Probed(dag)
    first = probed.collect()
    assert list(first) == ["pipeline/pipe.dag"]
    assert first["pipeline/pipe.dag"]["dag.problem"] == (
        f"DAG file: {dag}:2: VARS A: expected name=\"value\" at 'epoch=1'")
    assert probed.collect()["pipeline/pipe.dag"]["dag.read_failures"] == 2
    time.sleep(0.01)
    dag.write_text('JOB A a.sub\nVARS A epoch="1"\n', encoding="utf-8")
    fixed = probed.collect()
    assert fixed["pipeline/A"]["node.vars.epoch"] == "1"
    assert fixed["pipeline/pipe.dag"]["dag.problem"] == ""
    assert fixed["pipeline/pipe.dag"]["dag.read_failures"] == 0
    time.sleep(0.01)
    dag.write_text("JOB A\n", encoding="utf-8")  # broken again: the last good one is kept
    again = probed.collect()
    assert "pipeline/A" in again
    assert again["pipeline/pipe.dag"]["dag.problem"].endswith("(the last good version is used)")


def test_garbage_logs_and_status_file_are_problems_not_crashes(tmp_path: Path) -> None:
    """Garbage in the node log and an unparsable status file are reported, and the events
    that are readable still count."""
    dag = stage_run1(tmp_path)
    log = tmp_path / "pipe.dag.nodes.log"
    log.write_bytes(b"\x00\xffgarbage\n...\n" + log.read_bytes())
    (tmp_path / "pipe.dag.status").write_text("[ Type = \"DagStatus\"; NodesTotal = ",
                                             encoding="utf-8")
    (tmp_path / "pipe.dag.dagman.out").write_bytes(b"\xff\xfe\x00binary\n" * 10)
    got = Probed(dag).collect()
    problem = got["pipeline/pipe.dag"]["dag.problem"]
    assert "node log: 1 block(s) that are not events" in problem
    assert "status file pipe.dag.status: line 1" in problem
    assert got["pipeline/C"]["node.state"] == "ERROR"


def test_unreadable_node_log_while_running_is_a_problem(tmp_path: Path) -> None:
    """Once DAGMan has created the node log (`Bootstrapping...`), a node log that is missing
    is a problem; before, even with DAGMan started and parsing the DAG, it is not."""
    dag = tmp_path / "pipe.dag"
    shutil.copy(PIPE / "pipe.dag", dag)
    probed = Probed(dag)
    assert probed.collect()["pipeline/pipe.dag"]["dag.problem"] == ""
    (tmp_path / "pipe.dag.dagman.out").write_text(
        _lines_until(PIPE / "run1.dagman.out", "Parsing pipe.dag"), encoding="utf-8")
    assert probed.collect()["pipeline/pipe.dag"]["dag.problem"] == ""
    (tmp_path / "pipe.dag.dagman.out").write_text(
        _lines_until(PIPE / "run1.dagman.out", "Bootstrapping"), encoding="utf-8")
    problem = probed.collect()["pipeline/pipe.dag"]["dag.problem"]
    assert problem.startswith("node log: ") and "No such file" in problem


def _engine(tmp_path: Path, dag: Path, **kw: Any) -> Engine:
    text = RULESET.format(dag=dag.name)
    rs_path = tmp_path / "r.yaml"
    rs_path.write_text(text, encoding="utf-8")
    from rulesmon.config.loader import load

    return Engine(load(rs_path), state_path=tmp_path / "s.db", log=NullLog(), **kw)


def test_groups_by_run_uuid_give_progress_epochs_and_resources(tmp_path: Path) -> None:
    """Grouping the nodes by VARS run_uuid: run r1 is done with 2 epochs, r2 has one failed
    and one futile node; resources count members per ResourceName."""
    engine = _engine(tmp_path, stage_run1(tmp_path))
    try:
        engine.tick()
        nodes = [f for f in engine.instances.values() if "node.name" in f]
        r1 = group_facts("run_uuid", "r1", [f for f in nodes if f["node.vars.run_uuid"] == "r1"])
        r2 = group_facts("run_uuid", "r2", [f for f in nodes if f["node.vars.run_uuid"] == "r2"])
        firing = {k for k, st in engine.alerts.get("run-has-failures", {}).items()
                  if st.status == "firing"}
        aborted = engine.alerts.get("dag-aborted", {})
    finally:
        engine.close()
    assert (r1["group.total"], r1["group.done"], r1["group.pct"], r1["group.all_done"]) == (
        2, 2, 100.0, True)
    assert (r1["group.epochs_total"], r1["group.epochs_done"], r1["group.retried"]) == (2, 2, 1)
    assert r1["group.resources"] == {"gpu-a": 1, "gpu-b": 1}
    assert r1["group.resources.gpu-a"] == 1 and r1["group.mem_peak"] == 5 << 20
    assert (r2["group.failed"], r2["group.cancelled"], r2["group.pending"],
            r2["group.epochs_done"]) == (1, 1, 0, 0)
    assert firing == {"pipeline/run_uuid=r2"}
    assert not any(st.status == "firing" for st in aborted.values())


def test_run_uuid_filter_watches_one_training_run(tmp_path: Path) -> None:
    """`--run-uuid r1` keeps r1's nodes and the DAG they belong to (DAG-level rules still see
    it): the run is terminal and succeeded, while the whole DAG failed and wrote a rescue
    DAG; the DAG instance does not count as one of the run's jobs."""
    dag = stage_run1(tmp_path)
    engine = _engine(tmp_path, dag, group_filter=("run_uuid", "r1"))
    try:
        engine.tick()
        keys = sorted(engine.instances)
        run = engine.run_facts
        whole = engine.instances["pipeline/pipe.dag"]
    finally:
        engine.close()
    assert keys == ["pipeline/A", "pipeline/B", "pipeline/pipe.dag"]
    assert (whole["dag.failed"], whole["dag.rescue_written"]) == (1, True)
    assert (run["run.total"], run["run.all_terminal"], run["run.all_succeeded"]) == (
        2, True, True)
    rs = tmp_path / "r.yaml"
    one = run_cli("run", str(rs), "--once", "--run-uuid", "r1", "--state", str(tmp_path / "a"))
    assert one.returncode == 0, one.stderr
    everything = run_cli("run", str(rs), "--once", "--state", str(tmp_path / "b"))
    assert everything.returncode == 1, everything.stderr
    other = run_cli("run", str(rs), "--once", "--group", "run_uuid=r2", "--state",
                    str(tmp_path / "c"))
    assert other.returncode == 1
    bad = run_cli("run", str(rs), "--once", "--group", "run_uuid")
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_plain_lines_report_progress_per_training_run(tmp_path: Path) -> None:
    """Without a terminal, `rulesmon run` prints a RUN_PROGRESS block per training run on the
    first tick (done/total, states, epochs, retries, resources) and again only when a run's
    counts change."""
    import io

    from rulesmon.display.plain import PlainLines

    printer = PlainLines(io.StringIO())
    engine = _engine(tmp_path, stage_run1(tmp_path), observers=[printer.feed])
    try:
        engine.tick()
        first = printer.lines(printer.feed.take())
        engine.tick()
        second = printer.lines(printer.feed.take())
    finally:
        engine.close()
    start = next(i for i, line in enumerate(first) if "RUN_PROGRESS: pipeline/run_uuid=r1" in line)
    assert [line.split("] ", 1)[-1] for line in first[start:start + 6]] == [
        "RUN_PROGRESS: pipeline/run_uuid=r1",
        "  Progress: 2/2 done (100%) - 0 RUNNING, 0 PENDING, 0 FAILED, 0 CANCELLED",
        "  Epochs: 2/2 complete | Retried: 1",
        "  Resources: gpu-a 1, gpu-b 1 | Peak memory: 5.2 MB",
        "RUN_PROGRESS: pipeline/run_uuid=r2",
        "  Progress: 0/2 done (0%) - 0 RUNNING, 0 PENDING, 1 FAILED, 1 CANCELLED"]
    assert not [line for line in second if "RUN_PROGRESS" in line]
    once = run_cli("run", str(tmp_path / "r.yaml"), "--once", "--state", str(tmp_path / "p"))
    assert "RUN_PROGRESS: pipeline/run_uuid=r2" in once.stdout


def test_facts_command_prints_training_runs(tmp_path: Path) -> None:
    """`rulesmon facts` prints each training run's group.* facts, and does not mark group facts
    unknown on every node."""
    stage_run1(tmp_path)
    (tmp_path / "r.yaml").write_text(RULESET.format(dag="pipe.dag"), encoding="utf-8")
    out = run_cli("facts", str(tmp_path / "r.yaml"))
    assert out.returncode == 0, out.stderr
    blocks = {b.split("\n", 1)[0]: b for b in out.stdout.split("== ")[1:]}
    r2 = blocks["pipeline/run_uuid=r2"]
    assert "  group.failed = 1\n" in r2 and "  group.cancelled = 1\n" in r2
    assert "  group.done = 2\n" in blocks["pipeline/run_uuid=r1"]
    assert "group.failed = unknown" not in out.stdout
    as_json = json.loads(run_cli("facts", str(tmp_path / "r.yaml"), "--format", "json").stdout)
    assert as_json["pipeline/run_uuid=r2"]["facts"]["group.failed"] == 1
    assert not [u for u in as_json["pipeline/C"]["unknown"] if u.startswith("group.")]


def test_unknown_run_uuid_is_warned_once_with_the_known_ones(tmp_path: Path) -> None:
    """A `--run-uuid` no instance has is said once, with the values there are, instead of
    watching nothing in silence."""
    stage_run1(tmp_path)
    rs = tmp_path / "r.yaml"
    rs.write_text(RULESET.format(dag="pipe.dag").replace("every: 1s", "every: 0.05s"),
                  encoding="utf-8")
    from rulesmon.config.loader import load

    engine = Engine(load(rs), state_path=tmp_path / "s.db", log=NullLog(),
                    group_filter=("run_uuid", "r9"))
    warned: list[dict[str, Any]] = []
    engine.log = _Capture(warned)
    try:
        for _ in range(3):
            engine.tick()
    finally:
        engine.close()
    assert engine.instances == {}
    assert [w["message"] for w in warned if w["event"] == "group_filter_unmatched"] == [
        "no instance has run_uuid=r9 (known: r1, r2)"]
    out = run_cli("run", str(rs), "--once", "--run-uuid", "r9", "--state", str(tmp_path / "x"))
    assert "no instance has run_uuid=r9 (known: r1, r2)" in out.stderr


class _Capture(NullLog):
    """A log that keeps its warnings."""

    def __init__(self, into: list[dict[str, Any]]) -> None:
        self.into = into

    def warning(self, event: str, **kw: Any) -> None:
        self.into.append({"event": event, **kw})


def test_control_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    """Control verbs explain in one line why they cannot act: an unsupported verb, a node
    not yet submitted, a DAG still running, no rescue DAG."""
    dag = tmp_path / "pipe.dag"
    shutil.copy(PIPE / "pipe.dag", dag)
    with pytest.raises(ProbeError, match="requeue is not possible for a DAGMan job"):
        control("requeue", {"job.cluster": 3}, None, 5.0)
    with pytest.raises(ProbeError, match="not been submitted yet"):
        control("hold", {"job.name": "A"}, None, 5.0)
    with pytest.raises(ProbeError, match="still running"):
        control("resubmit", {"dag.file": str(dag), "dag.finished": False}, None, 5.0)
    with pytest.raises(ProbeError, match=r"no rescue DAG for pipe\.dag"):
        control("resubmit", {"node.dag": str(dag)}, None, 5.0)
    (tmp_path / "pipe.dag.lock").write_text("", encoding="utf-8")
    with pytest.raises(ProbeError, match=r"pipe\.dag\.lock exists"):
        control("resubmit", {"dag.file": str(dag), "dag.finished": True}, None, 5.0)
    with pytest.raises(ProbeError, match="no DAG file"):
        control("resubmit", {}, None, 5.0)


def test_lint_knows_dag_facts_only_for_dagman_jobs(tmp_path: Path) -> None:
    """`dag.*` and `node.*` lint clean for a dagman job and are unknown for another job."""
    from rulesmon.lint import lint_file

    good = tmp_path / "good.yaml"
    good.write_text(RULESET.format(dag="pipe.dag"), encoding="utf-8")
    assert [d.render() for d in lint_file(good, env={}) if d.severity.value != "info"] == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: b\njobs:\n  t:\n    local: {command: 'true'}\nrules:\n"
                   "  - name: x\n    when: dag.aborted\n    do: [log]\n", encoding="utf-8")
    found = [d.render() for d in lint_file(bad, env={})]
    assert any("RM401 unknown fact 'dag.aborted'" in f and "dag.* a dagman job" in f
               for f in found), found


def test_unreadable_dag_files_alert_after_three_ticks(tmp_path: Path) -> None:
    """With builtin:dagman-training, a .dag file that stays broken raises
    dag-files-unreadable on the third tick, not before, and no tick fails."""
    (tmp_path / "pipe.dag").write_text("JOB A\n", encoding="utf-8")
    rs = tmp_path / "r.yaml"
    rs.write_text("version: 1\nname: broken\nextends: [builtin:dagman-training]\n"
                  "defaults: {notify: []}\njobs:\n  pipeline:\n    dagman: {dag: pipe.dag}\n",
                  encoding="utf-8")
    from rulesmon.config.loader import load

    engine = Engine(load(rs), state_path=tmp_path / "s.db", log=NullLog())
    seen = []
    try:
        for _ in range(3):
            engine.tick()
            seen.append(engine.alerts.get("dag-files-unreadable", {}).get(
                "pipeline/pipe.dag"))
        probe_ok = engine.run_facts["probe.dagman.ok"]
    finally:
        engine.close()
    assert [s.status if s else None for s in seen][:2] == [None, None]
    assert seen[2] is not None and seen[2].status == "firing"
    assert probe_ok is True


def test_submit_without_the_tool_is_a_failed_launch(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`submit: true` without condor_submit_dag available makes the DAG instance FAILED with a
    launch_failed diagnosis and a one-line dag.problem."""
    dag = tmp_path / "pipe.dag"
    shutil.copy(PIPE / "pipe.dag", dag)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("RULESMON_CONDOR_BIN", str(empty))
    loaded = load_text("version: 1\nname: s\njobs:\n  pipeline:\n"
                       "    dagman: {dag: pipe.dag, submit: true}\n", base=tmp_path)
    probe = DagmanProbe(loaded.ruleset, tmp_path)
    ctx = TickContext(now=time.time(), ruleset=loaded.ruleset, base_dir=tmp_path)
    probe.start(ctx)
    facts = probe.collect(ctx)
    got = facts["pipeline/pipe.dag"]
    assert (got["job.state"], got["job.diagnosis"], got["job.outcome"]) == (
        "FAILED", "launch_failed", "error")
    assert facts["pipeline/A"]["job.state"] == "CANCELLED"  # nothing will run: the run ends
    assert facts["pipeline/A"]["node.detail"] == "never ran: the DAG could not be submitted"
    assert got["dag.problem"] == (f"submit: condor_submit_dag not found in "
                                  f"RULESMON_CONDOR_BIN={empty}")
    again = DagmanProbe(loaded.ruleset, tmp_path)
    again.start(TickContext(now=time.time(), ruleset=loaded.ruleset, base_dir=tmp_path,
                            dry_run=True))
    assert again.collect(ctx)["pipeline/pipe.dag"]["job.raw_state"] == "dry run: not submitted"


def test_final_node_waits_for_every_other_node(tmp_path: Path) -> None:
    """A FINAL node is NOT_READY while other nodes run and READY once they all ended, even
    after a failure (it is never futile)."""
    dag = stage_run1(tmp_path)
    text = dag.read_text(encoding="utf-8") + "FINAL cleanup cleanup.sub\n"
    dag.write_text(text, encoding="utf-8")
    (tmp_path / "pipe.dag.dagman.out").unlink()  # DAGMan still running as far as we know
    (tmp_path / "pipe.dag.dagman.log").unlink()
    (tmp_path / "pipe.dag.status").unlink()
    got = Probed(dag).collect()
    assert got["pipeline/cleanup"]["node.state"] == "READY"
    assert got["pipeline/cleanup"]["node.kind"] == "FINAL"
    events = _events((PIPE / "run1.nodes.log").read_text(encoding="utf-8"))
    (tmp_path / "pipe.dag.nodes.log").write_text("".join(events[:6]), encoding="utf-8")
    early = Probed(dag).collect()
    assert early["pipeline/cleanup"]["node.state"] == "NOT_READY"


def test_older_htcondor_formats(tmp_path: Path) -> None:
    """An HTCondor 8-style node log (month/day stamps, `DAG Node:` unindented, a two-column
    resources table, a job killed by signal 9) and an old-layout status file are read."""
    for name in ("old.dag", "old.dag.nodes.log", "old.dag.dagman.out", "old.status"):
        shutil.copy(FIXTURES / "v8" / name, tmp_path / name)
    loaded = load_text("version: 1\nname: old\njobs:\n  lsst:\n"
                       "    dagman: {dag: old.dag, status_file: old.status}\n", base=tmp_path)
    probe = DagmanProbe(loaded.ruleset, tmp_path)
    got = probe.collect(TickContext(now=time.time(), ruleset=loaded.ruleset,
                                    base_dir=tmp_path))
    a, b, dag = got["lsst/A51"], got["lsst/B52"], got["lsst/old.dag"]
    assert (a["node.state"], a["job.id"], a["job.cpu_user"], a["job.cpu_sys"]) == (
        "DONE", "61931.0", 684.0, 5.0)
    assert (a["job.mem_used"], a["job.mem_req"], a["job.cpus"]) == (871 << 20, 1024 << 20, 1)
    assert a["job.elapsed"] == 65 * 60 + 26
    assert (b["node.state"], b["job.state"], b["job.signal"], b["job.exit_code"]) == (
        "ERROR", "FAILED", 9, 137)
    assert (dag["job.state"], dag["dag.exit_code"], dag["dag.cluster"], dag["dag.status"]) == (
        "FAILED", 1, 61930, "ERROR")
    assert dag["dag.rescue_written"] is True and dag["dag.problem"] == ""


def test_jobs_still_queued_when_the_dag_ends_count_as_removed(tmp_path: Path) -> None:
    """When DAGMan has exited but the removal events of its queued jobs are not in the node
    log yet, those nodes are CANCELLED already (not FAILED, then CANCELLED)."""
    dag = stage_abort(tmp_path)
    events = _events((ABORT / "abort.dag.nodes.log").read_text(encoding="utf-8"))
    (tmp_path / "abort.dag.nodes.log").write_text(
        "".join(e for e in events if not e.startswith(("009", "004 (034"))), encoding="utf-8")
    got = Probed(dag).collect()
    assert got["pipeline/abort.dag"]["dag.finished"] is True
    assert (got["pipeline/L"]["node.state"], got["pipeline/L"]["job.state"]) == (
        "ERROR", "CANCELLED")
    assert got["pipeline/H"]["job.state"] == "CANCELLED"


def stage_recorded(folder: Path, name: str) -> Path:
    """A DAG recorded on the development pool (tests/fixtures/dagman/<name>/), copied whole."""
    for path in (FIXTURES / name).iterdir():
        shutil.copy(path, folder / path.name)
    return folder / f"{name}.dag"


STRICT_REASON = ("DAGMAN_USE_STRICT makes a warning fatal: Warning: default node log file "
                 "/tmp/rulesmon-condor/work/h13/strict/./strict.dag.nodes.log is in /tmp")


def test_strict_abort_is_an_abort_and_no_node_log_is_missed(tmp_path: Path) -> None:
    """A DAG that DAGMAN_USE_STRICT=1 aborted while starting up (recorded on 23.9: "ERROR:
    Warning is fatal error..." then "Aborting DAG...", exit 1, no node log ever written) is
    finished and aborted with the warning named, its node never ran, and the node log DAGMan
    never created is no problem, tick after tick."""
    probed = Probed(stage_recorded(tmp_path, "strict"))
    for _ in range(4):
        got = probed.collect()
        dag = got["pipeline/strict.dag"]
        assert (dag["dag.problem"], dag["dag.read_failures"]) == ("", 0)
    assert (dag["dag.finished"], dag["dag.aborted"], dag["dag.exit_code"]) == (True, True, 1)
    assert dag["dag.abort_reason"] == STRICT_REASON
    assert dag["job.state"] == "FAILED" and dag["dag.rescue_written"] is False
    assert dag["dag.last_error"] == ("ERROR: Warning is fatal error because of "
                                     "DAGMAN_USE_STRICT setting")
    node = got["pipeline/A"]
    assert (node["job.state"], node["node.detail"]) == ("CANCELLED",
                                                        "never ran: the DAG ended first")


@pytest.mark.parametrize(("name", "status", "reason"), [
    ("cycle", "CYCLE", "ERROR: a cycle exists in the dag, please check input"),
    ("halt", "OK", "the DAG was halted (halt file halt.dag.halt)"),
    ("parse", None, "parse.dag (line 2): ERROR: expected JOB, DATA, SUBDAG, FINAL, SCRIPT, "
     "PARENT, RETRY, ABORT-DAG-ON, DOT, VARS, PRIORITY, CATEGORY, MAXJOBS, CONFIG, "
     "SET_JOB_ATTR, ... , PIN_OUT, INCLUDE, SAVE_POINT_FILE orSUBMIT-DESCRIPTION token "
     "(found JOBB)"),
])
def test_every_dagman_abort_is_named(tmp_path: Path, name: str, status: str | None,
                                     reason: str) -> None:
    """DAGs DAGMan 23.9 stopped early, recorded on the pool, are aborted with DAGMan's own
    reason: a cycle ("Aborting DAG..." after the cycle check), a halt file (its "Aborting
    DAG..." follows an empty failed-jobs list and DAG status OK), and a .dag that does not
    parse (DAGMan exits 1 with no abort line at all)."""
    dag = Probed(stage_recorded(tmp_path, name)).collect()[f"pipeline/{name}.dag"]
    assert (dag["dag.finished"], dag["dag.aborted"], dag["dag.exit_code"]) == (True, True, 1)
    assert dag.get("dag.dag_status") == status
    assert dag["dag.abort_reason"] == reason


def test_failed_dag_is_not_an_abort(tmp_path: Path) -> None:
    """A DAG that ended because a node failed also writes "Aborting DAG..." (recorded run1):
    it is failed, with a rescue DAG, but not aborted."""
    dag = Probed(stage_run1(tmp_path)).collect()["pipeline/pipe.dag"]
    assert (dag["dag.finished"], dag["dag.dag_status"], dag["dag.aborted"]) == (
        True, "NODE_FAILED", False)
    assert dag["dag.abort_reason"] == ""


def test_strict_abort_alerts_dag_aborted_and_never_unreadable(tmp_path: Path) -> None:
    """With builtin:dagman-training over the recorded strict abort, dag-aborted fires on the
    first tick (and `rulesmon run` prints it with the reason, then exits 1), and
    dag-files-unreadable stays silent over four ticks."""
    stage_recorded(tmp_path, "strict")
    rs = tmp_path / "r.yaml"
    rs.write_text("version: 1\nname: strict\nextends: [builtin:dagman-training]\n"
                  "defaults: {notify: []}\njobs:\n  pipeline:\n    dagman: {dag: strict.dag}\n",
                  encoding="utf-8")
    from rulesmon.config.loader import load

    engine = Engine(load(rs), state_path=tmp_path / "s.db", log=NullLog())
    try:
        aborted = []
        for _ in range(4):
            engine.tick()
            aborted.append(engine.alerts.get("dag-aborted", {}).get("pipeline/strict.dag"))
            assert not any(st.status == "firing" for st in
                           engine.alerts.get("dag-files-unreadable", {}).values())
    finally:
        engine.close()
    assert aborted[0] is not None and aborted[0].status == "firing"
    result = run_cli("run", str(rs), "--state", str(tmp_path / "cli.db"))
    assert result.returncode == 1, result.stderr
    assert f"strict.dag aborted: {STRICT_REASON} (0/1 nodes done)" in result.stdout
    assert "unreadable" not in result.stdout + result.stderr
