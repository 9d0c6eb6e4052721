"""The DAGMan input language (.dag files): nodes, their VARS, dependencies, retries and scripts.

`parse_dag(path)` reads a .dag file with everything it pulls in (INCLUDE, SPLICE) and returns a
`Dag`: one `DagNode` per node, keyed by its full name (a node `B` of splice `S` is `S+B`, as
DAGMan names it in its logs). It raises `DagError` with `file:line: message` for a mistake,
never a traceback.

Covered: JOB / FINAL / PROVISIONER / SERVICE (with DIR, NOOP, DONE, inline `{ ... }` submit
descriptions), SUBDAG EXTERNAL, SPLICE (with DIR), INCLUDE, VARS (quoted values with `\\"` and
`\\\\` escapes, PREPEND/APPEND, `$(JOB)`), PARENT ... CHILD ... (many to many, splices as
parents or children), RETRY [UNLESS-EXIT], SCRIPT [DEFER s t] [DEBUG file type] PRE/POST/HOLD,
ABORT-DAG-ON [RETURN], PRE_SKIP, PRIORITY, CATEGORY, DONE, NODE_STATUS_FILE, JOBSTATE_LOG,
DOT, CONFIG, MAXJOBS, SET_JOB_ATTR, ENV, SAVE_POINT_FILE, SUBMIT-DESCRIPTION blocks, splice
pins (CONNECT, PIN_IN, PIN_OUT) and REJECT; `ALL_NODES` where DAGMan takes it; keywords in any
case; `#` comments; a line ending in a backslash continues on the next.

Relative paths (INCLUDE, SPLICE files) are resolved from the folder of the file that names
them, which is DAGMan's behaviour when the DAG is submitted from its own folder (the usual
case and what `-usedagdir` does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ALL_NODES = "ALL_NODES"
MAX_DEPTH = 32  #: INCLUDE / SPLICE nesting; deeper is a cycle in practice


class DagError(Exception):
    """A mistake in a .dag file, located: `file:line: message`."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}")


@dataclass
class Script:
    """A PRE, POST or HOLD script of a node."""

    kind: str
    command: str
    defer_status: int | None = None
    defer_time: int | None = None
    debug_file: str | None = None
    debug_type: str | None = None


@dataclass
class DagNode:
    """One node, as the .dag files declare it."""

    name: str
    submit: str
    kind: str = "JOB"  #: JOB, FINAL, PROVISIONER, SERVICE or SUBDAG
    dir: str = ""
    noop: bool = False
    done: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    retry: int = 0
    retry_unless_exit: int | None = None
    scripts: dict[str, Script] = field(default_factory=dict)
    abort_on: int | None = None  #: ABORT-DAG-ON exit value
    abort_return: int | None = None  #: ... and the DAG's return value then
    pre_skip: int | None = None
    priority: int | None = None
    category: str | None = None
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    file: str = ""
    line: int = 0


