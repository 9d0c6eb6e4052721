"""The htcondor probe on recorded outputs through scripted condor tools: facts, states, the
one-call-per-tick contract, history lookups, failures, submission and control."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.probes import condor_cli as cli
from rulesmon.probes.base import ProbeError, TickContext
from rulesmon.probes.htcondor import HTCondorProbe, control

from .conftest import run_cli
from .htcondor_fakes import FakeCondor

FIXTURES = Path(__file__).parent / "fixtures" / "htcondor"
Q23 = (FIXTURES / "condor_q-23.9.json").read_text(encoding="utf-8")
H23 = (FIXTURES / "condor_history-23.9.json").read_text(encoding="utf-8")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCondor:
    """Scripted condor tools, found through RULESMON_CONDOR_BIN."""
    condor = FakeCondor(tmp_path)
    monkeypatch.setenv(cli.ENV_BIN, str(condor.bin))
    condor.answer("condor_q", "[]")
    condor.answer("condor_history", "[]")
    return condor


def ruleset(jobs: str, base: Path) -> Any:
    """A ruleset through the real loader, with `jobs:` given as YAML text."""
    return load_text("version: 1\nname: condor-test\njobs:\n" + jobs, base=base).ruleset


class Clock:
    """Tick contexts with a controllable time."""

    def __init__(self, rs: Any, base: Path) -> None:
        self.rs, self.base, self.now = rs, base, 1_800_000_000.0

    def __call__(self, advance: float = 60.0, dry_run: bool = False) -> TickContext:
        self.now += advance
        return TickContext(now=self.now, ruleset=self.rs, base_dir=self.base, dry_run=dry_run)


def probe_for(jobs: str, base: Path) -> tuple[HTCondorProbe, Clock]:
    rs = ruleset(jobs, base)
    return HTCondorProbe(rs, base), Clock(rs, base)


def test_queue_facts_from_recorded_23(fake: FakeCondor, tmp_path: Path) -> None:
    """Running, idle and held jobs of HTCondor 23.9 give normalised states, resources in bytes,
    absolute output paths, custom attributes and the hold diagnosis."""
    fake.answer("condor_q", Q23)
    probe, tick = probe_for("  t:\n    htcondor: {ids: [37, '38.0', '39.0']}\n", tmp_path)
    facts = probe.collect(tick())
    run, idle, held = facts["t/37.0"], facts["t/38.0"], facts["t/39.0"]
    assert run["job.state"] == "RUNNING" and run["job.status"] == "running"
    assert run["job.batch_name"] == "train-llama" and run["job.name"] == "train-llama"
    assert run["job.attrs.RunUUID"] == "4f1c-aa" and run["job.attrs.Epoch"] == 3
    assert not any(k.startswith("job.attrs.") and k[10:].lower() in ("owner", "jobstatus")
                   for k in run)
    assert run["job.stdout"] == "/home/alice/run/run.37.0.out"
    assert run["job.workdir"] == "/home/alice/run"
    assert run["job.mem_req"] == 64 * 2**20 and run["job.disk_req"] == 20 * 2**20
    assert run["job.remote_host"] == "slot1_1@vm" and run["job.run_count"] == 1
    assert run["job.restarts"] == 0 and run["job.terminal"] is False
    assert run["job.elapsed"] > 0 and run["job.owner"] == "rmcondor"
    assert idle["job.state"] == "PENDING" and idle["job.gpus"] == 1
    assert held["job.state"] == "HELD" and held["job.hold_code"] == 13
    assert held["job.hold_subcode"] == 2
    assert "data.csv" in held["job.hold_reason"]
    assert held["job.diagnosis"] == "launch_failed" and held["job.terminal"] is False
    assert fake.calls("condor_history") == []


def test_jobs_that_left_the_queue_come_from_history(fake: FakeCondor, tmp_path: Path) -> None:
    """Jobs named by id that are not queued are looked up in ONE condor_history call: exit 0,
    exit 3, a signal and a removal each end in the right state."""
    fake.answer("condor_history", H23)
    probe, tick = probe_for("  t:\n    htcondor: {ids: ['40.0', '41.0', '42.0', '43.0']}\n",
                            tmp_path)
    facts = probe.collect(tick())
    ok, three, sig, removed = (facts[f"t/{i}.0"] for i in (40, 41, 42, 43))
    assert ok["job.state"] == "COMPLETED" and ok["job.succeeded"] is True
    assert ok["job.exit_code"] == 0 and ok["job.diagnosis"] == "ok"
    assert three["job.state"] == "FAILED" and three["job.exit_code"] == 3
    assert three["job.diagnosis"] == "nonzero_exit" and three["job.outcome"] == "failed"
    assert sig["job.signal"] == 9 and sig["job.exit_code"] == 137
    assert sig["job.diagnosis"] == "signal"
    assert removed["job.state"] == "CANCELLED" and removed["job.status"] == "removed"
    assert removed["job.diagnosis_detail"] == "no longer needed (by user rmcondor)"
    assert all(f["job.terminal"] for f in facts.values())
    assert len(fake.calls("condor_history")) == 1
    assert "-match 4" in fake.calls("condor_history")[0]
    probe.collect(tick())
    assert len(fake.calls("condor_history")) == 1  # ended jobs are not looked up again


Q_I13 = (FIXTURES / "condor_q-23.9-i13.json").read_text(encoding="utf-8")
H_I13 = (FIXTURES / "condor_history-23.9-i13.json").read_text(encoding="utf-8")


def test_user_hold_is_a_state_not_an_ending(fake: FakeCondor, tmp_path: Path) -> None:
    """A job held with condor_hold (HoldReasonCode 1, recorded on 23.9) is HELD, not terminal,
    with its reason and code and no diagnosis: it is still queued and can be released."""
    fake.answer("condor_q", Q_I13)
    probe, tick = probe_for("  t:\n    htcondor: {ids: ['2.0']}\n", tmp_path)
    held = probe.collect(tick())["t/2.0"]
    assert (held["job.state"], held["job.status"], held["job.outcome"]) == (
        "HELD", "held", "unknown")
    assert held["job.terminal"] is False and held["job.hold_code"] == 1
    assert held["job.hold_reason"] == "via condor_hold (by user rmcondor)"
    assert "job.diagnosis" not in held and "job.succeeded" not in held
    assert held["job.elapsed"] == 14.0  # it ran 14 s before the hold


def test_zero_wall_clock_is_a_value(fake: FakeCondor, tmp_path: Path) -> None:
    """RemoteWallClockTime 0.0 (recorded on 23.9) is an elapsed time of 0, not an unknown one:
    a job that ran under a second, one removed before it ran, and one idle in the queue."""
    fake.answer("condor_q", Q_I13)
    fake.answer("condor_history", H_I13)
    probe, tick = probe_for("  t:\n    htcondor: {ids: ['5.0', '6.0']}\n", tmp_path)
    facts = probe.collect(tick())
    idle = facts["t/6.0"]
    assert (idle["job.state"], idle["job.elapsed"]) == ("PENDING", 0.0)
    fake.answer("condor_q", "[]")  # 6.0 removed from the queue: in condor_history now
    facts = probe.collect(tick())
    quick, removed = facts["t/5.0"], facts["t/6.0"]
    assert (quick["job.state"], quick["job.exit_code"], quick["job.elapsed"]) == (
        "COMPLETED", 0, 0.0)
    assert (removed["job.state"], removed["job.elapsed"]) == ("CANCELLED", 0.0)


def test_removed_job_keeps_its_signal(fake: FakeCondor, tmp_path: Path) -> None:
    """A job removed with condor_rm while it ran keeps ExitSignal 15 from condor_history
    (recorded on 23.9): signal 15, exit code 143, still CANCELLED; one removed while idle
    has no signal at all."""
    fake.answer("condor_history", H_I13)
    probe, tick = probe_for("  t:\n    htcondor: {ids: ['3.0', '6.0']}\n", tmp_path)
    facts = probe.collect(tick())
    ran, idle = facts["t/3.0"], facts["t/6.0"]
    assert (ran["job.state"], ran["job.outcome"], ran["job.diagnosis"]) == (
        "CANCELLED", "cancelled", "cancelled")
    assert (ran["job.signal"], ran["job.exit_code"], ran["job.elapsed"]) == (15, 143, 14.0)
    assert ran["job.diagnosis_detail"] == "via condor_rm (by user rmcondor)"
    assert idle["job.state"] == "CANCELLED"
    assert "job.signal" not in idle and "job.exit_code" not in idle


def test_one_condor_q_call_per_tick_for_all_jobs(fake: FakeCondor, tmp_path: Path) -> None:
    """Three watched jobs with different selections cost one condor_q call per tick, and a tick
    inside min_interval costs none."""
    fake.answer("condor_q", Q23)
    probe, tick = probe_for(
        "  a:\n    htcondor: {ids: [37], min_interval: 10s}\n"
        "  b:\n    htcondor: {owner: rmcondor, batch_name: 'train-*'}\n"
        "  c:\n    htcondor: {batch_name: eval}\n", tmp_path)
    facts = probe.collect(tick())
    assert sorted(facts) == ["a/37.0", "b/37.0", "b/38.0", "c/39.0"]
    probe.collect(tick(5))
    assert len(fake.calls("condor_q")) == 1
    probe.collect(tick(5))
    calls = fake.calls("condor_q")
    assert len(calls) == 2
    assert calls[0] == (
        'condor_q -allusers -json -constraint ((ClusterId == 37)) || (Owner == "rmcondor" && '
        'regexp("^train-.*$", JobBatchName)) || (JobBatchName == "eval")')


def test_constraint_attribution_asks_the_schedd(fake: FakeCondor, tmp_path: Path) -> None:
    """With two jobs and a `constraint:`, the schedd evaluates the constraint for each queued
    job (one light -af:j call), so an ad goes only to the job whose constraint holds."""
    fake.answer("condor_q", Q23)
    probe, tick = probe_for(
        "  a:\n    htcondor: {constraint: 'RunUUID =?= \"4f1c-aa\"'}\n"
        "  b:\n    htcondor: {owner: rmcondor}\n", tmp_path)
    # the fake prints the same JSON for both calls; make the -af:j answer distinct
    (fake.bin / "condor_q").write_text(
        '#!/bin/sh\nprintf "%s\\n" "condor_q $*" >> "$(dirname "$0")/calls.log"\n'
        'case "$*" in *-af:j*) printf "37.0 true\\n38.0 false\\n39.0 false\\n";;\n'
        f'*) cat "{FIXTURES / "condor_q-23.9.json"}";; esac\n', encoding="utf-8")
    facts = probe.collect(tick())
    assert sorted(facts) == ["a/37.0", "b/37.0", "b/38.0", "b/39.0"]
    assert len(fake.calls("condor_q")) == 2


def test_history_lag_then_unknown(fake: FakeCondor, tmp_path: Path) -> None:
    """A job that leaves the queue keeps its last facts while condor_history lags, and becomes
    UNKNOWN (not terminal) only after ten lookups found nothing."""
    fake.answer("condor_q", Q23)
    probe, tick = probe_for("  t:\n    htcondor: {owner: rmcondor}\n", tmp_path)
    assert probe.collect(tick())["t/37.0"]["job.state"] == "RUNNING"
    fake.answer("condor_q", "[]")
    facts = probe.collect(tick())
    assert facts["t/37.0"]["job.state"] == "RUNNING"
    for _ in range(9):
        facts = probe.collect(tick())
    assert facts["t/37.0"]["job.state"] == "UNKNOWN"
    assert "left the queue" in facts["t/37.0"]["job.raw_state"]
    assert len(fake.calls("condor_history")) == 10
    probe.collect(tick())
    assert len(fake.calls("condor_history")) == 10


def test_left_queue_then_found_in_history(fake: FakeCondor, tmp_path: Path) -> None:
    """A running job that leaves the queue is finished from its history record."""
    record = json.loads(H23)
    done = next(ad for ad in record if ad["ClusterId"] == 41)
    queued = dict(done, JobStatus=2, Owner="rmcondor")
    fake.answer("condor_q", json.dumps([queued]))
    probe, tick = probe_for("  t:\n    htcondor: {owner: rmcondor}\n", tmp_path)
    assert probe.collect(tick())["t/41.0"]["job.state"] == "RUNNING"
    fake.answer("condor_q", "")
    fake.answer("condor_history", json.dumps([done]))
    facts = probe.collect(tick())["t/41.0"]
    assert facts["job.state"] == "FAILED" and facts["job.exit_code"] == 3


def test_older_version_shapes(fake: FakeCondor, tmp_path: Path) -> None:
    """HTCondor 8.8-style ads: an expression for RequestMemory (no MemoryProvisioned) is
    evaluated on the ad, through MemoryUsage's own expression; ExitStatus stands in for
    ExitCode, floats count as integers, AssignedGPUs is kept."""
    fake.answer("condor_q", (FIXTURES / "condor_q-8.8.json").read_text(encoding="utf-8"))
    fake.answer("condor_history",
                (FIXTURES / "condor_history-8.8.json").read_text(encoding="utf-8"))
    probe, tick = probe_for("  t:\n    htcondor: {ids: [1201, 1202, 1203]}\n", tmp_path)
    facts = probe.collect(tick())
    run = facts["t/1201.0"]
    assert run["job.mem_used"] == 2048000 * 1024
    # ifthenelse(MemoryUsage =!= undefined, MemoryUsage, 2048), MemoryUsage being
    # ((ResidentSetSize + 1023) / 1024) in integer arithmetic: 2000 MiB
    assert run["job.mem_req"] == 2000 * 2**20
    assert run["job.disk_req"] == 1048576 * 1024
    assert run["job.cpus"] == 4 and run["job.gpus"] == 2
    assert run["job.gpus_assigned"] == "CUDA0,CUDA1" and run["job.restarts"] == 1
    assert run["job.stdout"] == "/home/alice/sweep/out/1201.0.log"
    assert run["job.attrs.SweepIndex"] == 7
    assert facts["t/1202.0"]["job.exit_code"] == 2
    assert facts["t/1202.0"]["job.remote_host"] == "slot1@gpu03.example.org"
    assert facts["t/1203.0"]["job.signal"] == 11 and facts["t/1203.0"]["job.state"] == "FAILED"


def test_lowercase_names(fake: FakeCondor, tmp_path: Path) -> None:
    """Attribute names are case-insensitive (a hold by a user, read in lower case, is HELD
    with its code and no diagnosis)."""
    fake.answer("condor_q", (FIXTURES / "condor_q-lowercase.json").read_text(encoding="utf-8"))
    probe, tick = probe_for("  t:\n    htcondor: {owner: bob}\n", tmp_path)
    facts = probe.collect(tick())["t/77.3"]
    assert facts["job.state"] == "HELD" and facts["job.hold_code"] == 1
    assert "job.diagnosis" not in facts and facts["job.attrs.runuuid"] == "zz-9"


@pytest.mark.parametrize(("setup", "expected"), [
    ("garbage", "condor_q printed output that is not JSON"),
    ("down", "condor_q failed (exit 1): Error: Collector has no record of schedd/submitter"),
    ("missing", "condor_q not found in RULESMON_CONDOR_BIN="),
])
def test_failures_raise_one_line_and_keep_last_facts(
        fake: FakeCondor, tmp_path: Path, setup: str, expected: str) -> None:
    """Garbage, a schedd that does not answer and a missing tool each raise one ProbeError
    line; the next good call brings back the jobs with their facts."""
    fake.answer("condor_q", Q23)
    probe, tick = probe_for("  t:\n    htcondor: {ids: [37]}\n", tmp_path)
    assert probe.collect(tick())["t/37.0"]["job.state"] == "RUNNING"
    if setup == "garbage":
        fake.answer("condor_q", "<html>502</html>")
    elif setup == "down":
        fake.answer("condor_q", err="Error: Collector has no record of schedd/submitter\n",
                    rc=1)
    else:
        (fake.bin / "condor_q").rename(fake.bin / "gone")
    with pytest.raises(ProbeError) as info:
        probe.collect(tick())
    assert expected in str(info.value) and "\n" not in str(info.value)
    if setup == "missing":
        (fake.bin / "gone").rename(fake.bin / "condor_q")
    fake.answer("condor_q", Q23)
    assert probe.collect(tick())["t/37.0"]["job.state"] == "RUNNING"


def test_failure_is_retried_next_tick_despite_min_interval(fake: FakeCondor,
                                                           tmp_path: Path) -> None:
    """After a failed call the next tick calls again (min_interval spaces good calls only), so
    consecutive failures are counted tick after tick."""
    fake.answer("condor_q", err="Error: communication error\n", rc=1)
    probe, tick = probe_for("  t:\n    htcondor: {ids: [37], min_interval: 1h}\n", tmp_path)
    for _ in range(3):
        with pytest.raises(ProbeError):
            probe.collect(tick(1))
    fake.answer("condor_q", Q23)
    assert probe.collect(tick(1))["t/37.0"]["job.state"] == "RUNNING"
    probe.collect(tick(1))
    assert len(fake.calls("condor_q")) == 4


def test_schedd_failures_alert_through_rulesmon_run(fake: FakeCondor, tmp_path: Path) -> None:
    """`rulesmon run` with a schedd that keeps failing counts the failures and fires the
    builtin schedd-unreachable rule at the third; it logs and does not crash."""
    fake.answer("condor_q", err="Error: communication error\n", rc=1)
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nname: down\nevery: 0.1s\nextends: [builtin:htcondor-basics]\n"
        "jobs:\n  t:\n    htcondor: {ids: [5], min_interval: 0s}\n"
        "rules:\n  - name: give-up\n    scope: run\n    when: probe.htcondor.failures >= 4\n"
        "    do: [{stop: 7}]\n", encoding="utf-8")
    result = run_cli("run", str(path), env={**_env(), cli.ENV_BIN: str(fake.bin)})
    assert result.returncode == 7, result.stderr[-2000:]
    out = result.stdout + result.stderr
    assert "schedd-unreachable" in out
    assert "condor_q has failed 3 times" in out
    assert "condor_q failed (exit 1): Error: communication error" in out
    assert "Traceback" not in out


def test_submit_failure_is_a_failed_launch(fake: FakeCondor, tmp_path: Path) -> None:
    """A submit file condor_submit refuses gives one FAILED instance with the reason."""
    (tmp_path / "a.sub").write_text("queue\n")
    fake.answer("condor_submit", err="ERROR: on Line 1 of submit file: bad\n", rc=1)
    probe, tick = probe_for("  t:\n    htcondor: {submit: {file: a.sub}}\n", tmp_path)
    probe.start(tick())
    facts = probe.collect(tick())["t/submit"]
    assert facts["job.state"] == "FAILED" and facts["job.diagnosis"] == "launch_failed"
    assert facts["job.launch_ok"] is False and facts["job.terminal"] is True
    assert "ERROR: on Line 1 of submit file: bad" in facts["job.launch_error"]
    assert fake.calls("condor_q") == []


def test_submit_file_missing(fake: FakeCondor, tmp_path: Path) -> None:
    """A submit file that does not exist fails the launch without calling condor_submit."""
    probe, tick = probe_for("  t:\n    htcondor: {submit: {file: nope.sub}}\n", tmp_path)
    probe.start(tick())
    facts = probe.collect(tick())["t/submit"]
    assert "submit file not found" in facts["job.launch_error"]
    assert fake.calls("condor_submit") == []


def test_submitted_job_never_seen_fails_verification(fake: FakeCondor, tmp_path: Path) -> None:
    """Submitted jobs must show up within verify_within; until then they are PENDING, after
    that FAILED with launch_ok false."""
    (tmp_path / "a.sub").write_text("queue\n")
    fake.answer("condor_submit", "88.0 - 88.0\n")
    probe, tick = probe_for(
        "  t:\n    htcondor:\n      submit: {file: a.sub, verify_within: 90s, vars: "
        "{batch_name: 'b-{{ job.key }}'}}\n      min_interval: 1s\n", tmp_path)
    probe.start(tick(0))
    first = probe.collect(tick(1))["t/88.0"]
    assert first["job.state"] == "PENDING" and "job.launch_ok" not in first
    assert fake.calls("condor_submit")[0].startswith("condor_submit -terse -append batch_name "
                                                     "= b-t ")
    facts = probe.collect(tick(100))["t/88.0"]
    assert facts["job.state"] == "FAILED" and facts["job.launch_ok"] is False
    assert "88.0 not seen in condor_q or condor_history within 90s" in facts["job.launch_error"]


def test_dry_run_submits_nothing(fake: FakeCondor, tmp_path: Path) -> None:
    """In a dry run the job is reported PENDING with what would be submitted."""
    (tmp_path / "a.sub").write_text("queue\n")
    probe, tick = probe_for("  t:\n    htcondor: {submit: {file: a.sub}}\n", tmp_path)
    probe.start(tick(dry_run=True))
    facts = probe.collect(tick(dry_run=True))["t/submit"]
    assert facts["job.state"] == "PENDING" and "would condor_submit" in facts["job.raw_state"]
    assert fake.calls() == []


def test_control_commands(fake: FakeCondor) -> None:
    """hold, release, remove/cancel and requeue run the right tool on the job id, with the
    reason where the tool takes one."""
    facts = {"job.id": "42.1", "job.source": "htcondor"}
    fake.answer("condor_hold", "Job 42.1 held\n")
    assert control("hold", facts, "too slow\nreally", 10).startswith(
        "condor_hold 42.1: Job 42.1 held (")
    control("release", facts, "ignored", 10)
    control("cancel", facts, None, 10)
    control("requeue", facts, None, 10)
    assert fake.calls() == ["condor_hold -reason too slow really 42.1",
                            "condor_release 42.1", "condor_rm 42.1",
                            "condor_vacate_job 42.1"]


def test_control_errors(fake: FakeCondor) -> None:
    """An unsupported verb, a missing job id and a failing tool are one-line ProbeErrors."""
    with pytest.raises(ProbeError, match="resubmit applies to DAGMan"):
        control("resubmit", {"job.id": "1.0"}, None, 5)
    with pytest.raises(ProbeError, match="no HTCondor job id"):
        control("hold", {"job.id": "abc"}, None, 5)
    fake.answer("condor_rm", err="Couldn't find/remove all jobs matching constraint\n", rc=1)
    with pytest.raises(ProbeError, match=r"condor_rm failed \(exit 1\): Couldn't find"):
        control("remove", {"job.id": "1.0"}, None, 5)


Q23_DAG = (FIXTURES / "condor_q-23.9-dag-node.json").read_text(encoding="utf-8")
H23_DAG = (FIXTURES / "condor_history-23.9-dag-node.json").read_text(encoding="utf-8")


def test_missing_cluster_is_reported_lost_and_no_longer_looked_up(fake: FakeCondor,
                                                                  tmp_path: Path) -> None:
    """A whole cluster named by id that is neither queued nor in history shows as PENDING while
    it is looked up, becomes UNKNOWN and terminal after ten condor_history misses, and is not
    looked up again."""
    probe, tick = probe_for("  t:\n    htcondor: {ids: [99999]}\n", tmp_path)
    first = probe.collect(tick())["t/99999"]
    assert first["job.state"] == "PENDING" and first["job.terminal"] is False
    assert "cluster 99999 not seen in condor_q or condor_history yet (1 of 10" in \
        first["job.raw_state"]
    for _ in range(9):
        facts = probe.collect(tick())
    lost = facts["t/99999"]
    assert (lost["job.state"], lost["job.terminal"], lost["job.succeeded"]) == (
        "UNKNOWN", True, False)
    assert lost["job.raw_state"] == "cluster 99999 is neither in the queue nor in condor_history"
    calls = fake.calls("condor_history")
    assert len(calls) == 10 and all("ClusterId == 99999" in c for c in calls)
    probe.collect(tick())
    probe.collect(tick())
    assert len(fake.calls("condor_history")) == 10


def test_cluster_found_in_history_replaces_its_placeholder(fake: FakeCondor,
                                                           tmp_path: Path) -> None:
    """A whole cluster found in condor_history becomes its jobs; with a whole cluster asked the
    call cannot stop early, so it has no -match."""
    fake.answer("condor_history", H23)
    probe, tick = probe_for("  t:\n    htcondor: {ids: [41, 99999]}\n", tmp_path)
    facts = probe.collect(tick())
    assert facts["t/41.0"]["job.state"] == "FAILED" and "t/41" not in facts
    assert facts["t/99999"]["job.state"] == "PENDING"
    assert "-match" not in fake.calls("condor_history")[0]


def test_never_seen_job_id_ends_the_run(fake: FakeCondor, tmp_path: Path) -> None:
    """`rulesmon run` on ids found nowhere ends by itself (exit 1: the job did not succeed) and
    says why, instead of waiting for ever."""
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: lost\nevery: 0.05s\njobs:\n  t:\n"
                    "    htcondor: {ids: [99999, '77.0'], min_interval: 0s}\n", encoding="utf-8")
    result = run_cli("run", str(path), env={**_env(), cli.ENV_BIN: str(fake.bin)}, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Current: UNKNOWN" in result.stdout
    assert "cluster 99999 was named by id but is neither in the queue nor in condor_history " \
        "(looked 10 times)" in result.stdout
    assert "77.0 was named by id but is neither in the queue nor in condor_history" in \
        result.stdout
    assert "ALL_COMPLETE" in result.stdout and "Traceback" not in result.stderr
    assert len(fake.calls("condor_history")) == 10


def test_every_option_overrides_the_rulesets_tick(fake: FakeCondor, tmp_path: Path) -> None:
    """`rulesmon run --every 0.05s` ticks at that interval whatever the ruleset's `every:` says
    (here an hour): ten lookups later the lost job has ended the run."""
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: lost\nevery: 1h\njobs:\n  t:\n"
                    "    htcondor: {ids: ['77.0'], min_interval: 0s}\n", encoding="utf-8")
    env = {**_env(), cli.ENV_BIN: str(fake.bin)}
    result = run_cli("run", str(path), "--every", "0.05s", env=env, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "STATUS_CHECK: tick 10" in result.stdout
    bad = run_cli("run", str(path), "--every", "soon", env=env)
    assert bad.returncode == 2 and "--every" in bad.stderr and "Traceback" not in bad.stderr


def test_dag_node_jobs_carry_their_node_and_dagman_cluster(fake: FakeCondor,
                                                          tmp_path: Path) -> None:
    """A DAG node's job (recorded on 23.9) has job.dag_node and job.dag_cluster, so its facts
    join the dagman job's; DAGNodeName and friends are not custom attributes."""
    fake.answer("condor_q", Q23_DAG)
    probe, tick = probe_for("  t:\n    htcondor: {ids: [22]}\n", tmp_path)
    run = probe.collect(tick())["t/22.0"]
    assert (run["job.dag_node"], run["job.dag_cluster"]) == ("train", 21)
    assert run["job.state"] == "RUNNING" and run["job.attrs.RunUUID"] == "r-77"
    assert [k for k in run if k.startswith("job.attrs.")] == ["job.attrs.RunUUID"]
    fake.answer("condor_q", "[]")
    fake.answer("condor_history", H23_DAG)
    done = probe.collect(tick())["t/22.0"]
    assert (done["job.state"], done["job.dag_node"], done["job.dag_cluster"]) == (
        "COMPLETED", "train", 21)


