"""slurm_parse on real SLURM 24.11 output (data_parser v0.0.42), recorded from the development
cluster in its Debian 13 chroot by tests/fixtures/slurm/record-24.11.sh: squeue's parseable
format and `squeue --json` while the jobs run and once they ended, `sacct -P` and
`sacct --json` of the same jobs (see tests/fixtures/slurm/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rulesmon.probes import slurm_parse as sp

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"
# the recorded jobs (record-24.11.sh): ids in submission order
OK, EXIT3, SIGNAL, TIMEOUT, CANCEL, OOM, STEPS, ARRAY, HELD, DEPENDENT, LATER, SRUN = (
    str(n) for n in range(1000073, 1000085))
TASKS = [f"{ARRAY}_{i}" for i in range(4)]
RUNS = "/home/alice/runs"
#: facts squeue's two layouts both give, compared job by job
SAME = ("job.state", "job.raw_state", "job.terminal", "job.outcome", "job.user",
        "job.partition", "job.account", "job.qos", "job.node_list", "job.nodes", "job.cpus",
        "job.gpus", "job.mem_req", "job.submit_time", "job.start_time", "job.end_time",
        "job.wait", "job.time_limit", "job.array_id", "job.array_task", "job.restarts",
        "job.workdir", "job.stdout", "job.stderr", "job.name")


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _now(snapshot: str) -> float:
    return float(_text(f"squeue-24.11-{snapshot}.now"))


def _squeue(snapshot: str) -> dict[str, dict[str, Any]]:
    skipped: list[tuple[str, str]] = []
    jobs = {f["job.id"]: f for f in sp.parse_squeue(_text(f"squeue-24.11-{snapshot}.txt"),
                                                    skipped)}
    assert skipped == []
    return jobs


def _squeue_json(snapshot: str) -> dict[str, dict[str, Any]]:
    skipped: list[tuple[str, str]] = []
    jobs = {f["job.id"]: f for f in sp.parse_squeue_json(
        _text(f"squeue-24.11-{snapshot}.json"), skipped, now=_now(snapshot))}
    assert skipped == []
    return jobs


def _sacct(snapshot: str) -> dict[str, dict[str, Any]]:
    skipped: list[tuple[str, str]] = []
    jobs = sp.parse_sacct(_text(f"sacct-24.11-{snapshot}.txt"), skipped)
    assert skipped == []
    return jobs


def _sacct_json(snapshot: str) -> dict[str, dict[str, Any]]:
    skipped: list[tuple[str, str]] = []
    jobs = sp.parse_sacct_json(_text(f"sacct-24.11-{snapshot}.json"), skipped)
    assert skipped == []
    return jobs


def test_recordings_are_slurm_2411_data_parser_v0_0_42() -> None:
    """Every JSON recording comes from SLURM 24.11.5 with data_parser v0.0.42, and `squeue
    --version` of that cluster reads as (24, 11)."""
    for name in ("squeue-24.11-running.json", "squeue-24.11-ended.json",
                 "sacct-24.11-running.json", "sacct-24.11-ended.json"):
        meta = json.loads(_text(name))["meta"]
        assert meta["slurm"]["release"] == "24.11.5", name
        assert meta["plugin"]["data_parser"] == "data_parser/v0.0.42", name
    assert sp.version("slurm-wlm 24.11.5") == (24, 11)


def test_squeue_parseable_running_jobs() -> None:
    """squeue's parseable format on 24.11 while the jobs run: states and pending reasons, a
    cancelled and an out-of-memory job still in the queue, the array split into running and
    pending tasks, limits, time left, node, CPUs and memory."""
    jobs = _squeue("running")
    assert sorted(jobs) == sorted([OK, EXIT3, SIGNAL, TIMEOUT, CANCEL, OOM, STEPS, HELD,
                                   DEPENDENT, LATER, SRUN, *TASKS])
    for jid in (OK, EXIT3, SIGNAL, TIMEOUT, STEPS, TASKS[0], TASKS[1]):
        assert jobs[jid]["job.state"] == "RUNNING" and jobs[jid]["job.node_list"] == "node2411"
    assert jobs[CANCEL]["job.state"] == "CANCELLED" and jobs[CANCEL]["job.terminal"] is True
    assert jobs[OOM]["job.state"] == "OUT_OF_MEMORY"
    assert jobs[OOM]["job.reason"] == "OutOfMemory"
    assert [jobs[t]["job.state"] for t in TASKS] == ["RUNNING", "RUNNING", "PENDING", "PENDING"]
    assert jobs[TASKS[3]]["job.reason"] == "JobArrayTaskLimit"
    assert jobs[TASKS[3]]["job.array_id"] == ARRAY and jobs[TASKS[3]]["job.array_task"] == 3
    assert (jobs[HELD]["job.state"], jobs[HELD]["job.reason"]) == ("HELD", "JobHeldUser")
    assert jobs[DEPENDENT]["job.reason"] == "Dependency"
    assert jobs[LATER]["job.reason"] == "BeginTime"
    assert "job.start_time" not in jobs[LATER]  # squeue prints the expected start
    ok = jobs[OK]
    assert (ok["job.time_limit"], ok["job.elapsed"], ok["job.time_left"]) == (300, 3, 297)
    assert ok["job.cpus"] == 1 and ok["job.mem_req"] == 64 << 20
    assert jobs[STEPS]["job.cpus"] == 2
    assert jobs[TIMEOUT]["job.time_limit"] == 60 and jobs[TIMEOUT]["job.time_left"] == 57


def test_squeue_parseable_null_stderr_is_the_stdout_file() -> None:
    """24.11's squeue prints StdErr `(null)` for a batch job without --error (22.05 printed
    the path): its stderr is the stdout file, placeholders expanded, array tasks included;
    a job run by srun alone prints `(null)` for both and gets no output file at all."""
    raw = _text("squeue-24.11-running.txt")
    assert f"{RUNS}/rec-%x-%j.out\x1f(null)\x1f" in raw
    for snapshot in ("running", "ended"):
        jobs = _squeue(snapshot)
        assert jobs[OK]["job.stdout"] == f"{RUNS}/rec-rec-ok-{OK}.out"
        assert jobs[OK]["job.stderr"] == jobs[OK]["job.stdout"]
        for i, task in enumerate(TASKS):
            assert jobs[task]["job.stdout"] == f"{RUNS}/rec-rec-array-{ARRAY}_{i}.out"
            assert jobs[task]["job.stderr"] == jobs[task]["job.stdout"]
        assert "job.stdout" not in jobs[SRUN] and "job.stderr" not in jobs[SRUN]
        assert not any("(null)" in str(v) for f in jobs.values() for v in f.values())


@pytest.mark.parametrize("snapshot", ["running", "ended"])
def test_squeue_json_agrees_with_parseable(snapshot: str) -> None:
    """`squeue --json` of 24.11 gives the same jobs and facts as the parseable format recorded
    in the same second (elapsed time and time left computed from the call time agree within
    that second); only the reason of a signalled job is shorter in the JSON."""
    text_jobs, json_jobs = _squeue(snapshot), _squeue_json(snapshot)
    assert sorted(text_jobs) == sorted(json_jobs)
    assert "job.exit_code" not in text_jobs[OOM]  # sacct -P's 0:125 is a marker, not an exit
    for jid, t in text_jobs.items():
        j = json_jobs[jid]
        for fact in SAME:
            assert t.get(fact) == j.get(fact), (jid, fact)
        for fact in ("job.elapsed", "job.time_left"):
            assert (fact in t) == (fact in j), (jid, fact)
            if fact in t:
                assert abs(t[fact] - j[fact]) <= 1, (jid, fact, t[fact], j[fact])
        if t["job.reason"] != j["job.reason"]:
            assert (jid, t["job.reason"], j["job.reason"]) == (
                SIGNAL, "RaisedSignal:9(Killed)", "RaisedSignal")


def test_squeue_json_pending_array_task_paths() -> None:
    """24.11's squeue --json expands a pending array's output path itself, with NO_VAL
    (4294967294) for %a: each pending task gets its own file, as sbatch will write it."""
    raw = json.loads(_text("squeue-24.11-running.json"))
    (pending,) = [j for j in raw["jobs"] if j["array_task_string"]]
    assert pending["standard_output"] == f"{RUNS}/rec-rec-array-{ARRAY}_4294967294.out"
    jobs = _squeue_json("running")
    for i in (2, 3):
        task = jobs[TASKS[i]]
        assert task["job.state"] == "PENDING"
        assert task["job.stdout"] == f"{RUNS}/rec-rec-array-{ARRAY}_{i}.out"
        assert task["job.stderr"] == task["job.stdout"]


def test_squeue_json_srun_job_has_no_output_file() -> None:
    """A job run by srun alone (batch_flag false, empty standard_output) gets no guessed
    `slurm-<id>.out`: it writes to srun's terminal, not to a file."""
    raw = json.loads(_text("squeue-24.11-ended.json"))
    (srun,) = [j for j in raw["jobs"] if j["name"] == "rec-srun"]
    assert srun["batch_flag"] is False and srun["standard_output"] == ""
    for snapshot in ("running", "ended"):
        job = _squeue_json(snapshot)[SRUN]
        assert "job.stdout" not in job and "job.stderr" not in job
    assert _squeue_json("ended")[SRUN]["job.state"] == "COMPLETED"


