"""Hostile conditions and templates: bombs are refused at their bound, never a stall.

Each attack is a rule of a real ruleset written in tmp_path (a logs-only job over a real log
file, so no scheduler is needed). The ruleset is run with the real CLI (`rulesmon run --once`
in a subprocess with a generous timeout, so a regression fails instead of hanging) and linted
with `rulesmon lint` the same way. Every attack must show up at run time as a
`condition_error` or a template error naming the bound, and in lint with its stable code at
the file:line:col of the condition or template.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from rulesmon.lint import lint_file

from ..conftest import run_cli
from .files import at as _at
from .files import run_unchecked

TIMEOUT = 120  # seconds: far more than a bounded run needs, far less than the bombs would take

#: Conditions that would build gigabytes or run for ever; none needs a fact to do so.
CONDITIONS = {
    "percent-width": "'%0999999999d' % 1 == 'x'",
    "percent-star-width": "'%*d' % (999999999, 1) == 'x'",
    "percent-precision": "len('%.999999999f' % 1.5) > 0",
    "string-repeat": "'a' * 10**9 == 'x'",
    "list-repeat": "len([1, 2] * 10**9) > 0",
    "nested-list-repeat": "str([[1] * 1000] * 1000) == 'x'",
    "power-tower": "9 ** 9 ** 9 > 0",
    "round-digits": "round(5, -999999999) == 0",
    "concatenation": "'a' * 99999 + 'b' * 99999 == 'x'",
}

#: Templates that would build gigabytes or run for minutes per render.
TEMPLATES = {
    "center": "{{ 'a'|center(999999999) }}",
    "format-width": "{{ '{:>999999999}'.format(1) }}",
    "format-nested-width": "{{ '{0:{1}}'.format(1, 999999999) }}",
    "format-map-width": "{{ '{x:>999999999}'.format_map({'x': 1}) }}",
    "percent-width": "{{ '%0999999999d' % 1 }}",
    "format-filter": "{{ '%0999999999d'|format(1) }}",
    "range-size": "{{ range(1000000)|list|length }}",
    "range-join": "{{ range(100000)|join('x' * 9999) }}",
    "rebuild-in-loop": "{% for i in range(100000) %}{% set x = 'a' * 999999 %}{% endfor %}",
    "join-in-loop": "{% for i in range(1000) %}{% set x = range(100000)|join(',') %}"
                    "{% endfor %}",
    "method-join": "{{ ('x' * 9999).join(range(100000)|map('string')) }}",
    "nested-loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                    "{% endfor %}",
    "captured-loop": "{% set x %}{% for i in range(100000) %}{{ 'a' * 16000 }}{% endfor %}"
                     "{% endset %}{{ x|length }}",
    "concat-doubling": "{% set ns = namespace(s='a') %}{% for i in range(40) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "plus-doubling": "{% set ns = namespace(s='a') %}{% for i in range(40) %}"
                     "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "macro-recursion": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                       "{% endmacro %}{{ f(40) }}",
    "recursive-loop": "{% for x in [1] recursive %}{% if loop.depth < 40 %}"
                      "{{ loop([1, 1]) }}{% endif %}{% endfor %}",
    "ljust": "{{ 'a'.ljust(999999999) }}",
    "zfill": "{{ 'a'.zfill(999999999) }}",
    "expandtabs": "{{ '\\t'.expandtabs(999999999) }}",
    "bytes-repeat": "{{ 'a'.encode() * 999999999 }}",
    "to-bytes": "{{ (1).to_bytes(999999999, 'big') }}",
    "replace-empty": "{{ ('a' * 100000).replace('', 'b' * 100) }}",
    "nested-repeat": "{{ [[1] * 16000] * 16000 }}",
    "power": "{{ ((2 ** 100) ** 100) ** 100 }}",
    "lipsum": "{{ lipsum(999999) }}",
    "indent": "{{ 'x'|indent(999999999) }}",
    "batch": "{{ [1]|batch(999999999)|list }}",
    "slice": "{{ [1]|slice(999999999)|list }}",
    "round": "{{ 5|round(-999999999) }}",
    "round-ceil": "{{ 5|round(999999999, 'ceil') }}",
    "pct-digits": "{{ 1|pct(999999999) }}",
    "tojson-indent": "{{ [1, 2]|tojson(indent=999999999) }}",
    "wordwrap": "{{ ('a ' * 50000)|wordwrap(1, wrapstring='x' * 100) }}",
    "translate": "{{ ('a' * 100000).translate({97: 'b' * 100}) }}",
}


@dataclass
class Outcome:
    ruleset: Path
    run: str
    lint: str


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ruleset(folder: Path) -> Path:
    log = folder / "train.log"
    log.write_text("step 1/10\nstep 2/10\n", encoding="utf-8")
    rules = []
    for name, cond in CONDITIONS.items():
        rules.append(f"  - name: cond-{name}\n    when: {_quote(cond)}\n    do: [log]\n")
    for name, text in TEMPLATES.items():
        rules.append(f"  - name: tmpl-{name}\n    when: known(log.tail)\n    do: [log]\n"
                     f"    message: {_quote(text)}\n")
    path = folder / "hostile.yaml"
    path.write_text(f"""\
