"""`rulesmon test`: unit tests for rules, in the spirit of promtool's rule tests.

A test file gives, per job instance, a timed series of facts and the alert transitions
expected at given ticks. The real engine runs the real rules over those facts with a
simulated clock; a mismatch prints a readable diff.

    interval: 30s
    tests:
      - name: a crash notifies once
        series:
          train/1:
            job.key: train                      # a constant for every tick
            job.state: RUNNING RUNNING FAILED   # one value per tick; the last one holds
            gpu.util: 90 _ 10x3                 # _ is missing data; 10x3 is 10 10 10 10
        expect:
          - {tick: 3, rule: job-failed, instance: train/1, kind: fire}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from .config.loader import Loaded, display_path, from_validation
from .config.models import Duration, Model
from .config.nodes import to_plain
from .config.yamlio import parse, read_text
from .diagnostics import RulesetError
from .probes.base import Facts, TickContext

_MISSING_TOKENS = {"_", "~", "null"}
_SERIES = re.compile(r"^(-?\d+(?:\.\d+)?)(?:([+-]\d+(?:\.\d+)?))?x(\d+)$")


class Expect(Model):
    """One expected alert transition."""

    tick: int = Field(ge=1, description="Tick number, from 1.")
    rule: str = Field(description="Rule name.")
    instance: str = Field("run", description="Instance key (`train/1`), or `run`.")
    kind: Literal["fire", "repeat", "resolve"] = Field("fire", description="Transition.")
    title: str | None = Field(None, description="Exact rendered title.")
    message: str | None = Field(None, description="Exact rendered body.")
    message_contains: str | None = Field(None, description="Text the body must contain.")


class Case(Model):
    """One test: series of facts and the transitions they must produce, no more, no less."""

    name: str = Field(description="What the test shows.")
    ticks: int | None = Field(None, ge=1, le=100_000,
                              description="Ticks to run (default: the longest series).")
    series: dict[str, dict[str, Any]] = Field(description="Instance → fact → values.")
    expect: list[Expect] = Field(default_factory=list, description="Expected transitions.")


class TestFile(Model):
    """A rule test file."""

    interval: Duration | None = Field(None, description="Seconds between ticks (default: "
                                      "the ruleset's every).")
    tests: list[Case] = Field(description="Test cases.")


def expand(values: Any) -> list[Any]:
    """A series as written → one value per tick (`_` is missing data)."""
    if isinstance(values, list):
        return [_MISSING if v is None or v == "_" else v for v in values]
    if isinstance(values, str):
        out: list[Any] = []
        for token in values.split():
            m = _SERIES.match(token)
            if m:
                start, step, n = float(m.group(1)), float(m.group(2) or 0), int(m.group(3))
                out += [_num(start + step * i) for i in range(n + 1)]
            elif token in _MISSING_TOKENS:
                out.append(_MISSING)
            else:
                out.append(_scalar(token))
        return out
    return [values]


def _num(x: float) -> int | float:
    return int(x) if x == int(x) else x


def _scalar(token: str) -> Any:
    for conv in (int, float):
        try:
            return conv(token)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(token, token)


_MISSING = object()


class SeriesProbe:
    """Feeds the series of one test case, one tick at a time."""

    name = "series"

    def __init__(self, series: Mapping[str, Mapping[str, Any]]) -> None:
        self.series = {inst: {k: expand(v) for k, v in facts.items()}
                       for inst, facts in series.items()}
        self.tick = 0

    def length(self) -> int:
        return max((len(v) for facts in self.series.values() for v in facts.values()),
                   default=1)

    def start(self, ctx: TickContext) -> None:
        return None

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        self.tick += 1
        out: dict[str, Facts] = {}
        for inst, facts in self.series.items():
            row: Facts = {}
            if inst != "run":
                row["job.key"] = inst.split("/", 1)[0]
                row.setdefault("job.source", "local")
            for key, values in facts.items():
                value = values[min(self.tick, len(values)) - 1]
                if value is not _MISSING:
                    row[key] = value
            out["" if inst == "run" else inst] = row
        return out

    def close(self) -> None:
        return None


@dataclass
class Result:
    name: str
    ok: bool
    diff: list[str] = field(default_factory=list)


def load_tests(path: Path) -> TestFile:
    display = display_path(path)
    tree = parse(read_text(path, display), display)
    try:
        return TestFile.model_validate(to_plain(tree), strict=True)
    except ValidationError as exc:
        raise RulesetError(from_validation(exc, tree, TestFile)) from None


class NullLog:
    """A logger that drops everything (rule tests print only their verdicts)."""

    def bind(self, **_: Any) -> NullLog:
        return self

    def __getattr__(self, _name: str) -> Any:
        return lambda *a, **k: None


def run_case(loaded: Loaded, case: Case, interval: float) -> Result:
    from .engine import Engine

    probe = SeriesProbe(case.series)
    recorded: list[Any] = []

    class Recorder:
        def send(self, targets: list[str], note: Any) -> None:
            recorded.append(note)

    clock = [1_767_225_600.0]
    engine = Engine(loaded, state_path=Path(":memory:"), log=NullLog(),
                    sender=Recorder(), probes=[probe], clock=lambda: clock[0])
    engine.interval = interval
    got: list[tuple[int, str, str, str, Any]] = []
    try:
        for tick in range(1, (case.ticks or probe.length()) + 1):
            clock[0] += interval
            outcome = engine.tick(clock[0])
            got += [(tick, n.rule, n.instance, n.kind, n) for n in outcome.fired]
    finally:
        engine.close()
    want = {(e.tick, e.rule, e.instance, e.kind): e for e in case.expect}
    have = {(t, r, i, k): n for t, r, i, k, n in got}
    diff = [f"  missing: tick {t} {k} {r} [{i}]" for (t, r, i, k) in sorted(want)
            if (t, r, i, k) not in have]
    diff += [f"  unexpected: tick {t} {k} {r} [{i}]: {n.title}" for (t, r, i, k), n
             in sorted(have.items(), key=lambda x: x[0]) if (t, r, i, k) not in want]
    for key, e in sorted(want.items()):
        n = have.get(key)
        if n is None:
            continue
        if e.title is not None and n.title != e.title:
            diff.append(f"  tick {key[0]} {key[1]} title:\n    want {e.title!r}\n    got  "
                        f"{n.title!r}")
        if e.message is not None and n.body != e.message:
            diff.append(f"  tick {key[0]} {key[1]} message:\n    want {e.message!r}\n    got  "
                        f"{n.body!r}")
        if e.message_contains is not None and e.message_contains not in n.body:
            diff.append(f"  tick {key[0]} {key[1]} message lacks {e.message_contains!r}:\n"
                        f"    got {n.body!r}")
    return Result(case.name, not diff, diff)


def run_file(ruleset: Path, tests: Path, extends_path: Sequence[str | Path] = ()
             ) -> list[Result]:
    """Run every case; a ruleset that does not lint is a RulesetError before any case runs."""
    from .lint import load_checked

    loaded = load_checked(ruleset, extends_path=extends_path)
    spec = load_tests(tests)
    interval = spec.interval or float(loaded.ruleset.every)
    return [run_case(loaded, case, interval) for case in spec.tests]
