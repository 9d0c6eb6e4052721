"""The GPU probe: NVML through a fake at the pynvml boundary (with real processes for
`devices: job`), NVML missing (fake and the real pynvml of this host), and recorded nvidia-smi
and SLURM-style metrics CSVs (units, several GPUs, a 50 MB file, missing and garbage files)."""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from rulesmon.config.loader import load_text
from rulesmon.probes import gpu
from rulesmon.probes.base import TickContext
from rulesmon.probes.gpu import GpuProbe, Nvml, parse_timestamp

FIXTURES = Path(__file__).parent / "fixtures" / "gpu"
GiB = 1 << 30
MiB = 1 << 20


def ruleset(text: str, base: Path) -> Any:
    """A ruleset from a `jobs:` YAML block."""
    full = "version: 1\nname: t\njobs:\n" + textwrap.indent(textwrap.dedent(text).strip("\n"),
                                                             "  ") + "\n"
    return load_text(full, "t.yaml", env={}, base=base).ruleset


def collect(probe: GpuProbe, rs: Any, base: Path, instances: dict[str, dict[str, Any]],
            now: float | None = None) -> dict[str, dict[str, Any]]:
    ctx = TickContext(now=time.time() if now is None else now, ruleset=rs, base_dir=base,
                      instances=instances)
    return probe.collect(ctx)


# --- a fake pynvml ---------------------------------------------------------------------------


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # pynvml's names
    pass


