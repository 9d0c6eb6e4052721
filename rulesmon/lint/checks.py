"""Static checks over a validated ruleset: the reason `rulesmon lint` exists.

Each check reads the model, reports with a location path into the merged tree, and never
executes anything from the ruleset (templates are rendered only against sample facts).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .. import facts, templates
from ..config.loader import Loaded
from ..config.models import (
    ControlAction,
    ExecAction,
    Job,
    NotifyAction,
    Rule,
    Ruleset,
)
from ..config.nodes import locate
from ..config.units import parse_duration
from ..diagnostics import Diagnostic, make
from ..probes.log_presets import PRESETS
from ..rules import expressions
from ..rules.compile import limit_problems
from ..rules.functions import FUNCTIONS

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    loc: Loc
    code: str
    message: str
    at_key: bool = False


def _hint(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def check(loaded: Loaded) -> list[Diagnostic]:
    """Every static finding, located and scrubbed of secrets."""
    rs: Ruleset = loaded.ruleset
    findings: list[Finding] = []
    findings += _check_targets(rs)
    findings += _check_jobs(rs)
    findings += _check_state_file(rs)
    for i, rule in enumerate(rs.rules):
        findings += _check_rule(rs, i, rule)
    out = []
    for f in findings:
        pos = locate(loaded.tree, f.loc, at_key=f.at_key) or loaded.tree.pos
        code, message = f.code, f.message
        if code == "RM412" and f.loc[-1:] == ("scope",) and pos.path != loaded.path:
            # an inherited group rule (builtin:dagman-training's per-run rules) over jobs
            # without group_by is inert here, not a mistake of this file: said, not refused
            code, message = "RM417", message + " here: it never fires in this ruleset"
        out.append(make(pos.path, pos.line, pos.col, code, loaded.secrets.scrub(message)))
    out += _check_extends(loaded)
    out += _check_secret_messages(loaded)
    return sorted(set(out), key=lambda d: (d.path, d.line, d.col, d.code))


def _check_secret_messages(loaded: Loaded) -> list[Diagnostic]:
    """RM690: a secret-named `${VAR}` in a title or message is delivered in clear."""
    from ..redact import name_is_secret

    return [make(r.path, r.line, r.col, "RM690",
                 f"${{{r.name}}} looks like a secret and is part of a notification {r.key}: "
                 "its targets receive the value in clear (rulesmon masks it everywhere else)")
            for r in getattr(loaded.secrets, "refs", ())
            if r.key in ("title", "message") and name_is_secret(r.name)]


# --- extends ------------------------------------------------------------------------------------


def _check_extends(loaded: Loaded) -> list[Diagnostic]:
    """RM655: per entry of the file's own `extends:`, what it brings and whether it is trusted
    (what an untrusted parent may not declare was refused by the loader: RM650-RM654)."""
    out = []
    for parent in getattr(loaded, "parents", []):
        via = f" (through {', '.join(parent.ancestors)})" if parent.ancestors else ""
        if parent.trusted:
            trust = ", trusted,"
        elif parent.ref.startswith("builtin:"):
            trust = " (shipped with rulesmon)"
        else:
            trust = ", not trusted,"
        message = f"{parent.ref}{via}{trust} brings {parent.contributes}"
        if parent.privileged:
            message += "; and, because it is trusted: " + ", ".join(parent.privileged)
        pos = parent.pos
        out.append(make(pos.path, pos.line, pos.col, "RM655", loaded.secrets.scrub(message)))
    return out


# --- targets --------------------------------------------------------------------------------------


def _check_targets(rs: Ruleset) -> Iterator[Finding]:
    for name, target in rs.notify.items():
        for j, url in enumerate(target.urls):
            if url.strip() and not _valid_url(url):
                loc: Loc = ("notify", name, "urls", j) if len(target.urls) > 1 else \
                    ("notify", name)
                yield Finding(loc, "RM407",
                              f"target {name!r}: {_mask(url)} is not a notification URL apprise "
                              "understands (see the apprise wiki for URL forms)")
    for j, name in enumerate(rs.defaults.notify):
        if name not in rs.notify:
            yield Finding(("defaults", "notify", j), "RM406", _unknown_target(rs, name))
    if rs.summary is not None:
        for j, name in enumerate(rs.summary.notify):
            if name not in rs.notify:
                yield Finding(("summary", "notify", j), "RM406", _unknown_target(rs, name))
        tree = facts.catalog_for(rs, "run", None).tree
        for field in ("title", "message"):
            text = getattr(rs.summary, field)
            if text is not None:
                yield from _template_facts(rs, ("summary", field), text, tree, render=True,
                                           scope="run")


def _mask(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return f"the {scheme}:// URL" if scheme and len(scheme) < 20 else "the URL"


def _valid_url(url: str) -> bool:
    import logging

    import apprise

    logging.getLogger("apprise").setLevel(logging.CRITICAL)
    try:
        return apprise.Apprise.instantiate(url) is not None
    except Exception:  # apprise raises assorted errors for malformed URLs
        return False


def _unknown_target(rs: Ruleset, name: str) -> str:
    known = ", ".join(rs.notify) or "none declared"
    return f"unknown notification target {name!r}{_hint(name, list(rs.notify))} " \
        f"(targets: {known})"


def _check_state_file(rs: Ruleset) -> Iterator[Finding]:
    """`state_file: {fields}` written by hand name facts the jobs have (the default list is
    a superset meant for any source, so it is not checked)."""
    if rs.state_file is None or "fields" not in rs.state_file.model_fields_set:
        return
    cat = facts.catalog_for(rs, "job", None)
    for j, name in enumerate(rs.state_file.fields):
        for finding in _fact(("state_file", "fields", j), tuple(name.split(".")), cat, "job",
                             rs):
            if finding.code == "RM401":  # unknown; one job lacking it is fine in a snapshot
                yield finding


# --- jobs -----------------------------------------------------------------------------------------

_RESERVED_LOG = set(facts.LOG_BUILTIN)


def _check_jobs(rs: Ruleset) -> Iterator[Finding]:
    for key, job in rs.jobs.items():
        source = facts.source_of(job)
        spec = getattr(job, source, None) if source != "none" else None
        # dagman reads files beside the DAG, not the scheduler: any interval is fine
        if spec is not None and source != "dagman" and getattr(spec, "min_interval", 30) < 30:
            yield Finding(("jobs", key, source, "min_interval"), "RM506",
                          f"{source} polls every {spec.min_interval:g}s; schedulers ask for "
                          "30s or more")
        for li, log in enumerate(job.logs):
            for pi, preset in enumerate(log.preset):
                if preset not in PRESETS:
                    yield Finding(("jobs", key, "logs", li, "preset", pi), "RM411",
                                  f"unknown preset {preset!r}{_hint(preset, list(PRESETS))}; "
                                  "presets: " + ", ".join(PRESETS))
            for name, pattern in log.extract.items():
                loc: Loc = ("jobs", key, "logs", li, "extract", name)
                yield from _regex_risk(loc, pattern)
                import re

                for group in re.compile(pattern).groupindex:
                    if group in _RESERVED_LOG:
                        yield Finding(loc, "RM410",
                                      f"group {group!r} of extractor {name!r} would hide the "
                                      f"builtin fact log.{group}; rename the group")
            for name, err in log.errors.items():
                yield from _regex_risk(("jobs", key, "logs", li, "errors", name), err.pattern)
            yield from _template_facts(rs, ("jobs", key, "logs", li, "path"), log.path,
                                       _path_tree(job))
        for name, fspec in job.files.items():
            if fspec.pattern:
                yield from _regex_risk(("jobs", key, "files", name, "pattern"), fspec.pattern)
            yield from _template_facts(rs, ("jobs", key, "files", name, "root"), fspec.root,
                                       _path_tree(job))
            if fspec.glob:
                yield from _template_facts(rs, ("jobs", key, "files", name, "glob"), fspec.glob,
                                           _path_tree(job))
        if job.htcondor is not None and job.htcondor.constraint:
            yield from _constraint(("jobs", key, "htcondor", "constraint"),
                                   job.htcondor.constraint)
        if job.local and job.local.pattern:
            yield from _regex_risk(("jobs", key, "local", "pattern"), job.local.pattern)
        if job.local:
            local_loc: Loc = ("jobs", key, "local")
            command = job.local.command
            argv = [command] if isinstance(command, str) else list(command or [])
            for j, arg in enumerate(argv):
                loc = (*local_loc, "command") if isinstance(command, str) else \
                    (*local_loc, "command", j)
                yield from _template_facts(rs, loc, arg, _path_tree(job), render=True,
                                           extras=False)
            for name, value in job.local.env.items():
                yield from _template_facts(rs, (*local_loc, "env", name), value,
                                           _path_tree(job), render=True, extras=False)
        if job.progress:
            cat = facts.catalog_for(rs, "job", [key])
            for field in ("done", "total"):
                expr = getattr(job.progress, field)
                if isinstance(expr, str):
                    yield from _expression(("jobs", key, "progress", field), expr, cat, "job",
                                           rs, forbid=("progress",))


def _path_tree(job: Job) -> facts.Namespace:
    """What path, command and environment templates see: the job, and for a local job the
    worker index as `{{ worker }}`."""
    tree: facts.Namespace = {"job": facts.JOB}
    if job.local is not None:
        tree["worker"] = facts.Fact("int", "The worker index (0-based).")
    return tree


def _constraint(loc: Loc, text: str) -> Iterator[Finding]:
    """Unbalanced quotes or brackets: the schedd would refuse the shared condor_q call."""
    from ..probes.classads import constraint_problem

    problem = constraint_problem(text)
    if problem is not None:
        at, why = problem
        yield Finding(loc, "RM204", f"constraint does not parse: {why} (character {at + 1} of "
                      f"{text!r})")


def _regex_risk(loc: Loc, pattern: str, what: str = "pattern") -> Iterator[Finding]:
    """Which engine runs a ruleset pattern (RM670 for the time-bounded `re` fallback), and
    whether it is exponential under a backtracking engine (RM671 on RE2, RM672 on the
    fallback, where it would be stopped at its bound)."""
    from .. import regex

    try:
        verdict = regex.describe(pattern)
    except Exception:  # invalid: reported by the model (RM207)
        return
    if verdict.engine == regex.ENGINE_SANDBOX:
        if verdict.risk:
            yield Finding(loc, "RM672",
                          f"{what} {pattern!r} needs Python's re ({verdict.lacks}) and has "
                          f"{verdict.risk}: exponential on a long line, so it would be stopped "
                          f"at its {regex.LINE_SECONDS:g}s bound and give no facts; rewrite it")
        else:
            yield Finding(loc, "RM670",
                          f"{what} {pattern!r} runs on Python's re in a helper process, each "
                          f"line bounded to {regex.LINE_SECONDS:g}s: RE2 lacks {verdict.lacks}")
    elif verdict.risk:
        yield Finding(loc, "RM671",
                      f"{what} {pattern!r} has {verdict.risk}: exponential under a "
                      "backtracking engine (Python's re, grep -P). rulesmon runs it on RE2 in "
                      "linear time, but make the inner part more specific")


# --- rules ----------------------------------------------------------------------------------------


def _check_rule(rs: Ruleset, i: int, rule: Rule) -> Iterator[Finding]:
    base: Loc = ("rules", i)
    for j, job in enumerate(rule.jobs):
        if job not in rs.jobs:
            yield Finding((*base, "jobs", j), "RM409",
                          f"rule {rule.name!r} names unknown job {job!r}"
                          f"{_hint(job, list(rs.jobs))}")
    # a library ruleset (no jobs, meant for `extends:`) is checked again in the rulesets that
    # extend it, against their jobs
    if rule.scope == "group" and rs.jobs and not any(
            rs.jobs[k].group_by for k in rs.jobs if not rule.jobs or k in rule.jobs):
        yield Finding((*base, "scope"), "RM412",
                      f"rule {rule.name!r} has scope: group but none of its jobs has group_by")
    cat = facts.catalog_for(rs, rule.scope, [j for j in rule.jobs if j in rs.jobs] or None)
    yield from _expression((*base, "when"), rule.when, cat, rule.scope, rs)
    if rule.clear_when:
        yield from _expression((*base, "clear_when"), rule.clear_when, cat, rule.scope, rs)
    names = {r.name for r in rs.rules}
    for j, entry in enumerate(rule.inhibits):
        other = entry if isinstance(entry, str) else entry.rule
        if other not in names:
            yield Finding((*base, "inhibits", j), "RM414",
                          f"rule {rule.name!r} inhibits unknown rule {other!r}"
                          f"{_hint(other, sorted(names))}")
        if not isinstance(entry, str):
            for path in entry.equal:
                yield from _fact((*base, "inhibits", j), tuple(path.split(".")), cat,
                                 rule.scope, rs)
    if rule.for_ is not None and 0 < rule.for_ < rs.every:
        yield Finding((*base, "for"), "RM501",
                      f"for: {rule.for_:g}s is shorter than the tick interval every: "
                      f"{rs.every:g}s; the rule can only fire on a tick")
    for j, name in enumerate(rule.notify or []):
        if name not in rs.notify:
            yield Finding((*base, "notify", j) if len(rule.notify or []) > 1 else
                          (*base, "notify"), "RM406", _unknown_target(rs, name))
    ctx_tree = cat.tree
    for field in ("title", "message"):
        text = getattr(rule, field)
        if text is not None:
            yield from _template_facts(rs, (*base, field), text, ctx_tree, render=True,
                                           scope=rule.scope)
    for k, action in enumerate(rule.do):
        aloc: Loc = (*base, "do", k)
        if isinstance(action, NotifyAction):
            for j, name in enumerate(action.notify):
                if name not in rs.notify:
                    yield Finding((*aloc, "notify", j) if len(action.notify) > 1 else
                                  (*aloc, "notify"), "RM406", _unknown_target(rs, name))
        if isinstance(action, ExecAction):
            yield Finding(aloc, "RM503",
                          f"rule {rule.name!r} runs {action.exec[0]!r}; it runs only under "
                          "`rulesmon run --allow-exec`")
            for j, arg in enumerate(action.exec):
                yield from _template_facts(rs, (*aloc, "exec", j), arg, ctx_tree, render=True,
                                           scope=rule.scope)
        if isinstance(action, ControlAction):
            yield from _control(rs, rule, aloc, action)
        for field in ("title", "message"):
            text = getattr(action, field, None)
            if text is not None:
                yield from _template_facts(rs, (*aloc, field), text, ctx_tree, render=True,
                                           scope=rule.scope)
    has_action = bool(rule.do or rule.notify)
    if rule.enabled and not has_action and not rs.defaults.notify and rs.jobs:
        yield Finding((*base, "name"), "RM505",
                      f"rule {rule.name!r} has no action and there is no default target: it "
                      "only logs (add notify:, do: [log] to say so, or defaults.notify)")


#: What each scheduler can do to a job (`control:` verbs).
CONTROL_VERBS = {
    "slurm": frozenset({"cancel", "requeue", "hold", "release"}),
    "htcondor": frozenset({"cancel", "remove", "hold", "release", "requeue"}),
    "dagman": frozenset({"cancel", "remove", "hold", "release", "resubmit"}),
}


def _control(rs: Ruleset, rule: Rule, loc: Loc, action: ControlAction) -> Iterator[Finding]:
    yield Finding(loc, "RM507", f"rule {rule.name!r} can {action.control} jobs; it acts only "
                  "under `rulesmon run --allow-control`")
    if rule.scope != "job":
        yield Finding((*loc, "control"), "RM415", f"control acts on one job: rule "
                      f"{rule.name!r} has scope {rule.scope}")
        return
    for key, job in rs.jobs.items():
        if rule.jobs and key not in rule.jobs:
            continue
        source = facts.source_of(job)
        verbs = CONTROL_VERBS.get(source, frozenset())
        if action.control not in verbs:
            can = ", ".join(sorted(verbs)) or "nothing (no scheduler)"
            yield Finding((*loc, "control"), "RM415",
                          f"job {key!r} ({source}) cannot {action.control}; it can: {can}")


_PER_JOB = ("job", "log", "files", "gpu", "progress", "disk", "worker", "node", "dag")


def _expression(loc: Loc, text: str, cat: facts.Catalog, scope: str, rs: Ruleset,
                forbid: tuple[str, ...] = ()) -> Iterator[Finding]:
    parsed = expressions.parse(text)  # validated already by the model
    for path in parsed.paths:
        if path[0] in FUNCTIONS and len(path) == 1:
            yield Finding(loc, "RM403", f"function {path[0]!r} is used without calling it")
            continue
        if path[0] in forbid:
            yield Finding(loc, "RM401", f"{'.'.join(path)} cannot be used here (it is computed "
                          "from this declaration)")
            continue
        yield from _fact(loc, path, cat, scope, rs)
    for call in parsed.calls:
        spec = FUNCTIONS.get(call.name)
        if spec is None:
            yield Finding(loc, "RM402", f"unknown function {call.name!r}"
                          f"{_hint(call.name, list(FUNCTIONS))}; functions: "
                          + ", ".join(sorted(FUNCTIONS)))
            continue
        n = len(call.args)
        if not spec.min_args <= n <= spec.max_args:
            want = str(spec.min_args) if spec.min_args == spec.max_args else \
                f"{spec.min_args} to {spec.max_args}"
            yield Finding(loc, "RM403", f"{call.name}() takes {want} argument"
                          f"{'s' if want != '1' else ''}, got {n}: {spec.signature}")
            continue
        for idx in spec.window_args:
            arg = call.args[idx]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str | int | float)
                    and not isinstance(arg.value, bool)):
                yield Finding(loc, "RM403", f"{call.name}(): argument {idx + 1} must be a "
                              f'duration literal such as "5m": {spec.signature}')
                continue
            try:
                window = parse_duration(arg.value)
            except ValueError as exc:
                yield Finding(loc, "RM403", f"{call.name}(): {exc}")
                continue
            if window > 7 * 86400:
                yield Finding(loc, "RM403", f"{call.name}(): window {arg.value!r} is longer "
                              "than the 7 days of fact history kept")
        if call.name == "matches" and len(call.args) == 2 and isinstance(
                call.args[1], ast.Constant) and isinstance(call.args[1].value, str):
            import re

            try:
                re.compile(call.args[1].value)
            except re.error as exc:
                yield Finding(loc, "RM207", f"matches(): invalid regular expression: {exc}")
            else:
                yield from _regex_risk(loc, call.args[1].value, "matches() pattern")
        for idx in spec.fact_args:
            if expressions.dotted(call.args[idx]) is None:
                yield Finding(loc, "RM403", f"{call.name}(): argument {idx + 1} must name a "
                              f"fact (its history is kept): {spec.signature}")
    yield from _literals(loc, parsed.tree, cat)
    for col, why in limit_problems(parsed):
        yield Finding(loc, "RM680", f"condition exceeds an evaluation bound at character {col}: "
                      f"{why}; it would fail on every tick")


def _fact(loc: Loc, path: tuple[str, ...], cat: facts.Catalog, scope: str,
          rs: Ruleset) -> Iterator[Finding]:
    dotted = ".".join(path)
    found = facts.lookup(cat.tree, path)
    if not found.ok:
        if scope != "job" and path[0] in _PER_JOB:
            yield Finding(loc, "RM412", f"{dotted} is a per-job fact; this rule has scope: "
                          f"{scope} (use run.*, group.* or host.*)")
            return
        if path[0] == "group" and scope != "group":
            yield Finding(loc, "RM412", f"{dotted} exists only in rules with scope: group")
            return
        where = ".".join(found.prefix) or "facts"
        hint = _hint(found.missing, found.known)
        extra = ""
        if path[0] == "log" and len(path) == 2 and not hint:
            extra = " (declare an extractor with that named group, or a preset that has it)"
        elif path[0] == "files" and len(found.prefix) == 1 and not hint:
            extra = " (declare it under the job's files:)"
        elif path[0] == "files" and found.missing in ("new", "new_count"):
            extra = " (set new_files: true on it)"
        elif path[0] in ("worker", "node", "dag") and found.prefix == ():
            extra = " (worker.* needs a local job, node.* and dag.* a dagman job)"
        msg = f"unknown fact {dotted!r}: {where} has no {found.missing!r}{hint}{extra}"
        yield Finding(loc, "RM401", msg)
        return
    if scope == "job" and len(path) >= 2 and cat.all_jobs:
        key = path[:2] if path[0] != "files" and path[0] != "log" else path[:3]
        providers = cat.providers.get(key) or cat.providers.get(path[:2])
        if path[0] in ("worker", "node", "dag"):
            providers = cat.providers.get(path[:1])
        if providers is not None and providers != cat.all_jobs:
            missing = sorted(cat.all_jobs - providers)
            yield Finding(loc, "RM504", f"{dotted} is not provided for job"
                          f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}; restrict "
                          "the rule with jobs:")


def _literals(loc: Loc, tree: ast.expr, cat: facts.Catalog) -> Iterator[Finding]:
    """`job.state == "running"`: a literal the enumerated fact never takes."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for a, op, b in zip(operands, node.ops, operands[1:], strict=False):
            for fact_node, lit in ((a, b), (b, a)):
                path = expressions.dotted(fact_node) if isinstance(
                    fact_node, ast.Attribute | ast.Subscript) else None
                if path is None:
                    continue
                found = facts.lookup(cat.tree, path)
                if not (found.ok and found.fact):
                    continue
                mismatch = _type_mismatch(found.fact.type, op, lit)
                if mismatch:
                    yield Finding(loc, "RM416", f"{'.'.join(path)} is {mismatch}")
                if not found.fact.values:
                    continue
                values = _string_literals(lit, op)
                for value in values:
                    if value not in found.fact.values:
                        allowed = found.fact.values
                        hint = _case(value, allowed) or _hint(value, allowed)
                        yield Finding(loc, "RM413", f"{'.'.join(path)} is never {value!r}{hint}; "
                                      "it is one of " + ", ".join(allowed))


