"""The dashboard's pictures as inline SVG: line charts of samples, a state timeline, the DAG.

Drawn here in a few lines each, so the pages need no script and no asset from anywhere (the
machines are often offline). Every text that came from the database goes through `esc`.
Coordinates are rounded to 0.1 px; a chart maps time and value to x and y linearly (value 0
at the bottom), so what the picture shows is what the samples say.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..history.rows import status_of
from .dag import Dag, Node

#: Fill colour per job status (jobs.status), shared by badges, the DAG and the timeline.
STATUS_COLOURS = {
    "success": "#2e7d32", "failed": "#c62828", "error": "#880e4f", "timeout": "#e65100",
    "cancelled": "#6a1b9a", "running": "#1565c0", "pending": "#9e9d24", "unknown": "#757575",
}
SERIES_COLOURS = ("#1565c0", "#e65100", "#2e7d32", "#6a1b9a")
#: Up to this many nodes the DAG is drawn node by node; beyond, layer by layer.
DAG_FULL_LIMIT = 300
#: Edges drawn at most (a dense DAG of a few hundred nodes can have tens of thousands).
DAG_EDGE_LIMIT = 4000

Point = tuple[float, float]


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def colour(status: str | None) -> str:
    return STATUS_COLOURS.get(status or "unknown", STATUS_COLOURS["unknown"])


def state_colour(state: str | None) -> str:
    """A state's colour: that of the status it maps to (RUNNING running, COMPLETED success)."""
    return colour(status_of(state, None, None, None))


# --- line charts --------------------------------------------------------------------------

def _nice(top: float) -> float:
    """The axis maximum: the first of 1, 2, 2.5, 5, 10 times a power of ten at or above `top`."""
    if top <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(top))
    return next(step * scale for step in (1.0, 2.0, 2.5, 5.0, 10.0)
                if step * scale >= top * (1 - 1e-9))


