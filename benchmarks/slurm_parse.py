"""Benchmark: squeue output for 20,000 jobs parsed into facts, against bare baselines on the same
text measured in the same run.

The text is what the slurm probe asks squeue for (`-h -t all -O <27 fields>`, \\x1f separated),
generated with a realistic mix: running jobs with GPUs, pending jobs with reasons, held jobs,
array tasks and output paths with %x/%j placeholders. In the same run:

- split: `line.split(SEP)` for every line (the least any parser of this format must do);
- json: `json.loads` of the same records as `squeue --json`-like objects (what a JSON-reading
  probe would pay before building a single fact);
- rulesmon: `parse_squeue` (facts per job, placeholders expanded), then the probe's `_facts`
  for a ruleset watching all 20,000 by id (instance keys, job.key/source, cached clocks).

Target: parsing + facts under 200 ms. Also reported: the same for a 20,000-job sacct -P text
(job line + 2 steps each, seff figures). Takes a few seconds.
Run: python benchmarks/slurm_parse.py
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rulesmon.config.loader import load_text
from rulesmon.probes import slurm_parse as sp
from rulesmon.probes.slurm import SlurmProbe, _Tracked

JOBS = 20_000
TARGET_MS = 200.0
REPEAT = 5


def squeue_text(rng: random.Random) -> tuple[str, list[dict[str, str]]]:
    lines: list[str] = []
    records: list[dict[str, str]] = []
    for i in range(JOBS):
        jid = str(1_000_000 + i)
        state = rng.choice(["RUNNING"] * 6 + ["PENDING"] * 3 + ["COMPLETING"])
        array = i % 10 == 0
        values = {
            "JobID": jid, "JobArrayID": f"{jid}_{i % 7}" if array else jid,
            "ArrayJobID": jid, "ArrayTaskID": str(i % 7) if array else "N/A",
            "Name": f"train-{i % 97}", "UserName": f"user{i % 50}", "Partition": "gpu",
            "Account": f"proj{i % 9}", "QOS": "normal", "State": state,
            "Reason": "None" if state != "PENDING" else rng.choice(
                ["Priority", "Resources", "QOSMaxJobsPerUserLimit", "JobHeldUser"]),
            "NumNodes": "1", "NodeList": f"gpu{i % 300:03d}" if state != "PENDING" else "",
            "NumCPUs": "8", "tres-alloc": "cpu=8,mem=64G,node=1,billing=8,gres/gpu=2",
            "tres-per-node": "gres:gpu:2", "MinMemory": "64G", "SubmitTime": "1795000000",
            "StartTime": "1795000100", "EndTime": "1795086500", "TimeUsed": "3:12:45",
            "TimeLimit": "1-00:00:00", "TimeLeft": "20:47:15", "RestartCnt": str(i % 3),
            "WorkDir": f"/scratch/user{i % 50}/runs/{i % 97}",
            "STDOUT": f"/scratch/user{i % 50}/runs/{i % 97}/%x-%j.out",
            "STDERR": f"/scratch/user{i % 50}/runs/{i % 97}/%x-%j.err",
        }
        records.append(values)
        lines.append("".join(values[f] + sp.SEP for f in sp.SQUEUE_FIELDS))
    return "\n".join(lines) + "\n", records


def sacct_text() -> str:
    lines = [sp.SEP.join(sp.SACCT_FIELDS)]
    empty = dict.fromkeys(sp.SACCT_FIELDS, "")
    for i in range(JOBS):
        jid = str(1_000_000 + i)
        job = {**empty, "JobID": jid, "JobIDRaw": jid, "JobName": "train", "User": "alice",
               "State": "FAILED" if i % 5 == 0 else "COMPLETED",
               "ExitCode": "1:0" if i % 5 == 0 else "0:0", "Submit": "1795000000",
               "Start": "1795000100", "End": "1795003700", "ElapsedRaw": "3600",
               "TimelimitRaw": "1440", "NNodes": "1", "NodeList": "gpu001", "AllocCPUS": "8",
               "ReqMem": "64G", "AllocTRES": "cpu=8,mem=64G,node=1,gres/gpu=2"}
        lines.append(sp.SEP.join(job[f] for f in sp.SACCT_FIELDS))
        for step, rss in (("batch", "1024K"), ("0", "48G")):
            row = {**empty, "JobID": f"{jid}.{step}", "JobIDRaw": f"{jid}.{step}",
                   "State": "COMPLETED", "TotalCPU": "5:20:00", "UserCPU": "5:00:00",
                   "SystemCPU": "20:00", "MaxRSS": rss}
            lines.append(sp.SEP.join(row[f] for f in sp.SACCT_FIELDS))
    return "\n".join(lines) + "\n"


def best(fn: Callable[[], Any]) -> tuple[float, list[float]]:
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times), times


def main() -> None:
    rng = random.Random(6)
    text, records = squeue_text(rng)
    as_json = json.dumps({"jobs": records})
    ids = [str(1_000_000 + i) for i in range(JOBS)]
    rs = load_text("version: 1\nname: bench\njobs:\n  train:\n    slurm: {ids: ["
                   + ", ".join(ids) + "]}\n", base=Path()).ruleset
    probe = SlurmProbe(rs, Path())
    watch = probe._watches[0]

    def split() -> None:
        for line in text.split("\n"):
            line.split(sp.SEP)

    def parse_and_facts() -> None:
        watch.jobs.clear()
        for f in sp.parse_squeue(text):
            if watch.matches(f):
                # seen now: the tick that makes the squeue call
                watch.jobs[str(f["job.id"])] = _Tracked(str(f["job.id"]), f, 10.0, True)
        probe._facts(10.0)

    split_ms, _ = best(split)
    json_ms, _ = best(lambda: json.loads(as_json))
    parse_ms, _ = best(lambda: sp.parse_squeue(text))
    total_ms, runs = best(parse_and_facts)
    sacct = sacct_text()
    sacct_ms, _ = best(lambda: sp.parse_sacct(sacct))
    print(f"squeue text: {len(text) / 1e6:.1f} MB, {JOBS:,} jobs")
    print(f"  baseline split:        {split_ms:7.1f} ms")
    print(f"  baseline json.loads:   {json_ms:7.1f} ms (same records as JSON)")
    print(f"  parse_squeue:          {parse_ms:7.1f} ms")
    print(f"  parse + probe facts:   {total_ms:7.1f} ms (median {statistics.median(runs):.1f}) "
          f"= {total_ms / split_ms:.1f}x split, {total_ms / json_ms:.1f}x json.loads")
    print(f"  sacct -P, {JOBS:,} jobs + {2 * JOBS:,} steps, with seff figures: {sacct_ms:.1f} ms")
    verdict = "meets" if total_ms < TARGET_MS else "MISSES"
    print(f"{verdict} the target: parse + facts {total_ms:.0f} ms (target < {TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    main()
