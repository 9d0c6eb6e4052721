"""Builtin log extractor presets: the formats ML and HPC jobs print, ready to use by name.

A preset is data (regexes with named groups, error patterns with a severity), so lint knows the
facts it provides. Patterns tolerate what real framework output does outside a terminal: tqdm's
`\\r` updates without newlines, ANSI colour codes, stderr glued onto an unfinished bar line
(nothing is anchored at the line start), Lightning's `nan.0`, transformers 5.x quoted values.

Every pattern is ASCII-only (`(?a)`: `\\d`, `\\s`, `\\w`, `\\b` mean ASCII digits, spaces and
word characters, as in the formats themselves), so the logs probe can search undecoded bytes
with it (see rulesmon/probes/logs.py). Where they can, patterns begin or end with a literal:
that is what makes CPython's `re` search a whole chunk fast.

Extractors named in a preset's `bars` read progress bars: of their matching lines, the logs
probe keeps the draws of each file's main bar (see `BarFollower` in rulesmon/probes/progress.py),
and `bar_values` turns a draw's groups into facts; a bar's description is the text before the
match on its line (`_desc`). Groups whose name starts with `_` are for that only and give no
fact. A preset's `derive` adds facts computed from the merged facts of a log (Lightning's
whole-run progress and ETA), declared with their types in `facts`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .progress import bar_family, duration

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
#: NaN and infinity as Python, PyTorch, JSON, C, R and Julia print them. Not `INF` (C's %F):
#: every "INFO" of a log holds it, and the logs probe finds rare patterns by their literals.
_NAN_INF = r"[-+]?(?:nan|NaN|NAN|infinity|inf|Infinity|Inf)"
_NUM_OR_NAN = rf"(?:{_NUM}|{_NAN_INF}(?:\.0\b|\b))"


@dataclass(frozen=True)
class ErrorPattern:
    pattern: str
    severity: str = "error"


@dataclass(frozen=True)
class Preset:
    doc: str
    extract: dict[str, str] = field(default_factory=dict)
    errors: dict[str, ErrorPattern] = field(default_factory=dict)
    #: extractors that read progress bars (their main bar is followed, see above)
    bars: tuple[str, ...] = ()
    #: facts computed from a log's merged facts, and their declaration: name -> (type, doc)
    derive: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    facts: dict[str, tuple[str, str]] = field(default_factory=dict)


#: the end of a tqdm bar: `[elapsed<remaining, rate]`, the rate per second in any unit
#: (`it/s`, `examples/s`) or, for a bar slower than one per second, seconds per item (`s/it`)
_TQDM_TAIL = (r" \[(?P<_elapsed>[\d:]+)<(?P<_remaining>[\d:?]+)"
              r"(?:, *(?:(?P<rate>\d+(?:\.\d+)?) ?[A-Za-z]*/s"
              r"|(?P<_s_per_it>[\d.]+) ?s/[A-Za-z]+)\b)?")
#: a tqdm bar with a total (its description is what precedes the match on its line)
_TQDM = r"(?a)(?P<pct>\d+)%\|[^|\r\n]*\| (?P<done>\d+)/(?P<total>\d+)" + _TQDM_TAIL


Family = tuple[str, str]


def bar_values(groups: Mapping[str, str]) -> tuple[Family, float | None, dict[str, Any]]:
    """A bar draw's family, elapsed seconds and values (text, or numbers for those computed
    here) from its matched groups (None ones left out): `rate` in items per second also from
    a slow bar's `s/it` (1.28 s/it is 0.78 it/s), none for a rate printed as zero (below the
    bar's two decimals, or Rich's placeholder before its first speed), Rich's `Epoch 1/2`
    (the last epoch's index) as `epochs` = 3, and the percentage a bar without one (Rich's)
    would show."""
    values: dict[str, Any] = {k: v for k, v in groups.items() if not k.startswith("_")}
    if "rate" in values and not _positive(values["rate"]):
        del values["rate"]  # Rich's `0.00it/s` before the first speed: unknown, not zero
    spi = groups.get("_s_per_it")
    if spi is not None and "rate" not in values:
        try:
            seconds = float(spi)
        except ValueError:
            seconds = 0.0
        if seconds > 0:
            values["rate"] = 1.0 / seconds
    last = groups.get("_last_epoch")
    if last is not None and last.isdigit():
        values["epochs"] = int(last) + 1
    done, total = groups.get("done", ""), groups.get("total", "")
    if "pct" not in values and done.isdigit() and total.isdigit() and int(total) > 0:
        values["pct"] = round(100 * int(done) / int(total))  # Rich prints none; tqdm rounds
    return (bar_family(groups.get("_desc"), groups.get("total")),
            duration(groups.get("_elapsed")), values)


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _whole(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def lightning_run(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Lightning's whole run from its epoch bar, whose count restarts every epoch: done over
    all epochs (`epoch * total + done`, epochs counting from 0), and once the epoch count is
    known (Rich's `Epoch 1/2`, or the final `max_epochs=3` line) the run's total and the
    seconds left at the bar's rate (validation passes not counted)."""
    epoch, done, total = (_number(facts.get(f"log.{k}")) for k in ("epoch", "done", "total"))
    out: dict[str, Any] = {}
    if epoch is None or done is None or not total:
        return out
    run_done = epoch * total + done
    out["log.run_done"] = _whole(run_done)
    epochs = _number(facts.get("log.epochs"))
    if epochs and epochs > epoch:
        run_total = epochs * total
        out["log.run_total"] = _whole(run_total)
        out["log.run_pct"] = min(100.0, 100.0 * run_done / run_total)
        rate = _number(facts.get("log.rate"))
        if rate and rate > 0:
            out["log.eta"] = max(0.0, run_total - run_done) / rate
    return out


