"""A bound on the descriptors that followed log files hold open at once.

A glob over thousands of logs would otherwise hold one descriptor per file for as long as it is
followed; past the process's `RLIMIT_NOFILE` every `open()` in the process fails with EMFILE:
the probes that read `/proc`, the history's sqlite, a notification's socket. So the tailers
(`tail.Tailer`) take their descriptors from one `HandlePool` per process, which closes the
least recently used one when a new one would pass its limit. A tailer whose descriptor was
closed opens its file again by path the next time it reads, and checks that the path still
names the same file (device and inode) before reading on from its offset; a file renamed
while its descriptor was closed is looked for beside its path (logrotate's `app.log.1`), by
the same identity.

The limit is half the soft `RLIMIT_NOFILE`, and at most that limit less `HEADROOM`: the rest
stays free for sqlite, sockets and the other probes' subprocess pipes. `raise_nofile_limit()`
lifts the soft limit to the hard one at start, as many daemons do, so a raised hard limit gives
more room; the pool does not rely on it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import threading
from collections import OrderedDict
from typing import Protocol

HEADROOM = 256  #: descriptors always left for everything but followed logs
MIN_LIMIT = 8  #: a pool never holds fewer than this (a tailer may pin two at once)
RAISE_TO = 1 << 16  #: the soft limit raised at start goes no higher than this
SHRINK = 16  #: handles closed at once when an open() fails with EMFILE or ENFILE anyway

#: errno values that mean "no descriptor left" (this process's or the system's)
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})


class Handle(Protocol):
    """What the pool needs of an open file: its descriptor (-1 once closed) and how many
    reads are using it now (a handle in use is never closed under its reader)."""

    fd: int
    busy: int


def nofile_limits() -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE; a generous guess where the platform has none."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 1024, 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    return (1 << 20 if soft == infinity else soft), (1 << 20 if hard == infinity else hard)


def raise_nofile_limit() -> tuple[int, int]:
    """Lift the soft RLIMIT_NOFILE to the hard limit (at most RAISE_TO) where allowed; never
    raises. Returns the
    (soft, hard) limits in force afterwards."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # at most RAISE_TO: launched workers inherit the soft limit, and a program that
        # still uses select() breaks on descriptors past 1024 only if it opens that many
        target = hard if hard != resource.RLIM_INFINITY else RAISE_TO
        target = min(target, max(soft, RAISE_TO)) if soft != resource.RLIM_INFINITY else soft
        if soft != target:  # refused (ValueError) where the limit is more than allowed
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except ImportError:
        pass
    return nofile_limits()


def default_limit() -> int:
    """Half the soft limit, and at most the soft limit less HEADROOM."""
    soft, _ = nofile_limits()
    return max(MIN_LIMIT, min(soft // 2, soft - HEADROOM))


class HandlePool:
    """Open handles of followed files, least recently used first; at most `limit` open."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = max(MIN_LIMIT, limit if limit is not None else default_limit())
        self._open: OrderedDict[Handle, None] = OrderedDict()
        self._lock = threading.Lock()
        #: descriptors closed to make room (a figure for benchmarks and tests)
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._open)

    def reserve(self) -> None:
        """Make room for one more open handle: close the least recently used idle ones."""
        with self._lock:
            self._evict(len(self._open) - self.limit + 1)

    def shrink(self) -> None:
        """An open() failed with EMFILE or ENFILE all the same (something else in the process
        holds many): give back SHRINK more handles."""
        with self._lock:
            self._evict(SHRINK)

    def add(self, handle: Handle) -> None:
        """A handle just opened, in use by its reader until `release`."""
        with self._lock:
            handle.busy += 1
            self._open[handle] = None
            self._open.move_to_end(handle)

    def claim(self, handle: Handle) -> bool:
        """Use the handle if its descriptor is still open (then it is not closed until
        `release`, and is the last to be closed to make room); False if the pool closed it.
        One step under the lock, so another thread cannot close it in between."""
        with self._lock:
            if handle.fd < 0:
                return False
            handle.busy += 1
            if handle in self._open:
                self._open.move_to_end(handle)
            return True

    def release(self, handle: Handle) -> None:
        """The reader is done with the handle for now: it may be closed to make room."""
        with self._lock:
            handle.busy -= 1

    def discard(self, handle: Handle) -> None:
        """The handle's owner closes it (or has closed it): no longer counted."""
        with self._lock:
            self._open.pop(handle, None)

    def _evict(self, count: int) -> None:
        if count <= 0:
            return
        victims: list[Handle] = []
        for handle in self._open:  # least recently used first
            if len(victims) >= count:
                break
            if not handle.busy:
                victims.append(handle)
        for handle in victims:
            del self._open[handle]
            fd, handle.fd = handle.fd, -1
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.evictions += len(victims)


@functools.cache  # one per process; a race at the first call would only make a spare pool
def default_pool() -> HandlePool:
    """The process's pool, made on first use (after `raise_nofile_limit`, if it is called)."""
    return HandlePool()
