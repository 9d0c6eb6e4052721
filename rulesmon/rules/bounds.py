"""Hard caps on what one operation may build, shared by conditions and templates.

A shared ruleset is untrusted text: `'%0999999999d' % 1`, `'a' * 10**9`, `x.center(10**9)` or
`round(5, -10**9)` are one short expression each and would build gigabytes or run for ever.
Every operation that can make a result much larger than its inputs is checked *before* it runs,
against a bound on the size of its result (not on the inputs users need: a 5 MB fact is fine;
an operation that turns it into 50 MB is refused). A refusal raises `LimitExceeded`, which the
condition evaluator reports as a `condition_error` and the template renderer as a template
error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Characters one string result may hold (a width, a repetition, a format, a join...).
MAX_STRING = 100_000
#: Items (counted through nested lists, tuples, dicts) one container result may hold.
MAX_ITEMS = 100_000
#: Bits one integer result of `**` or `*` may hold (~30,000 decimal digits).
MAX_INT_BITS = 100_000
#: Digits `round()` may be asked to round to, either way.
MAX_DIGITS = 1_000

_SEQ = (str, bytes, bytearray, list, tuple)
_NUMBERS = frozenset({int, float})


class LimitExceeded(ValueError):
    """An operation would build a result over a hard bound; it was not run."""


def weight(value: Any, limit: int = MAX_STRING, extra: Callable[[Any], Any] | None = None
           ) -> int:
    """About how many characters `str(value)` would print, counting nested containers in full
    (`[[1] * 1000] * 1000` weighs a million); the walk stops as soon as `limit` is passed, so
    it costs at most `limit` steps. `extra` may return a further container to walk for an
    object type this module does not know (a template namespace)."""
    total = 0
    stack = [value]
    while stack:
        x = stack.pop()
        if isinstance(x, str | bytes | bytearray):
            total += len(x) + 2
        elif isinstance(x, list | tuple | set | frozenset):
            total += 2 + len(x)
            if total <= limit:
                stack.extend(x)
        elif isinstance(x, dict):
            total += 2 + 2 * len(x)
            if total <= limit:
                for k, v in x.items():
                    stack.append(k)
                    stack.append(v)
        elif isinstance(x, bool) or x is None:
            total += 5
        elif isinstance(x, int):
            total += x.bit_length() // 3 + 2
        elif isinstance(x, float):
            total += 24
        else:
            inner = extra(x) if extra is not None else None
            total += 16
            if inner is not None:
                stack.append(inner)
        if total > limit:
            return total
    return total


def _refuse(what: str, size: int, limit: int) -> LimitExceeded:
    return LimitExceeded(f"{what} would be about {size:,} characters, over the limit of "
                         f"{limit:,}")


def check_size(value: Any, what: str = "result", limit: int = MAX_STRING) -> Any:
    """`value` itself if it is within `limit`; raises LimitExceeded otherwise."""
    if isinstance(value, str | bytes | bytearray):
        if len(value) > limit:
            raise _refuse(what, len(value), limit)
    elif isinstance(value, list | tuple | dict | set | frozenset):
        w = weight(value, limit)
        if w > limit:
            raise _refuse(what, w, limit)
    elif isinstance(value, int) and not isinstance(value, bool) \
            and value.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"{what} would be an integer of {value.bit_length():,} bits, over "
                            f"the limit of {MAX_INT_BITS:,}")
    return value


def check_width(n: Any, what: str, limit: int = MAX_STRING) -> None:
    """A width, padding or count argument (`center(n)`, `zfill(n)`, `'%0*d'`)."""
    if isinstance(n, int) and not isinstance(n, bool) and n > limit:
        raise _refuse(what, n, limit)


def repeat(seq: Any, n: Any, limit: int = MAX_STRING) -> Any:
    """`seq * n` or `n * seq`, refused when the result would pass the bound."""
    if type(seq) is float or type(n) is float:  # the common case: plain arithmetic
        return seq * n
    for s, k in ((seq, n), (n, seq)):
        if isinstance(s, _SEQ) and isinstance(k, int):
            size = weight(s, limit) * max(k, 0) if isinstance(s, list | tuple) \
                else len(s) * max(k, 0)
            if size > limit:
                raise _refuse("the repetition", size, limit)
            return seq * n
    if isinstance(seq, int) and isinstance(n, int) and not isinstance(seq, bool) \
            and not isinstance(n, bool):
        bits = seq.bit_length() + n.bit_length()
        if bits > MAX_INT_BITS:
            raise LimitExceeded(f"the product would be an integer of about {bits:,} bits, over "
                                f"the limit of {MAX_INT_BITS:,}")
    return seq * n


def add(a: Any, b: Any, limit: int = MAX_STRING) -> Any:
    """`a + b`, refused when two strings or lists would join past the bound."""
    if type(a) in _NUMBERS and type(b) in _NUMBERS:  # the common case: plain arithmetic
        return a + b
    if isinstance(a, _SEQ) and isinstance(b, _SEQ):
        if isinstance(a, list | tuple) or isinstance(b, list | tuple):
            size = weight(a, limit) + weight(b, limit)
        else:
            size = len(a) + len(b)
        if size > limit:
            raise _refuse("the concatenation", size, limit)
    return a + b


def power(a: Any, b: Any) -> Any:
    """`a ** b` with an integer result bounded in bits (a float one overflows on its own)."""
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        bits = b * a.bit_length()
        if bits > MAX_INT_BITS:
            raise LimitExceeded(f"the power would be an integer of about {bits:,} bits, over "
                                f"the limit of {MAX_INT_BITS:,}")
    return a**b


def rounded(value: Any, digits: Any = None) -> Any:
    """`round(value, digits)`; Python's int rounding builds 10**-digits, so it is bounded."""
    if isinstance(digits, int) and abs(digits) > MAX_DIGITS:
        raise LimitExceeded(f"round() to {digits:,} digits is over the limit of "
                            f"{MAX_DIGITS:,}")
    return round(value) if digits is None else round(value, digits)


