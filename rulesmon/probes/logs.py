# Over 800 lines: following, extractors, error buffers and log facts in one module (the
# tailing itself is apart: tail.py, handles.py); it is to become a logs/ package with the
# layout of issue 16.
"""`log.*` facts: follow each job instance's logs and match extractors and error patterns.

For every instance whose job declares `logs:` (a job without a source is one instance,
`<job>/-`, made here as the files probe makes it), each log path template is rendered with the
instance's `job.*` facts and `worker` (its worker index; `*` for an instance without one, so a
per-worker path follows every worker's log), SLURM's `%j %A %a %x %u` are expanded for SLURM
jobs, and a path with glob characters follows every matching file (new matches join later).
Each file is read incrementally by a `Tailer`, in chunks of complete lines; each pattern
(extractors: presets first, then the log's own `extract:`; then the error patterns) is searched
over a whole chunk at once, never line by line in Python: how many lines it matches, then, from
the end, only the few matching lines the facts need (the last value of each group, the last
error lines). A preset's progress-bar extractor gives the values of the last draw of each
file's main bar instead, not of the last bar drawn (`main_bar`). A chunk is searched as
undecoded bytes when every pattern gives the same result there (all presets do), and only the
lines kept are decoded. The "patterns" section below says
how a pattern written for one line is compiled for a whole chunk. Once an instance's job has
ended (`job.terminal`), its logs' last partial lines are read as complete (see `Tailer.chunks`).

When several logs or files feed one instance, counts add up and the last value of a group comes
from the most recently matching line (a later tick, then the more recently modified file, then
the later line), so with a glob over per-worker logs `log.done` is whichever worker wrote
last. `log.sum.<group>` adds up each followed file's own last value of the group (the items
done by every worker: `progress: {done: log.sum.done, total: log.sum.total}`), and
`log.files` counts the files read. A log that cannot be read (missing, a folder, a glob that
matches nothing, no permission) gives `log.available` False (when no log of the instance
could be read) and `log.error` with the reason; the probe logs one warning when a reason
appears or changes, not one per tick, and keeps the reasons in `errors`, by path. `collect`
never raises for a bad log.
"""

from __future__ import annotations

import contextlib
import copy
import glob as globmod
import logging
import math
import re
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate, chain, islice
from pathlib import Path
from re import _compiler, _parser  # type: ignore[attr-defined]  # parse trees, compiled
from typing import TYPE_CHECKING, Any

from .. import regex
from .base import Facts, TickContext, job_base, render_optional_path, sourceless_instances
from .log_presets import PRESETS, bar_values
from .progress import BarFollower
from .tail import Positions, Tailer

if TYPE_CHECKING:
    from ..config.models import Job, LogSpec, Ruleset

log = logging.getLogger(__name__)

ERROR_LINES = 5  #: matching lines kept per error pattern (log.errors.<name>.lines)
BAR_DRAWS = 1000  #: progress-bar draws of a chunk looked at, at most, to find the main bar
FORGET_AFTER = 600.0  #: seconds an instance may be absent before its files are closed
WARN_LINES = 5  #: unreadable logs warned about one by one in a tick; the rest in one line
_GLOB = re.compile(r"[*?[]")
_SLURM = re.compile(r"(?<!\{)%([jAaxu%])")
_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|infinity)",
                    re.IGNORECASE)
_SPECIAL = re.compile(r"([-+]?)(nan|inf)(?:\.0+)?", re.IGNORECASE)

Key = tuple[float, float, int]  # (tick time, file mtime, line sequence): later is more recent
Value = int | float | str  #: a captured value, typed once when it is read


# --- patterns ------------------------------------------------------------------------------------
#
# A pattern is written for one line (`rx.search(line)`), but a chunk is scanned whole. Each
# pattern is compiled, from its parse tree, into forms for a whole chunk of lines ended by "\n":
#
# - `line`: nothing in it can match or see past a "\n" (`.`, `[^x]`, `\s`, `\D`, `\W` exclude it,
#   `\A`/`\Z` become line anchors, re.MULTILINE), so `line.search(chunk, start, end)` on one
#   line finds what `rx.search(line)` finds, and a match never spans two lines;
# - `forward`: for counting, the pattern followed by the rest of its line, so each matching line
#   is one match of `findall`; rewritten, where it can be, to begin with a literal (CPython's
#   `re` only searches fast for a literal prefix): optional items at the start dropped, a
#   leading `x+` cut to one `x`, and a few fixed-width items before the first literal moved
#   into a lookbehind after it (`\d+%\|` counts as `%\|(?<=\d%\|)`);
# - `backward`: the same for the reversed pattern on the reversed chunk, when the pattern ends
#   with a literal rather than begins with one (`\b\d+ it/s`);
# - `anchors`: sets of literals of which every match holds one (for patterns with neither),
#   found with `find`, their lines searched in place.
#
# Each form exists for decoded text and, where the result is the same, for the undecoded UTF-8
# bytes: `exact` for any bytes (ASCII `\d \w \s \b`, `(?a)`, and `.`/`[^x]` only where they
# cannot stop inside a character), `ascii` for chunks that are ASCII only (any pattern without
# case-insensitive back references). Bytes skip decoding and are searched faster.

_P: Any = _parser
_NL = 10
_WIDE = 1 << 16  # a prefix this wide or more is treated as unbounded
COVER = 3  #: the shortest prefix that stands for several literals of an anchor set...
INNER_COVER = 6  #: ...and the shortest other substring (a short one is common in any log)
_MAX_COPIES = 32  #: a leading `x{n,}` is cut to n copies of x only up to this n
_SINGLE = (_P.LITERAL, _P.NOT_LITERAL, _P.IN, _P.ANY)
_REPEATS = (_P.MAX_REPEAT, _P.MIN_REPEAT, _P.POSSESSIVE_REPEAT)
_LINE_ANCHORS = (_P.AT_BEGINNING, _P.AT_BEGINNING_LINE, _P.AT_END, _P.AT_END_LINE)
_MIRROR = {_P.AT_BEGINNING: _P.AT_END, _P.AT_END: _P.AT_BEGINNING,
           _P.AT_BEGINNING_LINE: _P.AT_END_LINE, _P.AT_END_LINE: _P.AT_BEGINNING_LINE}
#: a category that holds "\n" -> the one whose complement, less "\n", is it less "\n"
_HOLDS_NL = {_P.CATEGORY_SPACE: _P.CATEGORY_NOT_SPACE, _P.CATEGORY_NOT_DIGIT: _P.CATEGORY_DIGIT,
             _P.CATEGORY_NOT_WORD: _P.CATEGORY_WORD}
_NEGATIVE_CATEGORIES = (_P.CATEGORY_NOT_DIGIT, _P.CATEGORY_NOT_SPACE, _P.CATEGORY_NOT_WORD)
_CASE_FLAGS = re.IGNORECASE | re.ASCII | re.UNICODE

Items = list[tuple[Any, Any]]


class _Unsupported(Exception):  # internal signal, never leaves this module
    """A construct a form cannot carry: the pattern is matched another way."""


def _parse(pattern: str) -> Any:
    return _parser.parse(pattern)


def _seq(state: Any, items: Items) -> Any:
    return _parser.SubPattern(state, items)


def _never(state: Any) -> tuple[Any, Any]:
    return (_P.ASSERT_NOT, (1, _seq(state, [])))  # (?!): fails everywhere


def _flags(flags: int, av: Any) -> int:
    """The flags inside a SUBPATTERN node."""
    return int((flags | av[1]) & ~av[2])


# --- a line at a time ---


def _safe_set(state: Any, members: Items) -> tuple[Any, Any]:
    """A character set that never matches "\\n" and otherwise matches what `members` does."""
    if members and members[0][0] is _P.NEGATE:
        return (_P.IN, members if (_P.LITERAL, _NL) in members else [*members, (_P.LITERAL, _NL)])
    out: Items = []
    holds_nl: list[Any] = []
    for op, av in members:
        if op is _P.LITERAL and av == _NL:
            continue
        if op is _P.RANGE and av[0] <= _NL <= av[1]:
            lo, hi = av
            if lo < _NL:
                out.append((_P.RANGE, (lo, _NL - 1)) if lo < _NL - 1 else (_P.LITERAL, lo))
            if hi > _NL:
                out.append((_P.RANGE, (_NL + 1, hi)) if hi > _NL + 1 else (_P.LITERAL, hi))
            continue
        if op is _P.CATEGORY and av in _HOLDS_NL:
            holds_nl.append(av)
        out.append((op, av))
    if not out:
        return _never(state)
    if not holds_nl:
        return (_P.IN, out)
    if len(out) == 1:  # `\s` -> `[^\S\n]`: still one fast set
        return (_P.IN, [(_P.NEGATE, None), (_P.CATEGORY, _HOLDS_NL[holds_nl[0]]),
                        (_P.LITERAL, _NL)])
    return (_P.SUBPATTERN, (None, 0, 0, _seq(state, [
        (_P.ASSERT_NOT, (1, _seq(state, [(_P.LITERAL, _NL)]))), (_P.IN, out)])))