def test_sacct_json_srun_job_has_no_output_file() -> None:
    """In `sacct --json` a job run by srun alone has empty stdout fields and no batch step:
    it gets no guessed output file, while a batch job keeps the file it wrote."""
    raw = json.loads(_text("sacct-24.11-ended.json"))
    (srun,) = [j for j in raw["jobs"] if j["name"] == "rec-srun"]
    assert srun["stdout_expanded"] == "" and srun["submit_line"].startswith("srun ")
    assert [s["step"]["id"] for s in srun["steps"]] == [f"{SRUN}.0"]
    jobs = _sacct_json("ended")
    assert "job.stdout" not in jobs[SRUN] and "job.stderr" not in jobs[SRUN]
    assert jobs[SRUN]["job.state"] == "COMPLETED" and jobs[SRUN]["job.exit_code"] == 0
    assert jobs[OK]["job.stdout"] == f"{RUNS}/rec-rec-ok-{OK}.out"


def test_sacct_json_ended_jobs() -> None:
    """`sacct --json` of 24.11 (the probe's sacct format from 23.02 on) for ended jobs: state,
    exit code, signal, diagnosis, limits and efficiency inputs of every kind of ending."""
    jobs = _sacct_json("ended")
    ok = jobs[OK]
    assert (ok["job.state"], ok["job.exit_code"], ok["job.succeeded"]) == ("COMPLETED", 0, True)
    assert ok["job.elapsed"] == 8 and ok["job.time_limit"] == 300
    assert ok["job.mem_req"] == 64 << 20 and ok["job.mem_used"] > 1 << 20
    assert ok["job.stdout"] == f"{RUNS}/rec-rec-ok-{OK}.out"
    e3 = jobs[EXIT3]
    assert (e3["job.state"], e3["job.exit_code"], e3["job.diagnosis"]) == (
        "FAILED", 3, "nonzero_exit")
    sig = jobs[SIGNAL]
    assert (sig["job.state"], sig["job.signal"], sig["job.diagnosis"]) == ("FAILED", 9, "signal")
    to = jobs[TIMEOUT]
    assert (to["job.state"], to["job.exit_code"], to["job.signal"]) == ("TIMEOUT", 0, 0)
    assert to["job.exceeded"] is True and to["job.diagnosis"] == "time_limit"
    assert to["job.time_limit"] == 60 and to["job.elapsed"] >= 60
    ca = jobs[CANCEL]
    assert (ca["job.state"], ca["job.exit_code"], ca["job.signal"]) == ("CANCELLED", 0, 0)
    assert ca["job.diagnosis"] == "cancelled"
    oom = jobs[OOM]
    assert (oom["job.state"], oom["job.diagnosis"], oom["job.signal"]) == (
        "OUT_OF_MEMORY", "oom", 0)
    assert oom["job.mem_req"] == 40 << 20 and oom["job.mem_used"] > 20 << 20
    steps = jobs[STEPS]
    assert steps["job.cpus"] == 2 and steps["job.cpu_time"] >= 4.9  # busy 6 s in a step
    for i, task in enumerate(TASKS):
        assert jobs[task]["job.state"] == "COMPLETED"
        assert jobs[task]["job.array_id"] == ARRAY and jobs[task]["job.array_task"] == i
        assert jobs[task]["job.stdout"] == f"{RUNS}/rec-rec-array-{ARRAY}_{i}.out"
    assert jobs[SRUN]["job.state"] == "COMPLETED"
    assert jobs[HELD]["job.terminal"] is False and jobs[LATER]["job.terminal"] is False


