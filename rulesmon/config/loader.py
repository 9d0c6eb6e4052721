"""Loading a ruleset: read → parse → interpolate → extends/merge → validate, every error located.

The result is a validated `Ruleset` plus the positioned tree it came from, so later checks
(lint) can point at the exact node too.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..diagnostics import Diagnostic, RulesetError, make
from .interpolate import Secrets, interpolate
from .nodes import Pos, YList, YMap, copy_tree, locate, matched, to_plain
from .trust import (
    EXTENDS_PATH_VAR,
    ParentInfo,
    contributions,
    drop,
    env_refs,
    env_refusals,
    extends_dirs,
    inside,
    privileged,
    refusals,
    unescape_only,
)
from .yamlio import parse, read_text

BUILTIN_PREFIX = "builtin:"


@dataclass
class Loaded:
    """A validated ruleset, the merged positioned tree, and the secrets seen while loading."""

    ruleset: Any  # models.Ruleset; typed loosely to keep pydantic out of import time
    tree: YMap
    path: str
    secrets: Secrets
    files: list[str] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    #: What each entry of the top-level file's `extends:` brought (shown by `rulesmon lint`).
    parents: list[ParentInfo] = field(default_factory=list)


def _builtin_root() -> Any:
    return resources.files("rulesmon") / "rulesets"


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in _builtin_root().iterdir() if p.name.endswith(".yaml"))


def _builtin_path(name: str) -> Path | None:
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    candidate = _builtin_root() / f"{name}.yaml"
    return Path(str(candidate)) if candidate.is_file() else None


def display_path(path: Path) -> str:
    """Relative to the working folder for a file under it (as linters print), else absolute:
    a `../` path would depend on where the command happens to run."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel == ".." or rel.startswith(".." + os.sep) else rel


@dataclass
class _Ctx:
    """What one load shares across the files it reads."""

    env: Mapping[str, str]
    secrets: Secrets
    files: list[str]
    roots: list[Path]  # where `extends:` may read: the top file's folder, then extends_path
    search: list[Path]  # extends_path folders, where relative entries are also looked up
    problems: list[Diagnostic] = field(default_factory=list)  # refused parts of parents
    parents: list[ParentInfo] = field(default_factory=list)

    def fail(self, diags: Sequence[Diagnostic]) -> RulesetError:
        return RulesetError(_dedupe([_scrub(d, self.secrets)
                                     for d in [*self.problems, *diags]]))


def _ctx(base: Path, env: Mapping[str, str], extends_path: Sequence[str | Path],
         files: list[str]) -> _Ctx:
    search = extends_dirs(extends_path, env)
    return _Ctx(env, Secrets(), files, [base.absolute().resolve(), *search], search)


def load(path: str | Path, env: Mapping[str, str] | None = None,
         extends_path: Sequence[str | Path] = ()) -> Loaded:
    """Load and validate; raises RulesetError carrying every diagnostic found.

    `extends_path`: folders (besides the ruleset's own folder tree, and those of
    RULESMON_EXTENDS_PATH) that `extends:` entries may read from.
    """
    env = os.environ if env is None else env
    p = Path(path)
    display = display_path(p)
    files: list[str] = []
    ctx = _ctx(p.absolute().parent, env, extends_path, files)
    tree = _load_tree(p, display, ctx, [], [], trusted=True, entry=None)
    if ctx.problems:
        raise ctx.fail([])
    loaded = validate(tree, display, ctx.secrets, files)
    loaded.parents = ctx.parents
    return loaded


def load_text(text: str, display: str = "<string>",
              env: Mapping[str, str] | None = None, base: Path | None = None,
              extends_path: Sequence[str | Path] = ()) -> Loaded:
    """Load from a string (tests, `rulesmon test`, embedded rulesets)."""
    env = os.environ if env is None else env
    files = [display]
    ctx = _ctx(base or Path.cwd(), env, extends_path, files)
    root = parse(text, display)
    diags = interpolate(root, env, ctx.secrets)
    if diags:
        raise ctx.fail(diags)
    tree = _apply_extends(root, base or Path.cwd(), display, ctx, [], [], trusted=True,
                          top=True)
    if ctx.problems:
        raise ctx.fail([])
    loaded = validate(tree, display, ctx.secrets, files)
    loaded.parents = ctx.parents
    return loaded