def _line_safe(state: Any, items: Items) -> Items:
    """The items rewritten so that nothing matches or looks past a "\\n" (see above)."""
    out: Items = []
    for op, av in items:
        if op is _P.LITERAL:
            out.append(_never(state) if av == _NL else (op, av))
        elif op is _P.NOT_LITERAL:
            out.append((op, av) if av == _NL else
                       (_P.IN, [(_P.NEGATE, None), (_P.LITERAL, av), (_P.LITERAL, _NL)]))
        elif op is _P.ANY:
            out.append((_P.NOT_LITERAL, _NL))  # `.` as without re.DOTALL
        elif op is _P.IN:
            out.append(_safe_set(state, av))
        elif op is _P.AT:
            out.append((op, {_P.AT_BEGINNING_STRING: _P.AT_BEGINNING,
                             _P.AT_END_STRING: _P.AT_END}.get(av, av)))
        elif op is _P.BRANCH:
            out.append((op, (None, [_seq(state, _line_safe(state, a)) for a in av[1]])))
        elif op is _P.SUBPATTERN:
            out.append((op, (*av[:3], _seq(state, _line_safe(state, av[3])))))
        elif op in _REPEATS:
            out.append((op, (av[0], av[1], _seq(state, _line_safe(state, av[2])))))
        elif op is _P.ASSERT or op is _P.ASSERT_NOT:
            out.append((op, (av[0], _seq(state, _line_safe(state, av[1])))))
        elif op is _P.ATOMIC_GROUP:
            out.append((op, _seq(state, _line_safe(state, av))))
        elif op is _P.GROUPREF:
            out.append((op, av))
        elif op is _P.GROUPREF_EXISTS:
            group, yes, no = av
            out.append((op, (group, _seq(state, _line_safe(state, yes)),
                             None if no is None else _seq(state, _line_safe(state, no)))))
        else:
            raise _Unsupported(op)
    return out


# --- bytes ---


_MEMBERS: dict[tuple[Any, str, int], tuple[int, ...]] = {}


def _members(op: Any, av: Any, flags: int) -> tuple[int, ...]:
    """The ASCII characters a one-character item matches in text (str semantics)."""
    key = (op, repr(av), flags)
    found = _MEMBERS.get(key)
    if found is None:
        state = _parser.State()
        state.flags = flags
        rx = _compiler.compile(_seq(state, [(op, av)]), 0)
        found = tuple(c for c in range(128) if rx.match(chr(c)))
        if len(_MEMBERS) >= 4096:
            _MEMBERS.clear()
        _MEMBERS[key] = found
    return found


def _byte_set(chars: Iterable[int], negate: bool = False) -> tuple[Any, Any]:
    """A bytes set node from ASCII codes (runs as ranges); negated: every other byte."""
    codes = sorted(set(chars))
    items: Items = [(_P.NEGATE, None)] if negate else []
    i = 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        items.append((_P.LITERAL, codes[i]) if i == j else (_P.RANGE, (codes[i], codes[j])))
        i = j + 1
    if not negate and len(items) == 1 and items[0][0] is _P.LITERAL:
        return items[0]
    return (_P.IN, items)


def _non_ascii(op: Any, av: Any, flags: int) -> str:
    """What a one-character item does with non-ASCII characters: "none" (matches none),
    "all" (matches every one); anything else is unsupported."""
    if flags & re.IGNORECASE:
        raise _Unsupported("ignorecase")
    if op is _P.LITERAL:
        return "none" if av < 128 else "literal"
    if op is _P.NOT_LITERAL:
        if av < 128:
            return "all"
        raise _Unsupported(op)
    if op is _P.ANY:
        return "all"
    assert op is _P.IN
    negate = bool(av) and av[0][0] is _P.NEGATE
    every = False
    for mop, mav in av[1:] if negate else av:
        if (mop is _P.LITERAL and mav < 128) or (mop is _P.RANGE and mav[1] < 128):
            continue
        if mop is _P.CATEGORY and flags & re.ASCII:
            every = every or mav in _NEGATIVE_CATEGORIES
            continue
        raise _Unsupported(mop)
    return "none" if every == negate else "all"


def _to_bytes(state: Any, items: Items, flags: int, exact: bool) -> Items:
    """The items for UTF-8 bytes: one-character items become byte sets of their ASCII
    members; in `exact` mode a non-ASCII literal becomes its UTF-8 bytes and an item that
    matches every non-ASCII character also matches every byte >= 0x80 (the caller checked
    where that is sound); otherwise (ASCII text) non-ASCII characters never occur."""
    out: Items = []
    for op, av in items:
        if op is _P.LITERAL and av < 128 and not flags & re.IGNORECASE:
            out.append((op, av))
        elif op in _SINGLE:
            if exact:
                kind = _non_ascii(op, av, flags)
                if kind == "literal":
                    if av == 0xFFFD or 0xD800 <= av < 0xE000:
                        raise _Unsupported("replacement character")
                    out.append((_P.SUBPATTERN, (None, 0, 0, _seq(state, [
                        (_P.LITERAL, b) for b in chr(av).encode()]))))
                    continue
                if kind == "all":
                    chars = _members(op, av, flags)
                    out.append(_byte_set(set(range(128)) - set(chars), negate=True))
                    continue
            elif op is _P.LITERAL and not flags & re.IGNORECASE:
                out.append((op, av) if av < 128 else _never(state))  # not in ASCII text
                continue
            chars = _members(op, av, flags)
            out.append(_byte_set(chars) if chars else _never(state))
        elif op is _P.AT:
            if av in (_P.AT_BOUNDARY, _P.AT_NON_BOUNDARY) and exact and not flags & re.ASCII:
                raise _Unsupported("unicode word boundary")
            out.append((op, av))
        elif op is _P.BRANCH:
            out.append((op, (None, [_seq(state, _to_bytes(state, a, flags, exact))
                                    for a in av[1]])))
        elif op is _P.SUBPATTERN:
            group, add, delete, sub = av
            inner = _flags(flags, av)
            out.append((op, (group, add & ~_CASE_FLAGS, delete & ~_CASE_FLAGS,
                             _seq(state, _to_bytes(state, sub, inner, exact)))))
        elif op in _REPEATS:
            out.append((op, (av[0], av[1], _seq(state, _to_bytes(state, av[2], flags, exact)))))
        elif op is _P.ASSERT or op is _P.ASSERT_NOT:
            out.append((op, (av[0], _seq(state, _to_bytes(state, av[1], flags, exact)))))
        elif op is _P.ATOMIC_GROUP:
            out.append((op, _seq(state, _to_bytes(state, av, flags, exact))))
        elif op is _P.GROUPREF:
            if flags & re.IGNORECASE:
                raise _Unsupported("case-insensitive back reference")
            out.append((op, av))
        elif op is _P.GROUPREF_EXISTS:
            group, yes, no = av
            out.append((op, (group, _seq(state, _to_bytes(state, yes, flags, exact)),
                             None if no is None else
                             _seq(state, _to_bytes(state, no, flags, exact)))))
        else:
            raise _Unsupported(op)
    return out


def _kind(op: Any, av: Any, flags: int) -> str:
    """"pos": one whole character, never part of one (ASCII or a literal); "neg": any
    non-ASCII character, so in bytes possibly a part of one; "zero": an assertion."""
    if op in _SINGLE:
        return "neg" if _non_ascii(op, av, flags) == "all" else "pos"
    if op is _P.AT or op is _P.ASSERT or op is _P.ASSERT_NOT:
        return "zero"
    return "compound"


def _edge_aligned(items: Items, flags: int, first: bool) -> bool:
    """Whether the first (or last) position of every match of `items` is surely at a
    character boundary in bytes."""
    if not items:
        return False
    op, av = items[0] if first else items[-1]
    if op in _SINGLE:
        return _kind(op, av, flags) == "pos"
    if op is _P.AT:
        return av in _LINE_ANCHORS
    if op is _P.SUBPATTERN:
        return _edge_aligned(list(av[3]), _flags(flags, av), first)
    if op is _P.ATOMIC_GROUP:
        return _edge_aligned(list(av), flags, first)
    if op is _P.BRANCH:
        return all(_edge_aligned(list(a), flags, first) for a in av[1])
    if op in _REPEATS:
        return av[0] >= 1 and _edge_aligned(list(av[2]), flags, first)
    return False


def _check_exact(items: Items, flags: int, before: bool, after: bool | None,
                 behind: bool = False) -> None:
    """Raise _Unsupported unless the bytes form of `items` finds what the text form finds on
    any UTF-8 line: an item that can match part of a character ("neg") only as a greedy
    unbounded repeat that stops at an ASCII item, a line end or the end of the pattern, and an
    assertion only next to a whole character. `before`/`after`: whether the positions before
    and after `items` are at character boundaries (after=None: the end of the pattern)."""
    for i, (op, av) in enumerate(items):
        prev = before if i == 0 else _edge_aligned(items[:i], flags, first=False)
        nxt = after if i == len(items) - 1 else _edge_aligned(items[i + 1:], flags, first=True)
        kind = _kind(op, av, flags)
        if kind == "pos":
            continue
        if kind == "neg":
            raise _Unsupported("a lone negated set")
        if op is _P.AT:
            if av not in _LINE_ANCHORS and not (prev or nxt):
                raise _Unsupported("assertion inside a character")
        elif op is _P.ASSERT or op is _P.ASSERT_NOT:
            if not (prev or nxt):
                raise _Unsupported("assertion inside a character")
            _check_exact(list(av[1]), flags, True, None, behind=behind or av[0] < 0)
        elif op is _P.SUBPATTERN:
            _check_exact(list(av[3]), _flags(flags, av), prev, nxt, behind)
        elif op is _P.ATOMIC_GROUP:
            _check_exact(list(av), flags, prev, nxt, behind)
        elif op is _P.BRANCH:
            for alternative in av[1]:
                _check_exact(list(alternative), flags, prev, nxt, behind)
        elif op is _P.GROUPREF_EXISTS:
            for sub in av[1:]:
                if sub is not None:
                    _check_exact(list(sub), flags, prev, nxt, behind)
        elif op in _REPEATS:
            lo, hi, body = av
            if len(body) == 1 and body[0][0] in _SINGLE and \
                    _kind(body[0][0], body[0][1], flags) == "neg":
                greedy = op is not _P.MIN_REPEAT
                if behind or lo > 1 or hi != _P.MAXREPEAT or not (
                        nxt or (after is None and i == len(items) - 1 and greedy)):
                    raise _Unsupported("a negated set that may stop inside a character")
                continue
            _check_exact(list(body), flags, False, False, behind)
        elif op is not _P.GROUPREF:
            raise _Unsupported(op)


