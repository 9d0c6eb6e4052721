"""SLURM output parsers on recorded 22.05 outputs and the documented 23.02/24.05 JSON layouts,
and every kind of garbage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rulesmon.probes import slurm_parse as sp

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _by_name(records: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["job.name"]) + "/" + str(r["job.id"]): r for r in records}


def test_squeue_parseable_running_snapshot() -> None:
    """The 22.05 -O output gives states, pending reasons, held jobs, arrays and expanded
    output paths."""
    jobs = {str(r["job.id"]): r for r in sp.parse_squeue(_text("squeue-22.05-running.txt"))}
    running = jobs["24"]
    assert running["job.state"] == "RUNNING" and running["job.terminal"] is False
    assert running["job.outcome"] == "running"
    assert running["job.time_limit"] == 300.0 and running["job.time_left"] == 296.0
    assert running["job.mem_req"] == 64 << 20 and running["job.cpus"] == 1
    assert running["job.stdout"] == "/home/alice/runs/rec-rec-ok-24.out"
    assert running["job.node_list"] == "vm" and running["job.nodes"] == 1
    assert running["job.wait"] >= 0 and "job.end_time" not in running
    held = jobs["32"]
    assert (held["job.state"], held["job.raw_state"], held["job.reason"]) == \
        ("HELD", "PENDING", "JobHeldUser")
    assert jobs["33"]["job.reason"] == "Dependency"
    assert jobs["34"]["job.reason"] == "PartitionConfig"
    tasks = sorted(k for k in jobs if k.startswith("31_"))
    assert tasks == ["31_0", "31_1", "31_2", "31_3"]
    assert jobs["31_2"]["job.array_id"] == "31" and jobs["31_2"]["job.array_task"] == 2
    assert jobs["31_2"]["job.stdout"] == "/home/alice/runs/rec-rec-array-31_2.out"
    assert jobs["29"]["job.state"] == "OUT_OF_MEMORY" and jobs["29"]["job.diagnosis"] == "oom"


def test_squeue_parseable_ended_snapshot() -> None:
    """Jobs that ended in the queue (-t all) carry their terminal state and end time."""
    jobs = {str(r["job.id"]): r for r in sp.parse_squeue(_text("squeue-22.05-ended.txt"))}
    assert jobs["27"]["job.state"] == "TIMEOUT" and jobs["27"]["job.reason"] == "TimeLimit"
    assert jobs["27"]["job.diagnosis"] == "time_limit"
    assert jobs["28"]["job.state"] == "CANCELLED" and jobs["28"]["job.outcome"] == "cancelled"
    assert jobs["25"]["job.state"] == "FAILED" and jobs["25"]["job.terminal"] is True
    assert jobs["24"]["job.end_time"] > jobs["24"]["job.start_time"]


def test_sacct_parseable_efficiency_and_exit_codes() -> None:
    """sacct -P gives exit codes, signals and seff's figures from the steps."""
    jobs = sp.parse_sacct(_text("sacct-22.05-ended.txt"))
    ok, exit3, killed, timeout = jobs["24"], jobs["25"], jobs["26"], jobs["27"]
    assert ok["job.succeeded"] is True and ok["job.outcome"] == "success"
    assert ok["job.exit_code"] == 0 and ok["job.signal"] == 0
    assert exit3["job.exit_code"] == 3 and exit3["job.succeeded"] is False
    assert exit3["job.diagnosis"] == "nonzero_exit"
    assert killed["job.signal"] == 9 and killed["job.exit_code"] == 137
    assert timeout["job.exceeded"] is True and timeout["job.time_eff"] > 100
    assert timeout["job.outcome"] == "timeout"
    steps = jobs["30"]  # two srun steps busy on 2 CPUs for 6 of 9 seconds
    assert steps["job.cpus"] == 2
    assert steps["job.cpu_time"] == pytest.approx(5.77, abs=0.5)
    # seff: 5.773 CPU seconds rounded to 6, over 9 s x 2 CPUs; the exact ratio kept apart
    assert steps["job.cpu_eff"] == 33.33
    assert steps["job.cpu_eff_exact"] == pytest.approx(
        100 * steps["job.cpu_time"] / (steps["job.elapsed"] * 2), abs=0.0001)
    oom = jobs["29"]
    assert oom["job.state"] == "OUT_OF_MEMORY" and oom["job.signal"] == 0
    assert oom["job.mem_req"] == 40 << 20
    assert oom["job.mem_eff"] == pytest.approx(100 * oom["job.mem_used"] / (40 << 20), abs=0.01)
    assert jobs["31_2"]["job.array_task"] == 2 and jobs["31_2"]["job.array_id"] == "31"
    assert jobs["32"]["job.state"] == "HELD" and "job.exit_code" not in jobs["32"]


