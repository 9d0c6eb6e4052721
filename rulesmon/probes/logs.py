"""`log.*` facts: follow each job instance's logs and match extractors and error patterns.

For every instance whose job declares `logs:`, each log path template is rendered with the
instance's `job.*` facts and `worker` (its worker index; `*` for an instance without one, so a
per-worker path follows every worker's log), SLURM's `%j %A %a %x %u` are expanded for SLURM
jobs, and a path with glob characters follows every matching file (new matches join later).
Each file is read incrementally by a `Tailer`; each new line is matched against the extractors
(presets first, then the log's own `extract:`) and the error patterns.

Every regex is compiled once. A pattern with a required literal (the longest run of plain
characters every match contains; for an alternation, one per branch) is only searched on lines
that contain one, starting just before it when the width of what precedes it is bounded; when
few lines of a batch contain it, those lines are found with `str.find` over the whole batch and
searched in place, so the others are never visited in Python.

When several logs or files feed one instance, counts add up and the last value of a group comes
from the most recently matching line (a later tick, then the more recently modified file, then
the later line). A log that cannot be read gives no facts; the reason is kept in `errors`, by
path. `collect` never raises for a bad log.
"""

from __future__ import annotations

import glob as globmod
import logging
import math
import re
import stat
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from re import _parser  # type: ignore[attr-defined]  # the parse tree, for prefilters
from typing import TYPE_CHECKING, Any

from .base import Facts, TickContext, job_base, render_path
from .log_presets import PRESETS
from .tail import FileId, Resume, Tailer

if TYPE_CHECKING:
    from ..config.models import Job, LogSpec, Ruleset

log = logging.getLogger(__name__)

SPARSE = 8  #: literal occurrences below 1 in SPARSE lines: visit only those lines
ERROR_LINES = 5  #: matching lines kept per error pattern (log.errors.<name>.lines)
FORGET_AFTER = 600.0  #: seconds an instance may be absent before its files are closed
_GLOB = re.compile(r"[*?[]")
_SLURM = re.compile(r"(?<!\{)%([jAaxu%])")
_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|infinity)",
                    re.IGNORECASE)
_SPECIAL = re.compile(r"([-+]?)(nan|inf)(?:\.0+)?", re.IGNORECASE)

Key = tuple[float, float, int]  # (tick time, file mtime, line sequence): later is more recent


# --- patterns ------------------------------------------------------------------------------------


_WIDE = 1 << 16  # a prefix this wide or more is treated as unbounded


def _parse(pattern: str) -> Any:
    return _parser.parse(pattern)


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


def _best(candidates: list[tuple[Anchor, ...]]) -> tuple[Anchor, ...] | None:
    """The most selective set: the one whose shortest literal is longest, fewer literals
    first."""
    if not candidates:
        return None
    return max(candidates, key=lambda c: (min(len(lit) for lit, _ in c), -len(c)))


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


def _line_bound(pattern: str) -> bool:
    """Whether searching a line in place inside a block of lines (`search(text, pos, endpos)`
    with re.MULTILINE) is the same as searching the line alone: not with a lookbehind (it
    would see the previous line) or `\\A`."""

    def unsafe(node: Any) -> bool:
        if isinstance(node, list | tuple | _parser.SubPattern):
            if isinstance(node, tuple) and len(node) == 2 and (
                    node[0] is _parser.ASSERT or node[0] is _parser.ASSERT_NOT) \
                    and node[1][0] < 0:
                return True  # a lookbehind
            if isinstance(node, tuple) and len(node) == 2 and node[0] is _parser.AT \
                    and node[1] is _parser.AT_BEGINNING_STRING:
                return True
            return any(unsafe(child) for child in node)
        return False

    try:
        return not unsafe(_parse(pattern))
    except Exception:
        return False


@dataclass(frozen=True)
class Matcher:
    """One compiled pattern: `rx` for a line alone, `block` (re.MULTILINE) for a line searched
    in place in a block of lines, the literals a match must contain, and whether the block
    search is exact for it."""

    name: str
    rx: re.Pattern[str]
    block: re.Pattern[str]
    anchors: tuple[Anchor, ...] | None
    in_place: bool
    severity: str = "error"

    @property
    def literals(self) -> tuple[str, ...]:
        return tuple(lit for lit, _ in self.anchors or ())


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> tuple[re.Pattern[str], re.Pattern[str],
                                    tuple[Anchor, ...] | None, bool]:
    rx = re.compile(pattern)
    block = re.compile(pattern, re.MULTILINE)
    return rx, block, anchors(pattern), _line_bound(pattern)