# --- counting forms ---


def _ungroup(state: Any, items: Items) -> Items:
    """The items with capturing groups made non-capturing (a back reference: unsupported)."""
    out: Items = []
    for op, av in items:
        if op is _P.GROUPREF or op is _P.GROUPREF_EXISTS:
            raise _Unsupported(op)
        if op is _P.SUBPATTERN:
            out.append((op, (None, av[1], av[2], _seq(state, _ungroup(state, av[3])))))
        elif op is _P.BRANCH:
            out.append((op, (None, [_seq(state, _ungroup(state, a)) for a in av[1]])))
        elif op in _REPEATS:
            out.append((op, (av[0], av[1], _seq(state, _ungroup(state, av[2])))))
        elif op is _P.ASSERT or op is _P.ASSERT_NOT:
            out.append((op, (av[0], _seq(state, _ungroup(state, av[1])))))
        elif op is _P.ATOMIC_GROUP:
            out.append((op, _seq(state, _ungroup(state, av))))
        else:
            out.append((op, av))
    return out


def _inline(items: Items, first: bool) -> Items:
    """Non-capturing groups without flags at the start (or end) opened into the sequence."""
    items = list(items)
    while items:
        op, av = items[0] if first else items[-1]
        if op is not _P.SUBPATTERN or av[0] is not None or av[1] or av[2]:
            break
        inner = list(av[3])
        items = inner + items[1:] if first else items[:-1] + inner
    return items


def _trim(state: Any, items: Items, first: bool) -> Items:
    """Items with the same lines matching, simpler at the start (or end): optional items
    dropped, an `x{n,m}` of one character cut to n copies of x, each alternative of an
    alternation there trimmed the same way (`loss: (?:\\d+(?:\\.\\d*)?|nan)` -> `loss: (?:\\d|nan)`
    at the end)."""
    while True:
        items = _inline(items, first)
        if not items:
            return items
        op, av = items[0] if first else items[-1]
        rest = items[1:] if first else items[:-1]
        if op is _P.BRANCH:
            alternatives = [_trim(state, list(a), first) for a in av[1]]
            if any(not a for a in alternatives):  # it can match nothing: drop it
                items = rest
                continue
            branch = (op, (None, [_seq(state, a) for a in alternatives]))
            return [branch, *rest] if first else [*rest, branch]
        if op not in (_P.MAX_REPEAT, _P.MIN_REPEAT):
            return items
        lo, _, body = av
        if lo == 0:
            items = rest
            continue
        if len(body) == 1 and body[0][0] in _SINGLE and lo <= _MAX_COPIES:
            copies = [body[0]] * lo
            return copies + rest if first else rest + copies
        return items


def _literal_led(state: Any, items: Items, flags: int) -> Items | None:
    """The items rewritten to begin with a literal, or None: fixed-width items before the
    first literal run move into a lookbehind after it."""
    if flags & re.IGNORECASE:
        return None
    i = next((k for k, (op, _) in enumerate(items) if op is _P.LITERAL), None)
    if i is None or any(op not in _SINGLE and op is not _P.AT for op, _ in items[:i]):
        return None
    if i == 0:
        return items
    j = i
    while j < len(items) and items[j][0] is _P.LITERAL:
        j += 1
    return [*items[i:j], (_P.ASSERT, (-1, _seq(state, items[:j]))), *items[j:]]


def _reverse(state: Any, items: Items) -> Items:
    """The items matching the reversed text of each line the items match."""
    out: Items = []
    for op, av in reversed(items):
        if op in _SINGLE:
            out.append((op, av))
        elif op is _P.AT:
            out.append((op, _MIRROR.get(av, av)))
        elif op is _P.BRANCH:
            out.append((op, (None, [_seq(state, _reverse(state, a)) for a in av[1]])))
        elif op is _P.SUBPATTERN:
            out.append((op, (None, av[1], av[2], _seq(state, _reverse(state, av[3])))))
        elif op is _P.MAX_REPEAT or op is _P.MIN_REPEAT:
            out.append((op, (av[0], av[1], _seq(state, _reverse(state, av[2])))))
        elif op is _P.ASSERT or op is _P.ASSERT_NOT:
            sub = _seq(state, _reverse(state, av[1]))
            if av[0] > 0:  # a lookahead becomes a lookbehind, which needs a fixed width
                lo, hi = sub.getwidth()
                if lo != hi:
                    raise _Unsupported("variable-width lookahead")
                out.append((op, (-1, sub)))
            else:
                out.append((op, (1, sub)))
        else:  # possessive repeats, atomic groups: not the same lines when reversed
            raise _Unsupported(op)
    return out


def _count_rx(state: Any, items: Items, groups: bool = False) -> re.Pattern[Any]:
    """`items`, the rest of the line and its "\\n": one match per matching line. The one
    (empty) group makes `findall` return the same empty string for every match. `groups`:
    the items keep the pattern's groups (they have back references)."""
    st = _parser.State()
    st.flags = state.flags
    if groups:
        st.groupdict = dict(state.groupdict)
        st.groupwidths = list(state.groupwidths)
    group = st.opengroup()
    empty = _seq(st, [])
    st.closegroup(group, empty)
    rest = (_P.MAX_REPEAT, (0, _P.MAXREPEAT, _seq(st, [(_P.NOT_LITERAL, _NL)])))
    return _compiler.compile(  # type: ignore[no-any-return]
        _seq(st, [*items, rest, (_P.LITERAL, _NL), (_P.SUBPATTERN, (group, 0, 0, empty))]),
        re.MULTILINE)


@dataclass(frozen=True)
class Forms:
    """One pattern compiled for one kind of text (str, or UTF-8 bytes); see above."""

    line: re.Pattern[Any]
    full: re.Pattern[Any]
    forward: re.Pattern[Any] | None
    backward: re.Pattern[Any] | None
    anchors: tuple[tuple[Any, ...], ...]


def _forms(parsed: Any, mode: str, anchor_sets: list[tuple[str, ...]]) -> Forms:
    """The forms of a parsed pattern for "text", "exact" (any UTF-8 bytes) or "ascii"
    (ASCII-only bytes); raises _Unsupported."""
    state = copy.copy(parsed.state)
    items = _line_safe(state, list(parsed))
    if mode != "text":
        if mode == "exact":
            _check_exact(items, state.flags, False, None)
        items = _to_bytes(state, items, state.flags, exact=mode == "exact")
        state.flags &= ~_CASE_FLAGS
    line = _compiler.compile(_seq(state, items), re.MULTILINE)
    forward = backward = None
    try:
        plain = _ungroup(state, items)
    except _Unsupported:
        plain = None
    if plain is not None:
        plain = _trim(state, plain, first=False)
        led = _literal_led(state, _trim(state, plain, first=True), state.flags)
        if led is not None:
            forward = _count_rx(state, led)
        else:
            with contextlib.suppress(_Unsupported):
                reverse = _reverse(state, plain)
                led = _literal_led(state, _trim(state, _trim(state, reverse, first=False),
                                                first=True), state.flags)
                if led is not None:
                    backward = _count_rx(state, led)
    full = _count_rx(state, items, groups=True) if plain is None else _count_rx(state, plain)
    if mode == "text":
        anchors: tuple[tuple[Any, ...], ...] = tuple(anchor_sets)
    else:
        anchors = tuple(tuple(lit.encode() for lit in s) for s in anchor_sets)
    return Forms(line, full, forward, backward, anchors)


def _flatten(seq: Iterable[Any], out: list[Any]) -> None:
    """The items of a sequence with its (case-sensitive) groups inlined: adjacent items stay
    adjacent, so literal runs can cross group boundaries."""
    for op, arg in seq:
        if op is _parser.SUBPATTERN and not arg[1] & re.IGNORECASE:
            _flatten(arg[3], out)
        else:
            out.append((op, arg))


Anchor = tuple[str, int | None]  # a literal, and the largest width before it (None: unbounded)


def _add_width(a: int | None, b: int | None) -> int | None:
    if a is None or b is None or a + b >= _WIDE:
        return None
    return a + b


def _candidates(state: Any, seq: Iterable[Any]) -> list[tuple[Anchor, ...]]:
    """Sets of literals such that every match of the sequence contains one literal of the set:
    each run of adjacent literal characters (a set of one), and each alternation whose every
    branch has such a set (their union)."""
    flat: list[Any] = []
    _flatten(seq, flat)
    found: list[tuple[Anchor, ...]] = []
    current: list[str] = []
    width: int | None = 0  # largest width of the items before the current position
    start_width: int | None = 0
    for op, arg in flat:
        if op is _parser.LITERAL:
            if not current:
                start_width = width
            current.append(chr(arg))
            width = _add_width(width, 1)
            continue
        if op is _parser.AT:
            continue  # zero width: the characters around it are adjacent
        if current:
            found.append((("".join(current), start_width),))
            current = []
        if op is _parser.BRANCH:
            union: list[Anchor] = []
            for alternative in arg[1]:
                best = _best(_candidates(state, alternative))
                if best is None:
                    union = []
                    break
                union.extend((lit, _add_width(width, w)) for lit, w in best)
            if union:
                found.append(tuple(dict.fromkeys(union)))
        width = _add_width(width, _parser.SubPattern(state, [(op, arg)]).getwidth()[1])
    if current:
        found.append((("".join(current), start_width),))
    return found


def _selectivity(candidate: tuple[Anchor, ...]) -> tuple[int, int]:
    return min(len(lit) for lit, _ in candidate), -len(candidate)


def _best(candidates: list[tuple[Anchor, ...]]) -> tuple[Anchor, ...] | None:
    """The most selective set: the one whose shortest literal is longest, fewer literals
    first."""
    if not candidates:
        return None
    return max(candidates, key=_selectivity)


