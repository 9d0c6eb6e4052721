"""HTCondor user logs (job event logs, classic text format), read incrementally.

A user log is a sequence of events, each ended by a line `...`:

    005 (012.000.000) 2026-11-22 08:22:45 Job terminated.
        (1) Normal termination (return value 3)
        ...
    ...

`UserLogFollower.read()` returns the events written since the previous call. It remembers the
file's identity (st_dev, st_ino), the offset after the last complete event and the first bytes
of the file: a new inode, a size below the offset or different first bytes (DAGMan truncates
`<dag>.nodes.log` when a DAG or its rescue DAG starts again) restart from offset 0 and set
`reset`, so the caller rebuilds what it derived instead of counting events twice. A partly
written event is left for the next call. Bytes are read in bounded chunks, so a 100 MB log
never sits in memory whole, and the second call reads only what was appended.

`parse_event` understands the events a job's life produces: 000 submit (with `DAG Node:`),
001 execute, 004 evicted, 005 terminated (normal or abnormal, usage and the partitionable
resources table), 006 image size, 009 aborted, 010/011 suspended/unsuspended, 012 held
(reason, code, subcode), 013 released, 016 POST script terminated, 021 remote error, 028 job ad
information, 040 file transfer; any other event keeps its code, id, time and text. A block that
is not an event (garbage, a half-overwritten file) is counted and skipped, never raised.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

CHUNK = 4 << 20  #: bytes per read
FINGERPRINT = 256  #: first bytes compared to notice truncate-then-regrow
SEPARATOR = b"\n...\n"

SUBMIT, EXECUTE, EXEC_ERROR, EVICTED, TERMINATED, IMAGE_SIZE = 0, 1, 2, 4, 5, 6
SHADOW_EXCEPTION, ABORTED, SUSPENDED, UNSUSPENDED, HELD, RELEASED = 7, 9, 10, 11, 12, 13
POST_SCRIPT, REMOTE_ERROR, JOB_AD, FILE_TRANSFER = 16, 21, 28, 40

_HEADER = re.compile(r"(\d{3}) \((-?\d+)\.(-?\d+)\.(-?\d+)\) (\S+) (\S+) ?(.*)")
_RETURN = re.compile(r"\((\d)\) (Normal|Abnormal) termination \((?:return value|signal) (-?\d+)\)")
_USAGE = re.compile(r"Usr (\d+) (\d+):(\d+):(\d+), Sys (\d+) (\d+):(\d+):(\d+)\s+-\s+(.*)")
_CODE = re.compile(r"Code (-?\d+) Subcode (-?\d+)")
_HOST = re.compile(r"<([^>]*)>")
_ATTR = re.compile(r"^\s*(\w+)\s*=\s*(.*)$")
_IMAGE = re.compile(r"^\s*(-?\d+)\s+-\s+(.*)$")


@dataclass
class Event:
    """One user log event; `fields` holds what its kind carries (see `parse_event`)."""

    code: int
    cluster: int
    proc: int
    subproc: int
    time: float | None
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    block: str = field(default="", repr=False)  #: the event's text, for whole-block searches
    body: str = field(default="", repr=False)  #: the text after the header line

    @property
    def job_id(self) -> str:
        return f"{self.cluster}.{self.proc}"

    @cached_property
    def lines(self) -> list[str]:
        """The body's non-empty lines, stripped (split only for the kinds that need it)."""
        return [t for t in (ln.strip() for ln in self.body.split("\n")) if t]


def _seconds(d: str, h: str, m: str, s: str) -> int:
    return int(d) * 86400 + int(h) * 3600 + int(m) * 60 + int(s)


_TIMES: dict[tuple[str, str], float | None] = {}


def parse_time(date: str, clock: str, now: float | None = None) -> float | None:
    """`2026-11-22 08:22:45`, `2026-11-22T08:22:45Z`-style or the old `11/22 08:22:45`
    (no year: the most recent such date not in the future) as a Unix time, local time unless
    the stamp says UTC. Stamps repeat (many events a second): parsed ones are remembered."""
    key = (date, clock)
    if now is None and key in _TIMES:
        return _TIMES[key]
    value = _parse_time(date, clock, now)
    if now is None:
        if len(_TIMES) > 4096:
            _TIMES.clear()
        _TIMES[key] = value
    return value


