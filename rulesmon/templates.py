"""Message templates: Jinja2 in an immutable sandbox with StrictUndefined, compiled once.

Lint parses every template, lists the fact paths it reads, and renders it against sample facts,
so a template error shows up in CI rather than in a dropped notification.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from . import jsonout
from .config.units import format_duration

MAX_OUTPUT = 16_000
MAX_TEMPLATE_LENGTH = 20_000


def _pct(value: Any, digits: int = 0) -> str:
    """A percent fact (0-100, such as gpu.util or job.cpu_eff): 87.3 → "87%"."""
    if value is None or isinstance(value, Undefined):
        return "unknown"
    v = float(value)
    return "?" if math.isnan(v) else f"{v:.{digits}f}%"


def _frac(value: Any, digits: int = 0) -> str:
    """A fraction (0-1, such as progress.slowdown) as a percent: 0.25 → "25%"."""
    if value is None or isinstance(value, Undefined):
        return "unknown"
    v = float(value)
    return "?" if math.isnan(v) else f"{v * 100:.{digits}f}%"


def _duration(value: Any) -> str:
    if value is None or isinstance(value, Undefined):
        return "unknown"
    return format_duration(float(value))


def _bytes(value: Any, binary: bool = False) -> str:
    if value is None or isinstance(value, Undefined):
        return "unknown"
    v = float(value)
    if binary:  # seff's units: 1024-based, two decimals (seff writes MB for MiB)
        v /= 1024
        units = ("KiB", "MiB", "GiB", "TiB", "PiB")
        i = 0
        while abs(v) >= 1024 and i < len(units) - 1:
            v /= 1024
            i += 1
        return f"{v:.2f} {units[i]}"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(v) < 1000 or unit == "TB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1000
    return f"{v:.1f} PB"  # pragma: no cover


def _ts(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if value is None or isinstance(value, Undefined):
        return "unknown"
    return dt.datetime.fromtimestamp(float(value)).strftime(fmt)


def _tail(value: Any, n: int = 20) -> str:
    lines = value.splitlines() if isinstance(value, str) else list(value or [])
    return "\n".join(str(x) for x in lines[-n:])


FILTERS: dict[str, Any] = {
    "pct": _pct,
    "frac": _frac,
    "duration": _duration,
    "bytes": _bytes,
    "ts": _ts,
    "tail": _tail,
}


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds on `*` and `**` (Jinja's own allow `'x' * 10**8`), and facts
    before methods: `log.extractors.items.count` is the extractor named `items`, not
    `dict.items` (Jinja looks attributes up first)."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                if attribute in obj:
                    return obj[attribute]
            except TypeError:  # an unhashable key type: no such entry
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("exponent too large in template")
            return left**right
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) \
                    and len(seq) * n > MAX_OUTPUT:
                raise SecurityError("repetition too large in template")
        return left * right


class MissingFact(Undefined):
    """At run time a fact the rules know but no probe provided this tick renders as
    "unknown" (lint has already refused names that can never exist)."""

    def __str__(self) -> str:
        return "unknown"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Any:
        return self

    def __round__(self, *_: Any) -> Any:
        return self

    __float__ = __int__ = None  # type: ignore[assignment]


@lru_cache(maxsize=2)
def environment(strict: bool = True) -> ImmutableSandboxedEnvironment:
    env = _Environment(undefined=StrictUndefined if strict else MissingFact, autoescape=False,
                       keep_trailing_newline=False)
    env.filters.update(FILTERS)
    env.policies["json.dumps_function"] = jsonout.dumps  # `tojson`: NaN as null, valid JSON
    return env


class TemplateCheckError(ValueError):
    """A template that cannot be accepted; `line` is 1-based within the template text."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def parse(text: str) -> nodes.Template:
    """Parse once and check filters and tests by name (unknown ones fail here, at load)."""
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise TemplateCheckError(f"template is longer than {MAX_TEMPLATE_LENGTH} characters")
    return _parse(text)


@lru_cache(maxsize=8192)
def _parse(text: str) -> nodes.Template:
    env = environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateCheckError(exc.message or "syntax error", exc.lineno or 0) from None
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        table = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in table:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            raise TemplateCheckError(
                f"No {kind} named {node.name!r} (see the filters in docs/language.md)",
                node.lineno)
    return tree


@lru_cache(maxsize=4096)
def compiled(text: str, strict: bool = True) -> Any:
    """The compiled template for a text: compile once, render many times."""
    return environment(strict).from_string(text)


def is_unknown_filter(message: str) -> bool:
    return "No filter named" in message or "No test named" in message


@lru_cache(maxsize=4096)
def _paths_cached(tree: nodes.Template) -> tuple[tuple[str, ...], ...]:
    return tuple(_paths(tree))


def paths(tree: nodes.Template) -> list[tuple[str, ...]]:
    """Every dotted fact path the template reads (`job.id`, `files.results.new`)."""
    return list(_paths_cached(tree))


def _paths(tree: nodes.Template) -> list[tuple[str, ...]]:
    """Every dotted fact path the template reads (`job.id`, `files.results.new`)."""
    found: list[tuple[str, ...]] = []
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    seen_inner: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in seen_inner:
            continue
        chain: list[str] = []
        cur: nodes.Node = node
        inner: list[int] = []
        while True:
            if isinstance(cur, nodes.Getattr):
                chain.append(cur.attr)
                cur = cur.node
            elif isinstance(cur, nodes.Getitem) and isinstance(cur.arg, nodes.Const) \
                    and isinstance(cur.arg.value, str):
                chain.append(cur.arg.value)
                cur = cur.node
            else:
                break
            inner.append(id(cur))
        if isinstance(cur, nodes.Name) and cur.ctx == "load" and cur.name not in bound:
            chain.append(cur.name)
            found.append(tuple(reversed(chain)))
            seen_inner.update(inner)
    # keep only the longest chains (job.id rather than job and job.id)
    longest = [p for p in found if not any(q != p and q[: len(p)] == p for q in found)]
    return list(dict.fromkeys(longest))


def render(text: str, context: dict[str, Any], *, strict: bool = True) -> str:
    """Render with bounded output; raises TemplateError subclasses on failure.

    `strict=False` is for notifications at run time: facts missing this tick read "unknown".
    """
    out: str = compiled(text, strict).render(context)
    if len(out) > MAX_OUTPUT:
        out = out[:MAX_OUTPUT] + f"\n… [truncated {len(out) - MAX_OUTPUT} characters]"
    return out


def render_errors(text: str, context: dict[str, Any]) -> str | None:
    """The error a render raises, as one line, or None."""
    try:
        render(text, context)
    except TemplateError as exc:
        return f"{type(exc).__name__}: {exc.message or exc}".splitlines()[0]
    except (TypeError, ValueError, ArithmeticError, AttributeError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None