def test_requested_memory_and_disk_without_literal_requests(fake: FakeCondor,
                                                            tmp_path: Path) -> None:
    """Every recorded 23.9 job has a memory and disk request: the literal one (37.0), else what
    the slot provisioned, else the default request expression evaluated on the ad (38.0 never
    ran: (ImageSize + 1023) / 1024 MiB, DiskUsage KiB)."""
    fake.answer("condor_q", Q23)
    fake.answer("condor_history", H23)
    probe, tick = probe_for(
        "  t:\n    htcondor: {ids: [37, 38, 39, 40, 41, 42, 43]}\n", tmp_path)
    facts = probe.collect(tick())
    assert len(facts) == 7
    assert all("job.mem_req" in f and "job.disk_req" in f for f in facts.values())
    assert facts["t/37.0"]["job.mem_req"] == 64 * 2**20  # RequestMemory = 64
    assert facts["t/39.0"]["job.mem_req"] == 128 * 2**20  # MemoryProvisioned
    assert facts["t/39.0"]["job.disk_req"] == 2048 * 1024  # DiskProvisioned
    assert facts["t/38.0"]["job.mem_req"] == 1 * 2**20  # (45 + 1023) / 1024, integer division
    assert facts["t/38.0"]["job.disk_req"] == 45 * 1024
    assert facts["t/42.0"]["job.mem_eff"] == pytest.approx(100.0 * 4608000 / 2**27)


