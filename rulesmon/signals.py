"""SIGINT and SIGTERM end `rulesmon run` within about 2 s, whatever the tick is doing.

Two layers, because no single one works in every case:

1. **In Python, on the main thread** (`Guard`). The tick stays on the main thread and the
   handler *raises* `Interrupted` into it, the way Ctrl-C raises KeyboardInterrupt: a
   condition or template being evaluated, a probe being waited for (`Future.result`), the
   sleep between ticks all stop at once. Python's own regex engine checks for signals while it
   backtracks, so a catastrophic pattern evaluated on the main thread is cut off too. What
   must not be cut in half is shielded (`Guard.shielded`): the tick's one SQLite transaction
   and the launch of workers; the signal is acted on as soon as the shielded part ends. A tick
   that was cut off is not committed, which is right for a restart: its next run resumes from
   the last complete tick. The engine then does the usual clean shutdown with every wait
   bounded (workers get SIGTERM and are SIGKILLed after `SIGNAL_GRACE`, notifications are
   drained only until `BUDGET`, `exec` commands are not waited for), and the command exits
   with 128+signal without waiting for threads still stuck in a probe; the commands it still
   runs in its own process group get SIGTERM first (`exit_now`, `stop_children`). The state
   database needs no care for threads: its connection allows use from any thread, but only
   the main thread uses it, before and after a signal alike.

   Why not move the tick to a worker thread and keep the main thread free, as the obvious
   design would? Because CPython's regex engine (and any other long C loop) holds the GIL
   while it runs: a stuck tick on a worker thread starves the main thread completely and its
   signal handler never runs (measured: a `((a+))+$` match on a thread keeps SIGTERM's Python
   handler from running for ever, while on the main thread the handler runs within
   milliseconds). The same starvation defeats a Python watchdog *thread*.

2. **Outside Python** (`HardStop`), for the case layer 1 cannot reach: the interpreter wedged
   in C code holding the GIL (a backtracking regex in a probe thread, a huge string built in
   one C call, a C extension that never returns). The C-level signal handler still writes the
   signal number to `signal.set_wakeup_fd` without needing the GIL; the read end of that pipe
   belongs to a tiny watchdog process started with the run. If rulesmon has not shown progress
   `HARD_FIRST` seconds after the signal (its shutdown sends heartbeats), the watchdog stops
   the launched workers itself (SIGTERM to each worker's process group, SIGKILL after
   `HARD_GRACE`) and kills rulesmon with SIGKILL; it only ever signals process groups whose
   leader is still the process rulesmon registered (checked by its start time in /proc). In
   that last-resort case the exit status is "killed by SIGKILL" (137), not 128+signal: no code
   of rulesmon could run to choose it. The watchdog exits by itself when rulesmon exits (end of
   file on its pipe), however rulesmon ends.

SIGHUP asks for a reload of the ruleset (rulesmon/reload.py), as Prometheus and Alertmanager
do. Its handler never raises: it records the request and wakes the loop, which applies it
between two ticks, so a reload never cuts a tick, a commit or a launch in half; SIGHUPs that
arrive before the loop gets to it are one reload. One exception keeps a terminal's old
meaning: a SIGHUP that comes with the loss of rulesmon's controlling terminal (the terminal
window was closed) is a hangup, not a request, and ends the run as SIGTERM does (129), unless
SIGHUP was ignored when the run started (`nohup`), in which case it is ignored. After the run,
while the state database is closed, SIGHUP is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

#: From the signal to the exit, for a run whose Python code still runs.
BUDGET = 1.5
#: How long launched workers get between SIGTERM and SIGKILL after a signal (a `stop` action
#: still gives them the probe's own grace).
SIGNAL_GRACE = 1.0
#: The watchdog acts when rulesmon shows no progress this long after the signal ...
HARD_FIRST = 1.5
#: ... or this long after its last heartbeat during the shutdown ...
HARD_EXTEND = 2.5
#: ... and in any case this long after the signal.
HARD_CAP = 6.0
#: Workers' SIGTERM to SIGKILL in the watchdog's last resort.
HARD_GRACE = 0.3

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Raised into the main thread by a SIGINT/SIGTERM handler: the tick stops where it is.

    A BaseException, like KeyboardInterrupt, so `except Exception` clauses (a failing rule, a
    failing observer) let it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Guard:
    """SIGINT/SIGTERM (and SIGHUP) handlers for one run, installed on the main thread.

    `on_signal(signum)` is called first (record the signal, wake the loop); then, while the
    guard is `armed` and not inside a `shielded()` block, the handler raises `Interrupted`.
    SIGHUP calls `on_reload()` instead and never raises (a terminal's hangup aside: see the
    module docstring)."""

    def __init__(self, on_signal: Callable[[int], None],
                 on_raise: Callable[[], None] | None = None,
                 on_reload: Callable[[], None] | None = None) -> None:
        self.on_signal = on_signal
        #: called just before `Interrupted` is raised (a heartbeat for the watchdog: Python
        #: runs and the shutdown is on its way)
        self.on_raise = on_raise
        #: SIGHUP: a reload is asked for (None: SIGHUP is left as it was)
        self.on_reload = on_reload
        #: the run started with a controlling terminal (a hangup can then be told apart)
        self._had_tty = False
        #: SIGHUP was ignored when the run started (`nohup`): a hangup stays ignored
        self._hup_ignored = False
        self.armed = False
        self.signum: int | None = None
        #: time.monotonic() of the first signal
        self.at: float | None = None
        self._shield = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        if self.on_reload is not None:
            self._had_tty = controlling_terminal()
            self._previous[signal.SIGHUP] = previous = signal.signal(signal.SIGHUP,
                                                                     self._handle_hup)
            self._hup_ignored = previous == signal.SIG_IGN

    def uninstall(self) -> None:
        self.armed = False
        for sig, handler in self._previous.items():
            # SIGHUP: the run is closing its state database; a late reload request (or
            # hangup) must not kill it half-way, as SIGHUP's default action would
            late_hup = sig == signal.SIGHUP and handler == signal.SIG_DFL
            signal.signal(sig, signal.SIG_IGN if late_hup else handler)
        self._previous.clear()

    def _handle_hup(self, signum: int, frame: FrameType | None) -> None:
        if self._had_tty and not controlling_terminal():  # the terminal was closed
            self._had_tty = False  # once: a later SIGHUP (kill -HUP) asks for a reload
            if not self._hup_ignored:
                self._handle(signum, frame)
            return
        if self.on_reload is not None:
            self.on_reload()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum, self.at = signum, time.monotonic()
        self.on_signal(signum)
        if self.armed and not self._shield:
            self._raise(signum)

    def _raise(self, signum: int) -> None:
        self.armed = False  # once: the shutdown that follows is not interrupted
        if self.on_raise is not None:
            self.on_raise()
        raise Interrupted(signum)

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """A part that is never cut in half; a signal received inside acts when it ends."""
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1
        if not self._shield and self.armed and self.signum is not None:
            self._raise(self.signum)


def controlling_terminal() -> bool:
    """This process has a controlling terminal that still answers: false once a hangup took
    it away (the terminal window was closed), and for a run without one (systemd, setsid)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


