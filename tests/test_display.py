"""The dashboard's view model and frames (golden files at 80x24 and 120x40), the hand-over from
the engine, log routing while live, and the plain lines.

Regenerate the golden files with `RULESMON_UPDATE_GOLDEN=1 pytest tests/test_display.py`.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from rulesmon import logsetup
from rulesmon.display.feed import Feed
from rulesmon.display.live import render_text
from rulesmon.display.model import View, ViewBuilder
from rulesmon.display.plain import PlainLines

from . import test_display_scenarios as S

GOLDEN = Path(__file__).parent / "golden" / "display"
SIZES = ((80, 24), (120, 40))


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Frames show local clock times: pin the zone so golden files match anywhere."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def view_of(reports: list[Any], every: float = 10.0, **kw: Any) -> View:
    feed = Feed()
    builder = ViewBuilder(every=every, **kw)
    view = builder.view
    for r in reports:
        feed(r)
        view = builder.update(feed.take())
    return view


SCENARIOS = {
    "demo": lambda: view_of(S.demo()),
    "cluster": lambda: view_of([S.cluster()]),
    "bare": lambda: view_of([S.bare()]),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_frame_matches_golden(name: str, size: tuple[int, int]) -> None:
    """The dashboard of a fixed tick report, drawn on a fixed-size console, matches its
    golden file."""
    width, height = size
    text = render_text(SCENARIOS[name](), width, height)
    path = GOLDEN / f"{name}_{width}x{height}.txt"
    if os.environ.get("RULESMON_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("size", [(40, 8), (60, 12), (80, 24), (100, 30), (120, 40),
                                  (200, 60), (80, 10)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_frame_fits_any_terminal(name: str, size: tuple[int, int]) -> None:
    """Every frame fills exactly the terminal's lines and no line is wider than it."""
    width, height = size
    lines = render_text(SCENARIOS[name](), width, height).splitlines()
    assert len(lines) == height
    assert all(cell_len(line) <= width for line in lines)
    assert lines[0].startswith("╭") and lines[-1].startswith("╰")


def test_eta_shows_how_far_the_estimates_agree() -> None:
    """A job's ETA reads `ETA 1m 55s` when its estimates agree, `ETA ~…` when they differ
    and `ETA ~… (low)` when they differ widely; the overall ETA carries the confidence of
    the job that finishes last."""
    text = render_text(view_of(S.demo()), 160, 40)
    rows = {line.split()[2]: line for line in text.splitlines() if "embed/" in line
            and "RUNNING" in line and "items" in line}
    assert "· ETA 1m 55s ·" in rows["embed/0"]
    assert "· ETA ~1m 54s ·" in rows["embed/1"]
    assert "· ETA ~1m 52s (low) ·" in rows["embed/2"]
    header = next(line for line in text.splitlines() if "Progress" in line)
    assert "ETA 1m 55s" in header  # embed/0 (high) finishes last


def test_final_frame_and_exit_line_fit_a_24_row_terminal() -> None:
    """When the run ends, the final frame, a one-line exit line (however long the summary)
    and the shell's prompt fit 24 rows: the frame's top border is not scrolled away."""
    from dataclasses import replace
    from types import MappingProxyType

    from rich.console import Console

    from rulesmon.display.live import LiveDashboard

    out = io.StringIO()
    console = Console(file=out, width=80, height=24, color_system=None, force_terminal=False,
                      legacy_windows=False, emoji=False, highlight=False)
    dash = LiveDashboard(ruleset="embed-batch-5", every=10.0, console=console, screen=False,
                         route_logs=False)
    reports = S.demo()
    summary = "4 job instance(s): 3 RUNNING, 1 FAILED; 0 succeeded, 1 failed; total time " \
        "2h 34m; slowest embed/2 at 72% of 25,000 items"
    reports[-1] = replace(reports[-1], run=MappingProxyType({**reports[-1].run,
                                                             "run.summary": summary}))
    for r in reports:
        dash.feed(r)
    dash.finished(1)
    dash.__exit__(None, None, None)
    lines = out.getvalue().splitlines()
    assert len(lines) <= 23, lines  # one row left for the prompt
    assert lines[0].startswith("╭─ rulesmon · embed-batch-5") and lines[-2].startswith("╰")
    assert lines[-1].startswith("exit code 1 · 4 job instance(s)") and lines[-1].endswith("…")
    assert cell_len(lines[-1]) <= 80


