# Over 800 lines: NVML, nvidia-smi CSV and metrics-file readers beside the probe; they are to
# become gpu/ modules (nvml, csv, probe) with the layout of issue 16.
"""`gpu.*` facts (and `worker.gpu_util`, `worker.gpu_mem`): from NVML on this machine, or from
a GPU metrics CSV the job writes on a shared filesystem.

A node probe: for every instance whose job declares `gpu:` it adds facts aggregated over the
instance's GPUs (`gpu.util` is the mean, `gpu.mem_used` the sum, `gpu.mem_pct` the highest
GPU, `gpu.temp` the hottest...). A missing driver, no GPU or a missing CSV is a normal state,
not a failure: `gpu.available` is False and `gpu.error` says why.

NVML (`devices: auto | job | [indices]`): every NVML call is in the small `Nvml` class, which
wraps the `pynvml` module of nvidia-ml-py (imported lazily, `nvmlInit` once; after a failed
init it is retried at most every `RETRY_INIT` seconds). All devices and their compute processes
are read once per tick and shared by every instance. `devices: job` picks the GPUs running a
process of the instance: its `worker.pid`/`job.pid`, their descendants (found from the GPU
process upwards, so only the few GPU processes are looked at) and processes of the process
group it leads. Until one of them shows up on a GPU, `worker.gpu` (the CUDA_VISIBLE_DEVICES
index, which assumes CUDA_DEVICE_ORDER=PCI_BUS_ID) is used. With no process on a GPU and no
`worker.gpu`, `gpu.count` is 0 and the other values are absent. NVML reports host pids: a
job in another pid namespace (a container) is not matched.
`gpu.job_mem` is the GPU memory of the instance's own processes (any instance with a known
pid, worker or not); `worker.gpu_mem` the same for a worker. Xid errors (`gpu.xid_errors`,
`gpu.last_xid`) come from the kernel's `NVRM: Xid` lines for the instance's GPUs, matched by
PCI address (see xid.py), counted from `job.start_time`; where no kernel log can be read,
from NVML's Xid events (registered when first needed, then drained without waiting each tick
and kept with the reader's events).

CSV (`csv:` path template rendered with `job` and `worker`; SLURM's `%j`... too): only the
header and the last rows are read (seeking from the end, never the whole file). nvidia-smi's
`--format=csv` headers (`utilization.gpu [%]`, `memory.used [MiB]`, `temperature.gpu`,
`power.draw [W]`, `clocks_throttle_reasons.active`...) with or without units in the values,
and the columns of the SLURM monitoring document (`gpu_util`, `gpu_mem_used`, `gpu_mem_total`
in GB = 10^9 bytes) are understood; repeated header lines (one `nvidia-smi ... >> file` per
sample) are skipped. With several GPUs in one file the last sample is the run of last rows
sharing the last timestamp (within `SAMPLE_SPREAD` seconds) and a distinct GPU index. `gpu.age`
comes from the `timestamp` column (nvidia-smi's `2025/01/15 10:23:45.123`, ISO or epoch; local
time when no zone is given), else from the file's modification time. A path that becomes a
glob (a per-worker file for an instance without a worker) aggregates every matching file, and
`gpu.age` is then the oldest file's.
"""

from __future__ import annotations

import contextlib
import csv
import glob as globmod
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Facts, TickContext, job_base, render_path
from .logs import expand_slurm, render_context
from .xid import BusId, XidEvent, XidReader, bus_id, summarize

if TYPE_CHECKING:
    from ..config.models import GpuSpec, Job, Ruleset

log = logging.getLogger(__name__)

RETRY_INIT = 60.0  #: seconds before a failed nvmlInit is tried again
HEADER_MAX = 64 * 1024  #: the header line must fit in this many bytes
TAIL_START = 8 * 1024  #: first read from the end of a CSV; grows 4x while the sample is cut
TAIL_MAX = 1024 * 1024  #: never read more than this from the end of a CSV
SAMPLE_SPREAD = 1.0  #: rows of one sample have timestamps at most this many seconds apart
NO_CSV = "no metrics file yet"

#: Clock throttle ("event") reason bits, as NVML and nvidia-smi name them; idle (0x1) is left
#: out on purpose: an idle GPU is not throttled.
THROTTLE_REASONS = {
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
_NVML_TEMPERATURE_GPU = 0
_NVML_EVENT_XID = 0x0000000000000008  #: nvmlEventTypeXidCriticalError
_NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
_NVML_VOLATILE_ECC = 0


@dataclass
class Device:
    """One GPU's sample; None where it is unknown or not supported."""

    index: int
    util: float | None = None
    mem_used: int | None = None
    mem_total: int | None = None
    temp: float | None = None
    power: float | None = None
    power_limit: float | None = None
    throttle: list[str] | None = None
    ecc: int | None = None
    bus: BusId | None = None  #: PCI address, to match the kernel's Xid lines


@dataclass(frozen=True)
class GpuProcess:
    """A compute process on a GPU (a host pid), with its GPU memory when NVML knows it."""

    pid: int
    gpu: int
    mem: int | None


@dataclass
class Snapshot:
    """Every device and compute process, read once per tick; `processes` is None when the
    process list could not be read."""

    devices: dict[int, Device] = field(default_factory=dict)
    processes: list[GpuProcess] | None = None
    error: str | None = None


class NvmlUnavailable(Exception):
    """NVML cannot be used: no library, no driver, no GPU. The message is `gpu.error`."""


def reasons_from_mask(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


# --- NVML ----------------------------------------------------------------------------------------


class Nvml:
    """The only place that calls NVML, through a `pynvml`-like module (the real one, imported
    on first use, or a fake given to the constructor)."""

    def __init__(self, module: Any = None) -> None:
        self._module = module
        self._m: Any = None  # the module, once nvmlInit succeeded
        self._failed_at: float | None = None
        self._error = ""
        self._events: Any = None  # the Xid event set, False when NVML cannot give one

    def _init(self) -> Any:
        if self._m is not None:
            return self._m
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_INIT:
            raise NvmlUnavailable(self._error)
        m = self._module
        try:
            if m is None:
                try:
                    import pynvml
                except ImportError as exc:
                    raise NvmlUnavailable(
                        f"nvidia-ml-py is not installed (module pynvml: {exc})") from None
                m = pynvml
            try:
                m.nvmlInit()
            except m.NVMLError as exc:
                raise NvmlUnavailable(self._describe(m, exc)) from None
        except NvmlUnavailable as exc:
            self._failed_at, self._error = time.monotonic(), str(exc)
            raise
        self._m, self._failed_at = m, None
        return m

    @staticmethod
    def _describe(m: Any, exc: BaseException) -> str:
        if isinstance(exc, getattr(m, "NVMLError_LibraryNotFound", ())):
            return f"NVML library not found, no NVIDIA driver on this host ({exc})"
        if isinstance(exc, getattr(m, "NVMLError_DriverNotLoaded", ())):
            return f"NVIDIA driver not loaded ({exc})"
        return f"NVML error: {exc}"

    def _get(self, names: Iterable[str], *args: Any) -> Any:
        """The first of these functions that exists and succeeds; None when none does (not
        supported, no permission...)."""
        m = self._m
        for name in names:
            fn = getattr(m, name, None)
            if fn is None:
                continue
            try:
                return fn(*args)
            except m.NVMLError:
                continue
        return None

    def read(self) -> Snapshot:
        """All devices and their compute processes; raises NvmlUnavailable."""
        m = self._init()
        try:
            count = int(m.nvmlDeviceGetCount())
        except m.NVMLError as exc:
            raise NvmlUnavailable(self._describe(m, exc)) from None
        if count == 0:
            raise NvmlUnavailable("NVML sees no GPU on this host")
        snap = Snapshot(processes=[])
        for index in range(count):
            try:
                handle = m.nvmlDeviceGetHandleByIndex(index)
            except m.NVMLError as exc:
                log.debug("GPU %d: %s", index, exc)
                continue
            snap.devices[index] = self._device(index, handle)
            procs = self._get(("nvmlDeviceGetComputeRunningProcesses_v3",
                               "nvmlDeviceGetComputeRunningProcesses",
                               "nvmlDeviceGetComputeRunningProcesses_v2"), handle)
            if procs is None:
                snap.processes = None
            elif snap.processes is not None:
                for p in procs:
                    mem = getattr(p, "usedGpuMemory", None)
                    snap.processes.append(GpuProcess(int(p.pid), index,
                                                     None if mem is None else int(mem)))
        if not snap.devices:
            raise NvmlUnavailable(f"none of the {count} GPU(s) NVML lists could be opened")
        return snap

    def _device(self, index: int, handle: Any) -> Device:
        d = Device(index)
        rates = self._get(("nvmlDeviceGetUtilizationRates",), handle)
        if rates is not None:
            d.util = float(rates.gpu)
        mem = self._get(("nvmlDeviceGetMemoryInfo",), handle)
        if mem is not None:
            d.mem_used, d.mem_total = int(mem.used), int(mem.total)
        temp = self._get(("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"),
                         handle, _NVML_TEMPERATURE_GPU)
        if temp is not None:
            d.temp = float(temp)
        power = self._get(("nvmlDeviceGetPowerUsage",), handle)
        if power is not None:
            d.power = power / 1000.0
        limit = self._get(("nvmlDeviceGetEnforcedPowerLimit",), handle)
        if limit is not None:
            d.power_limit = limit / 1000.0
        mask = self._get(("nvmlDeviceGetCurrentClocksEventReasons",
                          "nvmlDeviceGetCurrentClocksThrottleReasons"), handle)
        if mask is not None:
            d.throttle = reasons_from_mask(int(mask))
        ecc = self._get(("nvmlDeviceGetTotalEccErrors",), handle,
                        _NVML_MEMORY_ERROR_TYPE_UNCORRECTED, _NVML_VOLATILE_ECC)
        if ecc is not None:
            d.ecc = int(ecc)
        pci = self._get(("nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo"), handle)
        text = getattr(pci, "busIdLegacy", None) or getattr(pci, "busId", None)
        if isinstance(text, str | bytes):
            d.bus = bus_id(text)
        return d

    def xid_events(self, devices: Mapping[int, Device]) -> list[XidEvent]:
        """Xid errors NVML reported since the last call (its event API, where the driver
        supports it; registered on first use, never waiting); [] where it cannot."""
        m = self._m
        if m is None or self._events is False:
            return []
        try:
            if self._events is None:
                events = m.nvmlEventSetCreate()
                for index in devices:
                    m.nvmlDeviceRegisterEvents(m.nvmlDeviceGetHandleByIndex(index),
                                               _NVML_EVENT_XID, events)
                self._events = events
            out: list[XidEvent] = []
            for _ in range(1000):
                try:
                    data = m.nvmlEventSetWait(self._events, 0)
                except m.NVMLError:
                    break  # timeout: no more events
                try:  # a handle is a ctypes pointer: two for one GPU are not equal
                    which = int(m.nvmlDeviceGetIndex(data.device))
                except m.NVMLError:
                    continue
                device = devices.get(which)
                if device is not None and device.bus is not None:
                    out.append(XidEvent(device.bus, int(data.eventData), time.time(),
                                        f"NVML: Xid {int(data.eventData)} on GPU {which}"))
            return out
        except (AttributeError, TypeError, m.NVMLError) as exc:
            log.debug("NVML Xid events: %s", exc)
            self._events = False
            return []

    @property
    def xid_supported(self) -> bool:
        """NVML delivers Xid events (its event set is registered)."""
        return self._events is not None and self._events is not False

    def close(self) -> None:
        m, self._m = self._m, None
        if m is not None:
            if self._events not in (None, False):
                with contextlib.suppress(Exception):
                    m.nvmlEventSetFree(self._events)
            self._events = None
            try:
                m.nvmlShutdown()
            except Exception as exc:  # shutting down: nothing more to do about it
                log.debug("nvmlShutdown: %s", exc)


# --- CSV -----------------------------------------------------------------------------------------


class CsvError(Exception):
    """A metrics CSV that gives no sample; the message is `gpu.error`."""


_MIB = 1 << 20
_SIZE_UNITS = {"b": 1, "byte": 1, "bytes": 1, "kb": 1000, "kib": 1 << 10, "mb": 1000**2,
               "mib": _MIB, "gb": 1000**3, "gib": 1 << 30, "tb": 1000**4, "tib": 1 << 40}
_POWER_UNITS = {"w": 1.0, "watt": 1.0, "watts": 1.0, "mw": 0.001, "kw": 1000.0}
_SUFFIXES = {"_pct": "%", "_percent": "%", "_mib": "mib", "_gib": "gib", "_mb": "mb",
             "_gb": "gb", "_kib": "kib", "_kb": "kb", "_bytes": "b", "_w": "w", "_watts": "w",
             "_mw": "mw", "_c": "c", "_celsius": "c"}
#: Column names (lower case, `.`, `-` and spaces as `_`, unit suffix removed) by metric.
_ALIASES = {
    "timestamp": ("timestamp", "time", "ts", "date", "datetime", "time_stamp"),
    "index": ("index", "gpu_index", "gpu_id", "gpu", "device", "gpu_idx"),
    "util": ("utilization_gpu", "gpu_util", "gpu_utilization", "utilization", "util",
             "gpu_usage", "gpu_utilisation", "utilisation"),
    "mem_used": ("memory_used", "gpu_mem_used", "mem_used", "gpu_memory_used", "gpu_memory",
                 "fb_used", "memory_used_total"),
    "mem_total": ("memory_total", "gpu_mem_total", "mem_total", "gpu_memory_total",
                  "fb_total"),
    "mem_free": ("memory_free", "gpu_mem_free", "mem_free", "gpu_memory_free", "fb_free"),
    "temp": ("temperature_gpu", "gpu_temp", "temperature", "temp", "gpu_temperature"),
    "power": ("power_draw", "power_draw_average", "power_draw_instant", "gpu_power",
              "power", "power_usage"),
    "power_limit": ("enforced_power_limit", "power_limit", "gpu_power_limit"),
    "throttle": ("clocks_throttle_reasons_active", "clocks_event_reasons_active",
                 "throttle_reasons"),
    "ecc": ("ecc_errors_uncorrected_volatile_total", "ecc_errors_uncorrected_aggregate_total",
            "ecc_errors", "ecc_uncorrected"),
}
_METRIC_OF = {alias: metric for metric, aliases in _ALIASES.items() for alias in aliases}
_REASON_PREFIXES = ("clocks_throttle_reasons_", "clocks_event_reasons_")
_VALUE = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z%°]*)")
_HEADER = re.compile(r"(.*?)\s*[\[(]\s*([^\])]*?)\s*[\])]\s*")
_GLOB = re.compile(r"[*?[]")


@dataclass
class Columns:
    """Where each metric is in a CSV row, and the unit its header gives."""

    names: list[str]
    at: dict[str, int] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # metric -> normalised column name
    reasons: dict[str, int] = field(default_factory=dict)  # reason name -> column (Active/...)


def _normalise(column: str) -> tuple[str, str]:
    text = column.strip().strip("\ufeff").strip().strip('"').lower()
    unit = ""
    m = _HEADER.fullmatch(text)
    if m:
        text, unit = m.group(1), m.group(2).strip().lower()
    name = re.sub(r"[.\s\-/]+", "_", text).strip("_")
    if not unit:
        for suffix, u in _SUFFIXES.items():
            if name.endswith(suffix) and len(name) > len(suffix):
                name, unit = name[: -len(suffix)], u
                break
    return name, unit


def parse_header(fields: list[str]) -> Columns:
    cols = Columns([f.strip() for f in fields])
    for i, raw in enumerate(fields):
        name, unit = _normalise(raw)
        metric = _METRIC_OF.get(name)
        if metric is not None and metric not in cols.at:
            cols.at[metric], cols.units[metric], cols.sources[metric] = i, unit, name
            continue
        for prefix in _REASON_PREFIXES:
            reason = name[len(prefix):]
            if name.startswith(prefix) and reason not in ("active", "supported", "gpu_idle"):
                cols.reasons.setdefault(reason, i)
    if not ({"util", "mem_used", "mem_total", "temp", "power"} & cols.at.keys()):
        shown = ", ".join(_printable(n)[:40] for n in cols.names[:6] if _printable(n))
        raise CsvError(f"no GPU metrics columns in the header ({shown or 'no names'}); "
                       "expected names such as utilization.gpu [%], memory.used [MiB] or "
                       "gpu_util, gpu_mem_used")
    return cols


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable()).strip()


def _value(text: str) -> tuple[float, str] | None:
    m = _VALUE.fullmatch(text.strip())
    if not m:
        return None
    number = float(m.group(1))
    return (number, m.group(2).lower()) if math.isfinite(number) else None


def _size(text: str, header_unit: str, default: str) -> int | None:
    v = _value(text)
    if v is None:
        return None
    number, unit = v
    scale = _SIZE_UNITS.get(unit or header_unit or default)
    return None if scale is None else round(number * scale)


def _number(text: str) -> float | None:
    v = _value(text)
    return None if v is None else v[0]


def _power(text: str, header_unit: str) -> float | None:
    v = _value(text)
    if v is None:
        return None
    number, unit = v
    scale = _POWER_UNITS.get(unit or header_unit or "w")
    return None if scale is None else number * scale


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds (or milliseconds), nvidia-smi's `2025/01/15 10:23:45.123` or ISO 8601;
    without a zone the time is local."""
    text = text.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number <= 0:
            return None
        return number / 1000.0 if number > 1e11 else number
    text = re.sub(r"^(\d{4})/(\d{1,2})/(\d{1,2})", r"\1-\2-\3", text)
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})([ T].*)?", text)
    if m:  # fromisoformat wants two-digit months and days
        text = f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}{m.group(4) or ''}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _device_from_row(row: list[str], cols: Columns, position: int) -> Device:
    def cell(metric: str) -> str | None:
        i = cols.at.get(metric)
        return row[i] if i is not None and i < len(row) else None

    index_text = cell("index")
    index = _number(index_text) if index_text is not None else None
    d = Device(int(index) if index is not None and index.is_integer() else position)
    if (text := cell("util")) is not None:
        d.util = _number(text)
    mem_default = "gb" if cols.sources.get("mem_used", "").startswith("gpu_mem_") else "mib"
    if (text := cell("mem_used")) is not None:
        d.mem_used = _size(text, cols.units["mem_used"], mem_default)
    total_default = "gb" if cols.sources.get("mem_total", "").startswith("gpu_mem_") else "mib"
    if (text := cell("mem_total")) is not None:
        d.mem_total = _size(text, cols.units["mem_total"], total_default)
    if d.mem_total is None and d.mem_used is not None and (text := cell("mem_free")) is not None:
        free_default = "gb" if cols.sources["mem_free"].startswith("gpu_mem_") else "mib"
        free = _size(text, cols.units["mem_free"], free_default)
        d.mem_total = None if free is None else d.mem_used + free
    if (text := cell("temp")) is not None:
        d.temp = _number(text)
    if (text := cell("power")) is not None:
        d.power = _power(text, cols.units["power"])
    if (text := cell("power_limit")) is not None:
        d.power_limit = _power(text, cols.units["power_limit"])
    if (text := cell("throttle")) is not None:
        try:
            d.throttle = reasons_from_mask(int(text.strip(), 16))
        except ValueError:
            d.throttle = None
    elif cols.reasons:
        active = [reason for reason, i in cols.reasons.items()
                  if i < len(row) and row[i].strip().lower() == "active"]
        known = any(i < len(row) and row[i].strip().lower() in ("active", "not active")
                    for i in cols.reasons.values())
        d.throttle = sorted(active) if known else None
    if (text := cell("ecc")) is not None:
        ecc = _number(text)
        d.ecc = int(ecc) if ecc is not None else None
    return d


def _has_values(d: Device) -> bool:
    return any(v is not None for v in (d.util, d.mem_used, d.mem_total, d.temp, d.power))


@dataclass
class CsvSample:
    """The last sample of one metrics CSV."""

    path: str
    devices: list[Device]
    time: float  # the sample's timestamp, else the file's modification time


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\x00", "")


def _split(line: str) -> list[str] | None:
    try:
        return [f.strip() for f in next(csv.reader([line], skipinitialspace=True), [])]
    except csv.Error:
        return None


def _rows(lines: list[str], header: list[str]) -> tuple[list[list[str]], int]:
    """Parsed data rows, and how many lines were not rows: blank lines and repeated headers
    are left out silently, lines of another width or unreadable ones are counted."""
    out: list[list[str]] = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        fields = _split(line)
        if fields == header:
            continue
        if fields is None or len(fields) != len(header):
            bad += 1
            continue
        out.append(fields)
    return out, bad


def _last_sample(rows: list[list[str]], cols: Columns) -> tuple[list[list[str]], bool]:
    """The last rows that belong to one sample, in file order, and whether the sample is known
    to be complete (a row of an earlier sample was seen before it)."""
    ts_at, index_at = cols.at.get("timestamp"), cols.at.get("index")
    last = rows[-1]
    last_ts = parse_timestamp(last[ts_at]) if ts_at is not None else None
    sample = [last]
    seen = {last[index_at]} if index_at is not None else set()
    for row in reversed(rows[:-1]):
        if index_at is None and ts_at is None:
            return sample, True
        if index_at is not None:
            if row[index_at] in seen:
                return sample[::-1], True
            seen.add(row[index_at])
        if ts_at is not None:
            ts = parse_timestamp(row[ts_at])
            if ts is None or last_ts is None:
                if row[ts_at] != last[ts_at]:
                    return sample[::-1], True
            elif abs(last_ts - ts) > SAMPLE_SPREAD:
                return sample[::-1], True
        sample.append(row)
    return sample[::-1], False


def read_csv_sample(path: str) -> CsvSample:
    """The header and the last sample of a metrics CSV, read from its end; raises
    FileNotFoundError or CsvError."""
    with open(path, "rb") as f:  # noqa: PTH123  # a str path from a glob or a template
        st = os.fstat(f.fileno())
        head = f.read(HEADER_MAX)
        if not head.strip():
            raise CsvError("metrics file is empty")
        end = head.find(b"\n")
        if end < 0 and len(head) >= HEADER_MAX:
            raise CsvError("no header line (first line too long)")
        header_line = _decode(head if end < 0 else head[:end]).rstrip("\r").lstrip("\ufeff")
        header = _split(header_line) or [f.strip() for f in header_line.split(",")]
        cols = parse_header(header)
        header_end = len(head) if end < 0 else end + 1
        size = st.st_size
        block = TAIL_START
        while True:
            start = max(header_end, size - block)
            f.seek(start)
            data = f.read(max(0, size - start))
            lines = [line.rstrip("\r") for line in _decode(data).split("\n")]
            if start > header_end:
                lines = lines[1:]  # it starts inside a line
            partial = lines.pop() if lines else ""  # "" when the data ends with a newline
            rows, bad = _rows(lines, header)
            if partial:  # an unterminated last line may be half written: use it only when
                # it parses to a full row whose cells are all there and readable
                last, _ = _rows([partial], header)
                if last and all(last[0]) and _has_values(_device_from_row(last[0], cols, 0)):
                    rows.append(last[0])
            if rows:
                sample, complete = _last_sample(rows, cols)
                if complete or start <= header_end or block >= TAIL_MAX:
                    break
            elif start <= header_end or block >= TAIL_MAX:
                if bad:
                    raise CsvError(f"no row has the {len(header)} columns of the header")
                raise CsvError("no data rows yet" if start <= header_end else
                               f"no readable row in the last {block} bytes")
            block *= 4
    devices = [_device_from_row(row, cols, i) for i, row in enumerate(sample)]
    devices = [d for d in devices if _has_values(d)]
    if not devices:
        raise CsvError("no readable values in the last row")
    ts_at = cols.at.get("timestamp")
    stamps = [t for row in sample
              if ts_at is not None and (t := parse_timestamp(row[ts_at])) is not None]
    return CsvSample(path, devices, max(stamps) if stamps else st.st_mtime)


# --- facts ---------------------------------------------------------------------------------------


def aggregate(devices: list[Device]) -> Facts:
    """`gpu.*` facts over some GPUs (available and error are the caller's)."""
    facts: Facts = {"gpu.count": len(devices)}
    utils = [d.util for d in devices if d.util is not None]
    if utils:
        facts["gpu.util"] = sum(utils) / len(utils)
        facts["gpu.util_min"] = min(utils)
        facts["gpu.util_max"] = max(utils)
    used = [d.mem_used for d in devices if d.mem_used is not None]
    if used:
        facts["gpu.mem_used"] = sum(used)
        facts["gpu.mem_max"] = max(used)
    totals = [d.mem_total for d in devices if d.mem_total is not None]
    if totals:
        facts["gpu.mem_total"] = sum(totals)
    pcts = [100.0 * d.mem_used / d.mem_total for d in devices
            if d.mem_used is not None and d.mem_total]
    if pcts:
        facts["gpu.mem_pct"] = max(pcts)
    temps = [d.temp for d in devices if d.temp is not None]
    if temps:
        facts["gpu.temp"] = max(temps)
    power = [d.power for d in devices if d.power is not None]
    if power:
        facts["gpu.power"] = sum(power)
    limits = [d.power_limit for d in devices if d.power_limit is not None]
    if limits:
        facts["gpu.power_limit"] = sum(limits)
    throttles = [d.throttle for d in devices if d.throttle is not None]
    if throttles:
        reasons = sorted({r for t in throttles for r in t})
        facts["gpu.throttled"] = bool(reasons)
        facts["gpu.throttle_reasons"] = reasons
    ecc = [d.ecc for d in devices if d.ecc is not None]
    if ecc:
        facts["gpu.ecc_errors"] = sum(ecc)
    return facts


def unavailable(reason: str) -> Facts:
    return {"gpu.available": False, "gpu.error": reason}


def _pid(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class _Tick:
    """What one tick reads once and shares between instances."""

    def __init__(self, probe: GpuProbe) -> None:
        self.probe = probe
        self._snapshot: Snapshot | None = None
        self._owners: dict[int, set[int]] = {}
        self.csv: dict[str, CsvSample | Exception] = {}
        self._xids: list[XidEvent] | None = None
        self._xids_read = False

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            try:
                self._snapshot = self.probe.nvml.read()
            except NvmlUnavailable as exc:
                self._snapshot = Snapshot(error=str(exc))
        return self._snapshot

    def xids(self, snap: Snapshot) -> list[XidEvent] | None:
        """The host's Xid events (kernel log, else NVML's events, which are asked only then
        and kept by the reader), read once per tick; None when no source can be read."""
        if not self._xids_read:
            self._xids_read = True
            reader = self.probe.xid
            if reader is None:
                reader = self.probe.xid = XidReader()
            events: list[XidEvent] | None = reader.events()
            if not reader.readable:
                nvml = self.probe.nvml
                found = nvml.xid_events(snap.devices)
                if found:
                    reader.add(found)
                    events = reader.known()
                elif not nvml.xid_supported:
                    events = None
            self._xids = events
        return self._xids

    def owners(self, pid: int) -> set[int]:
        """The pid, its ancestors and its process group leader: an instance owns a GPU
        process when one of these is the instance's pid."""
        found = self._owners.get(pid)
        if found is None:
            import psutil

            found = {pid}
            with contextlib.suppress(psutil.Error, OSError):
                found.update(p.pid for p in psutil.Process(pid).parents())
            with contextlib.suppress(OSError):
                found.add(os.getpgid(pid))
            self._owners[pid] = found
        return found


class GpuProbe:
    """GPU facts for every instance whose job declares `gpu:`; see the module docstring."""

    name = "gpu"

    def __init__(self, ruleset: Ruleset, base_dir: Path | str, nvml: Any = None,
                 xid: XidReader | None = None) -> None:
        self.ruleset = ruleset
        self.base_dir = Path(base_dir)
        #: The NVML boundary: an `Nvml`, or a pynvml-like module to wrap (None: pynvml).
        self.nvml = nvml if isinstance(nvml, Nvml) else Nvml(nvml)
        #: Where Xid errors come from (created on first use: dmesg and the kernel logs).
        self.xid = xid
        #: Why an instance got no facts this tick (a bug, logged), by instance key.
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self, ctx: TickContext) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            self.nvml.close()
            if self.xid is not None:
                self.xid.close()

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        with self._lock:
            self.errors = {}
            out: dict[str, Facts] = {}
            ruleset = ctx.ruleset or self.ruleset
            tick = _Tick(self)
            for key, facts in ctx.instances.items():
                job_key = facts.get("job.key")
                job = ruleset.jobs.get(job_key) if isinstance(job_key, str) else None
                if job is None or job.gpu is None:
                    continue
                try:
                    if job.gpu.csv:
                        out[key] = self._from_csv(ctx, tick, job, job.gpu, facts)
                    else:
                        out[key] = self._from_nvml(tick, job.gpu, facts)
                except Exception as exc:  # a bug must not stop the other instances
                    log.exception("gpu probe failed for %s", key)
                    self.errors[key] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return out

    # --- NVML ------------------------------------------------------------------------------

    def _from_nvml(self, tick: _Tick, spec: GpuSpec, facts: Mapping[str, Any]) -> Facts:
        snap = tick.snapshot()
        if snap.error is not None:
            return unavailable(snap.error)
        pids = {p for p in (_pid(facts.get("worker.pid")), _pid(facts.get("job.pid"))) if p}
        own = [p for p in snap.processes or () if pids and pids & tick.owners(p.pid)]
        own_gpus = sorted({p.gpu for p in own if p.gpu in snap.devices})
        assigned = facts.get("worker.gpu")
        if (not own_gpus and isinstance(assigned, int) and assigned in snap.devices
                and not facts.get("job.terminal")):
            own_gpus = [assigned]
        if spec.devices == "job":
            if not pids and not isinstance(assigned, int):
                return unavailable("no process of the job is known on this host (use csv: "
                                   "for a job on another node)")
            indices = own_gpus
        elif spec.devices == "auto":
            indices = sorted(snap.devices)
        else:
            indices = [i for i in dict.fromkeys(spec.devices) if i in snap.devices]
            if not indices:
                wanted = ", ".join(map(str, spec.devices))
                return unavailable(f"GPU {wanted} not found ({len(snap.devices)} visible)")
        out: Facts = {"gpu.available": True, **aggregate([snap.devices[i] for i in indices])}
        mems = [p.mem for p in own if p.mem is not None]
        # the own processes' memory, not the whole GPUs'; 0 when none is on a GPU, unknown
        # when NVML gives no memory for them or no process list
        own_mem = sum(mems) if mems or (snap.processes is not None and not own) else None
        if pids and own_mem is not None:
            out["gpu.job_mem"] = own_mem
        if "worker.index" in facts or "worker.pid" in facts:
            utils = [u for i in own_gpus if (u := snap.devices[i].util) is not None]
            if utils:
                out["worker.gpu_util"] = sum(utils) / len(utils)
            if own_mem is not None:
                out["worker.gpu_mem"] = own_mem
        buses = {b for i in indices if (b := snap.devices[i].bus) is not None}
        if buses:
            events = tick.xids(snap)
            if events is not None:
                start = facts.get("job.start_time")
                out.update(summarize(events, buses, start if isinstance(start, int | float)
                                     else None))
        return out

    # --- CSV -------------------------------------------------------------------------------

    def _from_csv(self, ctx: TickContext, tick: _Tick, job: Job, spec: GpuSpec,
                  facts: Mapping[str, Any]) -> Facts:
        assert spec.csv is not None
        template = expand_slurm(spec.csv, facts) if job.slurm is not None else spec.csv
        try:
            path = render_path(template, render_context(facts), job_base(job, ctx.base_dir))
        except Exception as exc:
            return unavailable(f"cannot render {spec.csv!r}: {type(exc).__name__}: "
                               f"{exc}".splitlines()[0])
        text = str(path)
        # Path.glob takes no absolute pattern
        paths = sorted(globmod.glob(text)) if _GLOB.search(text) else [text]  # noqa: PTH207
        samples: list[CsvSample] = []
        errors: list[str] = []
        for name in paths:
            result = tick.csv.get(name)
            if result is None:
                try:
                    result = read_csv_sample(name)
                except FileNotFoundError:
                    result = CsvError(NO_CSV)
                except IsADirectoryError:
                    result = CsvError(f"{name} is a folder")
                except (OSError, CsvError) as exc:
                    result = exc if isinstance(exc, CsvError) else CsvError(
                        f"cannot read {name}: {exc.strerror or exc}")
                tick.csv[name] = result
            if isinstance(result, CsvSample):
                samples.append(result)
            else:
                errors.append(str(result))
        if not samples:
            return unavailable(errors[0] if errors else NO_CSV)
        devices = [d for s in samples for d in s.devices]
        if isinstance(spec.devices, list) and len(samples) == 1:
            chosen = [d for d in devices if d.index in spec.devices]
            if not chosen:
                wanted = ", ".join(map(str, spec.devices))
                return unavailable(f"GPU {wanted} not in {samples[0].path}")
            devices = chosen
        out: Facts = {"gpu.available": True, **aggregate(devices)}
        out["gpu.age"] = max(0.0, ctx.now - min(s.time for s in samples))
        return out