_WATCHDOG = Path(__file__).with_name("_watchdog.py")


class HardStop:
    """The watchdog process of one run (see the module docstring, layer 2).

    Create it on the main thread; `register` each launched worker (the leader of its own
    process group), send `alive` heartbeats during the shutdown, `close` at the end."""

    def __init__(self, *, first: float = HARD_FIRST, extend: float = HARD_EXTEND,
                 cap: float = HARD_CAP, grace: float = HARD_GRACE) -> None:
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_w, False)
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_WATCHDOG), str(os.getpid()), str(sig_r),
                 str(first), str(extend), str(cap), str(grace)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(sig_r,), start_new_session=True, close_fds=True)
        except OSError:
            self.proc = None
            os.close(sig_w)
            sig_w = -1
        finally:
            os.close(sig_r)
        if self.proc is not None and self.proc.stdin is not None:  # never block on it
            os.set_blocking(self.proc.stdin.fileno(), False)
        self._sig_w = sig_w
        self._previous_fd: int | None = None
        if sig_w >= 0:
            self._previous_fd = signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _send(self, line: str) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None:
            return
        # one write of a short line: atomic on a pipe, so no lock (a signal handler calls this)
        with contextlib.suppress(OSError, ValueError):
            os.write(proc.stdin.fileno(), line.encode() + b"\n")

    def register(self, pid: int) -> None:
        """A launched worker, the leader of its own process group."""
        self._send(f"w {int(pid)}")

    def alive(self) -> None:
        """A heartbeat: the shutdown is progressing in Python."""
        self._send("a")

    def close(self) -> None:
        if self._sig_w >= 0:
            with contextlib.suppress(ValueError):  # not on the main thread: leave it
                current = signal.set_wakeup_fd(self._previous_fd if self._previous_fd
                                               is not None else -1)
                if current != self._sig_w:  # someone else's since: put it back
                    signal.set_wakeup_fd(current)
            os.close(self._sig_w)
            self._sig_w = -1
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # end of file: the watchdog exits
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_children() -> None:
    """SIGTERM the commands rulesmon itself still runs in its own process group (a hung
    `squeue`, an `exec` action's command): what Ctrl-C in a terminal does to them anyway.
    Launched workers have their own sessions and the engine stopped them already."""
    try:
        import psutil

        me = os.getpgrp()
        children = psutil.Process().children()
    except Exception:
        return
    for child in children:
        with contextlib.suppress(Exception):
            if os.getpgid(child.pid) == me:
                child.terminate()


def exit_now(code: int) -> None:
    """After a signal: stop the commands rulesmon still runs (`stop_children`), then exit
    with `code` without joining threads still stuck (a probe waiting for a hung scheduler
    command would otherwise hold the interpreter's exit). Returns when no such thread is
    left: the ordinary exit is then just as quick."""
    stop_children()
    stuck = [t for t in threading.enumerate()
             if t is not threading.current_thread() and t.is_alive() and not t.daemon]
    if not stuck:
        return
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