def test_small_terminal_collapses_and_counts_the_rest() -> None:
    """At 80x24 a 5,000-job cluster shows the failures first and says how many it hides."""
    text = render_text(SCENARIOS["cluster"](), 80, 24)
    jobs = text[text.index("─ Jobs"):]
    first_rows = jobs.splitlines()[1:5]
    assert all("FAILED" in r or "TIMEOUT" in r for r in first_rows), first_rows
    assert "+4,996 more: 2,455 PENDING, 1,509 RUNNING, 1,032 COMPLETED" in text
    assert "evals/812009" in text  # the idle GPU is one of the workers worth a row
    assert "probe slurm failing (2×)" in text


def test_training_runs_are_grouped_by_run_uuid() -> None:
    """DAG nodes with VARS run_uuid/epoch become one row per training run with epochs done."""
    view = SCENARIOS["cluster"]()
    rows = {r.key: r for r in view.groups.rows}
    assert set(rows) == {"0a3f9c0", "1a3f9c1", "2a3f9c2", "3a3f9c3"}
    run2 = rows["2a3f9c2"]
    assert (run2.total, run2.done, run2.failed, run2.epochs_done, run2.epochs_total) == \
        (15, 9, 1, 3, 5)
    assert run2.rank == 0 and run2.status == "failed"


def test_missing_facts_leave_sections_out() -> None:
    """Jobs that report only a state get rows without bars; no other section appears."""
    view = SCENARIOS["bare"]()
    assert [r.key for r in view.jobs.rows] == ["sim/1", "sim/2", "sim/3", "watch/-"]
    assert view.overall is None
    assert view.workers.total == view.files.total == view.groups.total == 0
    assert not view.checkpoints and not view.disks
    text = render_text(view, 80, 24)
    assert "Workers" not in text and "Progress" not in text and "1 without state" in text


def test_state_changes_and_notifications_become_recent_events() -> None:
    """A state change and the notifications of a tick show up newest first."""
    view = SCENARIOS["demo"]()
    first = view.events[0]
    assert first.kind == "state" and first.subject == "embed/3"
    assert "RUNNING → FAILED (exit 137) oom" in first.text
    kinds = [(e.kind, e.subject) for e in view.events]
    assert ("fire", "embed/3") in kinds and ("resolve", "embed/2") in kinds
    assert ("fire", "embed/0") in kinds  # from the first report


def test_burst_of_state_changes_is_summarised() -> None:
    """Hundreds of jobs starting at once give one summary event, not hundreds."""
    pending = {f"a/{i}": {"job.key": "a", "job.state": "PENDING"} for i in range(300)}
    running = {k: {**v, "job.state": "RUNNING"} for k, v in pending.items()}
    running["a/7"] = {"job.key": "a", "job.state": "FAILED", "job.terminal": True,
                      "job.succeeded": False, "job.exit_code": 2}
    view = view_of([S.report(1, S.T0, pending), S.report(2, S.T0 + 10, running)])
    states = [e for e in view.events if e.kind == "state"]
    assert [(e.subject, e.text) for e in states] == [
        ("a/7", "PENDING → FAILED (exit 2)"),
        ("", "300 state changes: 299 PENDING→RUNNING, 1 PENDING→FAILED")]


def test_builder_keeps_only_the_rows_it_can_show() -> None:
    """However many instances, the view holds at most `rows` rows per section, and the
    counts still cover every instance."""
    view = view_of([S.cluster()], rows=12)
    assert len(view.jobs.rows) == 12 and view.jobs.total == 5000
    assert sum(n for _s, n in view.counts) == 5000
    assert len(view.workers.rows) <= 12


def test_feed_hands_over_the_newest_report_and_every_event() -> None:
    """A reader that falls behind gets the newest report and the events of all reports."""
    feed = Feed()
    reports = S.demo()
    for r in reports:
        feed(r)
    batch = feed.take()
    assert batch.report is reports[-1] and batch.reports == 3
    assert len(batch.events) == sum(len(r.events) for r in reports)
    assert feed.take().report is None  # nothing new since


