"""docs/running.md and the systemd unit it describes say only what rulesmon does: the unit
parses with the settings the page explains, and every command line the page shows uses
subcommands and options the CLI has."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import click

from rulesmon.cli import main

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "examples" / "systemd" / "rulesmon@.service"
PAGE = ROOT / "docs" / "running.md"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def _commands(text: str) -> list[str]:
    """Every `rulesmon SUBCOMMAND ...` in the page's code blocks and inline code, up to the
    shell operator or quote that ends it."""
    found = []
    for match in re.finditer(r"rulesmon (?:run|lint|facts|test|history|show|serve|silence|"
                             r"demo|schema|stats|track)\b[^`'\n>&|;]*", text):
        found.append(match.group(0).strip())
    return found


def _check(line: str) -> list[str]:
    """What in one command line the CLI does not have."""
    words = shlex.split(line, comments=True)[1:]
    command: click.Command = main
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    if isinstance(command, click.Group):
        return [f"{line}: no such subcommand"]
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    return [f"{line}: {w} is not an option of rulesmon {command.name}"
            for w in words if w.startswith("-") and w.split("=", 1)[0] not in known]


def test_unit_file_parses_with_the_settings_the_page_explains() -> None:
    """The example unit is an INI file whose [Service] lets rulesmon stop its workers
    (SIGTERM to rulesmon alone) and leaves them to be adopted when rulesmon dies, reloads
    with SIGHUP and restarts only after a failure, not after the run's own verdicts."""
    unit = _unit()
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    assert service["KillMode"] == "process"
    assert service["KillSignal"] == "SIGTERM"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"].split() == ["1", "2", "3"]
    assert int(service["TimeoutStopSec"]) > 0
    assert unit["Install"]["WantedBy"] == "default.target"
    start = shlex.split(service["ExecStart"])
    assert start[0].endswith("/rulesmon") and start[1] == "run"
    assert _check("rulesmon " + " ".join(start[1:])) == []


def test_every_setting_of_the_unit_is_explained_on_the_page() -> None:
    """Each [Service] setting that changes how rulesmon is stopped, reloaded or restarted is
    named in docs/running.md."""
    page = PAGE.read_text(encoding="utf-8")
    service = _unit()["Service"]
    for key in ("KillMode", "KillSignal", "TimeoutStopSec", "ExecReload", "Restart",
                "RestartSec", "RestartPreventExitStatus", "Nice", "EnvironmentFile"):
        assert key in service
        assert f"`{key}=" in page, key


def test_command_lines_on_the_page_are_real_cli_options() -> None:
    """Every rulesmon command line in docs/running.md names a real subcommand and only
    options that subcommand has."""
    commands = _commands(PAGE.read_text(encoding="utf-8"))
    assert len(commands) >= 5
    assert [p for line in commands for p in _check(line)] == []