def _scrub(d: Diagnostic, secrets: Secrets) -> Diagnostic:
    return Diagnostic(d.path, d.line, d.col, d.code, secrets.scrub(d.message), d.severity)


_PARSED: dict[tuple[str, str, int, int], YMap] = {}


def _parse_file(p: Path, display: str) -> YMap:
    """Parse, reusing an earlier parse of the same unchanged file (builtins, shared parents)."""
    try:
        st = p.stat()
        key = (str(p.resolve()), display, st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _PARSED:
        cached: YMap = copy_tree(_PARSED[key])
        return cached
    root = parse(read_text(p, display), display)
    if key is not None:
        if len(_PARSED) > 256:
            _PARSED.clear()
        _PARSED[key] = copy_tree(root)
    return root


def _parse_parent(p: Path, display: str, ref: str, at: Pos) -> YMap:
    """A parent's tree, or one finding at the `extends:` entry when the file is not a ruleset.

    The finding never quotes the file: an entry may name a file that is not meant to be read
    (a password file, a key), and its lines must not come back as "unknown keys".
    """
    try:
        root = _parse_file(p, display)
    except RulesetError as exc:
        first = exc.diagnostics[0] if exc.diagnostics else None
        if first is not None and first.code in ("RM001", "RM002"):
            raise RulesetError([make(at.path, at.line, at.col, "RM302",
                                     f"extends {ref!r}: {first.message}")]) from None
        why = {"RM003": "it is not UTF-8 text", "RM004": "it is empty",
               "RM005": "it is not a YAML mapping", "RM007": "it holds several YAML documents",
               }.get(first.code if first else "")
        if why is None:  # a YAML error: located in the parent, its message quotes no line
            raise
        raise RulesetError([make(at.path, at.line, at.col, "RM654",
                                 f"extends {ref!r}: not a ruleset ({why}); a ruleset is a "
                                 "YAML mapping with `version: 1`")]) from None
    if "version" not in root:
        raise RulesetError([make(at.path, at.line, at.col, "RM654",
                                 f"extends {ref!r}: not a ruleset (it has no `version:` key); "
                                 "a ruleset is a YAML mapping with `version: 1`")])
    return root


def _refuse_non_ruleset(root: YMap, display: str) -> None:
    """A file with no `version:` and none of a ruleset's keys (a password file, a stray YAML
    file) is one finding that never quotes it: its lines would come back as unknown keys."""
    if "version" in root:
        return
    from .models import Ruleset

    keys = {f.alias or name for name, f in Ruleset.model_fields.items()}
    if any(str(k) in keys or str(k).startswith("x-") for k in root):
        return  # a ruleset with a mistake: the usual findings say which
    raise RulesetError([make(display, 1, 1, "RM010", "not a ruleset: no `version:` and none "
                             "of a ruleset's keys (its content is not shown); a ruleset is a "
                             "YAML mapping with `version: 1`")])


def _load_tree(p: Path, display: str, ctx: _Ctx, stack: list[Path], via: list[Pos], *,
               trusted: bool, entry: tuple[str, Pos] | None) -> YMap:
    if entry is None:
        root = _parse_file(p, display)
        _refuse_non_ruleset(root, display)
    else:
        try:
            root = _parse_parent(p, display, *entry)
        except RulesetError as exc:
            raise ctx.fail(exc.diagnostics) from None
    if trusted:
        diags = interpolate(root, ctx.env, ctx.secrets)
    else:  # someone else's file: it may not read the environment
        ctx.problems += env_refusals(list(env_refs(root)), display, entry[0] if entry else "")
        unescape_only(root)
        diags = []
    diags += _duplicate_rules(root)
    if diags:
        raise ctx.fail(diags)
    ctx.files.append(display)
    return _apply_extends(root, p.parent, display, ctx, [*stack, p.resolve()], via,
                          trusted=trusted, top=entry is None)
def _duplicate_rules(root: YMap) -> list[Diagnostic]:
    rules = root.get("rules")
    if not isinstance(rules, YList):
        return []
    seen: dict[str, Pos] = {}
    out = []
    for i, rule in enumerate(rules):
        if isinstance(rule, YMap) and isinstance(rule.get("name"), str):
            name = rule["name"]
            pos = rule.value_pos["name"]
            if name in seen:
                first = seen[name]
                out.append(make(pos.path, pos.line, pos.col, "RM408",
                                f"rule name {name!r} is used twice (first at line {first.line}); "
                                "to change an inherited rule, do it in the file that extends it"))
            else:
                seen[name] = pos
        del i
    return out


def _entries(root: YMap) -> list[tuple[str, bool, Pos]] | None:
    """The `extends:` entries as (reference, trusted, position); None when it is not a string
    or a list (the model reports that). Wrong entries are reported here, since a parent's
    `extends:` never reaches the model."""
    ext = root.get("extends")
    if ext is None:
        return []
    if isinstance(ext, str):
        return [(ext, False, root.value_pos["extends"])]
    if not isinstance(ext, YList):
        return None
    out: list[tuple[str, bool, Pos]] = []
    diags: list[Diagnostic] = []
    for i, item in enumerate(ext):
        pos = ext.item_pos[i]
        if isinstance(item, str):
            out.append((item, False, pos))
        elif isinstance(item, YMap):
            extra = [k for k in item if k not in ("path", "trust")]
            for k in extra:
                kp = item.key_pos[k]
                diags.append(make(kp.path, kp.line, kp.col, "RM201",
                                  f'unknown key "{k}" in an extends entry; allowed: path, trust'))
            ref, trust = item.get("path"), item.get("trust", False)
            if not isinstance(ref, str):
                at = item.value_pos["path"] if "path" in item else pos
                diags.append(make(at.path, at.line, at.col, "RM203" if "path" in item
                                  else "RM202", "an extends entry needs `path:`, a string "
                                  "(a relative path or builtin:NAME)"))
            elif not isinstance(trust, bool):
                at = item.value_pos["trust"]
                diags.append(make(at.path, at.line, at.col, "RM203",
                                  "extends `trust:` must be true or false"))
            elif not extra:
                out.append((ref, trust, pos))
        else:
            diags.append(make(pos.path, pos.line, pos.col, "RM203",
                              "an extends entry must be a string (a relative path or "
                              "builtin:NAME) or a mapping {path: ..., trust: true}"))
    if diags:
        raise RulesetError(diags)
    return out


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: no such file either
        return False


def _resolve(ref: str, base_dir: Path, pos: Pos, ctx: _Ctx) -> Path:
    """The file a path entry names: looked up from the including file's folder, then in each
    extends-path folder; it must lie (symlinks followed) in the top-level ruleset's folder tree
    or under an extends-path folder."""
    try:
        given = Path(ref).expanduser()
    except RuntimeError:  # ~user of no such user
        given = Path(ref)
    candidates = [given] if given.is_absolute() else \
        [base_dir / given, *(d / given for d in ctx.search)]
    found = next((c for c in candidates if _is_file(c)), None)
    if found is None:
        where = "" if given.is_absolute() else \
            " (looked in " + ", ".join([display_path(base_dir) or ".",
                                        *map(str, ctx.search)]) + \
            "; name another folder with --extends-path DIR or " + EXTENDS_PATH_VAR + ")"
        raise ctx.fail([make(pos.path, pos.line, pos.col, "RM302",
                             f"extends {ref!r}: no such file{where}")])
    real = found.resolve()
    if not inside(real, ctx.roots):
        kind = "an absolute path" if given.is_absolute() else \
            "a symbolic link" if ".." not in given.parts else "a path with .."
        raise ctx.fail([make(pos.path, pos.line, pos.col, "RM653",
                             f"extends {ref!r} is {kind} leading outside the ruleset's folder; "
                             "extends reads only builtin:NAME, files under the folder of the "
                             "ruleset you run, and folders you name with --extends-path or "
                             f"{EXTENDS_PATH_VAR}")])
    return found


def _apply_extends(root: YMap, base_dir: Path, display: str, ctx: _Ctx, stack: list[Path],
                   via: list[Pos], *, trusted: bool, top: bool) -> YMap:
    """Merge the parents named by `extends:` under `root`.

    `stack` holds the files being loaded (for cycle detection) and `via` the extends entries
    that led from each to the next, so a cycle is reported in the file where it starts. A
    parent is trusted only when its entry says so and the file naming it is trusted; what an
    untrusted parent may not declare is collected in `ctx.problems` (and the load fails).
    """
    try:
        entries = _entries(root)
    except RulesetError as exc:
        raise ctx.fail(exc.diagnostics) from None
    if not entries:
        return root  # none, or the wrong type (the model reports it)
    merged: YMap | None = None
    for ref, trust, pos in entries:
        if ref.startswith(BUILTIN_PREFIX):
            name = ref[len(BUILTIN_PREFIX):]
            target = _builtin_path(name)
            if target is None:
                hint = _did_you_mean(name, builtin_names())
                raise ctx.fail([make(pos.path, pos.line, pos.col, "RM302",
                                     f"no builtin ruleset {name!r}{hint}; builtins: "
                                     + ", ".join(builtin_names()))])
            child_display = ref
        else:
            target = _resolve(ref, base_dir, pos, ctx)
            child_display = display_path(target)
        if target.resolve() in stack:
            start = stack.index(target.resolve())
            chain = " → ".join([*(s.name for s in stack[start:]), target.name])
            at = [*via, pos][start]
            raise ctx.fail([make(at.path, at.line, at.col, "RM303",
                                 f"extends cycle: {chain}")])
        parent_trusted = trusted and trust
        before = len(ctx.files)
        parent = _load_tree(target, child_display, ctx, stack, [*via, pos],
                            trusted=parent_trusted, entry=(ref, pos))
        found = privileged(parent)
        if not parent_trusted:
            ctx.problems += refusals(found, child_display, ref)
            drop(parent, found)
        if top:
            ctx.parents.append(ParentInfo(
                ref, pos, parent_trusted, ancestors=ctx.files[before + 1:],
                contributes=contributions(parent),
                privileged=[f.where for f in found] if parent_trusted else []))
        merged = parent if merged is None else merge(merged, parent)
    if merged is None:
        return root
    return merge(merged, root)


# --- merging --------------------------------------------------------------------------------------

#: How each top-level key merges when a ruleset extends another (documented in docs/language.md).
MERGE_BY_KEY = ("notify", "jobs")
MERGE_DEEP = ("defaults",)


def merge(parent: YMap, child: YMap) -> YMap:
    """The child's view over its parent: documented in docs/language.md#extends."""
    out = YMap(child.pos)
    for key in parent:
        if key != "extends":
            out.copy_from(parent, key)
    for key in child:
        if key == "extends":
            out.copy_from(child, key)
            continue
        if key in out and key in MERGE_BY_KEY and isinstance(out[key], YMap) \
                and isinstance(child[key], YMap):
            m = YMap(child[key].pos)
            for k in out[key]:
                m.copy_from(out[key], k)
            for k in child[key]:
                m.copy_from(child[key], k)
            out.put(key, m, child.key_pos[key], child.value_pos[key])
        elif key in out and key in MERGE_DEEP and isinstance(out[key], YMap) \
                and isinstance(child[key], YMap):
            out.put(key, _deep(out[key], child[key]), child.key_pos[key], child.value_pos[key])
        elif key == "rules" and isinstance(child[key], YList) \
                and isinstance(out.get(key, YList(child.pos)), YList):
            base = out.get(key, YList(child.pos))
            out.put(key, _merge_rules(base, child[key]), child.key_pos[key],
                    child.value_pos[key])
        else:
            out.copy_from(child, key)
    return out


def _deep(a: YMap, b: YMap) -> YMap:
    m = YMap(b.pos)
    for k in a:
        m.copy_from(a, k)
    for k in b:
        if k in m and isinstance(m[k], YMap) and isinstance(b[k], YMap):
            m.put(k, _deep(m[k], b[k]), b.key_pos[k], b.value_pos[k])
        else:
            m.copy_from(b, k)
    return m


OVERRIDE_MARK = "__override__"


def _merge_rules(parent: YList, child: YList) -> YList:
    out = YList(child.pos)
    index: dict[str, int] = {}
    for i, rule in enumerate(parent):
        out.push(rule, parent.item_pos[i])
        if isinstance(rule, YMap) and isinstance(rule.get("name"), str):
            index[rule["name"]] = i
    for i, rule in enumerate(child):
        name = rule.get("name") if isinstance(rule, YMap) else None
        if isinstance(name, str) and name in index:
            base = out[index[name]]
            assert isinstance(base, YMap)
            m = YMap(rule.pos)
            for k in base:
                m.copy_from(base, k)
            for k in rule:
                m.copy_from(rule, k)
            out[index[name]] = m
            out.item_pos[index[name]] = child.item_pos[i]
        else:
            marked = isinstance(rule, YMap) and isinstance(name, str) and "when" not in rule
            out.push(_marked(rule) if marked else rule, child.item_pos[i])
    return out


def _marked(rule: YMap) -> YMap:
    """A child rule with no `when` that overrides nothing: flagged for RM304 at validation."""
    m = YMap(rule.pos)
    for k in rule:
        m.copy_from(rule, k)
    m.put(OVERRIDE_MARK, True, rule.value_pos["name"], rule.value_pos["name"])
    return m


# --- validation ---------------------------------------------------------------------------------


def validate(tree: YMap, display: str, secrets: Secrets, files: list[str]) -> Loaded:
    from .models import Ruleset

    diags: list[Diagnostic] = []
    data = to_plain(tree)
    for key in [k for k in data if k.startswith("x-")]:
        del data[key]  # reusable anchor blocks, documented
    rules = data.get("rules")
    if isinstance(rules, list):
        for i, rule in enumerate(rules):
            if isinstance(rule, dict) and rule.pop(OVERRIDE_MARK, False):
                pos = locate(tree, ("rules", i, "name")) or tree.pos
                what = "disables" if rule.get("enabled") is False else "overrides"
                diags.append(make(pos.path, pos.line, pos.col, "RM304",
                                  f"rule {rule['name']!r} {what} no rule of the rulesets it "
                                  "extends (and has no `when:` of its own)"))
    secrets.add_notify(data.get("notify"))  # notify URLs are secrets, also in lint findings
    if diags:
        raise RulesetError([_scrub(d, secrets) for d in diags])
    try:
        ruleset = Ruleset.model_validate(data, strict=True)
    except ValidationError as exc:
        diags = [_scrub(d, secrets) for d in from_validation(exc, tree, Ruleset)]
        raise RulesetError(_dedupe(diags)) from None
    return Loaded(ruleset, tree, display, secrets, files)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[str, int, int, str]] = set()
    out = []
    for d in sorted(diags, key=lambda d: (d.path, d.line, d.col)):
        key = (d.path, d.line, d.col, d.code)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