version: 1
name: hostile
jobs:
  train:
    logs:
      - path: {log}
        tail: 5
rules:
{"".join(rules)}""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The hostile ruleset, run once and linted once, each in a subprocess."""
    folder = tmp_path_factory.mktemp("evaluation")
    rs = _ruleset(folder)
    run = run_unchecked(rs, folder / "state.db", timeout=TIMEOUT)  # lint refuses it
    assert run.returncode in (0, 1), run.stderr[-3000:]
    lint = run_cli("lint", str(rs), timeout=TIMEOUT)
    return Outcome(rs, run.stdout + run.stderr, lint.stdout + lint.stderr)


def _alert(output: str, rule: str) -> str:
    """The console block of one rule's alert (its rendered message)."""
    m = re.search(rf"ALERT: {re.escape(rule)} .*?(?=\n\[\d{{4}}-|\Z)", output, re.S)
    assert m, f"no alert for {rule} in:\n{output[-3000:]}"
    return m.group(0)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_bomb_is_a_condition_error(outcome: Outcome, name: str) -> None:
    """A condition over an evaluation bound is reported as a condition_error naming the
    limit, the rule never fires, and lint gives RM680 at the condition."""
    rule = f"cond-{name}"
    errors = [line for line in outcome.run.splitlines()
              if "condition_error" in line and f"rule={rule}" in line]
    assert errors and ("limit" in errors[0] or "too large" in errors[0]), outcome.run[-3000:]
    assert f"ALERT: {rule} " not in outcome.run
    line, col = _at(outcome.ruleset, _quote(CONDITIONS[name]))
    assert f"hostile.yaml:{line}:{col}: error RM680 " in outcome.lint, outcome.lint


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_bomb_is_a_template_error(outcome: Outcome, name: str) -> None:
    """A template over a render bound fires as a notification whose body carries the
    template error naming the limit, and lint gives RM681 at the template."""
    block = _alert(outcome.run, f"tmpl-{name}")
    assert "[template error: RenderLimitError:" in block, block
    line, col = _at(outcome.ruleset, _quote(TEMPLATES[name]))
    assert f"hostile.yaml:{line}:{col}: error RM681 " in outcome.lint, outcome.lint


def test_each_bomb_lints_alone_and_finishes(tmp_path: Path) -> None:
    """Lint of a file holding one bomb finishes (no timing assertion: the subprocess timeout
    only turns a hang into a failure) and reports its code."""
    for name in ("nested-loops", "macro-recursion", "recursive-loop", "captured-loop"):
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "one.yaml"
        path.write_text(f"""\
version: 1
name: one
jobs:
  train:
    logs:
      - path: train.log
rules:
  - name: bomb
    when: known(log.tail)
    do: [log]
    message: {_quote(TEMPLATES[name])}
""", encoding="utf-8")
        done = run_cli("lint", str(path), timeout=60)
        assert "RM681" in done.stdout, done.stdout + done.stderr


def test_lint_evaluates_only_fact_free_parts() -> None:
    """Lint evaluates the parts of a condition that need no fact; a bound that depends on a
    fact's value is left to run time (where it is a condition_error), not guessed."""
    from rulesmon.rules.compile import limit_problems
    from rulesmon.rules.expressions import parse

    assert limit_problems(parse("'%0*d' % (job.exit_code, 1) == 'x'")) == []
    assert limit_problems(parse("job.name * 3 == 'x'")) == []
    found = limit_problems(parse("job.state == 'x' or 'a' * 10**9 == 'b'"))
    assert [col for col, _ in found] == [21]