def test_attrs_allowlist_reports_only_the_attributes_named(fake: FakeCondor,
                                                           tmp_path: Path) -> None:
    """With `attrs:`, only the named attributes (matched ignoring case, spelt as given) are
    job.attrs.*; without it, standard attributes such as ExitReason are never custom."""
    fake.answer("condor_history", H23)
    fake.answer("condor_q", Q23)
    probe, tick = probe_for(
        "  a:\n    htcondor: {ids: [37, 43], attrs: [runuuid, ExitReason, Missing]}\n"
        "  b:\n    htcondor: {ids: [37, 43]}\n", tmp_path)
    facts = probe.collect(tick())
    assert {k: v for k, v in facts["a/37.0"].items() if k.startswith("job.attrs.")} == {
        "job.attrs.runuuid": "4f1c-aa"}
    assert "job.attrs.ExitReason" in facts["a/43.0"]
    assert {k for k in facts["b/37.0"] if k.startswith("job.attrs.")} == {
        "job.attrs.RunUUID", "job.attrs.Epoch"}
    assert not [k for k in facts["b/43.0"] if k.startswith("job.attrs.")]


_PICKY_Q = """#!/bin/sh
printf '%s\\n' "condor_q $*" >> "$(dirname "$0")/calls.log"
case "$*" in
  *'"abc)'*) echo '-- Parse error in constraint expression "(RunUUID == "abc)"'; exit 1;;
  *) cat "{fixture}";;
esac
"""


