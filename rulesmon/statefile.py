"""`state_file:`: every job's state as one JSON file, kept current while the run goes on, for
whatever runs next (the SLURM evaluation procedure keeps such a file,
run-experiment-state.json, and hands it to the validation stage).

An engine observer: it receives each tick's report on the engine thread, after the tick is
stored. The file is written at most every `max(every, MIN_GAP)` seconds (each tick when ticks
are 5 s or more apart), and always on a tick where every job has ended and at the end of the
run (`flush`), so its last snapshot is the run's last; when each instance entered its state
is followed on every tick all the same. The file is written whole to a temporary file in the
same folder and renamed over the old one, so a reader sees the previous snapshot or the new
one, never half of either (it is not forced to disk: after a machine crash it may be older,
until the next write). Layout (stable; keys sorted, those of `jobs` are instance keys; an
entry holds the configured facts an instance has, under their full names):

    {"ruleset": "r8-eval", "updated": 1767225600.0, "tick": 12,
     "run": {"total": 8, "pending": 0, "running": 2, "terminal": 6, "succeeded": 5,
             "failed": 1, "all_terminal": false, "counts": {"COMPLETED": 5, ...},
             "elapsed": 912.0, "summary": "..."},
     "jobs": {"evals/12345690": {"job.id": "12345690", "job.state": "COMPLETED", ...,
                                 "previous_state": "RUNNING", "state_since": 1767225540.0}}}

`previous_state` and `state_since` say when an instance entered its current state (as this
run saw it). Numbers that JSON cannot hold (NaN, infinity) are written as null; values that
are not JSON (an unknown fact) as their text.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import jsonout

if TYPE_CHECKING:
    from .engine import TickReport

#: Run facts copied into the file's `run` block (without their `run.` prefix).
RUN_FIELDS = ("total", "pending", "running", "terminal", "succeeded", "failed",
              "all_terminal", "all_succeeded", "counts", "elapsed", "started", "summary")
#: Shortest time between two writes of a run's file (20,000 jobs take ~0.1 s to write).
MIN_GAP = 5.0
#: Types written as they are (a float too when finite: `x - x == 0.0`, see `_put`).
_AS_IS = frozenset({str, int, bool, type(None)})


class StateFileError(OSError):
    """The state file could not be written (one line, for the engine's observer log)."""


class StateFileWriter:
    """The observer that keeps the state file.

    `every` is the run's tick interval and `min_gap` the shortest time between two writes
    (both 0: every tick is written); a tick is written once `max(every, min_gap)` has nearly
    passed (half a tick early, as ticks drift), so ticks of 5 s or more are all written."""

    def __init__(self, path: Path, fields: Sequence[str], ruleset: str, *,
                 every: float = 0.0, min_gap: float = 0.0) -> None:
        self.path = path
        self.fields = tuple(fields)
        self.ruleset = ruleset
        self.gap = max(every, min_gap) - every / 2
        #: instance -> (state, previous state, since)
        self._states: dict[str, tuple[Any, Any, float]] = {}
        self.writes = 0
        self._written_at: float | None = None
        #: the last report, when the cadence held it back (written by `flush`)
        self._held: TickReport | None = None
        # each entry is built in sorted key order, so the document needs no sort_keys
        names = sorted(set(self.fields))
        self._head = tuple(n for n in names if n < "previous_state")
        self._middle = tuple(n for n in names if "previous_state" < n < "state_since")
        self._tail = tuple(n for n in names if n > "state_since")

    def __call__(self, report: TickReport) -> None:
        self._follow(report)
        last = self._written_at
        if report.run.get("run.all_terminal") is True or last is None or \
                report.now - last >= self.gap or report.now < last:
            self._held = None
            self.write(self.snapshot(report))
            self._written_at = report.now
        else:
            self._held = report

    def flush(self) -> None:
        """The run ended: write the last tick if the cadence held it back."""
        held, self._held = self._held, None
        if held is not None:
            self.write(self.snapshot(held))
            self._written_at = held.now

    def _follow(self, report: TickReport) -> None:
        """When each instance entered its state, seen on every tick (written or not)."""
        states = self._states
        for key, facts in report.instances.items():
            state = facts.get("job.state")
            known = states.get(key)
            if known is None or known[0] != state:
                states[key] = (state, None if known is None else known[0], report.now)

    def snapshot(self, report: TickReport) -> dict[str, Any]:
        """The document for one tick, its keys in sorted order (`_follow` has seen it)."""
        states, now = self._states, report.now
        instances = report.instances
        jobs: dict[str, Any] = {}
        for key in sorted(instances):
            facts = instances[key]
            known = states.get(key)
            entry: dict[str, Any] = {}
            _put(entry, facts, self._head)
            entry["previous_state"] = None if known is None else known[1]
            _put(entry, facts, self._middle)
            entry["state_since"] = now if known is None else known[2]
            _put(entry, facts, self._tail)
            jobs[key] = entry
        run = {name[4:]: _plain(report.run[name]) for name in
               sorted(f"run.{n}" for n in RUN_FIELDS) if name in report.run}
        return {"jobs": jobs, "ruleset": self.ruleset, "run": run, "tick": report.tick,
                "updated": now}

    def write(self, document: Mapping[str, Any]) -> None:
        """Replace the file with this document, atomically (temporary file, then rename).
        Keys are written in the document's order (`snapshot` sorts them)."""
        text = jsonout.dumps(document, ensure_ascii=False)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(text)
                fh.write("\n")
            tmp.replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StateFileError(f"cannot write the state file {self.path}: "
                                 f"{exc.strerror or exc}") from None
        self.writes += 1


def _put(entry: dict[str, Any], facts: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """The named facts an instance has; most values are JSON as they are (no call)."""
    as_is = _AS_IS
    for name in names:
        if name in facts:
            v = facts[name]
            entry[name] = v if type(v) in as_is or (type(v) is float and v - v == 0.0) \
                else _plain(v)


def _plain(value: Any) -> Any:
    """A fact value as JSON can hold it (jsonout.plain): non-finite numbers become null,
    containers recurse (maps with their keys sorted), anything else that is not JSON becomes
    its text."""
    return jsonout.plain(value, sort_keys=True)


def writer_for(state_file: Any, base_dir: Path, ruleset: str,
               every: float = 0.0) -> StateFileWriter:
    """The observer for a ruleset's `state_file:` (a config.models.StateFile), written at
    most every `max(every, MIN_GAP)` seconds."""
    path = Path(state_file.path).expanduser()
    return StateFileWriter(path if path.is_absolute() else base_dir / path, state_file.fields,
                           ruleset, every=every, min_gap=MIN_GAP)
