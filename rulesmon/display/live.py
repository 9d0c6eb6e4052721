"""The live terminal dashboard (`rulesmon run --live`), drawn with rich.

Layout, after the GPU cluster monitor's terminal display, for many jobs: a header (ruleset,
tick, elapsed, counts by state, overall progress), then sections — jobs with progress bars,
training runs, workers and GPUs, output files, checkpoints, disk space, recent events. Every
row is one line. When the terminal is too small, sections give up rows in a fixed order and say
how many they hide ("+4,990 more: ..."); the least important collapse to a one-line summary or
disappear, so the frame always fits (80x24 included).

The engine thread only hands each report to a `Feed`. A view thread builds the view from the
newest report as soon as it arrives (one pass over the instances, while the engine waits for
its next tick) and rich's refresh thread draws it twice a second (bounded: at most a screenful
of rows), so drawing never delays a tick. The alternate screen is redrawn in place (no flicker) and
re-measured on every refresh (terminal resizes just work). While it is up, the console log is
routed into the recent events, so log lines never tear the frame; the final frame is printed
on the normal screen when the run ends.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from .feed import Feed
from .fmt import clock, count, duration, one_line, pct, rate, size
from .fmt import eta as eta_text
from .model import (
    BAD_STATES,
    NO_STATE,
    CheckpointLine,
    DiskLine,
    EventLine,
    FileRow,
    GroupRow,
    JobRow,
    Section,
    View,
    ViewBuilder,
    WorkerRow,
    empty_view,
    hidden_counts,
)

if TYPE_CHECKING:
    from rich.live import Live

STATE_STYLE = {
    "RUNNING": "green", "COMPLETING": "green", "PENDING": "yellow", "HELD": "magenta",
    "SUSPENDED": "magenta", "COMPLETED": "blue", "UNKNOWN": "dim", "-": "dim",
}
SEVERITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan",
                  "debug": "dim"}
SEVERITY_LABEL = {"critical": "CRIT", "error": "ERROR", "warning": "WARN", "info": "INFO",
                  "debug": "DEBUG"}
STATE_SHORT = {"OUT_OF_MEMORY": "OOM", "COMPLETING": "COMPLETNG"}
_EIGHTHS = " ▏▎▍▌▋▊▉"
#: Rows each section gets before any section gets more (the jobs get more).
FIRST_ROUND = {"jobs": 4}
FIRST_ROUND_OTHERS = 2


def bar(percent: float | None, width: int) -> Text:
    """A block bar with eighth-cell precision, exactly `width` cells."""
    if percent is None or width <= 0:
        return Text(" " * max(width, 0))
    frac = min(max(percent / 100.0, 0.0), 1.0)
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    text = Text("█" * full, style="green" if frac < 1 else "blue")
    if full < width:
        text.append(_EIGHTHS[part] if part else "", style="green")
        text.append("░" * (width - full - (1 if part else 0)), style="bright_black")
    return text


def _state_style(state: str) -> str:
    return "bold red" if state in BAD_STATES else STATE_STYLE.get(state, "white")


def _cell(text: str | Text, width: int, style: str = "", right: bool = False) -> Text:
    """Exactly `width` cells: cut with an ellipsis or padded."""
    t = text.copy() if isinstance(text, Text) else Text(text, style=style)
    if t.cell_len > width:
        t.truncate(width, overflow="ellipsis")
    pad = width - t.cell_len
    if pad > 0:
        if right:
            t = Text(" " * pad) + t
        else:
            t.append(" " * pad)
    return t


def _line(*parts: Text | str, width: int) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    for part in parts:
        line.append(part if isinstance(part, Text) else Text(part))
    line.truncate(width, overflow="ellipsis")
    return line


@dataclass
class _Layout:
    """Column widths for one inner width."""

    width: int
    wide: bool
    name: int
    bar: int

    @classmethod
    def for_width(cls, width: int) -> _Layout:
        wide = width >= 100
        return cls(width, wide, max(12, min(30, width // 5 + (4 if wide else 1))),
                   20 if wide else 10)


# --- rows -------------------------------------------------------------------------------------


def _marker(ok: bool | None, warn: bool = False) -> Text:
    if warn:
        return Text("! ", style="bold yellow")
    if ok is None:
        return Text("◌ ", style="yellow")
    return Text("✓ ", style="green") if ok else Text("✗ ", style="bold red")


def job_line(row: JobRow, lay: _Layout) -> Text:
    bad = row.state in BAD_STATES
    if bad:
        mark = _marker(False)
    elif row.stalled or row.alert in ("critical", "error", "warning"):
        mark = _marker(True, warn=True)
    elif row.state in ("PENDING", "HELD", "SUSPENDED", "UNKNOWN", "-"):
        mark = _marker(None)
    else:
        mark = _marker(True)
    name = Text(row.key)
    if row.name and lay.wide:
        name.append(f" {row.name}", style="dim")
    state = STATE_SHORT.get(row.state, row.state)
    parts: list[str] = []
    if row.done is not None:
        done = count(row.done) + (f"/{count(row.total)}" if row.total else "")
        parts.append(f"{done} {row.unit}" if lay.wide and row.unit else done)
    if row.rate is not None and row.state not in BAD_STATES and row.state != "COMPLETED":
        parts.append(rate(row.rate))
    if row.eta is not None:
        parts.append(eta_text(row.eta, row.confidence))
    if row.detail:
        parts.append(row.detail)
    return _line(mark, _cell(name, lay.name), " ",
                 _cell(state, 9, _state_style(row.state)), " ",
                 bar(row.pct, lay.bar), " ",
                 _cell(pct(row.pct) if row.pct is not None else "", 4, right=True), " ",
                 " · ".join(parts), width=lay.width)


def group_line(row: GroupRow, lay: _Layout) -> Text:
    mark = _marker(False) if row.failed else _marker(True) if row.done == row.total \
        else _marker(True) if row.running else _marker(None)
    parts = [f"{row.done}/{row.total} nodes"]
    if row.epochs_total:
        parts.append(f"epochs {row.epochs_done}/{row.epochs_total}")
    if row.running:
        parts.append(f"{row.running} running")
    if row.pending:
        parts.append(f"{row.pending} waiting")
    if row.failed:
        parts.append(Text(f"{row.failed} failed", style="bold red").plain)
    if row.retried:
        parts.append(f"{row.retried} retried")
    percent = 100.0 * row.done / row.total if row.total else None
    return _line(mark, _cell(f"{row.by} {row.key}", lay.name + 10), " ",
                 bar(percent, lay.bar), " ", _cell(pct(percent), 4, right=True), " ",
                 " · ".join(parts), width=lay.width)


def worker_line(row: WorkerRow, lay: _Layout, gpu: bool) -> Text:
    active = row.rank in (1, 2)
    state_style = "bold red" if not row.ok else "green" if active else "white"
    cols: list[Text | str] = [_marker(row.ok, warn=row.rank == 1), _cell(row.key, lay.name), " "]
    if gpu:
        util_style = "yellow" if row.util is not None and row.util < 20 else ""
        util = f"{pct(row.util)} GPU" if row.util is not None and active else "- GPU"
        mem = size(row.mem) if row.mem is not None and active else "-"
        cols += [_cell(row.gpu, 7, "cyan"), " ", _cell(row.state, 9, state_style), " ",
                 _cell(util, 8, util_style, right=True), " ", _cell(mem, 8, right=True), " "]
    else:
        cols += [_cell(row.state, 9, state_style), " "]
    if (not gpu or lay.wide) and active:
        cols += [_cell(f"cpu {pct(row.cpu)}" if row.cpu is not None else "", 9, right=True),
                 " ", _cell(f"rss {size(row.rss)}" if row.rss is not None else "", 12,
                            right=True), " "]
    if row.rate is not None and active:
        cols.append(_cell(rate(row.rate, row.unit if lay.wide else ""), 14, right=True))
    return _line(*cols, width=lay.width)


def file_line(row: FileRow, lay: _Layout) -> Text:
    ok = row.rank >= 3
    style = "bold red" if row.rank == 0 else "yellow" if row.rank <= 2 else \
        "green" if row.status == "growing" else "white"
    n = row.count or 0
    growth = ""
    if row.growth is not None and row.growth > 0:
        growth = f"(+{size(row.growth * 60)}/min)"
    return _line(_marker(ok, warn=row.rank in (1, 2)), _cell(row.key, lay.name), " ",
                 _cell(row.name, 12, "cyan"), " ", _cell(row.status, 9, style), " ",
                 _cell(f"{n:.0f} file{'s' if n != 1 else ''}", 9, right=True), " ",
                 _cell(size(row.size) if row.size is not None else "", 8, right=True), " ",
                 growth, width=lay.width)


def event_line(ev: EventLine, lay: _Layout) -> Text:
    style = SEVERITY_STYLE.get(ev.severity, "white")
    if ev.kind == "state":
        label = "STATE"
    elif ev.kind == "resolve":
        label, style = "OK", "green"
    else:
        label = SEVERITY_LABEL.get(ev.severity, ev.severity.upper()[:5])
    cols: list[Text | str] = [Text(f"[{clock(ev.at)}] ", style="dim"), _cell(label, 5, style),
                              " "]
    if ev.subject:
        cols += [_cell(ev.subject, min(lay.name, max(len(ev.subject), 4)), "bold"), " "]
    cols.append(Text(ev.text, style="red" if ev.severity in ("critical", "error") else ""))
    return _line(*cols, width=lay.width)


def checkpoint_line(c: CheckpointLine) -> str:
    parts = [f"{c.count} saved" + (f" by {c.jobs} jobs" if c.jobs > 1 else "")]
    if c.last_age is not None:
        parts.append(f"last {duration(c.last_age)} ago")
    if c.next_in is not None:
        parts.append(f"next expected in {duration(c.next_in)}" if c.next_in >= 0
                     else f"overdue by {duration(-c.next_in)}")
    elif c.interval is not None:
        parts.append(f"every ~{duration(c.interval)}")
    if c.late:
        parts.append(f"{c.late} late")
    return ", ".join(parts)


def disk_line(d: DiskLine) -> str:
    text = f"{size(d.free)} free" if d.free is not None else "free space unknown"
    if d.total is not None:
        text += f" of {size(d.total)}"
    if d.free_pct is not None:
        text += f" ({pct(d.free_pct)})"
    return f"{text} · {d.path}"


# --- the frame --------------------------------------------------------------------------------


@dataclass
class _Block:
    """A section of the frame: rows in display order (with ranks), or info lines."""

    name: str
    title: str
    rows: Sequence[Any]
    total: int
    summary: Text
    draw: Callable[[Any], Text]
    titled: bool = True
    more: Callable[[Sequence[Any]], str] | None = None
    shown: int = 0  # rows granted; 0 = the one-line summary (titled blocks)

    def cost(self, n: int) -> int:
        if not self.titled:
            return n
        if n == 0:
            return 1
        hidden = self.more is not None and n < self.total
        return 1 + n + (1 if hidden else 0)


def _pick(rows: Sequence[Any], n: int) -> list[Any]:
    """The `n` most interesting rows, kept in display order."""
    if len(rows) <= n:
        return list(rows)
    best = sorted(range(len(rows)), key=lambda i: (getattr(rows[i], "rank", 0), i))[:n]
    return [rows[i] for i in sorted(best)]


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{count(n)} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])
                     if n)


def _blocks(view: View, lay: _Layout) -> list[_Block]:
    blocks: list[_Block] = []

    def more(section: Section[Any], attr: str) -> Callable[[Sequence[Any]], str]:
        def text(shown: Sequence[Any]) -> str:
            hidden = section.total - len(shown)
            rest = _counts_text(hidden_counts(section, shown, attr))
            note = f" · {section.note}" if section.note else ""
            return f"+{count(hidden)} more" + (f": {rest}" if rest else "") + note
        return text

    if view.jobs.total:
        blocks.append(_Block("jobs", "Jobs", view.jobs.rows, view.jobs.total,
                             Text(view.jobs.summary), lambda r: job_line(r, lay),
                             more=more(view.jobs, "state")))
    if view.groups.total:
        blocks.append(_Block("groups", "Training runs", view.groups.rows, view.groups.total,
                             Text(view.groups.summary), lambda r: group_line(r, lay),
                             more=more(view.groups, "status")))
    if view.workers.total:
        gpu = any(r.util is not None or r.mem is not None for r in view.workers.rows)
        blocks.append(_Block("workers", "Workers" + (" and GPUs" if gpu else ""),
                             view.workers.rows, view.workers.total, Text(view.workers.summary),
                             lambda r: worker_line(r, lay, gpu), more=more(view.workers, "state")))
    if view.files.total:
        blocks.append(_Block("files", "Output files", view.files.rows, view.files.total,
                             Text(view.files.summary), lambda r: file_line(r, lay),
                             more=more(view.files, "status")))
    if view.checkpoints:
        def ckpt(c: CheckpointLine) -> Text:
            label = "Checkpoints" if c.name.lower() in ("checkpoints", "checkpoint", "ckpt") \
                else f"Checkpoints ({c.name})"
            return _line(Text(f"{label}: ", style="bold"), checkpoint_line(c), width=lay.width)
        blocks.append(_Block("checkpoints", "", view.checkpoints, len(view.checkpoints),
                             Text(""), ckpt, titled=False))
    if view.disks:
        def disk(d: DiskLine) -> Text:
            low = d.free_pct is not None and d.free_pct < 10
            return _line(Text("Disk: ", style="bold"),
                         Text(disk_line(d), style="bold red" if low else ""), width=lay.width)
        blocks.append(_Block("disks", "", view.disks, len(view.disks), Text(""), disk,
                             titled=False))
    if view.events:
        blocks.append(_Block("events", "Recent events", view.events, len(view.events),
                             Text(f"{len(view.events)} recent events"),
                             lambda e: event_line(e, lay)))
    return blocks


#: Which blocks grow first, and which give way first when the frame is too small.
PRIORITY = ("jobs", "groups", "workers", "events", "files", "checkpoints", "disks")
DROP_ORDER = ("disks", "checkpoints", "files", "events", "workers", "groups")


def _allocate(blocks: list[_Block], budget: int) -> list[_Block]:
    """Grant rows so the blocks fit `budget` lines; returns the blocks kept."""
    for b in blocks:
        b.shown = 0 if b.titled else 1
    kept = list(blocks)
    for name in DROP_ORDER:
        if sum(b.cost(b.shown) for b in kept) <= budget:
            break
        kept = [b for b in kept if b.name != name]
    left = budget - sum(b.cost(b.shown) for b in kept)
    order = sorted(kept, key=lambda b: PRIORITY.index(b.name))
    for first in (True, False):
        for b in order:
            quota = FIRST_ROUND.get(b.name, FIRST_ROUND_OTHERS) if first else len(b.rows)
            want = min(len(b.rows), quota if b.titled else len(b.rows))
            while want > b.shown:
                extra = b.cost(want) - b.cost(b.shown)
                if extra <= left:
                    left -= extra
                    b.shown = want
                    break
                want -= 1
    return kept


def _section_title(title: str, note: str, width: int) -> Text:
    text = Text("─ ", style="bright_black")
    text.append(title, style="bold")
    if note:
        text.append(f" · {note}", style="dim")
    text.append(" ")
    text.append("─" * max(0, width - text.cell_len), style="bright_black")
    text.truncate(width)
    return text


def _header(view: View, lay: _Layout, now: float) -> list[Text]:
    lines = []
    head = Text()
    if view.total:
        head.append(f"{count(view.total)} job{'s' if view.total != 1 else ''}: ", style="bold")
        for i, (state, n) in enumerate(view.counts):
            if i:
                head.append(" · ")
            head.append(f"{count(n)} {state if state != NO_STATE else 'without state'}",
                        style=_state_style(state))
        if view.succeeded or view.failed:
            head.append(f"  ({count(view.succeeded)} ok, {count(view.failed)} failed)",
                        style="dim")
    elif view.tick:
        head.append("no jobs found yet", style="yellow")
    else:
        head.append("waiting for the first tick…", style="yellow")
    lines.append(_line(head, width=lay.width))
    o = view.overall
    if o is not None and o.total:
        parts = [f"{count(o.done)}/{count(o.total)}" + (f" {o.unit}" if o.unit and lay.wide
                                                        else "")]
        if o.rate is not None:
            parts.append(rate(o.rate, o.unit if lay.wide else "") +
                         (f" (avg {rate(o.avg_rate)})" if o.avg_rate and lay.wide else ""))
        if o.eta is not None and not view.all_terminal:
            parts.append(eta_text(o.eta, o.confidence) +
                         (f" ({clock(view.now + o.eta)})" if lay.wide else ""))
        lines.append(_line(Text("Progress ", style="bold"), bar(o.pct, lay.bar + 6), " ",
                           Text(f"{o.pct:5.1f}% ", style="bold"), " · ".join(parts),
                           width=lay.width))
    lines.extend(_line(Text(f"! {p}", style="bold red"), width=lay.width)
                 for p in view.problems[:2])
    del now
    return lines


def frame(view: View, width: int, height: int, *, now: float | None = None,
          fill: bool = True, hint: str = "Ctrl+C to stop") -> RenderableType:
    """The whole dashboard at `width` x `height` cells (fill: pad to exactly `height` lines)."""
    now = view.now if now is None else now
    width = max(width, 20)
    height = max(height, 5)
    lay = _Layout.for_width(width - 4)
    header = _header(view, lay, now)[: max(1, height - 3)]
    budget = height - 2 - len(header)
    body: list[Text] = list(header)
    for b in _allocate(_blocks(view, lay), budget):
        if b.titled and b.shown == 0:
            body.append(_line(Text(f"{b.title}: ", style="bold"), b.summary, width=lay.width))
            continue
        rows = _pick(b.rows, b.shown)
        if b.titled:
            note = f"{len(rows)} of {count(b.total)}" if len(rows) < b.total and b.more \
                else ""
            body.append(_section_title(b.title, note, lay.width))
        body.extend(b.draw(r) for r in rows)
        if b.titled and b.more is not None and len(rows) < b.total:
            body.append(_line(Text(b.more(rows), style="dim"), width=lay.width))
    title = Text(f"rulesmon · {view.ruleset or '-'}", style="bold")
    if view.tick:
        title.append(f" · tick {view.tick}", style="")
        if view.every:
            title.append(f" every {duration(view.every)}")
    elapsed = None if view.started is None else max(0.0, now - view.started)
    if elapsed is not None:
        title.append(f" · elapsed {duration(elapsed)}")
    title.truncate(width - 6, overflow="ellipsis")
    if view.all_terminal:
        sub = f"finished {clock(view.now)} · {count(view.succeeded)} ok, " \
              f"{count(view.failed)} failed"
    elif view.tick:
        sub = f"last tick {clock(view.now)} ({view.tick_duration * 1000:.0f} ms)" + \
              (f" · {hint}" if hint else "")
    else:
        sub = hint
    subtitle = Text(sub, style="dim")
    subtitle.truncate(width - 6, overflow="ellipsis")
    return Panel(Group(*body), title=title, title_align="left", subtitle=subtitle,
                 subtitle_align="right", box=box.ROUNDED, padding=(0, 1), width=width,
                 height=height if fill else None, border_style="bright_black")


# --- the live display -------------------------------------------------------------------------


class LiveDashboard:
    """`rulesmon run --live`: the engine's observer is `feed`; rich draws on its own thread."""

    def __init__(self, *, ruleset: str = "", every: float | None = None,
                 group_by: Mapping[str, Sequence[str]] | None = None,
                 console: Console | None = None, refresh_per_second: float = 2.0,
                 screen: bool = True, route_logs: bool = True) -> None:
        self.feed = Feed()
        self.builder = ViewBuilder(ruleset, every, group_by)
        # The terminal's own size, measured on every refresh: COLUMNS/LINES exported by a
        # shell or a test runner would pin it and a resize would never show.
        self.console = console or Console(_environ={
            k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")})
        self.refresh_per_second = refresh_per_second
        self.screen = screen
        self.route_logs = route_logs
        self.code: int | None = None
        self._live: Live | None = None
        self._routing: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._builder: threading.Thread | None = None
        self.frames = 0

    @property
    def observers(self) -> list[Callable[[Any], None]]:
        return [self.feed]

    def view(self) -> View:
        """The newest view, rebuilt only when a report (or a log line) arrived."""
        with self._lock:
            if self.feed.ready.is_set():
                return self.builder.update(self.feed.take())
            return self.builder.view

    def _build(self) -> None:
        """Builds the view as soon as a report arrives: right after a tick, while the engine
        waits for the next one, so building (one pass over the instances) and ticking seldom
        compete; rich's refresh then only draws the ready view."""
        while not self._stop.is_set():
            if self.feed.ready.wait(0.5):
                self.view()

    def renderable(self) -> RenderableType:
        """Called by rich on its refresh thread."""
        view = self.builder.view if self._builder is not None else self.view()
        self.frames += 1
        width, height = self.console.size
        return frame(view, width, height, now=time.time() if view.tick else None)

    def __enter__(self) -> LiveDashboard:
        from rich.live import Live

        if self.route_logs:
            from .. import logsetup

            self._routing = logsetup.route_console(self._log)
            self._routing.__enter__()
        self._live = Live(console=self.console, screen=self.screen, auto_refresh=True,
                          refresh_per_second=self.refresh_per_second,
                          get_renderable=self.renderable, redirect_stdout=True,
                          redirect_stderr=True, transient=False)
        self._builder = threading.Thread(target=self._build, name="dashboard-view",
                                         daemon=True)
        self._builder.start()
        self._live.start()
        return self

    def _log(self, at: float, level: str, text: str) -> None:
        """Log lines while live; notifications already arrive as events."""
        if not text.startswith(("alert_firing", "alert_resolved")):
            self.feed.log(at, level, text)

    def finished(self, code: int) -> None:
        self.code = code

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._builder is not None:
            self._stop.set()
            self._builder.join(timeout=5.0)
            self._builder = None
        if self._routing is not None:
            self._routing.__exit__(exc_type, exc, tb)
            self._routing = None
        view = self.view()
        width, height = self.console.size
        # The final frame, the exit line and the shell's prompt fill the screen exactly: the
        # exit line is cut to one line, as a wrapped one would push the frame's top away.
        if view.tick:
            self.console.print(frame(view, width, max(10, height - 2), fill=False, hint=""))
        if self.code is not None:
            latest = self.feed.latest()
            line = Text(f"exit code {self.code}" + (
                f" · {one_line(latest.run.get('run.summary', ''))}" if latest is not None
                else ""), style="dim", no_wrap=True, overflow="ellipsis")
            line.truncate(width, overflow="ellipsis")
            self.console.print(line, highlight=False, soft_wrap=False)


def render_text(view: View, width: int, height: int) -> str:
    """The frame as plain text at a fixed size (golden files, README)."""
    import io

    console = Console(file=io.StringIO(), width=width, height=height, color_system=None,
                      force_terminal=False, legacy_windows=False, record=True,
                      emoji=False, highlight=False)
    console.print(frame(view, width, height))
    return console.export_text(styles=False)


__all__ = ["LiveDashboard", "empty_view", "frame", "render_text"]