# printf-style: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.?)", re.S)


def _spec_number(text: str, what: str, limit: int) -> int:
    if len(text) > 9:  # `int()` of a long digit run is itself work; no width needs it
        raise LimitExceeded(f"{what} {text[:12]}… is over the limit of {limit:,}")
    n = int(text)
    check_width(n, what, limit)
    return n


def percent(fmt: Any, args: Any, limit: int = MAX_STRING) -> Any:
    """`fmt % args` for a string `fmt`: every width and precision (written or given by `*`)
    and the arguments' own size are added up before anything is formatted."""
    if not isinstance(fmt, str | bytes):
        return fmt % args
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    values = list(args) if isinstance(args, tuple) else [args]
    total = len(text) + weight(args, limit)
    stars = iter(values)
    for m in _PRINTF.finditer(text):
        width, precision, conv = m.groups()
        if conv == "%":
            continue
        for part in (width, precision):
            if part == "*":
                n = next(stars, 0)
                check_width(abs(n) if isinstance(n, int) else 0, "a `*` width", limit)
                total += abs(n) if isinstance(n, int) else 0
            elif part:
                total += _spec_number(part, "the %-format width", limit)
        next(stars, None)  # the value this conversion prints
        total += 330  # a float's digits (1e308 prints 309 of them)
        if total > limit:
            raise _refuse("the %-formatted string", total, limit)
    if total > limit:
        raise _refuse("the %-formatted string", total, limit)
    return check_size(fmt % args, "the %-formatted string", limit)


_SPEC_DIGITS = re.compile(r"\d+")


def check_format_spec(spec: str, limit: int = MAX_STRING) -> int:
    """The widths and precisions in a `str.format` field spec (`>999999999`, `.5f`), checked;
    returns their sum."""
    total = 0
    for run in _SPEC_DIGITS.findall(spec):
        total += _spec_number(run, "the format width", limit)
    if total > limit:
        raise _refuse("the formatted field", total, limit)
    return total


def bounded_iter(items: Iterable[Any], limit: int = MAX_ITEMS,
                 what: str = "the sequence") -> Iterator[Any]:
    """Items of `items`, refusing after `limit` of them."""
    for i, item in enumerate(items):
        if i >= limit:
            raise LimitExceeded(f"{what} has more than {limit:,} items")
        yield item


def join(sep: Any, items: Iterable[Any], limit: int = MAX_STRING,
         convert: Callable[[Any], str] = str) -> str:
    """`sep.join(items)` converting each item, refused as soon as the result would pass the
    bound (items are pulled one by one, so `range(10**5)|join('x' * 10**4)` stops early)."""
    sep_s = convert(sep)
    parts: list[str] = []
    total = 0
    for i, item in enumerate(bounded_iter(items, MAX_ITEMS, "the joined sequence")):
        if not isinstance(item, str | int | float) and weight(item, limit) > limit:
            raise _refuse("a joined item", weight(item, limit), limit)
        part = convert(item)
        total += len(part) + (len(sep_s) if i else 0)
        if total > limit:
            raise _refuse("the joined string", total, limit)
        parts.append(part)
    return sep_s.join(parts)
