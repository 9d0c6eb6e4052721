"""SIGHUP: the ruleset read again, checked as `rulesmon lint` checks it, and applied between
two ticks, keeping everything that still holds.

What a reload keeps and changes (docs/reliability.md, "Reload"):

- **Refused whole** when the file does not load or lint finds an error in it (or the
  ruleset's `name:` changed, which names its state): the old ruleset keeps running untouched,
  and the first error is logged (`reload_refused`) and printed as one line on stderr with its
  file:line:col.
- **Rules** are matched by name, as Prometheus matches alerting rules: a rule that still
  exists keeps its alerts' states (time held toward `for:`, firing, repeat timers, muted), even
  when its condition changed; the next tick evaluates the new condition against that state
  (a firing alert whose new condition is false resolves then, as it would have without a
  reload). The alerts of a rule that no longer exists are retired silently: no resolved
  notification for a rule nobody asks about any more. A new rule starts inactive.
- **Notify targets, messages, `every:`, defaults, `summary:`** take effect at once: the next
  tick runs with them; the delivery workers restart with the new targets when those changed
  (what is owed to a removed target stays owed in the state database).
- **`jobs:`, `history:`, `state_file:` and `defaults.tail`** are read by the probes and the
  recorder when the run starts; a probe holds log offsets, launched workers and file
  baselines that a rebuild would lose or repeat. When they changed, that part is refused with
  "jobs changed: restart rulesmon to apply" and the rest applied, over the jobs still watched.

Every reload, applied or refused, is one event in the state database (`reload`,
`reload_refused`) and one log line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import redact
from .config.loader import Loaded
from .diagnostics import RulesetError
from .rules.program import build

if TYPE_CHECKING:
    from .engine import Engine

#: The parts of a ruleset its probes and recorder read when the run starts.
RESTART_ONLY = ("jobs", "history", "state_file")


class Refused(Exception):
    """A reload that cannot be applied; its text is the one-line reason."""


def loader(path: str | Path, extends_path: Sequence[str | Path] = (),
           every: float | None = None) -> Callable[[], Loaded]:
    """How `rulesmon run` reads its ruleset again: the same file and `--extends-path`, lint's
    errors refused (RulesetError), and `--every` still overriding the file's `every:`."""

    def load_again() -> Loaded:
        from .lint import load_checked

        loaded = load_checked(path, extends_path=extends_path)
        if every is not None:
            loaded = dataclasses.replace(loaded, ruleset=loaded.ruleset.model_copy(
                update={"every": every}))
        return loaded

    return load_again


def between_ticks(engine: Engine, deadline: float) -> float:
    """Sleep until the next tick is due (time.monotonic() `deadline`), applying a reload asked
    for meanwhile or during the last tick; returns the deadline, moved when `every:` changed."""
    while True:
        engine._wake.wait(max(0.0, deadline - time.monotonic()))
        if not engine._reload_asked or engine.interrupted is not None:
            return deadline
        engine._wake.clear()
        engine._reload_asked = False  # SIGHUPs from here on ask for one more reload
        before = engine.interval
        try:
            reload(engine)
        except Exception as exc:  # a bug of rulesmon's: said in one line, the watching goes on
            engine.log.error("reload_failed", error=_one_line(exc), hint="please report this")
        deadline += engine.interval - before


def reload(engine: Engine) -> bool:
    """Read the ruleset again and apply it; False (and the old ruleset running) when refused."""
    if engine.reload_from is None:
        return False
    try:
        try:
            new = engine.reload_from()
        except RulesetError as exc:
            raise Refused(_first(exc)) from None
        except RecursionError:
            raise Refused("the document nests too deep") from None
        except Exception as exc:  # never a traceback for a user's file: say it and go on
            raise Refused(f"internal error {_one_line(exc)} (please report this)") from None
        if new.ruleset.name != engine.rs.name:
            raise Refused(f"the ruleset's name changed ({engine.rs.name!r} to "
                          f"{new.ruleset.name!r}): restart rulesmon to use it (its state is "
                          "kept under its name)")
        new, restart = _keep_restart_only(engine.loaded, new)
        with engine._shielded():  # a signal never leaves the engine half-swapped
            retarget = _apply(engine, new, restart)
    except Refused as exc:
        _refused(engine, str(exc))
        return False
    if engine.delivery is not None:
        if retarget:  # not shielded: it waits for a message being sent, and a signal may not
            engine.delivery = _restart_delivery(engine.delivery, new)
        else:  # its workers read them at each message
            engine.delivery.secrets = new.secrets
    _report(engine, restart)
    return True


def _first(exc: RulesetError) -> str:
    if not exc.diagnostics:
        return str(exc)
    more = len(exc.diagnostics) - 1
    return exc.diagnostics[0].render() + (f" (and {more} more)" if more else "")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _keep_restart_only(old: Loaded, new: Loaded) -> tuple[Loaded, list[str]]:
    """The new ruleset with the parts that need a restart as they were, and their names."""
    old_rs, rs = old.ruleset, new.ruleset
    restart = [part for part in RESTART_ONLY if getattr(old_rs, part) != getattr(rs, part)]
    update: dict[str, Any] = {part: getattr(old_rs, part) for part in restart}
    if old_rs.defaults.tail != rs.defaults.tail:  # the logs probe's, set at start
        restart.append("defaults.tail")
        update["defaults"] = rs.defaults.model_copy(update={"tail": old_rs.defaults.tail})
    if not update:
        return new, []
    return dataclasses.replace(new, ruleset=rs.model_copy(update=update)), restart