def test_sacct_parseable_running_has_no_exit_code() -> None:
    """A running job's accounting line has no exit code or succeeded flag yet."""
    jobs = sp.parse_sacct(_text("sacct-22.05-running.txt"))
    running = [f for f in jobs.values() if f["job.state"] == "RUNNING"]
    assert running
    assert all("job.exit_code" not in f and "job.succeeded" not in f for f in running)


def test_sacct_json_2205_exit_code_quirk() -> None:
    """22.05's sacct --json says return code 0 for exit 3, in the job and in its batch step
    alike (recorded from a real 22.05.8): the parser leaves the code unknown rather than
    believe it, while sacct -P of the same job says 3, which is why the probe reads -P on
    22.05."""
    jobs = sp.parse_sacct_json(_text("sacct-22.05-ended.json"))
    raw = next(j for j in json.loads(_text("sacct-22.05-ended.json"))["jobs"]
               if j["job_id"] == 25)
    assert raw["exit_code"]["return_code"] == 0
    assert [s["exit_code"]["return_code"] for s in raw["steps"]] == [0]  # nothing to recover
    assert jobs["25"]["job.state"] == "FAILED" and jobs["25"]["job.succeeded"] is False
    assert "job.exit_code" not in jobs["25"]
    assert sp.parse_sacct(_text("sacct-22.05-ended.txt"))["25"]["job.exit_code"] == 3
    assert jobs["24"]["job.exit_code"] == 0 and jobs["24"]["job.succeeded"] is True
    assert jobs["26"]["job.signal"] == 9
    assert jobs["29"]["job.signal"] == 0  # 125 marks OUT_OF_MEMORY, not a signal
    assert jobs["30"]["job.cpu_eff"] == pytest.approx(
        sp.parse_sacct(_text("sacct-22.05-ended.txt"))["30"]["job.cpu_eff"], abs=0.5)


@pytest.mark.parametrize("name", ["sacct-23.02.json", "sacct-24.05.json"])
def test_sacct_json_later_layouts(name: str) -> None:
    """23.02 and 24.05 layouts (wrapped numbers, state lists, signal blocks) give the same
    facts."""
    jobs = sp.parse_sacct_json(_text(name))
    failed = jobs["4101"]
    assert (failed["job.state"], failed["job.exit_code"], failed["job.signal"]) == \
        ("FAILED", 3, 0)
    assert failed["job.gpus"] == 2 and failed["job.gpu_hours"] == pytest.approx(600 * 2 / 3600,
                                                                                abs=1e-3)
    assert failed["job.cpu_time"] == pytest.approx(1800.5 + 0.0, abs=1)
    assert failed["job.cpu_eff"] == pytest.approx(100 * 1800.5 / (600 * 4), abs=0.1)
    assert failed["job.mem_used"] == 8 << 30 and failed["job.mem_req"] == 16 << 30
    assert failed["job.mem_eff"] == 50.0 and failed["job.time_limit"] == 3600
    assert jobs["4102"]["job.exceeded"] is True and jobs["4102"]["job.state"] == "TIMEOUT"
    assert jobs["4103"]["job.diagnosis"] == "oom"
    assert jobs["4104_1"]["job.array_task"] == 1 and jobs["4104_1"]["job.succeeded"] is True
    assert jobs["4106"]["job.signal"] == 9 and jobs["4106"]["job.exit_code"] == 137
    if name.startswith("sacct-24"):
        assert failed["job.stdout"] == "/home/alice/train/train-4101.out"


@pytest.mark.parametrize("name", ["squeue-22.05-running.json", "squeue-23.02.json",
                                  "squeue-24.05.json"])
