"""The builtin log presets on real framework output, through the real LogsProbe on real files.

The fixtures in tests/fixtures/presets/ are the bytes a job's `> job.log 2>&1` receives: tqdm's
`\\r` updates without newlines (one epoch is one line of over 10 KB), ANSI colour codes, a
traceback glued onto an unfinished bar, Lightning's `nan.0`, the Hugging Face Trainer's log
dicts (classic and transformers 5.x quoted), Python logging, CUDA and CPU out-of-memory errors
and NCCL failures. generate.py there says how they were made.
"""

from __future__ import annotations

import math
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext
from rulesmon.probes.logs import LogsProbe

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "presets"
KEY = "train/0"


class Job:
    """One job whose log is `job.log` in a temp folder, followed by a LogsProbe with the given
    presets; the fixture is written into that file in as many pieces as the test asks."""

    def __init__(self, tmp_path: Path, *presets: str) -> None:
        self.tmp_path = tmp_path
        self.path = tmp_path / "job.log"
        self.path.write_bytes(b"")
        text = "version: 1\nname: t\njobs:\n  train:\n    logs:\n" + textwrap.indent(
            f"- path: job.log\n  preset: [{', '.join(presets)}]\n  tail: 50\n", "      ")
        self.ruleset = load_text(text, "t.yaml", env={}, base=tmp_path).ruleset
        self.probe = LogsProbe(self.ruleset, tmp_path)

    def write(self, data: bytes) -> None:
        with self.path.open("ab") as f:
            f.write(data)

    def collect(self) -> dict[str, Any]:
        ctx = TickContext(now=time.time(), ruleset=self.ruleset, base_dir=self.tmp_path,
                          instances={KEY: {"job.key": "train", "job.id": "4242"}})
        out = self.probe.collect(ctx)
        assert self.probe.errors == {}
        return out[KEY]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def follow(tmp_path: Path, name: str, *presets: str) -> dict[str, Any]:
    """The facts after the whole fixture has been written and collected once."""
    job = Job(tmp_path, *presets)
    job.write(fixture(name))
    return job.collect()


def segments(data: bytes) -> list[str]:
    """The fixture split the way a terminal would show its lines (on `\\r`, `\\n`, `\\r\\n`)."""
    return re.split(r"\r\n|\r|\n", data.decode("utf-8"))


def isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --- progress bars -------------------------------------------------------------------------------


def test_tqdm_without_terminal_and_glued_traceback(tmp_path: Path) -> None:
    """tqdm's coloured `\\r` updates read in small pieces give done/total/rate of the last
    update, and a traceback starting mid-line on the unfinished bar is counted once."""
    data = fixture("tqdm_traceback.log")
    assert b"\x1b[32m" in data and b"\r" in data
    assert max(len(line) for line in data.split(b"\n")) > 10_000  # one epoch, one line
    job = Job(tmp_path, "tqdm", "traceback")
    for start in range(0, len(data), 4096):  # a live job: the log grows while it is read
        job.write(data[start:start + 4096])
        job.collect()
    facts = job.collect()
    assert facts["log.done"] == 45 and facts["log.total"] == 150
    assert facts["log.rate"] == 4.0 and facts["log.pct"] == 30
    # a closed bar is drawn twice; each bar's first draw (`0/150 [00:00<?, ?it/s]`, no rate
    # yet) counts too
    assert facts["log.extractors.tqdm.count"] == 151 + 151 + 45 + 3
    assert facts["log.errors.traceback.count"] == 1
    glued = facts["log.errors.traceback.last_line"]
    assert glued.startswith("Epoch 2:  30%|███       | 45/150 [00:11<00:26,  4.00it/s]")
    assert glued.endswith("Traceback (most recent call last):")
    assert facts["log.lines"][-1] == (
        "RuntimeError: DataLoader worker (pid 48213) is killed by signal: Killed.")
    assert not any("\x1b" in line for line in facts["log.lines"])


