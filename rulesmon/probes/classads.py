"""ClassAds as text, for DAGMan's node status file and similar dumps.

Two layouts are read:

- new ClassAds, the node status file's format since HTCondor 8.1.6: `[ Attr = value; ... ]`
  one after another, with `/* ... */` and `//` comments;
- old ClassAds, as `condor_q -long` prints them: `Attr = value` one per line, an empty line
  between ads.

Values become Python values: strings (escapes undone), integers, reals, booleans, `undefined`
and `error` as None, lists `{ a, b }` as lists, nested `[ ... ]` as dicts; anything else (an
expression such as `RequestMemory * 2`) is kept as its text. A malformed ad raises
`ClassAdError` with the line it starts on; the caller decides whether one bad ad spoils the
file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from .condor_cli import expression


class ClassAdError(ValueError):
    """Text that is not a ClassAd, with the 1-based line where the problem is."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


def parse_classads(text: str) -> list[dict[str, Any]]:
    """Every ad in `text`, in order; old or new layout, detected from the first character."""
    stripped = _strip_comments(text)
    head = stripped.lstrip()
    if not head:
        return []
    if head[0] == "[":
        return _NewParser(stripped).ads()
    return _old(stripped)


def _string_end(text: str, start: int) -> int:
    """The index of the `"` closing the string that opens at `start` (a backslash escapes the
    next character), or len(text) when it is never closed."""
    j, n = start + 1, len(text)
    while j < n and text[j] != '"':
        j += 2 if text[j] == "\\" else 1
    return min(j, n)


