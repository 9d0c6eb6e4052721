"""Fuzzing the loader and linter: mutated rulesets and random bytes never give a traceback.

Whatever a file holds, `lint_file` returns a list of well-formed diagnostics: located
(line, col >= 0), with a registered code, a one-line message, and never RM009 (which is a
traceback caught at the last moment and reported as "internal error").
"""

from __future__ import annotations

import copy
import io
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from rulesmon.diagnostics import CODES, Diagnostic
from rulesmon.lint import lint_file

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

SLURM = r"""
version: 1
name: slurm-fuzz
description: SLURM evaluation jobs
every: 60s
notify:
  team: "json://localhost/hook"
  ops: {urls: ["json://localhost/ops"], tags: [oncall], timeout: 5s}
defaults:
  severity: warning
  notify: [team]
  repeat: {every: 10m, backoff: 2, max: 2h}
  labels: {cluster: alpha}
jobs:
  evals:
    slurm: {user: alice, name: "*eval*", partition: gpu, min_interval: 60s}
    logs:
      - path: "{{ job.stdout }}"
        preset: [traceback]
        extract:
          step: 'step (?P<step>\d+)/(?P<total_steps>\d+)'
        errors:
          oom: 'CUDA out of memory'
          nan: {pattern: 'loss=nan', severity: critical}
        tail: 50
rules:
  - name: job-crashed
    when: job.state == "FAILED"
    for: 2m
    severity: critical
    notify: team
    message: "{{ job.name }} failed"
  - name: too-many-ooms
    when: log.errors.oom.count > 3 and log.step > 10
    do:
      - {notify: [team, ops], title: "OOM", message: "{{ job.id }}"}
      - log
      - {log: warning, message: "ooms: {{ log.errors.oom.count }}"}
  - name: cleanup
    when: job.terminal
    once: true
    do:
      - {exec: ["echo", "{{ job.id }}"], timeout: 30s}
"""

LOCAL = r"""
version: 1
name: local-fuzz
every: 10s
notify:
  me: "json://localhost/me"
defaults:
  notify: [me]
jobs:
  embed:
    local:
      command: "python worker.py --id {{ worker }}"
      workers: 4
      env: {CUDA_VISIBLE_DEVICES: "{{ worker }}"}
      stdout: "logs/w_{{ worker }}.log"
      launch_timeout: 60s
      preflight: {dirs: [outputs], inputs: [data.jsonl], min_free_pct: 10, gpus: 2}
    logs:
      - path: "logs/w_{{ worker }}.log"
        preset: [python-logging]
    files:
      outputs: {glob: "outputs/*.json", validate: json, stall_after: 5m}
      ckpt: {glob: "ckpt/*.pt", expect_every: 30m, min_growth: 1MB}
    progress: {done: files.outputs.count, total: 1000, unit: files, stall_after: 10m}
rules:
  - name: stalled
    when: progress.stalled
    severity: warning
  - name: ckpt-late
    when: files.ckpt.late
    repeat: 15m
"""

DAGMAN = r"""
version: 1
name: dag-fuzz
notify:
  team: "json://localhost/t"
defaults:
  notify: [team]
jobs:
  pipeline:
    dagman: {dag: pipeline.dag, submit: false}
    group_by: [run_uuid]
rules:
  - name: run-failed
    scope: group
    when: group.failed > 0
    severity: critical
    times: {times: 2, ticks: 5}
  - name: node-held
    when: job.state == "HELD"
    inhibits: [run-failed]
    keep_firing_for: 5m
"""

BASES = [SLURM, LOCAL, DAGMAN]
_SAFE = YAML(typ="safe", pure=True)
PARSED = [_SAFE.load(text) for text in BASES]


# --- checking what lint returns -------------------------------------------------------------------