class NVMLError_FunctionNotFound(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


#: Four GPUs: utilisation %, memory used and total (GiB), temperature, power and limit (mW),
#: clock event reasons, uncorrected ECC errors (None: not supported).
GPUS = [
    {"util": 5, "used": 1, "total": 80, "temp": 35, "power": 60_000, "limit": 400_000,
     "reasons": 0x1, "ecc": 0},
    {"util": 90, "used": 40, "total": 80, "temp": 70, "power": 350_000, "limit": 400_000,
     "reasons": 0x0, "ecc": 1},
    {"util": 70, "used": 60, "total": 80, "temp": 65, "power": 300_000, "limit": 400_000,
     "reasons": 0x4 | 0x40, "ecc": None},
    {"util": 100, "used": 79, "total": 80, "temp": 80, "power": 390_000, "limit": 400_000,
     "reasons": 0x4, "ecc": 0},
]


class Handle:
    """A device handle: like pynvml's ctypes pointer, a new object for every lookup, equal
    only to itself (two handles of one GPU compare unequal)."""

    def __init__(self, index: int) -> None:
        self.index = index


class FakePynvml:
    """The handful of pynvml functions the probe calls, counting calls. GPU 2 has no
    GetTemperatureV (old driver), v3 of the process list is missing (v2 answers), GPU 2 has no
    ECC support."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded

    def __init__(self, processes: dict[int, list[tuple[int, int | None]]] | None = None,
                 init_error: Exception | None = None, gpus: list[dict[str, Any]] | None = None,
                 ) -> None:
        self.gpus = GPUS if gpus is None else gpus
        self.processes = processes or {}  # gpu index -> [(pid, used bytes or None)]
        self.init_error = init_error
        self.calls: Counter[str] = Counter()

    def _gpu(self, name: str, handle: Handle) -> dict[str, Any]:
        self.calls[name] += 1
        return self.gpus[handle.index]

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1

    def nvmlDeviceGetCount(self) -> int:
        self.calls["nvmlDeviceGetCount"] += 1
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        return Handle(index)

    def nvmlDeviceGetIndex(self, h: Handle) -> int:
        return h.index

    def nvmlDeviceGetUtilizationRates(self, h: Handle) -> Any:
        return SimpleNamespace(gpu=self._gpu("nvmlDeviceGetUtilizationRates", h)["util"],
                               memory=0)

    def nvmlDeviceGetMemoryInfo(self, h: Handle) -> Any:
        g = self._gpu("nvmlDeviceGetMemoryInfo", h)
        return SimpleNamespace(used=g["used"] * GiB, total=g["total"] * GiB,
                               free=(g["total"] - g["used"]) * GiB)

    def nvmlDeviceGetTemperatureV(self, h: Handle, sensor: int) -> int:
        g = self._gpu("nvmlDeviceGetTemperatureV", h)
        if h.index == 2:
            raise NVMLError_FunctionNotFound("Function Not Found")
        return int(g["temp"])

    def nvmlDeviceGetTemperature(self, h: Handle, sensor: int) -> int:
        return int(self._gpu("nvmlDeviceGetTemperature", h)["temp"])

    def nvmlDeviceGetPowerUsage(self, h: Handle) -> int:
        return int(self._gpu("nvmlDeviceGetPowerUsage", h)["power"])

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Handle) -> int:
        return int(self._gpu("nvmlDeviceGetEnforcedPowerLimit", h)["limit"])

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: Handle) -> int:
        return int(self._gpu("nvmlDeviceGetCurrentClocksEventReasons", h)["reasons"])

    def nvmlDeviceGetTotalEccErrors(self, h: Handle, error_type: int, counter: int) -> int:
        ecc = self._gpu("nvmlDeviceGetTotalEccErrors", h)["ecc"]
        if ecc is None:
            raise NVMLError_NotSupported("Not Supported")
        return int(ecc)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, h: Handle) -> list[Any]:
        self.calls["nvmlDeviceGetComputeRunningProcesses_v3"] += 1
        raise NVMLError_FunctionNotFound("Function Not Found")

    def nvmlDeviceGetComputeRunningProcesses_v2(self, h: Handle) -> list[Any]:
        self.calls["nvmlDeviceGetComputeRunningProcesses_v2"] += 1
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem)
                for pid, mem in self.processes.get(h.index, [])]


# --- processes launched by the tests -----------------------------------------------------------


@pytest.fixture
def spawn() -> Iterator[Callable[..., tuple[int, list[int]]]]:
    """Start `sh` workers with `sleep` children; everything started is killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    groups: list[int] = []

    def _spawn(children: int, *, session: bool = False,
               script: str | None = None) -> tuple[int, list[int]]:
        if script is None:
            script = (" & ".join(["sleep 120"] * children) + " & wait" if children
                      else "exec sleep 120")
        p = subprocess.Popen(["sh", "-c", script], start_new_session=session)
        started.append(p)
        if session:
            groups.append(p.pid)
        deadline = time.monotonic() + 10
        kids: list[int] = []
        while time.monotonic() < deadline:
            kids = [c.pid for c in psutil.Process(p.pid).children()]
            if len(kids) == children:
                break
            time.sleep(0.02)
        assert len(kids) == children
        return p.pid, kids

    yield _spawn
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for p in started:
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process(p.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c.kill()
        p.kill()
        p.wait(timeout=10)


JOBS = """
train:
  gpu: {devices: job}
everything:
  gpu: {devices: auto}
pick:
  gpu: {devices: [0, 3]}
absent:
  gpu: {devices: [7]}
plain:
  description: no gpu declared
"""


def test_nvml_devices_job_follows_processes(tmp_path: Path, spawn: Any) -> None:
    """`devices: job` picks the GPUs running the worker's child processes (then its
    CUDA_VISIBLE_DEVICES index), with per-GPU values aggregated and its own GPU memory."""
    worker_a, (a1, a2) = spawn(2)
    worker_b, (b1,) = spawn(1)
    idle_worker, _ = spawn(0)
    stranger, _ = spawn(0, session=True)
    fake = FakePynvml({0: [(stranger, 1 * GiB)], 1: [(a1, 10 * GiB)], 2: [(a2, None)],
                       3: [(b1, 20 * GiB)]})
    rs = ruleset(JOBS, tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=fake)
    instances = {
        "train/0": {"job.key": "train", "worker.index": 0, "worker.pid": worker_a,
                    "job.pid": worker_a, "worker.gpu": 0},
        "train/1": {"job.key": "train", "worker.index": 1, "worker.pid": worker_b,
                    "worker.gpu": 1},
        "train/2": {"job.key": "train", "worker.index": 2, "worker.pid": idle_worker,
                    "worker.gpu": 2},
        "train/3": {"job.key": "train", "worker.index": 3, "worker.gpu": 1,
                    "job.terminal": True},
        "train/-": {"job.key": "train", "job.state": "PENDING"},
        "everything/x": {"job.key": "everything"},
        "pick/x": {"job.key": "pick"},
        "absent/x": {"job.key": "absent"},
        "plain/x": {"job.key": "plain"},
        "other/x": {"job.key": "not-in-ruleset"},
    }
    out = collect(probe, rs, tmp_path, instances)
    assert probe.errors == {}
    assert set(out) == {"train/0", "train/1", "train/2", "train/3", "train/-", "everything/x",
                        "pick/x", "absent/x"}

    # worker A: its children run on GPUs 1 and 2 (not on its CUDA_VISIBLE_DEVICES 0)
    assert out["train/0"] == {
        "gpu.available": True, "gpu.count": 2, "gpu.util": 80.0, "gpu.util_min": 70.0,
        "gpu.util_max": 90.0, "gpu.mem_used": 100 * GiB, "gpu.mem_max": 60 * GiB,
        "gpu.mem_total": 160 * GiB, "gpu.mem_pct": 75.0, "gpu.temp": 70.0,
        "gpu.power": 650.0, "gpu.power_limit": 800.0, "gpu.throttled": True,
        "gpu.throttle_reasons": ["hw_thermal_slowdown", "sw_power_cap"],
        "gpu.ecc_errors": 1, "worker.gpu_util": 80.0, "worker.gpu_mem": 10 * GiB,
        "gpu.job_mem": 10 * GiB}
    b = out["train/1"]
    assert (b["gpu.count"], b["gpu.util"], b["gpu.temp"], b["worker.gpu_mem"]) == (
        1, 100.0, 80.0, 20 * GiB)
    assert b["gpu.throttle_reasons"] == ["sw_power_cap"]
    # no process on a GPU yet: its CUDA_VISIBLE_DEVICES index, and no GPU memory of its own
    c = out["train/2"]
    assert (c["gpu.count"], c["gpu.util"], c["worker.gpu_util"], c["worker.gpu_mem"]) == (
        1, 70.0, 70.0, 0)
    # ended, no process: no GPU is its own any more
    assert out["train/3"] == {"gpu.available": True, "gpu.count": 0, "worker.gpu_mem": 0}
    # nothing to tell its GPUs by (a job on another node, or not started)
    assert out["train/-"]["gpu.available"] is False
    assert out["train/-"]["gpu.error"].startswith("no process of the job is known")

    every = out["everything/x"]
    assert every["gpu.count"] == 4
    assert every["gpu.util"] == pytest.approx(66.25)
    assert (every["gpu.util_min"], every["gpu.util_max"]) == (5.0, 100.0)
    assert every["gpu.mem_used"] == 180 * GiB
    assert every["gpu.mem_pct"] == pytest.approx(79 / 80 * 100)
    assert every["gpu.power"] == pytest.approx(1100.0)
    assert every["gpu.ecc_errors"] == 1
    assert "worker.gpu_util" not in every and "worker.gpu_mem" not in every
    pick = out["pick/x"]
    assert (pick["gpu.count"], pick["gpu.util"], pick["gpu.temp"]) == (2, 52.5, 80.0)
    assert pick["gpu.throttle_reasons"] == ["sw_power_cap"]  # idle is not a throttle reason
    assert out["absent/x"] == {"gpu.available": False,
                               "gpu.error": "GPU 7 not found (4 visible)"}

    # every device was read once for all the instances, through the fallbacks
    assert fake.calls["nvmlInit"] == 1
    assert fake.calls["nvmlDeviceGetCount"] == 1
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 4
    assert fake.calls["nvmlDeviceGetTemperature"] == 1  # GPU 2 has no TemperatureV
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 4

    collect(probe, rs, tmp_path, instances)
    assert fake.calls["nvmlInit"] == 1
    assert fake.calls["nvmlDeviceGetCount"] == 2
    probe.close()
    assert fake.calls["nvmlShutdown"] == 1


def test_nvml_process_reparented_but_in_the_workers_group(tmp_path: Path, spawn: Any) -> None:
    """A GPU process that outlived its parent (reparented away from the worker) still belongs
    to the worker through the process group the worker leads."""
    # the worker starts a daemonised child: the child's parent exits at once, so the child
    # is no descendant of the worker any more, but it stays in the worker's process group
    worker, _ = spawn(0, session=True,
                      script="sh -c 'sleep 120 >/dev/null 2>&1 &'; exec sleep 120")
    orphan = None
    deadline = time.monotonic() + 10
    while orphan is None and time.monotonic() < deadline:
        for p in psutil.process_iter(["pid", "ppid"]):
            with contextlib.suppress(OSError, psutil.Error):
                if p.pid != worker and os.getpgid(p.pid) == worker and p.ppid() != worker:
                    orphan = p.pid
        time.sleep(0.02)
    assert orphan is not None
    assert worker not in [p.pid for p in psutil.Process(orphan).parents()]
    fake = FakePynvml({3: [(orphan, 5 * GiB)]})
    rs = ruleset(JOBS, tmp_path)
    out = collect(GpuProbe(rs, tmp_path, nvml=fake), rs, tmp_path, {
        "train/0": {"job.key": "train", "worker.index": 0, "worker.pid": worker,
                    "worker.gpu": 0}})
    assert (out["train/0"]["gpu.count"], out["train/0"]["gpu.util"]) == (1, 100.0)
    assert out["train/0"]["worker.gpu_mem"] == 5 * GiB


# --- NVML missing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "reason"), [
    (NVMLError_LibraryNotFound("NVML Shared Library Not Found"),
     "NVML library not found, no NVIDIA driver on this host (NVML Shared Library Not Found)"),
    (NVMLError_DriverNotLoaded("Driver Not Loaded"),
     "NVIDIA driver not loaded (Driver Not Loaded)"),
    (NVMLError("Insufficient Permissions"), "NVML error: Insufficient Permissions"),
])
def test_nvml_init_failure_is_a_fact_not_an_error(tmp_path: Path, error: Exception,
                                                  reason: str) -> None:
    """When nvmlInit fails, every GPU instance gets `gpu.available` False with the reason,
    and init is not retried on every tick."""
    fake = FakePynvml(init_error=error)
    rs = ruleset(JOBS, tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=fake)
    inst = {"train/0": {"job.key": "train", "worker.index": 0, "worker.pid": os.getpid()},
            "everything/x": {"job.key": "everything"}}
    for _ in range(2):
        out = collect(probe, rs, tmp_path, inst)
        assert out == {key: {"gpu.available": False, "gpu.error": reason} for key in inst}
    assert fake.calls["nvmlInit"] == 1
    probe.close()
    assert fake.calls["nvmlShutdown"] == 0


