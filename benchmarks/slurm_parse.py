"""Benchmark: the SLURM probe on cluster-sized outputs, against bare baselines measured in the
same run.

1. Parsing. squeue output for 20,000 jobs (what the probe asks for: `-h -t all -O <27 fields>`,
   \\x1f separated), generated with the variety of a real cluster so that no cache can absorb
   it: 300 users with their own request shapes (CPUs, memory in several spellings, GPU types
   and counts, nodes), distinct job names, node lists (`gpu[012-015]`), submit/start/end times,
   elapsed and remaining times per job, time limits, restart counts, working folders and
   output paths with %x/%j/%A/%a placeholders; running, pending (with reasons), held,
   completing and ended jobs; array tasks and pending array records (`X_[0-31%4]`, expanded).
   Measured: `parse_squeue` plus the probe's facts for a ruleset watching every job by id,
   against `line.split(SEP)` of every line (the least any parser of this format does) and
   `json.loads` of the same records as JSON (what a JSON-reading probe pays before building a
   single fact). Target: parse + facts under 200 ms. Also: `sacct -P` for 20,000 jobs and
   40,000 steps with seff's figures.

2. Whole probe ticks. `SlurmProbe.collect` through the real path (subprocess, parsing,
   matching, accounting, facts) with fake `squeue` and `sacct` executables on PATH that print
   the generated outputs (`cat` of a file), for rulesets watching 5,000 and 20,000 ids: a
   steady tick (every job in squeue, no sacct call) and a tick where a tenth of the jobs has
   left the queue (one squeue call, sacct -j for those, split only when the list would pass
   the argument limit). Baseline: running the same fake squeue and reading its output. Before
   open ids were indexed, a steady tick took 2.2 s at 5,000 ids and 40 s at 20,000 (the
   scan was quadratic), and 20,000 ids failed outright (one argument over 128 KiB).

Takes under a minute. Run: python benchmarks/slurm_parse.py
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rulesmon.config.loader import load_text
from rulesmon.probes import slurm_parse as sp
from rulesmon.probes.base import TickContext
from rulesmon.probes.slurm import SlurmProbe, _Tracked

JOBS = 20_000
TARGET_MS = 200.0
REPEAT = 5
T0 = 1_795_000_000

_PARTITIONS = ["gpu", "gpu-a100", "gpu-h100", "cpu", "long", "debug", "bigmem"]
_REASONS = ["Priority", "Resources", "QOSMaxJobsPerUserLimit", "ReqNodeNotAvail",
            "AssocGrpGRES", "Dependency", "JobArrayTaskLimit", "BeginTime"]
_TOOLS = ["train", "eval", "embed", "sweep", "ft", "preproc", "infer", "bench"]
_LIMITS = ["30:00", "1:00:00", "4:00:00", "12:00:00", "1-00:00:00", "2-00:00:00",
           "7-00:00:00"]


def _clock(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}" if days else (
        f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}")


def _limit_seconds(text: str) -> int:
    value = sp.duration(text)
    assert value is not None
    return int(value)


def _shapes(rng: random.Random, user: int) -> list[dict[str, str]]:
    """A user's few request shapes (users resubmit the same kinds of job)."""
    out = []
    for _ in range(rng.randint(2, 5)):
        nodes = rng.choice([1] * 8 + [2, 4, 8])
        cpus = rng.choice([1, 2, 4, 8, 16, 32, 48, 64]) * nodes
        gpus = rng.choice([0, 0, 1, 2, 4, 8])
        kind = rng.choice(["a100", "h100", "v100", ""])
        mem_gb = rng.choice([4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 500])
        mem = rng.choice([f"{mem_gb}G", f"{mem_gb * 1024}M", f"{max(1, mem_gb // cpus)}Gc"])
        tres = f"cpu={cpus},mem={mem_gb}G,node={nodes},billing={cpus + 4 * gpus}"
        if gpus:
            tres += f",gres/gpu={gpus * nodes}"
            if kind:
                tres += f",gres/gpu:{kind}={gpus * nodes}"
        out.append({"NumNodes": str(nodes), "NumCPUs": str(cpus), "tres-alloc": tres,
                    "tres-per-node": (f"gres:gpu:{kind}:{gpus}" if kind else f"gres:gpu:{gpus}")
                    if gpus else "N/A", "MinMemory": mem,
                    "Partition": rng.choice(_PARTITIONS), "Account": f"proj{user % 40:02d}",
                    "QOS": rng.choice(["normal", "normal", "high", "low"]),
                    "TimeLimit": rng.choice(_LIMITS)})
    return out