def line_chart(name: str, title: str, series: Sequence[tuple[str, Sequence[Point]]],
               fmt: Callable[[float], str], *, width: int = 720, height: int = 190,
               top: float | None = None) -> str:
    """One chart: each series (label, [(unix time, value)]) as a polyline over a shared time
    axis; y from 0 to a round maximum (or `top`, e.g. 100 for percentages)."""
    points = [p for _label, pts in series for p in pts]
    if not points:
        return ""
    left, right, upper, lower = 70, 14, 26, 30
    w, h = width - left - right, height - upper - lower
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    vmax = max(0.0, *(p[1] for p in points))
    hi = top if top is not None and vmax <= top else _nice(vmax)

    def x(t: float) -> float:
        return round(left + (w * (t - t0) / (t1 - t0) if t1 > t0 else w / 2), 1)

    def y(v: float) -> float:
        return round(upper + h - h * max(v, 0.0) / hi, 1)

    out = [f'<svg class="chart" data-chart="{esc(name)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
           f"<title>{esc(title)}</title>",
           f'<text x="{left}" y="16" class="ct">{esc(title)}</text>']
    for i in range(5):
        v = hi * i / 4
        gy = y(v)
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{gy}" y2="{gy}" class="grid" '
                   'stroke="#e4e7eb"/>')
        out.append(f'<text x="{left - 6}" y="{gy + 4}" class="ax" text-anchor="end">'
                   f"{esc(fmt(v))}</text>")
    out.append(f'<text x="{left}" y="{height - 8}" class="ax">{esc(_clock(t0))}</text>')
    if t1 > t0:
        out.append(f'<text x="{left + w}" y="{height - 8}" class="ax" text-anchor="end">'
                   f"{esc(_clock(t1))} (+{esc(_span(t1 - t0))})</text>")
    for i, (label, pts) in enumerate(series):
        if not pts:
            continue
        c = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        coords = " ".join(f"{x(t)},{y(v)}" for t, v in pts)
        out.append(f'<polyline class="series" data-series="{esc(label)}" fill="none" '
                   f'stroke="{c}" stroke-width="1.6" points="{coords}"/>')
        if len(pts) == 1:
            out.append(f'<circle cx="{x(pts[0][0])}" cy="{y(pts[0][1])}" r="3" fill="{c}"/>')
        if len(series) > 1:
            lx = left + 10 + 150 * i
            out.append(f'<rect x="{lx}" y="{upper + 4}" width="10" height="3" fill="{c}"/>'
                       f'<text x="{lx + 14}" y="{upper + 9}" class="ax">{esc(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S")


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# --- state timeline -----------------------------------------------------------------------

def timeline(spans: Sequence[tuple[float, float, str]], *, width: int = 720) -> str:
    """The job's states as consecutive bars: (from, to, state)."""
    if not spans:
        return ""
    left, w = 8, width - 16
    t0, t1 = spans[0][0], max(s[1] for s in spans)
    total = (t1 - t0) or 1.0
    out = [f'<svg class="timeline" width="{width}" height="46" viewBox="0 0 {width} 46" '
           'role="img" aria-label="state timeline">']
    for start, end, state in spans:
        x0 = left + w * (start - t0) / total
        bw = max(w * (end - start) / total, 2.0)
        out.append(f'<rect x="{x0:.1f}" y="4" width="{bw:.1f}" height="20" '
                   f'fill="{state_colour(state)}" data-state="{esc(state)}">'
                   f"<title>{esc(state)}: {esc(_clock(start))} to {esc(_clock(end))} "
                   f"({esc(_span(end - start))})</title></rect>")
        if bw > 60:
            out.append(f'<text x="{x0 + 4:.1f}" y="18" class="lbl" fill="#fff">{esc(state)}</text>')
    out.append(f'<text x="{left}" y="40" class="ax">{esc(_clock(t0))}</text>'
               f'<text x="{left + w}" y="40" class="ax" text-anchor="end">'
               f"{esc(_clock(t1))}</text></svg>")
    return "".join(out)


# --- the DAG ------------------------------------------------------------------------------

_BOX_W, _BOX_H, _COL, _ROW, _PAD = 150, 24, 200, 32, 12


def legend(counts: dict[str, int]) -> str:
    return "".join(f'<span class="key"><span class="sw" style="background:{colour(s)}">'
                   f"</span>{esc(s)} {n:,}</span>" for s, n in sorted(counts.items()))


def dag(graph: Dag, job_url: Callable[[str], str]) -> str:
    """The DAG node by node (left to right by layer) up to DAG_FULL_LIMIT nodes; beyond,
    each layer as one bar split by status."""
    if len(graph.nodes) > DAG_FULL_LIMIT:
        return _dag_layers(graph)
    tall = max(len(layer) for layer in graph.layers)
    width = _PAD * 2 + _COL * (len(graph.layers) - 1) + _BOX_W
    height = _PAD * 2 + _ROW * (tall - 1) + _BOX_H

    def pos(node: Node) -> tuple[int, int]:
        return _PAD + _COL * node.layer, _PAD + _ROW * node.order

    out = [f'<svg class="dag" width="{width}" height="{height}" viewBox="0 0 {width} '
           f'{height}" role="img" aria-label="workflow DAG">']
    for parent, child in graph.edges[:DAG_EDGE_LIMIT]:
        (x0, y0), (x1, y1) = pos(graph.nodes[parent]), pos(graph.nodes[child])
        sx, sy, ex, ey = x0 + _BOX_W, y0 + _BOX_H // 2, x1, y1 + _BOX_H // 2
        mid = (sx + ex) / 2
        out.append(f'<path class="edge" fill="none" stroke="#9aa5b1" d="M{sx},{sy} '
                   f'C{mid:.1f},{sy} {mid:.1f},{ey} {ex},{ey}"/>')
    for layer in graph.layers:
        for node in layer:
            x, y = pos(node)
            label = node.name if len(node.name) <= 20 else node.name[:19] + "…"
            tip = f"{node.name} ({node.instance}): {node.state or node.status}"
            if node.exit_code is not None:
                tip += f", exit {node.exit_code}"
            out.append(
                f'<a href="{esc(job_url(node.uid))}"><g class="node" data-name="{esc(node.name)}" '
                f'data-status="{esc(node.status)}" data-layer="{node.layer}">'
                f"<title>{esc(tip)}</title>"
                f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="4" '
                f'fill="{colour(node.status)}"/>'
                f'<text x="{x + 8}" y="{y + 16}" class="nl" fill="#fff">{esc(label)}</text>'
                "</g></a>")
    out.append("</svg>")
    return "".join(out)


def _dag_layers(graph: Dag) -> str:
    width, bar = 720, 560
    height = 14 + 22 * len(graph.layers)
    out = [f'<svg class="dag-layers" width="{width}" height="{height}" viewBox="0 0 {width} '
           f'{height}" role="img" aria-label="workflow DAG by layer">']
    widest = max(len(layer) for layer in graph.layers)
    for i, layer in enumerate(graph.layers):
        y = 6 + 22 * i
        counts: dict[str, int] = {}
        for node in layer:
            counts[node.status] = counts.get(node.status, 0) + 1
        out.append(f'<text x="4" y="{y + 13}" class="ax">layer {i}</text>')
        x = 70.0
        for status, n in sorted(counts.items()):
            bw = bar * n / widest
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{max(bw, 1.0):.1f}" height="16" '
                       f'fill="{colour(status)}" data-status="{esc(status)}" data-count="{n}">'
                       f"<title>layer {i}: {n:,} {esc(status)}</title></rect>")
            x += bw
        out.append(f'<text x="{x + 6:.1f}" y="{y + 13}" class="ax">{len(layer):,}</text>')
    out.append("</svg>")
    return "".join(out)
