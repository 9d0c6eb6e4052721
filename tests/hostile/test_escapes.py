"""Sandbox escapes that already hold, kept as regression tests.

Each escape is written into a real ruleset in tmp_path, in a condition and in a template:
conditions that reach for dunders or builtins are refused when the ruleset loads (`rulesmon run`
refuses to start, lint gives RM208 at the condition); templates that try a known SSTI payload
render as a template error with nothing reached (lint refuses them, so `rulesmon run` exits 2;
the tick runs past lint in a subprocess, files.run_unchecked, to test the sandbox behind it),
and lint gives RM682 at the template. Web-framework globals (`config`,
`request`) are simply unknown facts: RM401 in lint, "unknown" at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import run_cli
from .files import at as _at
from .files import run_unchecked

TIMEOUT = 120

#: Conditions that would escape a naive evaluator (eval with empty builtins is no sandbox).
CONDITIONS = {
    "dunder-class": "job.__class__ is not None",
    "dunder-globals": "job.__globals__ == 1",
    "subclasses": "().__class__.__base__.__subclasses__() == 1",
    "import": "__import__('os').system('true') == 0",
    "getattr": "getattr(job, '__class__') == 1",
    "private-name": "_secret == 1",
}

#: Server-side template injection payloads and the Jinja2 str.format escape
#: (CVE-2024-56326 / CVE-2025-27516: str.format reached through |attr).
TEMPLATES = {
    "mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler-globals": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner-globals": "{{ joiner.__init__.__globals__ }}",
    "namespace-globals": "{{ namespace.__init__.__globals__ }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'] }}",
    "template-reference": "{{ self._TemplateReference__context }}",
    "attr-filter-dunder": "{{ ''|attr('__class__') }}",
    "item-dunder": "{{ ''['__class__'] }}",
    "builtins-name": "{{ __builtins__ }}",
    "attr-format": "{{ ('{0.__class__.__mro__}'|attr('format'))(1) }}",
    "attr-format-globals": "{{ ('{0.__init__.__globals__}'|attr('format'))(cycler) }}",
    "format-method": "{{ '{0.__class__}'.format(job) }}",
    "format-map": "{{ '{x.__class__}'.format_map({'x': 1}) }}",
    "format-item": "{{ '{0[__builtins__]}'.format(cycler.__init__) }}",
    "set-dunder": "{% set c = ''|attr('__class__') %}{{ c }}",
}

#: Globals other template engines' hosts expose; here they are unknown facts.
GLOBALS = {"config": "{{ config }}", "request": "{{ request.environ }}",
           "settings": "{{ settings.SECRET_KEY }}"}


@dataclass
class Outcome:
    ruleset: Path
    run: str
    lint: str


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _header(log: Path) -> str:
    return f"""\
version: 1
name: hostile
jobs:
  train:
    logs:
      - path: {log}
        tail: 5
rules:
"""


@pytest.fixture(scope="module")
def templates_outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """One ruleset with every template payload and global, run once and linted once."""
    folder = tmp_path_factory.mktemp("escapes")
    log = folder / "train.log"
    log.write_text("step 1\n", encoding="utf-8")
    rules = "".join(f"  - name: tmpl-{name}\n    when: known(log.tail)\n    do: [log]\n"
                    f"    message: {_quote(text)}\n"
                    for name, text in {**TEMPLATES, **GLOBALS}.items())
    rs = folder / "hostile.yaml"
    rs.write_text(_header(log) + rules, encoding="utf-8")
    run = run_unchecked(rs, folder / "state.db", timeout=TIMEOUT)  # lint refuses it
    assert run.returncode in (0, 1), run.stderr[-3000:]
    lint = run_cli("lint", str(rs), timeout=TIMEOUT)
    return Outcome(rs, run.stdout, lint.stdout + lint.stderr)


def _alert(output: str, rule: str) -> str:
    start = output.index(f"ALERT: {rule} ")
    end = output.find("\n[", start)
    return output[start:] if end < 0 else output[start:end]


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_escape_is_refused(tmp_path: Path, name: str) -> None:
    """A condition reaching for dunders, builtins or private names is refused at load: the
    run does not start, and lint gives RM208 at the condition."""
    log = tmp_path / "train.log"
    log.write_text("step 1\n", encoding="utf-8")
    rs = tmp_path / "hostile.yaml"
    rs.write_text(_header(log) + f"  - name: escape\n    when: {_quote(CONDITIONS[name])}\n"
                  "    do: [log]\n", encoding="utf-8")
    line, col = _at(rs, _quote(CONDITIONS[name]))
    lint = run_cli("lint", str(rs), timeout=TIMEOUT)
    assert f"hostile.yaml:{line}:{col}: error RM208 " in lint.stdout, lint.stdout + lint.stderr
    run = run_cli("run", str(rs), "--once", "--state", str(tmp_path / "state.db"),
                  timeout=TIMEOUT)
    assert run.returncode not in (0, 1), run.stdout
    assert "RM208" in run.stdout + run.stderr
    assert "ALERT" not in run.stdout


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_escape_is_blocked(templates_outcome: Outcome, name: str) -> None:
    """An SSTI payload renders as a sandbox error (a bare name as "unknown") with nothing
    reached at run time, and lint gives RM682 at the template."""
    block = _alert(templates_outcome.run, f"tmpl-{name}")
    body = block.split("\n", 1)[1]
    if name == "builtins-name":  # a name, not an attribute: no such fact this tick
        assert body.strip() == "unknown", block
    else:
        assert "[template error: SecurityError:" in body, block
        body = body.split("[template error:", 1)[1]
    for leak in ("<class", "<module", "<function", "uid=", "os.py", "__builtins__': {"):
        assert leak not in body, block
    line, col = _at(templates_outcome.ruleset, _quote(TEMPLATES[name]))
    assert f"hostile.yaml:{line}:{col}: error RM682 " in templates_outcome.lint, \
        templates_outcome.lint


@pytest.mark.parametrize("name", sorted(GLOBALS))
def test_framework_globals_are_unknown_facts(templates_outcome: Outcome, name: str) -> None:
    """`{{ config }}`-style globals hold nothing: lint says unknown fact (RM401) and the run
    renders "unknown" or a template error, never a configuration."""
    block = _alert(templates_outcome.run, f"tmpl-{name}")
    body = block.split("\n", 1)[1]
    assert body.strip() == "unknown" or "[template error:" in body, block
    line, col = _at(templates_outcome.ruleset, _quote(GLOBALS[name]))
    assert f"hostile.yaml:{line}:{col}: error RM401 " in templates_outcome.lint, \
        templates_outcome.lint


def test_unsafe_access_is_found_without_rendering() -> None:
    """RM682 comes from the template's syntax tree, so a payload behind a branch the sample
    facts never take is still found."""
    from rulesmon import templates

    tree = templates.parse("{% if false %}{{ cycler.__init__.__globals__ }}{% endif %}")
    assert templates.unsafe_access(tree)
    assert templates.unsafe_access(templates.parse("{{ job.name }} {{ '{0:>5}'.format(1) }}")) \
        == []
