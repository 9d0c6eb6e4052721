"""Rerun or restart: what a run takes over from the one before it on the same state file.

| the previous run ended                        | this run                                      |
| --------------------------------------------- | --------------------------------------------- |
| killed (kill -9, power loss: no recorded end) | resumes: adopts its workers and watched pids, |
| `--once`, a tick limit                        | keeps its alerts (judged again, never         |
|                                               | resolved on unknown facts)                    |
| every job terminal, a `stop` action           | is a new run: launches again; the old alerts  |
|                                               | are retired silently (recorded, not notified) |
| a signal, a state database it could not use   | its launched workers were stopped: they are   |
| (rulesmon stopped its launched workers)       | launched again and their alerts retired; the  |
|                                               | watched jobs and all other alerts resume      |
| no previous run                               | a new run                                     |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from .rules.state import AlertState

Plan = Literal["new", "resume", "relaunch"]

#: Outcomes (runs.outcome) of a run that left its workers running on purpose.
PAUSED = ("one tick", "tick limit")
#: Outcomes of a run that is over: rerunning the ruleset starts a new run.
FINISHED = ("all jobs terminal", "stop action")


def plan(previous: tuple[int, str | None] | None) -> Plan:
    """What this run does with the previous run's work (see the table above)."""
    if previous is None:
        return "new"
    outcome = previous[1]
    if outcome is None or outcome in PAUSED:
        return "resume"
    if outcome in FINISHED:
        return "new"
    return "relaunch"


def retire(alerts: dict[str, dict[str, AlertState]], retired: Callable[[str], bool],
           severity: Mapping[str, str], now: float, fingerprint: Callable[[str, str], str],
           ) -> tuple[list[tuple[str, str, str, AlertState]],
                      list[tuple[float, str, str, str, str, str, str]]]:
    """Reset the alerts of instances that belong to a run that is over (`retired(instance)`),
    without notifying: the changed rows and one `retired` event per alert that was pending
    or firing. Notification counts are kept, so a new firing never reuses an old id."""
    rows: list[tuple[str, str, str, AlertState]] = []
    events: list[tuple[float, str, str, str, str, str, str]] = []
    for rule, states in alerts.items():
        for inst, st in list(states.items()):
            if not retired(inst):
                continue
            fresh = AlertState(notifications=st.notifications, fired_once=st.fired_once)
            if st.status in ("pending", "firing", "done"):
                events.append((now, "retired", rule, inst, severity.get(rule, ""),
                               f"{rule} on {inst}: retired",
                               f"was {st.status} in the previous run, which is over; "
                               "retired without a notification"))
            if st != fresh:
                rows.append((fingerprint(rule, inst), rule, inst, fresh))
            states[inst] = fresh
    return rows, events


def launched_jobs(jobs: Mapping[str, Any]) -> set[str]:
    """Keys of the jobs whose workers rulesmon launches (`local: {command: ...}`)."""
    return {key for key, job in jobs.items()
            if getattr(job, "local", None) is not None and job.local.command}
