"""Generated artefacts (schema, reference docs) stay in step with the code."""

from __future__ import annotations

import json
import re

from rulesmon import diagnostics, facts
from rulesmon.config.schema import dumps

from .conftest import ROOT, run_cli


def test_committed_schema_is_current() -> None:
    """schemas/ruleset.schema.json equals what `rulesmon schema` generates from the models."""
    committed = (ROOT / "schemas" / "ruleset.schema.json").read_text(encoding="utf-8")
    assert committed == dumps(), "run `rulesmon schema` and commit the result"


def test_schema_is_draft07_with_descriptions_everywhere() -> None:
    """Editors get draft-07 and a description on every property of every definition."""
    schema = json.loads(dumps())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "$defs" not in json.dumps(schema)
    missing = []
    for name, definition in [("Ruleset", schema), *schema["definitions"].items()]:
        for prop, spec in definition.get("properties", {}).items():
            if not spec.get("description"):
                missing.append(f"{name}.{prop}")
    assert missing == []


def test_schema_uses_if_then_for_actions() -> None:
    """Action items are chosen by their kind key with if/then, never an opaque oneOf."""
    schema = json.loads(dumps())
    items = schema["definitions"]["Rule"]["properties"]["do"]["items"]
    obj = items["anyOf"][1]
    assert [b["if"]["required"][0] for b in obj["allOf"]] == ["notify", "log", "exec", "control",
                                                                 "stop"]
    assert "oneOf" not in json.dumps(schema)


def test_committed_docs_are_current() -> None:
    """docs/diagnostics.md and docs/facts.md equal what `rulesmon docs` generates."""
    assert (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8") == \
        diagnostics.render_docs()
    assert (ROOT / "docs" / "facts.md").read_text(encoding="utf-8") == facts.render_docs()


def test_every_code_has_a_doc_entry_with_both_headings() -> None:
    """Each registered diagnostic code has its section with 'What it detects' and 'Why'."""
    text = diagnostics.render_docs()
    for code in diagnostics.CODES:
        section = text.split(f"## {code}\n", 1)[1].split("\n## ", 1)[0]
        assert "### What it detects" in section
        assert "### Why it matters" in section


def test_every_code_is_emitted_somewhere() -> None:
    """No registered code is dead: each appears in the code that reports it, except a retired
    code, which stays registered (saying so) so that old reports keep their meaning."""
    sources = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "rulesmon").rglob("*.py")
                      if p.name != "diagnostics.py")
    retired = {c for c, spec in diagnostics.CODES.items()
               if spec.what.startswith("No longer reported")}
    dead = [c for c in diagnostics.CODES if c not in sources and c not in retired]
    assert dead == []
    assert all(c not in sources for c in retired)  # a retired code is really never reported


def test_schema_check_flag_detects_staleness(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`rulesmon schema --check -o FILE` fails on a stale file and passes on a fresh one."""
    stale = tmp_path / "s.json"
    stale.write_text("{}", encoding="utf-8")
    assert run_cli("schema", "--check", "-o", str(stale)).returncode == 1
    assert run_cli("schema", "-o", str(stale)).returncode == 0
    assert run_cli("schema", "--check", "-o", str(stale)).returncode == 0


def test_fact_docs_list_every_namespace() -> None:
    """docs/facts.md documents every namespace a condition can use."""
    text = facts.render_docs()
    for ns in ("job", "worker", "node", "log", "files.<name>", "disk", "gpu", "progress",
               "group", "run", "host", "probe.<name>"):
        assert re.search(rf"^## `{re.escape(ns)}`$", text, re.M), ns