def _anchor_sets(parsed: Any) -> list[tuple[str, ...]]:
    """Every candidate set of `parsed`, most selective first (none when ignoring case)."""
    try:
        if parsed.state.flags & re.IGNORECASE:
            return []
        found = sorted(_candidates(parsed.state, list(parsed)), key=_selectivity, reverse=True)
    except Exception:  # an unusual parse tree: no prefilter rather than a wrong one
        return []
    out: list[tuple[str, ...]] = []
    for candidate in found:
        literals = tuple(dict.fromkeys(lit for lit, _ in candidate if "\n" not in lit))
        if literals and len(literals) == len(candidate):
            literals = _cover(literals)
            if literals not in out:
                out.append(literals)
    return out


def _cover(literals: tuple[str, ...]) -> tuple[str, ...]:
    """Fewer literals that every match still contains one of, so fewer scans of a chunk:
    a literal holding another is dropped, and literals sharing a substring of COVER or more
    characters (INNER_COVER unless it begins each of them) are replaced by it, a common
    prefix first, then the longest: `ncclSystemError|ncclRemoteError` -> `nccl`."""
    current = [lit for lit in literals
               if not any(other != lit and other in lit for other in literals)]
    while len(current) > 1:
        best: tuple[bool, int, int, str] | None = None
        for lit in current:
            for i in range(len(lit)):
                for j in range(i + COVER, len(lit) + 1):
                    sub = lit[i:j]
                    holders = [x for x in current if sub in x]
                    if len(holders) < 2:
                        break  # a longer substring is held by no more literals
                    prefix = all(x.startswith(sub) for x in holders)
                    if not prefix and len(sub) < INNER_COVER:
                        continue
                    key = (prefix, len(sub), len(holders), sub)
                    if best is None or key > best:
                        best = key
        if best is None:
            break
        sub = best[3]
        current = [sub, *(x for x in current if sub not in x)]
    return tuple(current)


def anchors(pattern: str) -> tuple[Anchor, ...] | None:
    """Literals of which every match of `pattern` contains at least one, each with the largest
    width of the match before it; None when there are none or it cannot be told (ignoring
    case). A run of plain characters gives one literal, an alternation one per branch."""
    try:
        parsed = _parse(pattern)
        if parsed.state.flags & re.IGNORECASE:
            return None
        return _best(_candidates(parsed.state, list(parsed)))
    except Exception:  # an unusual parse tree: no prefilter rather than a wrong one
        return None


def required_literal(pattern: str) -> str | None:
    """The longest run of plain characters every match of `pattern` contains, or None when
    there is none or it cannot be told (alternation at the top level, ignoring case)."""
    try:
        parsed = _parse(pattern)
        items = list(parsed)
        if parsed.state.flags & re.IGNORECASE or (
                len(items) == 1 and items[0][0] is _parser.BRANCH):
            return None
        runs = [c[0][0] for c in _candidates(parsed.state, items) if len(c) == 1]
    except Exception:
        return None
    return max(runs, key=len, default=None)


@dataclass(frozen=True)
class Re2Forms:
    """A ruleset pattern on RE2 (see rulesmon/regex.py), for a chunk of valid UTF-8 bytes:
    `line` finds what the pattern finds in one line (with its groups), `count` the same without
    groups, `run` (anchored at a line start) a whole run of consecutive matching lines, each
    with its "\\n". None of them matches "\\n" inside a line; `^`/`$`/`\\A`/`\\Z` anchor at
    line ends. A chunk is counted with `count` finding the next matching line (RE2 skips ahead
    fast to a literal) and `run` taking the lines after it that match too: two RE2 calls per
    run of matching lines, not one per line (a call costs ~1 µs through the Python binding).
    `literals`: UTF-8 literals of which every match holds one (empty: none known), so a
    pattern that matches most lines is counted on just the lines holding one, gathered into
    one buffer where they form a few long runs (`Chunk._by_literals`); where they are rare,
    only their lines are searched. `lead`: the literal every match starts with (b"": none), and
    `tails` the `re` search for it and the rest of its line (a literal then `[^\\n]*\\n`: linear),
    which gathers a line's part from that literal on, all a match can see, without
    splitting the chunk in Python (`Chunk._by_lead`). `trail` and `heads`: the same for the
    literal every match ends with, on the reversed chunk (each line's part up to it)."""

    line: Any
    count: Any
    run: Any
    literals: tuple[bytes, ...] = ()
    lead: bytes = b""
    tails: Any = None
    trail: bytes = b""
    heads: Any = None
    source: str = ""  #: the pattern as written (Python syntax)

    def runs(self, buf: bytes, limit: int | None = None) -> tuple[int, list[tuple[int, int]],
                                                                   int]:
        """The matching lines counted, the (start, end) of each run of them, and where the
        search stopped: the end of the chunk, or earlier after `limit` runs."""
        out: list[tuple[int, int]] = []
        total, pos, end = 0, 0, len(buf)
        find, rfind, lines = buf.find, buf.rfind, buf.count
        first = regex.first_span(self.count)
        extend = regex.first_span(self.run, anchored=True)
        while pos < end:
            if limit is not None and len(out) >= limit:
                return total, out, pos
            s, e = first(buf, pos, end)
            if s < 0:
                break
            start = rfind(b"\n", 0, s) + 1
            after = find(b"\n", e) + 1  # the end of the matching line
            if after <= 0:
                break
            more = extend(buf, after, end)[1]
            after = max(after, more)
            out.append((start, after))
            total += lines(b"\n", start, after)
            pos = after
        return total, out, end


@dataclass(frozen=True)
class Matcher:
    """One pattern: `rx` as written (for one line), and its forms for whole chunks of lines:
    `text` for decoded text (None: lines are searched one by one), `exact` for UTF-8 bytes of
    any content, `ascii` for ASCII-only bytes (None where the result could differ).

    `engine`: "re" for builtin presets (package code, on the forms above), "re2" for ruleset
    patterns RE2 runs (`exact` and `ascii` are Re2Forms, `rx` the RE2 line regex), "re-sandbox"
    for the few RE2 cannot run (`rx` a SandboxRegex; lines are searched in the helper process
    with a time bound per line)."""

    name: str
    rx: Any
    text: Forms | None
    exact: Forms | Re2Forms | None
    ascii: Forms | Re2Forms | None
    severity: str = "error"
    engine: str = "re"


@lru_cache(maxsize=1024)
def compile_forms(pattern: str) -> tuple[re.Pattern[str], Forms | None, Forms | None,
                                         Forms | None]:
    """`rx` and the text, exact and ascii forms of `pattern` (see Matcher)."""
    rx = re.compile(pattern)
    out: list[Forms | None] = []
    try:
        parsed = _parse(pattern)
        sets = _anchor_sets(parsed)
    except Exception:
        return rx, None, None, None
    for mode in ("text", "exact", "ascii"):
        try:
            out.append(_forms(_parse(pattern), mode, sets))
        except _Unsupported:
            out.append(None)
        except Exception:  # a parse tree this module does not know: line by line
            log.debug("no chunk forms for %r", pattern, exc_info=True)
            out.append(None)
    text, exact, ascii_ = out
    if text is None:
        exact = ascii_ = None
    return rx, text, exact, ascii_


@dataclass(frozen=True)
class Patterns:
    """Compiled extractors and error patterns of one log."""

    extract: tuple[Matcher, ...]
    errors: tuple[Matcher, ...]
    bars: frozenset[str] = frozenset()  #: extractors that read progress bars


def _leading_literal(pattern: str, last: bool = False) -> bytes:
    """The run of plain characters (UTF-8) every match of `pattern` starts with (`last`: ends
    with), nothing (no assertion) before (after) it; b"" when there is none or case is
    ignored."""
    try:
        parsed = _parse(pattern)
        if parsed.state.flags & re.IGNORECASE:
            return b""
        flat: list[Any] = []
        _flatten(list(parsed), flat)
    except Exception:  # an unusual parse tree: no shortcut rather than a wrong one
        return b""
    chars: list[str] = []
    for op, av in reversed(flat) if last else flat:
        if op is not _P.LITERAL or av == _NL:
            break
        chars.append(chr(av))
    return "".join(reversed(chars) if last else chars).encode()


@lru_cache(maxsize=1024)
def compile_ruleset(pattern: str) -> tuple[Any, None, Re2Forms | None, Re2Forms | None, str]:
    """`rx`, no text forms, the exact and ascii forms and the engine of a pattern that comes
    from a ruleset: RE2 when it can run it, else the time-bounded `re` helper (see Matcher)."""
    try:
        line = regex.compile_re2(pattern, line=True)
        sets = _anchor_sets(_parse(pattern))
        literals = tuple(lit.encode() for lit in sets[0]) \
            if sets and len(sets[0]) <= MAX_LITERALS else ()
        lead = _leading_literal(pattern)
        tails = re.compile(re.escape(lead) + rb"[^\n]*\n") if lead else None
        trail = b"" if lead else _leading_literal(pattern, last=True)
        heads = re.compile(re.escape(trail[::-1]) + rb"[^\n]*\n") if trail else None
        forms = Re2Forms(line, regex.compile_re2(pattern, line=True, count=True),
                         regex.compile_runs(pattern), literals, lead, tails, trail, heads,
                         pattern)
    except regex.Unsupported:
        return regex.SandboxRegex(pattern), None, None, None, regex.ENGINE_SANDBOX
    return line, None, forms, forms, regex.ENGINE_RE2


def _ruleset_matcher(name: str, pattern: str, severity: str = "error") -> Matcher:
    rx, text, exact, ascii_, engine = compile_ruleset(pattern)
    return Matcher(name, rx, text, exact, ascii_, severity=severity, engine=engine)