_TYPE_ERRORS = {
    "string_type": "a string", "int_type": "an integer", "float_type": "a number",
    "bool_type": "true or false", "dict_type": "a mapping", "list_type": "a list",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "int_from_float":
    "an integer", "int_parsing": "an integer", "float_parsing": "a number",
    "bool_parsing": "true or false", "none_required": "nothing",
}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing (null)"
    return type(value).__name__


def where(tree: YMap, loc: Sequence[str | int], *, parent: bool = False) -> str:
    """A readable place: `jobs.train.slurm`, `rule "crashed"`, `rules[3].do[0]`.

    With `parent`, the place that holds the last element of `loc` (for unknown keys).
    """
    node: Any = tree
    parts: list[str] = []
    trail = matched(tree, loc)
    if parent and trail and loc and trail[-1] == loc[-1] and len(trail) > 0:
        trail = trail[:-1]
    for part in trail:
        if isinstance(node, YMap) and isinstance(part, str) and part in node:
            parts.append(part if not parts else f".{part}")
            node = node[part]
        elif isinstance(node, YList) and isinstance(part, int) and 0 <= part < len(node):
            item = node[part]
            if parts and parts[-1] in ("rules", ".rules") and isinstance(item, YMap) \
                    and isinstance(item.get("name"), str):
                parts = [f'rule "{item["name"]}"']
            else:
                parts.append(f"[{part}]")
            node = item
    return "".join(parts) or "the ruleset"


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _tags(tp: Any) -> dict[str, Any]:
    """Members of a tagged union by tag."""
    from pydantic import Tag

    out = {}
    for member in typing.get_args(tp):
        if typing.get_origin(member) is typing.Annotated:
            args = typing.get_args(member)
            for meta in args[1:]:
                if isinstance(meta, Tag):
                    out[meta.tag] = args[0]
    return out


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (for did-you-mean on unknown keys)."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            tags = _tags(tp)
            if isinstance(part, str) and part in tags:
                tp = tags[part]
                continue
            models = [a for a in typing.get_args(tp)
                      if isinstance(_unwrap(a), type) and issubclass(_unwrap(a), BaseModel)]
            if not models:
                continue
            tp = _unwrap(models[0])
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {(f.alias or n): f for n, f in tp.model_fields.items()}
            if isinstance(part, str) and part in fields:
                tp = fields[part].annotation
            continue
        origin = typing.get_origin(tp)
        if origin in (list, dict):
            tp = typing.get_args(tp)[-1]
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        models = [_unwrap(a) for a in typing.get_args(tp)
                  if isinstance(_unwrap(a), type) and issubclass(_unwrap(a), BaseModel)]
        tp = models[0] if models else tp
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def allowed_keys(root: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    model = _model_at(root, loc)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def from_validation(exc: ValidationError, tree: YMap,
                    root_model: type[BaseModel]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    errors = exc.errors(include_url=False)
    for err in errors:
        loc = tuple(err["loc"])
        kind = err["type"]
        place = where(tree, loc, parent=True) if loc else "the ruleset"
        if kind == "extra_forbidden":
            key = str(loc[-1])
            pos = locate(tree, loc, at_key=True)
            choices = allowed_keys(root_model, loc[:-1])
            hint = _did_you_mean(key, choices)
            if not hint and choices:
                hint = "; allowed: " + ", ".join(choices)
                if len(loc) == 1:
                    hint += " (prefix a key with x- to keep a block for YAML anchors)"
            code, message = "RM201", f'unknown key "{key}" in {place}{hint}'
        elif kind == "missing":
            key = str(loc[-1])
            pos = locate(tree, loc[:-1])
            code, message = "RM202", f'missing required key "{key}" in {place}'
        elif kind.startswith("RM"):
            on_key = bool(loc) and loc[-1] == "[key]"
            pos = locate(tree, loc[:-1], at_key=True) if on_key else locate(tree, loc)
            code, message = kind, err["msg"]
        elif kind == "literal_error" and loc == ("version",) and not isinstance(
                err["input"], int):
            pos = locate(tree, loc)
            code, message = "RM203", f"version must be an integer (1), got " \
                f"{_type_name(err['input'])}"
        elif kind == "literal_error" and loc == ("version",):
            pos = locate(tree, loc)
            code, message = "RM210", f"unsupported version {err['input']!r}: this rulesmon " \
                "understands version 1"
        elif kind in ("literal_error", "enum"):
            pos = locate(tree, loc)
            expected = err.get("ctx", {}).get("expected", "")
            options = [o.strip(" '") for o in expected.replace(" or ", ", ").split(",")]
            hint = _did_you_mean(str(err["input"]), options)
            code, message = "RM204", f"invalid value {err['input']!r} for " \
                f"{where(tree, loc)}: expected {expected}{hint}"
        elif kind in _TYPE_ERRORS:
            pos = locate(tree, loc)
            code, message = "RM203", f"{where(tree, loc)} must be {_TYPE_ERRORS[kind]}, got " \
                f"{_type_name(err['input'])}"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            pos = locate(tree, loc)
            code, message = "RM213", f"{where(tree, loc)}: an action names exactly one of " \
                "notify, log, exec, stop"
        else:
            pos = locate(tree, loc)
            msg = err["msg"]
            code, message = "RM204", f"invalid value for {where(tree, loc)}: {msg}"
        pos = pos or tree.pos
        out.append(make(pos.path, pos.line, pos.col, code, message))
    return _collapse_unions(out)


def _collapse_unions(diags: list[Diagnostic]) -> list[Diagnostic]:
    """One error per mistake: a union reports every branch at the same node; keep the first."""
    seen: set[tuple[str, int, int]] = set()
    out = []
    for d in diags:
        key = (d.path, d.line, d.col)
        if key in seen and d.code in ("RM203", "RM204"):
            continue
        seen.add(key)
        out.append(d)
    return out
