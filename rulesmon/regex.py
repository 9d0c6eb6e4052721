"""Regular expressions from rulesets, in bounded time.

A ruleset is someone else's text: a pattern in it (`extract:`, `errors:`, `matches()`, a
local job's `pattern:`, a files `pattern:`) must never stall the monitor. Python's `re`
backtracks, so a pattern such as `((a+))+$` takes exponential time on a line of 41 `a`s, in C,
where no signal or watchdog thread can stop it. So:

- every pattern that RE2 can run is translated from Python's syntax to RE2's (from Python's own
  parse tree, so it keeps Python's meaning: named groups and their numbers, `\\d`, `\\w`, `\\s`
  as Unicode classes unless `(?a)`, scoped flags) and runs on RE2, in time linear in the line;
- a pattern using what RE2 lacks (back references, lookahead and lookbehind, possessive
  repeats, atomic groups, conditional groups, repeats over 1000) runs on Python's `re` in a
  helper process (`Sandbox`): each line must be done within `LINE_SECONDS`, or the helper is
  killed (SIGKILL, which always works) and the pattern is stopped for the rest of the run
  (`RegexTimeout`); its facts become unknown rather than wrong.

`describe()` tells lint which engine a pattern runs on and whether it is exponential under a
backtracking engine (`backtracking()`: nested quantifiers and overlapping alternatives under a
repeat, in any spelling).

Deliberate differences from Python's `re` on RE2 (docs/security.md): `\\b` and `\\B` know only
ASCII word characters; outside a log line (in `matches()`) a `$` without `(?m)` matches only at
the very end, not also before a final newline; Unicode classes follow RE2's Unicode tables (a
newer Unicode version than Python 3.11's).
"""

from __future__ import annotations

import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from re import _compiler, _parser  # type: ignore[attr-defined]
from typing import Any

import re2

_P: Any = _parser

LINE_SECONDS = 2.0  #: the most one line may take on the `re` fallback before it is stopped
CALL_SECONDS = 5.0  #: ...and one search of a chunk's lines, all lines together
RE2_MAX_MEM = 64 << 20  #: RE2's memory budget per pattern (its DFA cache and program)

ENGINE_RE2 = "re2"
ENGINE_SANDBOX = "re-sandbox"


class Unsupported(Exception):
    """A construct RE2 lacks; the message names it."""


class RegexTimeout(Exception):
    """A pattern on the `re` fallback took more than LINE_SECONDS on one line."""


# --- Python syntax -> RE2 syntax ------------------------------------------------------------------

_WORD_UNI = r"\p{L}\p{N}_"
_DIGIT_UNI = r"\p{Nd}"
_SPACE_UNI = (r"\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
              r"\x{202f}\x{205f}\x{3000}")
_WORD_ASCII = "0-9A-Za-z_"
_DIGIT_ASCII = "0-9"
_SPACE_ASCII = r"\t-\r "

_AT_NAMES = {
    "AT_BEGINNING_STRING": "\\A", "AT_END_STRING": "\\z",
    "AT_BOUNDARY": "\\b", "AT_NON_BOUNDARY": "\\B",
}
_LACKS = {
    "GROUPREF": "a back reference", "GROUPREF_EXISTS": "a conditional group",
    "ASSERT": "a lookahead or lookbehind", "ASSERT_NOT": "a negative lookahead or lookbehind",
    "POSSESSIVE_REPEAT": "a possessive repeat", "ATOMIC_GROUP": "an atomic group",
}


def _char(c: int) -> str:
    ch = chr(c)
    if ch.isascii() and ch.isalnum():
        return ch
    return f"\\x{{{c:x}}}"


def _category(cat: Any, ascii_: bool) -> tuple[str, bool]:
    """A category as class contents, and whether it is the complement of those contents."""
    name = str(cat)
    negate = "_NOT_" in name
    if "DIGIT" in name:
        body = _DIGIT_ASCII if ascii_ else _DIGIT_UNI
    elif "SPACE" in name:
        body = _SPACE_ASCII if ascii_ else _SPACE_UNI
    elif "WORD" in name:
        body = _WORD_ASCII if ascii_ else _WORD_UNI
    else:  # LINEBREAK, LOC_WORD...: not produced for str patterns
        raise Unsupported(f"the character class {name}")
    return body, negate


