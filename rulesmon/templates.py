"""Message templates: Jinja2 in an immutable sandbox with StrictUndefined, compiled once.

Lint parses every template, lists the fact paths it reads, and renders it against sample facts,
so a template error shows up in CI rather than in a dropped notification.
"""

from __future__ import annotations

import datetime as dt
import math
import string
import time
import types
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import lru_cache, update_wrapper, wraps
from itertools import islice
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes, pass_context, pass_eval_context
from jinja2.exceptions import (
    FilterArgumentError,
    SecurityError,
    TemplateError,
    TemplateSyntaxError,
)
from jinja2.filters import make_attrgetter
from jinja2.filters import sync_do_join as _JINJA_JOIN
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup, soft_str

from . import jsonout
from .config.units import format_binary_size, format_duration
from .rules.bounds import (
    MAX_DIGITS,
    MAX_ITEMS,
    LimitExceeded,
    add,
    bounded_iter,
    check_format_spec,
    check_size,
    check_width,
    join,
    percent,
    power,
    repeat,
    weight,
)

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
        return format_binary_size(v)
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


# --- bounds ---------------------------------------------------------------------------------------
#
# Jinja2's sandbox stops escapes, not bombs: `{{ 'a'|center(999999999) }}`, `'%0999999999d' % 1`,
# `'{:>999999999}'.format(1)` or `range(100000)|join('x' * 9999)` build gigabytes, and two nested
# loops run for minutes. Every operation that can build a result much larger than its inputs is
# checked before it runs (bounds.py), and each render has a budget of steps (loop iterations,
# calls, filters) and of text produced (output, captured blocks and macro bodies alike). Going
# over raises RenderLimitError: a template error in the notification, RM681 in lint.

#: Characters one string (or container, counted as printed) may hold inside a template.
MAX_VALUE = 1_000_000
#: Loop iterations, calls, filter applications and items joined or listed one render may make.
MAX_STEPS = 200_000
#: Characters one render may produce in all (output, `{% set %}` blocks, macro bodies); a
#: large fact printed once fits (the output itself is cut at MAX_OUTPUT).
MAX_PRODUCED = 20_000_000
#: Characters of intermediate strings over 1 KB (repetitions, joins, formats...) one render
#: may build in all.
MAX_BUILT = 50_000_000
#: Steps one call (a macro, `loop()`, a method) counts for: calls cost ~10x an iteration.
CALL_STEPS = 10
#: Wall-clock backstop for one render, in seconds (the step budget normally ends it first).
MAX_SECONDS = 2.0


class RenderLimitError(SecurityError):
    """A render stopped at one of its bounds (see MAX_VALUE, MAX_STEPS, MAX_PRODUCED)."""


class _Budget:
    __slots__ = ("built", "deadline", "produced", "static", "steps")

    def __init__(self, static: int = 0) -> None:
        self.steps = 0
        self.produced = 0
        self.built = 0
        self.static = static  # the template's literal text: what one macro call can produce
        self.deadline = time.monotonic() + MAX_SECONDS

    def step(self, produced: int = 0, steps: int = 1) -> None:
        self.steps += steps
        self.produced += produced
        if self.steps > MAX_STEPS:
            raise LimitExceeded(f"the template took more than {MAX_STEPS:,} steps (loop "
                                "iterations, calls, filters, items joined or listed)")
        if self.produced > MAX_PRODUCED:
            raise LimitExceeded(f"the template produced more than {MAX_PRODUCED:,} characters")
        if self.steps & 511 < steps and time.monotonic() > self.deadline:
            raise LimitExceeded(f"the template ran for more than {MAX_SECONDS:g} s")


_BUDGET: ContextVar[_Budget | None] = ContextVar("rulesmon_render_budget", default=None)