def test_malformed_constraint_is_named_and_left_out(fake: FakeCondor, tmp_path: Path) -> None:
    """When the joined condor_q call fails, each selection is asked alone once: the job whose
    constraint the schedd refuses gets one instance saying so, and the other jobs go on with
    one condor_q call per tick."""
    (fake.bin / "condor_q").write_text(_PICKY_Q.format(fixture=FIXTURES / "condor_q-23.9.json"),
                                       encoding="utf-8")
    probe, tick = probe_for(
        "  bad:\n    htcondor: {constraint: '(RunUUID == \"abc)', min_interval: 30s}\n"
        "  good:\n    htcondor: {ids: [37]}\n", tmp_path)
    facts = probe.collect(tick())
    assert facts["good/37.0"]["job.state"] == "RUNNING"
    bad = facts["bad/query"]
    assert (bad["job.state"], bad["job.terminal"], bad["job.outcome"]) == (
        "UNKNOWN", True, "error")
    assert "condor_q refused this job's selection" in bad["job.raw_state"]
    assert "Parse error in constraint expression" in bad["job.raw_state"]
    assert "(RunUUID == \"abc)" in bad["job.diagnosis_detail"]
    assert len(fake.calls("condor_q")) == 4  # the union, each alone, the union again
    probe.collect(tick())
    assert len(fake.calls("condor_q")) == 5
    assert fake.calls("condor_q")[-1].endswith("-constraint (ClusterId == 37)")