def _parse_time(date: str, clock: str, now: float | None) -> float | None:
    try:
        if "-" in date:
            stamp = f"{date} {clock}".replace("T", " ")
            utc = stamp.endswith("Z")
            stamp = stamp.rstrip("Z").split(".", 1)[0].split("+", 1)[0]
            parsed = time.strptime(stamp, "%Y-%m-%d %H:%M:%S")
            if utc:
                import calendar

                return float(calendar.timegm(parsed))
            return time.mktime(parsed)
        parts = date.split("/")
        if len(parts) == 3:
            year = int(parts[2])
            year += 2000 if year < 100 else 0
        else:
            year = time.localtime(now).tm_year
        hh, mm, ss = (int(x) for x in clock.split(".", 1)[0].split(":"))
        if not (1 <= int(parts[0]) <= 12 and 1 <= int(parts[1]) <= 31 and hh < 24
                and mm < 60 and ss < 62):
            return None
        value = time.mktime((year, int(parts[0]), int(parts[1]), hh, mm, ss, 0, 0, -1))
        if len(parts) == 2 and value > (now or time.time()) + 86400:
            value = time.mktime((year - 1, int(parts[0]), int(parts[1]), hh, mm, ss, 0, 0, -1))
        return value
    except (ValueError, IndexError, OverflowError):
        return None


def parse_event(block: str) -> Event | None:
    """One event's text (without its `...` line), or None when it is not an event."""
    block = block.lstrip("\r\n\t ")
    head, _, body = block.partition("\n")
    m = _HEADER.match(head)
    if m is None:
        return None
    code = int(m.group(1))
    event = Event(code, int(m.group(2)), int(m.group(3)), int(m.group(4)),
                  parse_time(m.group(5), m.group(6)), m.group(7).strip(), block=block,
                  body=body)
    parser = _BODY.get(code)
    if parser is not None:
        try:
            parser(event)
        except (ValueError, IndexError):  # a damaged body keeps what the header said
            event.fields["damaged"] = True
    at = body.find("DAG Node:")
    if at >= 0:
        end = body.find("\n", at)
        event.fields["node"] = body[at + 9:end if end >= 0 else None].strip()
    return event


def _host(event: Event) -> None:
    m = _HOST.search(event.text)
    if m:
        event.fields["host"] = m.group(1).split("?")[0]
    for line in event.lines:
        if line.startswith("SlotName:"):
            event.fields["slot"] = line.split(":", 1)[1].strip()
        else:
            a = _ATTR.match(line)
            if a:
                event.fields.setdefault("slot_ad", {})[a.group(1)] = _literal(a.group(2))


_RESOURCE_NAMES = {"Cpus": "cpus", "Disk (KB)": "disk", "Memory (MB)": "memory",
                   "GPUs": "gpus", "TimeExecute (s)": "timeexecute",
                   "TimeSlotBusy (s)": "timeslotbusy"}
_WORD = re.compile(r"\S+")