def patterns_for(spec: LogSpec) -> Patterns:
    presets = [PRESETS[p] for p in spec.preset_list if p in PRESETS]
    extract: dict[str, str] = {}
    for preset in presets:
        extract.update(preset.extract)
    extract.update(spec.extract)  # the log's own extractor wins on a name clash
    errors: dict[str, tuple[str, str]] = {}
    for preset in presets:
        errors.update({k: (e.pattern, e.severity) for k, e in preset.errors.items()})
    errors.update({k: (e.pattern, e.severity) for k, e in spec.errors.items()})
    # the log's own patterns come from the ruleset: RE2 (or the bounded fallback); a preset's
    # are package code, on CPython's `re` forms (faster there; see benchmarks/logs_scan.py)
    ex = tuple(_ruleset_matcher(name, p) if name in spec.extract
               else Matcher(name, *compile_forms(p)) for name, p in extract.items())
    er = tuple(_ruleset_matcher(name, p, sev) if name in spec.errors
               else Matcher(name, *compile_forms(p), severity=sev)
               for name, (p, sev) in errors.items())
    bars = frozenset(b for preset in presets for b in preset.bars if b not in spec.extract)
    return Patterns(ex, er, bars)


def typed(value: str) -> int | float | str:
    """A captured value as a number when it is one: `12` → 12, `5.036` / `'5.036'` → 5.036,
    `nan.0` (Lightning) → nan, `-inf.0` → -inf; anything else stays a string."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    if _INT.fullmatch(text):
        return int(text)
    special = _SPECIAL.fullmatch(text)
    if special:
        number = math.nan if special.group(2).lower() == "nan" else math.inf
        return -number if special.group(1) == "-" else number
    if _FLOAT.fullmatch(text):
        return float(text)
    return value


def main_bar(chunk: Chunk, m: Matcher, found: Found,
             follower: BarFollower) -> dict[str, tuple[int, Value]]:
    """The values of the last draw of the file's main progress bar in a chunk (see
    `BarFollower`), each with the start of its line; {} when the chunk has none. The draws
    are walked back from the end to the last one of the main bar so far (usually the last
    line: one draw looked at), at most BAR_DRAWS of them (the first chunk of a long log, or
    one where the main bar changed), then offered to the follower in order from there."""
    draws: list[tuple[int, tuple[str, str], float | None, dict[str, Any]]] = []
    for start, end in islice(chunk.lines_back(m, found), BAR_DRAWS):
        hit = chunk.search(m, start, end)
        if hit is None:  # cannot happen: the line matched
            continue
        groups = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                  for k, v in hit.groupdict().items() if v is not None}
        groups.setdefault("_desc", chunk.text(start, hit.start()))  # `Epoch 3: ` of its line
        family, elapsed, values = bar_values(groups)
        draws.append((start, family, elapsed, values))
        if follower.is_main(family):
            break
    chosen: tuple[int, dict[str, Any]] | None = None
    for start, family, elapsed, values in reversed(draws):
        if follower.offer(family, elapsed):
            chosen = (start, values)
    if chosen is None:
        return {}
    start, values = chosen
    return {group: (start, typed(v) if isinstance(v, str) else v) for group, v in values.items()}


# --- state ---------------------------------------------------------------------------------------


@dataclass
class Hits:
    count: int = 0
    first_seen: float | None = None
    last_seen: float | None = None

    def add(self, n: int, now: float) -> None:
        self.count += n
        if self.first_seen is None:
            self.first_seen = now
        self.last_seen = now


@dataclass
class ErrorHits(Hits):
    severity: str = "error"
    lines: deque[tuple[Key, str]] = field(default_factory=lambda: deque(maxlen=ERROR_LINES))


@dataclass
class LogState:
    """One `logs:` entry of one instance: its files and what was matched in them."""

    spec: LogSpec
    patterns: Patterns
    tail_n: int
    tailers: dict[str, Tailer] = field(default_factory=dict)
    resume: Positions = field(default_factory=Positions)
    extract: dict[str, Hits] = field(default_factory=dict)
    errors: dict[str, ErrorHits] = field(default_factory=dict)
    values: dict[str, tuple[Key, Value]] = field(default_factory=dict)
    #: the last value of each group in each file followed (by its key in `tailers`), for
    #: log.sum.<group>; an entry goes with its tailer
    file_values: dict[str, dict[str, Value]] = field(default_factory=dict)
    #: the main progress bar of each file, by (key in `tailers`, bar extractor)
    bars: dict[tuple[str, str], BarFollower] = field(default_factory=dict)
    tail: deque[tuple[Key, str]] = field(default_factory=deque)
    readable: list[Tailer] = field(default_factory=list)  # files read fine this tick
    problems: list[str] = field(default_factory=list)  # why files gave nothing this tick
    stopped: set[str] = field(default_factory=set)  #: patterns stopped at their time bound

    def __post_init__(self) -> None:
        self.tail = deque(maxlen=self.tail_n)
        self.extract = {m.name: Hits() for m in self.patterns.extract}
        self.errors = {m.name: ErrorHits(severity=m.severity) for m in self.patterns.errors}

    def close(self) -> None:
        for t in self.tailers.values():
            t.close()
        self.tailers.clear()


@dataclass
class InstanceState:
    logs: dict[int, LogState] = field(default_factory=dict)
    seq: int = 0
    seen: float = 0.0

    def close(self) -> None:
        for s in self.logs.values():
            s.close()


_SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2, "critical": 3}


# --- the probe -----------------------------------------------------------------------------------


class LogsProbe:
    """Follows the logs of every job instance; see the module docstring."""

    name = "logs"

    def __init__(self, ruleset: Ruleset, base_dir: Path | str) -> None:
        self.ruleset = ruleset
        self.base_dir = Path(base_dir)
        #: Why a log gave no facts this tick, by path (or path template).
        self.errors: dict[str, str] = {}
        #: The errors already logged as warnings: each is logged once, when it appears.
        self._warned: dict[str, str] = {}
        self._instances: dict[str, InstanceState] = {}
        self._lock = threading.Lock()

    def start(self, ctx: TickContext) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            for state in self._instances.values():
                state.close()
            self._instances.clear()

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        with self._lock:
            self.errors = {}
            out: dict[str, Facts] = {}
            ruleset = ctx.ruleset or self.ruleset
            # a job without a source (only logs and files) is one instance, made here too
            own = sourceless_instances(ruleset, ctx.instances)
            for key, facts in chain(ctx.instances.items(), own.items()):
                job_key = facts.get("job.key")
                job = ruleset.jobs.get(job_key) if isinstance(job_key, str) else None
                if job is None or not job.logs:
                    continue
                state = self._instances.get(key)
                if state is None:
                    state = self._instances[key] = InstanceState()
                state.seen = ctx.now
                try:
                    result = self._collect_instance(ctx, ruleset, job, facts, state)
                except Exception as exc:  # a bug must not stop the other instances
                    log.exception("logs probe failed for %s", key)
                    self.errors[key] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    continue
                if key in own:
                    result = {**own[key], **result}
                if result:
                    out[key] = result
            for key in [k for k, s in self._instances.items()
                        if k not in ctx.instances and k not in own
                        and ctx.now - s.seen > FORGET_AFTER]:
                self._instances.pop(key).close()
            self._warn()
            return out

    def _warn(self) -> None:
        """One warning per log error when it appears or changes, not one every tick; past
        WARN_LINES new ones in a tick (thousands of jobs not started yet), one line says how
        many more."""
        fresh = [(p, e) for p, e in self.errors.items() if self._warned.get(p) != e]
        for path, error in fresh[:WARN_LINES]:
            log.warning("log_unreadable path=%s error=%s", path, error)
        if len(fresh) > WARN_LINES:
            log.warning("log_unreadable more=%d (logs that cannot be read; see log.error)",
                        len(fresh) - WARN_LINES)
        back = [p for p in self._warned if p not in self.errors]
        for path in back[:WARN_LINES]:
            log.info("log_readable path=%s", path)
        self._warned = dict(self.errors)

    # --- per instance --------------------------------------------------------------------------

    def _collect_instance(self, ctx: TickContext, ruleset: Ruleset, job: Job,
                          facts: Mapping[str, Any], state: InstanceState) -> Facts:
        base = job_base(job, ctx.base_dir)
        context = render_context(facts)
        for index in [i for i in state.logs if i >= len(job.logs)]:  # the ruleset changed
            state.logs.pop(index).close()
        for index, spec in enumerate(job.logs):
            ls = state.logs.get(index)
            tail_n = spec.tail if spec.tail is not None else ruleset.defaults.tail
            if ls is None or ls.spec != spec or ls.tail_n != tail_n:  # new, or a changed ruleset
                if ls is not None:
                    ls.close()
                ls = state.logs[index] = LogState(spec, patterns_for(spec), tail_n)
            ls.readable = []
            ls.problems = []
            template = expand_slurm(spec.path, facts) if job.slurm is not None else spec.path
            try:
                path = render_optional_path(template, context, base)
            except Exception as exc:
                reason = (f"cannot render {spec.path!r}: "
                          f"{type(exc).__name__}: {exc}").splitlines()[0]
                self.errors[spec.path] = reason
                ls.problems.append(reason)
                continue
            if path is None:  # the template rendered empty: nothing to follow, no error
                continue
            # once the job has ended, its logs' last partial lines are complete
            self._follow(ctx, state, ls, path, ended=facts.get("job.terminal") is True)
        facts = merge(ctx.now, [s for s in state.logs.values() if s.readable])
        problems = list(dict.fromkeys(p for s in state.logs.values() for p in s.problems))
        facts["log.available"] = any(s.readable for s in state.logs.values())
        if problems:
            facts["log.error"] = "; ".join(problems)[:1000]
        return facts

    def _follow(self, ctx: TickContext, state: InstanceState, ls: LogState, path: Path,
                *, ended: bool = False) -> None:
        text = str(path)
        if _GLOB.search(text):
            held = {i for t in ls.tailers.values() for i in t.held()}
            wanted: list[str] = []
            # Path.glob takes no absolute pattern, and the pattern may have globs in folders
            for match in sorted(globmod.glob(text)):  # noqa: PTH207
                if match in ls.tailers:
                    wanted.append(match)
                    continue
                try:
                    st = Path(match).stat()
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in held:
                    continue  # a folder, or a file already followed under another name
                wanted.append(match)
            if not wanted and not ls.tailers:
                self.errors[text] = f"no file matches {text}"
                ls.problems.append(self.errors[text])
        else:
            wanted = [text]
        for name in wanted:
            if name not in ls.tailers:
                ls.tailers[name] = Tailer(name, resume=ls.resume)
        keep = set(wanted)  # a glob may match thousands: no list search per tailer
        for name in list(ls.tailers):
            tailer = ls.tailers[name]
            self._read(ctx, state, ls, name, tailer, ended)
            ls.resume.update(tailer.positions())
            if name not in keep:
                if tailer.error is None or not tailer.held():
                    # no longer wanted (the path changed) or gone and drained to its end
                    tailer.close()
                    del ls.tailers[name]
                    ls.file_values.pop(name, None)  # it adds nothing to the sums any more
                    for bar in [b for b in ls.bars if b[0] == name]:
                        del ls.bars[bar]
                continue
            if tailer.error is None:
                ls.readable.append(tailer)
            else:
                self.errors[name] = tailer.error
                ls.problems.append(tailer.error)

    def _read(self, ctx: TickContext, state: InstanceState, ls: LogState, name: str,
              tailer: Tailer, ended: bool = False) -> None:
        now = ctx.now
        patterns = ls.patterns
        matchers = (*patterns.extract, *patterns.errors)
        own = ls.file_values.get(name)
        if own is None:
            own = ls.file_values[name] = {}
        # a redraw pending at the end of a log quiet for a tick is read without a second tick
        quiet = float((ctx.ruleset or self.ruleset).every)
        for data in tailer.chunks(ended=ended, quiet=quiet, now=now):
            mtime = tailer.mtime or 0.0
            seq0 = state.seq
            chunk = Chunk(data, matchers)
            state.seq = seq0 + len(chunk.buf) + 1  # a line's key: seq0 + its offset in the chunk
            own_keys: dict[str, int] = {}
            for m in patterns.extract:
                found = self._find(ls, chunk, m)
                if found is None:
                    continue
                if not found.count:
                    continue
                ls.extract[m.name].add(found.count, now)
                if m.name in patterns.bars:
                    follower = ls.bars.setdefault((name, m.name), BarFollower())
                    picked = main_bar(chunk, m, found, follower)
                else:
                    picked = {group: (start, typed(text))  # once here, not in every merge
                              for group, (start, text) in chunk.last_values(m, found).items()}
                for group, (start, value) in picked.items():
                    key = (now, mtime, seq0 + start)
                    if group not in ls.values or key >= ls.values[group][0]:
                        ls.values[group] = (key, value)
                    # within one file, later extractors' values of a group win, as above
                    prev = own_keys.get(group)
                    if prev is None or start >= prev:
                        own_keys[group] = start
                        own[group] = value
            for m in patterns.errors:
                found = self._find(ls, chunk, m)
                if found is None or not found.count:
                    continue
                err = ls.errors[m.name]
                err.add(found.count, now)
                err.lines.extend(((now, mtime, seq0 + start), line)
                                 for start, line in chunk.last_lines(m, found, ERROR_LINES))
            if ls.tail_n:
                ls.tail.extend(((now, mtime, seq0 + start), line)
                               for start, line in chunk.tail(ls.tail_n))

    def _find(self, ls: LogState, chunk: Chunk, m: Matcher) -> Found | None:
        """`chunk.find(m)`, or None once the pattern has been stopped: a pattern on the `re`
        fallback that overran its time on a line gives no facts from then on (unknown, not a
        count that misses lines), and one warning."""
        try:
            return chunk.find(m)
        except regex.RegexTimeout as exc:
            if m.name not in ls.stopped:
                ls.stopped.add(m.name)
                ls.extract.pop(m.name, None)
                ls.errors.pop(m.name, None)
                log.warning("log pattern %s: %s", m.name, exc)
            return None


# --- scanning a chunk ----------------------------------------------------------------------------

NEAR_END = 8 << 10  #: bytes searched first, from the end, for the last matching lines
_INK_TEXT = re.compile(r"[^ \t\n\x0b\x0c]")  #: a character that makes a line not blank
_INK_BYTES = re.compile(rb"[^ \t\n\x0b\x0c]")
DENSE = 256  #: anchors more often than once in DENSE bytes: count with a whole-chunk search
DENSE_RUNS = 64  #: RE2 patterns with more runs of matching lines than this (or one per
DENSE_BYTES = 16 << 10  #: ...DENSE_BYTES of the chunk) are searched together, line by line
MAX_LITERALS = 8  #: an RE2 pattern's literals (see Re2Forms) used to gather its lines, at most
RUN_BYTES = 768  #: ...or, for one with literals, one per RUN_BYTES (runs cost less than
#: gathering its lines, `Chunk._by_literals`, up to about that many)
UNSET_AFTER = 4  #: matching lines walked for last values before unset groups are looked for
SPARSE_LITERALS = 3  #: ...for an RE2 pattern with this many literals at most (each is a pass)
SPARSE_RE2 = 2048  #: RE2 patterns whose literals occur at most once in this many bytes (or
SPARSE_MIN = 64  #: ...this many times): only the lines holding one are searched


def _prefix_lines(buf: bytes, runs: list[tuple[int, int]], stop: int) -> list[int]:
    """The starts of the lines in `runs` (which end at or before `stop`)."""
    out: list[int] = []
    for first, after in runs:
        pos = first
        while pos < after:
            out.append(pos)
            pos = buf.find(b"\n", pos) + 1
    return [s for s in out if s < stop]
MIN_ANCHORS = 64  #: ...but never fewer than this many
SAMPLE = 16 << 10  #: bytes sampled to choose an anchor set
RARE = 4096  #: anchors rarer than once in RARE bytes (and LONG) are found even with a fast form
LONG = 8  #: ...when every literal of the set is this long


@dataclass(frozen=True)
class Found:
    """How many lines of a chunk a pattern matches, and how to find them again: `starts`
    (ascending) when they are known, else the form that counted them."""

    count: int
    how: str  # "starts", "forward", "backward", "full", "runs" or "literals"
    starts: list[int] | None = None
    runs: list[tuple[int, int]] | None = None  #: runs of matching lines (start, end), for RE2


@lru_cache(maxsize=1024)
def _finder(literal: str | bytes) -> Callable[[Any, int], int]:
    """`find(text, pos)` for one literal: `str.find`/`bytes.find` for a long one; for a short
    one CPython's `re` literal search, which is faster there."""
    if len(literal) >= LONG:
        return lambda text, pos: text.find(literal, pos)
    search = re.compile(re.escape(literal)).search  # type: ignore[type-var]

    def find(text: Any, pos: int) -> int:
        found = search(text, pos)
        return -1 if found is None else found.start()

    return find