def _apply(engine: Engine, new: Loaded, restart: list[str]) -> bool:
    """The new ruleset in place of the old, its reload recorded; True when the notify
    targets changed."""
    rs = new.ruleset
    try:
        program = build(rs)
    except Exception as exc:  # what lint let through and compiling does not: not a traceback
        raise Refused(f"internal error {_one_line(exc)} (please report this)") from None
    now_by_name = {r.name: r for r in program.rules}
    before = engine.rules_by_name
    added = [n for n in now_by_name if n not in before]
    removed = [n for n in before if n not in now_by_name]
    changed = [n for n, r in now_by_name.items() if n in before and before[n].rule != r.rule]
    # the states of rules not in the new ruleset (removed now, or left by an earlier run), and
    # any left under the name of a rule that is new now: it starts inactive
    retired = sorted(n for n in engine.alerts if n not in now_by_name or n in added)
    firing = sum(1 for n in retired for st in engine.alerts[n].values()
                 if st.status == "firing")
    watch_nothing = [r.name for r in program.rules
                     if r.jobs and not r.jobs & set(rs.jobs) and r.scope != "run"]
    parts = [f"{len(now_by_name)} rules: {len(added)} added, {len(removed)} removed, "
             f"{len(changed)} changed"]
    if firing:
        parts.append(f"{firing} alerts of removed rules retired without notification")
    if restart:
        parts.append(f"{', '.join(restart)} changed: restart rulesmon to apply")
    if watch_nothing:
        parts.append(f"rules naming jobs not watched yet: {', '.join(watch_nothing)}")
    summary = "; ".join(parts)
    now = engine.clock()
    event = (now, "reload", "", "run", "warning" if restart else "info", "ruleset reloaded",
             summary)
    try:  # recorded first: when the state database cannot take it, nothing changes
        with engine.store.transaction() as db:
            db.executemany("DELETE FROM alerts WHERE rule = ?", [(n,) for n in retired])
            _insert_event(db, engine, event)
    except (sqlite3.Error, OSError) as exc:
        raise Refused(f"the state database could not record it: {_one_line(exc)}") from None
    notify_changed = bool(rs.notify != engine.rs.notify)
    engine.loaded, engine.rs, engine.program = new, rs, program
    engine.rules_by_name = now_by_name
    for name in retired:
        engine.alerts.pop(name, None)
    engine._durable = {k: v for k, v in engine._durable.items() if k[0] not in retired}
    engine._eval_errors = {e for e in engine._eval_errors if e[0] not in {*changed, *added}}
    engine._group_cache = None
    engine._target_cache = {}
    derived = max(1.0, min(engine.interval * 0.8, 120.0))
    engine.interval = float(rs.every)
    if engine.probe_timeout == derived:  # not one the caller chose
        engine.probe_timeout = max(1.0, min(engine.interval * 0.8, 120.0))
    engine.secrets = new.secrets
    redact.activate(new.secrets)
    engine.store.secrets = new.secrets
    if engine.recorder is not None:
        engine.recorder.secrets = new.secrets
    log = engine.log.warning if restart else engine.log.info
    log("ruleset_reloaded", added=",".join(added) or "-", removed=",".join(removed) or "-",
        changed=",".join(changed) or "-", retired_alerts=firing,
        restart_needed=",".join(restart) or "-",
        **({"watching_nothing": ",".join(watch_nothing)} if watch_nothing else {}))
    return notify_changed


def _report(engine: Engine, restart: list[str]) -> None:
    if restart:
        _say(f"rulesmon: reloaded {engine.loaded.path}; {', '.join(restart)} changed: "
             "restart rulesmon to apply (the rest is applied)")


def _restart_delivery(old: Any, new: Loaded) -> Any:
    """Delivery workers for the new targets. The old ones finish the message they are
    sending first (its attempt is recorded): two workers on one target could send one
    message twice."""
    from .delivery import Delivery

    longest = max((t.timeout for t in old.targets.values()), default=0.0)
    old.close(float(longest) + 5.0)
    fresh = Delivery(old.db_path, new.ruleset.notify, new.secrets, old.log, send=old.send_fn,
                     clock=old.clock)
    fresh.start()
    fresh.poke()
    return fresh


def _insert_event(db: sqlite3.Connection, engine: Engine,
                  event: tuple[float, str, str, str, str, str, str]) -> None:
    t, kind, rule, inst, sev, title, body = event
    mask = engine.store.secrets.scrub
    db.execute("INSERT INTO events (t, kind, rule, instance, severity, title, body)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)",
               (t, kind, rule, mask(inst), sev, mask(title), mask(body)))


def _refused(engine: Engine, reason: str) -> None:
    engine.log.error("reload_refused", error=reason, hint="the previous ruleset keeps running")
    with contextlib.suppress(sqlite3.Error, OSError), engine.store.transaction() as db:
        _insert_event(db, engine, (engine.clock(), "reload_refused", "", "run", "error",
                                   "reload refused", reason))
    _say(f"rulesmon: reload refused, the previous ruleset keeps running: {reason}")


def _say(line: str) -> None:
    """One plain line on stderr, unless a full-screen display owns the terminal (the log line
    reaches it there)."""
    from .logsetup import CONSOLE

    if not any(h.get_name() == CONSOLE for h in logging.getLogger("rulesmon").handlers):
        return
    with contextlib.suppress(OSError, ValueError):  # a closed terminal: the log has it
        sys.stderr.write(redact.scrub(line) + "\n")
        sys.stderr.flush()