def test_nvml_retried_after_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver that loads later is picked up once the retry interval has passed."""
    monkeypatch.setattr(gpu, "RETRY_INIT", 0.0)
    fake = FakePynvml(init_error=NVMLError_DriverNotLoaded("Driver Not Loaded"))
    rs = ruleset(JOBS, tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=fake)
    inst = {"everything/x": {"job.key": "everything"}}
    assert collect(probe, rs, tmp_path, inst)["everything/x"]["gpu.available"] is False
    fake.init_error = None
    assert collect(probe, rs, tmp_path, inst)["everything/x"]["gpu.count"] == 4


def test_nvml_no_gpu(tmp_path: Path) -> None:
    """A driver with no GPU gives `gpu.available` False with the reason."""
    rs = ruleset(JOBS, tmp_path)
    out = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml(gpus=[])), rs, tmp_path,
                  {"everything/x": {"job.key": "everything"}})
    assert out["everything/x"] == {"gpu.available": False,
                                   "gpu.error": "NVML sees no GPU on this host"}


def test_real_pynvml_on_this_host(tmp_path: Path) -> None:
    """The real pynvml (no fake): on a host without a driver the reason NVML gives is
    reported; on a host with one, the GPUs are."""
    import pynvml

    rs = ruleset(JOBS, tmp_path)
    probe = GpuProbe(rs, tmp_path)
    out = collect(probe, rs, tmp_path, {"everything/x": {"job.key": "everything"}})
    facts = out["everything/x"]
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        assert facts["gpu.available"] is False
        assert str(exc) in facts["gpu.error"]
    else:
        pynvml.nvmlShutdown()
        assert facts["gpu.available"] is True
        assert facts["gpu.count"] >= 1
    finally:
        probe.close()


def test_pynvml_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without nvidia-ml-py the facts say so."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    rs = ruleset(JOBS, tmp_path)
    out = collect(GpuProbe(rs, tmp_path, nvml=Nvml()), rs, tmp_path,
                  {"everything/x": {"job.key": "everything"}})
    assert out["everything/x"]["gpu.available"] is False
    assert out["everything/x"]["gpu.error"].startswith("nvidia-ml-py is not installed")


# --- CSV -----------------------------------------------------------------------------------------


def csv_job(path: str, devices: str = "job", extra: str = "") -> str:
    return f"m:\n  gpu:\n    csv: '{path}'\n    devices: {devices}\n{extra}"


def local_ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_csv_single_gpu_nvidia_smi(tmp_path: Path) -> None:
    """nvidia-smi `--format=csv` with units in the values: the last row, converted to bytes,
    percent, °C and W, with the age from its timestamp."""
    shutil.copy(FIXTURES / "nvidia_smi_single.csv", tmp_path / "gpu.csv")
    rs = ruleset(csv_job("gpu.csv"), tmp_path)
    now = local_ts("2025-01-15 10:24:15.123")
    out = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml()), rs, tmp_path,
                  {"m/0": {"job.key": "m"}}, now=now)
    facts = out["m/0"]
    assert facts == {
        "gpu.available": True, "gpu.count": 1, "gpu.util": 97.0, "gpu.util_min": 97.0,
        "gpu.util_max": 97.0, "gpu.mem_used": 61240 * MiB, "gpu.mem_max": 61240 * MiB,
        "gpu.mem_total": 81920 * MiB, "gpu.mem_pct": pytest.approx(61240 / 81920 * 100),
        "gpu.temp": 63.0, "gpu.power": pytest.approx(355.10), "gpu.power_limit": 400.0,
        "gpu.throttled": True, "gpu.throttle_reasons": ["sw_power_cap"],
        "gpu.age": pytest.approx(30.0)}


def test_csv_four_gpus_last_sample(tmp_path: Path) -> None:
    """Four GPUs per sample (`nounits`, ms-apart timestamps): the rows of the last sample are
    aggregated, `[N/A]` is skipped, and `devices:` picks GPUs by the index column."""
    shutil.copy(FIXTURES / "nvidia_smi_4gpu.csv", tmp_path / "gpu.csv")
    now = local_ts("2025-01-15 10:30:20.540")
    rs = ruleset(csv_job("gpu.csv") + csv_job("gpu.csv", "[1, 3]").replace("m:", "p:"),
                 tmp_path)
    out = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml()), rs, tmp_path,
                  {"m/0": {"job.key": "m"}, "p/0": {"job.key": "p"}}, now=now)
    facts = out["m/0"]
    used = [70300, 1024, 69990, 81000]
    assert facts["gpu.count"] == 4
    assert (facts["gpu.util"], facts["gpu.util_min"], facts["gpu.util_max"]) == (72.0, 0, 100)
    assert facts["gpu.mem_used"] == sum(used) * MiB
    assert facts["gpu.mem_total"] == 4 * 81559 * MiB
    assert facts["gpu.mem_max"] == 81000 * MiB
    assert facts["gpu.mem_pct"] == pytest.approx(81000 / 81559 * 100)
    assert facts["gpu.temp"] == 71.0
    assert facts["gpu.power"] == pytest.approx(640.12 + 88.5 + 601.0 + 655.25)
    assert facts["gpu.power_limit"] == pytest.approx(2800.0)
    assert facts["gpu.ecc_errors"] == 2
    assert "gpu.throttled" not in facts
    assert facts["gpu.age"] == pytest.approx(10.0)
    pick = out["p/0"]
    assert (pick["gpu.count"], pick["gpu.util"]) == (2, 46.0)

    # the same file without the index column: the last sample is told by its timestamps
    lines = (tmp_path / "gpu.csv").read_text().splitlines()
    rows = [", ".join(c for i, c in enumerate(line.split(", ")) if i != 1) for line in lines]
    (tmp_path / "gpu.csv").write_text("\n".join(rows) + "\n")
    facts = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml()), rs, tmp_path,
                    {"m/0": {"job.key": "m"}}, now=now)["m/0"]
    assert (facts["gpu.count"], facts["gpu.util"], facts["gpu.ecc_errors"]) == (4, 72.0, 2)


def test_csv_slurm_document_columns(tmp_path: Path) -> None:
    """The SLURM document's `gpu_metrics.csv` (gpu_util, gpu_mem_used/total in GB) at a
    templated path, with an ISO timestamp."""
    folder = tmp_path / "out" / "eval-7"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "gpu_metrics.csv", folder / "gpu_metrics.csv")
    rs = ruleset(csv_job("out/{{ job.name }}/gpu_metrics.csv"), tmp_path)
    now = local_ts("2025-01-15T10:26:00")
    out = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml()), rs, tmp_path,
                  {"m/1": {"job.key": "m", "job.name": "eval-7"}}, now=now)
    assert out["m/1"] == {
        "gpu.available": True, "gpu.count": 1, "gpu.util": 91.0, "gpu.util_min": 91.0,
        "gpu.util_max": 91.0, "gpu.mem_used": 62_400_000_000, "gpu.mem_max": 62_400_000_000,
        "gpu.mem_total": 80_000_000_000, "gpu.mem_pct": pytest.approx(78.0),
        "gpu.age": pytest.approx(60.0)}


def test_csv_repeated_headers_and_half_written_row(tmp_path: Path) -> None:
    """`nvidia-smi --format=csv >> file` per sample repeats the header: it is skipped, the last
    sample ends where a GPU index repeats, an unfinished last line is ignored until complete,
    and without a timestamp the age is the file's."""
    path = tmp_path / "gpu.csv"
    shutil.copy(FIXTURES / "nvidia_smi_appended.csv", path)
    now = time.time()
    os.utime(path, (now - 100, now - 100))
    rs = ruleset(csv_job("gpu.csv"), tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=FakePynvml())
    facts = collect(probe, rs, tmp_path, {"m/0": {"job.key": "m"}}, now=now)["m/0"]
    assert (facts["gpu.count"], facts["gpu.util"], facts["gpu.mem_used"]) == (
        2, 70.0, (12288 + 8192) * MiB)
    assert facts["gpu.throttled"] is True
    assert facts["gpu.throttle_reasons"] == ["sw_thermal_slowdown"]
    assert facts["gpu.age"] == pytest.approx(100.0, abs=1.0)

    with path.open("a") as f:
        f.write("index, utilization.gpu [%], memory.used [MiB], memory.total [MiB], "
                "clocks_throttle_reasons.hw_slowdown, clocks_throttle_reasons.sw_thermal_slow"
                "down\n0, 5 %, 1024 MiB, 16384 MiB, Not Active, Not Active\n1, 3")
    facts = collect(probe, rs, tmp_path, {"m/0": {"job.key": "m"}})["m/0"]
    # a half sample: GPU 0's new row and GPU 1's previous one
    assert (facts["gpu.count"], facts["gpu.util"]) == (2, 32.5)
    with path.open("a") as f:
        f.write(" %, 2048 MiB, 16384 MiB, Active, Not Active\n")
    facts = collect(probe, rs, tmp_path, {"m/0": {"job.key": "m"}})["m/0"]
    assert (facts["gpu.count"], facts["gpu.util"]) == (2, 4.0)
    assert facts["gpu.throttle_reasons"] == ["hw_slowdown"]


