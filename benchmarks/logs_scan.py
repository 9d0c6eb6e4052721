"""Benchmark: LogsProbe reading a 1 GB log from offset 0, against `grep -c -E` counting the
same patterns' lines in the same file.

The log is a realistic mix (Python-logging progress lines, other logging lines, tqdm `\\r`
updates with block characters, now and then a traceback, a CUDA OOM, an NCCL error or a NaN
loss), made fast by repeating a ~1 MB block. In the same run, page cache warm:

- rulesmon: one LogsProbe with presets python-logging, tqdm, traceback, cuda-oom, nccl and
  nan-loss, collect() called until it has read the whole file (64 MB per call at most);
- grep, once per pattern: `grep -c -E -e P` for each of the 11 patterns of those presets, the
  times added up. This is the equivalent of what the probe reports: a count of matching lines
  for every pattern (grep -c gives one count per run). Each pattern is translated to POSIX ERE
  (GREP below): named groups become plain groups, `\\d` -> `[0-9]`, `\\s` -> `[[:space:]]`,
  `\\S` -> `[^[:space:]]`, `\\b` before a word character -> `(^|[^[:alnum:]_])` and after one ->
  `([^[:alnum:]_]|$)`, `(?:` -> `(`, escaped punctuation -> a bracket (`[|]`, `[(]`), and an
  optional part at the end of a pattern is dropped (it changes no line's match). The presets
  had possessive quantifiers once; they are plain bounded repeats now, as in ERE. grep runs
  with LC_ALL=C: its fastest setting (in a UTF-8 locale these patterns take it ~100 s), and
  the presets are ASCII-class (`(?a)`), so bytes are what both compare. Before timing, each
  translation is checked on a 2 MB sample (with `\\r` made a line break, so grep's lines are
  rulesmon's): grep and rulesmon must count the same lines for every pattern.
- for reference, grep once for all: `grep -c -E -e P1 ... -e P11`. It answers a smaller
  question (how many lines match any of the patterns: one count, and a line is done at its
  first match, where a count per pattern must try every pattern on every line); and
  `grep -c 'Processed '` (one literal).

Then the same 11 patterns as a ruleset's own `extract:`/`errors:` (what a shared ruleset
brings) on a RULESET_SIZE log of the same mix, both ways in the same run: "before", on CPython
`re` chunk forms as presets are (how ruleset patterns ran until they had to be bounded), and
"after", on RE2 in linear time (rulesmon/regex.py), against the greps' MB/s on that file;
ROUNDS reads each way, alternated (a busy spell of a shared machine hits both), and the medians
compared: RE2's throughput as a multiple of `re`'s (target: at least 1).

Target: rulesmon within 3x the time of the equivalent greps (once per pattern). A probe that
has not caught up after DEADLINE seconds is stopped there, and its MB/s is taken over what it
read. Then a 32 MB log of the same mix is read chunk by chunk and the time is split
into reading (the tailer: read, NUL and ANSI checks, `\\r` handling), reversing chunks (for
patterns counted on reversed text) and each pattern's search (counting its lines, then its
last values or lines), with how each pattern is counted: "forward" (a literal-led search over
the chunk), "backward" (the same on the reversed chunk), "anchors" (its literals found with
`find`, their lines searched in place) or "full" (a search from every position). The files
are deleted at the end. Takes 1-2 minutes. Run: python benchmarks/logs_scan.py
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext
from rulesmon.probes.log_presets import PRESETS as LOG_PRESETS
from rulesmon.probes.logs import Chunk, LogsProbe, Matcher, compile_forms, main_bar
from rulesmon.probes.progress import BarFollower
from rulesmon.probes.tail import Tailer

SIZE = 1 << 30  # 1 GiB
BLOCK = 1 << 20  # the repeated block, about 1 MiB
PREFIX = 32 << 20  # the log the time is broken down on
SAMPLE = 2 << 20  # the log the grep translations are checked on
DEADLINE = 120.0  # seconds the full read may take before it is stopped
RULESET_SIZE = 256 << 20  # the log the ruleset patterns (re vs RE2) are compared on
ROUNDS = 3  # reads of it each way, alternated; the medians are compared
PRESETS = ["python-logging", "tqdm", "traceback", "cuda-oom", "nccl", "nan-loss"]
TARGET = 3.0
KEY = "embed/0"

_NUM = r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
_NAN_INF = r"[-+]?(nan|NaN|NAN|infinity|inf|Infinity|Inf)([^[:alnum:]_]|$)"
_NUM_OR_NAN = rf"({_NUM}|{_NAN_INF})"
#: Every pattern of PRESETS in POSIX ERE, by pattern name (see the module docstring).
GREP = {
    "items": r"Processed [0-9]+/[0-9]+",
    "batch": r"Batch [0-9]+/[0-9]+",
    "epoch": r"Epoch [0-9]+",
    "loss": rf"loss:[[:space:]]*{_NUM_OR_NAN}",
    "throughput": r"(^|[^[:alnum:]_])[0-9]{1,15}([.][0-9]{1,9})?([eE][-+]?[0-9]{1,3})? "
                  r"(items?|samples?|it)/s",
    "tqdm": "[0-9]+%[|][^|\r]*[|] [0-9]+/[0-9]+ [[][0-9:]+<[0-9:?]+",
    "traceback": r"Traceback [(]most recent call last[)]:",
    "oom": r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory",
    "cpu_oom": r"DefaultCPUAllocator: can't allocate memory|(^|[^[:alnum:]_])MemoryError"
               r"|_ArrayMemoryError|Unable to allocate [^[:space:]]+ ([KMGT]i?B|bytes)"
               r"|oom_kill event|oom-kill"
               r"|DataLoader worker [(]pid[^)]*[)] is killed by signal: Killed",
    "nccl": r"NCCL error|ncclInternalError|ncclSystemError|ncclUnhandledCudaError"
            r"|ncclRemoteError|Watchdog caught collective operation timeout",
    "nan_loss": r"(loss|grad_norm)(_step|_epoch)?['\"]?[[:space:]]*[:=][[:space:]]*['\"]?"
                + _NAN_INF,
}
GREP_ENV = {**os.environ, "LC_ALL": "C"}

TRACEBACKS = [
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
    "capacity of 79.14 GiB of which 1.06 GiB is free.",
    "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
    "ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO for details)",
    "ValueError: could not convert string to float: 'n/a'",
]


def make_block(rng: random.Random) -> bytes:
    """About 1 MiB of log, ending with a newline."""
    out: list[str] = []
    size = 0
    done, seconds = 0, 0
    while size < BLOCK:
        seconds += 1
        stamp = f"2025-01-15 {10 + seconds // 3600 % 10:02d}:{seconds // 60 % 60:02d}:" \
                f"{seconds % 60:02d},{rng.randrange(1000):03d}"
        r = rng.random()
        if r < 0.70:
            done += rng.randrange(50, 500)
            text = (f"{stamp} - INFO - Processed {done}/10000000 items - loss: "
                    f"{rng.uniform(0.1, 2):.3f} - {rng.uniform(200, 300):.1f} items/s\n")
        elif r < 0.85:
            text = rng.choice([
                f"{stamp} - DEBUG - fetched shard {rng.randrange(4096)} from "
                f"s3://bucket/corpus/part-{rng.randrange(10**5):05d}.parquet\n",
                f"{stamp} - INFO - Batch {rng.randrange(1, 400)}/400 done\n",
                f"{stamp} - WARNING - Skipping item {rng.randrange(10**7)}: empty text\n",
            ])
        elif r < 0.86:
            total = 1000
            updates = []
            for i in range(0, total + 1, 25):
                pct = 100 * i // total
                bar = "█" * (pct // 10) + "▌" * (pct % 10 >= 5)
                updates.append(f"\rMap: {pct:3d}%|{bar:<10}| {i}/{total} "
                               f"[00:{i // 100:02d}<00:{(total - i) // 100:02d}, "
                               f"{rng.uniform(90, 110):.2f}it/s]")
            text = "".join(updates) + "\n"
        elif r < 0.999:
            loss = "nan" if rng.random() < 0.02 else f"{rng.uniform(0.1, 2):.3f}"
            text = f"{stamp} - INFO - Epoch {rng.randrange(1, 10)}/10 - loss: {loss}\n"
        else:
            text = ("Traceback (most recent call last):\n"
                    '  File "/home/alice/embed/run.py", line 88, in <module>\n'
                    "    main()\n"
                    '  File "/home/alice/embed/run.py", line 71, in main\n'
                    "    out = model(batch)\n"
                    f"{rng.choice(TRACEBACKS)}\n")
        out.append(text)
        size += len(text.encode())
    return "".join(out).encode()


def make_log(path: Path, size: int | None = None) -> None:
    size = SIZE if size is None else size
    block = make_block(random.Random(42))
    with path.open("wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)


def preset_patterns() -> dict[str, tuple[str, str]]:
    """Every pattern of PRESETS by name: (pattern, "extractors" or "errors")."""
    out: dict[str, tuple[str, str]] = {}
    for name in PRESETS:
        preset = LOG_PRESETS[name]
        out.update({k: (p, "extractors") for k, p in preset.extract.items()})
        out.update({k: (e.pattern, "errors") for k, e in preset.errors.items()})
    return out


def grep(args: list[str], path: Path) -> tuple[float, int]:
    """Seconds and output of `grep -c <args> path` (run once before, to warm the cache)."""
    cmd = ["grep", "-c", *args, str(path)]
    subprocess.run(cmd, capture_output=True, env=GREP_ENV, check=False)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=GREP_ENV, check=False)
    seconds = time.perf_counter() - start
    if done.returncode > 1:  # 1: no line matched
        sys.exit(f"grep failed: {done.stderr.strip()}")
    return seconds, int(done.stdout)


def equivalent_grep_args() -> list[str]:
    return [arg for pattern in GREP.values() for arg in ("-e", pattern)]


def check_translations(tmp: Path, log: Path) -> None:
    """Each ERE in GREP counts the lines its preset pattern counts, on a sample of the log
    whose `\\r` are line breaks (so grep's lines are the probe's)."""
    patterns = preset_patterns()
    if set(patterns) != set(GREP):
        sys.exit(f"GREP must translate exactly the preset patterns: {sorted(patterns)}")
    sample = tmp / "sample.log"
    with log.open("rb") as f:
        data = f.read(SAMPLE)
    sample.write_bytes(data[: data.rfind(b"\n") + 1].replace(b"\r", b"\n"))
    _, _, facts = probe_seconds(sample, PRESETS)
    wrong = []
    for name, (_, kind) in patterns.items():
        _, count = grep(["-E", "-e", GREP[name]], sample)
        if count != facts[f"log.{kind}.{name}.count"]:
            wrong.append(f"{name}: grep {count}, rulesmon {facts[f'log.{kind}.{name}.count']}")
    sample.unlink()
    if wrong:
        sys.exit("the grep translation is not equivalent: " + "; ".join(wrong))
    print(f"grep translations checked: {len(GREP)} patterns count the same lines as rulesmon "
          f"on a {SAMPLE >> 20} MB sample")


def probe_seconds(path: Path, presets: list[str], *, extract: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None,
                  deadline: float | None = None) -> tuple[float, int, dict[str, object]]:
    """Seconds for a fresh LogsProbe to read the file (or what it read until `deadline`
    seconds), the bytes read and the last facts. `extract`/`errors`: the log's own patterns."""
    text = (f"version: 1\nname: scan\njobs:\n  embed:\n    logs:\n      - path: {path}\n"
            f"        preset: [{', '.join(presets)}]\n"
            f"        extract: {json.dumps(extract or {})}\n"
            f"        errors: {json.dumps(errors or {})}\n")
    ruleset = load_text(text, "scan.yaml", env={}, base=path.parent).ruleset
    probe = LogsProbe(ruleset, path.parent)
    size = path.stat().st_size
    deadline = DEADLINE if deadline is None else deadline
    facts: dict[str, object] = {}
    start = time.perf_counter()
    offset = 0
    while offset < size and time.perf_counter() - start < deadline:
        ctx = TickContext(now=time.time(), ruleset=ruleset, base_dir=path.parent,
                          instances={KEY: {"job.key": "embed"}})
        facts = probe.collect(ctx)[KEY]
        offset = probe._instances[KEY].logs[0].tailers[str(path)].offset
    seconds = time.perf_counter() - start
    probe.close()
    return seconds, offset, facts