def lint_text(text: str | bytes, name: str = "fuzz.yaml") -> list[Diagnostic]:
    """Lint `text` as a fresh file (a new folder each time: no parse cache can be hit)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        diags = lint_file(path, env={})
    check_diagnostics(diags)
    return diags


def check_diagnostics(diags: object) -> None:
    assert isinstance(diags, list)
    for d in diags:
        assert isinstance(d, Diagnostic), d
        assert isinstance(d.line, int) and d.line >= 0, d
        assert isinstance(d.col, int) and d.col >= 0, d
        assert d.code in CODES, d
        assert d.code != "RM009", f"internal error (a traceback): {d.render()}"
        assert isinstance(d.message, str) and d.message.strip(), d
        assert "\n" not in d.message and "\r" not in d.message, d


def test_the_bases_are_valid() -> None:
    """The fuzz starting points lint without errors, so mutants start from something valid."""
    for text in BASES:
        diags = lint_text(text)
        assert [d.render() for d in diags if d.severity.value == "error"] == []


# --- random values --------------------------------------------------------------------------------

TRICKY = [
    "", " ", "${", "${X}", "${X:-d}", "$${X}", "${1BAD}", "${X:-${Y}}", "$", "{{", "}}",
    "{{ job.id }}", "{{ job.", "{% if %}", "{% for x in y %}", "{# c", "(a+)+", "[", "(?P<x>",
    "(?P<x>a)(?P<x>b)", "\\", ".*", "*", "?", "a{99999999999}", "(?<=a+)b", "ü", "🙂",
    "\u202e", "\ufeff", "\u2028", "\x85", "\t", "é" * 300, "a" * 5000, "job.state ==",
    "__import__('os')", "().__class__", "lambda: 1", "1/0", "10**10**10", "not", "-1",
    "1e400", "nan", "inf", "true", "yes", "null", "~", "0x1F", "0o17", "1_000", "5m", "-5m",
    "99999999999999999999d", "1.5.5s", "json://", "://", "builtin:", "builtin:nope",
    "../nope.yaml", "/", ".", "job", "x-", "<<", "&a", "*a", "!!python/object", "%j %A",
    "avg(job.state, '5m') > 1", "rate(log.step, 1" + "0" * 320 + ") > 0", "seconds(1e999) > 0",
    "matches(job.name, '(')", "delta(1)", "changed", "x.__class__", "'a' * 10**9",
]

_no_nul_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40)

SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.sampled_from([2**63, 10**20, 10**308, 10**309, -(10**309), 10**400]),
    st.integers(min_value=-10, max_value=10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(TRICKY),
    _no_nul_text,
    st.builds(lambda a, b: a + b, st.sampled_from(TRICKY), _no_nul_text),
)

KEYS = st.one_of(
    st.sampled_from(["bogus", "x-extra", "extends", "when", "name", "notify", "do", "for",
                     "slurm", "local", "dagman", "htcondor", "logs", "files", "rules", "jobs",
                     "defaults", "enabled", "scope", "group_by", "<<", "1", "True", ""]),
    _no_nul_text,
)

VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=6,
)


# --- structural mutations -------------------------------------------------------------------------


def _containers(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, dict | list):
        out.append(node)
        for child in (node.values() if isinstance(node, dict) else node):
            _containers(child, out)
    return out


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in the tree."""
    out = []
    for c in _containers(node, []):
        keys = list(c) if isinstance(c, dict) else range(len(c))
        out += [(c, k) for k in keys]
    return out


def delete_key(data: Any, draw: Any) -> None:
    slots = [(c, k) for c, k in _slots(data)]
    if slots:
        c, k = draw(st.sampled_from(slots))
        del c[k]


def replace_scalar(data: Any, draw: Any) -> None:
    slots = [(c, k) for c, k in _slots(data) if not isinstance(c[k], dict | list)]
    if slots:
        c, k = draw(st.sampled_from(slots))
        c[k] = draw(SCALARS)


def replace_any(data: Any, draw: Any) -> None:
    slots = _slots(data)
    if slots:
        c, k = draw(st.sampled_from(slots))
        c[k] = draw(VALUES)


def insert_unknown_key(data: Any, draw: Any) -> None:
    maps = [c for c in _containers(data, []) if isinstance(c, dict)]
    target = draw(st.sampled_from(maps))
    target[draw(KEYS)] = draw(VALUES)


def swap_list_and_mapping(data: Any, draw: Any) -> None:
    slots = [(c, k) for c, k in _slots(data) if isinstance(c[k], dict | list)]
    if not slots:
        return
    c, k = draw(st.sampled_from(slots))
    value = c[k]
    if isinstance(value, list):
        c[k] = {str(i): v for i, v in enumerate(value)}
    elif draw(st.booleans()):
        c[k] = list(value.values())
    else:
        c[k] = [{key: v} for key, v in value.items()]


def wrap_in_list(data: Any, draw: Any) -> None:
    slots = _slots(data)
    if slots:
        c, k = draw(st.sampled_from(slots))
        c[k] = [c[k]]


STRUCTURAL = [delete_key, replace_scalar, replace_any, insert_unknown_key,
              swap_list_and_mapping, wrap_in_list]


def dump(data: Any, flow: bool | None) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = flow
    yaml.allow_unicode = True
    yaml.width = 4096
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


# --- text mutations -------------------------------------------------------------------------------


def truncate(text: str, draw: Any) -> str:
    return text[:draw(st.integers(0, len(text)))]


def duplicate_line(text: str, draw: Any) -> str:
    lines = text.splitlines(keepends=True) or [""]
    i = draw(st.integers(0, len(lines) - 1))
    return "".join([*lines[:i + 1], lines[i], *lines[i + 1:]])


def reindent_line(text: str, draw: Any) -> str:
    lines = text.splitlines(keepends=True) or [""]
    i = draw(st.integers(0, len(lines) - 1))
    line = lines[i]
    stripped = line.lstrip(" ")
    indent = len(line) - len(stripped)
    new = draw(st.one_of(st.integers(0, 12).map(lambda n: " " * n),
                         st.just("\t" + " " * indent), st.just(" " * max(indent - 1, 0))))
    lines[i] = new + stripped
    return "".join(lines)


def delete_line(text: str, draw: Any) -> str:
    lines = text.splitlines(keepends=True) or [""]
    del lines[draw(st.integers(0, len(lines) - 1))]
    return "".join(lines)