def test_lightning_bar_epoch_loss_and_nan(tmp_path: Path) -> None:
    """Lightning's bar gives the 0-based epoch, done/total and the loss, and its `nan.0` is a
    NaN loss that the nan-loss pattern reports from the first update that shows it."""
    data = fixture("lightning.log")
    first_nan = data.index(b"train_loss=nan.0")
    job = Job(tmp_path, "lightning", "nan-loss")
    job.write(data[:first_nan])  # the NaN update is still being written
    facts = job.collect()
    assert facts["log.epoch"] == 2  # the third of max_epochs=3: Lightning counts from 0
    assert facts["log.done"] == 59 and facts["log.total"] == 100
    assert facts["log.loss"] == 0.047
    assert facts["log.errors.nan_loss.count"] == 0
    job.write(data[first_nan:])
    facts = job.collect()
    assert facts["log.epoch"] == 2 and facts["log.done"] == 100
    assert isnan(facts["log.loss"])
    assert facts["log.errors.nan_loss.count"] == sum("=nan.0" in s for s in segments(data))
    assert facts["log.errors.nan_loss.severity"] == "critical"
    assert facts["log.errors.nan_loss.last_line"].endswith("train_loss=nan.0, val_loss=nan.0]")


def test_lightning_step_and_epoch_loss_nan(tmp_path: Path) -> None:
    """With `self.log(..., on_step=True, on_epoch=True)` the bar shows `train_loss_step=nan.0`,
    which is a NaN loss for the nan-loss pattern as much as `train_loss=nan.0` is."""
    data = fixture("lightning_step_epoch.log")
    first_nan = data.index(b"train_loss_step=nan.0")
    assert data[data.rindex(b"\r", 0, first_nan) + 1:].startswith(b"Epoch 2:  60%|")
    # up to the start of the next update: a trailing \r is held back (it may be half a CRLF)
    end = data.index(b"\r", first_nan) + len(b"\rEpoch")
    job = Job(tmp_path, "lightning", "nan-loss")
    job.write(data[:end])
    facts = job.collect()
    assert isnan(facts["log.loss"])
    assert facts["log.errors.nan_loss.count"] == 1
    job.write(data[end:])
    facts = job.collect()
    assert facts["log.errors.nan_loss.count"] == sum("=nan.0" in s for s in segments(data))


def test_lightning_iterable_bar_and_epoch_total(tmp_path: Path) -> None:
    """Lightning's bar over a dataset without a length (`45/?`) still gives done, the epoch
    and the rate; the final `Trainer.fit stopped: max_epochs=2` line gives the epoch total."""
    data = fixture("lightning_iterable.log")
    assert b"| 45/? [" in data and b"%|" not in data
    end = data.index(b"`Trainer.fit`")
    job = Job(tmp_path, "lightning")
    job.write(data[:end])
    facts = job.collect()
    assert facts["log.done"] == 45 and facts["log.epoch"] == 1
    assert facts["log.rate"] == 10.0 and facts["log.loss"] == 0.617
    assert "log.total" not in facts and "log.epochs" not in facts
    job.write(data[end:])
    facts = job.collect()
    assert facts["log.epochs"] == 2


def test_nested_eval_bar_does_not_replace_the_main_bar(tmp_path: Path) -> None:
    """The Trainer's evaluation bar is drawn nested under the training bar (a row below, then
    a cursor-up): with the tqdm preset, done/total stay the training bar's, even in the middle
    of an evaluation."""
    data = fixture("hf_trainer.log")
    eval_start = data.index(b"| 0/8 [")
    middle = data.index(b"| 4/8 [", eval_start) + 20
    job = Job(tmp_path, "tqdm")
    job.write(data[:middle])
    facts = job.collect()
    assert (facts["log.done"], facts["log.total"]) == (20, 60)
    assert not any("/8 [" in line for line in facts["log.lines"])
    job.write(data[middle:])
    facts = job.collect()
    assert (facts["log.done"], facts["log.total"]) == (60, 60)


# --- Hugging Face Trainer ------------------------------------------------------------------------


