"""One `rulesmon run` per state database: a kernel lock on `<state>.lock` beside it.

Two runs on one state file would both launch the workers and both deliver what is owed, so
the second refuses at once, before it launches or sends anything. The lock is `flock` on a
file of its own (never on the database: SQLite's own POSIX locks on it would be dropped by
any close of another descriptor of the file). The kernel releases it when the process dies,
however it dies, so the lock a `kill -9`-ed run leaves behind is simply taken by the next
one; nothing needs cleaning up. Two runs started at the same moment race for one `flock`
call, which the kernel decides: exactly one gets it. The descriptor is not inherited by
launched workers (Python opens it close-on-exec), so a worker that outlives rulesmon never
keeps the state locked.

The holder's pid, host and start time are written into the file for the refusal message
only; they decide nothing. On NFS, `flock` is a lock of the server's (lockd) when the mount
has locking, and only of the local host under `nolock`: see docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from . import jsonout

#: How long a run that lost the race waits for the holder to write who it is (the message
#: only; the holder writes it right after taking the lock).
_WHO_WAIT = 5.0


class StateLockError(Exception):
    """This run may not use the state database; the message is one line for the user."""


class StateInUse(StateLockError):
    """Another live rulesmon holds the state database."""


def lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".lock")


def shown(path: Path) -> str:
    """A path as the user wrote it relative to the working folder, else absolute."""
    full = path.absolute()
    try:
        return str(full.relative_to(Path.cwd()))
    except ValueError:
        return str(full)


class StateLock:
    """The exclusive lock of one state database, held until `release` or the process ends."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.path = lock_path(state)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise StateInUse naming its holder, or StateLockError when the
        lock file cannot be made (a read-only folder)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            # mkdir of a path that is a file says "file exists": it is not a folder
            why = "not a folder" if isinstance(exc, FileExistsError) else _reason(exc)
            where = shown(Path(exc.filename)) if exc.filename else shown(self.path)
            raise StateLockError(f"state {shown(self.state)} cannot be used: {why} ({where}); "
                                 "give this run a writable --state") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateInUse(self._refusal()) from None
            raise StateLockError(f"state {shown(self.state)} cannot be locked: {_reason(exc)}"
                                 " (a file system without locks?); give this run a --state on "
                                 "a local disk") from None
        self._fd = fd
        who = jsonout.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                          "started": time.time()}).encode()
        with contextlib.suppress(OSError):  # who holds it is for the message only
            os.ftruncate(fd, 0)
            os.pwrite(fd, who + b"\n", 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale name for a reader that sees the file later
            os.close(fd)  # closing the descriptor releases the flock

    def _refusal(self) -> str:
        holder = self._holder()
        return (f"state {shown(self.state)} is in use by {holder}; stop it, or give this run "
                "its own --state")

    def _holder(self) -> str:
        """Who holds the lock, as its file says (the holder may not have written it yet)."""
        deadline = time.monotonic() + _WHO_WAIT
        while True:
            try:
                info = json.loads(self.path.read_text(encoding="utf-8") or "null")
            except (OSError, ValueError):
                info = None
            if isinstance(info, dict) and isinstance(info.get("pid"), int):
                break
            if time.monotonic() >= deadline:
                return "another rulesmon (pid unknown)"
            time.sleep(0.05)
        text = f"rulesmon pid {info['pid']}"
        if isinstance(info.get("host"), str):
            text += f" on {info['host']}"
        if isinstance(info.get("started"), (int, float)):
            started = float(info["started"])
            fmt = "%H:%M:%S" if time.time() - started < 86400 else "%Y-%m-%d %H:%M:%S"
            text += f" since {time.strftime(fmt, time.localtime(started))}"
        return text


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)
