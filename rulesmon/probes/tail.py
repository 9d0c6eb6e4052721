"""Follow one log file incrementally, the way `tail -F` does, with bounded memory.

A `Tailer` remembers the file's identity (st_dev, st_ino) and the byte offset it has read up to.
Each `read()` returns the complete lines written since the previous call:

- decoded as UTF-8 (invalid bytes replaced), NUL bytes removed, ANSI escape sequences stripped;
- a row drawn below the current line and followed by a cursor-up (`ESC[A`: tqdm's nested bars,
  such as the Hugging Face evaluation bar under the training bar) is dropped, so the main bar
  stays the last progress line;
- split on `\\r\\n`, `\\r` or `\\n` (tqdm writes `\\r` updates without newlines outside a terminal);
  an empty segment ended by a lone `\\r` (the start of a tqdm update) is not a line;
- a trailing partial line is held back until it is completed, and so is a trailing `\\r` (it may
  be half of a CRLF); a redraw (a partial line after a lone `\\r`: tqdm's last `\\r<bar>`) is
  given out once a call finds the file quiet, and any partial line once the caller says its
  writer has ended (`chunks(ended=True)`), each once (see `chunks`);
- a line longer than `MAX_LINE` bytes keeps only its last `KEEP` bytes;
- at most `MAX_READ` bytes are read per call, in `CHUNK`-sized reads; the rest comes next call.

`chunks()` gives the same lines undecoded, one bytes object per read: each line ends with `\\n`
and nothing else separates lines, so a scanner can search a whole chunk at once and decode only
the lines it keeps (`chunk.decode("utf-8", "replace").split("\\n")[:-1]` are the lines). The
bytes are the file's own, except where an ANSI escape was stripped: such a chunk is decoded,
stripped and encoded again (so it is valid UTF-8).

Rotation by rename (a new inode at the path): the old file descriptor is kept open and read to
its end (across calls if need be, and one more call after it looks finished, for a writer that
had not reopened yet), then the new file is read from offset 0. Truncation (copytruncate): a
size below the offset, or different first bytes (truncated and grown again between two polls).
The copy made just before the truncation (`app.log.1` beside `app.log`, found by its first
bytes) holds what was written after the last read: it is read on from the old offset, like a
renamed file, and its position goes into `resume`, so a glob that also matches the copy does
not read it again from the start (a `Positions` map finds the original of a new file in a
lookup per prefix of its name); then the truncated file is read from offset 0. Lines written
between the copy and the truncation are lost, as copytruncate itself loses them. A missing
path, a directory, a non-regular file or a permission error
makes `read()` return what could still be drained from an open descriptor (usually nothing) and
set `error` to a one-line reason; `read()` never raises.

Descriptors come from a `handles.HandlePool` shared by the process's tailers, which closes the
least recently used when too many are open (a glob over thousands of logs). A file whose
descriptor was closed is opened again by path when it is next read, and read on only if the
path still names it (device and inode); one renamed meanwhile is looked for beside its path by
that identity (logrotate's `app.log.1`). A rotated file that was deleted, or moved out of its
folder, while its descriptor was closed cannot be drained: what it held past the last read is
lost (with a descriptor held it would still be read).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from .handles import EXHAUSTED, HandlePool, default_pool

MAX_LINE = 1 << 20  #: a longer line is cut...
KEEP = 64 << 10  #: ...to its last KEEP bytes
MAX_READ = 64 << 20  #: bytes read per call at most
CHUNK = 1 << 20  #: bytes per read(2); small reads keep the allocator from holding freed buffers
FINGERPRINT = 256  #: first bytes compared to notice truncate-then-regrow
COPY_SCAN = 4096  #: folder entries looked at, at most, for the copy of a truncated file

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement, erase line
    r"|\x1b\][^\x07\x1b\r\n]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b\r\n]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings (never past a line)
    r"|\x1b[ -/]*[0-~]"  # two-character escapes (ESC 7, ESC c, ESC ( B)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)

_CURSOR_UP = re.compile(rb"\x1b\[\d*A")

# (CPython's `re` finds these two-byte sequences faster than bytes.find/replace do)
_CR_PAIR = re.compile(rb"\r[\r\n]")
_NL_CR = re.compile(rb"\n\r")

FileId = tuple[int, int]  #: (st_dev, st_ino)
Resume = tuple[int, bytes, str]  #: offset, first bytes, the path it was read under


class Positions(dict[FileId, Resume]):
    """A `resume` map that also indexes its entries by the path they were read under, so a
    new file finds the original it may be a copy of (`app.log` for `app.log.1`) in one lookup
    per prefix of its name rather than a pass over every entry: the first tick of a glob over
    thousands of logs opens thousands of files. Only item assignment, `update` and deletion
    are used on it, and they keep the index."""

    def __init__(self, items: Mapping[FileId, Resume] | None = None) -> None:
        super().__init__()
        self.by_path: dict[str, dict[FileId, None]] = {}
        if items:
            self.update(items)

    def __setitem__(self, ident: FileId, value: Resume) -> None:
        old = self.get(ident)
        if old is not None and old[2] != value[2]:
            self._unindex(ident, old[2])
        super().__setitem__(ident, value)
        self.by_path.setdefault(value[2], {})[ident] = None

    def __delitem__(self, ident: FileId) -> None:
        where = self[ident][2]
        super().__delitem__(ident)
        self._unindex(ident, where)

    def update(self, items: Mapping[FileId, Resume], /) -> None:  # type: ignore[override]
        for ident, value in items.items():
            self[ident] = value

    def under(self, where: str) -> list[Resume]:
        """The entries read under this path."""
        return [r for ident in self.by_path.get(where, ())
                if (r := self.get(ident)) is not None and r[2] == where]

    def _unindex(self, ident: FileId, where: str) -> None:
        idents = self.by_path.get(where)
        if idents is not None:
            idents.pop(ident, None)
            if not idents:
                del self.by_path[where]


@dataclass(eq=False)  # a pool's key: one per opened file, by identity
class _Open:
    """An open file being read: descriptor (-1 while the pool has it closed), identity,
    offset, pending bytes."""

    fd: int
    ident: FileId
    offset: int = 0
    partial: bytes = b""
    fingerprint: bytes = b""
    idle_polls: int = 0  #: calls in a row that found nothing new (for a rotated file)
    cut: bool = False  #: the pending partial line was already cut to its last KEEP bytes
    #: the last bytes read ended with a lone \r: "text" (after text, or within a line that
    #: already held a \r), "start" (the first character of a line), "" (they did not)
    after_cr: str = ""
    #: the pending partial line began right after a lone \r: a redraw (tqdm's `\r<bar>`)
    redraw: bool = False
    #: the pending line was given out before its terminator came (see `Tailer.chunks`): the
    #: terminator that ends it, when it comes, adds no line
    given: bool = False
    path: str = ""  #: where it was last opened: it is reopened there, or found beside it
    busy: int = 0  #: reads using the descriptor now (the pool does not close it under them)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text) if ("\x1b" in text or "\x9b" in text) else text


def _cut(line: bytes) -> bytes:
    return line[-KEEP:] if len(line) > MAX_LINE else line


def lines_of(chunk: bytes) -> list[str]:
    """The decoded lines of a chunk from `Tailer.chunks()`."""
    lines = chunk.decode("utf-8", "replace").split("\n")
    lines.pop()  # after the final terminator
    return lines


def _drop_nested(data: bytes) -> bytes:
    """`data` without the rows drawn below the current line: the text between a line
    terminator and a cursor-up (`ESC[A`), which is how tqdm draws a nested bar (position 1 and
    more: the Hugging Face evaluation bar, Lightning's validation bar) before moving back up
    to the main bar. What follows the cursor-up is kept."""
    out: list[bytes] = []
    pos = 0
    for m in _CURSOR_UP.finditer(data):
        start = max(pos, data.rfind(b"\n", pos, m.start()) + 1,
                    data.rfind(b"\r", pos, m.start()) + 1)
        out.append(data[pos:start])
        pos = m.end()
    if not out:
        return data
    out.append(data[pos:])
    return b"".join(out)


def _strip_ansi_bytes(data: bytes) -> bytes:
    """`data` without ANSI escapes, as the decoded text would be: decoded, stripped, encoded;
    rows drawn below the line (nested progress bars) are dropped first."""
    if b"\x1b" not in data and (b"\x9b" not in data or b"\xc2\x9b" not in data):
        return data  # one-byte searches first: \xc2\x9b is U+009B, the 8-bit CSI, in UTF-8
    if b"\x1b[" in data:
        data = _drop_nested(data)
    return strip_ansi(data.decode("utf-8", "replace")).encode("utf-8")


def _normalize(data: bytes) -> bytes:
    """Bytes that end with a line terminator (ANSI escapes stripped), with every line ended by
    `\\n` alone.

    Whole-buffer byte operations (C speed) rather than a split and a call per line: `\\r\\n` is
    one terminator; a lone `\\r` ends a line too, except that the empty piece before it
    ("\\rtext", tqdm's redraw) is no line.
    """
    if b"\r" in data:
        if _CR_PAIR.search(data) is not None:  # CRLF, or runs of \r: piece by piece
            data = data.replace(b"\r\n", b"\n")
            data = _join(_split_pieces(data)) if b"\r" in data else data
        else:
            # every \r follows text, a \n or the start: only one after text ends a line
            data = _NL_CR.sub(b"\n", data)
            if data.startswith(b"\r"):
                data = data[1:]
            data = data.replace(b"\r", b"\n")
    if len(data) > MAX_LINE:
        lines = data.split(b"\n")
        lines.pop()
        data = _join(_cut(line) for line in lines)
    return data


def _split_pieces(data: bytes) -> list[bytes]:
    """Lines of `data` (no CRLF left): split on \\n, then on \\r dropping empty pieces."""
    parts = data.split(b"\n")
    last = parts.pop()  # after the final "\n"; holds text only if the buffer ends in \r
    if last:
        parts.append(last)
    out: list[bytes] = []
    for part in parts:
        if b"\r" in part:
            out.extend(piece for piece in part.split(b"\r") if piece)
        else:
            out.append(part)
    return out


def _join(lines: Iterable[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


class Tailer:
    """Follows one path across appends, rotation and truncation."""

    def __init__(self, path: str | os.PathLike[str], *, max_read: int = MAX_READ,
                 chunk: int = CHUNK, resume: dict[FileId, Resume] | None = None,
                 pool: HandlePool | None = None) -> None:
        """`resume` maps file identities to what was consumed of them under another path (a
        rotated file that a glob matches under its new name): such a file is read on from
        there, not again from 0, if its first bytes are unchanged. It is shared with the
        caller, who keeps it across tailers; entries recorded under this same path are not
        used (a deleted file's inode number can come back for a new file). A `Positions` map
        makes finding the original of a copy cheap; a plain dict is searched entry by entry.
        `pool` bounds the descriptors held (default: the process's pool)."""
        self.path = Path(path)
        self.where = str(self.path)  #: the path as positions record it
        self.max_read = max(1, max_read)
        self.chunk = max(1, min(chunk, self.max_read))
        self.resume = resume if resume is not None else Positions()
        self.error: str | None = None
        self.size: int | None = None
        self.mtime: float | None = None
        self._cur: _Open | None = None
        self._old: _Open | None = None  # a rotated-away file still being drained
        self.pool = pool if pool is not None else default_pool()
        self._pinned: list[_Open] = []  # handles this read uses: not closed under it

    # --- public ----------------------------------------------------------------------------

    @property
    def offset(self) -> int:
        """Bytes of the current file consumed so far."""
        return self._cur.offset if self._cur else 0

    @property
    def ident(self) -> FileId | None:
        return self._cur.ident if self._cur else None

    def held(self) -> set[FileId]:
        """Identities of the files this tailer has open."""
        return {o.ident for o in (self._cur, self._old) if o is not None}

    def positions(self) -> dict[FileId, Resume]:
        """What has been consumed of each open file, for `resume`."""
        return {o.ident: (o.offset, o.fingerprint, self.where)
                for o in (self._cur, self._old) if o is not None}

    def read(self, *, ended: bool = False, quiet: float | None = None,
             now: float | None = None) -> list[str]:
        """Complete new lines since the last call (never raises); `ended`, `quiet` and `now`:
        see `chunks`."""
        out: list[str] = []
        for batch in self.batches(ended=ended, quiet=quiet, now=now):
            out.extend(batch)
        return out

    def batches(self, *, ended: bool = False, quiet: float | None = None,
                now: float | None = None) -> Iterator[list[str]]:
        """The same lines as `read()`, one list per chunk read, to keep memory bounded."""
        for chunk in self.chunks(ended=ended, quiet=quiet, now=now):
            yield lines_of(chunk)

    def chunks(self, *, ended: bool = False, quiet: float | None = None,
               now: float | None = None) -> Iterator[bytes]:
        """The same lines as `read()`, undecoded: one non-empty bytes object per chunk read,
        each line ended by `\\n` (see the module docstring).

        The pending partial line is given out as a line, without waiting for its terminator,
        when the file is read to its end and either `ended` (the caller knows the writer has
        ended: the job is over) or it is a redraw (it began after a lone `\\r`: tqdm's last
        `\\r<bar>`) and the file is quiet: this call found nothing new, or (given `quiet`,
        seconds) the file was last modified at least that long before `now` (default: the
        time now), so a first read of a log that stopped long ago needs no second call.
        It is given out once: if text comes after it after all, the terminator that ends it
        adds no line, a new `\\r` starts the next redraw, and other text is a line of its own
        (text printed right after a bar). A plain partial line is not given out while its
        writer may still complete it: a block-buffered writer leaves one at every buffer
        boundary, and its halves would be two wrong lines."""
        budget = self.max_read
        try:
            cur = self._reopen()  # may move a rotated-away file to self._old
            if self._old is not None:
                for used, chunk in self._drain_old(budget):
                    budget -= used
                    if chunk:
                        yield chunk
                if self._old is not None and budget <= 0:
                    return  # the rotated file is not finished yet: the new one waits
            if cur is None:
                return
            got = 0
            for used, chunk in self._consume(cur, budget):
                got += used
                budget -= used
                if chunk:
                    yield chunk
            if budget > 0 and cur.partial and (ended or (cur.redraw and (
                    not got or self._quiet_for(quiet, now)))):
                line = self._give(cur)
                if line:
                    yield line
        except OSError as exc:  # an unexpected I/O error: report it, never raise
            self.error = _reason(exc, self.path)
        finally:
            for o in self._pinned:
                self.pool.release(o)
            self._pinned.clear()

    def close(self) -> None:
        for o in (self._cur, self._old):
            if o is not None:
                self._close(o)
        self._cur = self._old = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # --- internals -------------------------------------------------------------------------

    def _drain_old(self, budget: int) -> Iterator[tuple[int, bytes]]:
        old = self._old
        assert old is not None
        if not self._hold(old):  # deleted or moved away while the pool had it closed
            self._park_old()
            return
        got = 0
        for used, lines in self._consume(old, budget):
            got += used
            yield used, lines
        if got >= budget:
            return
        if got:
            old.idle_polls = 0
            return
        old.idle_polls += 1
        if old.idle_polls >= 2:  # at its end twice in a row: finished, flush its last line
            tail = old.partial.rstrip(b"\r")
            tail = tail[-KEEP:] if old.cut else _cut(tail)
            self._park_old()
            if tail:  # one line, even if it holds a \r
                yield 0, _strip_ansi_bytes(tail).replace(b"\n", b"") + b"\n"

    def _quiet_for(self, quiet: float | None, now: float | None) -> bool:
        """The file was last modified at least `quiet` seconds before `now`."""
        if quiet is None or self.mtime is None:
            return False
        return (time.time() if now is None else now) - self.mtime >= quiet

    @staticmethod
    def _give(o: _Open) -> bytes:
        """The pending partial line of `o` as a line (ended by \\n), given out now and marked
        so (see `chunks`); b"" if it holds nothing to give (then it is left as it is)."""
        tail = o.partial.rstrip(b"\r")  # a trailing \r held as half a CRLF ends it
        tail = tail[-KEEP:] if o.cut else _cut(tail)
        line = _strip_ansi_bytes(tail).replace(b"\n", b"") if tail else b""
        if not line:
            return b""  # only \r, or a nested bar's row: the next bytes decide
        o.partial, o.cut, o.after_cr, o.redraw, o.given = b"", False, "", False, True
        return line + b"\n"

    def _retire(self) -> None:
        """The path no longer names the current file: drain it as the old one."""
        cur = self._cur
        if cur is None:
            return
        self._cur = None
        self._park_old()  # a second rotation before the first was drained
        cur.idle_polls = 0
        self._old = cur

    def _park_old(self) -> None:
        """Close the rotated-away file, keeping what was read of it in `resume` (a glob that
        matches it under its new name reads on from there)."""
        old, self._old = self._old, None
        if old is not None:
            self.resume[old.ident] = (old.offset, old.fingerprint, self.where)
            self._close(old)

    # --- descriptors, from the pool --------------------------------------------------------

    def _close(self, o: _Open) -> None:
        self.pool.discard(o)
        fd, o.fd = o.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open_fd(self, path: str | Path) -> int:
        """A read-only descriptor of `path`, made room for in the pool; on EMFILE or ENFILE
        (descriptors held elsewhere in the process) the pool gives some back and it is tried
        once more."""
        self.pool.reserve()
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(path, flags)
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            self.pool.shrink()
            return os.open(path, flags)

    def _pin(self, o: _Open) -> None:
        """`o`, just opened, is used by this read: counted in the pool, not closed now."""
        self.pool.add(o)
        self._pinned.append(o)

    def _hold(self, o: _Open) -> bool:
        """`o` with an open descriptor: kept, or opened again where it was (if that path
        still names the same file) or beside it (renamed); False if it is not found. May raise
        OSError (no descriptor left)."""
        if self.pool.claim(o):
            self._pinned.append(o)
            return True
        path = o.path or self.where
        # lazily: the folder is scanned only when the path names another file now
        for where in chain((path,), self._beside(path, o.ident)):
            try:
                fd = self._open_fd(where)
            except OSError as exc:
                if exc.errno in EXHAUSTED:
                    raise
                continue
            try:
                fst = os.fstat(fd)
            except OSError:
                os.close(fd)
                continue
            if (fst.st_dev, fst.st_ino) == o.ident and stat.S_ISREG(fst.st_mode):
                o.fd, o.path = fd, str(where)
                self._pin(o)
                return True
            os.close(fd)
        return False

    @staticmethod
    def _beside(path: str, ident: FileId) -> Iterator[str]:
        """Paths in the folder of `path` that name the file `ident` (it was renamed)."""
        folder = Path(path).parent
        try:
            with os.scandir(folder) as it:
                for n, entry in enumerate(it):
                    if n >= COPY_SCAN:
                        return
                    if entry.inode() != ident[1] or entry.path == path:
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if (st.st_dev, st.st_ino) == ident:
                        yield entry.path
        except OSError:
            return

    def _reopen(self) -> _Open | None:
        """The current file, (re)opened if the path now names another one."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._retire()
            dangling = self.path.is_symlink()
            self.error = (f"dangling symlink: {self.path}" if dangling
                          else f"no such file: {self.path}")
            return None
        except OSError as exc:
            self._retire()
            self.error = _reason(exc, self.path)
            return None
        if stat.S_ISDIR(st.st_mode):
            self._retire()
            self.error = f"is a directory: {self.path}"
            return None
        if not stat.S_ISREG(st.st_mode):
            self._retire()
            self.error = f"not a regular file: {self.path}"
            return None
        ident = (st.st_dev, st.st_ino)
        try:
            same = self._cur is not None and self._cur.ident == ident and self._hold(self._cur)
        except OSError as exc:  # no descriptor left to reopen it
            self.error = _reason(exc, self.path)
            return None
        if same and self._cur is not None:
            cur = self._cur
        else:
            self._retire()
            try:
                fd = self._open_fd(self.path)
            except OSError as exc:
                self.error = _reason(exc, self.path)
                return None
            try:
                fst = os.fstat(fd)
            except OSError as exc:
                os.close(fd)
                self.error = _reason(exc, self.path)
                return None
            if not stat.S_ISREG(fst.st_mode):
                os.close(fd)
                self.error = f"not a regular file: {self.path}"
                return None
            ident = (fst.st_dev, fst.st_ino)
            cur = _Open(fd, ident, path=self.where)
            self._pin(cur)
            start, fingerprint, where = self.resume.get(ident, (0, b"", ""))
            if 0 < start <= fst.st_size and fingerprint and where != self.where \
                    and os.pread(fd, len(fingerprint), 0) == fingerprint:
                cur.offset, cur.fingerprint = start, fingerprint
            elif ident not in self.resume:
                self._resume_copy(cur, fst.st_size)
            self._cur = cur
        fst = os.fstat(cur.fd)
        self.size, self.mtime = fst.st_size, fst.st_mtime
        if fst.st_size < cur.offset or (
                cur.fingerprint and os.pread(cur.fd, len(cur.fingerprint), 0) != cur.fingerprint):
            # truncated (copytruncate), perhaps grown again since: what was written after the
            # last read is in the copy, read on from there; then this file from its start
            copy = self._find_copy(cur)
            if copy is not None:
                self._park_old()
                self._old = copy
            cur.offset, cur.partial, cur.fingerprint, cur.cut = 0, b"", b"", False
            cur.after_cr, cur.redraw, cur.given = "", False, False
        self.error = None
        return cur

    def _resume_copy(self, cur: _Open, size: int) -> None:
        """A new file that is a copy of one followed beside it (`app.log.1`, made by
        copytruncate and seen by a glob before the truncation of `app.log`): its bytes up to
        what was read of the original are not read again. The original's path is this
        path without the end of its name (the longest such name first): one lookup per
        prefix in a `Positions` map."""
        if not self.path.name:
            return
        folder = len(self.where) - len(self.path.name)  # "dir/" before the name
        originals = [self.where[:end] for end in range(len(self.where) - 1, folder, -1)]
        if isinstance(self.resume, Positions):
            found = [r for where in originals for r in self.resume.under(where)]
        else:
            wanted = set(originals)
            found = [r for r in self.resume.values() if r[2] in wanted]
        for start, fingerprint, _ in found:
            if not fingerprint or start <= 0:
                continue
            try:
                if os.pread(cur.fd, len(fingerprint), 0) != fingerprint:
                    continue
            except OSError:
                return
            cur.offset, cur.fingerprint = min(start, size), fingerprint
            return

    def _find_copy(self, cur: _Open) -> _Open | None:
        """The copy that copytruncate made of the current file before truncating it, opened
        at the offset read so far (with the pending partial line): a file beside it whose name
        starts with its name (`app.log.1`, `app.log-20250101`), holding at least the bytes
        read, with the same first bytes; the most recently modified one if several. A copy
        already followed under its own name beyond that offset is left to its follower."""
        if cur.offset <= 0 or not cur.fingerprint:
            return None
        name = self.path.name
        found: list[tuple[int, str, FileId]] = []
        try:
            with os.scandir(self.path.parent) as it:
                for n, entry in enumerate(it):
                    if n >= COPY_SCAN:
                        break
                    if entry.name == name or not entry.name.startswith(name):
                        continue
                    try:
                        st = entry.stat()
                    except OSError:
                        continue
                    ident = (st.st_dev, st.st_ino)
                    if not stat.S_ISREG(st.st_mode) or st.st_size < cur.offset \
                            or ident == cur.ident:
                        continue
                    known = self.resume.get(ident)
                    if known is not None and known[2] != self.where \
                            and known[0] >= cur.offset:
                        continue
                    found.append((st.st_mtime_ns, entry.path, ident))
        except OSError:
            return None
        for _, path, ident in sorted(found, reverse=True):
            try:
                fd = self._open_fd(path)
            except OSError:
                continue
            try:
                fst = os.fstat(fd)
                same = (fst.st_dev, fst.st_ino) == ident and \
                    os.pread(fd, len(cur.fingerprint), 0) == cur.fingerprint
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            copy = _Open(fd, ident, offset=cur.offset, partial=cur.partial,
                         fingerprint=cur.fingerprint, cut=cur.cut, after_cr=cur.after_cr,
                         redraw=cur.redraw, given=cur.given, path=path)
            self._pin(copy)
            return copy
        return None

    def _consume(self, o: _Open, budget: int) -> Iterator[tuple[int, bytes]]:
        """Read `o` from its offset up to `budget` bytes, yielding (bytes used, lines)."""
        while budget > 0:
            data = os.pread(o.fd, min(self.chunk, budget), o.offset)
            if not data:
                return
            o.offset += len(data)
            budget -= len(data)
            if len(o.fingerprint) < FINGERPRINT and o.offset > len(o.fingerprint):
                o.fingerprint = os.pread(o.fd, FINGERPRINT, 0)
            yield len(data), self._split(o, data)

    def _split(self, o: _Open, data: bytes) -> bytes:
        if b"\0" in data:
            data = data.translate(None, b"\0")
        buf = o.partial + data if o.partial else data
        if o.given:  # the line before was given out already: its terminator adds no line
            if buf == b"\r":  # half a CRLF, or the start of a redraw: the next bytes say
                o.partial = buf
                return b""
            o.given = False
            if buf.startswith(b"\r\n"):
                buf = buf[2:]
            elif buf.startswith(b"\n"):
                buf = buf[1:]
        last = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if last == len(buf) - 1 and buf.endswith(b"\r"):
            # a trailing \r may be half of a CRLF: hold it and the line it ends
            last = max(buf.rfind(b"\n", 0, len(buf) - 1), buf.rfind(b"\r", 0, len(buf) - 1))
        if last < 0:
            o.redraw = o.redraw and bool(o.partial)  # the line goes on, or a new one starts
            o.partial = self._bound(o, buf)
            return b""
        complete, rest = buf[: last + 1], buf[last + 1:]
        o.redraw = buf[last] == 13  # the line after it begins with a lone \r
        complete = _strip_ansi_bytes(complete)  # escapes never span lines
        complete = self._after_cr(o, complete)
        was_cut = o.cut
        o.cut = False
        o.partial = self._bound(o, rest)
        chunk = _normalize(complete)
        if was_cut and chunk:  # the end of a line cut while it was being written
            end = chunk.index(b"\n")
            if end > KEEP:
                chunk = chunk[end - KEEP:]
        return chunk

    @staticmethod
    def _after_cr(o: _Open, complete: bytes) -> bytes:
        """`complete` as if the bytes before it had been read with it, when they ended with a
        lone \\r (held no longer, as it was not the last byte read): "\\r" + "\\r\\n" ends
        one line, and "\\r" ESC-sequence + "\\n" is a CRLF (so after text no second line)."""
        if o.after_cr and complete.startswith(b"\r\n"):
            complete, o.after_cr = complete[2:], ""
        elif o.after_cr == "text" and complete.startswith(b"\n"):
            complete, o.after_cr = complete[1:], ""
        if not complete.endswith(b"\r"):
            o.after_cr = ""
            return complete
        before = max(complete.rfind(b"\n", 0, -1), complete.rfind(b"\r", 0, -1))
        if before < len(complete) - 2 or (before >= 0 and complete[before] == 13):
            o.after_cr = "text"
        elif before < 0 and o.after_cr:
            o.after_cr = "text"  # the line already held a \r
        else:
            o.after_cr = "start"
        return complete

    @staticmethod
    def _bound(o: _Open, partial: bytes) -> bytes:
        if len(partial) <= MAX_LINE:
            return partial
        o.cut = True
        return partial[-KEEP:]


def _reason(exc: OSError, path: Path) -> str:
    if isinstance(exc, PermissionError):
        return f"permission denied: {path}"
    if isinstance(exc, IsADirectoryError):
        return f"is a directory: {path}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {path}"
    text = exc.strerror or str(exc)
    return f"{text}: {path}".splitlines()[0]
