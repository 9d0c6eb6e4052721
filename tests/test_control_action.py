"""The `control` action: permission, dispatch to the job's source, recording, and lint."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from rulesmon.actions import control
from rulesmon.actions.base import ActionContext, Notification
from rulesmon.config.loader import load_text
from rulesmon.config.models import ControlAction
from rulesmon.lint import lint
from rulesmon.probes.base import ProbeError


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, event: str, **kw: Any) -> None:
        self.lines.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._add("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._add("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._add("error", event, **kw)


NOTE = Notification(id="x", kind="fire", rule="stalled", instance="train/42", severity="error",
                    title="t", body="b", at=0.0)


def _ctx(allow: bool, facts: Mapping[str, Any]) -> tuple[ActionContext, list[tuple[str, str]],
                                                          _Log]:
    records: list[tuple[str, str]] = []
    log = _Log()

    def background(fn: Callable[[], None], name: str) -> None:
        fn()

    ctx = ActionContext(
        base_dir=Path("."), sender=None,  # type: ignore[arg-type]
        render=lambda text: text.replace("{{ job.id }}", str(facts.get("job.id"))),
        log=log, record=lambda kind, note, text: records.append((kind, text)),
        request_stop=lambda code: None, background=background, allow_control=allow,
        facts=facts)
    return ctx, records, log


def test_control_needs_allow_control() -> None:
    """Without --allow-control nothing is run; the skip is logged and recorded."""
    called: list[str] = []
    ctx, records, log = _ctx(False, {"job.source": "slurm", "job.id": "42"})
    control.run(ControlAction(control="cancel"), ctx, NOTE)
    assert not called
    assert records == [("control_skipped", "cancel slurm job 42")]
    assert log.lines[0][1] == "control_skipped"


def test_control_calls_the_source_and_records_its_result(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """With permission the job's source runs the verb with the rendered reason."""
    seen: list[tuple[str, str, str | None, float]] = []

    def fake(verb: str, facts: Mapping[str, Any], reason: str | None, timeout: float) -> str:
        seen.append((verb, str(facts["job.id"]), reason, timeout))
        return "cancelled"

    monkeypatch.setattr(control, "controller", lambda source: fake)
    ctx, records, _ = _ctx(True, {"job.source": "slurm", "job.id": "42"})
    control.run(ControlAction(control="cancel", reason="stalled {{ job.id }}", timeout=5),
                ctx, NOTE)
    assert seen == [("cancel", "42", "stalled 42", 5.0)]
    assert records == [("control", "cancel slurm job 42: cancelled")]


def test_control_failure_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduler command that fails becomes a recorded, logged failure."""

    def fake(verb: str, facts: Mapping[str, Any], reason: str | None, timeout: float) -> str:
        raise ProbeError("scancel: Invalid job id specified")

    monkeypatch.setattr(control, "controller", lambda source: fake)
    ctx, records, log = _ctx(True, {"job.source": "slurm", "job.id": "42"})
    control.run(ControlAction(control="cancel"), ctx, NOTE)
    assert records == [("control", "cancel slurm job 42: failed: scancel: Invalid job id "
                        "specified")]
    assert log.lines[-1][0] == "error"


def test_control_of_a_local_job_is_a_recorded_failure() -> None:
    """A job without a scheduler cannot be controlled: recorded, no exception."""
    ctx, records, _ = _ctx(True, {"job.source": "local", "job.id": "7"})
    control.run(ControlAction(control="cancel"), ctx, NOTE)
    assert records == [("control", "cancel local job 7: failed: a local job cannot be "
                        "controlled")]


RULESET = """\
version: 1
name: c
jobs:
  train:
    slurm: {{ids: [1]}}
  sim:
    local: {{command: "true"}}
rules:
  - name: stalled
    when: job.elapsed > 10
    jobs: [{jobs}]
    do:
      - control: {verb}
"""


def _codes(tmp_path: Path, jobs: str, verb: str) -> list[tuple[str, int, int]]:
    path = tmp_path / "c.yaml"
    path.write_text(RULESET.format(jobs=jobs, verb=verb), encoding="utf-8")
    return [(d.code, d.line, d.col) for d in lint([str(path)])]


def test_lint_flags_every_control_action(tmp_path: Path) -> None:
    """A control action on a SLURM job is reported for review (RM507) and nothing else."""
    assert _codes(tmp_path, "train", "cancel") == [("RM507", 13, 9)]


def test_lint_rejects_a_verb_the_scheduler_cannot_do(tmp_path: Path) -> None:
    """`resubmit` on a SLURM job and any control of a local job are errors at the verb."""
    assert ("RM415", 13, 18) in _codes(tmp_path, "train", "resubmit")
    assert ("RM415", 13, 18) in _codes(tmp_path, "train, sim", "cancel")


def test_control_shorthand_without_verb_is_one_clear_error() -> None:
    """`- control` alone says a verb is needed."""
    from rulesmon.diagnostics import RulesetError

    text = RULESET.format(jobs="train", verb="x").replace("- control: x", "- control")
    with pytest.raises(RulesetError) as err:
        load_text(text, "c.yaml")
    assert "control needs a verb" in err.value.diagnostics[0].message
