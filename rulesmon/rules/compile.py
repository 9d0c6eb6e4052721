"""Conditions compiled to Python from their validated tree, in two variants.

simpleeval's parser and our whitelist (expressions.py) define what a condition may say;
evaluating through simpleeval's interpreter costs 9-18 µs per condition, too slow for 10,000
instances by 20 rules. So each validated tree is turned into Python source (only the node types
the whitelist admits, with helpers for `**`, `*`, `+`, `%` and subscripts that check the size of
their result before building it, see bounds.py) and compiled once:

- the *fast* variant reads facts with `s["job.state"]`; a missing fact raises KeyError;
- the *Kleene* variant, used only when the fast one hits missing data, treats missing facts
  as UNKNOWN with three-valued `and` / `or` / `not`, so `job.terminal or gpu.util < 5` is true
  when the job has ended even if the GPU probe failed.

The generated code sees no builtins; a differential test checks it agrees with simpleeval.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import bounds
from .expressions import Parsed, dotted
from .functions import EMITTERS, FUNCTIONS, RUNTIME
from .functions.spec import NOCONST, Arg
from .history import History
from .unknown import UNKNOWN, Missing, Unknown

MAX_POWER = 4_000_000
MAX_STRING = bounds.MAX_STRING


class EvalError(Exception):
    """A condition failed at run time (a type error, division by zero): reported, not fatal."""


def _pow(a: Any, b: Any) -> Any:
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return UNKNOWN
    if isinstance(b, int | float) and abs(b) > 100 and isinstance(a, int | float) \
            and abs(a) > 1:
        raise bounds.LimitExceeded(f"the power {a!r} ** {b!r} is too large (exponent over 100)")
    if isinstance(a, int | float) and isinstance(b, int | float) and abs(a) > MAX_POWER:
        raise bounds.LimitExceeded(f"the power is too large (base over {MAX_POWER:,})")
    return bounds.power(a, b)


#: `*`, `+` and `%` (printf formatting of a string) check the size of their result first;
#: bound directly (no wrapper call) since `*` and `+` are on the hot path of plain arithmetic.
_mul = bounds.repeat
_add = bounds.add
_mod = bounds.percent


def _sub(container: Any, key: Any) -> Any:
    if isinstance(container, Unknown) or isinstance(key, Unknown):
        return UNKNOWN
    try:
        return container[key]
    except (KeyError, IndexError, TypeError) as exc:
        raise EvalError(f"subscript failed: {exc}") from None


def _has(s: Any, key: str) -> bool:
    return key in s


# --- Kleene helpers (three-valued logic) ----------------------------------------------------------


def _truth(value: Any) -> bool | Unknown:
    return UNKNOWN if isinstance(value, Unknown) else bool(value)


def _k_bool(decides: bool, thunks: tuple[Callable[[], Any], ...]) -> Any:
    """Kleene and (decides=False) / or (decides=True): a known deciding operand wins over
    unknown ones; otherwise unknown if any was unknown, else Python's result."""
    unknown = False
    value: Any = not decides
    for thunk in thunks:
        value = thunk()
        t = _truth(value)
        if t is UNKNOWN:
            unknown = True
        elif t is decides:
            return value
    return UNKNOWN if unknown else value


def _k_and(*thunks: Callable[[], Any]) -> Any:
    return _k_bool(False, thunks)


def _k_or(*thunks: Callable[[], Any]) -> Any:
    return _k_bool(True, thunks)


def _k_not(value: Any) -> Any:
    t = _truth(value)
    return UNKNOWN if t is UNKNOWN else not t


def _k_if(test: Any, body: Callable[[], Any], orelse: Callable[[], Any]) -> Any:
    t = _truth(test)
    if t is UNKNOWN:
        return UNKNOWN
    return body() if t else orelse()


_CMP: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
}
_CMP_NAMES = {op: f"_c{i}" for i, op in enumerate(_CMP)}


def _k_cmp(ops: tuple[Callable[[Any, Any], Any], ...], *values: Any) -> Any:
    result: Any = True
    for op, a, b in zip(ops, values, values[1:], strict=False):
        if isinstance(a, Unknown) or isinstance(b, Unknown):
            return UNKNOWN
        if isinstance(b, tuple | list) and any(isinstance(x, Unknown) for x in b):
            return UNKNOWN
        result = op(a, b)
        if not result:
            return result
    return result