def test_csv_per_worker_and_slurm_placeholders(tmp_path: Path) -> None:
    """`{{ worker }}` gives each worker its file and every file to an instance without a
    worker; SLURM's %j is expanded for a SLURM job."""
    header = "timestamp,gpu_util,gpu_mem_used,gpu_mem_total\n"
    (tmp_path / "gpu_0.csv").write_text(header + "1736936400,40,10,80\n")
    (tmp_path / "gpu_1.csv").write_text(header + "1736936460,60,30,80\n")
    (tmp_path / "slurm_4242.csv").write_text(header + "1736936460000,10,1,80\n")
    rs = ruleset(csv_job("gpu_{{ worker }}.csv") + textwrap.dedent("""
        s:
          slurm: {ids: [4242]}
          gpu: {csv: 'slurm_%j.csv'}
        """), tmp_path)
    now = 1736936470.0
    out = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml()), rs, tmp_path, {
        "m/0": {"job.key": "m", "worker.index": 0},
        "m/1": {"job.key": "m", "worker.index": 1},
        "m/-": {"job.key": "m"},
        "s/4242": {"job.key": "s", "job.id": "4242"}}, now=now)
    assert (out["m/0"]["gpu.util"], out["m/0"]["gpu.age"]) == (40.0, 70.0)
    assert (out["m/1"]["gpu.util"], out["m/1"]["gpu.age"]) == (60.0, 10.0)
    every = out["m/-"]
    assert (every["gpu.count"], every["gpu.util"], every["gpu.mem_used"]) == (2, 50.0, 40 * 10**9)
    assert every["gpu.age"] == 70.0  # the oldest file
    assert (out["s/4242"]["gpu.util"], out["s/4242"]["gpu.age"]) == (10.0, 10.0)  # epoch ms