def _strip_comments(text: str) -> str:
    """Comments out, strings kept (a `/*` inside quotes is text); line breaks preserved so
    errors keep their line numbers."""
    if "/*" not in text and "//" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = _string_end(text, i)
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _NewParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def line(self, pos: int | None = None) -> int:
        return self.text.count("\n", 0, self.i if pos is None else pos) + 1

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.i < n and text[self.i] in " \t\r\n;":
            self.i += 1

    def ads(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            self.skip()
            if self.i >= len(self.text):
                return out
            if self.text[self.i] != "[":
                raise ClassAdError(self.line(), f"expected '[' to start an ad, found "
                                   f"{self.text[self.i:self.i + 20]!r}")
            out.append(self.record())

    def record(self) -> dict[str, Any]:
        start = self.i
        self.i += 1  # [
        ad: dict[str, Any] = {}
        text = self.text
        while True:
            self.skip()
            if self.i >= len(text):
                raise ClassAdError(self.line(start), "ad is not closed with ']'")
            if text[self.i] == "]":
                self.i += 1
                return ad
            eq = text.find("=", self.i)
            if eq < 0:
                raise ClassAdError(self.line(), "expected Attr = value")
            name = text[self.i:eq].strip()
            if not name or not (name.replace("_", "a").replace(".", "a").isalnum()):
                raise ClassAdError(self.line(), f"bad attribute name {name!r}")
            self.i = eq + 1
            ad[name] = self.value()

    def value(self) -> Any:
        """One value up to `;` or the ad's `]` at depth 0."""
        text, n = self.text, len(self.text)
        while self.i < n and text[self.i] in " \t\r\n":
            self.i += 1
        if self.i < n and text[self.i] == "[":
            return self.record()
        start = self.i
        depth = 0
        while self.i < n:
            ch = text[self.i]
            if ch == '"':
                j = self.i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                if j >= n:
                    raise ClassAdError(self.line(start), "string is not closed")
                self.i = j + 1
                continue
            if ch in "{(":
                depth += 1
            elif ch in "})":
                depth -= 1
            elif depth == 0 and ch in ";]":
                break
            self.i += 1
        raw = text[start:self.i].strip()
        if self.i < n and text[self.i] == ";":
            self.i += 1
        if not raw:
            raise ClassAdError(self.line(start), "attribute has no value")
        return literal(raw)


def _old(text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ad: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            if ad:
                out.append(ad)
                ad = {}
            continue
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or not name or not name.replace("_", "a").replace(".", "a").isalnum():
            raise ClassAdError(number, f"expected Attr = value, found {line[:40]!r}")
        ad[name] = literal(value.strip().rstrip(";").strip())
    if ad:
        out.append(ad)
    return out


def literal(raw: str) -> Any:
    """A ClassAd literal as a Python value; an expression stays text."""
    if not raw:
        return None
    first = raw[0]
    if first == '"' and raw.endswith('"') and len(raw) >= 2:
        return _unescape(raw[1:-1])
    if first == "{" and raw.endswith("}"):
        return [literal(item) for item in _split_list(raw[1:-1])]
    low = raw.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low in ("undefined", "error"):
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def _split_list(body: str) -> list[str]:
    items: list[str] = []
    depth, start, i, n = 0, 0, 0, len(body)
    while i < n:
        ch = body[i]
        if ch == '"':
            i += 1
            while i < n and body[i] != '"':
                i += 2 if body[i] == "\\" else 1
        elif ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(body[start:i].strip())
            start = i + 1
        i += 1
    last = body[start:].strip()
    if last or items:
        items.append(last)
    return [item for item in items if item]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'"}


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n:
            out.append(_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# --- evaluating simple expressions ------------------------------------------------------------

#: Longest expression text evaluated; job ads hold far longer ones (Requirements) that no
#: fact needs.
MAX_EXPRESSION = 400
#: How deep attribute references are followed (MemoryUsage is itself an expression).
MAX_DEPTH = 4
_UNDEFINED = object()  #: ClassAd `undefined` (a missing attribute)
_ERROR = object()  #: ClassAd `error` (a type mismatch, a division by zero)
_TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
    |(?P<str>"(?:[^"\\]|\\.)*")
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    |(?P<op>=\?=|=!=|==|!=|<=|>=|&&|\|\||[-+*/%<>!?:(),{}]))""", re.X)


def evaluate(text: str, lookup: Callable[[str], Any], depth: int = 0) -> Any:
    """The value of a simple ClassAd expression, or None when it cannot be known here.

    Covered: numbers, strings, booleans, `undefined`, attribute references (`MY.` too; a
    `TARGET.` reference, the matched machine's, is unknown here), `+ - * / %`, comparisons,
    `=?= =!= is isnt`, `&& || !`, `?:`, and the functions `ifThenElse`, `isUndefined`,
    `min`/`max` (of one `{list}`, as in ClassAds), `int`, `real`, `floor`, `ceiling`, `round`.
    `lookup(name)` gives an attribute's raw value (another expression's text is evaluated
    in turn, `MAX_DEPTH` deep). Anything else (other functions, lists as values, division
    by zero) makes the result None: a fact is better missing than wrong.
    """
    if len(text) > MAX_EXPRESSION or depth > MAX_DEPTH:
        return None
    tokens = _tokens(text)
    if tokens is None:
        return None
    try:
        parser = _ExprParser(tokens, lookup, depth)
        value = parser.ternary()
        if parser.i != len(tokens):
            return None
    except _Unsupported:
        return None
    if value is _UNDEFINED or value is _ERROR or isinstance(value, list):
        return None
    return value


class _Unsupported(Exception):
    """The expression uses syntax or a function this evaluator does not cover."""


@lru_cache(maxsize=4096)
def _tokens(text: str) -> tuple[tuple[str, Any], ...] | None:
    """The tokens of `text`, or None when it holds a character no token starts with. Cached:
    the same few request expressions are evaluated for every idle job on every tick."""
    out: list[tuple[str, Any]] = []
    pos, n = 0, len(text)
    while pos < n:
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            return None
        pos = m.end()
        if m.group("num") is not None:
            raw = m.group("num")
            out.append(("val", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif m.group("str") is not None:
            out.append(("val", _unescape(m.group("str")[1:-1])))
        elif m.group("name") is not None:
            word = m.group("name")
            low = word.lower()
            if low in ("true", "false"):
                out.append(("val", low == "true"))
            elif low == "undefined":
                out.append(("val", _UNDEFINED))
            elif low == "error":
                out.append(("val", _ERROR))
            elif low in ("is", "isnt"):
                out.append(("op", "=?=" if low == "is" else "=!="))
            else:
                out.append(("name", word))
        else:
            out.append(("op", m.group("op")))
    return tuple(out)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _ExprParser:
    """Precedence climbing over the tokens, evaluating as it goes."""

    _LEVELS = (("||",), ("&&",), ("==", "!=", "=?=", "=!="), ("<", "<=", ">", ">="),
               ("+", "-"), ("*", "/", "%"))

    def __init__(self, tokens: tuple[tuple[str, Any], ...], lookup: Callable[[str], Any],
                 depth: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.lookup = lookup
        self.depth = depth

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, op: str) -> bool:
        tok = self.peek()
        if tok is not None and tok == ("op", op):
            self.i += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.take(op):
            raise _Unsupported(f"expected {op}")

    def ternary(self) -> Any:
        cond = self.binary(0)
        if not self.take("?"):
            return cond
        yes = self.ternary()
        self.expect(":")
        no = self.ternary()
        if cond is _UNDEFINED:
            return _UNDEFINED
        if not isinstance(cond, bool):
            return _ERROR
        return yes if cond else no

    def binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        ops = self._LEVELS[level]
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in ops:
                return left
            self.i += 1
            right = self.binary(level + 1)
            left = _apply(tok[1], left, right)

    def unary(self) -> Any:
        if self.take("-"):
            v = self.unary()
            return -v if _num(v) else (_UNDEFINED if v is _UNDEFINED else _ERROR)
        if self.take("+"):
            return self.unary()
        if self.take("!"):
            v = self.unary()
            return (not v) if isinstance(v, bool) else (_UNDEFINED if v is _UNDEFINED
                                                         else _ERROR)
        return self.primary()

    def primary(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise _Unsupported("end of expression")
        self.i += 1
        kind, value = tok
        if kind == "val":
            return value
        if kind == "op" and value == "(":
            inner = self.ternary()
            self.expect(")")
            return inner
        if kind == "op" and value == "{":
            return self.listed("}")
        if kind == "name":
            if self.take("("):
                return _call(str(value), self.listed(")"))
            return self.attribute(str(value))
        raise _Unsupported(str(value))

    def listed(self, closer: str) -> list[Any]:
        """Comma-separated expressions up to `closer` (a list's `}`, a call's `)`)."""
        items: list[Any] = []
        if not self.take(closer):
            items.append(self.ternary())
            while self.take(","):
                items.append(self.ternary())
            self.expect(closer)
        return items

    def attribute(self, name: str) -> Any:
        scope, dot, attr = name.partition(".")
        if dot:
            if scope.lower() == "target":
                return _UNDEFINED  # the machine's ad: not known from a job ad
            if scope.lower() != "my":
                raise _Unsupported(name)
            name = attr
        raw = self.lookup(name)
        if raw is None:
            return _UNDEFINED
        if isinstance(raw, str) and raw.startswith(("/Expr(", "\\/Expr(")):
            inner = expression(raw)
            if inner is None:
                return _ERROR
            value = evaluate(inner, self.lookup, self.depth + 1)
            return _UNDEFINED if value is None else value
        if isinstance(raw, float) and math.isnan(raw):
            return _UNDEFINED
        return raw


def _apply(op: str, a: Any, b: Any) -> Any:
    if op == "=?=":
        return _same(a, b)
    if op == "=!=":
        same = _same(a, b)
        return (not same) if isinstance(same, bool) else same
    if op in ("||", "&&"):
        return _logical(op == "||", a, b)
    if a is _ERROR or b is _ERROR:
        return _ERROR
    if a is _UNDEFINED or b is _UNDEFINED:
        return _UNDEFINED
    if op in ("==", "!="):
        if isinstance(a, str) and isinstance(b, str):
            same = a.lower() == b.lower()  # string == ignores case in ClassAds
        elif (_num(a) and _num(b)) or (isinstance(a, bool) and isinstance(b, bool)):
            same = a == b
        else:
            return _ERROR
        return same if op == "==" else not same
    if op in ("<", "<=", ">", ">="):
        if not (_num(a) and _num(b)):
            return _ERROR
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if not (_num(a) and _num(b)):
        return _ERROR
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return _ERROR
    if op == "/":
        if isinstance(a, int) and isinstance(b, int):
            q = abs(a) // abs(b)  # integer division truncates toward zero
            return q if (a >= 0) == (b >= 0) else -q
        return a / b
    if isinstance(a, int) and isinstance(b, int):
        return a - b * int(a / b)
    return _ERROR


def _logical(is_or: bool, a: Any, b: Any) -> Any:
    """`||` / `&&` as ClassAds evaluates them, left to right and not symmetric: a left operand
    that decides (`true || x`, `false && x`) is the answer; otherwise a left `error` is error
    (`error || true` too), a left `false ||` / `true &&` gives the right operand, and a left
    `undefined` gives the right operand only where it decides (`undefined || true` is true),
    else undefined. A non-boolean operand is error; numbers count as booleans (non-zero is
    true), as in HTCondor's default, non-strict evaluation."""
    a, b = _as_bool(a), _as_bool(b)
    decides = a is is_or  # true || x, false && x
    if decides:
        return a
    if not (a is _UNDEFINED or a is _ERROR or isinstance(a, bool)):
        return _ERROR
    if not (b is _UNDEFINED or b is _ERROR or isinstance(b, bool)):
        return _ERROR
    if a is _ERROR:
        return _ERROR
    if isinstance(a, bool):  # false || b, true && b
        return b
    if not isinstance(b, bool):  # undefined with undefined or error: the right one
        return b
    return b if b is is_or else _UNDEFINED  # undefined || true, undefined && false


def _as_bool(v: Any) -> Any:
    return v != 0 if _num(v) else v


def _same(a: Any, b: Any) -> Any:
    """`=?=`: identical type and value, case-sensitive for strings; undefined is undefined.
    No numeric promotion (`1 =?= 1.0` is false, while `1 == 1.0` is true); two lists are
    error, as in ClassAds."""
    if a is _UNDEFINED or b is _UNDEFINED or a is _ERROR or b is _ERROR:
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return _ERROR
    return a == b


def _call(name: str, args: list[Any]) -> Any:
    low = name.lower()
    if low == "ifthenelse":
        if len(args) != 3:
            raise _Unsupported(name)
        cond = args[0]
        if cond is _UNDEFINED:
            return _UNDEFINED
        if _num(cond):
            cond = cond != 0
        if not isinstance(cond, bool):
            return _ERROR
        return args[1] if cond else args[2]
    if low == "isundefined" and len(args) == 1:
        return args[0] is _UNDEFINED
    if low in ("min", "max"):
        # ClassAds takes exactly one list (`min(a, b)` is an error); undefined items are
        # skipped
        if len(args) != 1:
            return _ERROR
        if args[0] is _UNDEFINED:
            return _UNDEFINED
        if not isinstance(args[0], list):
            return _ERROR
        values = [v for v in args[0] if v is not _UNDEFINED]
        if not values:
            return _UNDEFINED
        if not all(_num(v) for v in values):
            return _ERROR
        return min(values) if low == "min" else max(values)
    if len(args) == 1 and low in ("int", "real", "floor", "ceiling", "round"):
        v = args[0]
        if v is _UNDEFINED:
            return _UNDEFINED
        if not _num(v):
            return _ERROR
        if low == "real":
            return float(v)
        if low == "int":
            return int(v)
        if low == "floor":
            return math.floor(v)
        if low == "ceiling":
            return math.ceil(v)
        return round(v)
    raise _Unsupported(name)


_CLOSERS = {")": "(", "}": "{", "]": "["}


def constraint_problem(text: str) -> tuple[int, str] | None:
    """Unbalanced quotes or brackets in a constraint, as (0-based offset, message), or None.

    Only what is certainly wrong is reported (the schedd's parser is the judge of the rest):
    one malformed constraint would otherwise fail the single condor_q call every tick.
    """
    stack: list[tuple[str, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = _string_end(text, i)
            if j >= n:
                return i, "the string opened here is never closed (a missing `\"`)"
            i = j + 1
            continue
        if ch in "({[":
            stack.append((ch, i))
        elif ch in _CLOSERS:
            if not stack or stack[-1][0] != _CLOSERS[ch]:
                return i, f"`{ch}` closes nothing"
            stack.pop()
        i += 1
    if stack:
        ch, at = stack[-1]
        return at, f"`{ch}` is never closed"
    return None