def test_console_log_is_routed_while_live(capsys: pytest.CaptureFixture[str]) -> None:
    """While the dashboard owns the terminal, warnings reach it instead of stderr; the
    console log comes back afterwards."""
    log = logsetup.setup("info", color=False)
    got: list[tuple[float, str, str]] = []
    top = logging.getLogger()
    saved = top.handlers[:], top.level
    top.handlers.clear()  # as in `rulesmon run`: nothing configured outside rulesmon
    top.setLevel(logging.WARNING)
    library = logging.getLogger("a_library_without_handlers")
    try:
        with logsetup.route_console(lambda at, level, text: got.append((at, level, text))):
            log.warning("probe_failed", probe="slurm", error="squeue: timed out")
            log.info("state_change", instance="a/1")
            library.warning("stray library warning")
    finally:
        top.handlers[:] = saved[0]
        top.setLevel(saved[1])
    log.info("after_live")
    err = capsys.readouterr().err
    assert [(lvl, txt) for _at, lvl, txt in got] == [
        ("warning", "probe_failed error=squeue: timed out probe=slurm"),
        ("warning", "stray library warning")]
    assert "probe_failed" not in err and "state_change" not in err
    assert "after_live" in err


# --- plain lines --------------------------------------------------------------------------


def plain(reports: list[Any], **kw: Any) -> list[str]:
    printer = PlainLines(io.StringIO(), **kw)
    out: list[str] = []
    for r in reports:
        printer.feed(r)
        out += printer.lines(printer.feed.take())
    return out


def _slurm(state: str, **facts: Any) -> dict[str, Any]:
    terminal = state in ("COMPLETED", "FAILED", "TIMEOUT")
    return {"job.key": "evals", "job.id": "12345690", "job.source": "slurm",
            "job.name": "r8_lr1e-5/capitalization/epoch0", "job.state": state,
            "job.terminal": terminal, **facts}


def test_plain_lines_follow_the_slurm_document() -> None:
    """A job going PENDING → RUNNING → TIMEOUT gives status checks, state changes, flagged
    compute metrics once accounting has them, and ALL_COMPLETE."""
    metrics = {"job.elapsed": 3600.0, "job.time_limit": 3600.0, "job.exceeded": True,
               "job.mem_used": 3.2e9, "job.mem_req": 16e9, "job.mem_eff": 20.0,
               "job.cpu_eff": 87.0}
    reports = [
        S.report(1, S.T0, {"evals/12345690": _slurm("PENDING", **{"job.reason": "Priority"})}),
        S.report(2, S.T0 + 60, {"evals/12345690": _slurm("RUNNING")}),
        S.report(3, S.T0 + 3660, {"evals/12345690": _slurm("TIMEOUT", **{
            "job.elapsed": 3600.0, "job.exit_code": 0, "job.diagnosis": "time_limit"})},
            run={"run.all_terminal": False}),
        S.report(4, S.T0 + 3720, {"evals/12345690": _slurm("TIMEOUT", **metrics)},
                 run={"run.all_terminal": True, "run.elapsed": 3720.0}),
    ]
    lines = plain(reports)
    text = "\n".join(lines)
    assert lines[:2] == ["[2026-01-01 00:00:00] STATUS_CHECK: tick 1",
                         "  Result: 1 job found - 1 PENDING, 0 RUNNING, 0 COMPLETED"]
    assert ("[2026-01-01 00:01:00] STATE_CHANGE: evals/12345690 "
            "(r8_lr1e-5/capitalization/epoch0)\n  Previous: PENDING\n  Current: RUNNING\n"
            "  Job ID: 12345690") in text
    # accounting lag: no figures at tick 3, so the metrics wait for tick 4
    assert text.count("COMPUTE_METRICS") == 1
    assert ("[2026-01-01 01:02:00] COMPUTE_METRICS: evals/12345690 "
            "(r8_lr1e-5/capitalization/epoch0)\n  Job ID: 12345690\n"
            "  Wall time: 1h 0m / 1h 0m (**EXCEEDED**)\n  Memory: 2.98 GiB / 14.90 GiB (20%)\n"
            "  CPU Efficiency: 87%\n"
            "  WARNING: time limit exceeded - consider raising it when resubmitting") in text
    assert ("[2026-01-01 01:02:00] ALL_COMPLETE: Monitoring finished\n"
            "  Summary: 1 job - 1 TIMEOUT\n  Succeeded: 0, failed: 1\n  Total time: 1h 2m") \
        in text


def test_plain_metrics_do_not_wait_for_ever() -> None:
    """When accounting never answers, the metrics are printed with what is known."""
    reports = [S.report(1, S.T0, {"e/1": _slurm("RUNNING")})]
    reports += [S.report(t, S.T0 + t, {"e/1": _slurm("FAILED", **{"job.elapsed": 5.0})})
                for t in (2, 3, 4, 5)]
    lines = plain(reports, metrics_wait=2)
    at = [i for i, line in enumerate(lines) if "COMPUTE_METRICS" in line]
    assert len(at) == 1 and lines[at[0]].startswith("[2026-01-01 00:00:04]")
    assert lines[at[0] + 2] == "  Wall time: 5s"