#: Templates whose render fails in assorted ways: each must be a finding, never RM009.
ODD_TEMPLATES = [
    "{{ ('{0}'|attr('format_map'))([1]) }}",
    "{{ ('{0}'|attr('format_map'))(none) }}",
    "{{ ('{x}'|attr('format_map'))({'y': 1}) }}",
    "{{ '{0}'.format_map([1]) }}",
    "{{ '{}'.format() }}",
    "{{ '{0[1]}'.format([]) }}",
    "{{ '{:d}'.format('x') }}",
    "{{ '{'.format(1) }}",
    "{{ '{0!z}'.format(1) }}",
    "{{ '%d'|format('x') }}",
    "{{ '%(a)s' % 1 }}",
    "{{ (1).to_bytes(-1, 'big') }}",
    "{{ 'a'.center('x') }}",
    "{{ 1 // 0 }}",
    "{{ range(10 ** 6)|list }}",
    "{{ 'x'|int(base=99) }}",
    "{{ [1][5] }}",
    "{{ '' ~ (1).to_bytes(9, 'big').decode('utf-8', 'strict') }}",
]


def test_odd_template_failures_are_findings(tmp_path: Path) -> None:
    """A template that fails by raising anything (IndexError from format_map on a list,
    OverflowError, ZeroDivisionError...) gives a located finding, never lint's internal
    error RM009."""
    rules = "".join(f"  - name: odd-{i}\n    when: known(log.tail)\n    do: [log]\n"
                    f"    message: {_quote(text)}\n" for i, text in enumerate(ODD_TEMPLATES))
    path = tmp_path / "odd.yaml"
    path.write_text(f"""\
version: 1
name: odd
jobs:
  train:
    logs:
      - path: train.log
rules:
{rules}""", encoding="utf-8")
    diags = lint_file(path)
    assert not [d for d in diags if d.code == "RM009"], [d.render() for d in diags]
    for text in ODD_TEMPLATES[:4]:
        line, _ = _at(path, _quote(text))
        assert any(d.line == line and d.code == "RM405" for d in diags), \
            (text, [d.render() for d in diags])


def test_format_map_on_a_list_is_a_template_error_at_run_time() -> None:
    """`('{0}'|attr('format_map'))([1])` fails as a TypeError template error at run time."""
    from jinja2.exceptions import TemplateError

    from rulesmon import templates

    with pytest.raises((TypeError, TemplateError)):
        templates.render("{{ ('{0}'|attr('format_map'))([1]) }}", {})


def test_ordinary_templates_still_render() -> None:
    """Bounded rendering changes nothing for ordinary templates: joins, formats, loops,
    concatenation and macros give what they always gave."""
    from rulesmon import templates

    text = ("{{ 'a' ~ 'b' }} {{ [1, 2]|join(',') }} {{ '%05.1f'|format(3.14159) }} "
            "{{ '{:>5}'.format(1) }} {% for i in range(3) %}{{ i }}{% endfor %} "
            "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(7) }} {{ 'ab' * 2 }} {{ 2 ** 10 }} "
            "{{ '%s=%d' % ('n', 4) }} {{ 'x'|center(5) }}|")
    assert templates.render(text, {}) == "ab 1,2 003.1     1 012 <7> abab 1024 n=4   x  |"
    assert templates.render("{{ ('<{0}>'|safe).format('<b>') }}", {}) == "<&lt;b&gt;>"
    big = templates.render("{{ tail }}", {"tail": "x" * 3_000_000})  # an input users have
    assert big.endswith(f"[truncated: more than {templates.MAX_OUTPUT} characters]")
    long = templates.render("{% for i in range(3000) %}0123456789{% endfor %}", {})
    assert long.endswith(f"[truncated: more than {templates.MAX_OUTPUT} characters]")


_VALUES = ["1", "'ab'", "'{0}'", "'%s'", "[1, 2]", "none", "{'a': 1}", "range(3)", "cycler(1)",
           "namespace(a=1)", "lipsum", "(1)", "'a'.encode()", "job", "('{0:>9}'|safe)"]