def test_hf_trainer_dicts_typed_and_hidden_nan(tmp_path: Path) -> None:
    """Classic Trainer log dicts give typed loss/epoch/grad_norm; a NaN step loss hidden by
    logging_nan_inf_filter still fires nan-loss through `'grad_norm': nan`."""
    data = fixture("hf_trainer.log")
    first_nan = data.index(b"'grad_norm': nan")
    cut = data.index(b"\n", first_nan)
    job = Job(tmp_path, "hf-trainer", "nan-loss")
    job.write(data[:cut + 1])
    facts = job.collect()
    assert facts["log.loss"] == 0.2661 and isinstance(facts["log.loss"], float)
    assert facts["log.epoch"] == 2.0 and isinstance(facts["log.epoch"], float)
    assert isnan(facts["log.grad_norm"])
    assert facts["log.eval_loss"] == 0.5341
    assert facts["log.errors.nan_loss.count"] == 1
    assert facts["log.errors.nan_loss.last_line"] == (
        "{'loss': 0.2661, 'grad_norm': nan, 'learning_rate': 1.75e-05, 'epoch': 2.0}")
    job.write(data[cut + 1:])
    facts = job.collect()
    assert facts["log.loss"] == 0.1447  # the train summary's train_loss is not the step loss
    assert facts["log.epoch"] == 3.0 and isnan(facts["log.eval_loss"])
    assert facts["log.extractors.hf_loss.count"] == 6
    assert facts["log.errors.nan_loss.count"] == 5  # grad_norm at steps 40-60, eval at 40, 60
    assert facts["log.errors.nan_loss.severity"] == "critical"


def test_hf_trainer_v5_quoted_values(tmp_path: Path) -> None:
    """transformers 5.x prints every value quoted (`'loss': '5.036'`, `'epoch': '2'`); the
    facts are still numbers and `'grad_norm': 'nan'` fires nan-loss."""
    data = fixture("hf_trainer_v5.log")
    assert b"{'loss': '0.2661', 'grad_norm': 'nan', 'learning_rate': '1.75e-05', 'epoch': '2'}" \
        in data
    first_nan = data.index(b"'grad_norm': 'nan'")
    cut = data.index(b"\n", first_nan)
    job = Job(tmp_path, "hf-trainer", "nan-loss")
    job.write(data[:cut + 1])
    facts = job.collect()
    assert facts["log.loss"] == 0.2661
    assert facts["log.epoch"] == 2 and isinstance(facts["log.epoch"], int)
    assert isnan(facts["log.grad_norm"])
    assert facts["log.errors.nan_loss.count"] == 1
    job.write(data[cut + 1:])
    facts = job.collect()
    assert facts["log.loss"] == 0.1447 and facts["log.epoch"] == 3
    assert isnan(facts["log.eval_loss"])
    assert facts["log.errors.nan_loss.count"] == 5


# --- Python logging ------------------------------------------------------------------------------


def test_python_logging_progress_lines(tmp_path: Path) -> None:
    """`Processed N/M items - loss: x - r items/s` and `Epoch e/E` lines of plain logging give
    done, total, rate, epoch, epochs and loss as numbers."""
    facts = follow(tmp_path, "python_logging.log", "python-logging")
    assert facts["log.done"] == 15000 and facts["log.total"] == 100000
    assert facts["log.rate"] == 250.5
    assert facts["log.epoch"] == 2 and facts["log.epochs"] == 10
    assert facts["log.loss"] == 0.345
    assert facts["log.batch"] == 60 and facts["log.batches"] == 400
    assert facts["log.extractors.items.count"] == 3
    assert facts["log.extractors.throughput.count"] == 3


# --- errors --------------------------------------------------------------------------------------


def test_cuda_oom_is_not_a_cpu_oom(tmp_path: Path) -> None:
    """`torch.OutOfMemoryError: CUDA out of memory` (with torchrun's `[rank0]:` prefix) is
    counted by oom and not by cpu_oom."""
    facts = follow(tmp_path, "cuda_oom.log", "traceback", "cuda-oom")
    assert facts["log.errors.oom.count"] == 1
    assert facts["log.errors.oom.severity"] == "critical"
    assert "Tried to allocate 2.00 GiB" in facts["log.errors.oom.last_line"]
    assert facts["log.errors.cpu_oom.count"] == 0
    assert facts["log.errors.traceback.count"] == 1


