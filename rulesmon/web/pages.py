"""The pages: runs, one run (summary, alerts, DAG, jobs), tracked work, one job.

Each page is built from one data function whose result is also what its /api/ mirror
returns, so the JSON and the HTML never disagree.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .. import jsonout
from ..config.units import format_seconds as dur
from ..config.units import format_size as size
from ..display.fmt import natural_key
from ..history.queries import HistoryError
from . import dag as dagmod
from . import db, svg
from .fmt import badge, figs, job_url, kv, link, num, pct, section, table, timestamp, when

#: Job rows listed on a run page unless `?jobs=all`.
JOBS_SHOWN = 1000
TRACKED_SHOWN = 1000


class NotFound(Exception):
    """No such run or job (one line for the 404 page)."""


# --- data (the /api/ mirrors) -------------------------------------------------------------

def runs_data(con: sqlite3.Connection) -> dict[str, Any]:
    return {"runs": db.runs(con), "tracked": db.tracked_counts(con)}


def run_data(con: sqlite3.Connection, run_id: int) -> tuple[dict[str, Any], dagmod.Dag | None]:
    run = db.run(con, run_id)
    if run is None:
        raise NotFound(f"no run {run_id} in this history")
    jobs = db.run_jobs(con, run_id)
    jobs.sort(key=lambda j: (j["tool"] or "", natural_key(str(j["instance"])), j["id"]))
    started = timestamp(run["started"])
    ended = timestamp(run["ended"]) if run["ended"] else None
    alerts, omitted = db.run_alerts(con, started, ended)
    graph = dagmod.build(jobs)
    data = {"run": run, "stats": db.figures(jobs), "alerts": alerts,
            "alerts_omitted": omitted,
            "notifications": db.run_notifications(con, started, ended), "jobs": jobs}
    return data, graph


def run_json(data: Mapping[str, Any], graph: dagmod.Dag | None) -> dict[str, Any]:
    """/api/run/<id>: the page's data with the DAG's nodes and edges (null without one)."""
    out = dict(data)
    out["dag"] = dagmod.as_json(graph) if graph is not None else None
    return out


def tracked_data(con: sqlite3.Connection) -> dict[str, Any]:
    jobs = db.run_jobs(con, None, limit=TRACKED_SHOWN)
    return {"counts": db.tracked_counts(con), "stats": db.figures(jobs),
            "limited": len(jobs) >= TRACKED_SHOWN, "jobs": jobs}


def job_data(con: sqlite3.Connection, ident: str) -> dict[str, Any]:
    try:
        return db.job(con, ident)
    except HistoryError as exc:
        raise NotFound(str(exc)) from None


# --- runs ---------------------------------------------------------------------------------

def _counts(by_status: Mapping[str, int], href: str | None = None) -> str:
    parts = []
    for status, n in by_status.items():
        text = f'{badge(status)} <span class="n">{n:,}</span>'
        parts.append(f'<a href="{svg.esc(href)}?status={svg.esc(status)}">{text}</a>'
                     if href else text)
    return " ".join(parts) or '<span class="muted">none</span>'


def _run_state(run: Mapping[str, Any]) -> str:
    if run["state"] == "ended":
        return when(run["ended"])
    hint = ("no end recorded: a later run of this ruleset has started"
            if run["state"] == "interrupted" else "no end recorded yet")
    shown = badge("running" if run["state"] == "running" else "unknown")
    return f'<span title="{svg.esc(hint)}">{shown} {svg.esc(run["state"])}</span>'


def index_html(data: Mapping[str, Any]) -> tuple[str, str]:
    rows = []
    for run in data["runs"]:
        jobs = run["jobs"]
        rows.append([link(f"/run/{run['id']}", f"#{run['id']}"),
                     link(f"/run/{run['id']}", run["ruleset"]), when(run["started"]),
                     _run_state(run), dur(run["duration_seconds"]), f"{run['ticks']:,}",
                     f"{jobs['total']:,}", _counts(jobs["by_status"]),
                     pct(jobs["success_rate"]), num(run["exit_code"])])
    body = ["<h1>Runs</h1>"]
    if rows:
        body.append(table(("Run", "Ruleset", "Started", "Ended", "Duration", "Ticks", "Jobs",
                           "By outcome", "Success", "Exit"), rows, numeric=(4, 5, 6, 8, 9)))
    else:
        body.append('<p class="muted">No runs recorded in this database.</p>')
    tracked = data["tracked"]
    if tracked:
        body.append("<h2>Tracked work</h2>")
        body.append(table(("Work", "First", "Last", "Jobs", "By outcome", "Success"), [[
            link("/tracked", "rulesmon.track / rulesmon track / Celery"),
            when(tracked["first_seen"]), when(tracked["last_seen"]), f"{tracked['total']:,}",
            _counts(tracked["by_status"]), pct(tracked["success_rate"])]], numeric=(3, 5)))
    body.append('<p class="muted">JSON: <a href="/api/runs">/api/runs</a> · '
                '<a href="/api/stats">/api/stats</a></p>')
    return "Runs", "".join(body)


# --- one run ------------------------------------------------------------------------------

def _figures(stats: Mapping[str, Any]) -> str:
    return figs([
        ("jobs", f"{stats['total_jobs']:,}"), ("finished", f"{stats['finished']:,}"),
        ("running or pending", f"{stats['active']:,}"),
        ("successful", f"{stats['successful']:,}"), ("failed", f"{stats['failed']:,}"),
        ("success rate", pct(stats["success_rate"])),
        ("CPU time", dur(stats["total_cpu_time_seconds"])),
        ("total duration", dur(stats["total_duration_seconds"])),
        ("mean duration", dur(stats["average_duration_seconds"])),
        ("longest", dur(stats["max_duration_seconds"])),
        ("peak memory (max)", size(stats["memory_peak_max_mb"] * 1048576
                                   if stats["memory_peak_max_mb"] is not None else None)),
        *([("GPU hours", f"{stats['gpu_hours']:.2f}")] if stats["gpu_hours"] else []),
    ])


def _jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for j in jobs:
        usage = j["resource_usage"]
        rows.append([link(job_url(j["id"]), j["instance"]), svg.esc(j["source"]),
                     svg.esc(j["state"] or "-"), badge(j["status"]), num(j["returncode"]),
                     dur(j["duration_seconds"]), dur(usage["cpu_total_seconds"]),
                     size(usage["memory_peak_bytes"])])
    return table(("Instance", "Source", "State", "Outcome", "Exit", "Duration", "CPU",
                  "Peak mem"), rows, numeric=(4, 5, 6, 7), cls="jobs")


def _deliveries(deliveries: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for d in deliveries:
        text = f"{svg.esc(d['target'])}: {svg.esc(d['status'])} ({d['attempts']} attempt"
        text += "s)" if d["attempts"] != 1 else ")"
        if d.get("last_error"):
            text += f' <span class="err">{svg.esc(d["last_error"])}</span>'
        parts.append(text)
    return "<br>".join(parts) or '<span class="muted">-</span>'


def _alerts_table(alerts: Sequence[Mapping[str, Any]], jobs_by_instance: Mapping[str, str],
                  *, with_instance: bool = True) -> str:
    rows = []
    for a in alerts:
        instance = a.get("instance")
        uid = jobs_by_instance.get(str(instance))
        where = link(job_url(uid), instance) if uid else svg.esc(instance or "-")
        title = svg.esc(a["title"] or "")
        if a.get("body"):
            title = (f"<details><summary>{title or 'message'}</summary>"
                     f"<pre>{svg.esc(a['body'])}</pre></details>")
        rows.append([when(a["time"]), svg.esc(a["kind"]), svg.esc(a["severity"] or "-"),
                     svg.esc(a["rule"] or "-"), *([where] if with_instance else []), title,
                     _deliveries(a["deliveries"])])
    headers = ("Time", "Kind", "Severity", "Rule", *(("Instance",) if with_instance else ()),
               "Title", "Notifications")
    return table(headers, rows, cls="alerts")


def _notifications(notes: Mapping[str, Any]) -> str:
    if not notes["total"]:
        return ""
    rows = [[svg.esc(target), *(f"{counts.get(k, 0):,}" for k in
                                ("delivered", "owed", "dropped", "suppressed", "summarised",
                                 "failed_attempts"))]
            for target, counts in notes["by_target"].items()]
    return ("<h2>Notifications by target</h2>" +
            table(("Target", "Delivered", "Owed", "Dropped", "Suppressed", "Summarised",
                   "Failed attempts"), rows, numeric=(1, 2, 3, 4, 5, 6)))


def _dag_section(graph: dagmod.Dag) -> str:
    counts: dict[str, int] = {}
    for node in graph.nodes.values():
        counts[node.status] = counts.get(node.status, 0) + 1
    note = ""
    if len(graph.nodes) > svg.DAG_FULL_LIMIT:
        note = (f'<p class="muted">{len(graph.nodes):,} nodes: too many to draw one by one; '
                "each layer is one bar split by outcome. The jobs table below lists every "
                "node.</p>")
    elif len(graph.edges) > svg.DAG_EDGE_LIMIT:
        note = (f'<p class="muted">{len(graph.edges):,} edges: the first '
                f"{svg.DAG_EDGE_LIMIT:,} are drawn.</p>")
    if graph.cyclic:
        note += ('<p class="err">The recorded dependencies contain a cycle; its nodes are '
                 "in the last layer.</p>")
    return (f"<h2>Workflow DAG</h2><p>{svg.legend(counts)} <span class='muted'>"
            f"{len(graph.nodes):,} nodes in {len(graph.layers):,} layers, "
            f"{len(graph.edges):,} edges</span></p>{note}"
            f'<div class="scroll">{svg.dag(graph, job_url)}</div>')


def run_html(data: Mapping[str, Any], graph: dagmod.Dag | None,
             query: Mapping[str, str]) -> tuple[str, str]:
    run, stats = data["run"], data["stats"]
    href = f"/run/{run['id']}"
    body = [f"<h1>Run #{run['id']} · {svg.esc(run['ruleset'])}</h1>",
            kv([("State", svg.esc(run["state"])), ("Started", when(run["started"])),
                ("Ended", when(run["ended"])), ("Duration", dur(run["duration_seconds"])),
                ("Ticks", f"{run['ticks']:,}" + (f" ({run['overruns']:,} overran)"
                                                 if run["overruns"] else "")),
                ("Exit code", num(run["exit_code"])), ("Summary", svg.esc(run["summary"]))]),
            _figures(stats), "<h2>By outcome</h2>", _counts(stats["by_status"], href),
            "<h2>By state</h2>",
            table(("State", "Jobs"), [[svg.esc(s), f"{n:,}"] for s, n in
                                      stats["by_state"].items()], numeric=(1,))]
    if graph is not None:
        body.append(_dag_section(graph))
    by_instance = {j["instance"]: j["id"] for j in data["jobs"]}
    if data["alerts"]:
        more = (f' <span class="muted">(and {data["alerts_omitted"]:,} more)</span>'
                if data["alerts_omitted"] else "")
        body.append(f"<h2>Alerts and events{more}</h2>")
        body.append(_alerts_table(data["alerts"], by_instance))
    body.append(_notifications(data["notifications"]))
    jobs = data["jobs"]
    wanted = {s.strip() for s in query.get("status", "").split(",") if s.strip()}
    if wanted:
        jobs = [j for j in jobs if j["status"] in wanted]
    shown = jobs if query.get("jobs") == "all" else jobs[:JOBS_SHOWN]
    title = f"Jobs ({len(jobs):,}"
    title += f" {', '.join(sorted(wanted))}" if wanted else ""
    title += ")"
    body.append(f"<h2>{svg.esc(title)}</h2>")
    if wanted:
        body.append(f"<p>{link(href, 'all outcomes')}</p>")
    if len(shown) < len(jobs):
        params = "&".join(f"{k}={v}" for k, v in (("status", ",".join(sorted(wanted))),
                                                 ("jobs", "all")) if v)
        body.append(f'<p class="muted">The first {len(shown):,} are listed: '
                    f"{link(f'{href}?{params}', f'show all {len(jobs):,}')}</p>")
    body.append(_jobs_table(shown))
    body.append(f'<p class="muted">JSON: {link(f"/api{href}", f"/api{href}")}</p>')
    return f"Run #{run['id']} {run['ruleset']}", "".join(body)


def tracked_html(data: Mapping[str, Any]) -> tuple[str, str]:
    body = ["<h1>Tracked work</h1>",
            '<p class="muted">Work recorded outside any run: rulesmon.track, '
            "<code>rulesmon track -- CMD</code>, the Celery hook; newest first.</p>"]
    if not data["jobs"]:
        body.append('<p class="muted">None recorded in this database.</p>')
        return "Tracked work", "".join(body)
    if data["limited"]:
        body.append(f'<p class="muted">Figures of the latest {TRACKED_SHOWN:,} of '
                    f"{data['counts']['total']:,}.</p>")
    body += [_figures(data["stats"]), "<h2>By outcome</h2>", _counts(data["stats"]["by_status"]),
             "<h2>Jobs</h2>", _jobs_table(data["jobs"]),
             '<p class="muted">JSON: <a href="/api/tracked">/api/tracked</a></p>']
    return "Tracked work", "".join(body)


# --- one job ------------------------------------------------------------------------------

def _series(samples: Sequence[Mapping[str, Any]], key: str,
            scale: float = 1.0) -> list[tuple[float, float]]:
    return [(timestamp(s["time"]), s[key] / scale) for s in samples if s.get(key) is not None]


def _memory_unit(values: Sequence[tuple[float, float]]) -> tuple[float, str]:
    top = max((v for _t, v in values), default=0.0)
    return (1073741824.0, "GiB") if top >= 4 * 1073741824 else (1048576.0, "MiB")


def _charts(job: Mapping[str, Any]) -> str:
    samples, progress = job["samples"], job["progress"]
    out = []
    cpu = _series(samples, "cpu_pct")
    out.append(svg.line_chart("cpu", "CPU (%, 100 = one core)", [("cpu", cpu)],
                              lambda v: f"{v:g}%"))
    rss, peak = _series(samples, "memory_bytes"), _series(samples, "memory_peak_bytes")
    factor, unit = _memory_unit(rss + peak)
    out.append(svg.line_chart(
        "memory", f"Memory ({unit})",
        [("resident", [(t, v / factor) for t, v in rss]),
         ("peak", [(t, v / factor) for t, v in peak])],
        lambda v: f"{v:g} {unit}"))
    out.append(svg.line_chart("gpu_util", "GPU utilisation (%)",
                              [("gpu", _series(samples, "gpu_util_pct"))],
                              lambda v: f"{v:g}%", top=100.0))
    gmem = _series(samples, "gpu_memory_bytes")
    gfactor, gunit = _memory_unit(gmem)
    out.append(svg.line_chart("gpu_memory", f"GPU memory ({gunit})",
                              [("gpu memory", [(t, v / gfactor) for t, v in gmem])],
                              lambda v: f"{v:g} {gunit}"))
    points = _series(progress, "pct")
    if points:
        out.append(svg.line_chart("progress", "Progress (%)", [("progress", points)],
                                  lambda v: f"{v:g}%", top=100.0))
    else:
        out.append(svg.line_chart("progress", "Progress (items done)",
                                  [("done", _series(progress, "done"))], lambda v: f"{v:g}"))
    drawn = "".join(out)
    if not drawn:
        return '<p class="muted">No resource samples recorded for this job.</p>'
    return f"<div>{drawn}</div>"


def _timeline(job: Mapping[str, Any]) -> str:
    changes = job["timeline"]
    if not changes:
        return ""
    end = job["end_time"] or (None if job["status"] in ("running", "pending")
                              else job["last_seen"])
    stop = timestamp(end) if end else time.time()
    spans = []
    for i, change in enumerate(changes):
        start = timestamp(change["time"])
        until = timestamp(changes[i + 1]["time"]) if i + 1 < len(changes) else max(stop, start)
        spans.append((start, until, str(change["state"])))
    rows = [[when(c["time"]), svg.esc(c["previous"] or "-"), svg.esc(c["state"])]
            for c in changes]
    return ("<h2>State changes</h2>" + svg.timeline(spans) +
            table(("Time", "From", "To"), rows))


def _dag_links(dag: Mapping[str, Any] | None) -> str:
    if not dag:
        return ""

    def names(items: Sequence[Mapping[str, Any]]) -> str:
        parts = [f"{link(job_url(n['id']), n['name'])} {badge(n['status'])}" if n["id"]
                 else svg.esc(n["name"]) for n in items]
        return ", ".join(parts) or '<span class="muted">none</span>'

    return ("<h2>DAG node</h2>" + kv([("Node", svg.esc(dag["name"])),
                                      ("Parents", names(dag["parents"])),
                                      ("Children", names(dag["children"]))]))


def _value(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"<code>{svg.esc(jsonout.dumps(value, ensure_ascii=False, sort_keys=True))}</code>"
    return svg.esc(value)


def job_html(job: Mapping[str, Any]) -> tuple[str, str]:
    usage, eff = job["resource_usage"], job["efficiency"]
    run_link = link(f"/run/{job['run_id']}", f"#{job['run_id']}") if job["run_id"] else ""
    body = [f"<h1>{svg.esc(job['instance'])} {badge(job['status'])}</h1>",
            kv([("Id", svg.esc(job["id"])), ("Job id", svg.esc(job["job_id"])),
                ("Name", svg.esc(job["name"])), ("Source", svg.esc(job["source"])),
                ("Tool", svg.esc(job["tool"])), ("Script", svg.esc(job["script"])),
                ("Ruleset", svg.esc(job["ruleset"])), ("Run", run_link),
                ("State", svg.esc(job["state"])), ("Exit code", num(job["returncode"])),
                ("Signal", svg.esc(job["signal"] or "")),
                ("Diagnosis", svg.esc(job["diagnosis"])),
                ("Error", f'<span class="err">{svg.esc(job["error"])}</span>'
                 if job["error"] else ""),
                ("Node", svg.esc(job["node"])), ("Partition", svg.esc(job["partition"])),
                ("Resource", svg.esc(job["resource"])), ("User", svg.esc(job["user"]))]),
            section("Timing", kv([
                ("Submitted", when(job["submit_time"])), ("Started", when(job["start_time"])),
                ("Ended", when(job["end_time"])), ("Duration", dur(job["duration_seconds"])),
                ("First seen", when(job["first_seen"])),
                ("Last change", when(job["last_seen"]))])),
            section("Resources", kv([("CPU time", dur(usage["cpu_total_seconds"])),
                ("CPU user / system", f"{dur(usage['cpu_user_seconds'])} / "
                 f"{dur(usage['cpu_system_seconds'])}"
                 if usage["cpu_user_seconds"] is not None else ""),
                ("CPU efficiency", pct(eff["cpu_pct"])),
                ("Peak memory", size(usage["memory_peak_bytes"])),
                ("Memory requested", size(usage["memory_requested_bytes"])),
                ("Memory efficiency", pct(eff["memory_pct"])),
                ("Time limit", dur(eff["time_limit_seconds"])),
                ("Time efficiency", pct(eff["time_pct"])), ("Cores", num(usage["cpus"])),
                ("GPUs", num(usage["gpus"])),
                ("GPU hours", f"{usage['gpu_hours']:.2f}" if usage["gpu_hours"] else "")])),
            _dag_links(job.get("dag"))]
    if job["params"]:
        body.append("<h2>Parameters</h2>")
        body.append(kv((str(k), _value(v)) for k, v in sorted(job["params"].items())))
    details = {k: v for k, v in job["details"].items()
               if k not in ("node.parents", "node.children")}
    if details:
        body.append("<h2>Details</h2>")
        body.append(kv((str(k), _value(v)) for k, v in sorted(details.items())))
    body.append(_timeline(job))
    body.append(f"<h2>Resource use over time ({len(job['samples']):,} samples)</h2>")
    body.append(_charts(job))
    if job["alerts"]:
        body.append("<h2>Alerts</h2>")
        body.append(_alerts_table(job["alerts"], {}, with_instance=False))
    if job["log_tail"]:
        body.append("<h2>Last log lines</h2>")
        body.append("<pre>" + "\n".join(svg.esc(line) for line in job["log_tail"]) + "</pre>")
    api = "/api" + job_url(job["id"])
    body.append(f'<p class="muted">JSON: {link(api, api)}</p>')
    return str(job["instance"]), "".join(body)