def _usage(event: Event) -> None:
    """Return value or signal, CPU usage and the resources table, found with whole-block
    searches (a per-line loop is the slowest part of reading a big node log)."""
    f = event.fields
    block = event.block
    m = _RETURN.search(block)
    if m:
        normal = m.group(2) == "Normal"
        f["normal"] = normal
        f["return_value" if normal else "signal"] = int(m.group(3))
    for marker, keys in (("Run Remote Usage", ("cpu_user", "cpu_sys")),
                         ("Total Remote Usage", ("total_cpu_user", "total_cpu_sys"))):
        at = block.find(marker)
        if at < 0:
            continue
        u = _USAGE.search(block, block.rfind("\n", 0, at) + 1, at + len(marker))
        if u:
            f[keys[0]] = _seconds(*u.group(1, 2, 3, 4))
            f[keys[1]] = _seconds(*u.group(5, 6, 7, 8))
    at = block.find("Partitionable Resources")
    if at >= 0:
        start = block.rfind("\n", 0, at) + 1
        rows = block[start:].split("\n")
        header = rows[0]
        columns = _columns(header)
        names = header.partition(":")[2].lower().split()
        colon = header.find(":")
        for row in rows[1:]:
            name, sep, values = row.partition(":")
            key = _RESOURCE_NAMES.get(name.strip()) if sep else None
            if key is None:
                if not row.strip():
                    break
                continue
            words = values.split()
            if len(words) == len(names):  # every column filled: no positions needed
                for col, word in zip(names, words, strict=True):
                    value = _number(word)
                    if value is not None:
                        f[f"{key}_{col}"] = value
                continue
            shift = len(name) - colon  # colons are aligned; be tolerant if not
            for w in _WORD.finditer(values):
                value = _number(w.group(0))
                if value is not None:
                    end = w.end() + shift
                    col = columns.get(end) or _nearest(columns, end)
                    f[f"{key}_{col}"] = value
    for marker in ("Job terminated of its own accord", "was killed by signal"):
        i = block.find(marker)
        if i >= 0:
            line_start = block.rfind("\n", 0, i) + 1
            line_end = block.find("\n", i)
            f["detail"] = block[line_start:line_end if line_end >= 0 else None].strip()
            break
    if "Job terminated and was requeued" in block or (
            "OnExitRemove" in block and "FALSE" in block):
        f["requeued"] = True


def _nearest(columns: dict[int, str], end: int) -> str:
    return columns[min(columns, key=lambda c: abs(c - end))] if columns else "usage"


_COLUMNS: dict[str, dict[int, str]] = {}


def _columns(header: str) -> dict[int, str]:
    """Each text position after the colon → the column a right-aligned value ending there
    belongs to (the nearest end of a header word), computed once per header."""
    found = _COLUMNS.get(header)
    if found is None:
        head = header.partition(":")[2]
        ends = [(m.end(), m.group(0).lower()) for m in _WORD.finditer(head)]
        found = {}
        for pos in range(len(head) + 16):
            best = 1 << 30
            for end, name in ends:
                if abs(end - pos) < best:
                    best, found[pos] = abs(end - pos), name
        if len(_COLUMNS) < 64:
            _COLUMNS[header] = found
    return found


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def _image(event: Event) -> None:
    m = re.search(r"(-?\d+)", event.text)
    if m:
        event.fields["image_size_kb"] = int(m.group(1))
    for line in event.lines:
        i = _IMAGE.match(line)
        if i is None:
            continue
        what = i.group(2).lower()
        if "memoryusage" in what:
            event.fields["memory_mb"] = int(i.group(1))
        elif "residentsetsize" in what:
            event.fields["rss_kb"] = int(i.group(1))


def _held(event: Event) -> None:
    reason = []
    for line in event.lines:
        c = _CODE.search(line)
        if c and line.startswith("Code"):
            event.fields["hold_code"] = int(c.group(1))
            event.fields["hold_subcode"] = int(c.group(2))
        elif not line.startswith("DAG Node:"):
            reason.append(line)
    if reason:
        event.fields["reason"] = " ".join(reason)


def _reason(event: Event) -> None:
    reason = [ln for ln in event.lines if not ln.startswith("DAG Node:")]
    if reason:
        event.fields["reason"] = " ".join(reason)
    for line in reason:
        m = re.search(r"\(by user (\S+?)\)", line)
        if m:
            event.fields["by"] = m.group(1)


def _remote_error(event: Event) -> None:
    event.fields["reason"] = " ".join([event.text, *event.lines]).strip()


def _job_ad(event: Event) -> None:
    attrs: dict[str, Any] = {}
    for line in event.lines:
        a = _ATTR.match(line)
        if a:
            attrs[a.group(1)] = _literal(a.group(2))
    event.fields["attrs"] = attrs


def _transfer(event: Event) -> None:
    event.fields["transfer"] = " ".join(event.lines) or event.text


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"')
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    number = _number(text)
    return number if number is not None else text


_BODY = {
    EXECUTE: _host, EVICTED: _usage, TERMINATED: _usage, POST_SCRIPT: _usage,
    IMAGE_SIZE: _image, HELD: _held, ABORTED: _reason, RELEASED: _reason,
    SUSPENDED: _reason, REMOTE_ERROR: _remote_error, JOB_AD: _job_ad,
    FILE_TRANSFER: _transfer, SHADOW_EXCEPTION: _reason, EXEC_ERROR: _reason,
}


