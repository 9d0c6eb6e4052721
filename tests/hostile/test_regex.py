"""Hostile patterns: a ruleset regex can never stall the tick.

Each attack is a real ruleset written in tmp_path with a real log holding a line of 48 `a`s
and a `!` (2^48 steps for Python's `re` on these patterns), run with the real CLI
(`rulesmon run --once`, in a subprocess with a generous timeout, so a regression fails instead
of hanging), asserting that the tick completes with the right facts and that `rulesmon lint`
names the pattern with a stable code at its file:line:col.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rulesmon import regex
from rulesmon.diagnostics import Severity
from rulesmon.lint import lint_file

from ..conftest import run_cli
from .files import at as _at
from .files import run_unchecked
from .files import write as _write

#: nested quantifiers and overlapping alternatives, in several spellings
SPELLINGS = [r"((a+))+$", r"(a|a)*$", r"(a*)*b", r"(.*a){20}$", r"(?:a+)+$", r"(a+)*$"]
LONG = "a" * 48 + "!"
TIMEOUT = 120  # seconds: far more than a bounded tick needs, far less than 2^48 steps


def _quote(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"


def _ruleset(tmp_path: Path, pattern: str, lines: str) -> tuple[Path, Path]:
    log = _write(tmp_path / "train.log", lines)
    named = pattern.replace("(", "(?P<run>", 1) if not pattern.startswith("(?") else \
        f"(?P<run>{pattern})" if not pattern.endswith("$") else f"(?P<run>{pattern[:-1]})$"
    rs = _write(tmp_path / "hostile.yaml", f"""\
version: 1
name: hostile
jobs:
  train:
    logs:
      - path: {log}
        tail: 5
        extract:
          run: {_quote(named)}
        errors:
          hang: {_quote(pattern)}
rules:
  - name: errors-counted
    when: log.errors.hang.count >= 1
    do: [log]
  - name: extract-read
    when: known(log.run)
    do: [log]
  - name: matches-ran
    when: 'matches(log.tail, r''{pattern}'')'
    do: [log]
""")
    return rs, log


def _run_once(rs: Path, tmp_path: Path, *, refused: bool = False) -> str:
    """One tick; `refused`: lint refuses the ruleset (exit 2), so the tick runs past lint to
    test the run-time bound behind it."""
    if refused:
        done = run_unchecked(rs, tmp_path / "state.db", timeout=TIMEOUT)
    else:
        done = run_cli("run", str(rs), "--once", "--state", str(tmp_path / "state.db"),
                       timeout=TIMEOUT)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.parametrize("pattern", SPELLINGS)
def test_nested_quantifier_runs_in_linear_time(tmp_path: Path, pattern: str) -> None:
    """A nested-quantifier pattern in `errors:`, `extract:` and `matches()`, fed a line of 48
    `a`s, finishes the tick (on RE2) with the same answers Python's `re` gives on short lines,
    and lint warns about each use with RM671 at the pattern's position."""
    short = "a" * 24 + ("b\n" if pattern.endswith("b") else "\n")
    rs, _ = _ruleset(tmp_path, pattern, f"{LONG}\n{short}")
    assert regex.engine_of(pattern)[0] == regex.ENGINE_RE2
    out = _run_once(rs, tmp_path)
    for rule in ("errors-counted", "extract-read", "matches-ran"):
        assert rule in out, (rule, out[-3000:])

    diags = [d for d in lint_file(rs) if d.code == "RM671"]
    want = {_at(rs, _quote(pattern)), _at(rs, "'matches(log.tail")}
    named_line = rs.read_text().splitlines().index(
        next(line for line in rs.read_text().splitlines() if line.strip().startswith("run:")))
    want.add((named_line + 1, rs.read_text().splitlines()[named_line].index("'") + 1))
    assert {(d.line, d.col) for d in diags} == want, [d.render() for d in diags]
    assert all(d.severity is Severity.WARNING and "RE2" in d.message for d in diags)


def test_fallback_pattern_is_bounded_and_reported(tmp_path: Path) -> None:
    """A pattern RE2 cannot run (a lookbehind) that is also exponential runs on Python's `re`
    in the helper process: the tick still completes, the pattern is stopped at its per-line
    bound (its facts unknown, a warning says so), and lint reports it as RM672 (error)."""
    pattern = r"(?<=[a!])((a+))+$"
    rs, _ = _ruleset(tmp_path, pattern, f"x{LONG}\n")
    assert regex.engine_of(pattern)[0] == regex.ENGINE_SANDBOX
    out = _run_once(rs, tmp_path, refused=True)
    assert "stopped" in out and "took more than" in out, out[-3000:]
    assert "errors-counted" not in out  # unknown, not a count that missed the line

    diags = [d for d in lint_file(rs) if d.code == "RM672"]
    assert (_at(rs, _quote(pattern)) in {(d.line, d.col) for d in diags}), \
        [d.render() for d in diags]
    assert all(d.severity is Severity.ERROR for d in diags)


