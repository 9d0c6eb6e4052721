"""The trust boundary of `extends:` and where its entries may be read from.

A parent ruleset is someone else's text. What it may contribute is what describes watching:
rules, defaults, jobs to watch with their logs, presets, extractors and file checks. Anything
that starts a process, adds a place rulesmon sends or writes to, or reads the environment comes
only from the file the user runs, or from a parent that file trusts by name
(`extends: [{path: team.yaml, trust: true}]`). Documented in docs/security.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, make
from .nodes import Pos, YList, YMap

#: The environment variable naming extra folders `extends:` may read from (os.pathsep-separated).
EXTENDS_PATH_VAR = "RULESMON_EXTENDS_PATH"

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")


@dataclass(frozen=True)
class Privileged:
    """One thing in a parent that only the user's own file (or a trusted parent) may declare."""

    where: str  # a readable key path: jobs.train.local.command
    pos: Pos  # the key's position, in the file it came from
    code: str  # RM650 starts a process, RM651 adds a destination
    why: str


@dataclass
class ParentInfo:
    """What one entry of the top-level file's `extends:` brings (for `rulesmon lint`)."""

    ref: str
    pos: Pos
    trusted: bool
    ancestors: list[str] = field(default_factory=list)
    contributes: str = ""
    privileged: list[str] = field(default_factory=list)


def extends_dirs(extra: Sequence[str | Path], env: Mapping[str, str]) -> list[Path]:
    """Folders named with --extends-path, then those of RULESMON_EXTENDS_PATH, resolved."""
    raw = [str(d) for d in extra]
    raw += (env.get(EXTENDS_PATH_VAR) or "").split(os.pathsep)
    out: list[Path] = []
    for d in raw:
        if d.strip():
            try:
                p = Path(d).expanduser().resolve()
            except (RuntimeError, OSError, ValueError):  # ~nobody, a loop, a NUL byte
                continue
            if p not in out:
                out.append(p)
    return out


def inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


# --- environment references -------------------------------------------------------------


def env_refs(root: Any) -> Iterator[tuple[str, Pos]]:
    """Every `${NAME}` (or malformed `${...}`) written in string values, with its position."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, YMap):
            items: list[tuple[Any, Pos]] = [(v, node.value_pos[k]) for k, v in node.items()]
        elif isinstance(node, YList):
            items = list(zip(node, node.item_pos, strict=True))
        else:
            continue
        for value, pos in items:
            if isinstance(value, str):
                for m in _REF.finditer(value):
                    if m.group(0) != "$${":
                        yield m.group(1), pos
            else:
                stack.append(value)


def unescape_only(root: Any) -> None:
    """`$${` becomes `${` as interpolation would do it, without reading the environment."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, YMap):
            for k, v in node.items():
                if isinstance(v, str) and "$${" in v:
                    node[k] = _unescape(v)
                elif not isinstance(v, str):
                    stack.append(v)
        elif isinstance(node, YList):
            for i, v in enumerate(node):
                if isinstance(v, str) and "$${" in v:
                    node[i] = _unescape(v)
                elif not isinstance(v, str):
                    stack.append(v)


def _unescape(text: str) -> str:
    return _REF.sub(lambda m: "${" if m.group(0) == "$${" else m.group(0), text)


# --- privileged keys ---------------------------------------------------------------------------

_PROCESS = "RM650"
_DESTINATION = "RM651"


def privileged(tree: YMap) -> list[Privileged]:
    """What in a (parent's) tree starts a process or adds a destination."""
    out: list[Privileged] = []
    notify = tree.get("notify")
    if isinstance(notify, YMap):
        for name in notify:
            out.append(Privileged(f"notify.{name}", notify.key_pos[name], _DESTINATION,
                                  "adds a place messages are sent to"))
    elif "notify" in tree and notify:
        out.append(Privileged("notify", tree.key_pos["notify"], _DESTINATION,
                              "adds places messages are sent to"))
    if "summary" in tree and tree["summary"] is not None:
        out.append(Privileged("summary", tree.key_pos["summary"], _DESTINATION,
                              "sends the run summary to notification targets"))
    if "state_file" in tree and tree["state_file"] is not None:
        out.append(Privileged("state_file", tree.key_pos["state_file"], _DESTINATION,
                              "writes a file"))
    jobs = tree.get("jobs")
    if isinstance(jobs, YMap):
        for key, job in jobs.items():
            if not isinstance(job, YMap):
                continue
            local = job.get("local")
            if isinstance(local, YMap) and local.get("command") is not None:
                out.append(Privileged(f"jobs.{key}.local.command", local.key_pos["command"],
                                      _PROCESS, "launches a command"))
            for source, tool in (("slurm", "sbatch"), ("htcondor", "condor_submit"),
                                 ("dagman", "condor_submit_dag")):
                spec = job.get(source)
                if isinstance(spec, YMap) and spec.get("submit") not in (None, False):
                    out.append(Privileged(f"jobs.{key}.{source}.submit", spec.key_pos["submit"],
                                          _PROCESS, f"submits with {tool}"))
    rules = tree.get("rules")
    if isinstance(rules, YList):
        for i, rule in enumerate(rules):
            if not isinstance(rule, YMap):
                continue
            name = str(rule["name"]) if isinstance(rule.get("name"), str) else f"rules[{i}]"
            actions = rule.get("do")
            if not isinstance(actions, YList):
                continue
            for action in actions:
                if not isinstance(action, YMap):
                    continue
                if "exec" in action:
                    out.append(Privileged(f'an exec action in rule "{name}"',
                                          action.key_pos["exec"], _PROCESS, "runs a command"))
                if "control" in action:
                    out.append(Privileged(f'a control action in rule "{name}"',
                                          action.key_pos["control"], _PROCESS,
                                          "cancels, holds or resubmits jobs through the "
                                          "scheduler"))
    return out


