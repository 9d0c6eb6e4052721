"""`state_file:`: every job's state as one JSON file, rewritten each tick, for whatever runs
next (the SLURM evaluation procedure keeps such a file, run-experiment-state.json, and hands
it to the validation stage).

An engine observer: it receives each tick's report on the engine thread, after the tick is
stored. The file is written whole to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a reader sees the previous snapshot or the new one, never half
of either. Layout (stable; keys of `jobs` are instance keys, entries hold the configured facts
an instance has, under their full names):

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
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import TickReport

#: Run facts copied into the file's `run` block (without their `run.` prefix).
RUN_FIELDS = ("total", "pending", "running", "terminal", "succeeded", "failed",
              "all_terminal", "all_succeeded", "counts", "elapsed", "started", "summary")


class StateFileError(OSError):
    """The state file could not be written (one line, for the engine's observer log)."""


class StateFileWriter:
    """The observer that keeps the state file."""

    def __init__(self, path: Path, fields: Sequence[str], ruleset: str) -> None:
        self.path = path
        self.fields = tuple(fields)
        self.ruleset = ruleset
        #: instance -> (state, previous state, since)
        self._states: dict[str, tuple[Any, Any, float]] = {}
        self.writes = 0

    def __call__(self, report: TickReport) -> None:
        self.write(self.snapshot(report))

    def snapshot(self, report: TickReport) -> dict[str, Any]:
        """The document for one tick (also updates when each instance changed state)."""
        fields = self.fields
        jobs: dict[str, Any] = {}
        for key, facts in report.instances.items():
            entry = {name: _plain(facts[name]) for name in fields if name in facts}
            state = facts.get("job.state")
            known = self._states.get(key)
            if known is None or known[0] != state:
                known = (state, None if known is None else known[0], report.now)
                self._states[key] = known
            entry["previous_state"] = known[1]
            entry["state_since"] = known[2]
            jobs[key] = entry
        run = {name: _plain(report.run[f"run.{name}"]) for name in RUN_FIELDS
               if f"run.{name}" in report.run}
        return {"ruleset": self.ruleset, "updated": report.now, "tick": report.tick,
                "run": run, "jobs": jobs}

    def write(self, document: Mapping[str, Any]) -> None:
        """Replace the file with this document, atomically (temporary file, then rename)."""
        text = json.dumps(document, ensure_ascii=False, sort_keys=True, allow_nan=False,
                          default=str)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(text)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StateFileError(f"cannot write the state file {self.path}: "
                                 f"{exc.strerror or exc}") from None
        self.writes += 1


def _plain(value: Any) -> Any:
    """A fact value as JSON can hold it: non-finite numbers become null, containers recurse,
    anything else that is not JSON becomes its text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def writer_for(state_file: Any, base_dir: Path, ruleset: str) -> StateFileWriter:
    """The observer for a ruleset's `state_file:` (a config.models.StateFile)."""
    path = Path(state_file.path).expanduser()
    return StateFileWriter(path if path.is_absolute() else base_dir / path, state_file.fields,
                           ruleset)
