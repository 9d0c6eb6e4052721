"""Reading one YAML file into positioned nodes, in bounded time and memory.

Hostile or broken input (huge, binary, empty, alias bombs, tags, several documents) is refused
with one located diagnostic before any of it reaches the models.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, CommentedSet, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ..diagnostics import RulesetError, make
from .nodes import Pos, YList, YMap

MAX_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64


def _fail(path: str, line: int, col: int, code: str, message: str) -> RulesetError:
    return RulesetError([make(path, line, col, code, message)])


def read_text(path: Path, display: str) -> str:
    """Read a ruleset file as text, refusing what cannot be one."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise _fail(display, 0, 0, "RM001", "is a directory, expected a YAML file")
        if size > MAX_BYTES:
            raise _fail(display, 0, 0, "RM002",
                        f"file is {size} bytes; rulesets are limited to {MAX_BYTES} bytes")
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _fail(display, 0, 0, "RM001", "no such file") from None
    except PermissionError:
        raise _fail(display, 0, 0, "RM001", "permission denied") from None
    except OSError as exc:
        raise _fail(display, 0, 0, "RM001", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:  # grew while we looked, or a special file
        raise _fail(display, 0, 0, "RM002", f"file is larger than {MAX_BYTES} bytes")
    if b"\x00" in data:
        at = data.index(b"\x00")
        line = data.count(b"\n", 0, at) + 1
        col = at - (data.rfind(b"\n", 0, at) + 1) + 1
        raise _fail(display, line, col, "RM003", "file holds NUL bytes; is it a binary file?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(display, line, col, "RM003",
                    "file is not valid UTF-8 text; is it a binary file?") from None
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise _fail(display, 0, 0, "RM004", "file is empty: expected a ruleset mapping")
    return text


def _mark(display: str, mark: Any) -> tuple[int, int]:
    if mark is None:
        return 0, 0
    return mark.line + 1, mark.column + 1


def parse(text: str, display: str) -> YMap:
    """Parse YAML text into positioned nodes."""
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        docs = list(yaml.load_all(text))
    except DuplicateKeyError as exc:
        line, col = _mark(display, exc.problem_mark)
        key = _duplicate_key_name(exc)
        raise _fail(display, line, col, "RM102", f"duplicate key {key}") from None
    except MarkedYAMLError as exc:
        line, col = _mark(display, exc.problem_mark or exc.context_mark)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        if "tag" in problem and "could not determine a constructor" in problem:
            raise _fail(display, line, col, "RM008",
                        "YAML tags are not allowed in rulesets") from None
        raise _fail(display, line, col, "RM101", problem) from None
    except YAMLError as exc:
        raise _fail(display, 0, 0, "RM101", str(exc).splitlines()[0]) from None
    except TypeError as exc:  # `? [a, b]: x`: a list or mapping used as a key
        if "unhashable" not in str(exc):
            raise
        line = next((i + 1 for i, ln in enumerate(text.splitlines())
                     if ln.lstrip().startswith("? ")), 0)
        raise _fail(display, line, 1, "RM203", "mapping keys must be plain strings") from None
    except RecursionError:
        raise _fail(display, 0, 0, "RM006", f"document nests deeper than {MAX_DEPTH} levels") \
            from None
    docs = [d for d in docs if d is not None]
    if not docs:
        raise _fail(display, 0, 0, "RM004", "file is empty: expected a ruleset mapping")
    if len(docs) > 1:
        line = _start_line(docs[1])
        raise _fail(display, line, 1, "RM007",
                    "file holds several YAML documents; a ruleset is one document")
    doc = docs[0]
    if not isinstance(doc, CommentedMap):
        kind = "a list" if isinstance(doc, CommentedSeq) else "a single value"
        raise _fail(display, 1, 1, "RM005", f"the document is {kind}; a ruleset is a mapping "
                    "with keys such as version, name, jobs and rules")
    _check_size(doc, display)
    root = _convert(doc, display, Pos(display, 1, 1), 0, text.splitlines())
    assert isinstance(root, YMap)
    return root


def _duplicate_key_name(exc: DuplicateKeyError) -> str:
    problem = exc.problem or ""
    # ruamel says: found duplicate key "name" with value "x" (original value: "y")
    if '"' in problem:
        return '"' + problem.split('"')[1] + '"'
    return "in mapping"


def _start_line(node: Any) -> int:
    lc = getattr(node, "lc", None)
    return (lc.line + 1) if lc is not None and lc.line is not None else 0


def _children(node: Any) -> list[Any]:
    if isinstance(node, CommentedMap):
        return list(node.values())
    if isinstance(node, CommentedSeq):
        return list(node)
    return []


def _check_size(root: Any, display: str) -> None:
    """Count the nodes the document expands to, memoised by identity, so aliases cost nothing."""
    memo: dict[int, int] = {}
    # Iterative post-order to survive deep nesting without recursion.
    stack: list[tuple[Any, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        if id(node) in memo:
            continue
        kids = [k for k in _children(node) if isinstance(k, CommentedMap | CommentedSeq)]
        if depth > MAX_DEPTH:
            raise _fail(display, _start_line(node), 1, "RM006",
                        f"document nests deeper than {MAX_DEPTH} levels")
        if not done:
            stack.append((node, depth, True))
            stack.extend((k, depth + 1, False) for k in kids if id(k) not in memo)
            continue
        total = 1 + len(_children(node)) + sum(memo.get(id(k), 0) for k in kids)
        if total > MAX_NODES:
            raise _fail(display, _start_line(node), 1, "RM006",
                        f"anchors and aliases expand to more than {MAX_NODES} nodes")
        memo[id(node)] = total


def _key_positions(m: CommentedMap, key: Any, display: str) -> tuple[Pos, Pos]:
    data = (m.lc.data or {}).get(key)
    if data is not None:
        return Pos(display, data[0] + 1, data[1] + 1), Pos(display, data[2] + 1, data[3] + 1)
    for entry in getattr(m, "merge", []) or []:  # a key brought in by `<<: *anchor`
        source = entry[1] if isinstance(entry, tuple) else entry
        if isinstance(source, CommentedMap) and key in source:
            return _key_positions(source, key, display)
    here = Pos(display, (m.lc.line or 0) + 1, (m.lc.col or 0) + 1)
    return here, here


_NUMBER_TEXT = re.compile(r"[-+]?[0-9_]+")


def _tagged(node: Any) -> bool:
    tag = getattr(node, "tag", None)
    return getattr(tag, "value", None) is not None


def _convert(node: Any, display: str, pos: Pos, depth: int,
             lines: list[str] | None = None) -> Any:
    if isinstance(node, CommentedMap | CommentedSeq) and _tagged(node):
        raise _fail(display, pos.line, pos.col, "RM008", "YAML tags are not allowed in rulesets")
    if isinstance(node, bytes | set | CommentedSet):
        raise _fail(display, pos.line, pos.col, "RM008",
                    "YAML tags (!!binary, !!set) are not allowed in rulesets")
    if isinstance(node, CommentedMap):
        out = YMap(pos)
        for raw_key, value in node.items():
            kpos, vpos = _key_positions(node, raw_key, display)
            if isinstance(raw_key, str):
                key = raw_key
            elif isinstance(raw_key, int | float) and not isinstance(raw_key, bool):
                key = str(raw_key)  # `1: x` style keys in free-form maps
            else:
                raise _fail(display, kpos.line, kpos.col, "RM203",
                            "mapping keys must be plain strings")
            out.put(key, _convert(value, display, vpos, depth + 1, lines), kpos, vpos)
        return out
    if isinstance(node, CommentedSeq):
        seq = YList(pos)
        for i, value in enumerate(node):
            data = (node.lc.data or {}).get(i)
            ipos = Pos(display, data[0] + 1, data[1] + 1) if data else pos
            seq.push(_convert(value, display, ipos, depth + 1, lines), ipos)
        return seq
    if isinstance(node, TaggedScalar):
        raise _fail(display, pos.line, pos.col, "RM008", "YAML tags are not allowed in rulesets")
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        if getattr(node, "_underscore", None) and lines is not None:
            # `12345_7` is a string in YAML 1.2 (a SLURM array task); ruamel reads it as
            # 123457 with YAML 1.1's digit separators, so take the text as written.
            m = _NUMBER_TEXT.match(lines[pos.line - 1], pos.col - 1)
            return m.group(0) if m else str(int(node))
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, dt.datetime | dt.date):
        return node.isoformat()
    raise _fail(display, pos.line, pos.col, "RM203",
                f"unsupported YAML value of type {type(node).__name__}")