class Spy(io.BufferedReader):
    """Counts the bytes read through it."""

    total = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        Spy.total += len(data)
        return data


def test_csv_50mb_read_from_the_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 50 MB metrics CSV is answered from its header and its last kilobytes, quickly."""
    path = tmp_path / "gpu.csv"
    old = "".join(f"2025/01/15 09:00:00.000, {i}, NVIDIA H100 80GB HBM3, 50 %, 40000 MiB, "
                  f"81559 MiB, 60, 400.00 W\n" for i in range(4))
    last = "".join(f"2025/01/15 10:00:00.000, {i}, NVIDIA H100 80GB HBM3, {10 * i} %, "
                   f"{1000 * (i + 1)} MiB, 81559 MiB, {50 + i}, 100.00 W\n" for i in range(4))
    with path.open("w") as f:
        f.write("timestamp, index, name, utilization.gpu [%], memory.used [MiB], "
                "memory.total [MiB], temperature.gpu, power.draw [W]\n")
        block = old * 1000
        while f.tell() < 50 * MiB:
            f.write(block)
        f.write(last)
    assert path.stat().st_size >= 50 * MiB

    real_open = open

    def spy_open(name: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        assert mode == "rb"
        return Spy(real_open(name, "rb", buffering=0))

    monkeypatch.setattr(gpu, "open", spy_open, raising=False)
    Spy.total = 0
    rs = ruleset(csv_job("gpu.csv"), tmp_path)
    started = time.perf_counter()
    facts = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml()), rs, tmp_path,
                    {"m/0": {"job.key": "m"}}, now=local_ts("2025-01-15 10:00:05"))["m/0"]
    elapsed = time.perf_counter() - started
    assert (facts["gpu.count"], facts["gpu.util"], facts["gpu.temp"]) == (4, 15.0, 53.0)
    assert facts["gpu.mem_used"] == 10000 * MiB
    assert facts["gpu.age"] == pytest.approx(5.0)
    assert Spy.total < 200_000
    assert elapsed < 0.5


def test_csv_missing_then_written(tmp_path: Path) -> None:
    """A metrics file that does not exist yet is a normal state ("skip silently"), picked up
    once the job writes it."""
    rs = ruleset(csv_job("gpu_metrics.csv"), tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=FakePynvml())
    out = collect(probe, rs, tmp_path, {"m/0": {"job.key": "m"}})
    assert out["m/0"] == {"gpu.available": False, "gpu.error": "no metrics file yet"}
    shutil.copy(FIXTURES / "gpu_metrics.csv", tmp_path / "gpu_metrics.csv")
    assert collect(probe, rs, tmp_path, {"m/0": {"job.key": "m"}})["m/0"]["gpu.util"] == 91.0
    # a per-worker glob that matches nothing yet
    rs = ruleset(csv_job("w_{{ worker }}.csv"), tmp_path)
    out = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml()), rs, tmp_path,
                  {"m/-": {"job.key": "m"}})
    assert out["m/-"] == {"gpu.available": False, "gpu.error": "no metrics file yet"}


GARBAGE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "metrics file is empty"),
    "binary": (random.Random(7).randbytes(20_000), "no GPU metrics columns"),
    "nul bytes": (b"utilization.gpu [%]\x00\x00, memory.used [MiB]\n\x00\x00\x00\n",
                  "no data rows yet"),
    "prose": (b"hello world\nthis is not a csv file\n", "no GPU metrics columns"),
    "other columns": (b"epoch,loss,acc\n1,0.5,0.9\n", "no GPU metrics columns"),
    "header only": (b"timestamp, utilization.gpu [%], memory.used [MiB]\n", "no data rows yet"),
    "bad values": (b"utilization.gpu [%], memory.used [MiB]\nabc, def\nn/a, ??\n",
                   "no readable values in the last row"),
    "wrong width": (b"gpu_util,gpu_mem_used\n1,2,3,4\n5\n", "no row has the 2 columns"),
    "quote": (b'gpu_util,gpu_mem_used\n"unterminated,1\n', "no"),
    "no header line": (b"x" * (gpu.HEADER_MAX + 10), "no header line"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_csv_garbage(tmp_path: Path, name: str) -> None:
    """A file that is not a GPU metrics CSV gives `gpu.available` False with a reason, never
    an exception."""
    data, reason = GARBAGE[name]
    (tmp_path / "gpu.csv").write_bytes(data)
    rs = ruleset(csv_job("gpu.csv"), tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=FakePynvml())
    out = collect(probe, rs, tmp_path, {"m/0": {"job.key": "m"}})
    assert probe.errors == {}
    assert out["m/0"]["gpu.available"] is False
    assert out["m/0"]["gpu.error"].startswith(reason), out["m/0"]["gpu.error"]


def test_csv_path_is_a_folder(tmp_path: Path) -> None:
    """A folder where the CSV should be is reported, not raised."""
    (tmp_path / "gpu.csv").mkdir()
    rs = ruleset(csv_job("gpu.csv"), tmp_path)
    out = collect(GpuProbe(rs, tmp_path, nvml=FakePynvml()), rs, tmp_path,
                  {"m/0": {"job.key": "m"}})
    assert out["m/0"]["gpu.available"] is False
    assert "folder" in out["m/0"]["gpu.error"]


@pytest.mark.parametrize(("text", "expected"), [
    ("2025/01/15 10:23:45.123", datetime(2025, 1, 15, 10, 23, 45, 123000).timestamp()),
    ("2025-01-15T10:23:45", datetime(2025, 1, 15, 10, 23, 45).timestamp()),
    ("2025-01-15T10:23:45Z", 1736936625.0),
    ("2025-1-5 01:02:03", datetime(2025, 1, 5, 1, 2, 3).timestamp()),
    ("1736936625", 1736936625.0),
    ("1736936625500", 1736936625.5),
    ("yesterday", None),
    ("", None),
])
def test_parse_timestamp(text: str, expected: float | None) -> None:
    """nvidia-smi, ISO and epoch timestamps are understood; anything else is no timestamp."""
    assert parse_timestamp(text) == (pytest.approx(expected) if expected is not None else None)


# --- Xid errors ------------------------------------------------------------------------------

BUSES = ["00000000:3B:00.0", "00000000:86:00.0", "00000000:AF:00.0", "00000000:D8:00.0"]


class PciPynvml(FakePynvml):
    """The fake with PCI addresses (as nvidia-smi shows them) and, optionally, NVML's Xid
    event API holding `xids` as (GPU index, Xid) pairs."""

    def __init__(self, xids: list[tuple[int, int]] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.xids = xids
        self.registered: list[int] = []

    def nvmlDeviceGetPciInfo(self, h: Handle) -> Any:
        return SimpleNamespace(busId=BUSES[h.index].encode())

    def nvmlEventSetCreate(self) -> Any:
        if self.xids is None:
            raise NVMLError_NotSupported("Not Supported")
        return "event-set"

    def nvmlDeviceRegisterEvents(self, h: Handle, kinds: int, events: Any) -> None:
        assert kinds == 0x8 and events == "event-set"
        self.registered.append(h.index)

    def nvmlEventSetWait(self, events: Any, timeout_ms: int) -> Any:
        assert timeout_ms == 0
        if not self.xids:
            raise NVMLError("Timeout")
        index, xid = self.xids.pop(0)
        return SimpleNamespace(device=Handle(index), eventData=xid, eventType=0x8)

    def nvmlEventSetFree(self, events: Any) -> None:
        self.calls["nvmlEventSetFree"] += 1


def fake_dmesg(tmp_path: Path, source: Path) -> tuple[str, ...]:
    script = tmp_path / "dmesg"
    script.write_text(f"#!/bin/sh\ncat {source}\n")
    script.chmod(0o755)
    return (str(script),)


XID_JOBS = """
one:
  gpu: {devices: [0]}