@dataclass(frozen=True)
class Patterns:
    """Compiled extractors and error patterns of one log."""

    extract: tuple[Matcher, ...]
    errors: tuple[Matcher, ...]


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
    ex = tuple(Matcher(name, *_compile(p)) for name, p in extract.items())
    er = tuple(Matcher(name, *_compile(p), severity=sev) for name, (p, sev) in errors.items())
    return Patterns(ex, er)


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
    resume: dict[FileId, Resume] = field(default_factory=dict)
    extract: dict[str, Hits] = field(default_factory=dict)
    errors: dict[str, ErrorHits] = field(default_factory=dict)
    values: dict[str, tuple[Key, str]] = field(default_factory=dict)
    tail: deque[tuple[Key, str]] = field(default_factory=deque)
    readable: list[Tailer] = field(default_factory=list)  # files read fine this tick

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
            for key, facts in ctx.instances.items():
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
                if result:
                    out[key] = result
            for key in [k for k, s in self._instances.items()
                        if k not in ctx.instances and ctx.now - s.seen > FORGET_AFTER]:
                self._instances.pop(key).close()
            return out

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
            template = expand_slurm(spec.path, facts) if job.slurm is not None else spec.path
            try:
                path = render_path(template, context, base)
            except Exception as exc:
                self.errors[spec.path] = (f"cannot render {spec.path!r}: "
                                          f"{type(exc).__name__}: {exc}").splitlines()[0]
                continue
            self._follow(ctx, state, ls, path)
        return merge(ctx.now, [s for s in state.logs.values() if s.readable])

    def _follow(self, ctx: TickContext, state: InstanceState, ls: LogState, path: Path) -> None:
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
        else:
            wanted = [text]
        for name in wanted:
            if name not in ls.tailers:
                ls.tailers[name] = Tailer(name, resume=ls.resume)
        for name in list(ls.tailers):
            tailer = ls.tailers[name]
            self._read(ctx, state, ls, tailer)
            ls.resume.update(tailer.positions())
            if name not in wanted:
                if tailer.error is None or not tailer.held():
                    # no longer wanted (the path changed) or gone and drained to its end
                    tailer.close()
                    del ls.tailers[name]
                continue
            if tailer.error is None:
                ls.readable.append(tailer)
            else:
                self.errors[name] = tailer.error

    def _read(self, ctx: TickContext, state: InstanceState, ls: LogState, tailer: Tailer) -> None:
        now = ctx.now
        for lines in tailer.batches():
            mtime = tailer.mtime or 0.0
            seq0 = state.seq
            state.seq = seq0 + len(lines)
            block = Block(lines)
            for m in ls.patterns.extract:
                hits = block.scan(m)
                if not hits:
                    continue
                ls.extract[m.name].add(len(hits), now)
                for group, (i, value) in block.last_values(m, hits).items():
                    key = (now, mtime, seq0 + i)
                    if group not in ls.values or key >= ls.values[group][0]:
                        ls.values[group] = (key, value)
            for m in ls.patterns.errors:
                hits = block.scan(m)
                if not hits:
                    continue
                err = ls.errors[m.name]
                err.add(len(hits), now)
                err.lines.extend(((now, mtime, seq0 + i), lines[i]) for i in hits[-ERROR_LINES:])
            if ls.tail_n:
                start = max(0, len(lines) - ls.tail_n)
                ls.tail.extend(((now, mtime, seq0 + i), lines[i])
                               for i in range(start, len(lines)))


class Block:
    """A batch of lines, searched pattern by pattern: a pattern with literals is searched only
    on the lines containing one (found with `str.find` over the whole block, so lines without
    are never visited in Python), from just before the literal when the width of what precedes
    it is bounded."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self._text: str | None = None
        self._starts: list[int] = []

    def _index(self) -> str:
        if self._text is None:
            self._text = "\n".join(self.lines)
            self._starts = list(accumulate((n + 1 for n in map(len, self.lines)), initial=0))
        return self._text

    def scan(self, m: Matcher) -> list[int]:
        """The indices of the lines `m` matches (`m.rx.search(line)`), in order. Match objects
        are not kept: `last_values` searches the few lines it needs again."""
        lines = self.lines
        if not lines:
            return []
        if m.anchors is not None:
            text = self._index()
            seen = sum(text.count(lit) for lit, _ in m.anchors)
            if not seen:
                return []
            if m.in_place and seen * SPARSE < len(lines):
                return self._sparse(m, text)
        out: list[int] = []
        search = m.rx.search
        if m.anchors is None:
            out = [i for i, line in enumerate(lines) if search(line) is not None]
        elif len(m.anchors) == 1:
            ((lit, before),) = m.anchors
            for i, line in enumerate(lines):
                at = line.find(lit)
                # no match starts before the literal's first occurrence minus `before`
                if at >= 0 and search(
                        line, 0 if before is None or at <= before else at - before) is not None:
                    out.append(i)
        else:
            literals = m.literals
            out = [i for i, line in enumerate(lines)
                   if any(lit in line for lit in literals) and search(line) is not None]
        return out

    def _sparse(self, m: Matcher, text: str) -> list[int]:
        """Few lines hold a literal: find them in the whole block and search only those, each
        in place (re.MULTILINE, bounded to the line)."""
        assert m.anchors is not None
        starts = self._starts
        begin: dict[int, int] = {}  # line index -> where a match may start at the earliest
        for lit, before in m.anchors:
            pos = text.find(lit)
            while pos >= 0:
                i = bisect_right(starts, pos) - 1
                first = starts[i] if before is None else max(starts[i], pos - before)
                if first < begin.get(i, first + 1):
                    begin[i] = first
                pos = text.find(lit, starts[i + 1])  # the next line: one look per line
        search = m.block.search
        return [i for i in sorted(begin) if search(text, begin[i], starts[i + 1] - 1) is not None]

    def last_values(self, m: Matcher, hits: list[int]) -> dict[str, tuple[int, str]]:
        """The last non-None value of each named group among the matched lines, with its line
        index: the last match usually has them all; earlier lines are searched only for groups
        it left empty."""
        pending = set(m.rx.groupindex)
        out: dict[str, tuple[int, str]] = {}
        for i in reversed(hits):
            found = m.rx.search(self.lines[i])
            if found is None:  # cannot happen: the line matched
                continue
            for group, value in found.groupdict().items():
                if value is not None and group in pending:
                    pending.discard(group)
                    out[group] = (i, value)
            if not pending:
                break
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

    values: dict[str, tuple[Key, str]] = {}
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
        facts[f"log.{group}"] = typed(value)
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
