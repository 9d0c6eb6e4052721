"""Message templates: sandboxed, strict, bounded, with rulesmon's filters."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from rulesmon import templates


def test_filters_format_facts() -> None:
    """pct, duration, bytes and tail turn raw facts into readable text."""
    out = templates.render(
        "{{ a | frac }} {{ b | pct }} {{ c | duration }} {{ d | bytes }} {{ e | tail(2) }} "
        "{{ f | pct }}",
        {"a": 0.873, "b": 42.0, "c": 292, "d": 1_500_000, "e": "1\n2\n3", "f": 1.0})
    assert out == "87% 42% 4m 52s 1.5 MB 2\n3 1%"


def test_strict_undefined() -> None:
    """A missing variable is an error, never an empty string in a notification."""
    with pytest.raises(UndefinedError):
        templates.render("{{ job.name }}", {})


def test_sandbox_blocks_attribute_escape() -> None:
    """Dunder attribute access is refused by the sandbox."""
    with pytest.raises(SecurityError):
        templates.render("{{ ''.__class__.__mro__ }}", {})


def test_repetition_is_bounded() -> None:
    """`'x' * 10**8` is refused instead of allocating 100 MB."""
    with pytest.raises(SecurityError):
        templates.render("{{ 'x' * 100000000 }}", {})


def test_output_is_bounded() -> None:
    """Output longer than the bound is truncated with a note."""
    out = templates.render("{% for i in range(3000) %}0123456789{% endfor %}", {})
    assert len(out) < templates.MAX_OUTPUT + 100
    assert out.endswith("characters]")


def test_unknown_filter_fails_at_parse() -> None:
    """An unknown filter is found when the template is loaded, not when it is sent."""
    with pytest.raises(templates.TemplateCheckError, match="No filter named 'pcnt'"):
        templates.parse("{{ job.cpu_eff | pcnt }}")


def test_paths_lists_fact_chains() -> None:
    """The dotted paths a template reads are found, loop variables excluded."""
    tree = templates.parse(
        "{{ job.name }} {% for f in files.results.new %}{{ f }}{% endfor %} "
        "{{ node.vars['run_uuid'] }}")
    assert set(templates.paths(tree)) == {("job", "name"), ("files", "results", "new"),
                                          ("node", "vars", "run_uuid")}


def test_fact_keys_come_before_dict_methods() -> None:
    """An extractor or file set named like a dict method (`items`, `keys`, `values`) is the
    fact, in strict and run-time rendering; a method is still found where no such key is,
    and a key never opens a way past the sandbox."""
    from rulesmon.engine import nest

    facts = nest({"log.extractors.items.count": 3, "files.values.count": 2,
                  "job.labels": {"team": "nlp"}})
    text = "{{ log.extractors.items.count }} {{ files.values.count }}"
    assert templates.render(text, facts) == "3 2"
    assert templates.render(text, facts, strict=False) == "3 2"
    assert templates.render("{% for k, v in job.labels.items() %}{{ k }}={{ v }}{% endfor %}",
                            facts) == "team=nlp"
    assert templates.render("{{ log.extractors.nothing.count }}", facts, strict=False) == \
        "unknown"
    with pytest.raises(SecurityError):
        templates.render("{{ d.__class__.__mro__ }}", {"d": {"x": 1}})