def test_squeue_json_layouts(name: str) -> None:
    """squeue --json of 22.05, 23.02 and 24.05: states, reasons, arrays and paths."""
    jobs = {str(r["job.id"]): r for r in sp.parse_squeue_json(_text(name))}
    if name.startswith("squeue-22"):
        parseable = {str(r["job.id"]): r for r in
                     sp.parse_squeue(_text("squeue-22.05-running.txt"))}
        for jid in ("24", "29", "31_1", "32", "33"):
            for fact in ("job.state", "job.reason", "job.stdout", "job.mem_req"):
                assert jobs[jid].get(fact) == parseable[jid].get(fact), (jid, fact)
        return
    running = jobs["5001"]
    assert running["job.state"] == "RUNNING" and running["job.restarts"] == 1
    assert running["job.gpus"] == 2 and running["job.time_limit"] == 7200
    assert running["job.stdout"] == "/home/alice/train/train-5001.out"
    assert jobs["5002"]["job.reason"] == "Priority"
    assert sorted(k for k in jobs if k.startswith("5003_")) == \
        ["5003_0", "5003_2", "5003_3", "5003_4"]
    assert jobs["5003_3"]["job.reason"] == "JobArrayTaskLimit"
    assert jobs["5003_3"]["job.stdout"] == "/home/alice/train/sweep-5003_3.out"
    assert jobs["5006"]["job.state"] == "HELD"
    assert jobs["5007"]["job.exit_code"] == 3 and jobs["5007"]["job.succeeded"] is False


def test_small_values() -> None:
    """Durations, sizes, states, exit codes, GPUs and placeholders in SLURM's spellings."""
    assert sp.duration("1-02:03:04") == 93784
    assert sp.duration("05:00") == 300 and sp.duration("00:00.004") == pytest.approx(0.004)
    assert sp.duration("UNLIMITED") is None and sp.duration("N/A") is None
    assert sp.memory("4G") == 4 << 30 and sp.memory("100Mn", nodes=2) == 200 << 20
    assert sp.memory("2Gc", cpus=4) == 8 << 30 and sp.memory("512") == 512 << 20
    assert sp.bytes_value("3208K") == 3208 << 10 and sp.bytes_value("0") == 0
    assert sp.normal_state("CANCELLED by 1000") == "CANCELLED"
    assert sp.normal_state("CANCELLED+") == "CANCELLED" and sp.normal_state("CD") == "COMPLETED"
    assert sp.normal_state("PENDING", "JobHeldAdmin") == "HELD"
    assert sp.normal_state("BOGUS") == "UNKNOWN"
    assert sp.exit_code("3:0") == (3, 0) and sp.exit_code("0:9") == (0, 9)
    assert sp.exit_code("0:125") == (None, 0)  # OUT_OF_MEMORY's marker: no code, no signal
    assert sp.gpus_from_tres("cpu=4,gres/gpu=2,gres/gpu:a100=2") == 2
    assert sp.gpus_from_gres("gres:gpu:a100:4", nodes=2) == 8
    assert sp.gpus_from_gres("gres/gpu", nodes=1) == 1
    assert sp.expand_tasks("0-6:2,9%3") == [0, 2, 4, 6, 9]
    facts = {"job.id": "7_3", "_job_id_raw": "12", "job.array_id": "7", "job.array_task": 3,
             "job.name": "sweep", "job.user": "alice", "job.node_list": "gpu01"}
    assert sp.expand_placeholders("%x/%A_%a-%j-%u-%N-%4a-%%.out", facts) == \
        "sweep/7_3-12-alice-gpu01-0003-%.out"
    assert sp.expand_placeholders("%t-%z", facts) == "%t-%z"
    assert sp.version("slurm 22.05.8\n") == (22, 5)
    assert sp.version("slurm-wlm 24.11.1") == (24, 11)


GARBAGE = [
    ("squeue", "this is not squeue output\n", "squeue line 1 has 0 fields"),
    ("squeue", "12\x1fonly\x1ftwo\n", "has 2 fields, not 27"),
    ("squeue", "x" + "\x1f" * 27 + "\n", "is not a number"),
    ("squeue", "\x1f".join(["7", "7_[1-x]"] + [""] * 25) + "\x1f\n", "not SLURM's form"),
    ("sacct", "garbage\n1|2\n", "no JobID/State column"),
    ("sacct", "JobID\x1fState\n12\x1fRUNNING\x1fextra\n", "has 3 fields, not 2"),
    ("sacct", "JobID\x1fState\nabc\x1fRUNNING\n", "is not SLURM's"),
    ("squeue-json", "{\"jobs\": [", "printed no JSON"),
    ("squeue-json", "[1, 2]", "printed no job list"),
    ("squeue-json", "{\"jobs\": [{\"name\": \"x\"}]}", "has no job_id"),
    ("squeue-json", "{\"jobs\": [7]}", "not an object"),
    ("sacct-json", "{\"jobs\": [], \"errors\": [{\"description\": \"Unable to query\"}]}",
     "reported an error: Unable to query"),
    ("sacct-json", "Invalid time specification (pos=0): 1795337646", "printed no JSON"),
    ("version", "no digits", "no SLURM version"),
]