def drop(tree: YMap, found: Sequence[Privileged]) -> None:
    """Remove what was refused, so a parent's parent does not report it a second time."""
    if not found:
        return
    for key in ("notify", "summary", "state_file"):
        if key in tree:
            _del(tree, key)
    jobs = tree.get("jobs")
    if isinstance(jobs, YMap):
        for job in jobs.values():
            if not isinstance(job, YMap):
                continue
            local = job.get("local")
            if isinstance(local, YMap) and "command" in local:
                _del(local, "command")
            for source in ("slurm", "htcondor", "dagman"):
                spec = job.get(source)
                if isinstance(spec, YMap) and "submit" in spec:
                    _del(spec, "submit")
    rules = tree.get("rules")
    if isinstance(rules, YList):
        for rule in rules:
            actions = rule.get("do") if isinstance(rule, YMap) else None
            if isinstance(actions, YList):
                keep = [(a, p) for a, p in zip(actions, actions.item_pos, strict=True)
                        if not (isinstance(a, YMap) and ("exec" in a or "control" in a))]
                actions[:] = [a for a, _ in keep]
                actions.item_pos[:] = [p for _, p in keep]


def _del(m: YMap, key: str) -> None:
    del m[key]
    m.key_pos.pop(key, None)
    m.value_pos.pop(key, None)


def refusals(found: Sequence[Privileged], parent: str, ref: str) -> list[Diagnostic]:
    """One finding per refused key, at the key, naming the parent (as loaded) and the key."""
    return [make(f.pos.path, f.pos.line, f.pos.col, f.code,
                 f"{parent} is extended without trust and declares {f.where}, which {f.why}; "
                 f"only the ruleset you run may do that (or trust the parent: extends: "
                 f"[{{path: {ref}, trust: true}}])")
            for f in found]


def env_refusals(refs: Sequence[tuple[str, Pos]], parent: str, ref: str) -> list[Diagnostic]:
    """One finding per `${...}` in an untrusted parent; the variable is never read."""
    out = []
    for name, pos in refs:
        shown = name.partition(":-")[0]
        out.append(make(pos.path, pos.line, pos.col, "RM652",
                        f"{parent} is extended without trust and reads the environment "
                        f"(${{{shown}}}); only the ruleset you run may do that (or trust the "
                        f"parent: extends: [{{path: {ref}, trust: true}}])"))
    return out


# --- what a parent brings ----------------------------------------------------------------------


def contributions(tree: YMap) -> str:
    """A one-line account of what a parent's (merged) tree brings."""
    parts: list[str] = []
    rules = tree.get("rules")
    if isinstance(rules, YList) and rules:
        names = [r["name"] for r in rules if isinstance(r, YMap) and isinstance(r.get("name"),
                                                                                  str)]
        shown = ", ".join(names[:12]) + (f", and {len(names) - 12} more" if len(names) > 12
                                         else "")
        parts.append(f"{len(rules)} rule{'s' if len(rules) != 1 else ''} ({shown})")
    jobs = tree.get("jobs")
    if isinstance(jobs, YMap) and jobs:
        extra = []
        presets = extractors = 0
        for job in jobs.values():
            logs = job.get("logs") if isinstance(job, YMap) else None
            for log in logs if isinstance(logs, YList) else []:
                if isinstance(log, YMap):
                    pre = log.get("preset")
                    presets += len(pre) if isinstance(pre, YList) else int(isinstance(pre, str))
                    ex = log.get("extract")
                    extractors += len(ex) if isinstance(ex, YMap) else 0
        if presets:
            extra.append(f"{presets} log preset{'s' if presets != 1 else ''}")
        if extractors:
            extra.append(f"{extractors} extractor{'s' if extractors != 1 else ''}")
        more = f", with {' and '.join(extra)}" if extra else ""
        parts.append(f"jobs to watch ({', '.join(jobs)}{more})")
    if isinstance(tree.get("defaults"), YMap) and tree["defaults"]:
        parts.append("defaults (" + ", ".join(tree["defaults"]) + ")")
    for key in ("every", "history"):
        if key in tree:
            parts.append(key)
    return "; ".join(parts) if parts else "nothing"