class KleeneFacts:
    """Facts for the Kleene variant: a missing fact reads as UNKNOWN."""

    __slots__ = ("_facts",)

    def __init__(self, facts: Mapping[str, Any]) -> None:
        self._facts = facts

    def __getitem__(self, key: str) -> Any:
        return self._facts.get(key, UNKNOWN)

    def __contains__(self, key: str) -> bool:
        return key in self._facts


_NAMESPACE: dict[str, Any] = {
    "__builtins__": {},
    "_pow": _pow, "_mul": _mul, "_add": _add, "_mod": _mod, "_sub": _sub, "_has": _has,
    "_k_and": _k_and, "_k_or": _k_or, "_k_not": _k_not, "_k_if": _k_if, "_k_cmp": _k_cmp,
    **{name: fn for op, name in _CMP_NAMES.items() for fn in [_CMP[op]]},
    **RUNTIME,
}

_BINOPS = {ast.Sub: "-", ast.Div: "/", ast.FloorDiv: "//"}
_CMPOPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
           ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}


class _Emitter:
    def __init__(self, kleene: bool) -> None:
        self.kleene = kleene
        self.keys: set[str] = set()

    def emit(self, node: ast.expr) -> str:
        path = dotted(node) if isinstance(node, ast.Attribute | ast.Subscript | ast.Name) \
            else None
        if path is not None:
            key = ".".join(path)
            self.keys.add(key)
            return f"s[{key!r}]"
        if isinstance(node, ast.Constant):
            return repr(node.value)
        if isinstance(node, ast.Subscript):
            return f"_sub({self.emit(node.value)}, {self.emit(node.slice)})"
        if isinstance(node, ast.BinOp):
            left, right = self.emit(node.left), self.emit(node.right)
            if isinstance(node.op, ast.Pow):
                return f"_pow({left}, {right})"
            if isinstance(node.op, ast.Mult):
                return f"_mul({left}, {right})"
            if isinstance(node.op, ast.Add):
                return f"_add({left}, {right})"
            if isinstance(node.op, ast.Mod):
                return f"_mod({left}, {right})"
            return f"({left} {_BINOPS[type(node.op)]} {right})"
        if isinstance(node, ast.UnaryOp):
            operand = self.emit(node.operand)
            if isinstance(node.op, ast.Not):
                return f"_k_not({operand})" if self.kleene else f"(not {operand})"
            return f"({'-' if isinstance(node.op, ast.USub) else '+'}{operand})"
        if isinstance(node, ast.BoolOp):
            parts = [self.emit(v) for v in node.values]
            if self.kleene:
                fn = "_k_and" if isinstance(node.op, ast.And) else "_k_or"
                return f"{fn}(" + ", ".join(f"lambda: {p}" for p in parts) + ")"
            word = " and " if isinstance(node.op, ast.And) else " or "
            return "(" + word.join(parts) + ")"
        if isinstance(node, ast.Compare):
            operands = [self.emit(node.left), *(self.emit(c) for c in node.comparators)]
            if self.kleene:
                ops = ", ".join(_CMP_NAMES[type(op)] for op in node.ops)
                return f"_k_cmp(({ops},), " + ", ".join(operands) + ")"
            out = operands[0]
            for op, operand in zip(node.ops, operands[1:], strict=True):
                out += f" {_CMPOPS[type(op)]} {operand}"
            return f"({out})"
        if isinstance(node, ast.IfExp):
            test, body, orelse = (self.emit(node.test), self.emit(node.body),
                                  self.emit(node.orelse))
            if self.kleene:
                return f"_k_if({test}, lambda: {body}, lambda: {orelse})"
            return f"({body} if {test} else {orelse})"
        if isinstance(node, ast.Tuple):
            return "(" + "".join(f"{self.emit(e)}, " for e in node.elts) + ")"
        if isinstance(node, ast.List):
            return "[" + ", ".join(self.emit(e) for e in node.elts) + "]"
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            name = node.func.id
            if name not in EMITTERS:
                raise EvalError(f"unknown function {name!r}")
            spec = FUNCTIONS[name]
            if not spec.min_args <= len(node.args) <= spec.max_args:
                raise EvalError(f"{name}() takes {spec.signature}")
            args = [self._arg(a) for a in node.args]
            for idx in spec.fact_args:
                if args[idx].key is None:
                    raise EvalError(f"{name}(): argument {idx + 1} must name a fact")
            return EMITTERS[name](args)
        raise EvalError(f"cannot compile {type(node).__name__}")  # the whitelist prevents this

    def _arg(self, node: ast.expr) -> Arg:
        path = dotted(node) if isinstance(node, ast.Attribute | ast.Subscript | ast.Name) \
            else None
        const = node.value if isinstance(node, ast.Constant) else NOCONST
        return Arg(self.emit(node), ".".join(path) if path else None, const)