two:
  gpu: {devices: [1, 2]}
idle:
  gpu: {devices: [3]}
"""


def test_xid_errors_from_recorded_kernel_lines(tmp_path: Path) -> None:
    """`NVRM: Xid` lines of a recorded kernel log are counted per GPU by PCI address (an
    event dmesg holds too once: dmesg is read only where no file is), with the last Xid code
    and line; new lines are picked up, and only events since the job started count."""
    kern = tmp_path / "kern.log"
    shutil.copy(FIXTURES / "kern_xid.log", kern)
    boot = 1_736_935_000.0  # so that uptime 8123 s is 2025-01-15 10:20:03 UTC
    reader = gpu.XidReader(logs=(kern,), dmesg=fake_dmesg(tmp_path, FIXTURES / "dmesg_xid.txt"),
                           interval=0, boot_time=boot)
    rs = ruleset(XID_JOBS, tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=PciPynvml(), xid=reader)
    instances: dict[str, dict[str, Any]] = {
        "one/x": {"job.key": "one"}, "two/x": {"job.key": "two"},
        "idle/x": {"job.key": "idle"}}
    out = collect(probe, rs, tmp_path, instances)
    assert out["one/x"]["gpu.xid_errors"] == 2  # 79 and 13 on 3b:00, in both sources
    assert out["one/x"]["gpu.last_xid"] == 13
    assert out["one/x"]["gpu.last_xid_line"].startswith(
        "NVRM: Xid (PCI:0000:3b:00): 13, pid=48213, name=python, Graphics SM Warp Exception")
    assert (out["two/x"]["gpu.xid_errors"], out["two/x"]["gpu.last_xid"]) == (2, 31)
    assert out["idle/x"]["gpu.xid_errors"] == 0 and "gpu.last_xid" not in out["idle/x"]
    with kern.open("a") as f:
        f.write("Jan 15 10:30:00 gpu07 kernel: [ 8700.5] NVRM: Xid (PCI:0000:d8:00): 94, "
                "pid=1, name=python, Contained: SM (0x1). RST: No, D-RST: No\n")
    out = collect(probe, rs, tmp_path, instances)
    assert (out["idle/x"]["gpu.xid_errors"], out["idle/x"]["gpu.last_xid"]) == (1, 94)
    later = {"one/x": {"job.key": "one", "job.start_time": boot + 8200}}
    assert collect(probe, rs, tmp_path, later)["one/x"]["gpu.xid_errors"] == 1
    probe.close()


def test_xid_from_nvml_events_when_no_kernel_log_is_readable(tmp_path: Path) -> None:
    """Without a readable kernel log, NVML's Xid events count instead; with neither, the
    Xid facts are absent (unknown), not zero."""
    rs = ruleset(XID_JOBS, tmp_path)
    fake = PciPynvml(xids=[(0, 79), (1, 48), (0, 13)])
    probe = GpuProbe(rs, tmp_path, nvml=fake, xid=gpu.XidReader(logs=(), dmesg=None))
    instances: dict[str, dict[str, Any]] = {"one/x": {"job.key": "one"},
                                            "two/x": {"job.key": "two"}}
    out = collect(probe, rs, tmp_path, instances)
    assert (out["one/x"]["gpu.xid_errors"], out["one/x"]["gpu.last_xid"]) == (2, 13)
    assert (out["two/x"]["gpu.xid_errors"], out["two/x"]["gpu.last_xid"]) == (1, 48)
    assert fake.registered == [0, 1, 2, 3]
    assert collect(probe, rs, tmp_path, instances)["one/x"]["gpu.xid_errors"] == 2
    probe.close()
    assert fake.calls["nvmlEventSetFree"] == 1
    quiet = GpuProbe(rs, tmp_path, nvml=PciPynvml(), xid=gpu.XidReader(logs=(), dmesg=None))
    facts = collect(quiet, rs, tmp_path, instances)["one/x"]
    assert facts["gpu.available"] is True and "gpu.xid_errors" not in facts


def counting_dmesg(tmp_path: Path, ring: Path) -> tuple[tuple[str, ...], Path]:
    """A `dmesg` stand-in printing `ring`, and the file it adds a line to per run."""
    calls = tmp_path / "dmesg-calls"
    script = tmp_path / "dmesg"
    script.write_text(f"#!/bin/sh\necho x >> {calls}\ncat {ring}\n")
    script.chmod(0o755)
    return (str(script),), calls


def test_xid_dmesg_rereads_count_each_event_once(tmp_path: Path) -> None:
    """Where no kernel log file is readable, dmesg's whole ring buffer comes at every look:
    only lines stamped after the last stamp seen are new, so a re-read counts nothing twice."""
    ring = tmp_path / "ring.txt"
    shutil.copy(FIXTURES / "dmesg_xid.txt", ring)
    dmesg, calls = counting_dmesg(tmp_path, ring)
    reader = gpu.XidReader(logs=(tmp_path / "missing.log",), dmesg=dmesg, interval=0,
                           boot_time=1_736_935_000.0)
    rs = ruleset(XID_JOBS, tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=PciPynvml(), xid=reader)
    instances: dict[str, dict[str, Any]] = {"one/x": {"job.key": "one"},
                                            "idle/x": {"job.key": "idle"}}
    counts = [collect(probe, rs, tmp_path, instances)["one/x"]["gpu.xid_errors"]
              for _ in range(3)]
    assert counts == [2, 2, 2] and calls.read_text().count("x") == 3
    with ring.open("a") as f:
        f.write("[ 8700.500000] NVRM: Xid (PCI:0000:3b:00): 94, pid=1, name=python, "
                "Contained: SM (0x1).\n")
    out = collect(probe, rs, tmp_path, instances)
    assert (out["one/x"]["gpu.xid_errors"], out["one/x"]["gpu.last_xid"]) == (3, 94)
    assert collect(probe, rs, tmp_path, instances)["one/x"]["gpu.xid_errors"] == 3
    probe.close()


def test_xid_flood_keeps_the_latest_and_a_reread_adds_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_EVENTS the oldest events are forgotten, and the next full dmesg read does not
    bring them back as new ones."""
    from rulesmon.probes import xid

    monkeypatch.setattr(xid, "MAX_EVENTS", 3)
    ring = tmp_path / "ring.txt"
    ring.write_text("".join(f"[ {i}.000000] NVRM: Xid (PCI:0000:3b:00): {i}, pid=1, name=x\n"
                            for i in range(1, 6)))
    dmesg, _ = counting_dmesg(tmp_path, ring)
    reader = xid.XidReader(logs=(), dmesg=dmesg, interval=0, boot_time=0.0)
    for _ in range(3):
        assert [e.code for e in reader.events()] == [3, 4, 5]
    reader.close()


