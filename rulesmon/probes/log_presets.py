"""Builtin log extractor presets: the formats ML and HPC jobs print, ready to use by name.

A preset is data (regexes with named groups, error patterns with a severity), so lint knows the
facts it provides. Patterns tolerate what real framework output does outside a terminal: tqdm's
`\\r` updates without newlines, ANSI colour codes, stderr glued onto an unfinished bar line
(nothing is anchored at the line start), Lightning's `nan.0`, transformers 5.x quoted values.

Every pattern is ASCII-only (`(?a)`: `\\d`, `\\s`, `\\w`, `\\b` mean ASCII digits, spaces and
word characters, as in the formats themselves), so the logs probe can search undecoded bytes
with it (see rulesmon/probes/logs.py). Where they can, patterns begin or end with a literal:
that is what makes CPython's `re` search a whole chunk fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
#: NaN and infinity as Python, Lightning (`nan.0`), C (`-nan`) and JSON (`NaN`, `Infinity`)
#: print them
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
        doc="tqdm bars, including the `\\r` updates written without newlines outside a terminal.",
        extract={
            "tqdm": r"(?a)(?P<pct>\d+)%\|[^|\r\n]*\| (?P<done>\d+)/(?P<total>\d+) "
            # a rate per second in any unit (it/s, examples/s); a slow bar's s/it is no rate
            r"\[[\d:]+<[\d:?]+(?:, *(?P<rate>[\d.]+) ?[A-Za-z]*/s\b)?",
        },
    ),
    "lightning": Preset(
        doc="PyTorch Lightning's progress bar (`Epoch 0: 45%|...| 45/100`, epochs count from 0; "
        "`45/?` without a total for an iterable dataset), the epoch count of its final "
        "`Trainer.fit stopped: max_epochs=3 reached` line, and its `loss=` / `train_loss=` "
        "metrics, with NaN printed as `nan.0`.",
        extract={
            "lightning": r"(?a)Epoch (?P<epoch>\d+):\s+(?:(?P<pct>\d+)%)?\|[^|\r\n]*\| "
            r"(?P<done>\d+)/(?:(?P<total>\d+)|\?)"
            r"(?: \[[\d:]+<[\d:?]+(?:, *(?P<rate>[\d.]+) ?[A-Za-z]*/s\b)?)?",
            "lightning_epochs": r"(?a)`Trainer\.fit` stopped: `max_epochs=(?P<epochs>\d+)`",
            "lightning_loss": rf"(?a)(?:train_)?loss(?:_step|_epoch)?=(?P<loss>{_NUM_OR_NAN})",
        },
    ),
    "hf-trainer": Preset(
        doc="Hugging Face Trainer dict lines `{'loss': 0.5, 'epoch': 1.0}`, also as quoted strings "
        "(transformers 5.x), and `eval_loss` / `grad_norm`.",
        extract={
            "hf_loss": rf"(?a)\{{'loss': '?(?P<loss>{_NUM_OR_NAN})'?",
            "hf_epoch": rf"(?a)'epoch': '?(?P<epoch>{_NUM})'?",
            "hf_grad_norm": rf"(?a)'grad_norm': '?(?P<grad_norm>{_NUM_OR_NAN})'?",
            "hf_eval_loss": rf"(?a)'eval_loss': '?(?P<eval_loss>{_NUM_OR_NAN})'?",
        },
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