def test_plain_metrics_wait_while_accounting_is_pending() -> None:
    """While the SLURM probe says accounting is still pending, the metrics wait past
    `metrics_wait`, and come once with sacct's figures."""
    pending = {"job.accounted": "pending", "job.terminal": False}
    reports = [S.report(1, S.T0, {"e/1": _slurm("RUNNING")})]
    reports += [S.report(t, S.T0 + t, {"e/1": _slurm("COMPLETED", **pending)})
                for t in range(2, 8)]
    reports.append(S.report(8, S.T0 + 8, {"e/1": _slurm("COMPLETED", **{
        "job.accounted": "done", "job.elapsed": 7.0, "job.cpu_eff": 50.0})}))
    lines = plain(reports, metrics_wait=2)
    at = [i for i, line in enumerate(lines) if "COMPUTE_METRICS" in line]
    assert len(at) == 1 and lines[at[0]].startswith("[2026-01-01 00:00:08]")
    assert "  CPU Efficiency: 50%" in lines[at[0]:at[0] + 6]


def test_plain_status_check_only_on_change_or_heartbeat() -> None:
    """Quiet ticks print nothing; a change of counts or the heartbeat prints a check."""
    same = {"e/1": _slurm("RUNNING")}
    reports = [S.report(t, S.T0 + 10 * t, same) for t in range(1, 8)]
    lines = plain(reports, heartbeat=60.0, resource_every=100)
    checks = [line for line in lines if "STATUS_CHECK" in line]
    assert checks == ["[2026-01-01 00:00:10] STATUS_CHECK: tick 1",
                      "[2026-01-01 00:01:10] STATUS_CHECK: tick 7"]


def test_plain_resource_status_every_fifth_tick_and_capped() -> None:
    """Every 5th tick running jobs with GPU figures get a RESOURCE_STATUS line (the least
    busy first past the cap, then one summary line); jobs without figures are skipped."""
    rows = {f"e/{i}": _slurm("RUNNING", **{"gpu.available": True, "gpu.util": 50.0 + i,
                                           "gpu.mem_used": 30e9, "gpu.mem_total": 80e9})
            for i in range(30)}
    rows["e/x"] = _slurm("RUNNING")
    lines = plain([S.report(t, S.T0 + t, rows) for t in range(1, 6)], max_resource=3)
    res = [line for line in lines if "RESOURCE_STATUS" in line]
    assert res == [
        "[2026-01-01 00:00:05] RESOURCE_STATUS: e/0 (r8_lr1e-5/capitalization/epoch0)",
        "[2026-01-01 00:00:05] RESOURCE_STATUS: e/1 (r8_lr1e-5/capitalization/epoch0)",
        "[2026-01-01 00:00:05] RESOURCE_STATUS: e/2 (r8_lr1e-5/capitalization/epoch0)",
        "[2026-01-01 00:00:05] RESOURCE_STATUS: +27 more running jobs; "
        "mean GPU utilization 64%"]
    assert "  GPU Utilization: 50% | GPU Memory: 30.0 GB/80.0 GB" in lines


def test_plain_alerts_and_stop_line() -> None:
    """Notifications print as ALERT with their message; a run stopped early says so."""
    printer = PlainLines(io.StringIO())
    with printer:
        for r in S.demo():
            printer.feed(r)
        printer.finished(130)
    text = printer.out.getvalue()  # type: ignore[attr-defined]
    assert ("ALERT: worker-died embed/3 (critical)\n  worker 3 killed (exit 137, OOM)\n"
            "  Traceback (most recent call last)") in text
    assert "RESOLVED: gpu-idle embed/2" in text
    assert text.rstrip().endswith(
        "STOPPED: monitoring ended before every job finished (exit code 130)\n"
        "  Result: 0 PENDING, 3 RUNNING, 0 COMPLETED, 1 FAILED")


def test_plain_lines_survive_a_closed_pipe() -> None:
    """A reader that goes away stops the lines, never the watching."""

    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError

    printer = PlainLines(Closed())
    with printer:
        printer.feed(S.bare())
        printer.finished(0)
    assert printer._broken