def test_cpu_allocator_failure_is_a_cpu_oom(tmp_path: Path) -> None:
    """PyTorch's `DefaultCPUAllocator: can't allocate memory` RuntimeError is counted by cpu_oom
    and not by oom."""
    facts = follow(tmp_path, "cpu_oom.log", "traceback", "cuda-oom")
    assert facts["log.errors.cpu_oom.count"] == 1
    assert facts["log.errors.cpu_oom.last_line"].startswith(
        "RuntimeError: [enforce fail at alloc_cpu.cpp:114] . DefaultCPUAllocator: can't allocate")
    assert facts["log.errors.oom.count"] == 0


def test_cpu_oom_from_numpy_and_slurm(tmp_path: Path) -> None:
    """numpy's `_ArrayMemoryError: Unable to allocate` and SLURM's `Detected 1 oom_kill event`
    are CPU out-of-memory failures too: counted by cpu_oom, not by oom."""
    facts = follow(tmp_path, "cpu_oom_other.log", "traceback", "cuda-oom")
    assert facts["log.errors.cpu_oom.count"] == 2
    assert facts["log.errors.cpu_oom.last_line"].startswith(
        "slurmstepd: error: Detected 1 oom_kill event in StepId=4242.batch.")
    assert facts["log.errors.oom.count"] == 0


def test_nccl_errors_and_watchdog_timeout(tmp_path: Path) -> None:
    """`NCCL error in: ... unhandled system error`, `ncclSystemError` and the watchdog's
    `Watchdog caught collective operation timeout` (its log line and the `what():` of the
    abort) are counted by nccl; NCCL INFO lines are not."""
    facts = follow(tmp_path, "nccl.log", "nccl", "traceback")
    assert facts["log.errors.nccl.count"] == 4
    assert facts["log.errors.nccl.severity"] == "critical"
    lines = facts["log.errors.nccl.lines"]
    assert lines[0].startswith("[rank1]:[E115 10:40:12.118734528 ProcessGroupNCCL.cpp:632] "
                               "[Rank 1] Watchdog caught collective operation timeout")
    assert lines[1].startswith("  what():  [PG ID 0 PG GUID 0(default_pg) Rank 1] Process group")
    assert lines[2].startswith("torch.distributed.DistBackendError: NCCL error in: ")
    assert "unhandled system error" in lines[2]
    assert lines[3].startswith("ncclSystemError: System call")
    assert facts["log.errors.traceback.count"] == 1


def test_dataloader_worker_killed_is_a_cpu_oom(tmp_path: Path) -> None:
    """`DataLoader worker (pid N) is killed by signal: Killed.`, a worker ended by the OOM
    killer, is counted by cpu_oom."""
    facts = follow(tmp_path, "tqdm_traceback.log", "cuda-oom")
    assert facts["log.errors.cpu_oom.count"] == 1
    assert facts["log.errors.cpu_oom.last_line"] == (
        "RuntimeError: DataLoader worker (pid 48213) is killed by signal: Killed.")


def test_nan_loss_spellings(tmp_path: Path) -> None:
    """NaN and infinity as Python, C, JSON and Lightning print them (`loss: NaN`, `-nan`,
    `"loss": NaN`, `Infinity`, `nan.0`) fire nan-loss and give a NaN loss; finite values
    and words that merely contain "nan" do not fire."""
    job = Job(tmp_path, "python-logging", "nan-loss")
    bad = ["step 10 - loss: NaN", "step 11 loss: -nan", '{"step": 12, "loss": NaN}',
           '{"step": 13, "grad_norm": Infinity}', "train_loss=nan.0", "loss = -inf",
           "eval_loss: nan"]
    fine = ["step 1 - loss: 0.25", "loss: nanosecond timer", '{"loss": 1e-3}',
            "loss: infinite patience"]
    job.write(("\n".join(fine) + "\n").encode())
    facts = job.collect()
    assert facts["log.errors.nan_loss.count"] == 0 and facts["log.loss"] == 0.25
    for line in bad:
        job.write((line + "\n").encode())
        facts = job.collect()
        assert facts["log.errors.nan_loss.last_line"] == line
    assert facts["log.errors.nan_loss.count"] == len(bad)
    job.write(b"step 14 - loss: NaN\n")
    assert isnan(job.collect()["log.loss"])