@pytest.mark.parametrize(("what", "text", "message"), GARBAGE)
def test_garbage_is_one_clear_line(what: str, text: str, message: str) -> None:
    """Every kind of garbage raises SlurmParseError with one line that says what was wrong."""
    parse = {"squeue": sp.parse_squeue, "sacct": sp.parse_sacct,
             "squeue-json": sp.parse_squeue_json, "sacct-json": sp.parse_sacct_json,
             "version": sp.version}[what]
    with pytest.raises(sp.SlurmParseError) as info:
        parse(text)  # type: ignore[operator]
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_outputs_are_no_jobs() -> None:
    """No output is no jobs (nothing matched), never an error."""
    assert sp.parse_squeue("") == []
    assert sp.parse_sacct("") == {}
    assert sp.parse_sacct("JobID\x1fState\n") == {}
    assert sp.parse_squeue_json('{"jobs": []}') == []


def test_huge_array_range_is_refused() -> None:
    """A pending array record too large to expand is an error, not a memory blow-up."""
    with pytest.raises(sp.SlurmParseError, match="over 10 tasks"):
        sp.expand_tasks("0-1000000", limit=10)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: sp.memory("1..2G"), "size '1..2G' is not a number SLURM prints"),
    (lambda: sp.bytes_value("1..2K"), "size '1..2K' is not a number SLURM prints"),
    (lambda: sp.bytes_value("9" * 400), "is not a number SLURM prints"),
    (lambda: sp.timestamp("2024-13-45T99:00:00"), "time '2024-13-45T99:00:00' is not a date"),
])
def test_bad_values_are_slurm_parse_errors(call: object, message: str) -> None:
    """Sizes and dates SLURM would never print raise SlurmParseError, not ValueError."""
    with pytest.raises(sp.SlurmParseError, match=message):
        call()  # type: ignore[operator]


def _squeue(jid: str, **fields: str) -> str:
    values = dict.fromkeys(sp.SQUEUE_FIELDS, "")
    values.update({"JobID": jid, "JobArrayID": jid, "ArrayTaskID": "N/A", "Name": "t",
                   "State": "RUNNING", "Reason": "None", "NumNodes": "1", "NumCPUs": "1",
                   "MinMemory": "1G", "SubmitTime": "1795000000", "StartTime": "1795000010",
                   "TimeUsed": "1:00", "TimeLimit": "5:00", "TimeLeft": "4:00"})
    values.update(fields)
    return "".join(values[name] + sp.SEP for name in sp.SQUEUE_FIELDS) + "\n"


def test_one_bad_record_is_skipped_not_the_whole_output() -> None:
    """A record with an unreadable value is left out and named in `skipped`; the records
    around it are parsed; without a `skipped` list the same output raises that one line."""
    text = (_squeue("41") + _squeue("42", MinMemory="1..2G")
            + _squeue("43", SubmitTime="2024-13-45T99:00:00")
            + _squeue("44", JobArrayID="44_[1-x]", ArrayTaskID="1-x") + _squeue("45"))
    skipped: sp.Skipped = []
    jobs = sp.parse_squeue(text, skipped)
    assert [j["job.id"] for j in jobs] == ["41", "45"]
    # a pending array record is noted under its own id, the array's, as its tasks know it
    assert [jid for jid, _ in skipped] == ["42", "43", "44"]
    assert skipped[0][1] == ("squeue line 2: job '42' skipped: size '1..2G' is not a number "
                             "SLURM prints")
    with pytest.raises(sp.SlurmParseError, match="squeue line 2: job '42' skipped"):
        sp.parse_squeue(text)