@dataclass(frozen=True)
class Compiled:
    """A condition ready to evaluate against one instance's facts."""

    text: str
    fast_source: str
    kleene_source: str
    fast: Callable[[Any, History, float], Any]
    kleene: Callable[[Any, History, float], Any]
    keys: frozenset[str]
    tracked: frozenset[str]  # facts whose history stateful functions read

    def __call__(self, facts: Mapping[str, Any], history: History, now: float) -> Any:
        """The condition's value, or UNKNOWN; raises EvalError for a run-time failure."""
        try:
            return self.fast(facts, history, now)
        except (KeyError, Missing):
            pass
        except (EvalError, bounds.LimitExceeded) as exc:
            raise EvalError(str(exc)) from None
        except (TypeError, ValueError, ArithmeticError, AttributeError, RecursionError) as exc:
            raise EvalError(f"{type(exc).__name__}: {exc}") from None
        try:
            return self.kleene(KleeneFacts(facts), history, now)
        except Missing:
            return UNKNOWN
        except (EvalError, bounds.LimitExceeded) as exc:
            raise EvalError(str(exc)) from None
        except (TypeError, ValueError, ArithmeticError, AttributeError, KeyError,
                RecursionError) as exc:
            raise EvalError(f"{type(exc).__name__}: {exc}") from None

    def truth(self, facts: Mapping[str, Any], history: History, now: float) -> bool | Unknown:
        value = self(facts, history, now)
        if isinstance(value, Unknown):
            return UNKNOWN
        try:
            return bool(value)
        except Missing:  # a container holding UNKNOWN
            return UNKNOWN


def compile_condition(parsed: Parsed) -> Compiled:
    fast_emitter, kleene_emitter = _Emitter(kleene=False), _Emitter(kleene=True)
    fast_src = fast_emitter.emit(parsed.tree)
    kleene_src = kleene_emitter.emit(parsed.tree)
    tracked = set()
    for node in ast.walk(parsed.tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in FUNCTIONS:
            for idx in FUNCTIONS[node.func.id].fact_args:
                path = dotted(node.args[idx]) if idx < len(node.args) else None
                if path:
                    tracked.add(".".join(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parse() already refused what Python warns about
        fast = eval(f"lambda s, h, now: {fast_src}", dict(_NAMESPACE))
        kleene = eval(f"lambda s, h, now: {kleene_src}", dict(_NAMESPACE))
    return Compiled(parsed.text, fast_src, kleene_src, fast, kleene,
                    frozenset(fast_emitter.keys), frozenset(tracked))


#: Functions whose value depends only on their arguments (lint may run them on constants).
_PURE = frozenset({"abs", "round", "len", "int", "float", "str"})


def _constant(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Attribute | ast.Name):
        return False
    if isinstance(node, ast.Subscript) and dotted(node) is not None:
        return False
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id in _PURE \
            and all(_constant(a) for a in node.args)
    children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
    return all(_constant(c) for c in children)


def limit_problems(parsed: Parsed) -> list[tuple[int, str]]:
    """Parts of a condition that need no fact and exceed an evaluation bound
    (`'%0999999999d' % 1`, `'a' * 10**9`), as (1-based column, message): lint evaluates them
    the same bounded way the engine does, so it finishes and says why."""
    out: list[tuple[int, str]] = []

    def visit(node: ast.expr) -> None:
        if _constant(node):
            if isinstance(node, ast.Constant):
                return
            try:
                src = _Emitter(kleene=False).emit(node)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    eval(f"lambda s, h, now: {src}", dict(_NAMESPACE))({}, History(), 0.0)
            except bounds.LimitExceeded as exc:
                out.append((node.col_offset + 1, str(exc)))
            except Exception:
                pass
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                visit(child)

    visit(parsed.tree)
    return out


def windows(parsed: Parsed) -> list[float]:
    """Every window literal a condition uses (the history must keep that much)."""
    from ..config.units import parse_duration

    out = []
    for node in ast.walk(parsed.tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in FUNCTIONS:
            for idx in FUNCTIONS[node.func.id].window_args:
                arg = node.args[idx] if idx < len(node.args) else None
                if isinstance(arg, ast.Constant) and node.func.id != "seconds":
                    out.append(parse_duration(arg.value))
    return out
