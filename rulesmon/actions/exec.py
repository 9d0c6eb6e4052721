"""`exec`: run a command without a shell, only under `rulesmon run --allow-exec`."""

from __future__ import annotations

import subprocess

from ..config.models import ExecAction
from ..probes.base import render_path
from .base import ActionContext, Notification

MAX_OUTPUT = 8000


def run(action: ExecAction, ctx: ActionContext, note: Notification) -> None:
    argv = [ctx.render(arg) for arg in action.exec]
    if not ctx.allow_exec:
        ctx.log.warning("exec_skipped", rule=note.rule, command=argv[0],
                        reason="needs rulesmon run --allow-exec")
        ctx.record("exec_skipped", note, " ".join(argv))
        return
    if ctx.dry_run:
        ctx.log.info("would_exec", rule=note.rule, argv=argv)
        return
    cwd = render_path(action.cwd, {}, ctx.base_dir) if action.cwd else ctx.base_dir

    def work() -> None:
        try:
            done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                                  timeout=action.timeout, check=False)
            out = (done.stdout + done.stderr)[-MAX_OUTPUT:]
            ctx.record("exec", note, f"exit {done.returncode}\n{out}")
            ctx.log.info("exec_done", rule=note.rule, command=argv[0], exit_code=done.returncode)
        except subprocess.TimeoutExpired:
            ctx.record("exec", note, f"timed out after {action.timeout:g}s")
            ctx.log.error("exec_timeout", rule=note.rule, command=argv[0])
        except OSError as exc:
            ctx.record("exec", note, f"failed: {exc.strerror or exc}")
            ctx.log.error("exec_failed", rule=note.rule, command=argv[0],
                          error=exc.strerror or str(exc))

    ctx.background(work, f"exec-{note.rule}")
