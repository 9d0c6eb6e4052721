"""The signal watchdog process of `rulesmon run` (see rulesmon/signals.py, layer 2).

Run as a script by `signals.HardStop` (`python -I -S _watchdog.py ...`): standard library
only, nothing of rulesmon imported, so it starts in milliseconds and shares no state with the
process it watches.

Arguments: rulesmon's pid, the fd of the signal pipe (rulesmon's `signal.set_wakeup_fd`),
then the seconds FIRST, EXTEND, CAP and GRACE. Lines on stdin: `w PID` a launched worker (the
leader of its own process group), `a` a heartbeat of rulesmon's shutdown. End of file on stdin
(rulesmon ended, however it ended) ends the watchdog. Once a SIGINT or SIGTERM byte arrives on
the signal pipe, rulesmon has FIRST seconds, extended to EXTEND after each heartbeat but never
beyond CAP, to end by itself; otherwise its workers' process groups get SIGTERM, SIGKILL after
GRACE, and rulesmon gets SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time


def stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name, None when there is no process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:  # noqa: PTH123 (pathlib: slow import)
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def started(pid: int) -> bytes | None:
    """The process's start time (in clock ticks since boot), None when there is none."""
    fields = stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def running(pid: int) -> bool:
    """The group's leader still runs (not a zombie waiting for rulesmon to reap it), or it is
    gone and the group lives on."""
    fields = stat(pid)
    if fields is not None:
        return fields[0] != b"Z"
    try:
        os.killpg(pid, 0)
    except OSError:
        return False
    return True


def ours(workers: dict[int, bytes | None]) -> list[int]:
    """Registered process groups that still exist and are still the ones registered: the
    leader is the same process (same start time), or gone while its group lives on (a
    group's id is not reused while the group exists)."""
    out = []
    for pid, start in workers.items():
        now = started(pid)
        if now is not None and now != start:
            continue  # the pid is another process now
        try:
            os.killpg(pid, 0)
        except OSError:
            continue
        out.append(pid)
    return out


def kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.killpg(pid, sig)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is rulesmon's to handle
    engine, sig_fd = int(argv[0]), int(argv[1])
    first, extend, cap, grace = (float(a) for a in argv[2:6])
    workers: dict[int, bytes | None] = {}
    t0: float | None = None
    deadline: float | None = None
    buf = b""
    fds = [0, sig_fd]
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = select.select(fds, [], [], wait)[0]
        now = time.monotonic()
        if 0 in ready:
            data = os.read(0, 4096)
            if not data:
                return 0
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                word = line.split()
                if word[:1] == [b"w"] and len(word) == 2 and word[1].isdigit():
                    workers[int(word[1])] = started(int(word[1]))
                elif word[:1] == [b"a"] and t0 is not None and deadline is not None:
                    deadline = min(t0 + cap, max(deadline, now + extend))
        if sig_fd in ready:
            data = os.read(sig_fd, 512)
            if not data:
                fds.remove(sig_fd)
            elif t0 is None and (signal.SIGINT in data or signal.SIGTERM in data):
                t0, deadline = now, now + first
        if deadline is not None and time.monotonic() >= deadline:
            kill(ours(workers), signal.SIGTERM)
            until = time.monotonic() + grace
            while time.monotonic() < until and any(running(pid) for pid in ours(workers)):
                time.sleep(0.02)
            kill(ours(workers), signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(engine, signal.SIGKILL)
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
