"""Every example and builtin ruleset lints clean and carries the schema modeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from rulesmon.config.loader import builtin_names, load
from rulesmon.diagnostics import Severity
from rulesmon.lint import lint_file

from .conftest import ROOT, run_cli

RULESETS = sorted((ROOT / "examples").rglob("*.yaml")) + sorted((ROOT / "rulesets").glob("*.yaml"))
RULESETS = [p for p in RULESETS if not p.name.endswith(".test.yaml")]


@pytest.mark.parametrize("path", RULESETS, ids=lambda p: str(p.relative_to(ROOT)))
def test_ruleset_lints_clean(path: Path) -> None:
    """The ruleset has no error or warning, even with no environment variables set."""
    diags = lint_file(path, env={})
    assert [d.render() for d in diags if d.severity is not Severity.INFO] == []


@pytest.mark.parametrize("path", RULESETS, ids=lambda p: str(p.relative_to(ROOT)))
def test_ruleset_has_schema_modeline(path: Path) -> None:
    """The first line points yaml-language-server at the committed schema, by a path that
    resolves from the file's folder."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    target = (path.parent / first[len(prefix):]).resolve()
    assert target == (ROOT / "schemas" / "ruleset.schema.json").resolve()


def test_builtins_are_the_rulesets_folder() -> None:
    """`builtin:NAME` resolves to the files of rulesets/, which ship in the package."""
    assert builtin_names() == sorted(p.stem for p in (ROOT / "rulesets").glob("*.yaml"))


def test_examples_express_each_source_document() -> None:
    """The examples cover the DAG, GPU worker, SLURM and file-watching documents."""
    names = {p.parent.name for p in (ROOT / "examples").rglob("ruleset.yaml")}
    assert {"htcondor-dag", "gpu-workers", "slurm-eval", "parsl-files"} <= names
    dag = load(ROOT / "examples" / "htcondor-dag" / "ruleset.yaml", env={}).ruleset
    assert dag.jobs["pipeline"].group_by == ["run_uuid"]
    assert {r.name for r in dag.rules} >= {"node-failed-after-retries", "condor-job-held",
                                           "run-finished"}


def test_lint_cli_on_examples_exits_zero() -> None:
    """`rulesmon lint --strict examples rulesets` exits 0 (info findings allowed)."""
    result = run_cli("lint", "--strict", "examples", "rulesets")
    assert result.returncode == 0, result.stdout + result.stderr
