"""The wheel ships what `pip install` users need."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from .conftest import ROOT


def test_wheel_contains_builtin_rulesets(tmp_path: Path) -> None:
    """A built wheel carries every rulesets/*.yaml, so `extends: builtin:NAME` works after a
    plain `pip install`."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("rulesmon-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for ruleset in (ROOT / "rulesets").glob("*.yaml"):
        assert f"rulesmon/rulesets/{ruleset.name}" in names
    assert "rulesmon/py.typed" in names