def _built(size: int) -> None:
    """Count a large intermediate string: building 1 MB a hundred thousand times in a loop is
    within every per-result bound but not within one render's work."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.built += size
        if budget.built > MAX_BUILT:
            raise LimitExceeded(f"the template built more than {MAX_BUILT:,} characters of "
                                "intermediate strings")


def _step(produced: int = 0) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.step(produced)


def _namespace_attrs(obj: Any) -> Any:
    return getattr(obj, "_Namespace__attrs", None) if isinstance(obj, Namespace) else None


def _weigh(value: Any, what: str) -> None:
    w = weight(value, MAX_VALUE, _namespace_attrs)
    if w > MAX_VALUE:
        raise LimitExceeded(f"{what} would be about {w:,} characters, over the limit of "
                            f"{MAX_VALUE:,}")


def _checked(value: Any, what: str = "a result") -> Any:
    if isinstance(value, str | bytes | bytearray):
        if len(value) > MAX_VALUE:
            raise LimitExceeded(f"{what} would be {len(value):,} characters, over the limit of "
                                f"{MAX_VALUE:,}")
        if len(value) > 1024:
            _built(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        _weigh(value, what)
        if len(value) > 64:  # each item was one step of work to build
            budget = _BUDGET.get()
            if budget is not None:
                budget.step(0, len(value))
    else:
        check_size(value, what, MAX_VALUE)
    return value


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _finalize(value: Any) -> str:
    """Every `{{ ... }}`: weighed before it is turned into text, and counted."""
    if type(value) not in _PLAIN:  # an int prints at most 4,300 digits (Python's own limit)
        _weigh(value, "an output value")
    text = str(value)
    budget = _BUDGET.get()
    if budget is not None:
        budget.produced += len(text)
        if budget.produced > MAX_PRODUCED:
            budget.step()  # raises with the message
    return text


def _string_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Check a call of a str/bytes method that can grow its string without bound; returns
    the arguments to call with (an iterable to join is read once, bounded)."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, int) and not isinstance(owner, bool) and name == "to_bytes":
        check_width(args[0] if args else kwargs.get("length", 1), "to_bytes()", MAX_VALUE)
    if not isinstance(owner, str | bytes | bytearray):
        return args
    size = len(owner)
    if name in ("center", "ljust", "rjust", "zfill") and args:
        check_width(args[0], f"{name}()", MAX_VALUE)
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            check_width(size + tabs * max(tab, 0), "expandtabs()", MAX_VALUE)
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str | bytes) and isinstance(new, str | bytes):
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            hits = size + 1 if not old else owner.count(old)  # type: ignore[arg-type,unused-ignore]
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            check_width(size + hits * len(new), "replace()", MAX_VALUE)
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str | bytes)),
                      default=1)
        check_width(size * max(longest, 1), "translate()", MAX_VALUE)
    elif name == "join" and args:
        items = list(bounded_iter(args[0], MAX_ITEMS, "the joined sequence"))
        total = size * max(len(items) - 1, 0)
        for item in items:
            total += len(item) if isinstance(item, str | bytes | bytearray) else 0
            check_width(total, "join()", MAX_VALUE)
        return (items, *args[1:])
    return args


class _BoundedFormatter(SandboxedFormatter):
    """`str.format` in the sandbox, with every field's width and size checked first."""

    def __init__(self, env: Any, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(format_spec, MAX_VALUE)
        _weigh(value, "a formatted value")
        out = super().format_field(value, format_spec)
        self._total += len(out)
        check_width(self._total, "the formatted string", MAX_VALUE)
        return out


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


# -- filters: each application is a step; growth is checked before, size after --------------------


def _pre_center(value: Any, width: Any = 80, *_: Any, **__: Any) -> None:
    check_width(width, "center()", MAX_VALUE)


def _pre_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = str(s)
    lines = text.count("\n") + 1
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    check_width(len(text) + lines * max(pad, 0), "indent()", MAX_VALUE)


def _pre_wordwrap(s: Any, width: Any = 79, break_long_words: Any = True,
                  wrapstring: Any = None, *_: Any, **kwargs: Any) -> None:
    wrapstring = kwargs.get("wrapstring", wrapstring)
    width = kwargs.get("width", width)
    text = str(s)
    lines = 2 * len(text) // max(width if isinstance(width, int) else 1, 1) \
        + text.count("\n") + 2
    check_width(len(text) + lines * len(str(wrapstring or "\n")), "wordwrap()", MAX_VALUE)


def _pre_count(name: str, limit: int) -> Callable[..., None]:
    def pre(value: Any, n: Any = 0, *_: Any, **__: Any) -> None:
        if isinstance(n, int) and n > limit:
            raise LimitExceeded(f"{name}({n:,}) is over the limit of {limit:,}")
    return pre


def _pre_round(value: Any, precision: Any = 0, *_: Any, **kwargs: Any) -> None:
    precision = kwargs.get("precision", precision)
    if isinstance(precision, int) and abs(precision) > MAX_DIGITS:
        raise LimitExceeded(f"round() to {precision:,} digits is over the limit of "
                            f"{MAX_DIGITS:,}")


def _pre_replace(s: Any, old: Any = "", new: Any = "", count: Any = None, *_: Any,
                 **__: Any) -> None:
    text = str(s)
    old_s, new_s = str(old), str(new)
    hits = len(text) + 1 if not old_s else text.count(old_s)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    check_width(len(text) + hits * len(new_s), "replace()", MAX_VALUE)


def _pre_tojson(value: Any, indent: Any = None, *_: Any, **__: Any) -> None:
    if isinstance(indent, int) and indent > 64:
        raise LimitExceeded(f"tojson(indent={indent:,}) is over the limit of 64")
    if isinstance(indent, str) and len(indent) > 64:
        raise LimitExceeded("tojson()'s indent string is over the limit of 64 characters")


def _pre_digits(value: Any, digits: Any = 0, *_: Any, **__: Any) -> None:
    if isinstance(digits, int) and abs(digits) > 100:
        raise LimitExceeded(f"{digits:,} digits is over the limit of 100")


def _pre_ts(value: Any, fmt: Any = "", *_: Any, **__: Any) -> None:
    check_width(12 * len(str(fmt)), "ts()'s format", MAX_VALUE)


def _pre_sum(iterable: Any, attribute: Any = None, start: Any = 0, *_: Any,
             **kwargs: Any) -> None:
    start = kwargs.get("start", start)
    if not isinstance(start, int | float):
        _weigh([iterable, start] if isinstance(iterable, list | tuple) else start,
               "the sum")


_PRECHECKS: dict[str, Callable[..., None]] = {
    "center": _pre_center, "indent": _pre_indent, "wordwrap": _pre_wordwrap,
    "batch": _pre_count("batch", MAX_ITEMS), "slice": _pre_count("slice", MAX_ITEMS),
    "round": _pre_round, "replace": _pre_replace, "tojson": _pre_tojson,
    "pct": _pre_digits, "frac": _pre_digits, "ts": _pre_ts, "sum": _pre_sum,
}


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    """`"%s, %s"|format(a, b)`: printf formatting with every width checked first."""
    if args and kwargs:
        raise FilterArgumentError("can't handle positional and keyword arguments at the same "
                                  "time")
    return str(percent(soft_str(value), kwargs or args, MAX_VALUE))


@pass_eval_context
def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    """`join`, reading the sequence one item at a time and stopping at the bound."""
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    value = _counted(value)
    if not eval_ctx.autoescape:
        return join(d, value, MAX_VALUE, soft_str)
    items = list(bounded_iter(value, MAX_ITEMS, "the joined sequence"))
    _weigh(items, "the joined string")
    return str(_JINJA_JOIN(eval_ctx, items, d))


def _counted(items: Any) -> Iterator[Any]:
    """Each item read is a step of the render's budget."""
    budget = _BUDGET.get() or _Budget()
    for item in items:
        budget.step()
        yield item


def _guard(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    pre = _PRECHECKS.get(name)
    skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0

    @wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        rest = args[skip:]
        if rest and isinstance(rest[0], list | tuple | dict | set | frozenset):
            _weigh(rest[0], f"the value given to {name}")
        if pre is not None:
            pre(*rest, **kwargs)
        out = fn(*args, **kwargs)
        return _checked(out, f"the result of {name}")

    return guarded


@pass_context
def _loop_filter(context: Any, iterable: Any, body: int = 0) -> Iterator[Any]:
    """Wraps every `{% for %}`: each iteration is a step and costs the loop body's text."""
    budget = _BUDGET.get() or _Budget()
    for item in iterable:
        budget.step(body)
        yield item


@pass_context
def _concat_filter(context: Any, parts: Any) -> str:
    """`a ~ b`: the joined length is checked before joining."""
    strs = [p if isinstance(p, str) else str(p) for p in parts]
    total = sum(len(p) for p in strs)
    check_width(total, "the concatenation (~)", MAX_VALUE)
    out = "".join(strs)
    _checked(out)
    return out


def _range(*args: int) -> range:
    """`range()` of at most MAX_ITEMS numbers (a bound error, not Jinja's OverflowError)."""
    rng = range(*args)
    try:
        size = len(rng)
    except OverflowError:
        size = MAX_ITEMS + 1
    if size > MAX_ITEMS:
        raise LimitExceeded(f"range() of more than {MAX_ITEMS:,} numbers")
    return rng


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if not all(isinstance(x, int) for x in (n, min, max)) or n * max > 10_000:
        raise LimitExceeded("lipsum() is limited to 10,000 words")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _static_size(node: nodes.Node) -> int:
    return sum(len(d.data) for d in node.find_all(nodes.TemplateData))


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds (see above) and facts before methods:
    `log.extractors.items.count` is the extractor named `items`, not `dict.items` (Jinja looks
    attributes up first)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(finalize=_finalize, **kwargs)
        self.globals["lipsum"] = _lipsum
        self.globals["range"] = _range
        self.filters["format"] = _format_filter
        self.filters["join"] = _join_filter

    def guard_filters(self) -> None:
        """Wrap every filter (call once, after rulesmon's own filters are added)."""
        for name, fn in list(self.filters.items()):
            self.filters[name] = _guard(name, fn)
        self.filters["rulesmon_loop"] = _loop_filter
        self.filters["rulesmon_concat"] = _concat_filter

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then route every loop and `~` through the budget."""
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            body = sum(_static_size(n) for n in (*loop.body, *loop.else_))
            loop.iter = nodes.Filter(loop.iter, "rulesmon_loop", [nodes.Const(body)], [],
                                     None, None, lineno=loop.lineno)
            loop.iter.set_environment(self)
        for concat in list(tree.find_all(nodes.Concat)):
            parts = nodes.Tuple(list(concat.nodes), "load", lineno=concat.lineno)
            replacement = nodes.Filter(parts, "rulesmon_concat", [], [], None, None,
                                       lineno=concat.lineno)
            replacement.set_environment(self)
            _replace(tree, concat, replacement)
        return tree

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                if attribute in obj:
                    return obj[attribute]
            except TypeError:  # an unhashable key type: no such entry
                pass
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        """Refused access fails the render even where missing facts read "unknown": an
        escape attempt is an error to see, not a blank."""
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is unsafe")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _step()
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("exponent too large in template")
            return _checked(power(left, right))
        if operator == "*":
            return _checked(repeat(left, right, MAX_VALUE))
        if operator == "%":
            return _checked(percent(left, right, MAX_VALUE))
        return _checked(add(left, right, MAX_VALUE))

    def call(__self, __context: Any, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        budget = _BUDGET.get()
        if budget is not None:
            budget.step(budget.static, CALL_STEPS)  # a macro call can produce its body again
        args = tuple(_string_method(__obj, args, kwargs))
        return _checked(super().call(__context, __obj, *args, **kwargs), "a call's result")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` / `format_map`, as Jinja's sandbox does, with the bounded formatter."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) \
                or value.__name__ not in ("format", "format_map"):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"
        escape = f_self.escape if isinstance(f_self, Markup) else None

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(
                        f"format_map() takes exactly one argument ({len(args)} given)")
                if not isinstance(args[0], Mapping):
                    raise TypeError("format_map() needs a mapping, got "
                                    f"{type(args[0]).__name__}")
                kwargs = dict(args[0])
                args = ()
            formatter = _BoundedEscapeFormatter(self, escape=escape) if escape is not None \
                else _BoundedFormatter(self)
            return str_type(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)


def _replace(tree: nodes.Node, old: nodes.Node, new: nodes.Node) -> None:
    """Put `new` where `old` is in the tree (nodes keep no parent link)."""
    for parent in tree.find_all(nodes.Node):
        for field in parent.fields:
            value = getattr(parent, field, None)
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return
    for field in tree.fields:  # pragma: no cover - a Concat is never the root
        if getattr(tree, field, None) is old:
            setattr(tree, field, new)


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
    env.guard_filters()
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
    bound |= {m.name for m in tree.find_all(nodes.Macro)}  # a macro's name is not a fact
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


@lru_cache(maxsize=4096)
def _template_static(text: str) -> int:
    return _static_size(parse(text)) if len(text) <= MAX_TEMPLATE_LENGTH else len(text)


def render(text: str, context: dict[str, Any], *, strict: bool = True) -> str:
    """Render with bounded work and output; raises TemplateError subclasses on failure
    (RenderLimitError when a bound is reached).

    Output past MAX_OUTPUT is cut with a note, and the rest is never rendered.
    `strict=False` is for notifications at run time: facts missing this tick read "unknown".
    """
    template = compiled(text, strict)
    token = _BUDGET.set(_Budget(_template_static(text)))
    pieces: list[str] = []
    size = 0
    cut = False
    try:
        stream = template.generate(context)
        try:
            while True:  # joined 64 pieces at a time, in C; stops soon after MAX_OUTPUT
                chunk = "".join(islice(stream, 64))
                if not chunk:
                    break
                pieces.append(chunk)
                size += len(chunk)
                if size > MAX_OUTPUT:
                    cut = True
                    break
        finally:
            stream.close()
    except LimitExceeded as exc:
        raise RenderLimitError(str(exc)) from None
    finally:
        _BUDGET.reset(token)
    out = "".join(pieces)
    if cut:
        out = out[:MAX_OUTPUT] + f"\n… [truncated: more than {MAX_OUTPUT} characters]"
    return out


def render_problem(text: str, context: dict[str, Any]) -> tuple[str, str] | None:
    """Why a render fails, as (kind, one line): kind is "limit" for a bound reached,
    "unsafe" for what the sandbox refused, "error" otherwise; None when it renders."""
    try:
        render(text, context)
    except RenderLimitError as exc:
        return "limit", str(exc.message or exc).splitlines()[0]
    except SecurityError as exc:
        return "unsafe", f"{exc.message or exc}".splitlines()[0]
    except TemplateError as exc:
        return "error", f"{type(exc).__name__}: {exc.message or exc}".splitlines()[0]
    except RecursionError:
        return "limit", "the template nests or recurses too deep"
    except Exception as exc:  # any failure of a user's template is a finding, never a crash
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return "error", f"{type(exc).__name__}: {detail}"
    return None


def render_errors(text: str, context: dict[str, Any]) -> str | None:
    """The error a render raises, as one line, or None."""
    problem = render_problem(text, context)
    return None if problem is None else problem[1]


def _format_fields(text: str) -> Iterator[str]:
    """The field names of a `str.format` string (`{0.__class__}` → "0.__class__")."""
    try:
        for _, field, spec, _ in string.Formatter().parse(text):
            if field is not None:
                yield field
            if spec:
                yield from _format_fields(spec)
    except ValueError:
        return


def _private(name: object) -> bool:
    """A dunder (`__class__`) or name-mangled (`_TemplateReference__context`) name: what every
    known escape needs. A single leading `_` is left alone: on a fact mapping `x._key` is the
    entry `_key` (the sandbox still refuses it on any other object at run time)."""
    return isinstance(name, str) and "__" in name


def unsafe_access(tree: nodes.Template) -> list[tuple[int, str]]:
    """Where a template reaches for what the sandbox never gives (a dunder or name-mangled
    attribute through `.`, `[...]`, `|attr()` or a `str.format` field), as (line, message).
    These are the first steps of the known SSTI escapes; the sandbox refuses them at run time
    too."""
    out: list[tuple[int, str]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Const,
                               nodes.Name)):
        name: object = None
        how = ""
        if isinstance(node, nodes.Getattr):
            name, how = node.attr, "attribute"
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name, how = node.arg.value, "item"
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args \
                and isinstance(node.args[0], nodes.Const):
            name, how = node.args[0].value, "attribute (|attr)"
        elif isinstance(node, nodes.Name) and node.ctx == "load" and _private(node.name):
            name, how = node.name, "name"
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) \
                and "{" in node.value:
            for field in _format_fields(node.value):
                parts = field.replace("[", ".").replace("]", "").split(".")
                bad = [p for p in parts[1:] if _private(p)]
                if bad:
                    out.append((node.lineno, f"format field {{{field}}} reaches the private "
                                f"attribute {bad[0]!r}"))
                    break
            continue
        if _private(name):
            out.append((node.lineno, f"{how} {name!r} is private (the sandbox refuses "
                        "dunder and _-prefixed names)"))
    return out