def squeue_records(rng: random.Random, jobs: int, base_id: int = 1_000_000,
                   pending_arrays: bool = True) -> list[dict[str, str]]:
    """`jobs` records with a real cluster's variety (ids base_id, base_id + 1, ...)."""
    users = [f"u{n:03d}" for n in range(300)]
    shapes = {u: _shapes(rng, n) for n, u in enumerate(users)}
    records: list[dict[str, str]] = []
    i = 0
    while len(records) < jobs:
        jid = str(base_id + i)
        user = rng.choice(users)
        shape = rng.choice(shapes[user])
        state = rng.choices(["RUNNING", "PENDING", "COMPLETING", "COMPLETED", "FAILED",
                             "CANCELLED", "TIMEOUT"], [60, 28, 2, 6, 2, 1, 1])[0]
        reason = "None"
        if state == "PENDING":
            reason = rng.choices([*_REASONS, "JobHeldUser"], [30, 25, 10, 5, 5, 10, 8, 4, 3])[0]
        elif state == "FAILED":
            reason = "NonZeroExitCode"
        limit = _limit_seconds(shape["TimeLimit"])
        submit = T0 - rng.randint(60, 5 * 86400)
        started = state != "PENDING"
        start = submit + rng.randint(0, 7200) if started else 0
        used = min(limit, rng.randint(1, max(2, T0 - start))) if started else 0
        end = start + used if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else (
            start + limit if started else 0)
        tool = rng.choice(_TOOLS)
        rank, lr = rng.choice(["r8", "r16", "r32", "base"]), rng.choice(["1e-4", "3e-5", "1e-5"])
        name = f"{tool}-{rank}-lr{lr}-{rng.randint(0, 999)}"
        array = rng.random() < 0.15
        nodes = int(shape["NumNodes"])
        first = rng.randint(0, 400)
        node_list = "" if not started else (
            f"gpu{first:03d}" if nodes == 1 else f"gpu[{first:03d}-{first + nodes - 1:03d}]")
        workdir = f"/scratch/{user}/{tool}/{rng.randint(0, 60)}"
        out_tmpl = rng.choice(["%x-%j.out", "logs/%x_%j.log", "slurm-%j.out",
                               "logs/%x-%A_%a.out" if array else "%x.%j.out"])
        values = {
            "JobID": jid, "JobArrayID": jid, "ArrayJobID": jid, "ArrayTaskID": "N/A",
            "Name": name, "UserName": user, "State": state, "Reason": reason,
            "NodeList": node_list, "SubmitTime": str(submit),
            "StartTime": str(start) if started else "0", "EndTime": str(end) if end else "0",
            "TimeUsed": _clock(used), "TimeLeft": _clock(max(0, limit - used)),
            "RestartCnt": str(rng.choices([0, 1, 2], [90, 8, 2])[0]), "WorkDir": workdir,
            "STDOUT": f"{workdir}/{out_tmpl}", "STDERR": f"{workdir}/{out_tmpl}"
            if rng.random() < 0.7 else f"{workdir}/{out_tmpl.rsplit('.', 1)[0]}.err",
            **shape,
        }
        if array:
            parent = str(base_id + i - rng.randint(0, min(i, 50)))
            task = rng.randint(0, 255)
            values.update({"JobArrayID": f"{parent}_{task}", "ArrayJobID": parent,
                           "ArrayTaskID": str(task)})
            if state == "PENDING" and pending_arrays and rng.random() < 0.1:
                values.update({"JobArrayID": f"{jid}_[0-{rng.randint(1, 31)}%4]",
                               "ArrayJobID": jid, "ArrayTaskID": "N/A",
                               "Reason": "JobArrayTaskLimit"})
        records.append(values)
        i += 1
    return records


def squeue_text(records: list[dict[str, str]]) -> str:
    return "".join("".join(r[f] + sp.SEP for f in sp.SQUEUE_FIELDS) + "\n" for r in records)