def test_bad_sacct_and_json_records_are_skipped() -> None:
    """sacct -P and --json records (and steps) with unreadable values are skipped one by
    one, the rest kept (JSON of odd shapes is read where it can be)."""
    head = sp.SEP.join(("JobID", "State", "ReqMem", "MaxRSS", "Start"))
    rows = ["41\x1fCOMPLETED\x1f1G\x1f\x1f", "42\x1fCOMPLETED\x1f1..2G\x1f\x1f",
            "43\x1fCOMPLETED\x1f1G\x1f\x1f2024-13-45T99:00:00",
            "44\x1fCOMPLETED\x1f1G\x1f\x1f", "44.batch\x1fCOMPLETED\x1f\x1f1..5K\x1f"]
    skipped: sp.Skipped = []
    jobs = sp.parse_sacct("\n".join([head, *rows]) + "\n", skipped)
    assert sorted(jobs) == ["41"]
    assert [jid for jid, _ in skipped] == ["42", "43", "44"]
    assert skipped[2][1].startswith("sacct steps: job '44' skipped: size '1..5K'")
    doc = {"meta": {"plugin": {"data_parser": "v0.0.41"}}, "jobs": [
        {"job_id": 7, "state": {"current": ["COMPLETED"]}, "tres_alloc_str": "mem=1..2G"},
        {"job_id": 8, "job_state": ["RUNNING"], "tres_alloc_str": "cpu=1,mem=1G"},
        {"job_id": 9, "job_state": ["PENDING"], "array_job_id": 9,
         "array_task_string": "1-x"}]}
    skipped = []
    queued = sp.parse_squeue_json(json.dumps(doc), skipped)
    assert [j["job.id"] for j in queued] == ["8"] and [j for j, _ in skipped] == ["7", "9"]
    acct = {"meta": {"plugin": {"data_parser": "v0.0.41"}}, "jobs": [
        {"job_id": 7, "state": {"current": ["COMPLETED"]}, "time": []},
        {"job_id": 8, "state": "oops", "tres": {"allocated": [{"type": "mem", "count": "x"}]}},
        {"job_id": 9, "state": {"current": ["FAILED"]}, "steps": [{"tres": ["bad"]}],
         "tres": {"allocated": [{"type": "mem", "count": float("inf")}]}}]}
    skipped = []
    found = sp.parse_sacct_json(json.dumps(acct), skipped)
    assert sorted(found) == ["7", "8"] and [j for j, _ in skipped] == ["9"]


def test_array_tasks_default_output_as_sbatch_writes_it() -> None:
    """squeue 22.05 prints an array task's default output as slurm-<raw id>.out (seen on a
    real cluster) while sbatch writes slurm-%A_%a.out: the task gets the file that exists; a
    pattern given with -o (printed with its placeholders) is expanded as given; squeue
    --json's empty standard_output becomes the default too."""
    text = (_squeue("35", JobArrayID="33_0", ArrayJobID="33", ArrayTaskID="0", WorkDir="/w",
                    STDOUT="/w/slurm-35.out", STDERR="/w/slurm-35.out")
            + _squeue("36", JobArrayID="34_0", ArrayJobID="34", ArrayTaskID="0", WorkDir="/w",
                      STDOUT="/w/slurm-%j.out", STDERR="/w/slurm-%j.out")
            + _squeue("37", JobArrayID="37_[0-1]", ArrayJobID="37", ArrayTaskID="N/A",
                      State="PENDING", WorkDir="/w", STDOUT="/w/slurm-37.out",
                      STDERR="/w/slurm-37.out")
            + _squeue("38", WorkDir="/w", STDOUT="/w/slurm-38.out", STDERR="/w/slurm-38.out"))
    jobs = {str(j["job.id"]): j for j in sp.parse_squeue(text)}
    assert jobs["33_0"]["job.stdout"] == jobs["33_0"]["job.stderr"] == "/w/slurm-33_0.out"
    assert jobs["34_0"]["job.stdout"] == "/w/slurm-36.out"
    assert jobs["37_1"]["job.stdout"] == "/w/slurm-37_1.out"
    assert jobs["38"]["job.stdout"] == "/w/slurm-38.out"
    doc = {"jobs": [{"job_id": 35, "array_job_id": 33, "array_task_id": 0,
                     "job_state": "RUNNING", "current_working_directory": "/w",
                     "standard_output": "", "standard_error": ""},
                    {"job_id": 40, "job_state": "RUNNING", "current_working_directory": "/w",
                     "standard_output": "/w/%x.log", "standard_error": "", "name": "t"}]}
    queued = {str(j["job.id"]): j for j in sp.parse_squeue_json(json.dumps(doc))}
    assert queued["33_0"]["job.stdout"] == "/w/slurm-33_0.out"
    assert queued["40"]["job.stdout"] == queued["40"]["job.stderr"] == "/w/t.log"


