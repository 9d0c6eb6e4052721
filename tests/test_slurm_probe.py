"""The slurm probe against fake squeue/sacct/sbatch/scancel/scontrol executables on PATH: the
one-call-per-tick contract, caching, accounting lag, garbage, hangs, a missing binary, a
controller that is down, submission and control."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.config.models import SCHEDULER_LOGS
from rulesmon.probes import slurm
from rulesmon.probes import slurm_parse as sp
from rulesmon.probes.base import ProbeError, TickContext
from rulesmon.probes.slurm import SlurmCacheProbe, SlurmProbe, control

from .conftest import run_cli

FAKE = """#!{python}
import json, os, sys, time
folder = os.environ["FAKE_SLURM"]
name = os.path.basename(sys.argv[0])
with open(os.path.join(folder, "calls.log"), "a") as fh:
    fh.write(json.dumps([name] + sys.argv[1:]) + "\\n")
try:
    with open(os.path.join(folder, name + ".json")) as fh:
        plan = json.load(fh)
except FileNotFoundError:
    plan = {{}}
if "--version" in sys.argv:
    print(plan.get("version", "slurm 22.05.8"))
    sys.exit(0)
if plan.get("hang"):
    time.sleep(60)
outputs = plan.get("outputs", [""])
count_file = os.path.join(folder, name + ".count")
n = int(open(count_file).read()) if os.path.exists(count_file) else 0
open(count_file, "w").write(str(n + 1))
if n >= plan.get("fail_from", 10 ** 9) or n < plan.get("fail_until", 0):
    sys.stderr.write(plan["fail_stderr"] + "\\n")
    sys.exit(1)
out = outputs[min(n, len(outputs) - 1)]
sys.stdout.write(out)
if plan.get("stderr"):
    sys.stderr.write(plan["stderr"] + "\\n")