def test_benign_fallback_pattern_works_and_is_listed(tmp_path: Path) -> None:
    """A lookbehind without nested quantifiers runs on the time-bounded `re` fallback and
    counts its lines as Python's `re` does; lint lists it with RM670 (info) and its position."""
    pattern = r"(?<=step )(?P<step>\d+)"
    log = _write(tmp_path / "train.log", "step 3\nno\nstep 12\n")
    rs = _write(tmp_path / "fallback.yaml", f"""\
version: 1
name: fallback
jobs:
  train:
    logs:
      - path: {log}
        extract:
          step: {_quote(pattern)}
rules:
  - name: step-twelve
    when: log.step == 12 and log.extractors.step.count == 2
    do: [log]
""")
    out = _run_once(rs, tmp_path)
    assert "step-twelve" in out, out[-3000:]
    diags = [d for d in lint_file(rs) if d.code == "RM670"]
    assert [(d.line, d.col) for d in diags] == [_at(rs, _quote(pattern))]
    assert diags[0].severity is Severity.INFO and "lookahead or lookbehind" in diags[0].message


def test_sandbox_stops_a_hung_search_and_restarts() -> None:
    """The helper process searching with Python's `re` is killed when one line overruns the
    bound (RegexTimeout), and the next search starts a fresh helper that answers."""
    box = regex.Sandbox()
    saved = regex.LINE_SECONDS
    regex.LINE_SECONDS = 0.5
    try:
        with pytest.raises(regex.RegexTimeout):
            box.search_lines(r"((a+))+$", ["ok", LONG])
        found = box.search_lines(r"(?P<w>\w+)$", ["x y", "!"])
        assert [(i, g) for i, _, g in found] == [(0, {"w": "y"})]
    finally:
        regex.LINE_SECONDS = saved
        box.close()


def test_translation_keeps_python_meaning() -> None:
    """Patterns translated to RE2 find what Python's `re` finds on one line: the same match
    and named groups, Unicode `\\d \\w \\s`, `(?a)`, `(?i)`, scoped flags and anchors."""
    import re

    cases = {
        r"(?P<a>\d+)/(?P<b>\d+)": ["x 12/34 y", "٣/٤", "1/"],
        r"\w+\s\w+": ["héllo wörld", "a\u2003b", "a\x0bb", "a\x1cb"],
        r"(?a)\w+\s\w+": ["héllo wörld", "ab cd"],
        r"(?i)error: (?-i:X)": ["ERROR: X", "error: x"],
        r"^foo$|\Abar\Z": ["foo", "bar", "xfoo"],
        r"[^\d\s]+": ["12 ab", "٣ é"],
        r"(a|ab)(c|bcd)(?P<d>d*)": ["abcd", "acd"],
        r"colou?r.*?(?P<n>\d{2,3})": ["color 1234", "colour 12"],
    }
    for pattern, lines in cases.items():
        r2 = regex.compile_re2(pattern, line=True)
        rx = re.compile(pattern)
        for line in lines:
            a, b = rx.search(line), r2.search(line)
            assert (a is None) == (b is None), (pattern, line)
            if a is not None and b is not None:
                assert a.span() == b.span() and a.groupdict() == b.groupdict(), (pattern, line)


@pytest.mark.parametrize("pattern", [*SPELLINGS, r"(\w+\s?)+ out of memory", r"(x|xy)+z"])
def test_backtracking_is_found_in_any_spelling(pattern: str) -> None:
    """Nested quantifiers and overlapping alternatives under a repeat are found whatever the
    grouping, and plain patterns of the presets are not flagged."""
    from rulesmon.probes.log_presets import PRESETS

    assert regex.backtracking(pattern)
    for preset in PRESETS.values():
        for p in [*preset.extract.values(), *(e.pattern for e in preset.errors.values())]:
            assert regex.backtracking(p) is None, p