_ARGS = ["999999999", "-999999999", "'x'", "none", "[1]", "{'a': 1}", "'{0}'", "'%s'", "''",
         "range(100000)", "[[1] * 1000] * 1000", "job"]
_METHODS = ["format", "format_map", "center", "join", "replace", "zfill", "ljust", "expandtabs",
            "translate", "encode", "split", "to_bytes", "items", "keys", "hex", "count"]
_FILTERS = ["format", "join", "center", "indent", "batch", "slice", "round", "tojson",
            "wordwrap", "replace", "sum", "list", "string", "pprint", "urlencode", "truncate",
            "int", "filesizeformat", "pct", "ts", "tail", "map", "unique", "first", "length"]
_SHAPES = ["{{{{ ({v}|attr('{m}'))({a}) }}}}", "{{{{ {v}.{m}({a}) }}}}",
           "{{{{ {v}|{f}({a}) }}}}", "{{{{ {v}|{f} }}}}", "{{{{ {v} % {a} }}}}",
           "{{{{ {v} * {a} }}}}", "{{{{ {v} ~ {a} }}}}", "{{{{ {v} ** {a} }}}}",
           "{{{{ {v} + {a} }}}}", "{{% for x in {v} %}}{{{{ x|{f}({a}) }}}}{{% endfor %}}",
           "{{{{ '{{0:{{1}}}}'.format({v}, {a}) }}}}"]


def test_fuzzed_template_shapes_never_crash_lint() -> None:
    """Random combinations of values, methods, filters and operators with hostile arguments
    render to text or to a classified failure (bound, sandbox, error), and lint's static
    passes accept them, so lint never reports an internal error (RM009) for a template."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from rulesmon import facts, templates

    context = facts.sample_context({"job": facts.JOB})
    shapes = st.builds(lambda s, v, m, f, a: s.format(v=v, m=m, f=f, a=a),
                       st.sampled_from(_SHAPES), st.sampled_from(_VALUES),
                       st.sampled_from(_METHODS), st.sampled_from(_FILTERS),
                       st.sampled_from(_ARGS))

    @settings(max_examples=400, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(shapes)
    def check(text: str) -> None:
        tree = templates.parse(text)
        templates.paths(tree)
        templates.unsafe_access(tree)
        problem = templates.render_problem(text, context)
        assert problem is None or problem[0] in ("limit", "unsafe", "error"), (text, problem)

    check()


_OPERANDS = ["'%0999999999d'", "'%*d'", "'%s%s'", "'%.*f'", "(999999999, 1)", "10 ** 9",
             "[1] * 1000", "'a' * 99999", "9 ** 9", "1.5", "-999999999", "job.a", "job.s",
             "str([1] * 1000)", "(1, 2)", "''", "4000000 ** 100", "job.missing"]
_FORMS = ["{a} % {b}", "{a} * {b}", "{a} ** {b}", "{a} + {b}", "str({a}) * {b}",
          "round({a}, {b})", "len({a} * {b})", "({a} * {b}) % {a}", "{a} % ({b}, {b})",
          "[{a}] * {b}", "str({a}) + str({b})", "abs({a}) * {b}", "int({a}) ** {b}"]


def test_fuzzed_condition_shapes_are_bounded() -> None:
    """Random conditions mixing `%`, `*`, `**`, `+`, round() and str() with hostile operands
    evaluate to a value or fail as an EvalError (a condition_error at run time), and lint's
    bounded evaluation of their fact-free parts returns findings instead of raising."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from rulesmon.rules.compile import EvalError, compile_condition, limit_problems
    from rulesmon.rules.expressions import ExpressionError, parse
    from rulesmon.rules.history import History

    facts = {"job.a": 3, "job.s": "RUNNING"}
    texts = st.builds(lambda f, a, b: f.format(a=a, b=b), st.sampled_from(_FORMS),
                      st.sampled_from(_OPERANDS), st.sampled_from(_OPERANDS))

    @settings(max_examples=400, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(texts)
    def check(text: str) -> None:
        try:
            parsed = parse(text)
        except ExpressionError:
            return
        limit_problems(parsed)
        try:
            compiled = compile_condition(parsed)
        except ValueError:  # a wrong call (min() without a window): lint's RM403
            return
        with contextlib.suppress(EvalError):  # a condition_error at run time
            compiled(facts, History(), 0.0)

    check()