PRESETS: dict[str, Preset] = {
    "python-logging": Preset(
        doc="Progress lines of plain Python logging: `Processed N/M items`, `Batch b/B`, "
        "`Epoch e/E`, `loss: x`, `N items/s`.",
        extract={
            "items": r"(?a)Processed (?P<done>\d+)/(?P<total>\d+)",
            "batch": r"(?a)Batch (?P<batch>\d+)/(?P<batches>\d+)",
            "epoch": r"(?a)Epoch (?P<epoch>\d+)(?:/(?P<epochs>\d+))?",
            "loss": rf"(?a)loss:\s*(?P<loss>{_NUM_OR_NAN})",
            # bounded, so a digit run fails fast; ends with a literal, so it is counted on the
            # reversed text
            "throughput": r"(?a)\b(?P<rate>\d{1,15}(?:\.\d{1,9})?(?:[eE][-+]?\d{1,3})?) "
                          r"(?:items?|samples?|it)/s",
        },
    ),
    "tqdm": Preset(
        doc="tqdm bars, including the `\\r` updates written without newlines outside a terminal; "
        "of several bars, the main one (see the docs), a slow bar's `s/it` read as a rate in it/s.",
        extract={"tqdm": _TQDM},
        bars=("tqdm",),
    ),
    "lightning": Preset(
        doc="PyTorch Lightning's epoch bar, as TQDMProgressBar draws it (`Epoch 0: 45%|...| "
        "45/100`; `45/?` without a total for an iterable dataset) and as RichProgressBar, its "
        "default when rich is installed, does (`Epoch 0/2 ━━━ 45/100 0:00:05 • 0:00:06 "
        "8.91it/s`, whose `0/2` also gives the epoch count); epochs count from 0. The epoch "
        "count of its final `Trainer.fit stopped: max_epochs=3 reached` line; the training "
        "loss of its bar (`loss=`, `train_loss=`, `train_loss_step=`, Rich's `train_loss: `, "
        "NaN printed as `nan.0`); `val_loss` and `test_loss` from the bar, from the final "
        "metrics table that `validate` and `test` print and from their printed results "
        "(`[{'test_loss': 0.07}]`). Its whole-run facts (`run_done`, "
        "`run_total`, `run_pct`, `eta`) carry the epoch bar, whose count restarts every "
        "epoch, over the run.",
        extract={
            "lightning": r"(?a)Epoch (?P<epoch>\d+):\s+(?:(?P<pct>\d+)%)?\|[^|\r\n]*\| "
            r"(?P<done>\d+)/(?:(?P<total>\d+)|\?)(?:" + _TQDM_TAIL + ")?",
            # Rich: `Epoch 1/2`, the bar, `40/40` (`40/--` without a total), elapsed, a bullet,
            # remaining (`-:--:--` when unknown) and the speed, always in it/s
            "lightning_rich": r"(?a)Epoch (?P<epoch>\d+)(?:/(?:(?P<_last_epoch>\d+)|-\d+))? +"
            r"[^\d\r\n]*(?P<done>\d+)/(?:(?P<total>\d+)|--) (?P<_elapsed>[\d:]+|-:--:--) \S+ "
            r"(?P<_remaining>[\d:]+|-:--:--) (?P<rate>\d+(?:\.\d+)?)it/s",
            "lightning_epochs": r"(?a)`Trainer\.fit` stopped: `max_epochs=(?P<epochs>\d+)`",
            # a whole name: not the `loss` of `val_loss`
            "lightning_loss": r"(?a)loss(?:(?<![\w/]loss)|(?<=train_loss))(?:_step|_epoch)?"
            rf"(?:=|: )(?P<loss>{_NUM_OR_NAN})",
            # in the bar (`val_loss=0.127`, `val_loss: 0.127`), the final table's row
            # (`│  val_loss  │  0.0908…  │` with rich, `  val_loss   0.0908…` without) and the
            # printed results of validate/test (`[{'val_loss': 0.0908…}]`)
            "lightning_val_loss": r"(?a)val_loss(?<![\w/]val_loss)(?:_epoch)?'?"
            rf"(?:=|: | +(?:\u2502 +)?)(?P<val_loss>{_NUM_OR_NAN})",
            "lightning_test_loss": r"(?a)test_loss(?<![\w/]test_loss)(?:_epoch)?'?"
            rf"(?:=|: | +(?:\u2502 +)?)(?P<test_loss>{_NUM_OR_NAN})",
        },
        bars=("lightning", "lightning_rich"),
        derive=lightning_run,
        facts={
            "run_done": ("float", "Batches done over the whole run: `epoch * total + done`."),
            "run_total": ("float", "Batches of the whole run: `epochs * total`, once the epoch "
                          "count is known."),
            "run_pct": ("float", "Percent of the whole run done."),
            "eta": ("float", "Seconds left in the whole run at the bar's rate (validation "
                    "passes not counted), once the epoch count is known."),
        },
    ),
    "hf-trainer": Preset(
        doc="Hugging Face Trainer dict lines `{'loss': 0.5, 'epoch': 1.0}`, also as quoted strings "
        "(transformers 5.x), `eval_loss` / `grad_norm`, and its training bar (`38%|...| 6/16 "
        "[00:08<00:14,  1.47s/it]`: the main bar, not the evaluation or `Writing model shards` "
        "bars; a slow bar's `s/it` read as a rate in it/s).",
        extract={
            "hf_loss": rf"(?a)\{{'loss': '?(?P<loss>{_NUM_OR_NAN})'?",
            "hf_epoch": rf"(?a)'epoch': '?(?P<epoch>{_NUM})'?",
            "hf_grad_norm": rf"(?a)'grad_norm': '?(?P<grad_norm>{_NUM_OR_NAN})'?",
            "hf_eval_loss": rf"(?a)'eval_loss': '?(?P<eval_loss>{_NUM_OR_NAN})'?",
            "hf_progress": _TQDM,
        },
        bars=("hf_progress",),
    ),
    "traceback": Preset(
        doc="Python tracebacks (their `Traceback (most recent call last):` header).",
        errors={
            "traceback": ErrorPattern(r"(?a)Traceback \(most recent call last\):", "error"),
        },
    ),
    "cuda-oom": Preset(
        doc="Out of memory on the GPU (`CUDA out of memory`, `torch.OutOfMemoryError`) and on the "
        "CPU, which PyTorch reports as a plain RuntimeError from its allocator.",
        errors={
            "oom": ErrorPattern(
                r"(?a)CUDA out of memory|OutOfMemoryError|CUDA error: out of memory", "critical"),
            "cpu_oom": ErrorPattern(
                r"(?a)DefaultCPUAllocator: can't allocate memory|\bMemoryError|_ArrayMemoryError"
                r"|Unable to allocate \S+ (?:[KMGT]i?B|bytes)|oom_kill event|oom-kill"
                # a DataLoader worker process ended by the OOM killer
                r"|DataLoader worker \(pid[^)\r\n]*\) is killed by signal: Killed",
                "critical"),
        },
    ),
    "nccl": Preset(
        doc="NCCL and distributed-training network failures.",
        errors={
            "nccl": ErrorPattern(
                r"(?a)NCCL error|ncclInternalError|ncclSystemError|ncclUnhandledCudaError"
                r"|ncclRemoteError|Watchdog caught collective operation timeout", "critical"),
        },
    ),
    "nan-loss": Preset(
        doc="A loss or gradient norm that became NaN or infinite (`nan`, `NaN`, `-nan`, "
        "`inf`, `Infinity`, `nan.0`, quoted, in JSON).",
        errors={
            "nan_loss": ErrorPattern(
                r"(?a)(?:loss|grad_norm)(?:_step|_epoch)?['\"]?\s*[:=]\s*['\"]?" + _NAN_INF
                + r"\b", "critical"),
        },
    ),
}
