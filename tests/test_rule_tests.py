"""`rulesmon test`: rule unit tests drive the real engine over timed facts."""

from __future__ import annotations

import os
from pathlib import Path

from rulesmon.testing import expand

from .conftest import ROOT, run_cli

RULES = ROOT / "tests" / "rules"


def test_state_machine_timelines_pass() -> None:
    """for, keep_firing_for, clear_when, repeat with backoff, resolve values, unknown data,
    N-of-M, once, absent_for, stale_for and changed() behave as their timelines say."""
    result = run_cli("test", str(RULES / "states.yaml"), str(RULES / "states.test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 passed, 0 failed" in result.stdout


def test_a_wrong_expectation_prints_a_diff() -> None:
    """A failing case names the missing and the unexpected transition."""
    result = run_cli("test", str(RULES / "states.yaml"), str(RULES / "broken.test.yaml"))
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "missing: tick 3 fire hot [train/1]" in result.stdout
    assert "unexpected: tick 4 fire hot [train/1]" in result.stdout


def test_a_ruleset_that_does_not_lint_fails_its_tests(tmp_path: Path) -> None:
    """Rule tests refuse to run against a ruleset with lint errors."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: b\nrules:\n  - {name: x, when: job.stat == 1}\n",
                   encoding="utf-8")
    result = run_cli("test", str(bad), str(RULES / "broken.test.yaml"))
    assert result.returncode == 2
    assert "bad.yaml:4:21: error RM401" in result.stderr and "not run" in result.stderr
    assert "PASS" not in result.stdout and "FAIL" not in result.stdout


def test_a_bad_test_file_is_a_located_error(tmp_path: Path) -> None:
    """A malformed test file gets a file:line:col error, not a traceback."""
    t = tmp_path / "t.test.yaml"
    t.write_text("tests:\n  - name: x\n    seriess: {}\n", encoding="utf-8")
    result = run_cli("test", str(RULES / "states.yaml"), str(t))
    assert result.returncode == 2
    assert f"{t}:3:5: error RM201" in result.stderr
    assert "Traceback" not in result.stderr


def test_series_notation() -> None:
    """Series strings expand like promtool's: `_` missing, `a+bxN` ramps, `axN` repeats."""
    missing = expand("_")[0]
    assert expand("1 2 _ 3") == [1, 2, missing, 3]
    assert expand("0+10x3") == [0, 10, 20, 30]
    assert expand("5x2 RUNNING true") == [5, 5, 5, "RUNNING", True]
    assert expand(["a", None]) == ["a", missing]


def test_keep_firing_for_counts_from_the_first_false_evaluation_like_prometheus() -> None:
    """keep_firing_for: 3m on a condition last true at 4m resolves at 8m, as Prometheus's
    KeepFiringSince does, minute by minute (tests/rules/keep_firing.test.yaml)."""
    result = run_cli("test", str(RULES / "keep_firing.yaml"),
                     str(RULES / "keep_firing.test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed, 0 failed" in result.stdout


def test_the_first_false_evaluation_survives_a_restart() -> None:
    """The start of a keep_firing_for count is durable state: restored from JSON after a
    restart, the alert resolves when it would have without the restart."""
    from rulesmon.rules.state import AlertState, Timing, step

    t = Timing(keep_firing_for=180.0)
    state = AlertState()
    kinds: list[tuple[int, str]] = []
    for minute in range(10):
        if minute == 6:  # rulesmon restarted: only what was written comes back
            state = AlertState.from_json(state.to_json())
        s = step(t, minute <= 4, minute * 60.0, 60.0, state)
        state = s.state
        kinds += [(minute, o.kind) for o in s.owed]
    assert kinds == [(0, "fire"), (8, "resolve")]


def test_a_rule_on_new_files_fires_for_every_tick_with_new_files() -> None:
    """A rule reading files.<name>.new_count or .new fires again on every tick that has new
    files, also right after another one, each notification naming that tick's files."""
    result = run_cli("test", str(RULES / "new_files.yaml"), str(RULES / "new_files.test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 0 failed" in result.stdout


def test_the_parsl_style_example_calls_back_for_files_new_a_tick_apart() -> None:
    """examples/parsl-files: results A, B and C new on consecutive ticks fire new-results
    three times (the callback for B is no longer lost), then an image fires new-images."""
    result = run_cli("test", str(ROOT / "examples" / "parsl-files" / "ruleset.yaml"),
                     str(RULES / "parsl_example.test.yaml"),
                     env=dict(os.environ, EMAIL_URL=""))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout
