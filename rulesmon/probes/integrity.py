"""Cheap integrity checks of output files: is this JSON, JSONL, CSV, PyTorch checkpoint or
safetensors file complete and parseable?

`check` returns None when a file looks valid, or a one-line reason. It never raises: an
unreadable file is a reason too. Checks read as little as they can: the tail of a JSONL file,
the first and last 64 KiB of a CSV, the zip directory of a checkpoint, the header of a
safetensors file. Only JSON files up to 256 MiB are parsed whole.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

FORMATS = ("json", "jsonl", "csv", "torch", "safetensors", "none")
#: Formats whose last line may legitimately be unfinished while the file is being written.
APPENDED = frozenset({"jsonl", "csv"})

JSON_PARSE_LIMIT = 256 * 1024**2
CHUNK = 64 * 1024
LINE_LIMIT = 64 * 1024**2
SAFETENSORS_HEADER_LIMIT = 100_000_000
_PICKLE_PROTOCOLS = frozenset({2, 3, 4, 5})


def check(path: Path, fmt: str, *, quiet: bool = True) -> str | None:
    """None when `path` is a valid `fmt` file, else a one-line reason.

    `quiet` says the file is no longer being written: only then is an unfinished last line of
    a JSONL or CSV file an error (while it is being appended to, the last complete line is
    checked instead).
    """
    if fmt == "none":
        return None
    checker = _CHECKS.get(fmt)
    if checker is None:
        return f"unknown format {fmt!r}"
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            return checker(f, size, quiet)
    except OSError as exc:
        return _line(f"cannot read: {exc.strerror or exc}")
    except Exception as exc:  # a checker must never take the probe down
        return _line(f"{type(exc).__name__}: {exc}")


def _line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read(f: BinaryIO, start: int, length: int) -> bytes:
    f.seek(start)
    return f.read(length)


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)


# --- json ----------------------------------------------------------------------------------------


def _json(f: BinaryIO, size: int, quiet: bool) -> str | None:
    if size == 0:
        return "empty file"
    if size <= JSON_PARSE_LIMIT:
        data = f.read()
        if not data.strip():
            return "empty file"
        try:
            json.loads(data)
        except ValueError as exc:
            return _line(f"invalid JSON: {_json_error(exc)}")
        except RecursionError:
            return "invalid JSON: nested too deeply"
        return None
    head = _read(f, 0, CHUNK).lstrip()
    tail = _read(f, max(0, size - CHUNK), CHUNK).rstrip()
    if not head or head[:1] not in (b"{", b"["):
        return "invalid JSON: does not start with { or ["
    closing = b"}" if head[:1] == b"{" else b"]"
    if not tail.endswith(closing):
        return f"invalid JSON: truncated (does not end with {closing.decode()})"
    return None


# --- jsonl ---------------------------------------------------------------------------------------


def _tail_lines(f: BinaryIO, size: int) -> tuple[bytes | None, bytes, bool]:
    """(the last complete non-blank line or None, the unfinished bytes after the last newline,
    whether the last complete line could be read whole)."""
    n = CHUNK
    while True:
        start = max(0, size - n)
        data = _read(f, start, size - start)
        cut = data.rfind(b"\n")
        trailing = data[cut + 1:] if cut >= 0 else data
        if cut < 0 and start == 0:
            return None, trailing, True
        body = data[:cut].rstrip() if cut >= 0 else b""
        nl = body.rfind(b"\n")
        if nl >= 0 or start == 0:
            line = body[nl + 1:]
            return (line if line.strip() else None), trailing, True
        if n >= LINE_LIMIT:
            return None, trailing, False
        n *= 4


def _jsonl(f: BinaryIO, size: int, quiet: bool) -> str | None:
    if size == 0:
        return None
    line, trailing, _whole = _tail_lines(f, size)
    if trailing.strip():
        try:
            json.loads(trailing)
        except (ValueError, RecursionError) as exc:
            if quiet:
                detail = _json_error(exc) if isinstance(exc, ValueError) else "nested too deeply"
                return _line(f"unfinished or invalid last line: {detail}")
        else:
            return None
    if line is None:
        return None  # nothing complete yet, or a last line too long to check cheaply
    try:
        json.loads(line)
    except ValueError as exc:
        return _line(f"last line is not valid JSON: {_json_error(exc)}")
    except RecursionError:
        return "last line is not valid JSON: nested too deeply"
    return None


# --- csv -----------------------------------------------------------------------------------------


def _rows(text: str, dialect: type[csv.Dialect] | csv.Dialect) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text), dialect) if row]


def _csv(f: BinaryIO, size: int, quiet: bool) -> str | None:
    if size == 0:
        return "empty file"
    head_bytes = _read(f, 0, CHUNK)
    first_nl = head_bytes.find(b"\n")
    if first_nl < 0 and size > CHUNK:
        return None  # a header longer than 64 KiB: cannot be checked cheaply
    head = head_bytes.decode("utf-8-sig", "replace")
    header_line = head.splitlines()[0] if head.strip() else ""
    if not header_line.strip():
        return "empty header row"
    dialect: type[csv.Dialect] | csv.Dialect
    try:
        dialect = csv.Sniffer().sniff(header_line, delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    try:
        header = next(csv.reader([header_line], dialect))
        if size <= CHUNK:
            text = head
        else:
            tail = _read(f, size - CHUNK, CHUNK)
            text = tail[tail.find(b"\n") + 1:].decode("utf-8", "replace")
        cut = text.rfind("\n")
        trailing = text[cut + 1:] if cut >= 0 else text
        body = text[:cut] if cut >= 0 else ""
        if size <= CHUNK and cut < 0:
            return None  # only a header, still being written
        if trailing.strip():
            row = next(csv.reader([trailing], dialect))
            if len(row) == len(header):
                return None
            if quiet:
                return (f"unfinished last row: {len(row)} field(s), header has "
                        f"{len(header)}")
        rows = _rows(body, dialect)
    except csv.Error as exc:
        return _line(f"CSV error: {exc}")
    if not rows:
        return None
    last = rows[-1]
    if len(last) != len(header):
        return f"last row has {len(last)} field(s), header has {len(header)}"
    return None


# --- torch ---------------------------------------------------------------------------------------


def _torch(f: BinaryIO, size: int, quiet: bool) -> str | None:
    if size == 0:
        return "empty file"
    magic = _read(f, 0, 4)
    f.seek(0)
    if zipfile.is_zipfile(f):
        try:
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
            return _line(f"damaged zip archive: {exc}")
        names = [i.filename for i in infos]
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "zip archive without data.pkl (not a PyTorch checkpoint)"
        for info in infos:
            if info.header_offset + info.compress_size > size:
                return _line(f"truncated: entry {info.filename} ends beyond the file")
        return None
    if magic[:2] == b"PK":
        return "truncated zip archive (no central directory at the end)"
    if len(magic) >= 2 and magic[0] == 0x80 and magic[1] in _PICKLE_PROTOCOLS:
        return None  # the legacy (pre-1.6) pickle format
    return "not a PyTorch file (neither a zip archive with data.pkl nor a pickle)"


# --- safetensors ---------------------------------------------------------------------------------


def _safetensors(f: BinaryIO, size: int, quiet: bool) -> str | None:
    if size < 8:
        return "too short for a safetensors header"
    (n,) = struct.unpack("<Q", _read(f, 0, 8))
    if n >= SAFETENSORS_HEADER_LIMIT:
        return f"implausible header length {n}"
    if size < 8 + n:
        return f"truncated header: {n} bytes announced, {size - 8} present"
    try:
        header = json.loads(_read(f, 8, n))
    except ValueError as exc:
        return _line(f"header is not valid JSON: {_json_error(exc)}")
    if not isinstance(header, dict):
        return "header is not a JSON object"
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            return _line(f"tensor {name}: missing or bad data_offsets")
        begin, end = offsets
        if begin < 0 or end < begin:
            return _line(f"tensor {name}: bad data_offsets [{begin}, {end}]")
        if end > data_len:
            return _line(f"truncated: tensor {name} ends at byte {end} of {data_len} data bytes")
    return None


_CHECKS: dict[str, Callable[[BinaryIO, int, bool], str | None]] = {
    "json": _json,
    "jsonl": _jsonl,
    "csv": _csv,
    "torch": _torch,
    "safetensors": _safetensors,
}