def test_xid_kernel_log_is_followed_and_dmesg_only_replaces_it(tmp_path: Path) -> None:
    """A readable kernel log is followed incrementally (no re-read counts twice) and dmesg is
    not run; when the file can no longer be read, dmesg gives only what is stamped after the
    file's last line, so the events both hold are not counted again."""
    kern = tmp_path / "kern.log"
    shutil.copy(FIXTURES / "kern_xid.log", kern)
    ring = tmp_path / "ring.txt"
    shutil.copy(FIXTURES / "dmesg_xid.txt", ring)
    dmesg, calls = counting_dmesg(tmp_path, ring)
    reader = gpu.XidReader(logs=(kern,), dmesg=dmesg, interval=0, boot_time=1_736_935_000.0)
    rs = ruleset(XID_JOBS, tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=PciPynvml(), xid=reader)
    instances: dict[str, dict[str, Any]] = {"one/x": {"job.key": "one"}}
    counts = [collect(probe, rs, tmp_path, instances)["one/x"]["gpu.xid_errors"]
              for _ in range(3)]
    assert counts == [2, 2, 2] and not calls.exists()
    kern.unlink()
    with ring.open("a") as f:
        f.write("[ 8700.500000] NVRM: Xid (PCI:0000:3b:00): 94, pid=1, name=python, "
                "Contained: SM (0x1).\n")
    counts = [collect(probe, rs, tmp_path, instances)["one/x"]["gpu.xid_errors"]
              for _ in range(2)]
    assert counts == [3, 3] and calls.read_text().count("x") == 2
    probe.close()