sys.exit(plan.get("exit", 0))
"""
TOOLS = ("squeue", "sacct", "sbatch", "scancel", "scontrol")


class Fake:
    """A folder of fake SLURM tools and what each one prints."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bin = folder / "bin"
        self.bin.mkdir()
        for name in TOOLS:
            path = self.bin / name
            path.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
            path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def plan(self, tool: str, **plan: Any) -> None:
        (self.folder / f"{tool}.json").write_text(json.dumps(plan), encoding="utf-8")
        (self.folder / f"{tool}.count").unlink(missing_ok=True)

    def calls(self, tool: str | None = None) -> list[list[str]]:
        log = self.folder / "calls.log"
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
        return [c for c in calls if tool is None or c[0] == tool]

    def real_calls(self, tool: str) -> list[list[str]]:
        return [c for c in self.calls(tool) if "--version" not in c]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    f = Fake(tmp_path)
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    monkeypatch.setenv("PATH", f"{f.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("RULESMON_SLURM_FORMAT", raising=False)
    yield f


def squeue_line(jid: str, **fields: str) -> str:
    values = dict.fromkeys(sp.SQUEUE_FIELDS, "")
    array, _, task = jid.partition("_")
    values.update({"JobID": "9" + task if task else jid,
                   "JobArrayID": jid, "ArrayJobID": array,
                   "ArrayTaskID": jid.split("_")[1] if "_" in jid else "N/A", "Name": "train",
                   "UserName": "alice", "Partition": "gpu", "Account": "proj", "QOS": "normal",
                   "State": "RUNNING", "Reason": "None", "NumNodes": "1", "NodeList": "n01",
                   "NumCPUs": "4", "tres-alloc": "cpu=4,mem=8G,node=1,gres/gpu=1",
                   "tres-per-node": "gres:gpu:1", "MinMemory": "8G",
                   "SubmitTime": "1795000000", "StartTime": "1795000010",
                   "EndTime": "1795003610", "TimeUsed": "1:40", "TimeLimit": "1:00:00",
                   "TimeLeft": "58:20", "RestartCnt": "0", "WorkDir": "/home/alice/w",
                   "STDOUT": "/home/alice/w/%x-%j.out", "STDERR": "/home/alice/w/%x-%j.err"})
    values.update(fields)
    return "".join(values[name] + sp.SEP for name in sp.SQUEUE_FIELDS) + "\n"


def sacct_text(*rows: dict[str, str]) -> str:
    lines = [sp.SEP.join(sp.SACCT_FIELDS)]
    for row in rows:
        values = dict.fromkeys(sp.SACCT_FIELDS, "")
        values.update(row)
        lines.append(sp.SEP.join(values[name] for name in sp.SACCT_FIELDS))
    return "\n".join(lines) + "\n"


def job_row(jid: str, state: str = "COMPLETED", code: str = "0:0", **extra: str) -> dict[str, str]:
    row = {"JobID": jid, "JobIDRaw": jid, "JobName": "train", "User": "alice", "State": state,
           "ExitCode": code, "Submit": "1795000000", "Start": "1795000010",
           "End": "1795000110", "ElapsedRaw": "100", "TimelimitRaw": "60", "NNodes": "1",
           "AllocCPUS": "4", "ReqMem": "8G", "AllocTRES": "cpu=4,mem=8G,gres/gpu=1",
           "Partition": "gpu"}
    row.update(extra)
    return row


def step_row(jid: str, step: str, total: str, rss: str) -> dict[str, str]:
    return {"JobID": f"{jid}.{step}", "JobIDRaw": f"{jid}.{step}", "State": "COMPLETED",
            "TotalCPU": total, "UserCPU": total, "SystemCPU": "00:00", "MaxRSS": rss}


def probe_for(text: str, base: Path) -> tuple[SlurmProbe, Any]:
    rs = load_text(text, base=base).ruleset
    return SlurmProbe(rs, base), rs


def tick(probe: SlurmProbe, rs: Any, base: Path, now: float) -> dict[str, dict[str, Any]]:
    """The instances of one collect (the run-level facts, key "", left out)."""
    facts = probe.collect(TickContext(now=now, ruleset=rs, base_dir=base))
    facts.pop("", None)
    return facts


def run_level(probe: SlurmProbe, rs: Any, base: Path, now: float) -> dict[str, Any]:
    """The run-level facts (`probe.slurm.*`) of one collect."""
    return probe.collect(TickContext(now=now, ruleset=rs, base_dir=base))[""]


IDS = "version: 1\nname: t\njobs:\n  train:\n    slurm: {{ids: [{ids}], min_interval: {mi}}}\n"


def test_one_squeue_and_one_sacct_call_for_5000_jobs(fake: Fake, tmp_path: Path) -> None:
    """A tick with 5,000 watched jobs makes exactly one squeue call (for every job: a --jobs
    list that long is not used); when they all leave the queue, exactly one sacct call
    resolves them."""
    ids = [str(100000 + i) for i in range(5000)]
    fake.plan("squeue", outputs=["".join(squeue_line(j) for j in ids), ""])
    fake.plan("sacct", outputs=[sacct_text(*(job_row(j) for j in ids))])
    probe, rs = probe_for(IDS.format(ids=", ".join(ids), mi="10s"), tmp_path)
    facts = tick(probe, rs, tmp_path, 1000.0)
    assert len(facts) == 5000 and len(fake.real_calls("squeue")) == 1
    assert not fake.real_calls("sacct")
    assert facts["train/100000"]["job.state"] == "RUNNING"
    assert facts["train/100000"]["job.stdout"] == "/home/alice/w/train-100000.out"
    tick(probe, rs, tmp_path, 1005.0)  # within min_interval: cached, no call
    assert len(fake.real_calls("squeue")) == 1
    facts = tick(probe, rs, tmp_path, 1011.0)
    assert len(fake.real_calls("squeue")) == 2 and len(fake.real_calls("sacct")) == 1
    assert all(f["job.state"] == "COMPLETED" and f["job.succeeded"] and f["job.terminal"]
               and f["job.accounted"] == "done" for f in facts.values())
    sacct_args = fake.real_calls("sacct")[0]
    assert sacct_args[sacct_args.index("-j") + 1].count(",") == 4999
    squeue_args = fake.real_calls("squeue")[0]
    assert not any(a.startswith("--jobs") for a in squeue_args)
    assert squeue_args[:4] == ["squeue", "-h", "-t", "all"]


def test_20000_ids_one_squeue_call_and_sacct_lists_within_the_argument_limit(
        fake: Fake, tmp_path: Path) -> None:
    """20,000 ids of 7 digits (160 KB joined, over Linux's 128 KiB per argument) make one
    squeue call without --jobs and sacct calls whose -j lists each stay under the limit and
    together name every id once."""
    ids = [str(1_000_000 + i) for i in range(20_000)]
    fake.plan("squeue", outputs=["".join(squeue_line(j) for j in ids[:10]), ""])
    fake.plan("sacct", outputs=[sacct_text()])
    probe, rs = probe_for(IDS.format(ids=", ".join(ids), mi="10s"), tmp_path)
    facts = tick(probe, rs, tmp_path, 1000.0)
    assert len(fake.real_calls("squeue")) == 1
    assert sorted(facts) == sorted(f"train/{j}" for j in ids[:10])
    calls = fake.real_calls("sacct")
    lists = [c[c.index("-j") + 1] for c in calls]
    assert len(calls) == 2 and all(len(a) <= slurm.SACCT_ARG_BYTES < 128 * 1024 for a in lists)
    named = [j for a in lists for j in a.split(",")]
    assert len(named) == len(set(named)) == 20_000 - 10  # the 10 running ones are in squeue


def test_a_short_id_list_is_passed_to_squeue(fake: Fake, tmp_path: Path) -> None:
    """Up to SQUEUE_JOBS_LIMIT ids, squeue is asked for exactly those jobs."""
    ids = [str(500 + i) for i in range(slurm.SQUEUE_JOBS_LIMIT)]
    fake.plan("squeue", outputs=[squeue_line("500")])
    fake.plan("sacct", outputs=[sacct_text()])
    probe, rs = probe_for(IDS.format(ids=", ".join(ids), mi="10s"), tmp_path)
    tick(probe, rs, tmp_path, 1000.0)
    (call,) = fake.real_calls("squeue")
    asked = next(a for a in call if a.startswith("--jobs="))
    assert sorted(asked[len("--jobs="):].split(",")) == sorted(ids)


def test_cached_running_clock_moves_on(fake: Fake, tmp_path: Path) -> None:
    """Between two squeue calls a running job's elapsed time and time left follow the clock."""
    fake.plan("squeue", outputs=[squeue_line("42")])
    probe, rs = probe_for(IDS.format(ids="42", mi="60s"), tmp_path)
    first = tick(probe, rs, tmp_path, 500.0)["train/42"]
    later = tick(probe, rs, tmp_path, 530.0)["train/42"]
    assert later["job.elapsed"] == first["job.elapsed"] + 30
    assert later["job.time_left"] == first["job.time_left"] - 30
    assert len(fake.real_calls("squeue")) == 1


def test_accounting_lag_is_retried_with_backoff(fake: Fake, tmp_path: Path) -> None:
    """A job that left the queue and is not in accounting yet is asked again later, with a
    growing delay, and resolved when accounting has it; efficiency comes from the steps."""
    fake.plan("squeue", outputs=[squeue_line("42"), ""])
    rows = sacct_text(job_row("42", "FAILED", "3:0"), step_row("42", "batch", "01:00", "2G"),
                      step_row("42", "0", "02:20", "6G"))
    fake.plan("sacct", outputs=[sacct_text(), sacct_text(), rows])
    probe, rs = probe_for(IDS.format(ids="42", mi="1s"), tmp_path)
    tick(probe, rs, tmp_path, 100.0)
    seen = tick(probe, rs, tmp_path, 101.0)["train/42"]  # gone, sacct empty: retry at +1s
    assert seen["job.state"] == "RUNNING" and len(fake.real_calls("sacct")) == 1
    tick(probe, rs, tmp_path, 102.0)  # second try (empty), next one 2 s later
    assert len(fake.real_calls("sacct")) == 2
    tick(probe, rs, tmp_path, 103.0)  # backing off: no sacct call
    assert len(fake.real_calls("sacct")) == 2
    done = tick(probe, rs, tmp_path, 104.5)["train/42"]
    assert len(fake.real_calls("sacct")) == 3
    assert done["job.state"] == "FAILED" and done["job.exit_code"] == 3
    assert done["job.cpu_time"] == 200 and done["job.cpus"] == 4
    assert done["job.cpu_eff"] == 50.0  # 200 s / (100 s x 4 CPUs)
    assert done["job.mem_used"] == 6 << 30 and done["job.mem_eff"] == 75.0
    assert done["job.time_eff"] == pytest.approx(100 / 36, abs=0.01)
    assert done["job.gpu_hours"] == pytest.approx(100 / 3600, abs=1e-4)
    assert done["job.stdout"] == "/home/alice/w/train-42.out"  # kept from squeue
    tick(probe, rs, tmp_path, 200.0)
    assert len(fake.real_calls("sacct")) == 3  # resolved: never asked again


def test_job_never_in_accounting_becomes_unknown(fake: Fake, tmp_path: Path) -> None:
    """After sacct_retries lookups a job that left the queue is reported UNKNOWN and
    terminal, outcome unknown, so it does not hold the run open."""
    fake.plan("squeue", outputs=[squeue_line("42"), ""])
    fake.plan("sacct", outputs=[sacct_text()])
    text = "version: 1\nname: t\njobs:\n  train:\n    slurm: {ids: [42], min_interval: 1s, " \
           "sacct_retries: 2}\n"
    probe, rs = probe_for(text, tmp_path)
    facts: dict[str, dict[str, Any]] = {}
    for now in range(100, 140):
        facts = tick(probe, rs, tmp_path, float(now))
    assert len(fake.real_calls("sacct")) == 3
    lost = facts["train/42"]
    assert (lost["job.state"], lost["job.terminal"], lost["job.outcome"],
            lost["job.accounted"]) == ("UNKNOWN", True, "unknown", "missing")
    assert "not in accounting" in lost["job.raw_state"]


def test_named_id_already_ended_is_found_in_accounting(fake: Fake, tmp_path: Path) -> None:
    """An id named in the ruleset that already left the queue (squeue: invalid job id) is
    looked up in sacct; an array id selects every task."""
    fake.plan("squeue", exit=1, stderr="slurm_load_jobs error: Invalid job id specified")
    fake.plan("sacct", outputs=[sacct_text(job_row("7_0", JobIDRaw="8"),
                                           job_row("7_1", "TIMEOUT", JobIDRaw="9"))])
    text = "version: 1\nname: t\njobs:\n  sweep:\n    slurm: {array: 7, min_interval: 1s}\n"
    probe, rs = probe_for(text, tmp_path)
    facts = tick(probe, rs, tmp_path, 100.0)
    assert sorted(facts) == ["sweep/7_0", "sweep/7_1"]
    assert facts["sweep/7_1"]["job.exceeded"] is True
    assert facts["sweep/7_0"]["job.array_task"] == 0
    tick(probe, rs, tmp_path, 200.0)
    assert len(fake.real_calls("sacct")) == 1


def test_a_purged_id_among_live_ones(fake: Fake, tmp_path: Path) -> None:
    """When squeue refuses a --jobs list because one id was purged, the probe asks once more
    without the list, keeps the live job and finds the purged one in accounting."""
    fake.plan("squeue", fail_until=1, fail_stderr="slurm_load_jobs error: Invalid job id "
              "specified", outputs=["", squeue_line("42") + squeue_line("77")])
    fake.plan("sacct", outputs=[sacct_text(job_row("41", "COMPLETED"))])
    probe, rs = probe_for(IDS.format(ids="41, 42", mi="1s"), tmp_path)
    facts = tick(probe, rs, tmp_path, 100.0)
    assert sorted(facts) == ["train/41", "train/42"]
    assert facts["train/42"]["job.state"] == "RUNNING"
    assert facts["train/41"]["job.state"] == "COMPLETED"
    first, second = fake.real_calls("squeue")
    assert "--jobs=41,42" in first and not any(a.startswith("--jobs") for a in second)
    tick(probe, rs, tmp_path, 102.0)  # 41 has ended for good: only 42 is asked for
    assert "--jobs=42" in fake.real_calls("squeue")[2]


def test_selection_by_user_name_partition_account(fake: Fake, tmp_path: Path) -> None:
    """Selections by user, name glob, partition and account pick their jobs out of one
    squeue call narrowed to the users."""
    fake.plan("squeue", outputs=[
        squeue_line("1", Name="eval-a") + squeue_line("2", Name="train", Partition="cpu")
        + squeue_line("3", Name="eval-b", Account="other")
        + squeue_line("4", Name="x", UserName="bob")])
    text = ("version: 1\nname: t\njobs:\n"
            "  evals:\n    slurm: {user: alice, name: 'eval-*', account: proj}\n"
            "  cpu:\n    slurm: {user: alice, partition: cpu}\n"
            "  bobs:\n    slurm: {user: bob}\n")
    probe, rs = probe_for(text, tmp_path)
    facts = tick(probe, rs, tmp_path, 100.0)
    assert sorted(facts) == ["bobs/4", "cpu/2", "evals/1"]
    (call,) = fake.real_calls("squeue")
    assert "--user=alice,bob" in call


@pytest.mark.parametrize(("plan", "message"), [
    ({"hang": True}, "squeue timed out after 0.5s"),
    ({"exit": 1, "stderr": "slurm_load_jobs error: Unable to contact slurm controller "
      "(connect failure)"}, "squeue failed (exit 1): slurm_load_jobs error: Unable to contact"),
    ({"outputs": ["<html>proxy error</html>\n"]}, "squeue line 1 has 0 fields, not 27"),
])
def test_failures_are_one_line_probe_errors(fake: Fake, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            plan: dict[str, Any], message: str) -> None:
    """A hung, failing or garbage-printing squeue raises one ProbeError line, and the cache
    probe keeps reporting the last facts, marked stale."""
    monkeypatch.setenv("RULESMON_SLURM_TIMEOUT", "0.5")
    fake.plan("squeue", outputs=[squeue_line("42")])
    probe, rs = probe_for(IDS.format(ids="42", mi="1s"), tmp_path)
    cache = SlurmCacheProbe(probe)
    ctx = TickContext(now=100.0, ruleset=rs, base_dir=tmp_path)
    assert probe.collect(ctx)["train/42"]["job.stale"] is False
    assert cache.collect(ctx) == {}
    fake.plan("squeue", **plan)
    ctx = TickContext(now=102.0, ruleset=rs, base_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(ProbeError) as info:
        probe.collect(ctx)
    assert time.monotonic() - started < 30
    assert message in str(info.value) and "\n" not in str(info.value)
    stale = cache.collect(ctx)
    assert stale["train/42"]["job.stale"] is True
    assert stale["train/42"]["job.state"] == "RUNNING"


def test_missing_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without squeue on PATH the error says so in one line."""
    monkeypatch.setenv("PATH", str(tmp_path))
    probe, rs = probe_for(IDS.format(ids="42", mi="1s"), tmp_path)
    with pytest.raises(ProbeError, match="squeue not found on PATH"):
        tick(probe, rs, tmp_path, 100.0)


def test_sacct_format_follows_the_version(fake: Fake, tmp_path: Path) -> None:
    """22.05 gets sacct -P (its JSON exit codes are wrong); 23.02 and later get sacct --json."""
    for version, want_json in (("slurm 22.05.8", False), ("slurm 23.11.4", True)):
        (fake.folder / "calls.log").unlink(missing_ok=True)
        fake.plan("squeue", version=version, outputs=[""])
        fake.plan("sacct", outputs=[
            (FIXTURES / "sacct-24.05.json").read_text(encoding="utf-8") if want_json
            else sacct_text(job_row("4101", "FAILED", "3:0"))])
        probe, rs = probe_for(IDS.format(ids="4101", mi="1s"), tmp_path)
        facts = tick(probe, rs, tmp_path, 100.0)
        (call,) = fake.real_calls("sacct")
        assert ("--json" in call) is want_json
        assert facts["train/4101"]["job.exit_code"] == 3


FIXTURES = Path(__file__).parent / "fixtures" / "slurm"


def test_squeue_json_when_forced(fake: Fake, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """RULESMON_SLURM_FORMAT=json makes the probe read squeue --json."""
    monkeypatch.setenv("RULESMON_SLURM_FORMAT", "json")
    fake.plan("squeue", outputs=[(FIXTURES / "squeue-24.05.json").read_text(encoding="utf-8")])
    probe, rs = probe_for(IDS.format(ids="5001, 5002", mi="1s"), tmp_path)
    facts = tick(probe, rs, tmp_path, 100.0)
    assert facts["train/5001"]["job.state"] == "RUNNING"
    assert facts["train/5002"]["job.reason"] == "Priority"
    assert "--json" in fake.real_calls("squeue")[0]


def test_submission_and_launch_check(fake: Fake, tmp_path: Path) -> None:
    """sbatch's id is watched; a failed sbatch becomes a launch_failed instance."""
    (tmp_path / "job.sh").write_text("#!/bin/sh\ntrue\n", encoding="utf-8")
    fake.plan("sbatch", outputs=["4242;hpc\n"])
    fake.plan("squeue", outputs=[squeue_line("4242", State="PENDING", Reason="Priority")])
    text = ("version: 1\nname: t\njobs:\n  run:\n    slurm:\n      submit: {script: job.sh, "
            "args: ['--lr', '0.1'], sbatch_args: ['--partition=gpu']}\n      min_interval: 1s\n")
    probe, rs = probe_for(text, tmp_path)
    probe.start(TickContext(now=100.0, ruleset=rs, base_dir=tmp_path))
    (call,) = fake.calls("sbatch")
    assert call == ["sbatch", "--parsable", "--partition=gpu", str(tmp_path / "job.sh"),
                    "--lr", "0.1"]
    facts = tick(probe, rs, tmp_path, 101.0)["run/4242"]
    assert facts["job.reason"] == "Priority" and facts["job.launch_ok"] is True
    fake.plan("sbatch", exit=1, stderr="sbatch: error: Batch job submission failed: "
              "Invalid account")
    probe, rs = probe_for(text, tmp_path)
    probe.start(TickContext(now=100.0, ruleset=rs, base_dir=tmp_path))
    failed = tick(probe, rs, tmp_path, 101.0)["run/submit"]
    assert failed["job.diagnosis"] == "launch_failed" and failed["job.launch_ok"] is False
    assert "Invalid account" in failed["job.launch_error"]


def test_control_verbs(fake: Fake) -> None:
    """cancel/remove run scancel, requeue/hold/release run scontrol; others are refused."""
    assert control("cancel", {"job.id": "7_3"}, "stalled", 10).startswith("scancel 7_3")
    control("hold", {"job.id": "42"}, None, 10)
    control("release", {"job.id": "42"}, None, 10)
    control("requeue", {"job.id": "42"}, None, 10)
    assert fake.calls("scancel") == [["scancel", "7_3"]]
    assert fake.calls("scontrol") == [["scontrol", "hold", "42"], ["scontrol", "release", "42"],
                                      ["scontrol", "requeue", "42"]]
    with pytest.raises(ProbeError, match=r"verbs: cancel"):
        control("resubmit", {"job.id": "42"}, None, 10)
    with pytest.raises(ProbeError, match="no SLURM job id"):
        control("cancel", {"job.id": "42; rm -rf /"}, None, 10)
    fake.plan("scancel", exit=1, stderr="scancel: error: Kill job error on job id 42: "
              "Invalid job id specified")
    with pytest.raises(ProbeError, match="Invalid job id specified"):
        control("cancel", {"job.id": "42"}, None, 10)


def test_controller_down_alerts_through_rulesmon_run(fake: Fake, tmp_path: Path) -> None:
    """`rulesmon run` with a controller that stops answering counts the failures, keeps the
    job's facts (stale) for rules, and fires the alert on probe.slurm.failures."""
    fake.plan("sacct", outputs=[sacct_text()])
    ruleset = tmp_path / "rs.yaml"
    ruleset.write_text(
        "version: 1\nname: down\nevery: 0.2s\njobs:\n"
        "  train:\n    slurm: {ids: [42], min_interval: 0s}\n"
        "rules:\n"
        "  - name: stale-job\n    when: job.stale and job.state == \"RUNNING\"\n"
        "    once: true\n    do: [log]\n    message: \"STALE {{ job.id }}\"\n"
        "  - name: give-up\n    scope: run\n    when: probe.slurm.failures >= 3\n"
        "    do: [log, stop]\n    message: \"DOWN {{ probe.slurm.error }}\"\n",
        encoding="utf-8")
    fake.plan("squeue", outputs=[squeue_line("42")], fail_from=1,
              fail_stderr="slurm_load_jobs error: Unable to contact slurm controller "
              "(connect failure)")
    env = dict(os.environ)
    log = tmp_path / "run.jsonl"
    result = run_cli("run", str(ruleset), "--log-json", str(log), env=env, timeout=60)
    # a bare stop keeps the run's own code: no job has failed (42 is still RUNNING, stale)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    failures = [e for e in events if e.get("event") == "probe_failed"]
    assert failures and all("Unable to contact slurm controller" in e["error"]
                            for e in failures)
    messages = " ".join(str(e.get("message", "")) for e in events)
    assert "STALE 42" in messages and "squeue failed (exit 1): slurm_load_jobs" in messages


# --- failures kept between calls, sacct apart from squeue, accounting before the end ----------


class EventLog:
    """A structlog-like logger that keeps (event, fields) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def bind(self, **_: Any) -> EventLog:
        return self

    def __getattr__(self, _level: str) -> Any:
        return lambda event, **kw: self.events.append((event, kw))


def engine_for(tmp_path: Path, text: str) -> Any:
    from rulesmon.engine import Engine

    path = tmp_path / "rs.yaml"
    path.write_text(text, encoding="utf-8")
    engine = Engine(load_text(text, str(path)), state_path=tmp_path / "state.db",
                    log=EventLog())
    engine.start()
    return engine


def test_failures_persist_between_calls_and_the_builtin_alert_fires(
        fake: Fake, tmp_path: Path) -> None:
    """With every (1 s) below min_interval (5 s), a failed squeue call keeps the probe failed
    on the ticks until the next call (jobs stale, failures not reset), each failed call counts
    and is logged once, and builtin:slurm-basics' slurm-unreachable fires at the third failed
    poll."""
    fake.plan("squeue", outputs=[squeue_line("42")], fail_from=1,
              fail_stderr="slurm_load_jobs error: Unable to contact slurm controller")
    fake.plan("sacct", outputs=[sacct_text()])
    engine = engine_for(tmp_path, "version: 1\nname: down\nextends: [builtin:slurm-basics]\n"
                        "every: 1s\njobs:\n  train:\n    slurm: {ids: [42], min_interval: 5s}\n")
    seen: dict[int, tuple[Any, Any, Any]] = {}
    fired: dict[int, list[str]] = {}
    try:
        for now in range(100, 116):
            outcome = engine.tick(float(now))
            run = engine.run_facts
            seen[now] = (run["probe.slurm.ok"], run["probe.slurm.failures"],
                         engine.instances["train/42"]["job.stale"])
            fired[now] = [n.rule for n in outcome.fired]
    finally:
        engine.close()
    assert seen[100] == seen[104] == (True, 0, False)
    assert all(seen[t] == (False, 1, True) for t in range(105, 110))
    assert all(seen[t] == (False, 2, True) for t in range(110, 115))
    assert seen[115] == (False, 3, True)
    assert "slurm-unreachable" in fired[115]
    assert not any("slurm-unreachable" in fired[t] for t in range(100, 115))
    assert len(fake.real_calls("squeue")) == 4  # 100, 105, 110, 115: still polite
    assert engine.alerts["slurm-unreachable"]["run"].status == "firing"
    logged = [kw["failures"] for event, kw in engine.log.events if event == "probe_failed"]
    assert logged == [1, 2, 3]  # one line per failed poll, none for the ticks between


def test_failing_sacct_hides_no_squeue_facts(fake: Fake, tmp_path: Path) -> None:
    """A failing sacct leaves squeue's facts in place: the ended job waits for accounting with
    the error on it, the run facts say so, and accounting's record is merged in once sacct
    answers again."""
    fake.plan("squeue", outputs=[squeue_line("42") + squeue_line("43"),
                                 squeue_line("42", State="COMPLETED", Reason="None")
                                 + squeue_line("43")])
    fake.plan("sacct", fail_until=2, fail_stderr="sacct: error: Problem talking to the "
              "database: Connection refused",
              outputs=[sacct_text(job_row("42", "COMPLETED", "0:0"),
                                  step_row("42", "batch", "03:20", "2G"))])
    probe, rs = probe_for(IDS.format(ids="42, 43", mi="1s"), tmp_path)
    tick(probe, rs, tmp_path, 100.0)
    ctx = TickContext(now=101.0, ruleset=rs, base_dir=tmp_path)
    result = probe.collect(ctx)
    waiting, running, run = result["train/42"], result["train/43"], result[""]
    assert running["job.state"] == "RUNNING"
    assert (waiting["job.state"], waiting["job.terminal"], waiting["job.accounted"]) == \
        ("COMPLETED", False, "pending")
    assert "Problem talking to the database" in waiting["job.accounting_error"]
    assert run["probe.slurm.sacct_ok"] is False and run["probe.slurm.sacct_failures"] == 1
    assert "sacct failed (exit 1)" in run["probe.slurm.sacct_error"]
    run = run_level(probe, rs, tmp_path, 102.0)  # asked again at +1 s: fails again
    assert run["probe.slurm.sacct_failures"] == 2
    facts = tick(probe, rs, tmp_path, 104.0)  # next try at +2 s: answers
    done = facts["train/42"]
    assert (done["job.terminal"], done["job.accounted"], done["job.exit_code"]) == \
        (True, "done", 0)
    assert done["job.cpu_eff"] == 50.0 and "job.accounting_error" not in done
    assert run_level(probe, rs, tmp_path, 110.0)["probe.slurm.sacct_ok"] is True
    assert len(fake.real_calls("sacct")) == 3


@pytest.mark.parametrize(("plan", "message"), [
    ({"hang": True}, "sacct timed out after 0.5s"),
    ({"outputs": ["<html>proxy error</html>\n"]}, "sacct output has no JobID/State column"),
    ({"exit": 1, "stderr": "sacct: error: slurmdbd: Connection refused"},
     "sacct failed (exit 1): sacct: error: slurmdbd"),
])
def test_sacct_hanging_failing_or_garbage(fake: Fake, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          plan: dict[str, Any], message: str) -> None:
    """A hung, failing or garbage-printing sacct is one line in probe.slurm.sacct_error; the
    probe itself answers with squeue's facts and counts the lookup as one try, so after
    sacct_retries the ended job is terminal with what squeue said (accounting missing)."""
    monkeypatch.setenv("RULESMON_SLURM_TIMEOUT", "0.5")
    fake.plan("squeue", outputs=[squeue_line("42", State="FAILED", Reason="NonZeroExitCode")
                                 + squeue_line("43")])
    fake.plan("sacct", **plan)
    text = "version: 1\nname: t\njobs:\n  train:\n    slurm: {ids: [42, 43], min_interval: " \
           "1s, sacct_retries: 1}\n"
    probe, rs = probe_for(text, tmp_path)
    result = probe.collect(TickContext(now=100.0, ruleset=rs, base_dir=tmp_path))
    assert message in result[""]["probe.slurm.sacct_error"]
    assert "\n" not in result[""]["probe.slurm.sacct_error"]
    assert result["train/43"]["job.state"] == "RUNNING"
    assert result["train/42"]["job.terminal"] is False
    final = tick(probe, rs, tmp_path, 101.0)["train/42"]
    assert (final["job.state"], final["job.terminal"], final["job.accounted"]) == \
        ("FAILED", True, "missing")
    assert final["job.raw_state"].endswith("(not in accounting)")
    assert len(fake.real_calls("sacct")) == 2


def test_accounting_disabled_gives_up_at_once(fake: Fake, tmp_path: Path) -> None:
    """On a cluster without accounting, an ended job is terminal at the first lookup instead
    of waiting for every retry."""
    fake.plan("squeue", outputs=[squeue_line("42", State="COMPLETED")])
    fake.plan("sacct", exit=1, stderr="sacct: error: Slurm accounting storage is disabled")
    probe, rs = probe_for(IDS.format(ids="42", mi="1s"), tmp_path)
    facts = tick(probe, rs, tmp_path, 100.0)["train/42"]
    assert (facts["job.state"], facts["job.terminal"], facts["job.accounted"]) == \
        ("COMPLETED", True, "missing")


def test_a_job_ended_in_the_queue_waits_for_accounting(fake: Fake, tmp_path: Path) -> None:
    """squeue's COMPLETED is final but not terminal while sacct lags: the run does not end
    and job-compute-metrics waits; once accounting answers, the job is terminal, the metrics
    rule fires with the figures and the history row has them."""
    from rulesmon.history import get_job_history

    fake.plan("squeue", outputs=[squeue_line("42"),
                                 squeue_line("42", State="COMPLETED", TimeUsed="1:40")])
    fake.plan("sacct", outputs=[sacct_text(), sacct_text(
        job_row("42", "COMPLETED", "0:0"), step_row("42", "batch", "01:00", "2G"),
        step_row("42", "0", "02:20", "6G"))])
    engine = engine_for(tmp_path, "version: 1\nname: lag\nextends: [builtin:slurm-basics]\n"
                        "every: 1s\njobs:\n  train:\n    slurm: {ids: [42], min_interval: 1s}\n")
    messages: dict[int, list[str]] = {}
    states: dict[int, tuple[Any, ...]] = {}
    try:
        for now in (100, 101, 102):
            outcome = engine.tick(float(now))
            f = engine.instances["train/42"]
            states[now] = (f["job.state"], f["job.terminal"], f.get("job.accounted"),
                           engine.run_facts["run.all_terminal"], outcome.finished)
            messages[now] = [n.body for n in outcome.fired if n.rule == "job-compute-metrics"]
    finally:
        engine.close()
    assert states[100] == ("RUNNING", False, None, False, False)
    assert states[101] == ("COMPLETED", False, "pending", False, False)
    assert states[102] == ("COMPLETED", True, "done", True, True)
    assert not messages[100] and not messages[101]
    (metrics,) = messages[102]
    assert "CPU efficiency 50%" in metrics and "6.00 GiB / 8.00 GiB (75%)" in metrics
    (row,) = get_job_history(db=tmp_path / "state.db")
    assert row["status"] == "success" and row["returncode"] == 0
    assert row["efficiency"]["cpu_pct"] == 50.0 and row["efficiency"]["memory_pct"] == 75.0


@pytest.mark.parametrize(("state", "code", "want"), [("COMPLETED", "0:0", 0),
                                                     ("FAILED", "3:0", 1)])
def test_bare_stop_keeps_the_runs_exit_code(fake: Fake, tmp_path: Path, state: str, code: str,
                                            want: int) -> None:
    """builtin:slurm-basics ends the run with a bare `stop`: `rulesmon run` exits 0 when the
    job succeeded and 1 when it failed, and prints COMPUTE_METRICS with the figures."""
    fake.plan("squeue", outputs=[squeue_line("42"), squeue_line("42", State=state)])
    fake.plan("sacct", outputs=[sacct_text(job_row("42", state, code),
                                           step_row("42", "batch", "03:20", "2G"))])
    ruleset = tmp_path / "rs.yaml"
    ruleset.write_text("version: 1\nname: ends\nextends: [builtin:slurm-basics]\nevery: 0.2s\n"
                       "jobs:\n  train:\n    slurm: {ids: [42], min_interval: 0s}\n",
                       encoding="utf-8")
    result = run_cli("run", str(ruleset), env=dict(os.environ), timeout=60)
    assert result.returncode == want, result.stderr[-2000:]
    assert "COMPUTE_METRICS: train/42" in result.stdout
    assert "CPU Efficiency: 50%" in result.stdout
    assert "ALL_COMPLETE" in result.stdout


def test_stop_with_a_code_still_wins(fake: Fake, tmp_path: Path) -> None:
    """`stop: 3` ends the run with exit code 3 whatever the jobs did."""
    fake.plan("squeue", outputs=[squeue_line("42", State="COMPLETED")])
    fake.plan("sacct", outputs=[sacct_text(job_row("42"))])
    ruleset = tmp_path / "rs.yaml"
    ruleset.write_text("version: 1\nname: three\nevery: 0.2s\njobs:\n  train:\n"
                       "    slurm: {ids: [42], min_interval: 0s}\nrules:\n  - name: done\n"
                       "    scope: run\n    when: run.all_terminal\n    do: [{stop: 3}]\n",
                       encoding="utf-8")
    result = run_cli("run", str(ruleset), env=dict(os.environ), timeout=60)
    assert result.returncode == 3, result.stderr[-2000:]


# --- output paths and the logs they lead to ----------------------------------------------------


def test_scheduler_jobs_follow_their_output_unless_told_not_to(tmp_path: Path) -> None:
    """A slurm or htcondor job without `logs:` follows job.stdout and job.stderr with the
    traceback and cuda-oom presets; `logs: []` and explicit logs are kept as written; local
    jobs get nothing."""
    rs = load_text("version: 1\nname: t\njobs:\n  a:\n    slurm: {ids: [1]}\n"
                   "  b:\n    slurm: {ids: [2]}\n    logs: []\n"
                   "  c:\n    htcondor: {ids: [3]}\n"
                   "  d:\n    slurm: {ids: [4]}\n    logs: [out.log]\n"
                   "  e:\n    local: {command: [sleep, '1']}\n", base=tmp_path).ruleset
    paths = {k: [(spec.path, spec.preset) for spec in j.logs] for k, j in rs.jobs.items()}
    presets = ["traceback", "cuda-oom"]
    assert paths["a"] == paths["c"] == [(entry["path"], presets) for entry in SCHEDULER_LOGS]
    assert len(paths["a"]) == 2 and "job.stdout" in paths["a"][0][0] \
        and "job.stderr" in paths["a"][1][0]
    assert paths["b"] == [] and paths["e"] == []
    assert paths["d"] == [("out.log", [])]


def test_failed_job_message_shows_the_end_of_its_own_output(fake: Fake, tmp_path: Path) -> None:
    """Through builtin:slurm-basics alone, a failed job's alert carries the end of the file
    squeue names as its output (followed without any `logs:`), and the traceback preset
    counts the crash once even though stderr is the same file."""
    out = tmp_path / "train-42.out"
    out.write_text("epoch 1\nTraceback (most recent call last):\n  File \"train.py\", line 3\n"
                   "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
                   encoding="utf-8")
    fake.plan("squeue", outputs=[squeue_line(
        "42", State="FAILED", STDOUT=str(tmp_path / "%x-%j.out"),
        STDERR=str(tmp_path / "%x-%j.out"))])
    fake.plan("sacct", outputs=[sacct_text(job_row("42", "FAILED", "1:0"))])
    engine = engine_for(tmp_path, "version: 1\nname: crash\nextends: [builtin:slurm-basics]\n"
                        "every: 1s\njobs:\n  train:\n    slurm: {ids: [42], min_interval: 1s}\n")
    try:
        outcome = engine.tick(100.0)
        facts = engine.instances["train/42"]
    finally:
        engine.close()
    (failed,) = [n.body for n in outcome.fired if n.rule == "job-failed"]
    assert "exit code 1" in failed and "RuntimeError: CUDA out of memory" in failed
    assert facts["log.path"] == str(out)
    assert facts["log.errors.traceback.count"] == 1
    assert facts["log.errors.oom.count"] == 1


def test_accounting_only_jobs_get_sbatchs_default_output(fake: Fake, tmp_path: Path) -> None:
    """A job known only from sacct -P (no StdOut column on 22.05) gets slurm-%j.out in its
    working directory (slurm-%A_%a.out for an array task); squeue's own path is kept when
    squeue gave one."""
    fake.plan("squeue", outputs=[squeue_line("43", State="COMPLETED")])
    fake.plan("sacct", outputs=[sacct_text(job_row("41", WorkDir="/home/alice/w"),
                                           job_row("7_1", JobIDRaw="9", WorkDir="/scratch/a/"),
                                           job_row("43", WorkDir="/elsewhere"))])
    text = ("version: 1\nname: t\njobs:\n  train:\n    slurm: {ids: [41, 43], min_interval: 1s}\n"
            "  sweep:\n    slurm: {array: 7, min_interval: 1s}\n")
    probe, rs = probe_for(text, tmp_path)
    facts = tick(probe, rs, tmp_path, 100.0)
    assert facts["train/41"]["job.stdout"] == "/home/alice/w/slurm-41.out"
    assert facts["sweep/7_1"]["job.stdout"] == "/scratch/a/slurm-7_1.out"
    assert facts["train/43"]["job.stdout"] == "/home/alice/w/train-43.out"  # squeue's
    assert facts["train/43"]["job.accounted"] == "done"


# --- bad records, launch verification, dry runs -------------------------------------------------


def test_one_bad_record_does_not_fail_the_poll(fake: Fake, tmp_path: Path) -> None:
    """A squeue record with an unreadable size is left out of the call (named in
    probe.slurm.bad_records/bad_record): the other jobs are reported, and the watched job
    whose record it is keeps its last facts instead of being taken for gone."""
    fake.plan("squeue", outputs=[squeue_line("42") + squeue_line("43"),
                                 squeue_line("42", MinMemory="1..2G", **{"tres-alloc": ""})
                                 + squeue_line("43", State="COMPLETING")])
    fake.plan("sacct", outputs=[sacct_text()])
    probe, rs = probe_for(IDS.format(ids="42, 43", mi="1s"), tmp_path)
    tick(probe, rs, tmp_path, 100.0)
    result = probe.collect(TickContext(now=101.0, ruleset=rs, base_dir=tmp_path))
    assert result["train/43"]["job.state"] == "COMPLETING"
    assert result["train/42"]["job.state"] == "RUNNING"
    assert result["train/42"]["job.elapsed"] == 101.0  # 1:40 seen at 100, one second on
    assert result[""]["probe.slurm.bad_records"] == 1
    assert "squeue line 1: job '42' skipped: size '1..2G'" in result[""]["probe.slurm.bad_record"]
    assert not fake.real_calls("sacct")  # 42 was not taken for a job that left the queue


def test_unreadable_pending_array_record_keeps_its_tasks(fake: Fake, tmp_path: Path) -> None:
    """When a pending array record (`44_[1-2]`) cannot be read, its tasks, known from the
    previous call, keep their last facts and are not looked up in sacct as gone; a running
    task's unreadable record protects that task the same way."""
    pending = {"JobID": "44", "JobArrayID": "44_[1-2]", "ArrayJobID": "44",
               "ArrayTaskID": "1-2", "State": "PENDING", "Reason": "Priority"}
    bad = {"MinMemory": "1..2G", "tres-alloc": ""}
    fake.plan("squeue", outputs=[
        squeue_line("44_[1-2]", **pending),
        squeue_line("44_[1-2]", **pending, **bad),
        squeue_line("44_1", JobID="93", **bad)
        + squeue_line("44_[2]", **{**pending, "JobArrayID": "44_[2]", "ArrayTaskID": "2"})])
    fake.plan("sacct", outputs=[sacct_text()])
    probe, rs = probe_for(IDS.format(ids="44", mi="1s"), tmp_path)
    assert sorted(tick(probe, rs, tmp_path, 100.0)) == ["train/44_1", "train/44_2"]
    result = probe.collect(TickContext(now=101.0, ruleset=rs, base_dir=tmp_path))
    assert result[""]["probe.slurm.bad_records"] == 1
    assert "job '44' skipped" in result[""]["probe.slurm.bad_record"]
    assert result["train/44_1"]["job.state"] == result["train/44_2"]["job.state"] == "PENDING"
    assert all(t.in_queue for t in probe._watches[0].jobs.values())
    result = probe.collect(TickContext(now=102.0, ruleset=rs, base_dir=tmp_path))
    assert "job '44_1' skipped" in result[""]["probe.slurm.bad_record"]
    assert result["train/44_1"]["job.state"] == "PENDING"  # its last facts, kept
    assert not fake.real_calls("sacct")  # no task was taken for one that left the queue


def test_submitted_job_never_seen_fails_verification(fake: Fake, tmp_path: Path) -> None:
    """A job sbatch accepted that neither squeue nor sacct ever shows is a launch failure once
    verify_within has passed: FAILED, terminal, diagnosis launch_failed, with the reason."""
    (tmp_path / "job.sh").write_text("#!/bin/sh\ntrue\n", encoding="utf-8")
    fake.plan("sbatch", outputs=["4242\n"])
    fake.plan("squeue", outputs=[""])
    fake.plan("sacct", outputs=[sacct_text()])
    text = ("version: 1\nname: t\njobs:\n  run:\n    slurm:\n      submit: {script: job.sh, "
            "verify_within: 5s}\n      min_interval: 1s\n")
    probe, rs = probe_for(text, tmp_path)
    probe.start(TickContext(now=100.0, ruleset=rs, base_dir=tmp_path))
    early = tick(probe, rs, tmp_path, 103.0)["run/4242"]
    assert early["job.state"] == "PENDING" and "job.launch_ok" not in early
    late = tick(probe, rs, tmp_path, 106.0)["run/4242"]
    assert (late["job.state"], late["job.terminal"], late["job.diagnosis"],
            late["job.launch_ok"]) == ("FAILED", True, "launch_failed", False)
    assert late["job.launch_error"] == ("submitted job 4242 not seen in squeue or sacct "
                                        "within 5s")


def test_dry_run_submits_nothing(fake: Fake, tmp_path: Path) -> None:
    """In a dry run the submit selection says what it would sbatch and calls no SLURM tool."""
    (tmp_path / "job.sh").write_text("#!/bin/sh\ntrue\n", encoding="utf-8")
    text = ("version: 1\nname: t\njobs:\n  run:\n    slurm:\n      submit: {script: job.sh}\n"
            "      min_interval: 1s\n")
    probe, rs = probe_for(text, tmp_path)
    probe.start(TickContext(now=100.0, ruleset=rs, base_dir=tmp_path, dry_run=True))
    facts = probe.collect(TickContext(now=101.0, ruleset=rs, base_dir=tmp_path, dry_run=True))
    stub = facts["run/submit"]
    assert (stub["job.state"], stub["job.terminal"]) == ("PENDING", False)
    assert stub["job.raw_state"] == f"dry run: would sbatch {tmp_path / 'job.sh'}"
    assert fake.calls() == []


# --- issue 13: exit codes from accounting, accounting disabled (recorded on 22.05) ------------


@pytest.mark.parametrize("fmt", ["json", "parseable"])
@pytest.mark.parametrize(("version", "timeout", "cancel"), [("22.05", "12", "8"),
                                                           ("24.11", "1000095", "1000091")])
def test_exit_code_and_signal_come_from_accounting_on_both_paths(
        fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, version: str,
        timeout: str, cancel: str) -> None:
    """A job that timed out and one cancelled while running (real 22.05 and 24.11
    recordings): squeue --json says exit status 15 (143, signal 15), sacct says 0:0; once
    accounting has them both paths report exit code 0 and signal 0 (on 22.05 the --json path
    reads sacct -P, whose exit codes are right; on 24.11 sacct --json)."""
    monkeypatch.setenv("RULESMON_SLURM_FORMAT", fmt)
    ext = "json" if fmt == "json" else "txt"
    sacct_json = fmt == "json" and version != "22.05"
    fake.plan("squeue", version=f"slurm {version}.5", outputs=[
        (FIXTURES / f"squeue-{version}-i13-{m}.{ext}").read_text(encoding="utf-8")
        for m in ("running", "ended")])
    accounting = FIXTURES / f"sacct-{version}-i13.{'json' if sacct_json else 'txt'}"
    fake.plan("sacct", outputs=[accounting.read_text(encoding="utf-8")])
    probe, rs = probe_for(IDS.format(ids=f"{cancel}, {timeout}", mi="0s"), tmp_path)
    first = tick(probe, rs, tmp_path, 100.0)
    assert first[f"train/{timeout}"]["job.state"] == "RUNNING"
    assert first[f"train/{cancel}"]["job.accounted"] == "done"
    ended = tick(probe, rs, tmp_path, 101.0)
    for jid, state in ((timeout, "TIMEOUT"), (cancel, "CANCELLED")):
        f = ended[f"train/{jid}"]
        assert (f["job.state"], f["job.terminal"], f["job.accounted"]) == (state, True, "done")
        assert (f["job.exit_code"], f["job.signal"]) == (0, 0), (fmt, jid, f)
    assert ended[f"train/{timeout}"]["job.diagnosis"] == "time_limit"
    assert ended[f"train/{timeout}"]["job.exceeded"] is True
    assert all(("--json" in call) is sacct_json for call in fake.real_calls("sacct"))
    assert all(("--json" in call) is (fmt == "json") for call in fake.real_calls("squeue"))


def test_an_accounting_record_without_exit_code_drops_squeues() -> None:
    """Accounting's record replaces squeue's exit code and signal even where it leaves them
    unknown (22.05's sacct --json for a TIMEOUT job): no 143 left over from squeue."""
    now = float((FIXTURES / "squeue-22.05-i13-ended.now").read_text(encoding="utf-8"))
    queued = {str(r["job.id"]): r for r in sp.parse_squeue_json(
        (FIXTURES / "squeue-22.05-i13-ended.json").read_text(encoding="utf-8"), now=now)}["12"]
    record = sp.parse_sacct_json((FIXTURES / "sacct-22.05-i13.json").read_text(
        encoding="utf-8"))["12"]
    assert queued["job.exit_code"] == 143 and "job.exit_code" not in record
    merged = slurm._accounted(queued, record)
    assert "job.exit_code" not in merged and merged["job.signal"] == 0
    assert merged["job.state"] == "TIMEOUT" and merged["job.accounted"] == "done"


def _disabled_message() -> str:
    return (FIXTURES / "sacct-22.05-accounting-disabled.txt").read_text(
        encoding="utf-8").splitlines()[0]


def test_accounting_disabled_is_said_once_and_time_figures_stay(
        fake: Fake, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """sacct's real 'accounting storage is disabled' answer: the TIMEOUT job still gets
    job.exceeded and job.time_eff from squeue's elapsed time and limit, both jobs are
    `missing` at once, probe.slurm.accounting_disabled is set and the log says it once."""
    fake.plan("squeue", outputs=[
        (FIXTURES / "squeue-22.05-i13-ended.txt").read_text(encoding="utf-8")])
    fake.plan("sacct", fail_from=0, fail_stderr=_disabled_message())
    probe, rs = probe_for(IDS.format(ids="8, 12", mi="0s"), tmp_path)
    with caplog.at_level("WARNING", logger="rulesmon.probes.slurm"):
        facts = probe.collect(TickContext(now=100.0, ruleset=rs, base_dir=tmp_path))
        probe.collect(TickContext(now=101.0, ruleset=rs, base_dir=tmp_path))
    run = facts.pop("")
    timeout = facts["train/12"]
    assert (timeout["job.state"], timeout["job.terminal"], timeout["job.accounted"]) == \
        ("TIMEOUT", True, "missing")
    assert timeout["job.exceeded"] is True and timeout["job.time_eff"] == 130.0  # 78 s of 60
    assert timeout["job.raw_state"] == "TIMEOUT (accounting is disabled)"
    assert "job.exit_code" not in timeout and "job.cpu_eff" not in timeout
    assert facts["train/8"]["job.accounted"] == "missing"
    assert facts["train/8"]["job.exceeded"] is False
    assert run["probe.slurm.accounting_disabled"] is True
    assert "accounting storage is disabled" in run["probe.slurm.sacct_error"]
    said = [r for r in caplog.records if "slurm_accounting_disabled" in r.getMessage()]
    assert len(said) == 1


def test_accounting_disabled_in_the_runs_summary(fake: Fake, tmp_path: Path) -> None:
    """`rulesmon run` on a cluster without accounting says so once on the console (stderr)
    and in the run's summary: ALL_COMPLETE's note and run.summary."""
    fake.plan("squeue", outputs=[
        (FIXTURES / "squeue-22.05-i13-ended.txt").read_text(encoding="utf-8")])
    fake.plan("sacct", fail_from=0, fail_stderr=_disabled_message())
    ruleset = tmp_path / "rs.yaml"
    ruleset.write_text("version: 1\nname: noacct\nextends: [builtin:slurm-basics]\n"
                       "every: 0.2s\njobs:\n  train:\n    slurm: {ids: [8, 12], "
                       "min_interval: 0s}\n", encoding="utf-8")
    result = run_cli("run", str(ruleset), "--log-json", str(tmp_path / "log.jsonl"),
                     env=dict(os.environ), timeout=60)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.count("slurm_accounting_disabled") == 1, result.stderr[-2000:]
    assert "Note: SLURM accounting is disabled on this cluster (sacct: sacct failed (exit 1): " \
        "Slurm accounting storage is disabled)" in result.stdout, result.stdout
    finished = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text(
        encoding="utf-8").splitlines() if '"run_finished"' in line]
    assert finished and "SLURM accounting is disabled" in finished[-1]["summary"]


@pytest.mark.parametrize(("version", "jid"), [("22.05", "22"), ("24.11", "1000069")])
def test_a_cancelled_jobs_step_usage_is_waited_for(fake: Fake, tmp_path: Path, version: str,
                                                   jid: str) -> None:
    """Real sacct answers a moment after scancel: the job is CANCELLED in accounting while its
    batch step has no MaxRSS or CPU time yet. The probe asks once more before taking the
    record, so the job ends with its memory figures (it ended without job.mem_eff)."""
    early, late = ((FIXTURES / f"sacct-{version}-usage-lag-{w}.txt").read_text(
        encoding="utf-8") for w in ("early", "late"))
    assert "job.max_rss" not in sp.parse_sacct(early)[jid]
    fake.plan("squeue", outputs=[squeue_line(jid, State="CANCELLED")])
    fake.plan("sacct", outputs=[early, late])
    probe, rs = probe_for(IDS.format(ids=jid, mi="0s"), tmp_path)
    first = tick(probe, rs, tmp_path, 100.0)[f"train/{jid}"]
    assert (first["job.terminal"], first["job.accounted"]) == (False, "pending")
    done = tick(probe, rs, tmp_path, 101.5)[f"train/{jid}"]
    assert (done["job.state"], done["job.terminal"], done["job.accounted"]) == \
        ("CANCELLED", True, "done")
    assert done["job.max_rss"] > 0 and done["job.mem_eff"] > 0
    assert not any(name.startswith("_") for name in done)
    assert len(fake.real_calls("sacct")) == 2


def test_a_step_without_usage_is_taken_after_one_more_lookup(fake: Fake,
                                                            tmp_path: Path) -> None:
    """A record whose step never gets usage (the same early answer again) is taken at the
    second lookup, without its memory figures: one lookup more, never a wait for retries."""
    early = (FIXTURES / "sacct-22.05-usage-lag-early.txt").read_text(encoding="utf-8")
    fake.plan("squeue", outputs=[squeue_line("22", State="CANCELLED")])
    fake.plan("sacct", outputs=[early])
    probe, rs = probe_for(IDS.format(ids="22", mi="0s"), tmp_path)
    tick(probe, rs, tmp_path, 100.0)
    done = tick(probe, rs, tmp_path, 101.5)["train/22"]
    assert (done["job.terminal"], done["job.accounted"]) == (True, "done")
    assert "job.mem_eff" not in done and done["job.exit_code"] == 0