class Chunk:
    """Complete lines, each ended by "\\n", searched pattern by pattern in the form that suits
    the pattern and the text: undecoded bytes when every pattern has a bytes form for them
    (see the patterns section), else the decoded text. Positions are offsets in that text."""

    def __init__(self, data: bytes, matchers: Iterable[Matcher],
                 mode: str | None = None) -> None:
        """`mode` ("text", "exact", "ascii") forces the kind of text, for tests."""
        ms = [m for m in matchers if m.engine != regex.ENGINE_SANDBOX]  # those read lines
        if mode is None:
            mode = ("ascii" if data.isascii() and all(m.ascii for m in ms)
                    else "exact" if all(m.exact for m in ms) else "text")
        if mode == "exact" and any(m.engine == regex.ENGINE_RE2 for m in ms):
            try:
                data.decode()
            except UnicodeDecodeError:  # RE2 reads UTF-8: what the decoded text is, as bytes
                data = data.decode("utf-8", "replace").encode()
        self.mode = mode
        self._sandboxed: dict[str, dict[int, regex.SandboxMatch]] = {}
        self._re2 = [m for m in ms if m.engine == regex.ENGINE_RE2]
        self._re2_found: dict[int, Found] | None = None
        self.buf: Any = data.decode("utf-8", "replace") if mode == "text" else data
        self.nl: Any = "\n" if mode == "text" else b"\n"
        self._reversed: Any = None
        self._split: tuple[list[str], list[int]] | None = None
        self._split_bytes: list[bytes] | None = None

    def forms(self, m: Matcher) -> Forms | Re2Forms | None:
        return m.ascii if self.mode == "ascii" else m.exact if self.mode == "exact" else m.text

    def text(self, start: int, end: int) -> str:
        piece = self.buf[start:end]
        return piece.decode("utf-8", "replace") if isinstance(piece, bytes) else piece

    def reversed(self) -> Any:
        """The chunk reversed, each reversed line still ended by "\\n"."""
        if self._reversed is None:
            self._reversed = self.buf[-2::-1] + self.nl
        return self._reversed

    # --- counting ---

    def find(self, m: Matcher) -> Found:
        """The lines `m.rx.search(line)` matches: their number, and how to list them."""
        forms = self.forms(m)
        buf = self.buf
        if isinstance(forms, Re2Forms):
            if self._re2_found is None:
                self._re2_found = self._find_re2()
            found = self._re2_found.get(id(m))
            if found is None:  # a matcher the chunk was not made with
                count, runs, _ = forms.runs(buf)
                found = Found(count, "runs", runs=runs)
            return found
        if m.engine == regex.ENGINE_SANDBOX:  # in the helper process, each line time-bounded
            lines, starts = self._lines()
            matched = {starts[i]: regex.SandboxMatch(span, groups)
                       for i, span, groups in m.rx.search_lines(lines)}
            self._sandboxed[m.name] = matched
            return Found(len(matched), "starts", sorted(matched))
        if forms is None:  # a pattern without chunk forms: line by line
            lines, starts = self._lines()
            search = m.rx.search
            hits = [starts[i] for i, line in enumerate(lines) if search(line) is not None]
            return Found(len(hits), "starts", hits)
        if forms.anchors:
            index, estimate = self._sparsest(forms)
            cap = max(MIN_ANCHORS, len(buf) // DENSE)
            literals = forms.anchors[index]
            if estimate <= cap and ((forms.forward is None and forms.backward is None) or (
                    estimate * RARE <= len(buf) and min(map(len, literals)) >= LONG)):
                known = self._by_anchors(forms.line, literals, cap)
                if known is not None:
                    return Found(len(known), "starts", known)
        if forms.forward is not None:
            return Found(len(forms.forward.findall(buf)), "forward")
        if forms.backward is not None:
            return Found(len(forms.backward.findall(self.reversed())), "backward")
        return Found(len(forms.full.findall(buf)), "full")

    def _find_re2(self) -> dict[int, Found]:
        """Every RE2 pattern of the chunk counted at once, each in as few RE2 calls as its
        shape allows: one whose matches start (end) with a literal on each line's part from
        (up to) it, gathered into one buffer (`_by_lead`); one with a few rare literals on the
        lines holding them (`_re2_by_anchors`); else by runs of matching lines
        (`Re2Forms.runs`) until it has DENSE_RUNS runs (one per RUN_BYTES for one with
        literals, which is then counted on the lines holding them, `_by_literals`); patterns
        without literals that match that densely (two or more) are then found together, one
        RE2 Set search per line, which costs less than two calls per run each. The Set's
        answer is checked against the runs already found (a Set that ran out of memory would
        report too few lines): on any difference each pattern is counted by runs to the
        end."""
        buf = self.buf
        out: dict[int, Found] = {}
        dense: list[tuple[Matcher, Re2Forms, int, list[tuple[int, int]]]] = []
        limit = max(DENSE_RUNS, len(buf) // DENSE_BYTES)
        long_runs = max(DENSE_RUNS, len(buf) // RUN_BYTES)
        cap = max(SPARSE_MIN, len(buf) // SPARSE_RE2)
        for m in self._re2:
            forms = self.forms(m)
            assert isinstance(forms, Re2Forms)
            if forms.tails is not None or forms.heads is not None:
                out[id(m)] = Found(self._by_lead(forms), "literals")
                continue
            sample = min(len(buf), SAMPLE)
            if 0 < len(forms.literals) <= SPARSE_LITERALS and sample and sum(
                    buf.count(lit, 0, sample) for lit in forms.literals
            ) * len(buf) // sample <= cap:
                hits = self._re2_by_anchors(forms, 4 * cap)
                if hits is not None:
                    out[id(m)] = Found(len(hits), "starts", hits)
                    continue
            count, runs, stop = forms.runs(buf, long_runs if forms.literals else limit)
            if stop >= len(buf):
                out[id(m)] = Found(count, "runs", runs=runs)
            else:
                dense.append((m, forms, stop, runs))
        gathered = [d for d in dense if d[1].literals]
        for m, forms, _, _ in gathered:
            out[id(m)] = Found(self._by_literals(forms), "literals")
        dense = [d for d in dense if not d[1].literals]
        if len(dense) >= 2:
            starts = self._by_set([m for m, *_ in dense])
            if starts is not None and all(
                    _prefix_lines(buf, runs, stop) == [s for s in found if s < stop]
                    for (_, _, stop, runs), found in zip(dense, starts, strict=True)):
                for (m, *_), found in zip(dense, starts, strict=True):
                    out[id(m)] = Found(len(found), "starts", found)
                return out
        for m, forms, _, _ in dense:
            count, runs, _ = forms.runs(buf)
            out[id(m)] = Found(count, "runs", runs=runs)
        return out

    def _re2_by_anchors(self, forms: Re2Forms, cap: int) -> list[int] | None:
        """The starts of the lines an RE2 pattern matches, among the few holding one of its
        literals, each searched in place; None after more than `cap` of them."""
        buf = self.buf
        first = regex.first_span(forms.count)
        lines: dict[int, bool] = {}
        for literal in forms.literals:
            pos = buf.find(literal)
            while pos >= 0:
                if len(lines) > cap:
                    return None
                start = buf.rfind(b"\n", 0, pos) + 1
                end = buf.find(b"\n", pos)
                if start not in lines:
                    lines[start] = first(buf, start, end)[0] >= 0
                pos = buf.find(literal, end + 1)
        return sorted(start for start, hit in lines.items() if hit)

    def _by_lead(self, forms: Re2Forms) -> int:
        """The lines an RE2 pattern whose matches start with a literal (`Re2Forms.lead`)
        matches, counted on each line's part from that literal on (all a match can see),
        gathered by one `re` search into one buffer: a few long runs of matching parts, one
        RE2 call each. With `trail`: each line's part up to the literal's last occurrence,
        gathered from the reversed chunk."""
        if forms.tails is not None:
            parts = forms.tails.findall(self.buf)
            return forms.runs(b"".join(parts))[0] if parts else 0
        parts = forms.heads.findall(self.reversed())
        if not parts:
            return 0
        return forms.runs(b"".join(parts)[-2::-1] + b"\n")[0]

    def _by_literals(self, forms: Re2Forms) -> int:
        """The lines an RE2 pattern matches, counted on the lines that hold one of its
        literals (a match holds one), gathered into one buffer, in any order: where most of
        them match they form a few long runs, one RE2 call each (`Re2Forms.runs`), instead of
        a call or two per line of the chunk."""
        if self._split_bytes is None:
            self._split_bytes = self.buf.split(b"\n")
            self._split_bytes.pop()
        rest = self._split_bytes
        held: list[bytes] = []
        for i, literal in enumerate(forms.literals):
            held += [line for line in rest if literal in line]
            if i + 1 < len(forms.literals):
                rest = [line for line in rest if literal not in line]
        if not held:
            return 0
        held.append(b"")
        return forms.runs(b"\n".join(held))[0]

    def _by_set(self, ms: list[Matcher]) -> list[list[int]] | None:
        """The starts of the lines each pattern matches, by one RE2 Set search per line."""
        match = regex.line_set(tuple(m.rx.pattern for m in ms))
        if match is None:
            return None
        starts: list[list[int]] = [[] for _ in ms]
        pos = 0
        for line in self.buf.split(b"\n")[:-1]:
            hits = match(line)
            if hits:
                for i in hits:
                    starts[i].append(pos)
            pos += len(line) + 1
        return starts

    def _sparsest(self, forms: Forms) -> tuple[int, int]:
        """The anchor set with the fewest occurrences in a sample of the chunk (its start),
        and its estimated occurrences in the whole chunk."""
        buf = self.buf
        end = min(len(buf), SAMPLE)
        counts = [sum(buf.count(lit, 0, end) for lit in literals) for literals in forms.anchors]
        index = min(range(len(counts)), key=counts.__getitem__)
        return index, counts[index] * len(buf) // max(1, end)

    def _by_anchors(self, line: re.Pattern[Any], literals: tuple[Any, ...],
                    cap: int) -> list[int] | None:
        """The starts of the matching lines, found through the occurrences of `literals`,
        each line searched in place; None after more than `cap` occurrences."""
        buf, nl = self.buf, self.nl
        search = line.search
        lines: dict[int, bool] = {}
        seen = 0
        for literal in literals:
            find = _finder(literal)
            pos = find(buf, 0)
            while pos >= 0:
                seen += 1
                if seen > cap:
                    return None
                start = buf.rfind(nl, 0, pos) + 1
                end = buf.find(nl, pos)
                if start not in lines:
                    lines[start] = search(buf, start, end) is not None
                pos = find(buf, end + 1)  # the next line: one look per line
        return sorted(start for start, hit in lines.items() if hit)

    def _lines(self) -> tuple[list[str], list[int]]:
        """The decoded lines and where each starts in `buf`."""
        if self._split is None:
            lines = self.text(0, len(self.buf)).split("\n")
            lines.pop()
            if isinstance(self.buf, bytes):  # undecodable bytes change length: count bytes
                sizes = [len(raw) + 1 for raw in self.buf.split(b"\n")[:-1]]
            else:
                sizes = [len(line) + 1 for line in lines]
            self._split = lines, list(accumulate(sizes, initial=0))[:-1]
        return self._split

    # --- the matching lines, from the last ---

    def _literal_lines(self, forms: Re2Forms, verify: bool) -> Iterator[tuple[int, int]]:
        """(start, end) of each line holding one of the literals of an RE2 pattern (a match
        holds one), the last first; `verify`: only those it matches."""
        buf = self.buf
        first = regex.first_span(forms.count)
        # each literal's last occurrence before the lines already walked: each is searched
        # for again only once the walk has passed it, so the walk stays linear
        last = {literal: buf.rfind(literal) for literal in
                forms.literals or (forms.lead or forms.trail,)}
        while True:
            at = max(last.values())
            if at < 0:
                return
            start = buf.rfind(b"\n", 0, at) + 1
            end = buf.find(b"\n", at)
            if not verify or first(buf, start, end)[0] >= 0:
                yield start, end
            for literal, i in last.items():
                if i >= start:
                    last[literal] = buf.rfind(literal, 0, start)

    def lines_back(self, m: Matcher, found: Found) -> Iterator[tuple[int, int]]:
        """(start, end) of each line counted in `found`, the last first."""
        buf, nl = self.buf, self.nl
        if found.starts is not None:
            for start in reversed(found.starts):
                yield start, buf.find(nl, start)
            return
        if found.runs is not None:
            for first, after in reversed(found.runs):
                end = after - 1  # the last line's "\n"
                while end >= first:
                    i = buf.rfind(nl, first, end)
                    start = first if i < 0 else i + 1
                    yield start, end
                    end = start - 1
            return
        forms = self.forms(m)
        if found.how == "literals":
            assert isinstance(forms, Re2Forms)
            yield from self._literal_lines(forms, verify=True)
            return
        assert isinstance(forms, Forms)  # Re2Forms and the fallback give starts
        if found.how == "backward":
            assert forms.backward is not None
            size = len(buf)
            for hit in forms.backward.finditer(self.reversed()):
                start = size - hit.end()
                yield start, buf.find(nl, start)
            return
        rx = forms.forward if found.how == "forward" else forms.full
        assert rx is not None
        end, window = len(buf), NEAR_END
        while end > 0:
            start = buf.rfind(nl, 0, end - window) + 1 if end > window else 0
            ends = [hit.end() for hit in rx.finditer(buf, start, end)]
            for e in reversed(ends):
                yield buf.rfind(nl, 0, e - 1) + 1, e - 1
            end, window = start, window * 4

    def search(self, m: Matcher, start: int, end: int) -> Any:
        """`m.rx.search` of the line [start, end)."""
        if m.engine == regex.ENGINE_SANDBOX:
            return self._sandboxed.get(m.name, {}).get(start)
        forms = self.forms(m)
        if forms is None:
            return m.rx.search(self.text(start, end))
        return forms.line.search(self.buf, start, end)

    def last_values(self, m: Matcher, found: Found) -> dict[str, tuple[int, str]]:
        """The last non-None value of each named group among the matching lines, with the
        start of its line: the last match usually has them all; earlier lines are searched only
        for groups it left empty."""
        pending = set(m.rx.groupindex)
        out: dict[str, tuple[int, str]] = {}
        if not pending:
            return out
        forms = self.forms(m)
        if isinstance(forms, Re2Forms):  # group spans straight from RE2, no match objects
            index = dict(m.rx.groupindex)
            spans = regex.group_spans(forms.line)
            buf = self.buf
            lines = self._literal_lines(forms, verify=False) if found.how == "literals" \
                else self.lines_back(m, found)  # a line it does not match gives no spans
            seen = 0
            for start, end in lines:
                got = spans(buf, start, end)
                if got is None:
                    continue
                for group in list(pending):
                    a, b = got[index[group]]
                    if a >= 0:
                        pending.discard(group)
                        out[group] = (start, buf[a:b].decode("utf-8", "replace"))
                seen += 1
                if pending and seen == UNSET_AFTER and forms.source:
                    pending -= self._never_set(forms, pending)
                if not pending:
                    break
            return out
        for start, end in self.lines_back(m, found):
            hit = self.search(m, start, end)
            if hit is None:  # cannot happen: the line matched
                continue
            for group in list(pending):
                value = hit.group(group)
                if value is not None:
                    pending.discard(group)
                    out[group] = (start, value.decode("utf-8", "replace")
                                  if isinstance(value, bytes) else value)
            if not pending:
                break
        return out

    def _never_set(self, forms: Re2Forms, groups: set[str]) -> set[str]:
        """The groups no match of the pattern sets anywhere in the chunk: where the pattern
        with that group made to take part (`regex.compile_requiring`) finds nothing, one RE2
        search of the chunk; so a group one alternative never sets (tqdm's s/it beside its
        it/s) does not walk every matching line."""
        out: set[str] = set()
        for group in groups:
            try:
                rx = regex.compile_requiring(forms.source, group)
            except regex.Unsupported:
                continue
            if regex.first_span(rx)(self.buf, 0, len(self.buf))[0] < 0:
                out.add(group)
        return out

    def last_lines(self, m: Matcher, found: Found, n: int) -> list[tuple[int, str]]:
        """The last `n` matching lines, in order, each with its start."""
        out: list[tuple[int, str]] = []
        if n <= 0:
            return out
        for start, end in self.lines_back(m, found):
            out.append((start, self.text(start, end)))
            if len(out) >= n:
                break
        out.reverse()
        return out

    def tail(self, n: int) -> list[tuple[int, str]]:
        """The last `n` lines that are not blank, in order, each with its start. A blank
        line (nothing but spaces and tabs) is mostly what a cleared progress bar leaves; a run
        of them is stepped over with one search of the reversed chunk, not line by line."""
        buf, nl = self.buf, self.nl
        ink = _INK_TEXT if isinstance(buf, str) else _INK_BYTES
        out: list[tuple[int, str]] = []
        end = len(buf) - 1  # the final "\n"
        while len(out) < n and end >= 0:
            start = buf.rfind(nl, 0, end) + 1
            if ink.search(buf, start, end) is None:
                # the last character before this line that is not blank nor "\n": the
                # reversed chunk holds buf[i] at len(buf) - 2 - i
                hit = ink.search(self.reversed(), len(buf) - 1 - start)
                if hit is None:
                    break
                end = buf.find(nl, len(buf) - 2 - hit.start())
                continue
            out.append((start, self.text(start, end)))
            end = start - 1
        out.reverse()
        return out


# --- helpers -------------------------------------------------------------------------------------


def render_context(facts: Mapping[str, Any]) -> dict[str, Any]:
    """`{"job": {...nested job.* facts...}, "worker": index}` for path templates; `worker` is
    `*` when the instance is not a worker, so a per-worker path becomes a glob."""
    job: dict[str, Any] = {}
    for name, value in facts.items():
        if not name.startswith("job."):
            continue
        parts = name.split(".")[1:]
        node = job
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            last = parts[-1]
            if isinstance(node.get(last), dict) and isinstance(value, dict):
                node[last] = {**value, **node[last]}
            elif not isinstance(node.get(last), dict):
                node[last] = value
    worker = facts.get("worker.index")
    return {"job": job, "worker": "*" if worker is None else worker}


def expand_slurm(template: str, facts: Mapping[str, Any]) -> str:
    """sbatch filename placeholders: %j job id, %A array job id, %a array task, %x job name,
    %u user, %% a percent sign. One whose fact is unknown is left as it is."""
    if "%" not in template:
        return template
    values = {
        "j": facts.get("job.id"),
        "A": facts.get("job.array_id") or facts.get("job.id"),
        "a": facts.get("job.array_task"),
        "x": facts.get("job.name"),
        "u": facts.get("job.user"),
        "%": "%",
    }

    def sub(m: re.Match[str]) -> str:
        value = values.get(m.group(1))
        return m.group(0) if value is None else str(value)

    return _SLURM.sub(sub, template)


def merge(now: float, logs: list[LogState]) -> Facts:
    """The facts of one instance from the logs that could be read this tick."""
    if not logs:
        return {}
    newest = max((t for s in logs for t in s.readable), key=lambda t: t.mtime or 0.0)
    facts: Facts = {
        "log.path": str(newest.path),
        "log.size": newest.size,
        "log.mtime": newest.mtime,
        "log.age": max(0.0, now - (newest.mtime or now)),
    }
    tail_n = max(s.tail_n for s in logs)
    if len(logs) == 1:
        tail = [line for _, line in logs[0].tail]
    else:
        tail = [line for _, line in sorted((e for s in logs for e in s.tail),
                                           key=lambda e: e[0])]
    tail = tail[-tail_n:] if tail_n else []
    facts["log.tail"] = "\n".join(tail)
    facts["log.lines"] = tail

    values: dict[str, tuple[Key, Value]] = {}
    extract: dict[str, Hits] = {}
    errors: dict[str, ErrorHits] = {}
    for s in logs:
        for group, (key, value) in s.values.items():
            if group not in values or key >= values[group][0]:
                values[group] = (key, value)
        for name, h in s.extract.items():
            prev = extract.get(name)
            extract[name] = h if prev is None else _combine(prev, h)
        for name, e in s.errors.items():
            prev_e = errors.get(name)
            if prev_e is None:
                errors[name] = e
                continue
            c = _combine(prev_e, e)
            severity = max(prev_e.severity, e.severity, key=lambda v: _SEVERITY_ORDER.get(v, 2))
            lines = sorted([*prev_e.lines, *e.lines], key=lambda x: x[0])[-ERROR_LINES:]
            errors[name] = ErrorHits(c.count, c.first_seen, c.last_seen, severity,
                                     deque(lines, maxlen=ERROR_LINES))
    for group, (_, value) in values.items():
        facts[f"log.{group}"] = value
    for preset in dict.fromkeys(p for s in logs for p in s.spec.preset_list):
        derive = PRESETS[preset].derive if preset in PRESETS else None
        if derive is not None:  # facts computed from the others (Lightning's whole run)
            facts.update(derive(facts))
    sums: dict[str, int | float] = {}
    for s in logs:
        for per_file in s.file_values.values():
            for group, value in per_file.items():
                if not isinstance(value, str):
                    sums[group] = sums.get(group, 0) + value
    for group, total in sums.items():
        facts[f"log.sum.{group}"] = total
    facts["log.files"] = sum(len(s.readable) for s in logs)
    for name, h in extract.items():
        facts[f"log.extractors.{name}.count"] = h.count
        if h.first_seen is not None:
            facts[f"log.extractors.{name}.first_seen"] = h.first_seen
            facts[f"log.extractors.{name}.last_seen"] = h.last_seen
    total = 0
    for name, e in errors.items():
        total += e.count
        prefix = f"log.errors.{name}"
        facts[f"{prefix}.count"] = e.count
        facts[f"{prefix}.severity"] = e.severity
        facts[f"{prefix}.lines"] = [line for _, line in e.lines]
        if e.first_seen is not None:
            facts[f"{prefix}.first_seen"] = e.first_seen
            facts[f"{prefix}.last_seen"] = e.last_seen
        if e.lines:
            facts[f"{prefix}.last_line"] = e.lines[-1][1]
    facts["log.error_count"] = total
    return facts


def _combine(a: Hits, b: Hits) -> Hits:
    """Counts add; first_seen is the earliest, last_seen the latest."""
    firsts = [t for t in (a.first_seen, b.first_seen) if t is not None]
    lasts = [t for t in (a.last_seen, b.last_seen) if t is not None]
    return Hits(a.count + b.count, min(firsts) if firsts else None,
                max(lasts) if lasts else None)