def test_schedd_down_is_not_blamed_on_a_selection(fake: FakeCondor, tmp_path: Path) -> None:
    """When every selection fails alone too (the schedd is down), nothing is left out: the
    probe fails as a whole and the jobs come back with the schedd."""
    fake.answer("condor_q", err="Error: communication error\n", rc=1)
    probe, tick = probe_for("  a:\n    htcondor: {ids: [37]}\n"
                            "  b:\n    htcondor: {owner: rmcondor}\n", tmp_path)
    with pytest.raises(ProbeError, match="communication error"):
        probe.collect(tick())
    fake.answer("condor_q", Q23)
    facts = probe.collect(tick())
    assert "a/37.0" in facts and "b/38.0" in facts and not any(k.endswith("/query")
                                                                for k in facts)


def test_schedd_down_is_not_blamed_on_a_constraint(fake: FakeCondor, tmp_path: Path) -> None:
    """A `constraint:` selection that fails alone while the schedd is down is not left out:
    the other selections fail too, so the probe fails as a whole. A timeout is no refusal
    (what was asked is not at fault), a non-zero exit is."""
    fake.answer("condor_q", err="Error: communication error\n", rc=1)
    probe, tick = probe_for("  a:\n    htcondor: {ids: [37]}\n"
                            "  b:\n    htcondor: {constraint: 'JobPrio >= 0'}\n", tmp_path)
    with pytest.raises(cli.CondorRefused, match="communication error"):
        probe.collect(tick())
    (fake.bin / "condor_rm").write_text("#!/bin/sh\nexec sleep 5\n", encoding="utf-8")
    with pytest.raises(cli.CondorError, match="timed out") as timed_out:
        cli.run(["condor_rm"], timeout=0.3)
    assert not isinstance(timed_out.value, cli.CondorRefused)
    fake.answer("condor_q", Q23)
    facts = probe.collect(tick())
    assert "a/37.0" in facts and not any(k.endswith("/query") for k in facts)