def ruleset_patterns(tmp: Path) -> None:
    """The presets' patterns as the log's own extract:/errors:, on `re` forms (before) and on
    RE2 (after), in the same run, against the greps on the same file."""
    from rulesmon.probes import logs

    path = tmp / "ruleset.log"
    make_log(path, RULESET_SIZE)
    mb = path.stat().st_size / 1e6
    patterns = preset_patterns()
    extract = {k: p for k, (p, kind) in patterns.items() if kind == "extractors"}
    errors = {k: p for k, (p, kind) in patterns.items() if kind == "errors"}
    e_sec = sum(grep(["-E", "-e", pattern], path)[0] for pattern in GREP.values())
    print(f"the same {len(patterns)} patterns as a ruleset's own extract:/errors: on a {mb:.0f} MB "
          f"log (the greps, once per pattern: {mb / e_sec:.0f} MB/s):")
    original = logs._ruleset_matcher

    def on_re(name: str, pattern: str, severity: str = "error") -> Matcher:
        return Matcher(name, *compile_forms(pattern), severity=severity)

    results: dict[str, dict[str, object]] = {}
    rates: dict[str, list[float]] = {}
    ways = (("before, on re forms", on_re), ("after, on RE2", original))
    for round_ in range(ROUNDS):  # alternated, so a busy spell of a shared machine hits both
        for label, matcher in ways if round_ % 2 == 0 else ways[::-1]:
            logs._ruleset_matcher = matcher  # type: ignore[assignment]
            try:
                seconds, read, facts = probe_seconds(path, [], extract=extract, errors=errors)
            finally:
                logs._ruleset_matcher = original  # type: ignore[assignment]
            results[label] = facts
            rmb = read / 1e6
            rates.setdefault(label, []).append(rmb / seconds)
            print(f"  {label:20s} {rmb / seconds:6.1f} MB/s ({rmb:.0f} MB in {seconds:.1f} s; "
                  f"{(seconds / read) / (e_sec / path.stat().st_size):.2f}x the greps' time)")
    (b_label, b_rates), (a_label, a_rates) = rates.items()
    b_med, a_med = statistics.median(b_rates), statistics.median(a_rates)
    print(f"  medians of {ROUNDS} rounds: {b_label} {b_med:.1f} MB/s, {a_label} {a_med:.1f} MB/s: "
          f"RE2 at {a_med / b_med:.2f}x the throughput of re")
    before, after = results[b_label], results[a_label]
    counts = sorted(k for k in before if k.endswith(".count"))
    differ = {k: (before[k], after.get(k)) for k in counts if before[k] != after.get(k)}
    print("  both ways count the same lines for every pattern" if not differ else
          f"  the two ways count differently: {differ}")
    path.unlink()