def test_nvml_xid_events_are_not_asked_while_the_kernel_log_is_readable(tmp_path: Path
                                                                        ) -> None:
    """NVML's event set is neither created nor drained while a kernel log gives the Xids."""
    kern = tmp_path / "kern.log"
    shutil.copy(FIXTURES / "kern_xid.log", kern)
    fake = PciPynvml(xids=[(0, 79), (0, 13)])
    reader = gpu.XidReader(logs=(kern,), dmesg=None, interval=0, boot_time=1_736_935_000.0)
    rs = ruleset(XID_JOBS, tmp_path)
    probe = GpuProbe(rs, tmp_path, nvml=fake, xid=reader)
    out = collect(probe, rs, tmp_path, {"one/x": {"job.key": "one"}})
    assert out["one/x"]["gpu.xid_errors"] == 2
    assert fake.registered == [] and fake.xids == [(0, 79), (0, 13)]
    probe.close()


def test_job_gpu_memory_for_a_job_that_is_not_a_worker(tmp_path: Path, spawn: Any) -> None:
    """A job instance without workers (a SLURM or watched job) gets gpu.job_mem, the GPU
    memory of its own processes, not the whole GPUs' gpu.mem_used."""
    leader, (child,) = spawn(1)
    stranger, _ = spawn(0, session=True)
    fake = FakePynvml({1: [(child, 12 * GiB), (stranger, 30 * GiB)]})
    rs = ruleset("slurmish:\n  gpu: {devices: job}\n", tmp_path)
    out = collect(GpuProbe(rs, tmp_path, nvml=fake), rs, tmp_path,
                  {"slurmish/1": {"job.key": "slurmish", "job.pid": leader}})
    facts = out["slurmish/1"]
    assert facts["gpu.job_mem"] == 12 * GiB and facts["gpu.mem_used"] == 40 * GiB
    assert "worker.gpu_mem" not in facts
