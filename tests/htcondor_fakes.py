"""Stand-in HTCondor tools for tests that need a broken, old or scripted schedd.

Each fake is a real executable shell script in a folder that `RULESMON_CONDOR_BIN` points at:
it appends its argv to `calls.log` and answers with whatever the test put in
`data/<tool>.out`, `.err`, `.rc` (exit status) and `.sleep` (seconds before answering).
"""

from __future__ import annotations

from pathlib import Path

_SCRIPT = """#!/bin/sh
name=$(basename "$0")
here=$(dirname "$0")
printf '%s\\n' "$name $*" >> "$here/calls.log"
d="$here/data"
[ -f "$d/$name.sleep" ] && sleep "$(cat "$d/$name.sleep")"
[ -f "$d/$name.err" ] && cat "$d/$name.err" >&2
[ -f "$d/$name.out" ] && cat "$d/$name.out"
exit "$(cat "$d/$name.rc" 2>/dev/null || echo 0)"
"""
TOOLS = ("condor_q", "condor_history", "condor_submit", "condor_submit_dag", "condor_rm",
         "condor_hold", "condor_release", "condor_vacate_job")


class FakeCondor:
    """A folder of scripted condor tools."""

    def __init__(self, root: Path, tools: tuple[str, ...] = TOOLS) -> None:
        self.bin = root / "fake-condor-bin"
        self.data = self.bin / "data"
        self.data.mkdir(parents=True)
        for tool in tools:
            path = self.bin / tool
            path.write_text(_SCRIPT, encoding="utf-8")
            path.chmod(0o755)

    def answer(self, tool: str, out: str | bytes = "", *, err: str = "", rc: int = 0,
               sleep: float | None = None) -> None:
        """What `tool` prints and returns from now on."""
        data = out.encode() if isinstance(out, str) else out
        (self.data / f"{tool}.out").write_bytes(data)
        (self.data / f"{tool}.err").write_text(err, encoding="utf-8")
        (self.data / f"{tool}.rc").write_text(str(rc), encoding="utf-8")
        sleep_file = self.data / f"{tool}.sleep"
        if sleep is None:
            sleep_file.unlink(missing_ok=True)
        else:
            sleep_file.write_text(str(sleep), encoding="utf-8")

    def calls(self, tool: str | None = None) -> list[str]:
        """Every recorded invocation (`tool arg arg ...`), optionally of one tool."""
        log = self.bin / "calls.log"
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        return [ln for ln in lines if tool is None or ln.split(" ", 1)[0] == tool]
