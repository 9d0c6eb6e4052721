"""`rulesmon history`, `stats` and `show` rendered as a table (rich), JSON or CSV.

The JSON is exactly what rulesmon.history.queries returns (documented, stable); the CSV is the
same jobs flattened to one row each; the tables are for people and may change.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from .. import jsonout
from ..config.units import format_seconds as _dur
from ..config.units import format_size as _size
from .queries import column_names, flat

FORMATS = ("table", "json", "csv")


def dump_json(value: Any, out: TextIO) -> None:
    out.write(jsonout.dumps(value, indent=2, ensure_ascii=False) + "\n")


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _console(out: TextIO) -> Any:
    from rich.console import Console

    return Console(file=out, highlight=False, soft_wrap=False)


# --- history ------------------------------------------------------------------------------

_STYLE = {"success": "green", "failed": "red", "error": "red", "timeout": "yellow",
          "cancelled": "magenta", "running": "cyan", "pending": "blue"}


def history(jobs: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        dump_json(jobs, out)
        return
    if fmt == "csv":
        write_csv([flat(j) for j in jobs], column_names(jobs), out)
        return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = _console(out)
    if not jobs:
        console.print("No jobs recorded match.")
        return
    cells = [{
        "ID": job["id"][:8], "JOB": _label(job), "SOURCE": job["source"],
        "STATUS": job["status"], "STARTED": _local(job["start_time"] or job["first_seen"],
                                                   short=True),
        "DURATION": _dur(job["duration_seconds"]),
        "CPU": _dur(job["resource_usage"]["cpu_total_seconds"]),
        "MEM": _mb(job["resource_usage"]["memory_peak_mb"]),
        "ERROR": _first_line(job["error"]),
    } for job in jobs]
    widths = _history_widths(cells, console.width)
    table = Table(title=f"Job history ({len(jobs)} job{'s' if len(jobs) != 1 else ''}, "
                  "newest first)", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0)
    for name, width in widths.items():
        table.add_column(name, no_wrap=True, overflow="ellipsis", width=width,
                         justify="right" if name in _RIGHT else "left")
    for row in cells:
        table.add_row(*(Text(row[name], style=_STYLE.get(row[name], "") if name == "STATUS"
                             else "red" if name == "ERROR" else "") for name in widths))
    console.print(table)


#: The history table's columns in order. The job's figures are never cut: the free text
#: (the job's name, then its error) takes what is left, and when even that does not fit the
#: source, then the error, then the start time give way.
_COLUMNS = ("ID", "JOB", "SOURCE", "STATUS", "STARTED", "DURATION", "CPU", "MEM", "ERROR")
_RIGHT = ("DURATION", "CPU", "MEM")
_LAYOUTS = ((), ("SOURCE",), ("SOURCE", "ERROR"), ("SOURCE", "ERROR", "STARTED"))
_JOB_MIN, _ERROR_MIN, _JOB_FIRST, _ERROR_WANT = 12, 10, 24, 40


def _history_widths(cells: Sequence[Mapping[str, str]], width: int) -> dict[str, int]:
    """Column widths that fit `width`: the fixed columns at their content's width, then the
    job's name up to 24 characters, the error with what remains, then the name up to its
    full length. The source is shown when the name and 40 characters of error fit beside
    it; otherwise the first layout of `_LAYOUTS` that leaves the name 12 characters and the
    error 10 is used. The name shrinks below that only when nothing else is left to drop."""
    natural = {name: max(len(name), *(len(row[name]) for row in cells)) for name in _COLUMNS}
    if not any(row["ERROR"] for row in cells):
        natural["ERROR"] = 0
    job_min = min(natural["JOB"], _JOB_MIN)
    error_min = min(natural["ERROR"], _ERROR_MIN)
    names: list[str] = []
    free = 0
    for dropped in _LAYOUTS:
        names = [n for n in _COLUMNS if n not in dropped and (n != "ERROR" or natural[n])]
        fixed = sum(natural[n] for n in names if n not in ("JOB", "ERROR"))
        free = width - fixed - (len(names) - 1)  # one space between columns
        if not dropped:  # the source is shown only when the name and error need no room
            need = min(natural["JOB"], _JOB_FIRST) + min(natural["ERROR"], _ERROR_WANT)
        else:
            need = job_min + (error_min if "ERROR" in names else 0)
        if free >= need:
            break
    error = 0
    if "ERROR" in names:
        job = min(natural["JOB"], _JOB_FIRST, free - error_min)
        error = min(natural["ERROR"], free - job)
    job = max(4, min(natural["JOB"], free - error))
    return {n: job if n == "JOB" else error if n == "ERROR" else natural[n] for n in names}


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]


def _label(job: Mapping[str, Any]) -> str:
    """What a person calls the job: the instance key for watched jobs, tool and script (or
    the command) for tracked ones."""
    if job["source"] in ("track", "command", "celery"):
        tool, what = job["tool"] or "", str(job["script"] or job["name"] or "")
        if what.startswith(tool) or Path(what.split(" ", 1)[0]).name.startswith(tool):
            return what or str(job["instance"])
        return f"{tool} {what}".strip() or str(job["instance"])
    return str(job["instance"])


# --- stats --------------------------------------------------------------------------------


def stats(summary: dict[str, Any], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        dump_json(summary, out)
        return
    groups = [(group, key, value) for group in ("source", "tool", "partition", "resource")
              for key, value in summary[f"by_{group}"].items()]
    if fmt == "csv":
        notes = summary["notifications"]
        rows = [{"group": "all", "key": "", **_group_fields(summary, "total_jobs"),
                 "notifications": notes["total"]}]
        rows += [{"group": g, "key": k, **_group_fields(v, "jobs")} for g, k, v in groups]
        rows += [{"group": "target", "key": target, "notifications": sum(
                      n for k, n in counts.items() if k != "failed_attempts"),
                  **{f"notifications_{k}": n for k, n in counts.items()}}
                 for target, counts in notes["by_target"].items()]
        write_csv(rows, _STATS_CSV, out)
        return
    from rich import box
    from rich.table import Table

    console = _console(out)
    rate = summary["success_rate"]
    lines = [
        "Job statistics",
        "",
        "Overall:",
        f"  Total jobs:     {summary['total_jobs']} ({summary['finished']} finished, "
        f"{summary['active']} running or pending)",
        f"  Successful:     {summary['successful']}",
        f"  Failed:         {summary['failed']}"
        + (f" ({_by_status(summary['by_status'])})" if summary["failed"] else ""),
        f"  Success rate:   {'-' if rate is None else f'{rate:.1f}%'}",
        "",
        "Resource usage:",
        f"  Total CPU time: {_dur(summary['total_cpu_time_seconds'])}",
        f"  Total duration: {_dur(summary['total_duration_seconds'])}",
        f"  Mean duration:  {_dur(summary['average_duration_seconds'])}",
        f"  Longest:        {_dur(summary['max_duration_seconds'])}",
        f"  Peak memory:    {_mb(summary['memory_peak_max_mb'])}",
    ]
    if summary["gpu_hours"]:
        lines.append(f"  GPU hours:      {summary['gpu_hours']:.2f}")
    console.print("\n".join(lines), markup=False, soft_wrap=True)
    for group in ("source", "tool", "partition", "resource"):
        entries = summary[f"by_{group}"]
        if not entries or (group == "tool" and list(entries) == [""]):
            continue
        table = Table(title=f"By {group}", title_justify="left", header_style="bold",
                      box=box.SIMPLE_HEAD)
        for name in (group.upper(), "JOBS", "OK", "FAILED", "RATE", "CPU TIME", "DURATION",
                     "MEAN"):
            table.add_column(name, justify="left" if name == group.upper() else "right")
        for key, v in entries.items():
            table.add_row(key or "-", str(v["jobs"]), str(v["successful"]), str(v["failed"]),
                          "-" if v["success_rate"] is None else f"{v['success_rate']:.1f}%",
                          _dur(v["total_cpu_time_seconds"]), _dur(v["total_duration_seconds"]),
                          _dur(v["average_duration_seconds"]))
        console.print()
        console.print(table)
    notes = summary["notifications"]
    if notes["total"]:
        console.print()
        table = Table(title="Notifications", title_justify="left", header_style="bold",
                      box=box.SIMPLE_HEAD)
        for name in ("TARGET", "DELIVERED", "OWED", "FAILED ATTEMPTS", "OTHER"):
            table.add_column(name, justify="left" if name == "TARGET" else "right")
        for target, counts in notes["by_target"].items():
            other = sum(v for k, v in counts.items()
                        if k not in ("delivered", "owed", "failed_attempts"))
            table.add_row(target, str(counts.get("delivered", 0)), str(counts.get("owed", 0)),
                          str(counts.get("failed_attempts", 0)), str(other))
        console.print(table)


_GROUP_CSV = ("finished", "active", "successful", "failed", "success_rate",
              "total_cpu_time_seconds", "total_duration_seconds", "average_duration_seconds",
              "max_duration_seconds", "memory_peak_max_mb", "gpu_hours")
#: One row for everything, one per group, one per notification target (`group` = target,
#: with its counts per delivery status and its failed attempts).
_STATS_CSV = ("group", "key", "jobs", *_GROUP_CSV, "notifications",
              "notifications_delivered", "notifications_owed", "notifications_dropped",
              "notifications_suppressed", "notifications_summarised",
              "notifications_failed_attempts")


def _group_fields(v: Mapping[str, Any], jobs_key: str) -> dict[str, Any]:
    return {"jobs": v[jobs_key], **{k: v[k] for k in _GROUP_CSV}}


def _by_status(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items()
                     if s in ("failed", "timeout", "cancelled", "error"))


# --- show ---------------------------------------------------------------------------------


def show(job: dict[str, Any], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        dump_json(job, out)
        return
    if fmt == "csv":
        write_csv([flat(job)], column_names([job]), out)
        return
    console = _console(out)
    console.print("\n".join(_show_lines(job)), markup=False, highlight=False, soft_wrap=True)


def _show_lines(job: Mapping[str, Any]) -> list[str]:
    usage, eff = job["resource_usage"], job["efficiency"]
    code = job["returncode"]
    state = job["state"] or job["status"].upper()
    exit_text = f" (exit code {code})" if code is not None else ""
    if job["signal"]:
        exit_text += f", signal {job['signal']}"
    lines = [f"Job {job['id']}", "", "Basic information:",
             f"  Job:          {job['instance']}" + (f" (id {job['job_id']})"
                                                      if job["job_id"] else "")]
    for label, key in (("Name", "name"), ("Tool", "tool"), ("Script", "script"),
                       ("Source", "source"), ("Ruleset", "ruleset"), ("User", "user"),
                       ("Partition", "partition"), ("Resource", "resource"),
                       ("Node", "node")):
        if job[key] not in (None, ""):
            lines.append(f"  {label + ':':<13} {job[key]}")
    lines.append(f"  {'Status:':<13} {job['status'].upper()}")
    lines.append(f"  {'State:':<13} {state}{exit_text}")
    if job["diagnosis"] and job["diagnosis"] != "ok":
        lines.append(f"  {'Diagnosis:':<13} {job['diagnosis']}")
    if job["error"]:
        lines.append(f"  {'Error:':<13} {job['error']}")
    lines += ["", "Timing:"]
    for label, key in (("Submitted", "submit_time"), ("Started", "start_time"),
                       ("Ended", "end_time")):
        if job[key]:
            lines.append(f"  {label + ':':<13} {_local(job[key])}")
    lines.append(f"  {'Duration:':<13} {_dur(job['duration_seconds'])}")
    if job["params"]:
        lines += ["", "Parameters:"]
        lines += ["  " + line for line in jsonout.dumps(job["params"], indent=2,
                                                        sort_keys=True).splitlines()]
    lines += ["", "Resource usage (as seff reports it):"]
    cores = usage["cpus"]
    if cores:
        lines.append(f"  Cores: {cores}")
    if usage["cpu_total_seconds"] is not None:
        split = ""
        if usage["cpu_user_seconds"] is not None:
            split = (f" (user {_clock(usage['cpu_user_seconds'])}, system "
                     f"{_clock(usage['cpu_system_seconds'] or 0.0)})")
        lines.append(f"  CPU Utilized: {_clock(usage['cpu_total_seconds'])}{split}")
    if eff["cpu_pct"] is not None and job["duration_seconds"]:
        core_wall = job["duration_seconds"] * (cores or 1)
        lines.append(f"  CPU Efficiency: {eff['cpu_pct']:.2f}% of {_clock(core_wall)} "
                     "core-walltime")
    if job["duration_seconds"] is not None:
        lines.append(f"  Job Wall-clock time: {_clock(job['duration_seconds'])}")
    if usage["memory_peak_bytes"] is not None:
        lines.append(f"  Memory Utilized: {_size(usage['memory_peak_bytes'])}")
    if eff["memory_pct"] is not None and usage["memory_requested_bytes"]:
        lines.append(f"  Memory Efficiency: {eff['memory_pct']:.2f}% of "
                     f"{_size(usage['memory_requested_bytes'])}")
    if eff["time_pct"] is not None and eff["time_limit_seconds"]:
        lines.append(f"  Time Efficiency: {eff['time_pct']:.2f}% of "
                     f"{_clock(eff['time_limit_seconds'])} time limit")
    if usage["gpus"]:
        lines.append(f"  GPUs: {usage['gpus']}")
    if usage["gpu_hours"]:
        lines.append(f"  GPU hours: {usage['gpu_hours']:.2f}")
    if job["timeline"]:
        lines += ["", "State changes:"]
        lines += [f"  {_local(e['time'])}  {e['previous'] or '-'} -> {e['state']}"
                  for e in job["timeline"]]
    if job["samples"]:
        lines += ["", "Samples:", "  " + _samples_line(job["samples"])]
    if job["progress"]:
        p = job["progress"][-1]
        total = f"/{p['total']:g}" if p["total"] is not None else ""
        pct = f" ({p['pct']:.1f}%)" if p["pct"] is not None else ""
        rate = f", {p['rate']:.3g}/s" if p["rate"] is not None else ""
        lines += ["", "Progress:", f"  {p['done']:g}{total}{pct}{rate} at {_local(p['time'])} "
                  f"({len(job['progress'])} points)"]
    if job["alerts"]:
        lines += ["", "Alerts:"]
        for a in job["alerts"]:
            lines.append(f"  {_local(a['time'])}  {a['kind']:<8} {a['rule']} "
                         f"[{a['severity']}] {a['title'] or ''}".rstrip())
            for d in a["deliveries"]:
                when = f" at {_local(d['delivered_at'])}" if d["delivered_at"] else ""
                error = f"; last error: {d['last_error']}" if d["last_error"] else ""
                lines.append(f"      -> {d['target']}: {d['status']}{when}, "
                             f"{d['attempts']} attempt(s){error}")
    if job["log_tail"]:
        lines += ["", "Last log lines:"] + ["  " + line for line in job["log_tail"]]
    return lines


def _samples_line(samples: Sequence[Mapping[str, Any]]) -> str:
    # the resident size, or the peak where only that is known (a job sampled as it ended)
    rss = [m for s in samples
           if (m := max((v for v in (s["memory_bytes"], s.get("memory_peak_bytes"))
                         if v is not None), default=None)) is not None]
    cpu = [s["cpu_pct"] for s in samples if s["cpu_pct"] is not None]
    gpu = [s["gpu_util_pct"] for s in samples if s["gpu_util_pct"] is not None]
    parts = [f"{len(samples)} from {_local(samples[0]['time'])} to "
             f"{_local(samples[-1]['time'])}"]
    if rss:
        parts.append(f"memory up to {_size(max(rss))}")
    if cpu:
        parts.append(f"CPU {sum(cpu) / len(cpu):.0f}% mean, {max(cpu):.0f}% max")
    if gpu:
        parts.append(f"GPU {sum(gpu) / len(gpu):.0f}% mean")
    return "; ".join(parts)


# --- value formats ------------------------------------------------------------------------


def _local(iso_text: str | None, *, short: bool = False) -> str:
    if not iso_text:
        return "-"
    when = datetime.fromisoformat(iso_text).astimezone()
    return when.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def _clock(seconds: float) -> str:
    """seff's [D-]HH:MM:SS (with hundredths under a minute, for short tracked work)."""
    if seconds < 60:
        return f"00:00:{seconds:05.2f}"
    total = round(seconds)
    days, rem = divmod(total, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


def _mb(mb: float | None) -> str:
    if mb is None:
        return "-"
    return f"{mb / 1024:.2f} GB" if mb >= 1024 else f"{mb:.1f} MB"
