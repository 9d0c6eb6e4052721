"""The kernel's messages, read once for every use: NVIDIA Xid errors, the
`NVRM: Xid (PCI:0000:3b:00): 79, ...` lines the driver logs when a GPU faults (79: fallen off the
bus, 48: double-bit ECC, 13/31/43: an application's fault...), and the OOM killer's
`Killed process 4242 (python)` / `oom-kill:...,pid=4242,...` lines.

`KernelLog` follows the readable kernel log files (`/var/log/kern.log`, `syslog`, `messages`)
incrementally with a `Tailer`, from their last `KERNEL_LOG_TAIL` bytes, so rotation is handled
and nothing is read twice; only when none of them can be read does it ask `dmesg` (where this
user may read the ring buffer), whose whole buffer comes every time: there, only the lines
stamped after the last stamp seen are new. It keeps the Xid events and the OOM-killed pids of
what it read. `XidReader` (the gpu probe) asks it at most every `interval` seconds; the
diagnosis of a SIGKILLed job at most once per tick. Each event has its GPU's PCI address and,
where the line says, a time: the ring buffer's seconds since boot, or the syslog stamp.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from .tail import FINGERPRINT, Tailer

KERNEL_LOGS = (Path("/var/log/kern.log"), Path("/var/log/syslog"), Path("/var/log/messages"))
DMESG: tuple[str, ...] = ("dmesg",)
INTERVAL = 60.0  #: seconds between two looks at the kernel's messages (Xid errors)
KERNEL_LOG_TAIL = 4 << 20  #: a kernel log file is read from this many bytes before its end
MAX_EVENTS = 10_000  #: events kept (the most recent)
MAX_PIDS = 65_536  #: OOM-killed pids kept (the most recent)

_XID = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{1,2}:"
                  r"[0-9A-Fa-f]{1,2})(?:\.[0-7])?\): (?P<code>\d+)")
_UPTIME = re.compile(r"\[\s*(\d+\.\d+)\]")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:?\d\d|Z)?)")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)")
_DMESG_STAMP = re.compile(rb"^\[\s*(\d+\.\d+)\]", re.MULTILINE)  #: a ring buffer line's
_FILE_STAMP = re.compile(rb"kernel: \[\s*(\d+\.\d+)\]")  #: the same in a kernel log file
_KILLED = re.compile(rb"Killed process (\d+) ")
_OOM_KILL_PID = re.compile(rb",pid=(\d+),")

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


def _lines_with(data: bytes, needle: bytes) -> Iterator[bytes]:
    """Each line of `data` (lines ended by "\\n") that holds `needle`, once."""
    pos = data.find(needle)
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        yield data[start:end]
        pos = data.find(needle, end)


class KernelLog:
    """The kernel's messages since the last `refresh`: see the module docstring. Not
    thread-safe: each user has its own."""

    def __init__(self, logs: Sequence[Path] = KERNEL_LOGS, dmesg: Sequence[str] | None = DMESG,
                 boot_time: float | None = None) -> None:
        self.logs = tuple(logs)
        self.dmesg = tuple(dmesg) if dmesg else None
        self.boot_time = psutil.boot_time() if boot_time is None else boot_time
        #: whether a source could be read at the last refresh
        self.readable = False
        self.xids: deque[XidEvent] = deque(maxlen=MAX_EVENTS)
        self._oom_pids: dict[int, None] = {}  # in the order seen, for forgetting the oldest
        self._tailers: dict[Path, Tailer] = {}
        self._stamp: float | None = None  # the latest ring buffer stamp read (files or dmesg)
        self._read = False  # some source was read before
        self._dmesg_read = False

    def oom_killed(self, pid: int) -> bool:
        """Whether the OOM killer's lines read so far name this pid."""
        return pid in self._oom_pids

    def refresh(self) -> bool:
        """Read what is new; returns (and keeps in `readable`) whether a source could be
        read. Never raises."""
        readable = False
        for path in self.logs:
            tailer = self._tailer(path)
            if tailer is None:
                continue
            for chunk in tailer.chunks():
                self._scan(chunk)
                self._note_stamp(chunk)
            readable = readable or tailer.error is None
        if not readable and self.dmesg:
            readable = self._read_dmesg()
        self.readable = readable
        self._read = self._read or readable
        return readable

    def close(self) -> None:
        for tailer in self._tailers.values():
            tailer.close()
        self._tailers.clear()

    def _tailer(self, path: Path) -> Tailer | None:
        """The path's tailer; (re)started at the last KERNEL_LOG_TAIL bytes when it is new, or
        when more than that was written since it last read (a rare user, such as the
        diagnosis of a SIGKILLed job, would otherwise read days of log)."""
        tailer = self._tailers.get(path)
        if tailer is not None:
            try:
                st = path.stat()
            except OSError:
                return tailer  # it says why
            if (st.st_dev, st.st_ino) != tailer.ident or \
                    st.st_size - tailer.offset <= KERNEL_LOG_TAIL:
                return tailer
            tailer.close()
            return self._open(path, KERNEL_LOG_TAIL)
        # a file first opened after dmesg was read starts at its end: dmesg gave its past
        return self._open(path, 0 if self._dmesg_read else KERNEL_LOG_TAIL)

    def _open(self, path: Path, keep: int) -> Tailer | None:
        """A tailer for a kernel log, started at its last `keep` bytes."""
        resume: dict[tuple[int, int], tuple[int, bytes, str]] = {}
        try:
            st = path.stat()
            if st.st_size > keep:
                with path.open("rb") as fh:
                    resume[(st.st_dev, st.st_ino)] = (st.st_size - keep,
                                                      fh.read(FINGERPRINT), "")
        except OSError:
            self._tailers.pop(path, None)
            return None
        tailer = self._tailers[path] = Tailer(path, resume=resume)
        return tailer

    def _read_dmesg(self) -> bool:
        """The ring buffer's lines stamped after the last stamp seen (the first time all of
        them, unless files were read before: their past is in what those gave)."""
        assert self.dmesg is not None
        try:
            done = subprocess.run(list(self.dmesg), capture_output=True, timeout=5,
                                  check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return False  # no dmesg, or not permitted (kernel.dmesg_restrict)
        if done.returncode != 0:
            return False
        out = done.stdout.replace(b"\r\n", b"\n")
        stamps = [(m.start(), float(m.group(1))) for m in _DMESG_STAMP.finditer(out)]
        floor = self._stamp
        if floor is None and (self._read or self._dmesg_read):
            floor = math.inf  # no stamp to go by: what is there now was given before
        start = 0 if floor is None else next(
            (at for at, stamp in stamps if stamp > floor), len(out))
        self._scan(out[start:])
        latest = max((stamp for _, stamp in stamps), default=None)
        if latest is not None:
            self._stamp = latest if self._stamp is None else max(self._stamp, latest)
        self._dmesg_read = True
        return True

    def _note_stamp(self, chunk: bytes) -> None:
        """The latest ring buffer stamp of a kernel log file's lines (`kernel: [ 8123.45]`),
        so that a later fallback to dmesg takes only what came after."""
        stamps = _FILE_STAMP.findall(chunk, max(0, len(chunk) - 4096))
        if stamps:
            latest = float(stamps[-1])
            self._stamp = latest if self._stamp is None else max(self._stamp, latest)

    def _scan(self, data: bytes) -> None:
        """Record the Xid events and the OOM killer's pids of these lines."""
        for raw in _lines_with(data, b"NVRM: Xid"):
            event = parse_line(raw.decode("utf-8", "replace"), self.boot_time)
            if event is not None:
                self.xids.append(event)
        pids = [int(m.group(1)) for raw in _lines_with(data, b"Killed process ")
                for m in _KILLED.finditer(raw)]
        for raw in _lines_with(data, b"oom-kill:"):
            pids.extend(int(m.group(1)) for m in
                        _OOM_KILL_PID.finditer(raw, raw.index(b"oom-kill:")))
        for pid in pids:
            self._oom_pids.pop(pid, None)
            self._oom_pids[pid] = None
            if len(self._oom_pids) > MAX_PIDS:
                del self._oom_pids[next(iter(self._oom_pids))]


class XidReader:
    """The host's Xid events, from a `KernelLog` asked at most every `interval` seconds, and
    those NVML reported (`add`) where no kernel log can be read."""

    def __init__(self, logs: Sequence[Path] = KERNEL_LOGS, dmesg: Sequence[str] | None = DMESG,
                 interval: float = INTERVAL, boot_time: float | None = None) -> None:
        self.kernel = KernelLog(logs, dmesg, boot_time)
        self.interval = interval
        self._checked: float | None = None

    @property
    def readable(self) -> bool:
        """Whether a source could be read at the last look (else Xid facts are unknown,
        unless NVML gives them)."""
        return self.kernel.readable

    def events(self, now: float | None = None) -> list[XidEvent]:
        """Every Xid event known, in the order found, after a look at the kernel's messages
        when one is due."""
        now = time.monotonic() if now is None else now
        if self._checked is None or now - self._checked >= self.interval:
            self._checked = now
            self.kernel.refresh()
        return self.known()

    def known(self) -> list[XidEvent]:
        """Every Xid event known, without a look."""
        return list(self.kernel.xids)

    def add(self, events: Iterable[XidEvent]) -> None:
        """Keep events from another source (NVML's event API)."""
        self.kernel.xids.extend(events)

    def close(self) -> None:
        self.kernel.close()


def oom_killer_saw(pid: object, logs: Sequence[Path] = KERNEL_LOGS,
                   dmesg: Sequence[str] | None = DMESG) -> bool:
    """Whether the kernel log files (or, when none is readable, `dmesg`) record the OOM
    killer ending this pid: one look, for a single question. Never raises."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    kernel = KernelLog(logs, dmesg)
    try:
        kernel.refresh()
        return kernel.oom_killed(pid)
    finally:
        kernel.close()


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
