"""NVIDIA Xid errors from the kernel: the `NVRM: Xid (PCI:0000:3b:00): 79, ...` lines the
driver logs when a GPU faults (79: fallen off the bus, 48: double-bit ECC, 13/31/43: an
application's fault...).

Read from `dmesg` where this user may read the ring buffer, and from readable kernel log files
(`/var/log/kern.log`, `syslog`, `messages`, followed incrementally by a `Tailer`, so rotation is
handled and nothing is read twice). The kernel is asked at most every `interval` seconds. An
event seen in both is counted once. Each event has its GPU's PCI address and, where the line
says, a time: the ring buffer's seconds since boot, or the syslog stamp.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil

from .tail import FINGERPRINT, Tailer

KERNEL_LOGS = (Path("/var/log/kern.log"), Path("/var/log/syslog"), Path("/var/log/messages"))
DMESG: tuple[str, ...] = ("dmesg",)
INTERVAL = 60.0  #: seconds between two looks at the kernel's messages
KERNEL_LOG_TAIL = 4 << 20  #: a kernel log file is read from this many bytes before its end
MAX_EVENTS = 10_000  #: events kept (the most recent)
SAME_EVENT = 5.0  #: events with the same text this close in time are one (dmesg and a file)

_XID = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{1,2}:"
                  r"[0-9A-Fa-f]{1,2})(?:\.[0-7])?\): (?P<code>\d+)")
_UPTIME = re.compile(r"\[\s*(\d+\.\d+)\]")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:?\d\d|Z)?)")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)")

BusId = tuple[int, int, int]  #: PCI domain, bus, device


@dataclass(frozen=True)
class XidEvent:
    """One Xid report: the GPU's PCI address, the Xid code, when (None: unknown), the line."""

    bus: BusId
    code: int
    time: float | None
    line: str


def bus_id(text: str | bytes) -> BusId | None:
    """`0000:3b:00`, NVML's `00000000:3B:00.0` → (0, 0x3b, 0); None when not an address."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    parts = text.strip().rstrip("\x00").split(".")[0].split(":")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None


def parse_line(line: str, boot_time: float, year: int | None = None) -> XidEvent | None:
    """The Xid event of one kernel message line, or None."""
    m = _XID.search(line)
    if m is None:
        return None
    bus = bus_id(m.group("bus"))
    if bus is None:
        return None
    when: float | None = None
    head = line[: m.start()]
    up = _UPTIME.search(head)
    if up is not None:
        when = boot_time + float(up.group(1))
    elif (iso := _ISO.match(line)) is not None:
        try:
            when = datetime.fromisoformat(iso.group(1).replace("Z", "+00:00")).timestamp()
        except ValueError:
            when = None
    elif (classic := _SYSLOG.match(line)) is not None:
        try:
            stamp = datetime.strptime(f"{year or datetime.now().year} {classic.group(1)}",
                                      "%Y %b %d %H:%M:%S")
            when = stamp.timestamp()
        except ValueError:
            when = None
    return XidEvent(bus, int(m.group("code")), when, line[m.start():].strip()[:300])


@dataclass
class XidReader:
    """The host's Xid events, refreshed at most every `interval` seconds."""

    logs: Sequence[Path] = KERNEL_LOGS
    dmesg: Sequence[str] | None = DMESG
    interval: float = INTERVAL
    boot_time: float = field(default_factory=psutil.boot_time)
    #: whether any source could be read at the last look (else Xid facts are unknown)
    readable: bool = False
    _events: deque[XidEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    _seen: dict[tuple[BusId, int, str], list[float | None]] = field(default_factory=dict)
    _tailers: dict[Path, Tailer] = field(default_factory=dict)
    _checked: float | None = None

    def events(self, now: float | None = None) -> list[XidEvent]:
        """Every Xid event known, in the order found (an event in several sources once)."""
        now = time.monotonic() if now is None else now
        if self._checked is None or now - self._checked >= self.interval:
            self._checked = now
            self._refresh()
        return list(self._events)

    def add(self, event: XidEvent) -> None:
        """Record an event unless it is already known (the same line within SAME_EVENT)."""
        key = (event.bus, event.code, event.line)
        times = self._seen.setdefault(key, [])
        for t in times:
            if t is None or event.time is None or abs(t - event.time) <= SAME_EVENT:
                return
        times.append(event.time)
        if len(self._events) == self._events.maxlen:
            self._seen.clear()  # rare: a flood of Xids; forget the index with the oldest
        self._events.append(event)

    def _refresh(self) -> None:
        readable = False
        if self.dmesg:
            try:
                done = subprocess.run(list(self.dmesg), capture_output=True, timeout=5,
                                      check=False, stdin=subprocess.DEVNULL)
                if done.returncode == 0:
                    readable = True
                    text = done.stdout.decode("utf-8", "replace")
                    for line in text.splitlines():
                        if "NVRM: Xid" in line and (
                                e := parse_line(line, self.boot_time)) is not None:
                            self.add(e)
            except (OSError, subprocess.SubprocessError):
                pass  # no dmesg, or not permitted (kernel.dmesg_restrict)
        for path in self.logs:
            tailer = self._tailers.get(path)
            if tailer is None:
                tailer = self._open(path)
                if tailer is None:
                    continue
            for lines in tailer.batches():
                for line in lines:
                    if "NVRM: Xid" in line and (
                            e := parse_line(line, self.boot_time)) is not None:
                        self.add(e)
            readable = readable or tailer.error is None
        self.readable = readable

    def _open(self, path: Path) -> Tailer | None:
        """A tailer for a kernel log, started at its last KERNEL_LOG_TAIL bytes."""
        resume: dict[tuple[int, int], tuple[int, bytes, str]] = {}
        try:
            st = path.stat()
            if st.st_size > KERNEL_LOG_TAIL:
                with path.open("rb") as fh:
                    resume[(st.st_dev, st.st_ino)] = (st.st_size - KERNEL_LOG_TAIL,
                                                      fh.read(FINGERPRINT), "")
        except OSError:
            return None
        tailer = self._tailers[path] = Tailer(path, resume=resume)
        return tailer

    def close(self) -> None:
        for tailer in self._tailers.values():
            tailer.close()
        self._tailers.clear()


def summarize(events: Iterable[XidEvent], buses: set[BusId], since: float | None) -> dict[
        str, int | str]:
    """`gpu.xid_errors`, `gpu.last_xid` and `gpu.last_xid_line` for the GPUs at these PCI
    addresses, counting events since `since` (those without a time always count)."""
    mine = [e for e in events if e.bus in buses
            and (since is None or e.time is None or e.time >= since)]
    out: dict[str, int | str] = {"gpu.xid_errors": len(mine)}
    if mine:
        out["gpu.last_xid"] = mine[-1].code
        out["gpu.last_xid_line"] = mine[-1].line
    return out
