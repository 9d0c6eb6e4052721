"""Writing an attack's files and finding where lint must point in them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def at(path: Path, needle: str) -> tuple[int, int]:
    """1-based line:col of the first `needle` in the file."""
    text = path.read_text(encoding="utf-8")
    i = text.index(needle)
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


#: `rulesmon run --once` without lint's refusal: the ruleset is loaded as `rulesmon run` loaded
#: it before lint's errors applied, so the run-time guards behind lint (the sandbox, the
#: evaluation bounds, the regex helper's time bound) are tested on their own, as a second line
#: of defence for whatever lint might miss one day.
_UNCHECKED = """\
import sys
from pathlib import Path

from rulesmon import display, logsetup
from rulesmon.config.loader import load
from rulesmon.engine import Engine

loaded = load(sys.argv[1])
log = logsetup.setup("info")
shown = display.for_run(loaded, live=False)
engine = Engine(loaded, state_path=Path(sys.argv[2]), log=log, observers=shown.observers)
try:
    with shown:
        code = engine.run(once=True)
        shown.finished(code)
finally:
    engine.close()
sys.exit(code)
"""


def run_unchecked(ruleset: Path, state: Path, timeout: float = 120
                  ) -> subprocess.CompletedProcess[str]:
    """One tick of RULESET in a subprocess, past lint (`rulesmon run` refuses it with exit 2)."""
    refused = subprocess.run([sys.executable, "-m", "rulesmon", "run", str(ruleset), "--once",
                              "--state", str(state)], capture_output=True, text=True,
                             timeout=timeout, check=False)
    assert refused.returncode == 2 and "nothing was run" in refused.stderr, refused.stderr
    return subprocess.run([sys.executable, "-c", _UNCHECKED, str(ruleset), str(state)],
                          capture_output=True, text=True, timeout=timeout, check=False)