@dataclass
class Dag:
    """A parsed DAG: its nodes and the DAG-wide settings."""

    path: Path
    nodes: dict[str, DagNode] = field(default_factory=dict)
    node_status_file: str | None = None
    status_interval: int | None = None
    status_always_update: bool = False
    jobstate_log: str | None = None
    dot: str | None = None
    config: str | None = None
    maxjobs: dict[str, int] = field(default_factory=dict)
    splices: dict[str, list[str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  #: every file read, for change checks
    rejected: bool = False

    def roots(self) -> list[str]:
        return [n for n, node in self.nodes.items() if not node.parents]


# --- parsing --------------------------------------------------------------------------------

_VAR = re.compile(r'\s*([A-Za-z0-9_.+]+)\s*=\s*"([^"\\]*(?:\\.[^"\\]*)*)"\s*')
_INT = re.compile(r"^[+-]?\d+$")
_IGNORED = frozenset({"MAXJOBS", "SET_JOB_ATTR", "ENV", "SAVE_POINT_FILE", "CONNECT", "PIN_IN",
                      "PIN_OUT", "JOBSTATE_LOG", "DOT", "CONFIG", "NODE_STATUS_FILE", "REJECT"})


@dataclass
class _Edge:
    parents: list[str]
    children: list[str]
    file: str
    line: int


@dataclass
class _Pending:
    """A per-node command waiting for the scope's nodes to be known."""

    keyword: str
    node: str
    args: list[str]
    rest: str
    file: str
    line: int


@dataclass
class _Scope:
    """One DAG file and what it includes: a top-level DAG or a splice."""

    prefix: str  #: "" or "Splice+" (nested: "Outer+Inner+")
    dir: str  #: DIR of the splice, prepended to its nodes' DIR
    nodes: list[str] = field(default_factory=list)  #: full names defined here
    local: dict[str, str] = field(default_factory=dict)  #: local name → full name
    splices: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    edges: list[_Edge] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)


class _Parser:
    def __init__(self, top: Path) -> None:
        self.dag = Dag(path=top)
        self.depth = 0

    # files and lines ----------------------------------------------------------------------

    def read(self, path: Path, where: tuple[str, int] | None) -> str:
        try:
            data = path.read_bytes()
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the file name
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            if where is None:
                raise DagError(path, 0, f"cannot read the DAG file: {reason}") from None
            raise DagError(where[0], where[1], f"cannot read {path}: {reason}") from None
        self.dag.files.append(path)
        return data.decode("utf-8", "replace")

    def lines(self, text: str) -> list[tuple[int, str]]:
        """Logical lines with their first physical line number: comments and blank lines
        dropped, backslash continuations joined."""
        out: list[tuple[int, str]] = []
        held: list[str] = []
        start = 0
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not held:
                if not line or line[0] == "#":
                    continue
                start = number
            if line.endswith("\\") and not line.endswith("\\\\"):
                held.append(line[:-1])
                continue
            held.append(line)
            joined = " ".join(held).strip()
            if joined and joined[0] != "#":  # lone `\` lines join into nothing
                out.append((start, joined))
            held = []
        joined = " ".join(held).strip()
        if joined and joined[0] != "#":
            out.append((start, joined))
        return out

    # one file into a scope ----------------------------------------------------------------

    def parse_file(self, path: Path, scope: _Scope, where: tuple[str, int] | None) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            assert where is not None
            raise DagError(where[0], where[1], f"INCLUDE/SPLICE nested more than {MAX_DEPTH} "
                           "deep (a file includes itself?)")
        text = self.read(path, where)
        fname = str(path)
        lines = self.lines(text)
        i = 0
        while i < len(lines):
            number, line = lines[i]
            i += 1
            parts = line.split(None, 1)
            keyword = parts[0].upper()
            rest = parts[1] if len(parts) > 1 else ""
            handler = _HANDLERS.get(keyword)
            if handler is not None:
                skip = handler(self, scope, path, fname, number, rest)
                if skip:  # an inline block: skip to its closing brace
                    i = self.skip_block(lines, i, fname, number)
                continue
            if keyword in _IGNORED:
                self.dag_setting(keyword, rest, path, fname, number, scope)
                continue
            if keyword == "SUBMIT-DESCRIPTION":
                if not rest.rstrip().endswith("{"):
                    raise DagError(fname, number, "SUBMIT-DESCRIPTION needs a name and `{`")
                i = self.skip_block(lines, i, fname, number)
                continue
            raise DagError(fname, number, f"unknown command {parts[0]!r}")
        self.depth -= 1

    def skip_block(self, lines: list[tuple[int, str]], i: int, fname: str, start: int) -> int:
        while i < len(lines):
            if lines[i][1].strip() == "}":
                return i + 1
            i += 1
        raise DagError(fname, start, "inline block `{` is never closed with `}`")

    def dag_setting(self, keyword: str, rest: str, path: Path, fname: str, number: int,
                    scope: _Scope) -> None:
        args = rest.split()
        dag = self.dag
        if keyword == "REJECT":
            dag.rejected = True
            return
        if keyword == "MAXJOBS":
            if len(args) != 2 or not _INT.match(args[1]):
                raise DagError(fname, number, "MAXJOBS needs a category and a number")
            dag.maxjobs[args[0]] = int(args[1])
            return
        if keyword in ("NODE_STATUS_FILE", "JOBSTATE_LOG", "DOT", "CONFIG"):
            if not args:
                raise DagError(fname, number, f"{keyword} needs a file name")
            if scope.prefix:  # DAGMan ignores these inside splices
                return
            if keyword == "NODE_STATUS_FILE":
                if dag.node_status_file is None:  # the first one wins
                    dag.node_status_file = args[0]
                    for extra in args[1:]:
                        if _INT.match(extra):
                            dag.status_interval = int(extra)
                        elif extra.upper() == "ALWAYS-UPDATE":
                            dag.status_always_update = True
                        else:
                            raise DagError(fname, number, f"NODE_STATUS_FILE: unexpected "
                                           f"{extra!r} (expected seconds or ALWAYS-UPDATE)")
            elif keyword == "JOBSTATE_LOG":
                dag.jobstate_log = dag.jobstate_log or args[0]
            elif keyword == "DOT":
                dag.dot = dag.dot or args[0]
            else:
                dag.config = dag.config or args[0]

    # commands ------------------------------------------------------------------------------

    def node_decl(self, scope: _Scope, kind: str, fname: str, number: int,
                  rest: str) -> bool:
        args = rest.split()
        if kind == "SUBDAG":
            if not args or args[0].upper() != "EXTERNAL":
                raise DagError(fname, number, "SUBDAG needs EXTERNAL: SUBDAG EXTERNAL name "
                               "file.dag")
            args = args[1:]
        if len(args) < 2:
            raise DagError(fname, number, f"{kind} needs a node name and a submit file")
        name, submit = args[0], args[1]
        self.check_name(name, fname, number)
        node = DagNode(name=scope.prefix + name, submit=submit, kind=kind, file=fname,
                       line=number)
        block = submit == "{"
        if block:
            node.submit = "(inline)"
        j = 2
        while j < len(args):
            word = args[j].upper()
            if word == "DIR":
                if j + 1 >= len(args):
                    raise DagError(fname, number, "DIR needs a folder")
                node.dir = args[j + 1]
                j += 2
                continue
            if word == "NOOP":
                node.noop = True
            elif word == "DONE":
                node.done = True
            elif word == "{" and not block:
                block = True
            else:
                raise DagError(fname, number, f"{kind} {name}: unexpected {args[j]!r} (expected"
                               " DIR, NOOP or DONE)")
            j += 1
        if scope.dir:
            node.dir = str(Path(scope.dir) / node.dir) if node.dir else scope.dir
        if node.name in self.dag.nodes or name in scope.splices:
            first = self.dag.nodes.get(node.name)
            at = f" (first at {first.file}:{first.line})" if first else ""
            raise DagError(fname, number, f"node {name!r} is defined twice{at}")
        self.dag.nodes[node.name] = node
        scope.nodes.append(node.name)
        scope.local[name] = node.name
        return block

    def check_name(self, name: str, fname: str, number: int) -> None:
        if name.upper() == ALL_NODES:
            raise DagError(fname, number, "ALL_NODES is reserved and cannot name a node")
        if "+" in name:
            raise DagError(fname, number, f"node name {name!r} cannot contain '+'")

    def splice(self, scope: _Scope, path: Path, fname: str, number: int, rest: str) -> bool:
        args = rest.split()
        if len(args) < 2:
            raise DagError(fname, number, "SPLICE needs a name and a DAG file")
        name, file = args[0], args[1]
        self.check_name(name, fname, number)
        sdir = ""
        if len(args) > 2:
            if args[2].upper() != "DIR" or len(args) != 4:
                raise DagError(fname, number, "SPLICE name file.dag [DIR folder]")
            sdir = args[3]
        if name in scope.splices or name in scope.local:
            raise DagError(fname, number, f"splice {name!r} is defined twice")
        base = path.parent / sdir if sdir else path.parent
        inner = _Scope(prefix=scope.prefix + name + "+",
                       dir=str(Path(scope.dir) / sdir) if scope.dir and sdir else
                       (sdir or scope.dir))
        self.parse_file(base / file, inner, (fname, number))
        self.finish(inner)
        own = set(inner.nodes)
        initial = [n for n in own if not any(p in own for p in self.dag.nodes[n].parents)]
        final = [n for n in own if not any(c in own for c in self.dag.nodes[n].children)]
        scope.splices[name] = (initial, final)
        self.dag.splices[scope.prefix + name] = sorted(own)
        scope.nodes.extend(inner.nodes)
        return False

    def include(self, scope: _Scope, path: Path, fname: str, number: int, rest: str) -> bool:
        file = rest.strip()
        if not file:
            raise DagError(fname, number, "INCLUDE needs a file name")
        self.parse_file(path.parent / file, scope, (fname, number))
        return False

    def edge(self, scope: _Scope, _path: Path, fname: str, number: int, rest: str) -> bool:
        words = rest.split()
        upper = [w.upper() for w in words]
        if "CHILD" not in upper:
            raise DagError(fname, number, "PARENT needs CHILD: PARENT p1 [p2...] CHILD c1 "
                           "[c2...]")
        k = upper.index("CHILD")
        parents, children = words[:k], words[k + 1:]
        if not parents or not children:
            raise DagError(fname, number, "PARENT needs at least one parent and one child")
        scope.edges.append(_Edge(parents, children, fname, number))
        return False

    def script_target(self, rest: str, fname: str, number: int) -> tuple[str, str]:
        """`[DEFER s t] [DEBUG f t] PRE|POST|HOLD node cmd...` → (node, "KIND opts | cmd")."""
        words = rest.split()
        opts: list[str] = []
        j = 0
        while j < len(words) and words[j].upper() in ("DEFER", "DEBUG"):
            if j + 2 >= len(words):
                raise DagError(fname, number, f"SCRIPT {words[j].upper()} needs two values")
            opts += [words[j].upper(), words[j + 1], words[j + 2]]
            j += 3
        if j >= len(words) or words[j].upper() not in ("PRE", "POST", "HOLD"):
            raise DagError(fname, number, "SCRIPT needs PRE, POST or HOLD, a node and a "
                           "command")
        kind = words[j].upper()
        if j + 2 >= len(words):
            raise DagError(fname, number, f"SCRIPT {kind} needs a node and a command")
        node = words[j + 1]
        # the command keeps its own spacing: cut the text after the node name
        m = re.match(r"\s*(?:\S+\s+){" + str(j + 1) + r"}\S+\s+", rest)
        command = rest[m.end():] if m else " ".join(words[j + 2:])
        return node, " ".join([kind, *opts]) + " | " + command.strip()

    # resolving a scope --------------------------------------------------------------------

    def targets(self, scope: _Scope, name: str, fname: str, number: int,
                what: str) -> list[str]:
        if name.upper() == ALL_NODES:
            return [n for n in scope.nodes if n.startswith(scope.prefix)
                    and "+" not in n[len(scope.prefix):]]
        full = scope.local.get(name)
        if full is None:
            full = name if name in self.dag.nodes else None
        if full is None:
            raise DagError(fname, number, f"{what} names unknown node {name!r}"
                           f"{_close(name, list(scope.local))}")
        return [full]

    def ends(self, scope: _Scope, name: str, edge: _Edge, parent: bool) -> list[str]:
        if name in scope.splices:
            initial, final = scope.splices[name]
            return final if parent else initial
        return self.targets(scope, name, edge.file, edge.line,
                            "PARENT" if parent else "CHILD")

    def finish(self, scope: _Scope) -> None:
        nodes = self.dag.nodes
        for edge in scope.edges:
            parents = [p for name in edge.parents for p in self.ends(scope, name, edge, True)]
            children = [c for name in edge.children
                        for c in self.ends(scope, name, edge, False)]
            for c in children:
                cnode = nodes[c]
                for p in parents:
                    if p == c:
                        raise DagError(edge.file, edge.line, f"node {c!r} cannot be its own "
                                       "parent")
                    pnode = nodes[p]
                    if c not in pnode.children:
                        pnode.children.append(c)
                        cnode.parents.append(p)
        # ALL_NODES first, so that a node's own settings (later or earlier) win
        ordered = sorted(scope.pending, key=lambda p: p.node.upper() != ALL_NODES)
        for item in ordered:
            for name in self.targets(scope, item.node, item.file, item.line, item.keyword):
                _APPLY[item.keyword](nodes[name], item)


def _close(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _int(text: str, item: _Pending, what: str) -> int:
    if not _INT.match(text):
        raise DagError(item.file, item.line, f"{item.keyword} {item.node}: {what} must be an "
                       f"integer, not {text!r}")
    return int(text)


def parse_vars(text: str, file: str, line: int, node: str) -> tuple[dict[str, str], str]:
    """`[PREPEND|APPEND] k="v" k2="v2"` → ({k: v}, mode); `\\"` and `\\\\` unescaped."""
    mode = ""
    body = text.strip()
    head = body.split(None, 1)
    if head and head[0].upper() in ("PREPEND", "APPEND"):
        mode = head[0].upper()
        body = head[1] if len(head) > 1 else ""
    out: dict[str, str] = {}
    pos = 0
    body = body.rstrip()
    while pos < len(body):
        m = _VAR.match(body, pos)
        if m is None:
            snippet = body[pos:].strip()[:40]
            raise DagError(file, line, f"VARS {node}: expected name=\"value\" at {snippet!r}")
        name, raw = m.group(1), m.group(2)
        if name.lower().startswith("queue"):
            raise DagError(file, line, f"VARS {node}: a macro name cannot start with 'queue'")
        value = raw.replace("\\\\", "\x00").replace('\\"', '"').replace("\x00", "\\") \
            if "\\" in raw else raw
        out[name] = value
        pos = m.end()
    if not out:
        raise DagError(file, line, f"VARS {node}: no name=\"value\" pairs")
    return out, mode


def _apply_vars(node: DagNode, item: _Pending) -> None:
    values, _mode = parse_vars(item.rest, item.file, item.line, item.node)
    for k, v in values.items():
        node.vars[k] = v.replace("$(JOB)", node.name) if "$(JOB)" in v else v


def _apply_retry(node: DagNode, item: _Pending) -> None:
    args = item.args
    if not args:
        raise DagError(item.file, item.line, f"RETRY {item.node} needs a number of retries")
    node.retry = _int(args[0], item, "the number of retries")
    if len(args) > 1:
        if args[1].upper() != "UNLESS-EXIT" or len(args) != 3:
            raise DagError(item.file, item.line, f"RETRY {item.node}: expected UNLESS-EXIT "
                           "value after the count")
        node.retry_unless_exit = _int(args[2], item, "UNLESS-EXIT")


def _apply_script(node: DagNode, item: _Pending) -> None:
    head, _, command = item.rest.partition(" | ")
    words = head.split()
    script = Script(kind=words[0], command=command)
    j = 1
    while j < len(words):
        if words[j] == "DEFER":
            script.defer_status = _int(words[j + 1], item, "DEFER status")
            script.defer_time = _int(words[j + 2], item, "DEFER time")
        else:
            script.debug_file, script.debug_type = words[j + 1], words[j + 2]
        j += 3
    node.scripts[script.kind] = script


def _apply_abort(node: DagNode, item: _Pending) -> None:
    args = item.args
    if not args:
        raise DagError(item.file, item.line, f"ABORT-DAG-ON {item.node} needs an exit value")
    node.abort_on = _int(args[0], item, "the exit value")
    if len(args) > 1:
        if args[1].upper() != "RETURN" or len(args) != 3:
            raise DagError(item.file, item.line, f"ABORT-DAG-ON {item.node}: expected RETURN "
                           "value after the exit value")
        node.abort_return = _int(args[2], item, "RETURN")


def _apply_pre_skip(node: DagNode, item: _Pending) -> None:
    if len(item.args) != 1:
        raise DagError(item.file, item.line, f"PRE_SKIP {item.node} needs one exit code")
    node.pre_skip = _int(item.args[0], item, "the exit code")


def _apply_priority(node: DagNode, item: _Pending) -> None:
    if len(item.args) != 1:
        raise DagError(item.file, item.line, f"PRIORITY {item.node} needs one number")
    node.priority = _int(item.args[0], item, "the priority")


def _apply_category(node: DagNode, item: _Pending) -> None:
    if len(item.args) != 1:
        raise DagError(item.file, item.line, f"CATEGORY {item.node} needs one category name")
    node.category = item.args[0]


def _apply_done(node: DagNode, item: _Pending) -> None:
    if item.args:
        raise DagError(item.file, item.line, f"DONE {item.node}: unexpected {item.args[0]!r}")
    node.done = True


_APPLY = {
    "VARS": _apply_vars, "RETRY": _apply_retry, "SCRIPT": _apply_script,
    "ABORT-DAG-ON": _apply_abort, "PRE_SKIP": _apply_pre_skip, "PRIORITY": _apply_priority,
    "CATEGORY": _apply_category, "DONE": _apply_done,
}


_Handler = Callable[["_Parser", _Scope, Path, str, int, str], bool]


def _decl(kind: str) -> _Handler:
    def handler(parser: _Parser, scope: _Scope, _path: Path, fname: str, number: int,
                rest: str) -> bool:
        return parser.node_decl(scope, kind, fname, number, rest)
    return handler


def _per_node(keyword: str) -> _Handler:
    """VARS, RETRY, SCRIPT...: kept until the scope's nodes are all known."""
    def handler(parser: _Parser, scope: _Scope, _path: Path, fname: str, number: int,
                rest: str) -> bool:
        parts = rest.split(None, 1)
        if not parts:
            raise DagError(fname, number, f"{keyword} needs a node name")
        node = parts[0]
        tail = parts[1] if len(parts) > 1 else ""
        if keyword == "SCRIPT":
            node, tail = parser.script_target(rest, fname, number)
        scope.pending.append(_Pending(keyword, node, tail.split(), tail, fname, number))
        return False
    return handler


_HANDLERS: dict[str, _Handler] = {
    "JOB": _decl("JOB"), "FINAL": _decl("FINAL"), "PROVISIONER": _decl("PROVISIONER"),
    "SERVICE": _decl("SERVICE"), "SUBDAG": _decl("SUBDAG"),
    "SPLICE": _Parser.splice, "INCLUDE": _Parser.include, "PARENT": _Parser.edge,
    **{k: _per_node(k) for k in _APPLY},
}


def parse_dag(path: str | Path) -> Dag:
    """Parse a .dag file and everything it includes or splices in."""
    top = Path(path)
    parser = _Parser(top)
    scope = _Scope(prefix="", dir="")
    parser.parse_file(top, scope, None)
    parser.finish(scope)
    return parser.dag


def parse_rescue(path: str | Path) -> tuple[set[str], dict[str, int], list[str]]:
    """A partial rescue DAG: (nodes marked DONE, RETRY counts left, failed nodes named in its
    header comment). Lines it does not understand are skipped: it is DAGMan's own output."""
    done: set[str] = set()
    retries: dict[str, int] = {}
    failed: list[str] = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return done, retries, failed
    header_failed = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            if "Nodes that failed" in line:
                header_failed = True
            elif header_failed:
                names = line.lstrip("#").strip()
                failed = [n for n in names.replace("<ENDLIST>", "").split(",") if n.strip()]
                failed = [n.strip() for n in failed]
                header_failed = False
            continue
        words = line.split()
        if len(words) == 2 and words[0].upper() == "DONE":
            done.add(words[1])
        elif len(words) >= 3 and words[0].upper() == "RETRY" and _INT.match(words[2]):
            retries[words[1]] = int(words[2])
    return done, retries, failed