_NUMERIC = {"bytes": "a number of bytes", "float": "a number", "int": "a number",
            "pct": "a percentage (a number)", "seconds": "a number of seconds",
            "timestamp": "a Unix time in seconds"}


def _type_mismatch(kind: str, op: ast.cmpop, other: ast.expr) -> str:
    """`job.elapsed > "5m"`: a number compared with a string is never true (or an error at
    every tick); what the fact is, and how to write the value instead."""
    if kind not in _NUMERIC or not isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE | ast.Eq
                                              | ast.NotEq):
        return ""
    if not (isinstance(other, ast.Constant) and isinstance(other.value, str)):
        return ""
    hint = ""
    if kind == "seconds":
        hint = f"; write seconds(\"{other.value}\") or a number of seconds"
    elif kind == "bytes":
        hint = "; write a number of bytes, e.g. 4 * 1024**3"
    return f"{_NUMERIC[kind]}, compared with the string {other.value!r}{hint}"


def _case(value: str, values: Sequence[str]) -> str:
    for v in values:
        if v.lower() == value.lower():
            return f' (did you mean "{v}"?)'
    return ""


def _string_literals(node: ast.expr, op: ast.cmpop) -> list[str]:
    if isinstance(op, ast.Eq | ast.NotEq) and isinstance(node, ast.Constant) \
            and isinstance(node.value, str):
        return [node.value]
    if isinstance(op, ast.In | ast.NotIn) and isinstance(node, ast.Tuple | ast.List):
        return [e.value for e in node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


# --- templates ------------------------------------------------------------------------------------


def _template_facts(rs: Ruleset, loc: Loc, text: str, tree: facts.Namespace,
                    *, render: bool = False, extras: bool = True,
                    scope: str = "job") -> Iterator[Finding]:
    """Check the facts a template reads and, with `render`, render it against samples.

    `extras` adds the notification context (`rule`, `alert`, `now`) to the facts."""
    parsed = templates.parse(text)  # validated already by the model
    unsafe = templates.unsafe_access(parsed)[:1]
    for line, why in unsafe:
        yield Finding(loc, "RM682", f"template line {line}: {why}")
    if unsafe:
        return  # an escape attempt: its facts and its render say nothing more
    context_roots = set(tree) | ({"rule", "alert", "now"} if extras else set())
    full: facts.Namespace = dict(tree)
    if extras:
        full["rule"] = facts.RULE
        full["alert"] = facts.ALERT
    bad = False
    for path in templates.paths(parsed):
        if path[0] in facts.TEMPLATE_GLOBALS and path[0] not in context_roots:
            continue
        found = facts.lookup(full, path)
        if path[0] == "now" and extras:
            continue
        if not found.ok:
            bad = True
            if scope != "job" and path[0] in _PER_JOB:
                yield Finding(loc, "RM412", f"template uses {'.'.join(path)}, a per-job fact; "
                              f"this rule has scope: {scope} (use run.*, group.* or host.*)")
                continue
            where = ".".join(found.prefix) or "the template context"
            hint = _hint(found.missing, found.known)
            yield Finding(loc, "RM401", f"template uses unknown fact {'.'.join(path)!r}: "
                          f"{where} has no {found.missing!r}{hint}")
    if render and not bad:
        problem = templates.render_problem(text, facts.sample_context(tree))
        if problem is not None:
            kind, error = problem
            if kind == "limit":
                yield Finding(loc, "RM681", f"template exceeds a render bound with sample "
                              f"facts: {error}")
            elif kind == "unsafe":
                yield Finding(loc, "RM682", f"template reaches what the sandbox refuses: "
                              f"{error}")
            else:
                yield Finding(loc, "RM405", f"template fails with sample facts: {error}")