def sacct_text(ids: list[str], rng: random.Random) -> str:
    """sacct -P for these jobs: the job line and two steps each, varied figures."""
    lines = [sp.SEP.join(sp.SACCT_FIELDS)]
    empty = dict.fromkeys(sp.SACCT_FIELDS, "")
    for jid in ids:
        cpus = rng.choice([1, 2, 4, 8, 16, 32])
        elapsed = rng.randint(30, 86400)
        failed = rng.random() < 0.2
        job = {**empty, "JobID": jid, "JobIDRaw": jid, "JobName": f"train-{rng.randint(0, 999)}",
               "User": f"u{rng.randint(0, 299):03d}", "State": "FAILED" if failed else "COMPLETED",
               "ExitCode": f"{rng.choice([1, 2, 3, 137])}:0" if failed else "0:0",
               "Submit": str(T0 - elapsed - 600), "Start": str(T0 - elapsed), "End": str(T0),
               "ElapsedRaw": str(elapsed), "TimelimitRaw": str(rng.choice([60, 240, 1440])),
               "NNodes": "1", "NodeList": f"gpu{rng.randint(0, 400):03d}",
               "AllocCPUS": str(cpus), "ReqMem": rng.choice([f"{cpus * 4}G", "64000M", "4Gc"]),
               "AllocTRES": f"cpu={cpus},mem={cpus * 4}G,node=1,gres/gpu={rng.choice([0, 1, 2])}",
               "WorkDir": f"/scratch/u/{rng.randint(0, 60)}"}
        lines.append(sp.SEP.join(job[f] for f in sp.SACCT_FIELDS))
        for step in ("batch", "0"):
            cpu = rng.randint(1, elapsed * cpus)
            row = {**empty, "JobID": f"{jid}.{step}", "JobIDRaw": f"{jid}.{step}",
                   "State": job["State"], "TotalCPU": _clock(cpu),
                   "UserCPU": _clock(cpu * 9 // 10), "SystemCPU": _clock(cpu // 10),
                   "MaxRSS": f"{rng.randint(1000, 60_000_000)}K"}
            lines.append(sp.SEP.join(row[f] for f in sp.SACCT_FIELDS))
    return "\n".join(lines) + "\n"


def best(fn: Callable[[], Any], repeat: int = REPEAT) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times), times


def _ids_ruleset(ids: list[str]) -> Any:
    return load_text("version: 1\nname: bench\njobs:\n  train:\n    slurm: {ids: ["
                     + ", ".join(ids) + "], min_interval: 0s}\n", base=Path()).ruleset


def parsing() -> None:
    rng = random.Random(6)
    records = squeue_records(rng, JOBS)
    text = squeue_text(records)
    parsed = sp.parse_squeue(text)
    as_json = json.dumps({"jobs": records})
    ids = sorted({str(f.get("_job_id_raw") or f["job.id"]) for f in parsed}
                 | {str(f["job.array_id"]) for f in parsed if f.get("job.array_id")})
    probe = SlurmProbe(_ids_ruleset(ids), Path())
    watch = probe._watches[0]

    def split() -> None:
        for line in text.split("\n"):
            line.split(sp.SEP)

    def parse_and_facts() -> None:
        sp.duration.cache_clear()  # every run starts as cold as the first tick
        sp.memory.cache_clear()
        watch.jobs.clear()
        with sp.no_gc():  # as SlurmProbe.collect does for the whole tick
            for f in sp.parse_squeue(text):
                if watch.matches(f):
                    # seen now: the tick that makes the squeue call
                    watch.jobs[str(f["job.id"])] = _Tracked(str(f["job.id"]), f, 10.0, True)
            probe._build_facts(10.0)

    split_ms, _ = best(split)
    json_ms, _ = best(lambda: json.loads(as_json))
    parse_ms, _ = best(lambda: sp.parse_squeue(text))
    total_ms, runs = best(parse_and_facts)
    sacct = sacct_text([str(2_000_000 + i) for i in range(JOBS)], random.Random(7))
    sacct_ms, _ = best(lambda: sp.parse_sacct(sacct))
    distinct = {f: len({r[f] for r in records}) for f in ("tres-alloc", "MinMemory",
                                                           "TimeUsed", "Name", "NodeList")}
    print(f"squeue text: {len(text) / 1e6:.1f} MB, {len(records):,} records, {len(parsed):,} "
          f"jobs after expanding pending arrays; distinct values: "
          + ", ".join(f"{k} {v:,}" for k, v in distinct.items()))
    print(f"  baseline split:        {split_ms:7.1f} ms")
    print(f"  baseline json.loads:   {json_ms:7.1f} ms (same records as JSON)")
    print(f"  parse_squeue:          {parse_ms:7.1f} ms")
    print(f"  parse + probe facts:   {total_ms:7.1f} ms (median {statistics.median(runs):.1f}) "
          f"= {total_ms / split_ms:.1f}x split, {total_ms / json_ms:.1f}x json.loads")
    print(f"  sacct -P, {JOBS:,} jobs + {2 * JOBS:,} steps, with seff figures: {sacct_ms:.1f} ms")
    verdict = "meets" if total_ms < TARGET_MS else "MISSES"
    print(f"{verdict} the target: parse + facts {total_ms:.0f} ms (target < {TARGET_MS:.0f} ms)")