def breakdown(path: Path) -> None:
    """Where the probe's time goes, chunk by chunk, on `path` (see the module docstring)."""
    chunks: list[bytes] = []
    start = time.perf_counter()
    tailer = Tailer(path)
    while True:
        got = list(tailer.chunks())
        if not got:
            break
        chunks.extend(got)
    tailer.close()
    read = time.perf_counter() - start
    mb = path.stat().st_size / 1e6
    matchers = [Matcher(name, *compile_forms(pattern))
                for name, (pattern, _) in preset_patterns().items()]
    times = dict.fromkeys([m.name for m in matchers], 0.0)
    hows: dict[str, set[str]] = {m.name: set() for m in matchers}
    # progress-bar extractors: the probe keeps the draws of the main bar, not the last values
    bars = {b: BarFollower() for name in PRESETS for b in LOG_PRESETS[name].bars}
    via: dict[str, str] = {}  # the anchor literals a pattern was counted through
    reverse = other = 0.0
    for data in chunks:
        t0 = time.perf_counter()
        chunk = Chunk(data, matchers)
        if any(m.exact and m.exact.backward for m in matchers):
            chunk.reversed()
        t1 = time.perf_counter()
        reverse += t1 - t0
        for m in matchers:
            t0 = time.perf_counter()
            found = chunk.find(m)
            if found.count:
                if m.name in bars:
                    main_bar(chunk, m, found, bars[m.name])
                else:
                    chunk.last_values(m, found)
                chunk.last_lines(m, found, 5)
            times[m.name] += time.perf_counter() - t0
            hows[m.name].add(found.how)
            forms = chunk.forms(m)
            if found.how == "starts" and forms is not None and forms.anchors:
                literals = forms.anchors[chunk._sparsest(forms)[0]]
                via[m.name] = " | ".join(repr(lit.decode()) for lit in literals)
        t0 = time.perf_counter()
        chunk.tail(20)
        other += time.perf_counter() - t0
    total = read + reverse + other + sum(times.values())
    print(f"where the time goes, on a {mb:.0f} MB log of the same mix ({len(chunks)} chunks; "
          f"{mb / total:.0f} MB/s in all):")

    def row(label: str, seconds: float, note: str = "") -> None:
        print(f"  {label:34s} {1e3 * seconds / mb:6.2f} ms/MB {100 * seconds / total:5.1f}%  "
              f"{note}")

    row("read, NUL/ANSI checks, \\r handling", read)
    row("reverse chunks", reverse, "(for patterns counted on reversed text)")
    for m in sorted(matchers, key=lambda m: -times[m.name]):
        how = ", ".join(sorted(hows[m.name])).replace("starts", "anchors")
        if m.name in via:
            how += f" {via[m.name]}"
        row(f"pattern {m.name}", times[m.name], f"counted: {how}")
    row("tail lines", other)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rulesmon-scan-") as tmp:
        path = Path(tmp) / "big.log"
        start = time.perf_counter()
        make_log(path)
        size = path.stat().st_size
        mb = size / 1e6
        print(f"log: {mb:.0f} MB written in {time.perf_counter() - start:.1f} s")
        check_translations(Path(tmp), path)
        each = {name: grep(["-E", "-e", pattern], path) for name, pattern in GREP.items()}
        e_sec = sum(seconds for seconds, _ in each.values())
        print(f"grep -c -E once per preset pattern ({len(GREP)} runs, LC_ALL=C): {e_sec:.2f} s "
              f"in all, {mb / e_sec:.0f} MB/s")
        for name, (seconds, count) in sorted(each.items(), key=lambda kv: -kv[1][0]):
            print(f"  {name:12s} {seconds:6.2f} s  {count:>9} lines")
        g_sec, g_count = grep(["-E", *equivalent_grep_args()], path)
        print(f"  for reference, grep -c -E with all {len(GREP)} patterns at once: {g_sec:.2f} s, "
              f"{mb / g_sec:.0f} MB/s ({g_count} lines match one or more; one count)")
        l_sec, l_count = grep(["Processed "], path)
        print(f"  for reference, grep -c 'Processed ': {l_sec:.2f} s, {mb / l_sec:.0f} MB/s "
              f"({l_count} lines)")
        p_sec, read, facts = probe_seconds(path, PRESETS)
        rmb = read / 1e6
        print(f"LogsProbe [{', '.join(PRESETS)}]: {rmb:.0f} MB in {p_sec:.2f} s, "
              f"{rmb / p_sec:.1f} MB/s (items extractor: "
              f"{facts['log.extractors.items.count']} lines, errors: {facts['log.error_count']})")
        if read < size:
            print(f"  not caught up after {DEADLINE:.0f} s: stopped at {rmb:.0f} of {mb:.0f} MB; "
                  f"the whole file would take about {p_sec * size / read:.0f} s")
        per_byte = p_sec / read
        ratio = per_byte / (e_sec / size)
        verdict = "meets" if ratio <= TARGET else "misses"
        print(f"ratio: {ratio:.2f}x the time of the equivalent greps, once per pattern "
              f"({verdict} the target of <= {TARGET:.0f}x); {per_byte / (g_sec / size):.1f}x "
              f"grep's all-at-once count, {per_byte / (l_sec / size):.1f}x the one-literal grep's")
        path.unlink()
        ruleset_patterns(Path(tmp))
        small = Path(tmp) / "small.log"
        make_log(small, PREFIX)
        breakdown(small)
        small.unlink()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