_NEVER = "[^\\x00-\\x{10ffff}]"  #: matches nothing


def _class(members: Any, flags: int, line: bool) -> str:
    """A class; `line`: never "\\n" (a negated class or complement excludes it, a positive one
    leaves it out)."""
    ascii_ = bool(flags & re.ASCII)
    negate = bool(members) and members[0][0] is _P.NEGATE
    body: list[str] = []
    complements: list[str] = []
    for op, av in members[1:] if negate else members:
        if op is _P.LITERAL:
            if not (line and av == 10 and not negate):
                body.append(_char(av))
        elif op is _P.RANGE:
            lo, hi = av
            if line and not negate and lo <= 10 <= hi:
                if lo < 10:
                    body.append(f"{_char(lo)}-{_char(9)}")
                if hi > 10:
                    body.append(f"{_char(11)}-{_char(hi)}")
            else:
                body.append(f"{_char(lo)}-{_char(hi)}")
        elif op is _P.CATEGORY:
            text, neg = _category(av, ascii_)
            if line and not neg and not negate:
                text = text.replace("\\t-\\r", "\\t\\x{b}-\\r")
            (complements if neg else body).append(text)
        else:
            raise Unsupported(f"the class item {op}")
    nl = "\\n" if line else ""
    if not complements:
        inner = "".join(body)
        if not inner:
            return _NEVER if not negate else f"[^{nl}]" if line else "(?s:.)"
        return f"[^{inner}{nl}]" if negate else f"[{inner}]"
    if negate:  # not (A or not B): an intersection RE2 cannot write
        raise Unsupported("a negated class holding \\D, \\S or \\W")
    alternatives = [f"[^{c}{nl}]" for c in complements]
    if body:
        alternatives.insert(0, f"[{''.join(body)}]")
    return "(?:" + "|".join(alternatives) + ")"


def _case(text: str, flags: int) -> str:
    return f"(?i:{text})" if flags & re.IGNORECASE else text


def _holds(items: Any, group: int) -> bool:
    """Whether parsed items contain the group numbered `group`."""
    for op, av in items:
        if op is _P.SUBPATTERN and (av[0] == group or _holds(av[3], group)):
            return True
        if op is _P.BRANCH and any(_holds(a, group) for a in av[1]):
            return True
        if op in (_P.MAX_REPEAT, _P.MIN_REPEAT) and _holds(av[2], group):
            return True
    return False


def _repeated(items: Any, group: int) -> bool:
    """Whether the group numbered `group` is inside a repeat of more than one time."""
    for op, av in items:
        if op is _P.SUBPATTERN and _repeated(av[3], group):
            return True
        if op is _P.BRANCH and any(_repeated(a, group) for a in av[1]):
            return True
        if op in (_P.MAX_REPEAT, _P.MIN_REPEAT) and (
                (av[1] > 1 and _holds(av[2], group)) or _repeated(av[2], group)):
            return True
    return False