def test_no_preset_pattern_is_searched_from_every_position() -> None:
    """On a log of typical INFO lines, every builtin pattern is counted through a literal
    (a literal-led search, forward or on the reversed text, or its rare literals found and
    their lines checked), never by a search from every position, which is several times
    slower: a preset literal as common as "INF" would silently cost that."""
    from rulesmon.probes.log_presets import PRESETS
    from rulesmon.probes.logs import Chunk, Matcher, compile_forms

    line = ("2025-01-15 10:00:01,123 - INFO - Processed 120/1000 items - loss: 0.512 - "
            "250.1 items/s\n")
    data = (line * 2000).encode()
    patterns = {name: p for preset in PRESETS.values()
                for name, p in [*preset.extract.items(),
                                *((k, e.pattern) for k, e in preset.errors.items())]}
    matchers = [Matcher(name, *compile_forms(p)) for name, p in patterns.items()]
    chunk = Chunk(data, matchers)
    ways = {m.name: chunk.find(m).how for m in matchers}
    assert not [name for name, how in ways.items() if how == "full"], ways


# --- real framework runs (record_hf.py, record_lightning.py; versions in the README) -----------


def draws(data: bytes, before: int, pattern: bytes) -> list[re.Match[bytes]]:
    """The bar draws matching `pattern` written before offset `before`."""
    return list(re.finditer(pattern, data[:before]))


@pytest.mark.parametrize("name", ["hf_trainer_real.log", "hf_trainer_real_pty.log"])
def test_hf_trainer_real_main_bar_through_checkpoints_and_evaluations(
        tmp_path: Path, name: str) -> None:
    """On a real Trainer run (slow steps drawn in s/it, an evaluation and a checkpoint every 6
    steps, a final `evaluate`), in a batch log and in a terminal, done/total/pct stay the
    training bar's right after each `Writing model shards: 1/1` bar and after the final
    evaluation bar, and the rate is the training bar's s/it read as it/s, never another
    bar's rate."""
    data = fixture(name)
    train = rb"(\d+)%\|[^|]*\| (\d+)/16 \[[\d:]+<[\d:?]+, +([\d.]+)s/it\]"
    shards = [m.end() for m in re.finditer(rb"Writing model shards: 100%[^\r\n]*\r?\n", data)]
    assert len(shards) == 3
    for presets in (("hf-trainer",), ("tqdm",), ("hf-trainer", "tqdm")):
        folder = tmp_path / "-".join(presets)
        folder.mkdir()
        job = Job(folder, *presets)
        start = 0
        for cut in [*shards, len(data)]:
            job.write(data[start:cut])
            start = cut
            facts = job.collect()
            last = draws(data, cut, train)[-1]
            pct, done, seconds = int(last.group(1)), int(last.group(2)), float(last.group(3))
            assert (facts["log.done"], facts["log.total"]) == (done, 16), (presets, cut)
            assert facts["log.pct"] == pct
            assert facts["log.rate"] == pytest.approx(1 / seconds)
        assert facts["log.done"] == 16 and facts["log.rate"] < 1  # not the eval bar's 439 it/s
        if "hf-trainer" in presets:
            assert facts["log.epoch"] == 2.0 and facts["log.loss"] == 3.894


def test_hf_trainer_real_read_while_written(tmp_path: Path) -> None:
    """The same run read while it is written, in 300-byte pieces: the done count of the tqdm
    preset never goes back, the total is always 16, and every rate is one of the training
    bar's (below 1 it/s)."""
    data = fixture("hf_trainer_real.log")
    job = Job(tmp_path, "tqdm")
    seen: list[int] = []
    for start in range(0, len(data), 300):
        job.write(data[start:start + 300])
        facts = job.collect()
        if "log.done" in facts:
            seen.append(facts["log.done"])
            assert facts["log.total"] == 16
            if "log.rate" in facts:
                assert 0 < facts["log.rate"] < 1
    assert seen == sorted(seen) and seen[-1] == 16