def insert_text(text: str, draw: Any) -> str:
    at = draw(st.integers(0, len(text)))
    snippet = draw(st.one_of(st.sampled_from(
        [":", "- ", "{", "}", "[", "]", "&a ", "*a", "<<: *a\n", "? ", "|\n", ">-\n", "'", '"',
         "#", "---\n", "...\n", "!!str ", "!tag ", "%YAML 1.1\n", "\n  x: 1\n", "&a [*a]"]),
        _no_nul_text))
    return text[:at] + snippet + text[at:]


TEXTUAL = [truncate, duplicate_line, reindent_line, delete_line, insert_text]


@st.composite
def mutants(draw: Any) -> str:
    """A base ruleset, structurally mutated, dumped in some style, then textually mutated."""
    data = copy.deepcopy(draw(st.sampled_from(PARSED)))
    for op in draw(st.lists(st.sampled_from(STRUCTURAL), max_size=3)):
        op(data, draw)
    text = dump(data, draw(st.sampled_from([None, False, True])))
    for op in draw(st.lists(st.sampled_from(TEXTUAL), max_size=2)):
        text = op(text, draw)
    return text


@st.composite
def structural_mutants(draw: Any) -> str:
    """A base ruleset with one to four structural mutations, still well-formed YAML."""
    data = copy.deepcopy(draw(st.sampled_from(PARSED)))
    for op in draw(st.lists(st.sampled_from(STRUCTURAL), min_size=1, max_size=4)):
        op(data, draw)
    return dump(data, draw(st.sampled_from([None, False])))


@st.composite
def leaf_mutants(draw: Any) -> str:
    """A base ruleset with one to three scalar values replaced, its structure kept: these
    mutants often pass YAML and schema checks and so reach the deeper lint checks."""
    data = copy.deepcopy(draw(st.sampled_from(PARSED)))
    for _ in range(draw(st.integers(1, 3))):
        slots = [(c, k) for c, k in _slots(data) if not isinstance(c[k], dict | list)
                 and k != "version"]
        c, k = draw(st.sampled_from(slots))
        c[k] = draw(SCALARS)
    return dump(data, None)


@st.composite
def textual_mutants(draw: Any) -> str:
    """A base ruleset as written (comments, quoting, flow maps) with one to three text edits."""
    text = draw(st.sampled_from(BASES))
    for op in draw(st.lists(st.sampled_from(TEXTUAL), min_size=1, max_size=3)):
        text = op(text, draw)
    return text


# --- the properties -------------------------------------------------------------------------------


@SETTINGS
@given(mutants())
def test_mutated_rulesets_never_raise(text: str) -> None:
    """A mutated ruleset gives diagnostics (or none), never a traceback."""
    note(text)
    lint_text(text)


@SETTINGS
@given(structural_mutants())
def test_structurally_mutated_rulesets_never_raise(text: str) -> None:
    """Deleted keys, random values, unknown keys and swapped lists/maps never give a traceback."""
    note(text)
    lint_text(text)


@SETTINGS
@given(leaf_mutants())
def test_rulesets_with_random_values_never_raise(text: str) -> None:
    """Random values (huge numbers, infinities, tricky strings) in valid places never raise."""
    note(text)
    lint_text(text)


@SETTINGS
@given(textual_mutants())
def test_textually_mutated_rulesets_never_raise(text: str) -> None:
    """Truncated, re-indented, duplicated or spliced YAML text never gives a traceback."""
    note(text)
    lint_text(text)


@SETTINGS
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    """Any bytes at all, written as a ruleset file, give diagnostics and never a traceback."""
    lint_text(data)


@SETTINGS
@given(st.sampled_from([b.encode() for b in BASES]), st.binary(max_size=256),
       st.integers(min_value=0))
def test_bytes_spliced_into_a_ruleset_never_raise(base: bytes, junk: bytes, at: int) -> None:
    """Random bytes spliced into a valid ruleset never give a traceback."""
    at %= len(base) + 1
    lint_text(base[:at] + junk + base[at:])


# --- regressions found by the fuzzer (minimal reproducers) ----------------------------------------

HUGE = "1" + "0" * 309  # 10**309: a YAML int larger than the largest float


def _no_internal_error(text: str) -> None:
    diags = lint_text(text)  # asserts no RM009 and well-formed diagnostics
    assert diags


def test_huge_integer_duration_is_a_diagnostic() -> None:
    """`every: 10**309` is reported as an invalid duration, not an OverflowError in units.py."""
    _no_internal_error(f"version: 1\nname: x\nevery: {HUGE}\n")


def test_infinite_size_is_a_diagnostic() -> None:
    """`min_growth: .inf` is reported as an invalid size, not an OverflowError in units.py."""
    _no_internal_error(
        "version: 1\nname: x\njobs:\n  j:\n    local: {command: run}\n"
        "    files:\n      f: {glob: '*', min_growth: .inf}\n")


def test_huge_integer_window_in_condition_is_a_diagnostic() -> None:
    """`avg(x, 10**309)` is an RM403 bad window, not an OverflowError in the lint check."""
    _no_internal_error(f"version: 1\nname: x\nrules:\n  - name: r\n    when: avg(x, {HUGE}) > 1\n")
