"""Conditions: simpleeval's grammar, checked against a strict whitelist once, at load.

simpleeval's parser defines what a condition may say; on top of its own checks we accept only
the node types below, so lint can name every fact and function a condition uses and the engine
can later evaluate a tree known to be harmless.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field

from simpleeval import SimpleEval

_ALLOWED_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_ALLOWED_UNARY = (ast.Not, ast.USub, ast.UAdd)
_ALLOWED_CMP = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
                ast.Is, ast.IsNot)
_FORBIDDEN_NAMES = {"__builtins__", "__import__", "eval", "exec", "compile", "open", "getattr",
                    "setattr", "globals", "locals", "vars", "type", "object"}
MAX_EXPR_LENGTH = 2000
MAX_NODES = 400


class ExpressionError(ValueError):
    """A condition that cannot be accepted; `col` is 1-based within the expression text."""

    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.col = col


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[ast.expr, ...]
    col: int


@dataclass(frozen=True)
class Parsed:
    """A validated condition and what it refers to."""

    text: str
    tree: ast.expr
    paths: tuple[tuple[str, ...], ...] = field(default=())
    calls: tuple[Call, ...] = field(default=())


def parse(text: str) -> Parsed:
    """Parse and validate; raises ExpressionError with a readable one-line message."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("empty condition")
    if len(text) > MAX_EXPR_LENGTH:
        raise ExpressionError(f"condition is longer than {MAX_EXPR_LENGTH} characters")
    source = " ".join(text.split("\n"))  # YAML block scalars may wrap a condition
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            stmt = SimpleEval.parse(source)
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", exc.offset or 0) from None
    except SyntaxWarning as exc:  # such as `"x" is None`: always a mistake in a condition
        raise ExpressionError(str(exc)) from None
    except (Warning, Exception) as exc:  # simpleeval warns on several statements
        raise ExpressionError(f"not a single expression: {exc}") from None
    if not isinstance(stmt, ast.Expr):
        raise ExpressionError(
            f"not an expression ({type(stmt).__name__.lower()} statements are not allowed)",
            getattr(stmt, "col_offset", -1) + 1)
    paths: list[tuple[str, ...]] = []
    calls: list[Call] = []
    count = 0
    for node in ast.walk(stmt.value):
        count += 1
        _check_node(node)
    if count > MAX_NODES:
        raise ExpressionError(f"condition is too complex ({count} nodes, at most {MAX_NODES})")
    _collect(stmt.value, paths, calls)
    return Parsed(text, stmt.value, tuple(paths), tuple(calls))


def _where(node: ast.AST) -> int:
    return int(getattr(node, "col_offset", -1)) + 1


def _check_node(node: ast.AST) -> None:
    if isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot) and not (
                    isinstance(right, ast.Constant) and right.value is None):
                raise ExpressionError("`is` compares only with None (use == for values)",
                                      _where(node))
        return
    simple = (ast.BoolOp, ast.IfExp, ast.Load, ast.And, ast.Or, ast.Tuple, ast.List,
              ast.Subscript, *_ALLOWED_BINOPS, *_ALLOWED_UNARY, *_ALLOWED_CMP)
    if isinstance(node, simple):
        return
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, _ALLOWED_BINOPS):
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed", _where(node))
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _ALLOWED_UNARY):
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed", _where(node))
        return
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise ExpressionError(f"constant {node.value!r} is not allowed", _where(node))
        return
    if isinstance(node, ast.Name):
        if node.id.startswith("_") or node.id in _FORBIDDEN_NAMES:
            raise ExpressionError(f"name {node.id!r} is not allowed", _where(node))
        return
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise ExpressionError(
                f"attribute {node.attr!r} is not allowed (names starting with _ are private)",
                _where(node))
        return
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Lambda):
            raise ExpressionError("lambda not allowed in conditions", _where(node))
        if not isinstance(node.func, ast.Name):
            raise ExpressionError("only registered functions can be called, not methods",
                                  _where(node))
        if node.keywords:
            raise ExpressionError("keyword arguments are not supported", _where(node))
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError("*args is not allowed", _where(node))
        return
    if isinstance(node, ast.Slice):
        raise ExpressionError("slices are not allowed", _where(node))
    kind = {
        ast.Lambda: "lambda", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
        ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
        ast.NamedExpr: "assignment (:=)", ast.JoinedStr: "f-strings", ast.Dict: "dict literals",
        ast.Set: "set literals", ast.Await: "await", ast.Yield: "yield", ast.Starred: "*args",
    }.get(type(node), type(node).__name__)
    raise ExpressionError(f"{kind} not allowed in conditions", _where(node))


def dotted(node: ast.expr) -> tuple[str, ...] | None:
    """`job.state` → ("job", "state"); `node.vars["run_uuid"]` → ("node", "vars", "run_uuid")."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
              and isinstance(node.slice.value, str)):
            parts.append(node.slice.value)
            node = node.value
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            return tuple(reversed(parts))
        else:
            return None


def _collect(node: ast.expr, paths: list[tuple[str, ...]], calls: list[Call]) -> None:
    path = dotted(node) if isinstance(node, ast.Attribute | ast.Subscript | ast.Name) else None
    if path is not None:
        paths.append(path)
        return
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        calls.append(Call(node.func.id, tuple(node.args), _where(node)))
        for arg in node.args:
            _collect(arg, paths, calls)
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            _collect(child, paths, calls)