def test_lightning_rich_pty_whole_run_progress_and_eta(tmp_path: Path) -> None:
    """Lightning's RichProgressBar in a terminal (recorded with `script`): `Epoch 1/2 ━━━ 20/40`
    gives the epoch, done, total, rate and 3 epochs; the whole run's done, total and ETA
    carry across epochs (at the end of epoch 0 the ETA is the two epochs left, not 0); the
    loss is the wrapped `train_loss:` row, not `val_loss:`."""
    data = fixture("lightning_rich_pty.log")
    plain = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", data)
    assert b"Epoch 1/2" in plain and b"\x1b[1A" in data
    job = Job(tmp_path, "lightning")
    points = {rb"Epoch 0/2 [^\r\n]* 40/40 ": (0, 40), rb"Epoch 1/2 [^\r\n]* 20/40 ": (1, 20)}
    start = 0
    for pattern, (epoch, done) in points.items():
        hit = re.search(pattern, data)
        assert hit is not None
        cut = data.index(b"Epoch", hit.end())  # the next redraw begins
        job.write(data[start:cut])
        start = cut
        facts = job.collect()
        rate = float(re.findall(rb"([\d.]+)it/s", data[hit.start():cut])[0])
        assert (facts["log.epoch"], facts["log.done"], facts["log.total"]) == (epoch, done, 40)
        assert facts["log.pct"] == 100 * done // 40  # Rich prints none: done of total
        assert facts["log.epochs"] == 3 and facts["log.rate"] == rate
        assert facts["log.run_done"] == epoch * 40 + done and facts["log.run_total"] == 120
        assert facts["log.eta"] == pytest.approx((120 - epoch * 40 - done) / rate)
        assert facts["log.eta"] > 0
        loss = float(re.findall(rb"train_loss: ([\d.]+)", data[:cut])[-1])
        assert facts["log.loss"] == loss
        assert facts["log.val_loss"] == float(re.findall(rb"val_loss: ([\d.]+)", data[:cut])[-1])
    job.write(data[start:])
    facts = job.collect()
    assert (facts["log.epoch"], facts["log.done"], facts["log.run_done"]) == (2, 40, 120)
    assert facts["log.eta"] == 0 and facts["log.run_pct"] == 100
    assert facts["log.val_loss"] == 0.0908089429140091  # the final metrics table
    assert facts["log.test_loss"] == 0.07269074022769928


def test_lightning_rich_batch_log_final_bar_and_metrics_table(tmp_path: Path) -> None:
    """In a batch log (no terminal) Rich draws its bar only when it stops: nothing is read
    during training (unknown, not a stale 0%); then the final `Epoch 2/2 ... 40/40` bar, its
    wrapped `train_loss:` row, and val_loss/test_loss from the final metrics tables and the
    printed results (`[{'val_loss': ...}]`)."""
    data = fixture("lightning_rich.log")
    assert b"Epoch 0/2" not in data and data.count(b"Epoch 2/2") == 1
    end_of_fit = data.index(b"`Trainer.fit` stopped")
    job = Job(tmp_path, "lightning")
    job.write(data[:end_of_fit])
    facts = job.collect()
    assert not any(k in facts for k in ("log.done", "log.epoch", "log.loss", "log.eta"))
    table = data.index(b"Validate metric")
    job.write(data[end_of_fit:table])
    facts = job.collect()
    assert (facts["log.epoch"], facts["log.done"], facts["log.total"]) == (2, 40, 40)
    rate = float(re.findall(rb"Epoch 2/2 [^\n]* ([\d.]+)it/s", data)[0])
    assert facts["log.epochs"] == 3 and facts["log.rate"] == rate
    assert facts["log.loss"] == 0.046 and facts["log.val_loss"] == 0.091  # the bar's rows
    assert facts["log.run_total"] == 120 and facts["log.eta"] == 0
    printed = data.index(b"[{'val_loss'")
    job.write(data[table:printed])
    facts = job.collect()
    assert facts["log.val_loss"] == 0.0908089429140091  # the table's row
    assert facts["log.extractors.lightning_val_loss.count"] == 2  # the bar's row, the table's
    job.write(data[printed:])
    facts = job.collect()
    assert facts["log.extractors.lightning_val_loss.count"] == 3  # `[{'val_loss': 0.09...}]`
    assert facts["log.val_loss"] == 0.0908089429140091
    assert facts["log.test_loss"] == 0.07269074022769928
    assert facts["log.extractors.lightning_test_loss.count"] == 2
    assert facts["log.done"] == 40  # not the `Validation ━━━ 10/10` nor `Testing` bar