def _emit(items: Any, flags: int, names: dict[int, str] | None, line: bool,
          require: int | None = None) -> str:
    """RE2 text of parsed items; `names` None: every group non-capturing; `require`: only
    the matches in which that group takes part (alternatives without it dropped, optional
    repeats holding it made to occur)."""
    out: list[str] = []
    for op, av in items:
        name = str(op)
        if op is _P.LITERAL:
            out.append(_NEVER if line and av == 10 else _case(_char(av), flags))
        elif op is _P.NOT_LITERAL:
            nl = "\\n" if line else ""
            out.append(_case(f"[^{_char(av)}{nl}]", flags))
        elif op is _P.ANY:
            out.append("(?s:.)" if flags & re.DOTALL and not line else "[^\\n]")
        elif op is _P.IN:
            out.append(_case(_class(av, flags, line), flags))
        elif op is _P.AT:
            at = str(av)
            start = at in ("AT_BEGINNING", "AT_BEGINNING_LINE")
            end = at in ("AT_END", "AT_END_LINE")
            if start or (line and at == "AT_BEGINNING_STRING"):
                out.append("(?m:^)" if line or at == "AT_BEGINNING_LINE" else "\\A")
            elif end or (line and at == "AT_END_STRING"):
                out.append("(?m:$)" if line or at == "AT_END_LINE" else "\\z")
            elif at in _AT_NAMES:
                out.append(_AT_NAMES[at])
            else:
                raise Unsupported(f"the anchor {at}")
        elif op is _P.BRANCH:
            branches = av[1]
            if require is not None and any(_holds(a, require) for a in branches):
                branches = [a for a in branches if _holds(a, require)]
            out.append("(?:" + "|".join(_emit(a, flags, names, line, require)
                                        for a in branches) + ")")
        elif op is _P.SUBPATTERN:
            group, add, delete, sub = av
            inner = _emit(sub, (flags | add) & ~delete, names, line, require)
            if group is None or names is None:
                out.append(f"(?:{inner})")
            elif group in names:
                out.append(f"(?P<{names[group]}>{inner})")
            else:
                out.append(f"({inner})")
        elif op is _P.MAX_REPEAT or op is _P.MIN_REPEAT:
            lo, hi, sub = av
            if lo > 1000 or (hi != _P.MAXREPEAT and hi > 1000):
                raise Unsupported("a repeat count over 1000")
            body = _emit(sub, flags, names, line, require)
            if require is not None and lo == 0 and _holds(sub, require):
                if hi == 0:
                    out.append(_NEVER)
                    continue
                lo = 1
            if hi == _P.MAXREPEAT:
                quant = "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
            elif lo == hi:
                quant = f"{{{lo}}}"
            elif (lo, hi) == (0, 1):
                quant = "?"
            else:
                quant = f"{{{lo},{hi}}}"
            lazy = "?" if op is _P.MIN_REPEAT else ""
            out.append(f"(?:{body}){quant}{lazy}")
        elif name in _LACKS:
            raise Unsupported(_LACKS[name])
        else:
            raise Unsupported(f"the construct {name}")
    return "".join(out)


def parse(pattern: str) -> Any:
    """Python's parse tree of `pattern` (raises re.error as re.compile does)."""
    return _parser.parse(pattern)


@lru_cache(maxsize=2048)
def to_re2(pattern: str, line: bool = False, capture: bool = True) -> str:
    """`pattern` in RE2 syntax with Python's meaning; `line`: for one line of a chunk whose
    lines end with "\\n" (anchors at line ends); `capture` False: its groups made
    non-capturing (same matches; RE2 then finds a match's span with its DFA alone, ~20x faster
    than with groups, whose spans need its NFA). Raises Unsupported, or re.error."""
    parsed = parse(pattern)
    names = {number: name for name, number in parsed.state.groupdict.items()}
    return _emit(list(parsed), parsed.state.flags, names if capture else None, line)


@lru_cache(maxsize=256)
def compile_requiring(pattern: str, group: str) -> Any:
    """An RE2 line regex without captures (as `compile_re2(pattern, True, True)`) matching
    wherever `pattern` can match with its group `group` taking part: where it finds nothing,
    no match of `pattern` sets that group. Raises Unsupported as compile_re2, or when the
    group is repeated (an iteration without it could be the one that matched)."""
    parsed = parse(pattern)
    if _repeated(list(parsed), parsed.state.groupdict[group]):
        raise Unsupported("a repeated group")
    text = _emit(list(parsed), parsed.state.flags, None, True,
                 parsed.state.groupdict[group])
    try:
        return re2.compile(text, _options(never_nl=True, never_capture=True))
    except re2.error as exc:
        raise Unsupported(f"RE2 refuses it ({exc})") from None


def _options(never_nl: bool = False, never_capture: bool = False) -> Any:
    """RE2 options; a regex without captures (used only to find which lines match) takes the
    longest match, which RE2 finds with less work than Perl's leftmost-first."""
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    options.never_nl = never_nl
    options.never_capture = never_capture
    options.longest_match = never_capture
    return options