def test_sacct_json_running_jobs_are_not_terminal() -> None:
    """`sacct --json` while the jobs run: running jobs are RUNNING and not terminal, the one
    cancelled while running is CANCELLED with its run time."""
    jobs = _sacct_json("running")
    for jid in (OK, EXIT3, SIGNAL, TIMEOUT, STEPS):
        assert jobs[jid]["job.state"] == "RUNNING" and jobs[jid]["job.terminal"] is False
    assert jobs[CANCEL]["job.state"] == "CANCELLED" and jobs[CANCEL]["job.terminal"] is True
    assert jobs[CANCEL]["job.elapsed"] == 1


def test_sacct_parseable_and_json_agree() -> None:
    """`sacct -P` and `sacct --json` of 24.11 give the same state, exit code, signal,
    diagnosis, times, memory figures and efficiency for every ended job (outputs differ:
    sacct -P has no StdOut column, so -P gets sbatch's default file)."""
    text_jobs, json_jobs = _sacct("ended"), _sacct_json("ended")
    assert sorted(text_jobs) == sorted(json_jobs)
    facts = ("job.state", "job.terminal", "job.outcome", "job.signal", "job.diagnosis",
             "job.succeeded", "job.elapsed", "job.time_limit", "job.exceeded", "job.time_eff",
             "job.submit_time", "job.start_time", "job.end_time", "job.cpus", "job.nodes",
             "job.node_list", "job.mem_req", "job.mem_used", "job.mem_eff", "job.gpus",
             "job.array_id", "job.array_task", "job.workdir")
    for jid, t in text_jobs.items():
        j = json_jobs[jid]
        for fact in facts:
            assert t.get(fact) == j.get(fact), (jid, fact, t.get(fact), j.get(fact))
        assert t.get("job.exit_code") == j.get("job.exit_code"), jid
