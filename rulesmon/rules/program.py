"""A ruleset compiled for the engine: every condition compiled once, timings resolved."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..config.models import Action, NotifyAction, Rule, Ruleset
from .compile import Compiled, compile_condition, windows
from .expressions import parse
from .state import Timing

#: Default title and body, used when a rule gives none. The body says more the more severe the
#: alert: critical and error alerts carry the job's state, exit, diagnosis and last log lines.
DEFAULT_TITLE = ("{% if alert.state == 'resolved' %}[RESOLVED]{% else %}"
                 "[{{ rule.severity | upper }}]{% endif %} {{ rule.name }}: {{ alert.instance }}")
DEFAULT_MESSAGE = """\
{%- if alert.state == 'resolved' -%}
{{ rule.description or rule.name }}: resolved after {{ alert.duration | duration }}.
{%- else -%}
{{ rule.description or rule.name }}
{%- if job is defined and job.state is defined %}
job {{ job.name | default(alert.instance) }} ({{ job.id | default('?') }}): {{ job.state }}
{%- if job.exit_code is defined %}, exit code {{ job.exit_code }}{% endif %}
{%- if job.diagnosis_detail is defined %}, {{ job.diagnosis_detail }}{% endif %}
{%- if job.diagnosis_hint is defined %} ({{ job.diagnosis_hint }}){% endif %}
{%- endif %}
{%- if rule.severity in ('critical', 'error') and log is defined and log.tail is defined %}
last log lines:
{{ log.tail | tail(10) }}
{%- endif %}
{%- if run is defined and alert.instance == 'run' %}
{{ run.summary }}
{%- endif %}
{%- endif %}"""


@dataclass(frozen=True)
class CompiledRule:
    name: str
    rule: Rule
    condition: Compiled
    clear: Compiled | None
    timing: Timing
    severity: str
    scope: str
    jobs: frozenset[str]
    actions: tuple[Action, ...]
    title: str
    message: str
    labels: dict[str, str]

    def applies_to(self, job: str) -> bool:
        return not self.jobs or job in self.jobs


@dataclass
class Program:
    ruleset: Ruleset
    rules: list[CompiledRule]
    progress: dict[str, tuple[Compiled | None, Compiled | float | None]]
    tracked: frozenset[str]
    max_window: float
    run_keys: frozenset[str] = frozenset()


def fingerprint(ruleset: str, rule: str, instance: str) -> str:
    """Stable identity of an alert instance across restarts."""
    return hashlib.sha1(f"{ruleset}\0{rule}\0{instance}".encode()).hexdigest()[:16]


#: Facts that report each occurrence on one tick only: a rule reading them is an event rule.
_EVENT_FACT = re.compile(r"^files\.[^.]+\.(?:new|new_count)$")


def _timing(rule: Rule, rs: Ruleset, keys: frozenset[str] = frozenset()) -> Timing:
    repeat = rule.repeat or rs.defaults.repeat
    return Timing(
        for_=rule.for_ or 0.0,
        keep_firing_for=rule.keep_firing_for or 0.0,
        repeat_every=repeat.every if repeat else None,
        repeat_backoff=repeat.backoff if repeat else 1.0,
        repeat_max=repeat.max if repeat else None,
        resolve=rs.defaults.resolve if rule.resolve is None else rule.resolve,
        once=rule.once,
        times=rule.times.times if rule.times else None,
        ticks=rule.times.ticks if rule.times else None,
        absent_for=rule.absent_for,
        stale_for=rule.stale_for,
        has_clear=rule.clear_when is not None,
        event=any(_EVENT_FACT.match(k) for k in keys),
    )


def _actions(rule: Rule, rs: Ruleset) -> tuple[Action, ...]:
    actions: list[Action] = list(rule.do)
    if rule.notify:
        actions.append(NotifyAction(notify=list(rule.notify)))
    if not actions:
        from ..config.models import LogAction

        actions.append(LogAction())
        if rs.defaults.notify:
            actions.append(NotifyAction(notify=list(rs.defaults.notify)))
    return tuple(actions)


def build(rs: Ruleset) -> Program:
    rules: list[CompiledRule] = []
    tracked: set[str] = set()
    longest = 0.0
    for rule in rs.rules:
        if not rule.enabled:
            continue
        parsed = parse(rule.when)
        cond = compile_condition(parsed)
        clear = compile_condition(parse(rule.clear_when)) if rule.clear_when else None
        tracked |= cond.tracked | (clear.tracked if clear else frozenset())
        longest = max([longest, *windows(parsed)])
        rules.append(CompiledRule(
            name=rule.name, rule=rule, condition=cond, clear=clear,
            timing=_timing(rule, rs, cond.keys),
            severity=rule.severity or rs.defaults.severity, scope=rule.scope,
            jobs=frozenset(rule.jobs), actions=_actions(rule, rs),
            title=rule.title or DEFAULT_TITLE, message=rule.message or DEFAULT_MESSAGE,
            labels={**rs.defaults.labels, **rule.labels}))
    progress: dict[str, tuple[Compiled | None, Compiled | float | None]] = {}
    for key, job in rs.jobs.items():
        if job.progress is None:
            continue
        done = compile_condition(parse(job.progress.done)) if job.progress.done else None
        total_src = job.progress.total
        total: Compiled | float | None
        if isinstance(total_src, str):
            total = compile_condition(parse(total_src))
        else:
            total = float(total_src) if total_src is not None else None
        progress[key] = (done, total)
        if done is not None:
            tracked |= done.keys
    run_keys = {k for r in rules if r.scope == "job"
                for c in (r.condition, r.clear) if c is not None for k in c.keys
                if k.split(".", 1)[0] in ("run", "host", "probe")}
    return Program(rs, rules, progress, frozenset(tracked), max(longest, 3600.0),
                   frozenset(run_keys))