@lru_cache(maxsize=2048)
def compile_re2(pattern: str, line: bool = False, count: bool = False) -> Any:
    """The RE2 regex of a Python pattern (see `to_re2`); `line`: never matches "\\n" and
    anchors at line ends; `count`: no groups at all (a plain search is fastest: DFA
    only). Raises Unsupported when RE2 lacks a construct or refuses the translation."""
    text = to_re2(pattern, line, capture=not count)
    try:
        return re2.compile(text, _options(never_nl=line, never_capture=count))
    except re2.error as exc:
        raise Unsupported(f"RE2 refuses it ({exc})") from None


@lru_cache(maxsize=2048)
def compile_runs(pattern: str) -> Any:
    """An RE2 regex matching a run of consecutive lines that each hold a match of `pattern`
    (as `to_re2(pattern, line=True)`, which never matches "\\n"), each line with its "\\n";
    raises Unsupported as compile_re2."""
    text = f"(?m)(?:^[^\\n]*?(?:{to_re2(pattern, True, capture=False)})[^\\n]*\\n)+"
    try:
        return re2.compile(text, _options(never_capture=True))
    except re2.error as exc:
        raise Unsupported(f"RE2 refuses it ({exc})") from None


@lru_cache(maxsize=256)
def line_set(patterns: tuple[str, ...]) -> Any:
    """`f(line)`: the indexes of the RE2 line regexes (their RE2 text, as `to_re2(p, True)`)
    that match somewhere in one line, with one RE2 Set search; None if RE2 refuses the set."""
    found = re2.Set.SearchSet(_options(never_nl=True, never_capture=True))
    try:
        for text in patterns:
            found.Add(text)
        found.Compile()
    except re2.error:
        return None
    match = getattr(getattr(found, "_set", None), "Match", None)
    return match if match is not None else found.Match