# --- following a file ------------------------------------------------------------------------


@dataclass
class ReadResult:
    """What one `read()` found."""

    events: list[Event] = field(default_factory=list)
    reset: bool = False  #: the file was replaced or truncated: derived state must be rebuilt
    bytes_read: int = 0
    garbage: int = 0  #: blocks that were not events
    garbage_sample: str = ""
    error: str | None = None  #: one line, when the file could not be read
    more: bool = False  #: stopped at its byte or time budget: complete events remain unread
    behind: int = 0  #: bytes after the last complete event read (a partial event counts)


class UserLogFollower:
    """Follows one user log across appends, truncation and replacement."""

    def __init__(self, path: str | os.PathLike[str], *, chunk: int = CHUNK) -> None:
        self.path = Path(path)
        self.chunk = chunk
        self.ident: tuple[int, int] | None = None
        self.offset = 0
        self.head = b""
        self.total_bytes = 0  #: every byte read so far, for benchmarks and facts
        self.events_total = 0

    def read(self, max_bytes: int | None = None, deadline: float | None = None) -> ReadResult:
        """The events appended since the last call; at most `max_bytes` read, and no new
        chunk started after `deadline` (a `time.monotonic()` value): the rest comes next call
        and `more` says so (a large log found at start is caught up over several calls).
        The deadline stops a read only once it has a complete event: one already past (a
        slow tick) would otherwise leave every later call where this one started, whenever
        an event is longer than a chunk."""
        out = ReadResult()
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            out.error = _reason_text(exc, self.path)
            return out
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            size = st.st_size
            if self.ident is not None and (ident != self.ident or size < self.offset
                                           or not self._same_head(fd, size)):
                out.reset = True
                self.offset = 0
                self.head = b""
            self.ident = ident
            if len(self.head) < FINGERPRINT and size > len(self.head):
                self.head = os.pread(fd, FINGERPRINT, 0)
            self._consume(fd, size, out, max_bytes, deadline)
            out.behind = max(0, size - self.offset)
        except OSError as exc:
            out.error = _reason_text(exc, self.path)
        finally:
            os.close(fd)
        self.total_bytes += out.bytes_read
        self.events_total += len(out.events)
        return out

    def _same_head(self, fd: int, size: int) -> bool:
        if not self.head:
            return True
        return os.pread(fd, len(self.head), 0) == self.head if size >= len(self.head) else \
            False

    def _consume(self, fd: int, size: int, out: ReadResult, max_bytes: int | None,
                 deadline: float | None) -> None:
        pending = b""
        start = pos = self.offset
        budget = max_bytes if max_bytes is not None else size
        while pos < size:
            if budget <= 0 or (deadline is not None and self.offset > start
                               and time.monotonic() >= deadline):
                out.more = True
                break
            want = min(self.chunk, size - pos, budget)
            data = os.pread(fd, want, pos)
            if not data:
                break
            pos += len(data)
            budget -= len(data)
            out.bytes_read += len(data)
            buf = pending + data if pending else data
            cut = buf.rfind(SEPARATOR)
            if cut < 0:
                pending = buf
                continue
            complete, pending = buf[:cut + len(SEPARATOR)], buf[cut + len(SEPARATOR):]
            self._events(complete, out)
            self.offset = pos - len(pending)
        # what is left is a partly written event: read again from its start next time

    def _events(self, data: bytes, out: ReadResult) -> None:
        text = data.decode("utf-8", "replace")
        blocks = text.split("\n...\n")
        for raw in blocks:
            if not raw.strip():
                continue
            block = raw.removeprefix("...\n")
            event = parse_event(block)
            if event is None:
                out.garbage += 1
                if not out.garbage_sample:
                    out.garbage_sample = block.strip().splitlines()[0][:120]
                continue
            out.events.append(event)


def _reason_text(exc: OSError, path: Path) -> str:
    return f"{path}: {exc.strerror or type(exc).__name__}"
