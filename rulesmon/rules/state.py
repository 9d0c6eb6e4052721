"""The rule state machine: a pure function of (rule, this tick's result, previous state).

    inactive ──holds──▶ pending ──held for `for`──▶ firing ──clears──▶ inactive (resolved)
                                                      │ repeat: re-notify while it holds
    once: after the first firing an instance stays `done`.
    event rules (conditions on facts that report each occurrence once, `files.<name>.new`):
    every tick the condition holds is a new occurrence and fires again, even while firing.

`keep_firing_for` counts as Prometheus's does (rules/alerting.go, `KeepFiringSince`): from
the first evaluation that would resolve the alert (the condition false, and `clear_when` true
when the rule has one), not from the last true one; the alert stays firing while
`now - that first false evaluation < keep_firing_for` and resolves at the first evaluation where
it is not. A true evaluation in between starts the count afresh.

Missing data (UNKNOWN) is its own outcome: it neither fires nor resolves, and it neither
advances nor resets a `for:` timer. Time only counts while rulesmon is running: the credit of
one tick is capped, so downtime never completes a `for:`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .unknown import Unknown

Status = Literal["inactive", "pending", "firing", "done"]
Kind = Literal["fire", "repeat", "resolve"]


@dataclass(frozen=True)
class Timing:
    """The parts of a rule that drive its state machine (seconds throughout)."""

    for_: float = 0.0
    keep_firing_for: float = 0.0
    repeat_every: float | None = None
    repeat_backoff: float = 1.0
    repeat_max: float | None = None
    resolve: bool = True
    once: bool = False
    times: int | None = None
    ticks: int | None = None
    absent_for: float | None = None
    stale_for: float | None = None
    has_clear: bool = False
    #: The condition reads event facts (each occurrence reported on one tick only, such as
    #: `files.<name>.new_count`): a tick on which it holds is a new occurrence and fires
    #: again even while the alert is firing (new files on consecutive ticks each notify).
    event: bool = False


class AlertState(NamedTuple):
    """Everything remembered about one (rule, instance) between ticks; persisted as JSON.

    A NamedTuple: the engine derives one per held condition per tick, so copying it must be
    cheap.
    """

    status: Status = "inactive"
    held_for: float = 0.0
    last_eval: float | None = None
    since: float | None = None  # when it started firing
    last_true: float | None = None
    #: the first evaluation that would have resolved a firing alert (keep_firing_for counts
    #: from it, as Prometheus's KeepFiringSince); None while the condition holds
    false_since: float | None = None
    notified_at: float | None = None
    repeats: int = 0
    notifications: int = 0
    recent: tuple[bool, ...] = ()
    unknown_for: float = 0.0
    was_unknown: bool = False
    value: Any = None
    value_for: float = 0.0
    fired_once: bool = False
    muted: bool = False

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["recent"] = list(self.recent)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertState:
        known = {k: v for k, v in data.items() if k in cls._fields}
        known["recent"] = tuple(known.get("recent", ()))
        return cls(**known)

    def durable(self, keep_firing: bool) -> tuple[Any, ...]:
        """What must survive a restart; `last_eval` (and `last_true` unless the rule uses
        keep_firing_for) change every tick and need not be written every tick."""
        return (self.status, self.held_for, self.since, self.notified_at, self.repeats,
                self.notifications, self.recent, self.unknown_for, self.was_unknown,
                self.value, self.value_for, self.fired_once, self.muted,
                self.last_true if keep_firing else None, self.false_since)


@dataclass(frozen=True)
class Owed:
    """An action the engine owes because of a transition."""

    kind: Kind
    at: float
    repeat: int = 0


@dataclass(frozen=True)
class Step:
    state: AlertState
    owed: tuple[Owed, ...] = field(default=())
    holds: bool | None = None  # None: unknown


def repeat_interval(t: Timing, repeats: int) -> float | None:
    """10m, 20m, 40m... with backoff 2, capped by `max`."""
    if t.repeat_every is None:
        return None
    interval = t.repeat_every * (t.repeat_backoff ** repeats)
    return min(interval, t.repeat_max) if t.repeat_max else interval


def step(t: Timing, result: bool | Unknown, now: float, interval: float, prev: AlertState,
         *, value: Any = None, cleared: bool | Unknown | None = None) -> Step:
    """Advance one (rule, instance) by one tick.

    `result` is the condition's truth; `value` its raw value (for `stale_for`); `cleared` the
    truth of `clear_when`, when the rule has one.
    """
    if result is True and prev.status == "firing" and t.times is None \
            and t.absent_for is None and t.stale_for is None and not t.event:
        every = repeat_interval(t, prev.repeats)
        if every is None or prev.notified_at is None or now - prev.notified_at < every - 1e-9:
            return Step(prev._replace(last_eval=now, last_true=now, false_since=None), (),
                        True)  # still firing
    credit = 0.0 if prev.last_eval is None else max(0.0, min(now - prev.last_eval,
                                                             interval * 1.5))
    state = prev._replace(last_eval=now)
    holds: bool | None

    if t.absent_for is not None:
        # counted from the first tick the data was seen missing, not from the last good one
        missing = isinstance(result, Unknown)
        unknown_for = (prev.unknown_for + credit if prev.was_unknown else 0.0) if missing \
            else 0.0
        state = state._replace(unknown_for=unknown_for, was_unknown=missing)
        holds = isinstance(result, Unknown) and unknown_for >= t.absent_for
    elif isinstance(result, Unknown):
        holds = None
    elif t.stale_for is not None:
        same = prev.last_eval is not None and value == prev.value
        value_for = prev.value_for + credit if same else 0.0
        state = state._replace(value=_jsonable(value), value_for=value_for)
        holds = value_for >= t.stale_for
    else:
        holds = bool(result)

    if holds is not None and t.times is not None and t.ticks is not None:
        recent = (*prev.recent, holds)[-t.ticks:]
        state = state._replace(recent=recent)
        holds = sum(recent) >= t.times

    if holds is None:  # unknown: no transition, no timer change, no repeat
        return Step(state, (), None)

    owed: list[Owed] = []
    if state.status in ("inactive", "pending"):
        if not holds:
            return Step(state._replace(status="inactive", held_for=0.0), (), False)
        held = prev.held_for + credit if prev.status == "pending" else 0.0
        if held + 1e-9 >= t.for_:
            state = state._replace(status="firing", held_for=held, since=now, last_true=now,
                            notified_at=now, repeats=0, notifications=prev.notifications + 1,
                            fired_once=True)
            owed.append(Owed("fire", now))
        else:
            state = state._replace(status="pending", held_for=held)
        return Step(state, tuple(owed), True)

    if state.status == "done":
        return Step(state, (), holds)

    # firing
    if holds and t.event:  # a new occurrence: notified like a first firing
        state = state._replace(last_true=now, false_since=None, since=now, notified_at=now,
                               repeats=0, notifications=state.notifications + 1)
        return Step(state, (Owed("fire", now),), True)
    if holds:
        state = state._replace(last_true=now, false_since=None)
    else:
        clears = True
        if t.has_clear:
            clears = cleared is True
        if clears and t.keep_firing_for:
            # Prometheus: kept while now - (first false evaluation) < keep_firing_for
            first_false = now if state.false_since is None else state.false_since
            state = state._replace(false_since=first_false)
            if now - first_false < t.keep_firing_for - 1e-9:
                clears = False
        if clears:
            state = state._replace(status="done" if t.once else "inactive", held_for=0.0,
                            repeats=0, false_since=None)
            if t.resolve:
                owed.append(Owed("resolve", now))
            return Step(state, tuple(owed), False)
    every = repeat_interval(t, state.repeats)
    if every is not None and state.notified_at is not None and now - state.notified_at \
            >= every - 1e-9:
        state = state._replace(notified_at=now, repeats=state.repeats + 1,
                        notifications=state.notifications + 1)
        owed.append(Owed("repeat", now, state.repeats))
    return Step(state, tuple(owed), holds)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)