def test_ruleset_patterns_on_re2_find_what_re_finds_line_by_line() -> None:
    """A log's own patterns, on RE2 over whole chunks (runs of matching lines; the lines
    holding a literal searched in place, or gathered into one buffer whole, from a leading
    literal on, or up to a trailing one; dense patterns without literals together with one Set
    search per line; undecoded or repaired UTF-8), count the
    lines and give the last group values and last lines that Python's `re.search` of each
    decoded line gives, for the presets' patterns and patterns with every construct the
    translation touches (`\\b` only on ASCII text: on RE2 it knows only ASCII word
    characters)."""
    import random

    from rulesmon.probes import logs
    from rulesmon.probes.log_presets import PRESETS

    from ..test_logs_probe import TRICKY, random_chunk

    patterns = [p for preset in PRESETS.values() for p in
                [*preset.extract.values(), *(e.pattern for e in preset.errors.values())]]
    pairs = [(p, logs._ruleset_matcher("p", p)) for p in [*patterns, *TRICKY]]
    on_re2 = [(p, m) for p, m in pairs if m.engine == regex.ENGINE_RE2]
    assert len(on_re2) > 60
    forms = [m.exact for _, m in on_re2 if isinstance(m.exact, logs.Re2Forms)]
    assert any(f.tails is not None for f in forms) and any(f.heads is not None for f in forms)
    assert any(f.literals and f.tails is None and f.heads is None for f in forms)
    rng = random.Random(11)
    saved, saved_bytes, saved_min = logs.DENSE_RUNS, logs.RUN_BYTES, logs.SPARSE_MIN
    saved_unset = logs.UNSET_AFTER  # 1: groups unset after one line are looked for at once
    gathered: list[int] = []
    by_literals = logs.Chunk._by_literals

    def counted(chunk: Any, forms: Any) -> int:
        gathered.append(1)
        return by_literals(chunk, forms)

    ways: set[str] = set()
    logs.Chunk._by_literals = counted  # type: ignore[method-assign,assignment]
    try:
        # 1: every pattern with two runs is gathered by its literals, or found by the Set
        # (and only a chunk without its literals is searched through them)
        for dense_runs in (saved, 1):
            logs.DENSE_RUNS = dense_runs
            logs.RUN_BYTES = saved_bytes if dense_runs == saved else 1 << 30
            logs.SPARSE_MIN = saved_min if dense_runs == saved else 0
            logs.UNSET_AFTER = saved_unset if dense_runs == saved else 1
            for _ in range(25):
                ways |= _compare(on_re2, random_chunk(rng), dense_runs == 1)
    finally:
        logs.DENSE_RUNS, logs.RUN_BYTES, logs.SPARSE_MIN = saved, saved_bytes, saved_min
        logs.UNSET_AFTER = saved_unset
        logs.Chunk._by_literals = by_literals  # type: ignore[method-assign]
    # by runs; through literals or together through the Set; gathered by literals
    assert ways == {"runs", "starts", "literals"} and gathered


def _compare(on_re2: list[tuple[str, Any]], data: bytes, together: bool) -> set[str]:
    """Each pattern's chunk search (alone, or all in one chunk) against `re` line by line;
    returns how the lines were found."""
    import re

    from rulesmon.probes import logs
    from rulesmon.probes.tail import lines_of

    lines = lines_of(data)
    chunk_all = logs.Chunk(data, [m for _, m in on_re2])
    ways: set[str] = set()
    for pattern, m in on_re2:
        if "\\b" in pattern and "(?a)" not in pattern and not data.isascii():
            continue
        rx = re.compile(pattern)
        hits = [i for i, line in enumerate(lines) if rx.search(line)]
        chunk = chunk_all if together else logs.Chunk(data, [m])
        index = {start: i for i, start in enumerate(chunk._lines()[1])}
        got = chunk.find(m)
        ways.add(got.how)
        assert got.count == len(hits), (pattern, data)
        values: dict[str, tuple[int, str]] = {}
        for i in hits:
            found = rx.search(lines[i])
            assert found is not None
            values.update({g: (i, v) for g, v in found.groupdict().items() if v is not None})
        assert {g: (index[s], v) for g, (s, v) in chunk.last_values(m, got).items()} == \
            values, (pattern, data)
        assert [(index[s], t) for s, t in chunk.last_lines(m, got, 5)] == \
            [(i, lines[i]) for i in hits[-5:]], (pattern, data)
    return ways


def test_a_group_no_match_sets_is_told_by_one_search() -> None:
    """The pattern with one group made to take part finds a line only where a match can set
    that group (so an alternative never taken is known unset without walking every line),
    and a group inside a repeat is refused (another iteration could be the one that
    matched)."""
    rx = regex.compile_requiring(r"(?P<n>\d+) (?:(?P<rate>[\d.]+)it/s|(?P<spi>[\d.]+)s/it)?", "spi")
    assert rx.search("12 3.5it/s") is None and rx.search("12 0.5s/it") is not None
    with pytest.raises(regex.Unsupported):
        regex.compile_requiring(r"(?:(?P<a>x)|y){2}z", "a")