def test_lint_locates_an_unbalanced_constraint_and_allows_requeue(tmp_path: Path) -> None:
    """`rulesmon lint` reports a constraint with an unclosed string at its line:col, and accepts
    `control: requeue` (condor_vacate_job) for an htcondor job."""
    from rulesmon.lint import lint_file

    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nname: c\nnotify: {t: 'json://127.0.0.1:9/'}\ndefaults: {notify: [t]}\n"
        "jobs:\n  a:\n    htcondor:\n      constraint: 'RunUUID == \"abc'\n"
        "  b:\n    htcondor: {owner: me, constraint: '(JobPrio > 0))'}\n"
        "rules:\n  - name: slow-job\n    when: job.elapsed > 10\n"
        "    do: [{control: requeue}]\n", encoding="utf-8")
    found = [(d.line, d.col, d.code, d.message) for d in lint_file(path)
             if d.code in ("RM204", "RM415")]
    assert found == [
        (8, 19, "RM204", "constraint does not parse: the string opened here is never closed "
         "(a missing `\"`) (character 12 of 'RunUUID == \"abc')"),
        (10, 39, "RM204", "constraint does not parse: `)` closes nothing (character 14 of "
         "'(JobPrio > 0))')")]


def test_run_uuid_filter_matches_the_custom_attribute(fake: FakeCondor, tmp_path: Path) -> None:
    """`--run-uuid` also finds a plain HTCondor job by its `+RunUUID` (job.attrs.RunUUID), and
    `group_by: [run_uuid]` groups such jobs the same way."""
    from rulesmon.config.loader import load
    from rulesmon.engine import Engine
    from rulesmon.testing import NullLog

    fake.answer("condor_q", Q23)
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: uuid\nevery: 30s\njobs:\n  t:\n"
                    "    htcondor: {owner: rmcondor}\n    group_by: [run_uuid]\nrules:\n"
                    "  - name: run-seen\n    scope: group\n    when: group.total > 0\n"
                    "    do: [log]\n", encoding="utf-8")
    engine = Engine(load(path), state_path=tmp_path / "s.db", log=NullLog(),
                    group_filter=("run_uuid", "4f1c-aa"))
    try:
        engine.tick()
        keys = sorted(engine.instances)
        groups = sorted(engine.alerts.get("run-seen", {}))
    finally:
        engine.close()
    assert keys == ["t/37.0"]
    assert groups == ["t/run_uuid=4f1c-aa"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != cli.ENV_BIN}


def test_clock_is_not_wall_clock() -> None:
    """The test clock starts far from now, so no fact silently depends on time.time()."""
    assert Clock(None, Path()).now > time.time()


def test_job_that_left_the_queue_and_never_reached_history_ends(fake: FakeCondor,
                                                                tmp_path: Path) -> None:
    """A job seen running that leaves the queue and is still missing from condor_history after
    ten lookups is UNKNOWN and terminal (it is asked no more), so the run can end."""
    fake.answer("condor_q", Q23)
    probe, tick = probe_for("  t:\n    htcondor: {ids: ['37.0'], min_interval: 0s}\n",
                            tmp_path)
    assert probe.collect(tick())["t/37.0"]["job.state"] == "RUNNING"
    fake.answer("condor_q", "[]")
    for _ in range(10):
        facts = probe.collect(tick())["t/37.0"]
    assert (facts["job.state"], facts["job.terminal"], facts["job.outcome"]) == (
        "UNKNOWN", True, "unknown")
    assert facts["job.diagnosis_detail"] == \
        "37.0 left the queue and is not in condor_history (looked 10 times)"
    asked = len(fake.calls("condor_history"))
    probe.collect(tick())
    assert len(fake.calls("condor_history")) == asked == 10