def group_spans(rx: Any) -> Any:
    """`f(buf, pos, end)`: the (start, end) of the whole first match of an RE2 regex in
    buf[pos:end] and of each group ((-1, -1) when unset), or None when nothing matches."""
    match = getattr(getattr(rx, "_regexp", None), "Match", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if match is None or anchor is None:  # another google-re2 layout: the public API
        def public(buf: Any, pos: int, end: int) -> list[tuple[int, int]] | None:
            m = rx.search(buf, pos, end)
            if m is None:
                return None
            return [m.span(i) if m.group(i) is not None else (-1, -1)
                    for i in range(rx.groups + 1)]
        return public

    def fast(buf: Any, pos: int, end: int) -> list[tuple[int, int]] | None:
        spans = match(anchor, buf, pos, end)
        return None if spans[0][0] < 0 else spans
    return fast


def first_span(rx: Any, anchored: bool = False) -> Any:
    """`f(buf, pos, end)`: the (start, end) of the first match of an RE2 regex in
    buf[pos:end] (`anchored`: one starting at pos), (-1, -1) for none; without building match
    objects."""
    match = getattr(getattr(rx, "_regexp", None), "Match", None)
    kinds = getattr(re2, "_Anchor", None)
    anchor = getattr(kinds, "ANCHOR_START" if anchored else "UNANCHORED", None)
    if match is None or anchor is None:  # another google-re2 layout: the public API
        def public(buf: Any, pos: int, end: int) -> tuple[int, int]:
            m = (rx.match if anchored else rx.search)(buf, pos, end)
            return (-1, -1) if m is None else m.span()
        return public

    def fast(buf: Any, pos: int, end: int) -> tuple[int, int]:
        return match(anchor, buf, pos, end)[0]  # type: ignore[no-any-return]
    return fast


def engine_of(pattern: str) -> tuple[str, str]:
    """(ENGINE_RE2 or ENGINE_SANDBOX, why it falls back: the construct RE2 lacks)."""
    try:
        compile_re2(pattern)
        compile_re2(pattern, line=True)
    except Unsupported as exc:
        return ENGINE_SANDBOX, str(exc)
    return ENGINE_RE2, ""


# --- exponential backtracking, in any spelling ----------------------------------------------------


def _first_chars(items: Any, flags: int) -> tuple[frozenset[int], bool] | None:
    """The ASCII characters a sequence can start with, and whether it can start with a
    non-ASCII one; None when it can match the empty string (its start is what follows)."""
    for op, av in items:
        if op is _P.AT:
            continue
        if op is _P.LITERAL and not flags & re.IGNORECASE:
            return (frozenset((av,)), False) if av < 128 else (frozenset(), True)
        if op in (_P.LITERAL, _P.NOT_LITERAL, _P.IN, _P.ANY):
            return _single(op, repr(av), av, flags)
        if op is _P.SUBPATTERN:
            found = _first_chars(av[3], (flags | av[1]) & ~av[2])
            if found is not None:
                return found
            continue
        if op is _P.BRANCH:
            sets = [_first_chars(a, flags) for a in av[1]]
            if any(s is None for s in sets):
                return None
            return (frozenset().union(*(s[0] for s in sets if s)),
                    any(s[1] for s in sets if s))
        if op in (_P.MAX_REPEAT, _P.MIN_REPEAT, _P.POSSESSIVE_REPEAT):
            if av[0] == 0:
                return None
            return _first_chars(av[2], flags)
        return (frozenset(range(128)), True)  # anything else: assume it overlaps
    return None


def _alternatives_overlap(alternatives: Any, flags: int) -> bool:
    """Whether two alternatives can start with the same character (or one can match the empty
    string); linear in their number, so lint stays fast on a pattern of thousands of them."""
    seen: set[int] = set()
    wide = False
    for alternative in alternatives:
        first = _first_chars(alternative, flags)
        if first is None:
            return True
        chars, non_ascii = first
        if seen & chars or (wide and non_ascii):
            return True
        seen |= chars
        wide = wide or non_ascii
    return False


@lru_cache(maxsize=4096)
def _single_cached(op: Any, key: str, flags: int, av: Any) -> tuple[frozenset[int], bool]:
    state = _parser.State()
    state.flags = flags
    rx = _compiler.compile(_parser.SubPattern(state, [(op, av)]), flags)
    chars = frozenset(c for c in range(128) if rx.match(chr(c)))
    return chars, op is not _P.LITERAL or av >= 128


def _single(op: Any, key: str, av: Any, flags: int) -> tuple[frozenset[int], bool]:
    """The ASCII characters one character item matches, and whether it matches others."""
    try:
        return _single_cached(op, key, flags, av)
    except TypeError:  # an unhashable argument (a class's member list): not cached
        return _single_cached.__wrapped__(op, key, flags, av)


def _min_width(items: Any) -> int:
    try:
        return int(items.getwidth()[0])
    except Exception:
        return 1


def _repeats_inside(items: Any) -> Any:
    """The repeat nodes inside a sequence (not inside possessive repeats or atomic groups,
    which never backtrack into themselves)."""
    for op, av in items:
        if op in (_P.MAX_REPEAT, _P.MIN_REPEAT):
            yield op, av
            yield from _repeats_inside(av[2])
        elif op is _P.SUBPATTERN:
            yield from _repeats_inside(av[3])
        elif op is _P.BRANCH:
            for a in av[1]:
                yield from _repeats_inside(a)
        elif op is _P.ASSERT or op is _P.ASSERT_NOT:
            yield from _repeats_inside(av[1])


def _branches_inside(items: Any, flags: int) -> Any:
    for op, av in items:
        if op is _P.BRANCH:
            yield av, flags
            for a in av[1]:
                yield from _branches_inside(a, flags)
        elif op is _P.SUBPATTERN:
            yield from _branches_inside(av[3], (flags | av[1]) & ~av[2])


def _walk(items: Any, flags: int) -> str | None:
    for op, av in items:
        if op in (_P.MAX_REPEAT, _P.MIN_REPEAT):
            _, hi, body = av
            if (hi >= 2 and _min_width(body) > 0) or hi == _P.MAXREPEAT:
                for _, (_, ihi, ibody) in _repeats_inside(body):
                    if _min_width(ibody) == 0:
                        continue
                    if ihi == _P.MAXREPEAT or (hi == _P.MAXREPEAT and ihi >= 2):
                        return "a repeat inside a repeat (nested quantifiers, like (a+)+)"
            if hi == _P.MAXREPEAT:
                for branch, bflags in _branches_inside(body, flags):
                    if _alternatives_overlap(branch[1], bflags):
                        return ("alternatives that can match the same text under a repeat "
                                "(like (a|a)*)")
            found = _walk(body, flags)
            if found:
                return found
        elif op is _P.SUBPATTERN:
            found = _walk(av[3], (flags | av[1]) & ~av[2])
            if found:
                return found
        elif op is _P.BRANCH:
            for a in av[1]:
                found = _walk(a, flags)
                if found:
                    return found
        elif op in (_P.ASSERT, _P.ASSERT_NOT):
            found = _walk(av[1], flags)
            if found:
                return found
        elif op is _P.POSSESSIVE_REPEAT:
            continue
    return None


@lru_cache(maxsize=2048)
def backtracking(pattern: str) -> str | None:
    """What makes `pattern` take exponential (or high-polynomial) time under a backtracking
    engine such as Python's `re`, or None: a repeat inside a repeat (`(a+)+`, `((a+))+$`,
    `(a*)*b`, `(.*a){20}`) or alternatives that can start alike under a repeat (`(a|a)*`)."""
    try:
        parsed = parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    return _walk(list(parsed), parsed.state.flags)


@dataclass(frozen=True)
class Verdict:
    """How rulesmon runs a pattern: `engine`, why it falls back (`lacks`), and what makes it
    exponential under a backtracking engine (`risk`)."""

    engine: str
    lacks: str
    risk: str | None


def describe(pattern: str) -> Verdict:
    engine, lacks = engine_of(pattern)
    return Verdict(engine, lacks, backtracking(pattern))


# --- the `re` fallback, in a helper process -------------------------------------------------------

_WORKER = r"""
import pickle, re, signal, struct, sys, time
inp, out = sys.stdin.buffer, sys.stdout.buffer
limit = float(sys.argv[1])  # SIGALRM's default action ends the process, even inside re
def send(obj):
    data = pickle.dumps(obj, 4)
    out.write(struct.pack("<I", len(data)) + data); out.flush()
cache = {}
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    pattern, flags, full, lines = pickle.loads(inp.read(struct.unpack("<I", head)[0]))
    rx = cache.get((pattern, flags))
    if rx is None:
        rx = cache[(pattern, flags)] = re.compile(pattern, flags)
    search = rx.fullmatch if full else rx.search
    found, done, last = [], 0, time.monotonic()
    for i, line in enumerate(lines):
        signal.setitimer(signal.ITIMER_REAL, limit)
        m = search(line)
        signal.setitimer(signal.ITIMER_REAL, 0)
        if m is not None:
            found.append((i, m.span(), m.groupdict()))
        now = time.monotonic()
        if now - last > 0.05:
            send(("part", i + 1, found)); found, last = [], now
    send(("done", len(lines), found))
"""

_STRUCT = struct.Struct("<I")


class Sandbox:
    """One helper process running Python's `re` for the patterns RE2 cannot run. It reports
    at least every 50 ms of work; when no report comes for LINE_SECONDS, one line is taking
    too long: the process is killed and the search raises RegexTimeout. The helper also ends
    itself (SIGALRM, default action) when a line runs a second longer, so it never outlives a
    monitor that was killed mid-search. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WORKER, str(LINE_SECONDS + 1.0)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                start_new_session=True)
            self._buffer = b""
        return self._proc

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def _read(self, proc: subprocess.Popen[bytes], n: int, deadline: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while len(self._buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RegexTimeout("no answer in time")
            data = os.read(fd, 1 << 16)
            if not data:
                raise RegexTimeout("the helper process ended")
            self._buffer += data
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def search_lines(self, pattern: str, lines: list[str], flags: int = 0,
                     full: bool = False) -> list[
            tuple[int, tuple[int, int], dict[str, str | None]]]:
        """(line index, span, named groups) of each line `re.search(pattern, line)` (with
        `full`: `fullmatch`) matches; raises RegexTimeout (naming the line) when one line takes
        more than LINE_SECONDS."""
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None
            data = pickle.dumps((pattern, flags, full, lines), 4)
            found: list[tuple[int, tuple[int, int], dict[str, str | None]]] = []
            done = 0
            overall = time.monotonic() + CALL_SECONDS
            try:
                writer = threading.Thread(target=self._write, args=(proc, data), daemon=True)
                writer.start()
                while True:
                    deadline = min(time.monotonic() + LINE_SECONDS, overall)
                    size = _STRUCT.unpack(self._read(proc, 4, deadline))[0]
                    kind, done, part = pickle.loads(self._read(proc, size, deadline))
                    found.extend(part)
                    if kind == "done":
                        break
                writer.join()
            except (RegexTimeout, OSError) as exc:
                self._kill()
                why = f"line {done + 1} took more than {LINE_SECONDS:g}s" \
                    if time.monotonic() < overall else \
                    f"{len(lines)} lines took more than {CALL_SECONDS:g}s"
                raise RegexTimeout(f"{why} ({exc})") from None
            except BaseException:  # a signal ending the run: no half-read answer stays behind
                self._kill()
                raise
            return found

    @staticmethod
    def _write(proc: subprocess.Popen[bytes], data: bytes) -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(_STRUCT.pack(len(data)) + data)
            proc.stdin.flush()
        except (OSError, ValueError):  # killed meanwhile: the reader reports it
            pass


_SANDBOX: list[Sandbox] = []
_SANDBOX_LOCK = threading.Lock()


def sandbox() -> Sandbox:
    """The process-wide fallback helper (started on first use, ended at exit)."""
    with _SANDBOX_LOCK:
        if not _SANDBOX:
            import atexit

            _SANDBOX.append(Sandbox())
            atexit.register(_SANDBOX[0].close)
        return _SANDBOX[0]


class SandboxMatch:
    """What a search on the fallback found in one text: like re.Match, for named groups."""

    def __init__(self, span: tuple[int, int], groups: dict[str, str | None]) -> None:
        self._span = span
        self._groups = groups

    def group(self, name: str) -> str | None:
        return self._groups.get(name)

    def start(self) -> int:
        return self._span[0]

    def span(self) -> tuple[int, int]:
        return self._span


class SandboxRegex:
    """A pattern RE2 cannot run: searched on Python's `re` in the helper process, one line at
    a time bounded by LINE_SECONDS. After a timeout it is `stopped` for good."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self.groupindex = re.compile(pattern, flags).groupindex
        self.stopped: str | None = None

    def search_lines(self, lines: list[str], full: bool = False) -> list[
            tuple[int, tuple[int, int], dict[str, str | None]]]:
        if self.stopped is not None:
            raise RegexTimeout(self.stopped)
        try:
            return sandbox().search_lines(self.pattern, lines, self.flags, full)
        except RegexTimeout as exc:
            self.stopped = f"pattern {self.pattern!r} stopped: {exc}"
            raise RegexTimeout(self.stopped) from None

    def search(self, text: str) -> SandboxMatch | None:
        found = self.search_lines([text])
        return SandboxMatch(found[0][1], found[0][2]) if found else None

    def fullmatch(self, text: str) -> SandboxMatch | None:
        found = self.search_lines([text], full=True)
        return SandboxMatch(found[0][1], found[0][2]) if found else None


@lru_cache(maxsize=1024)
def compile_search(pattern: str, dotall: bool = False) -> Any:
    """A ruleset regex with `search` and `fullmatch` (`matches()`, a local job's `pattern`, a
    files `pattern`): RE2 when it can run the pattern, else a SandboxRegex (a timeout raises
    RegexTimeout). `dotall`: `.` matches a newline too. Raises re.error for an invalid
    pattern."""
    flags = re.DOTALL if dotall else 0
    re.compile(pattern, flags)
    try:
        if dotall:
            try:
                re.compile(f"(?s){pattern}")
            except re.error:
                raise Unsupported("flags after the start") from None
            return compile_re2(f"(?s){pattern}")
        return compile_re2(pattern)
    except Unsupported:
        return SandboxRegex(pattern, flags)