# --- issue 13: seff's figures, squeue --json's run time (recorded on the dev clusters) --------

VERSIONS = ("22.05", "24.11")


def _seff(version: str, name: str) -> dict[str, str]:
    """The figures of one recorded seff report (the cluster's own seff, on the same job)."""
    import re

    text = _text(f"seff-{version}-i13-{name}.txt")
    pick = {"id": r"Job ID: (\d+)", "cpu_eff": r"CPU Efficiency: ([\d.]+)%",
            "cpu": r"CPU Utilized: (\S+)", "mem": r"Memory Utilized: ([\d.]+) MB",
            "mem_eff": r"Memory Efficiency: ([\d.]+)%", "state": r"State: (\w+)"}
    out = {}
    for key, pattern in pick.items():
        m = re.search(pattern, text)
        assert m is not None, (name, key)
        out[key] = m.group(1)
    return out


def _ids(version: str) -> dict[str, str]:
    """Recorded job ids by name (`timeout`, `cancel`, ...) from the sacct -P recording."""
    jobs = sp.parse_sacct(_text(f"sacct-{version}-i13.txt"))
    return {str(f["job.name"]).removeprefix("i13-"): jid for jid, f in jobs.items()}


def _accounting(version: str, form: str) -> dict[str, dict[str, object]]:
    return sp.parse_sacct_json(_text(f"sacct-{version}-i13.json")) if form == "json" else \
        sp.parse_sacct(_text(f"sacct-{version}-i13.txt"))


SEFF_JOBS = ("cpu", "multi", "percpu", "timeout", "cancel", "running")