def test_lightning_tqdm_real_epochs_unknown_until_known(tmp_path: Path) -> None:
    """Lightning's TQDMProgressBar on a real run: the whole run's done counts across epochs
    (epoch 1 at 20/40 is 60), its total and ETA stay unknown until the final
    `max_epochs=3` line gives the epoch count; the `Validation DataLoader 0` and
    `Testing DataLoader 0` bars of `validate`/`test` replace neither the lightning bar nor,
    with the tqdm preset, the main bar; val_loss and test_loss come from the tables."""
    data = fixture("lightning_tqdm_real.log")
    # up to the start of the next update: a trailing \r is held back (it may be half a CRLF)
    middle = data.index(b"\r", data.index(b"Epoch 1:  50%|")) + len(b"\rEpoch")
    job = Job(tmp_path, "lightning", "tqdm")
    job.write(data[:middle])
    facts = job.collect()
    assert (facts["log.epoch"], facts["log.done"], facts["log.total"]) == (1, 20, 40)
    assert facts["log.run_done"] == 60
    assert "log.epochs" not in facts and "log.run_total" not in facts and "log.eta" not in facts
    assert facts["log.val_loss"] == 0.127 and facts["log.loss"] == float(
        re.findall(rb"train_loss=([\d.]+)", data[:middle])[-1])
    job.write(data[middle:])
    facts = job.collect()
    assert facts["log.epochs"] == 3 and facts["log.run_total"] == 120 and facts["log.eta"] == 0
    assert (facts["log.done"], facts["log.total"]) == (40, 40)
    assert b"Testing DataLoader 0: 100%" in data
    assert facts["log.val_loss"] == 0.0908089429140091
    assert facts["log.test_loss"] == 0.07269074022769928


def test_preset_bar_facts_are_declared() -> None:
    """Lint knows the facts of the bar presets: the whole-run facts of `lightning` are
    declared numbers, and a bar's internal groups (`_elapsed`, `_desc`) are no facts."""
    from rulesmon.config.loader import load_text
    from rulesmon.facts import job_facts

    text = ("version: 1\nname: t\njobs:\n  train:\n    logs:\n"
            "      - {path: job.log, preset: [lightning, hf-trainer, tqdm]}\n")
    job = load_text(text, "t.yaml", env={}).ruleset.jobs["train"]
    log = job_facts(job)["log"]
    assert isinstance(log, dict)
    for name in ("run_done", "run_total", "run_pct", "eta", "rate", "done", "epochs"):
        assert getattr(log[name], "type", None) == "float", name
    assert "val_loss" in log and "test_loss" in log
    assert not [name for name in log if name.startswith("_")]


def test_main_bar_with_few_draws_looked_at(tmp_path: Path, monkeypatch: Any) -> None:
    """The main bar of a chunk is found by looking at a bounded number of its last draws
    (the first read of a long log): on the real Trainer log read at once, with only 5 draws
    looked at, the facts are the training bar's as with all of them."""
    from rulesmon.probes import logs

    data = fixture("hf_trainer_real.log")
    whole = follow(tmp_path, "hf_trainer_real.log", "tqdm")
    monkeypatch.setattr(logs, "BAR_DRAWS", 5)
    (tmp_path / "few").mkdir()
    few = follow(tmp_path / "few", "hf_trainer_real.log", "tqdm")
    keys = ("log.done", "log.total", "log.pct", "log.rate")
    assert [few[k] for k in keys] == [whole[k] for k in keys]
    assert (few["log.done"], few["log.total"]) == (16, 16) and b"| 10/10 [" in data