FAKE = """#!/bin/sh
for a in "$@"; do [ "$a" = --version ] && {{ echo "slurm 22.05.8"; exit 0; }}; done
exec cat "{folder}/$(basename "$0").out"
"""


def ticks(n: int, folder: Path) -> None:
    """Whole probe ticks watching `n` ids, through fake squeue/sacct executables."""
    rng = random.Random(n)
    records = squeue_records(rng, n, pending_arrays=False)
    ids = [r["JobID"] if r["ArrayTaskID"] == "N/A" else r["JobArrayID"] for r in records]
    steady = squeue_text(records)
    leaving = set(rng.sample(range(n), n // 10))
    ending = squeue_text([r for i, r in enumerate(records) if i not in leaving])
    gone = [ids[i] for i in sorted(leaving)]
    (folder / "sacct.out").write_text(sacct_text(gone, rng), encoding="utf-8")
    rs = _ids_ruleset(ids)
    probe = SlurmProbe(rs, folder)

    def collect(now: float) -> dict[str, Any]:
        return probe.collect(TickContext(now=now, ruleset=rs, base_dir=folder))

    (folder / "squeue.out").write_text(steady, encoding="utf-8")
    t0 = time.perf_counter()
    collect(1.0)
    first_ms = (time.perf_counter() - t0) * 1000
    now = [2.0]

    def steady_tick() -> None:
        collect(now[0])
        now[0] += 1

    steady_ms, runs = best(steady_tick)
    before = dict(probe.calls)
    (folder / "squeue.out").write_text(ending, encoding="utf-8")
    t0 = time.perf_counter()
    facts = collect(now[0] + 1)
    ending_ms = (time.perf_counter() - t0) * 1000
    calls = {k: probe.calls[k] - before[k] for k in before}
    resolved = sum(1 for k, f in facts.items() if k and f.get("job.accounted") == "done")
    (folder / "squeue.out").write_text(steady, encoding="utf-8")

    def bare() -> None:
        out = subprocess.run([str(folder / "squeue"), "-h"], capture_output=True, check=True)
        out.stdout.decode()

    bare_ms, _ = best(bare)
    print(f"probe tick, {n:,} watched ids ({len(steady) / 1e6:.1f} MB of squeue output):")
    print(f"  baseline: run the fake squeue, read its output: {bare_ms:7.1f} ms")
    print(f"  first tick (format detection, every job new):  {first_ms:7.1f} ms")
    print(f"  steady tick (one squeue call, no sacct):       {steady_ms:7.1f} ms "
          f"(median {statistics.median(runs):.1f}) = {steady_ms / bare_ms:.1f}x the baseline")
    print(f"  tick where {len(gone):,} jobs left the queue:       {ending_ms:7.1f} ms: "
          f"{calls['squeue']} squeue call, {calls['sacct']} sacct call(s), {resolved:,} "
          "resolved from accounting")


def main() -> None:
    parsing()
    with tempfile.TemporaryDirectory(prefix="rulesmon-bench-") as tmp:
        folder = Path(tmp)
        for tool in ("squeue", "sacct"):
            path = folder / tool
            path.write_text(FAKE.format(folder=folder), encoding="utf-8")
            path.chmod(0o755)
        old_path = os.environ.get("PATH", "")
        os.environ["PATH"] = f"{folder}{os.pathsep}{old_path}"
        os.environ.pop("RULESMON_SLURM_FORMAT", None)
        try:
            for n in (5_000, 20_000):
                ticks(n, folder)
        finally:
            os.environ["PATH"] = old_path
    sys.stdout.flush()


if __name__ == "__main__":
    main()