@pytest.mark.parametrize("form", ["parseable", "json"])
@pytest.mark.parametrize("name", SEFF_JOBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_efficiency_equals_seffs_figures(version: str, form: str, name: str) -> None:
    """job.cpu_eff equals seff's report of the same real job to its two decimals, from sacct
    -P and sacct --json alike, on 22.05 and 24.11; so do job.mem_eff and job.mem_used (in
    seff's MiB) against seff 22.05, while seff 24.11 sums each task's own peak
    (TRESUsageInTot), at most MaxRSS x tasks: equal for one task, a hair under for four."""
    seff = _seff(version, name)
    job = _accounting(version, form)[seff["id"]]
    assert f"{job['job.cpu_eff']:.2f}" == seff["cpu_eff"]
    mem_eff, mem = job["job.mem_eff"], job["job.mem_used"]
    assert isinstance(mem_eff, float) and isinstance(mem, int)
    if version == "22.05" or name not in ("multi", "percpu"):
        assert f"{mem_eff:.2f}" == seff["mem_eff"]
        assert f"{mem / (1 << 20):.2f}" == seff["mem"]
    else:  # several tasks: MaxRSS x tasks >= the sum of the tasks' peaks
        assert 0 <= mem_eff - float(seff["mem_eff"]) < 0.05
        assert 0 <= mem / (1 << 20) - float(seff["mem"]) < 0.1


def test_cpu_efficiency_rounds_cpu_time_to_seconds_as_seff() -> None:
    """A 13 s job with 4.740 s of CPU: seff (and job.cpu_eff) count 5 whole CPU seconds,
    38.46%; the exact ratio, 36.46%, is job.cpu_eff_exact."""
    seff = _seff("22.05", "cpu")
    assert (seff["cpu"], seff["cpu_eff"]) == ("00:00:05", "38.46")
    jobs = sp.parse_sacct(_text("sacct-22.05-i13.txt"))
    job = jobs[seff["id"]]
    assert job["job.cpu_time"] == pytest.approx(4.74) and job["job.elapsed"] == 13
    assert job["job.cpu_eff"] == 38.46
    assert job["job.cpu_eff_exact"] == pytest.approx(36.4615, abs=1e-4)
    # under half a second of CPU is 0 seconds for seff, as for job.cpu_eff
    percpu = jobs[_seff("22.05", "percpu")["id"]]
    assert percpu["job.cpu_eff"] == 0.0 and percpu["job.cpu_eff_exact"] > 2


@pytest.mark.parametrize("form", ["parseable", "json"])
@pytest.mark.parametrize("version", VERSIONS)
def test_multi_task_step_memory_counts_every_task(version: str, form: str) -> None:
    """A real 4-task srun step on one node (each task holding 60 MiB): memory used is the
    step's MaxRSS (one task's peak) times its 4 tasks, as seff and reportseff count it, not
    times the node count (which gave under a fifth of seff's figure)."""
    job = _accounting(version, form)[_ids(version)["multi"]]
    assert job["job.nodes"] == 1 and job["job.cpus"] == 4
    rss, used, req = job["job.max_rss"], job["job.mem_used"], job["job.mem_req"]
    assert isinstance(rss, int) and isinstance(used, int) and isinstance(req, int)
    assert rss >= 60 << 20 and used == 4 * rss
    assert job["job.mem_eff"] == round(used / 1024 / (req / 1024) * 100, 2)
    assert 100 * rss * 1 / req < job["job.mem_eff"] / 3  # the old MaxRSS x nodes
    if version == "22.05":
        assert rss == 74868 << 10 and job["job.mem_eff"] == 73.11  # seff: 73.11%


@pytest.mark.parametrize("version", VERSIONS)
def test_squeue_json_running_jobs_get_elapsed_and_time_left(version: str) -> None:
    """squeue --json has no run time: a running job's elapsed time and time left are
    computed from its start time and the time of the call, and equal squeue's own TIME and
    TIME_LEFT columns (-O) of the same moment, on 22.05 and 24.11; ended jobs too."""
    for moment in ("running", "ended"):
        now = float(_text(f"squeue-{version}-i13-{moment}.now"))
        js = {str(r["job.id"]): r for r in
              sp.parse_squeue_json(_text(f"squeue-{version}-i13-{moment}.json"), now=now)}
        parseable = {str(r["job.id"]): r for r in
                     sp.parse_squeue(_text(f"squeue-{version}-i13-{moment}.txt"))}
        assert parseable
        for jid, want in parseable.items():
            got = js[jid]
            assert got["job.state"] == want["job.state"]
            assert got["job.elapsed"] == want["job.elapsed"], (moment, jid)
            assert got.get("job.time_left") == want.get("job.time_left"), (moment, jid)
    running = {str(r["job.id"]): r for r in sp.parse_squeue_json(
        _text(f"squeue-{version}-i13-running.json"),
        now=float(_text(f"squeue-{version}-i13-running.now")))}
    timeout = running[_ids(version)["timeout"]]  # -t 1, started 18 s before the call
    assert (timeout["job.state"], timeout["job.elapsed"], timeout["job.time_left"]) == \
        ("RUNNING", 18.0, 42.0)


@pytest.mark.parametrize("version", VERSIONS)
def test_squeue_json_timeout_and_cancel_carry_the_batch_shells_sigterm(version: str) -> None:
    """squeue --json (22.05 and 24.11) holds a SIGTERM exit status for a job that timed out or
    was cancelled, where sacct -P and --json say 0:0: the parsers report each as it is, and
    the probe takes accounting's (see test_slurm_probe)."""
    now = float(_text(f"squeue-{version}-i13-ended.now"))
    js = {str(r["job.id"]): r for r in
          sp.parse_squeue_json(_text(f"squeue-{version}-i13-ended.json"), now=now)}
    acct = sp.parse_sacct(_text(f"sacct-{version}-i13.txt"))
    ids = _ids(version)
    for name, state in (("timeout", "TIMEOUT"), ("cancel", "CANCELLED")):
        jid = ids[name]
        assert (js[jid]["job.state"], js[jid]["job.exit_code"], js[jid]["job.signal"]) == \
            (state, 143, 15)
        assert (acct[jid]["job.state"], acct[jid]["job.exit_code"], acct[jid]["job.signal"]) \
            == (state, 0, 0)
    if version == "24.11":  # its sacct --json gives exit codes right: the same 0:0
        jobs = sp.parse_sacct_json(_text("sacct-24.11-i13.json"))
        assert all((jobs[ids[n]]["job.exit_code"], jobs[ids[n]]["job.signal"]) == (0, 0)
                   for n in ("timeout", "cancel"))
