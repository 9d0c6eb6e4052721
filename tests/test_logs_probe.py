"""The logs probe and its tailer, on real files: partial lines, tqdm `\\r` updates, ANSI codes,
bad bytes, rotation, truncation, unreadable paths, typed extractor values, error patterns, globs
and a large sparse file."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.probes.base import TickContext
from rulesmon.probes.logs import LogsProbe, anchors, required_literal, typed
from rulesmon.probes.tail import KEEP, MAX_READ, Positions, Tailer

KEY = "embed/0"


def make_probe(tmp_path: Path, logs: str, *, jobs_extra: str = "") -> tuple[LogsProbe, Any]:
    """A probe for a ruleset whose job `embed` has the given `logs:` YAML block."""
    text = "version: 1\nname: t\njobs:\n  embed:\n    logs:\n" + textwrap.indent(
        textwrap.dedent(logs).strip("\n"), "      ") + "\n" + jobs_extra
    ruleset = load_text(text, "t.yaml", env={}, base=tmp_path).ruleset
    return LogsProbe(ruleset, tmp_path), ruleset


def collect(probe: LogsProbe, ruleset: Any, tmp_path: Path,
            instances: dict[str, dict[str, Any]] | None = None,
            now: float | None = None) -> dict[str, dict[str, Any]]:
    ctx = TickContext(now=time.time() if now is None else now, ruleset=ruleset,
                      base_dir=tmp_path,
                      instances=instances or {KEY: {"job.key": "embed", "job.id": "123"}})
    return probe.collect(ctx)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


# --- the tailer ----------------------------------------------------------------------------------


def test_partial_line_held_back_then_completed(tmp_path: Path) -> None:
    """A line without its terminator is held back until completed, and a CRLF split across
    two reads gives one line, not an empty one."""
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntw")
    t = Tailer(path)
    assert t.read() == ["one"]
    append(path, b"o\r")
    assert t.read() == []  # "two\r" may be half of a CRLF
    append(path, b"\nthree\r\n")
    assert t.read() == ["two", "three"]
    assert t.read() == []
    assert t.error is None and t.size == path.stat().st_size and t.mtime is not None


def test_long_line_is_cut(tmp_path: Path) -> None:
    """A line over 1 MiB keeps only its last 64 KiB, even while it is still being written."""
    path = tmp_path / "a.log"
    path.write_bytes(b"x" * (3 << 20))
    t = Tailer(path)
    assert t.read() == []
    append(path, b"END\nnext\n")
    lines = t.read()
    assert len(lines[0]) <= KEEP and lines[0].endswith("xEND")
    assert lines[1] == "next"


def test_ansi_codes_stripped(tmp_path: Path) -> None:
    """Colour codes and erase-line sequences are removed before matching."""
    path = tmp_path / "a.log"
    path.write_bytes(b"\x1b[32mINFO\x1b[0m Processed \x1b[1m5\x1b[22m/10 items\x1b[K\n")
    probe, rs = make_probe(tmp_path, "- {path: a.log, preset: python-logging}")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.done"] == 5 and facts["log.total"] == 10
    assert facts["log.tail"] == "INFO Processed 5/10 items"


def test_invalid_utf8_and_nul_bytes(tmp_path: Path) -> None:
    """Invalid UTF-8 becomes U+FFFD and NUL bytes vanish; nothing raises."""
    path = tmp_path / "a.log"
    path.write_bytes(b"\xff\xfe bad \x00\x00Processed 3/4\n\x00\x00\x00\nok \xe2\x82\n")
    probe, rs = make_probe(tmp_path, "- {path: a.log, preset: python-logging}")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.done"] == 3
    assert facts["log.lines"][0] == "\ufffd\ufffd bad Processed 3/4"
    assert "\x00" not in facts["log.tail"]
    assert facts["log.lines"][-1].startswith("ok ")


# --- tqdm and extractors -------------------------------------------------------------------------


def test_tqdm_carriage_return_updates(tmp_path: Path) -> None:
    """tqdm's `\\r` updates without newlines become lines; the tqdm preset gives done, total
    and rate, and the bar still being drawn is held back until the next update."""
    bars = []
    for i in range(1, 11):
        done = i * 10
        fill = "█" * i + " " * (10 - i)
        bars.append(f"\r{done:3d}%|{fill}| {done}/100 [00:{i:02d}<00:{10 - i:02d}, 9.9it/s]")
    path = tmp_path / "bar.log"
    path.write_bytes("".join(bars).encode())
    probe, rs = make_probe(tmp_path, "- {path: bar.log, preset: tqdm}")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.done"] == 90  # the 100/100 update is not finished yet
    assert facts["log.total"] == 100
    assert facts["log.rate"] == 9.9
    assert facts["log.pct"] == 90
    assert facts["log.extractors.tqdm.count"] == 9
    assert "" not in facts["log.lines"]
    append(path, b"\nTraining done\n")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.done"] == 100 and facts["log.extractors.tqdm.count"] == 10
    assert facts["log.lines"][-1] == "Training done"


def test_extractor_values_are_typed(tmp_path: Path) -> None:
    """Lightning's `loss=nan.0` is a float NaN, transformers' quoted values are numbers, and a
    log's own extractor replaces a preset one of the same name."""
    (tmp_path / "pl.log").write_text(
        "Epoch 3:  45%|████▌     | 45/100 [00:10<00:12, 4.50it/s, v_num=0, loss=nan.0]\n")
    (tmp_path / "hf.log").write_text(
        "{'loss': '5.036', 'grad_norm': '1.25', 'learning_rate': '5e-05', 'epoch': '2'}\n"
        "{'eval_loss': 'inf.0', 'epoch': '2.5'}\n"
        "step=17 tag=warmup\n")
    probe, rs = make_probe(tmp_path, "- {path: pl.log, preset: lightning}", jobs_extra="""
  hf:
    logs:
      - path: hf.log
        preset: hf-trainer
        extract:
          hf_epoch: 'step=(?P<step>\\d+) tag=(?P<tag>\\w+)'
""")
    out = collect(probe, rs, tmp_path, {
        "embed/0": {"job.key": "embed"}, "hf/0": {"job.key": "hf"}})
    pl, hf = out["embed/0"], out["hf/0"]
    assert pl["log.epoch"] == 3 and pl["log.done"] == 45 and pl["log.total"] == 100
    assert isinstance(pl["log.loss"], float) and math.isnan(pl["log.loss"])
    assert hf["log.loss"] == 5.036 and hf["log.grad_norm"] == 1.25
    assert hf["log.eval_loss"] == math.inf
    assert hf["log.step"] == 17 and isinstance(hf["log.step"], int)
    assert hf["log.tag"] == "warmup"
    assert "log.epoch" not in hf  # hf_epoch was replaced by the log's own extractor
    assert hf["log.extractors.hf_epoch.count"] == 1
    assert hf["log.extractors.hf_loss.count"] == 1
    assert typed("'5.036'") == 5.036 and typed("2") == 2 and typed("12abc") == "12abc"
    assert math.isnan(float(typed("nan.0"))) and typed("-inf.0") == -math.inf


def test_error_patterns_count_and_last_line(tmp_path: Path) -> None:
    """Error patterns count matches across ticks, keep the last line and the last five lines,
    their severity and first/last seen times; log.error_count adds them all."""
    path = tmp_path / "a.log"
    path.write_text("start\nTraceback (most recent call last):\n  File x\nValueError: bad\n"
                    "WARN connection refused by 10.0.0.1\n")
    probe, rs = make_probe(tmp_path, """
        - path: a.log
          preset: [traceback, cuda-oom]
          errors:
            connection: 'connection refused|timed out'
            retry: {pattern: 'retrying in \\d+s', severity: warning}
          tail: 3
        """)
    facts = collect(probe, rs, tmp_path, now=1000.0)[KEY]
    assert facts["log.errors.traceback.count"] == 1
    assert facts["log.errors.traceback.severity"] == "error"
    assert facts["log.errors.connection.count"] == 1
    assert facts["log.errors.oom.count"] == 0 and facts["log.errors.oom.severity"] == "critical"
    assert "log.errors.oom.last_line" not in facts
    assert facts["log.errors.retry.severity"] == "warning"
    assert facts["log.error_count"] == 2
    assert facts["log.lines"] == ["  File x", "ValueError: bad",
                                  "WARN connection refused by 10.0.0.1"]
    append(path, b"".join(f"request {i} timed out\n".encode() for i in range(7))
           + b"RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    facts = collect(probe, rs, tmp_path, now=1010.0)[KEY]
    assert facts["log.errors.connection.count"] == 8
    assert facts["log.errors.connection.last_line"] == "request 6 timed out"
    assert facts["log.errors.connection.lines"] == [f"request {i} timed out" for i in range(2, 7)]
    assert facts["log.errors.connection.first_seen"] == 1000.0
    assert facts["log.errors.connection.last_seen"] == 1010.0
    assert facts["log.errors.oom.count"] == 1
    assert facts["log.error_count"] == 10
    assert facts["log.tail"].endswith("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_required_literal_prefilter() -> None:
    """The prefilter literal is a run every match must contain, and none when unsure."""
    assert required_literal(r"Processed (?P<done>\d+)/(?P<total>\d+)") == "Processed "
    assert required_literal(r"Traceback \(most recent call last\):") \
        == "Traceback (most recent call last):"
    assert required_literal(r"(?:train_)?loss(?:_step|_epoch)?=(?P<l>\d+)") == "loss"
    assert required_literal("connection refused|timed out") is None
    assert required_literal("(?i)error") is None
    assert required_literal(r"\d+") is None
    assert anchors("CUDA out of memory|OutOfMemoryError") == (
        ("CUDA out of memory", 0), ("OutOfMemoryError", 0))
    assert anchors(r"(?:train_)?loss=(?P<l>\d+)") == (("loss=", 6),)


# --- rotation, truncation, unreadable paths -------------------------------------------------------


WRITER = r"""
import os, sys, time
path, n, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
f = open(path, "w")
rotation = 0
for i in range(n):
    if i and i % every == 0:
        rotation += 1
        os.rename(path, f"{path}.{rotation}")
        f.write(f"line {i}\n")          # a late line into the renamed file
        f.flush()
        f.close()
        f = open(path, "w")
        continue
    f.write(f"line {i}\n")
    f.flush()
    if i % 20 == 0:
        time.sleep(0.01)
f.close()
"""


def test_rename_rotation_with_a_live_writer(tmp_path: Path) -> None:
    """A writer that renames its log and starts a new one while the probe reads: every line is
    seen exactly once, in order."""
    n, every = 1500, 400
    path = tmp_path / "run.log"
    probe, rs = make_probe(tmp_path, """
        - path: run.log
          extract: {line: 'line (?P<n>\\d+)'}
          tail: 10000
        """)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(every)])
    ticks = 0
    try:
        while writer.poll() is None:
            collect(probe, rs, tmp_path)
            ticks += 1
            time.sleep(0.005)
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == 0
    facts: dict[str, Any] = {}
    for _ in range(4):  # the rotated file is closed after two quiet polls
        facts = collect(probe, rs, tmp_path)[KEY]
    assert ticks > 5
    assert facts["log.lines"] == [f"line {i}" for i in range(n)]
    assert facts["log.extractors.line.count"] == n
    assert facts["log.n"] == n - 1
    assert sorted(p.name for p in tmp_path.glob("run.log*")) == [
        "run.log", "run.log.1", "run.log.2", "run.log.3"]


def test_glob_sees_a_rotated_file_once(tmp_path: Path) -> None:
    """With a glob that also matches rotated names (`app.log*`), a file renamed to app.log.1 is
    not read again from the start, and a new app.log with the same first line is read."""
    path = tmp_path / "app.log"
    path.write_text("job started\nline 0\nline 1\n")
    probe, rs = make_probe(tmp_path, "- {path: 'app.log*', extract: {x: 'line (?P<n>\\d+)'}}")
    assert collect(probe, rs, tmp_path)[KEY]["log.extractors.x.count"] == 2
    path.rename(tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", b"line 2\n")  # written before the writer reopened
    path.write_text("job started\nline 3\n")
    counts = [collect(probe, rs, tmp_path)[KEY]["log.extractors.x.count"] for _ in range(5)]
    assert counts[-1] == 4, counts
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.n"] == 3
    assert facts["log.extractors.x.count"] == 4


# --- whole-chunk scanning ----------------------------------------------------------------------

TRICKY = [r"^abc", r"abc$", r"(?<=x)abc", r"\Aab", r"x\s*y", r"ab(?:cde|fgh)", r"\bfoo\b",
          r"[^;]*;x", r"a\Z", r"(?=\s)", r"(?P<a>x)?(?P<b>y)?foo", r"(?i)k", r"(?i)foo",
          r"(?s)x.y", r"x.y", r"\D+;", r"[^a]{2}x", r"\W\w", r"[\s,]+x", r"x++y", r"(?>x+)y",
          r"(?P<q>a)?(?(q)b|c)", r"(?P<r>x|y)(?P=r)", r"x*", r"$", r"(?i)(?P<s>x)(?P=s)", r"█+",
          r"é", r"[é]", r"(?a)\w+;", r"(?a)[^|]+\|", r"(?a)(?P<n>\d+)%\|[^|]*\|", r"(?a)[^;]*\Z",
          r"(?a)x[^;]*?y", r"(?a)[^;]+", r"(?a)[^;]+?", r"\S+\s", r"(?<!x)y", r"y(?!\s)",
          r"(?P<v>\d+) it/s", r"(?a)\b(?P<v>\d{1,3}) it/s", r"[\n]x", r"(?m)^x$", r"ſ", r"(?i)s",
          r"(?i)[a-z]+", r"(?a)(?i:k)", r"x(?=[^;]*;)", r"(?a)(?<=[^x])y", r"[^\W\d]+",
          r"(?a)█[^|]*\|", r"(?a)(?:[^|]*\|)+x", r"\x1c", r"(?a)\s\x1c"]
PIECES = ["abc", "x", "y", " ", "foo", ";", "loss", "=", "1", "23", "cde", "fgh", "Epoch ", ": ",
          "%|", "/s", "it/s", "'loss': ", "{", "nan", ".", "\t", "train_", "_step", "|", "é", "█",
          "ſ", "K", "٣", "\xa0", "\u2028", "\x1c", "k", "s", "S", "\x85", " it/s", "Processed ",
          "/", "items/s", "w_"]
BAD = [b"\xff", b"\xe2", b"\xe2\x96", b"\xc2", b"\xed\xa0\x80"]  # not UTF-8


def random_chunk(rng: Any) -> bytes:
    """Lines of random pieces (ASCII only half the time, else with non-ASCII characters and
    bytes that are not UTF-8), each ended by a newline, as `Tailer.chunks()` gives them."""
    ascii_only = rng.random() < 0.5
    pieces = [p for p in PIECES if p.isascii()] if ascii_only else PIECES
    lines = []
    for _ in range(rng.randint(1, 30)):
        parts = [rng.choice(BAD) if not ascii_only and rng.random() < 0.06
                 else rng.choice(pieces).encode() for _ in range(rng.randint(0, 9))]
        lines.append(b"".join(parts))
    return b"".join(line + b"\n" for line in lines)


def test_chunk_forms_equal_per_line_search() -> None:
    """Every way a chunk is searched (decoded text, undecoded bytes of any content, ASCII-only
    bytes; forward, reversed, through anchors, whole-chunk, backwards in windows) finds the
    lines, last group values and last lines a per-line `search` of the decoded lines finds,
    for the presets and for patterns with every construct the rewrites touch; its tail is the
    last lines that are not blank."""
    import random

    from rulesmon.probes import logs
    from rulesmon.probes.log_presets import PRESETS
    from rulesmon.probes.tail import lines_of

    patterns = [p for preset in PRESETS.values() for p in
                [*preset.extract.values(), *(e.pattern for e in preset.errors.values())]]
    matchers = [logs.Matcher("p", *logs.compile_forms(p)) for p in [*patterns, *TRICKY]]
    rng = random.Random(7)
    saved = logs.NEAR_END, logs.MIN_ANCHORS, logs.DENSE
    ways: set[tuple[str, str]] = set()
    try:
        for near, least, dense in ((8 << 10, 64, 256), (8, 1, 10**9), (1, 0, 1)):
            logs.NEAR_END, logs.MIN_ANCHORS, logs.DENSE = near, least, dense
            for _ in range(25):
                data = random_chunk(rng)
                lines = lines_of(data)
                for m in matchers:
                    hits = [i for i, line in enumerate(lines) if m.rx.search(line)]
                    values: dict[str, tuple[int, str]] = {}
                    for i in hits:
                        found = m.rx.search(lines[i])
                        assert found is not None
                        values.update({g: (i, v) for g, v in found.groupdict().items()
                                       if v is not None})
                    for mode, forms in (("text", m.text), ("exact", m.exact),
                                        ("ascii", m.ascii if data.isascii() else None)):
                        if forms is None and mode != "text":
                            continue
                        chunk = logs.Chunk(data, [m], mode=mode)
                        index = {start: i for i, start in enumerate(chunk._lines()[1])}
                        got = chunk.find(m)
                        ways.add((mode, got.how))
                        assert got.count == len(hits), (m.rx.pattern, mode, data)
                        assert {g: (index[s], v) for g, (s, v) in
                                chunk.last_values(m, got).items()} == values, (m.rx.pattern, mode)
                        last = chunk.last_lines(m, got, 5)
                        assert [(index[s], text) for s, text in last] == \
                            [(i, lines[i]) for i in hits[-5:]], (m.rx.pattern, mode, data)
                        inked = [line for line in lines if line.strip(" \t\x0b\x0c")]
                        assert [text for _, text in chunk.tail(3)] == inked[-3:]
    finally:
        logs.NEAR_END, logs.MIN_ANCHORS, logs.DENSE = saved
    assert {how for _, how in ways} == {"forward", "backward", "starts", "full"}
    assert {mode for mode, _ in ways} == {"text", "exact", "ascii"}


def test_presets_are_searched_as_bytes_with_a_fast_form() -> None:
    """Every preset pattern has a form for undecoded bytes of any content, and is counted with
    a literal-led search (forward or reversed) or through its anchor literals."""
    from rulesmon.probes.log_presets import PRESETS
    from rulesmon.probes.logs import compile_forms

    for preset in PRESETS.values():
        for pattern in [*preset.extract.values(), *(e.pattern for e in preset.errors.values())]:
            _, text, exact, ascii_ = compile_forms(pattern)
            assert text is not None and exact is not None and ascii_ is not None, pattern
            assert exact.forward or exact.backward or exact.anchors, pattern


def test_anchor_literals_are_fewer_and_still_required() -> None:
    """Anchor sets drop a literal that holds another and share a common prefix, so a chunk is
    scanned fewer times; every match still holds one of them."""
    from rulesmon.probes.logs import _anchor_sets, _parse

    pattern = (r"NCCL error|ncclInternalError|ncclSystemError|ncclRemoteError"
               r"|\bMemoryError|_ArrayMemoryError")
    (literals,) = _anchor_sets(_parse(pattern))
    assert sorted(literals) == ["MemoryError", "NCCL error", "nccl"]
    assert _anchor_sets(_parse(r"(?i)error")) == []


def test_match_across_a_chunk_boundary(tmp_path: Path) -> None:
    """A matching line that straddles two reads of the file is counted once, with its value,
    and lines on both sides are matched too."""
    path = tmp_path / "a.log"
    filler = b"".join(b"step %06d of the warm-up\n" % i for i in range(40_000))
    head = filler[: filler.rfind(b"\n", 0, (1 << 20) - 100) + 1]
    head += b"Batch 1/9 " + b"y" * ((1 << 20) - 8 - len(head) - 11) + b"\n"
    assert len(head) == (1 << 20) - 8  # the next line is cut by the first 1 MiB read
    path.write_bytes(head + b"Processed 7/9 items\nBatch 2/9\n")
    probe, rs = make_probe(tmp_path, "- {path: a.log, preset: python-logging}")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.extractors.items.count"] == 1
    assert facts["log.done"] == 7 and facts["log.total"] == 9
    assert facts["log.extractors.batch.count"] == 2 and facts["log.batch"] == 2


def test_last_value_among_several_matches_in_a_chunk(tmp_path: Path) -> None:
    """With several matching lines in one read, each group's value comes from the last line
    that gave it one: `Epoch 3` (no total) keeps the total of `Epoch 2/10`."""
    path = tmp_path / "a.log"
    path.write_bytes(b"Epoch 1/10\nloss: 0.9\nEpoch 2/10\nloss: 0.7\nEpoch 3\nother\n")
    probe, rs = make_probe(tmp_path, "- {path: a.log, preset: python-logging}")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.epoch"] == 3 and facts["log.epochs"] == 10
    assert facts["log.loss"] == 0.7
    assert facts["log.extractors.epoch.count"] == 3


def test_carriage_return_runs_and_crlf(tmp_path: Path) -> None:
    """Runs of `\\r`, `\\r\\r\\n` and CRLF mixed with tqdm's `\\r` redraws give the lines of a
    terminal, whether they arrive in one read or byte by byte."""
    data = (b"\r10%|#| 1/10 [00:01<00:09, 1.00it/s]\r\r20%|#| 2/10 [00:02<00:08, 1.00it/s]"
            b"\r\r\ndone\r\n\r\nnext\n\r\rlast\n")
    expected = ["10%|#| 1/10 [00:01<00:09, 1.00it/s]", "20%|#| 2/10 [00:02<00:08, 1.00it/s]",
                "done", "", "next", "last"]
    whole = tmp_path / "whole.log"
    whole.write_bytes(data)
    assert Tailer(whole).read() == expected
    pieces = tmp_path / "pieces.log"
    pieces.write_bytes(b"")
    t = Tailer(pieces)
    got: list[str] = []
    for i in range(len(data)):
        append(pieces, data[i:i + 1])
        got += t.read()
    assert got == expected
    probe, rs = make_probe(tmp_path, "- {path: whole.log, preset: tqdm}")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.extractors.tqdm.count"] == 2 and facts["log.done"] == 2


def test_reads_in_pieces_equal_one_read(tmp_path: Path) -> None:
    """However the bytes of a log are cut between reads (through a CRLF, a run of `\\r`, an
    escape sequence between `\\r` and `\\n`, a UTF-8 character), the lines are those of
    reading it whole, and so is the last redraw given out once the file is quiet."""
    import random

    rng = random.Random(5)
    pieces = [b"a", b"bc", b"\r", b"\n", b"\r\n", b"\x00", b"\x1b[31m", b"\xe2\x96\x88",
              b"\xff", b" "]
    path = tmp_path / "a.log"
    for _ in range(1500):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        path.write_bytes(data)
        reader = Tailer(path)
        whole = reader.read() + reader.read()  # the second read finds the file quiet
        path.write_bytes(b"")
        t = Tailer(path)
        got: list[str] = []
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(1, 8))))
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            append(path, data[start:end])
            got += t.read()
        got += t.read()
        assert got == whole, (data, cuts)


def test_invalid_utf8_inside_matched_lines(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 inside a matching line (searched undecoded) come out as U+FFFD
    in the error line, the captured value and the tail, as if the line had been decoded."""
    from rulesmon.probes import logs

    path = tmp_path / "a.log"
    data = (b"Traceback (most recent call last): \xff\xfe\n"
            b"tag=a\xe2\x96b done\nRuntimeError: CUDA out of memory \xc2\n")
    path.write_bytes(data)
    probe, rs = make_probe(tmp_path, """
        - path: a.log
          preset: [traceback, cuda-oom]
          extract: {tag: '(?a)tag=(?P<tag>[^ ]+) '}
        """)
    patterns = probe_patterns(probe, rs, tmp_path)
    assert logs.Chunk(data, patterns).mode == "exact"  # searched undecoded
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.errors.traceback.last_line"] == \
        "Traceback (most recent call last): \ufffd\ufffd"
    assert facts["log.tag"] == "a\ufffdb"
    assert facts["log.errors.oom.last_line"] == "RuntimeError: CUDA out of memory \ufffd"
    assert facts["log.lines"] == data.decode("utf-8", "replace").splitlines()


def probe_patterns(probe: LogsProbe, ruleset: Any, tmp_path: Path) -> list[Any]:
    """The compiled patterns of the probe's only log (after one collect)."""
    collect(probe, ruleset, tmp_path)
    state = probe._instances[KEY].logs[0]
    probe.close()
    return [*state.patterns.extract, *state.patterns.errors]


def test_copytruncate(tmp_path: Path) -> None:
    """Copy, truncate to zero, then new lines: the new lines are read from the start."""
    path = tmp_path / "a.log"
    path.write_text("".join(f"old line {i}\n" for i in range(50)))
    probe, rs = make_probe(tmp_path, "- {path: a.log, extract: {x: 'line (?P<n>\\d+)'}}")
    assert collect(probe, rs, tmp_path)[KEY]["log.extractors.x.count"] == 50
    shutil.copy(path, tmp_path / "a.log.1")
    with path.open("r+") as f:
        f.truncate(0)
    append(path, b"new line 1000\nnew line 1001\n")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.lines"][-2:] == ["new line 1000", "new line 1001"]
    assert facts["log.n"] == 1001 and facts["log.extractors.x.count"] == 52


def copytruncate(path: Path, copy: Path) -> None:
    """What logrotate's copytruncate does: copy the log, then truncate it in place."""
    shutil.copyfile(path, copy)
    with path.open("r+b") as f:
        f.truncate(0)


def test_copytruncate_keeps_lines_written_before_the_copy(tmp_path: Path) -> None:
    """Lines written after the last read but before the copy are read from the copy, from the
    old offset: none is lost, none is counted twice."""
    path = tmp_path / "a.log"
    path.write_text("".join(f"line {i}\n" for i in range(300)))
    probe, rs = make_probe(tmp_path, "- {path: a.log, extract: {x: 'line (?P<n>\\d+)'}}")
    assert collect(probe, rs, tmp_path)[KEY]["log.extractors.x.count"] == 300
    append(path, b"".join(f"line {i}\n".encode() for i in range(300, 599)))
    copytruncate(path, tmp_path / "a.log.1")
    append(path, b"line 599\n")
    facts: dict[str, Any] = {}
    for _ in range(3):
        facts = collect(probe, rs, tmp_path)[KEY]
        assert facts["log.extractors.x.count"] == 600
        assert facts["log.n"] == 599
    assert facts["log.lines"][-3:] == ["line 597", "line 598", "line 599"]


def test_copytruncate_under_a_glob_is_not_read_twice(tmp_path: Path) -> None:
    """With a glob that matches the copy too (`app.log*`), the copy is read on from the old
    offset, not again from its start: 10 lines before and 1 after are 11 lines, not 21."""
    path = tmp_path / "app.log"
    path.write_text("".join(f"line {i}\n" for i in range(8)))
    probe, rs = make_probe(tmp_path, "- {path: 'app.log*', extract: {x: 'line (?P<n>\\d+)'}}")
    assert collect(probe, rs, tmp_path)[KEY]["log.extractors.x.count"] == 8
    append(path, b"line 8\nline 9\n")
    copytruncate(path, tmp_path / "app.log.1")
    append(path, b"line 10\n")
    counts = [collect(probe, rs, tmp_path)[KEY]["log.extractors.x.count"] for _ in range(4)]
    assert counts == [11, 11, 11, 11]
    # seen by the glob before the truncation (logrotate between the copy and the truncate)
    append(path, b"line 11\n")
    shutil.copyfile(path, tmp_path / "app.log.2")
    counts = [collect(probe, rs, tmp_path)[KEY]["log.extractors.x.count"] for _ in range(2)]
    with path.open("r+b") as f:
        f.truncate(0)
    append(path, b"line 12\n")
    counts += [collect(probe, rs, tmp_path)[KEY]["log.extractors.x.count"] for _ in range(3)]
    assert counts == [12, 12, 13, 13, 13]


@pytest.mark.parametrize("kind", [Positions, dict])
def test_a_copy_seen_before_the_truncation_resumes_from_either_map(tmp_path: Path,
                                                                   kind: type) -> None:
    """A new file beside a followed one, with its first bytes (`app.log.1`, copied but not
    yet truncated), is read on from what was read of the original: through the index of a
    `Positions` map or by a pass over a plain dict."""
    path = tmp_path / "app.log"
    path.write_text("".join(f"line {i}\n" for i in range(8)))
    resume = kind()
    original = Tailer(path, resume=resume)
    assert len(original.read()) == 8
    resume.update(original.positions())
    append(path, b"line 8\n")
    shutil.copyfile(path, tmp_path / "app.log.1")
    copy = Tailer(tmp_path / "app.log.1", resume=resume)
    assert copy.read() == ["line 8"]
    other = Tailer(tmp_path / "other.log.1", resume=resume)  # another name: from the start
    shutil.copyfile(path, tmp_path / "other.log.1")
    assert len(other.read()) == 9
    for t in (original, copy, other):
        t.close()


def test_positions_index_follows_every_change() -> None:
    """The index by path of a `Positions` map follows assignment, update, a move to another
    path and deletion."""
    p = Positions({(1, 1): (10, b"a", "/x/app.log")})
    p.update({(1, 2): (5, b"b", "/x/app.log")})
    assert sorted(p.under("/x/app.log")) == [(5, b"b", "/x/app.log"), (10, b"a", "/x/app.log")]
    p[(1, 1)] = (20, b"a", "/x/app.log.1")  # now read under its new name
    assert p.under("/x/app.log") == [(5, b"b", "/x/app.log")]
    assert p.under("/x/app.log.1") == [(20, b"a", "/x/app.log.1")]
    del p[(1, 2)]
    assert p.under("/x/app.log") == [] and "/x/app.log" not in p.by_path and len(p) == 1


COPYTRUNCATE_WRITER = r"""
import fcntl, sys, time
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "a") as f:          # O_APPEND, as `>>` and logging's FileHandler open it
    for i in range(n):
        fcntl.flock(f, fcntl.LOCK_EX)   # the test copies and truncates under the same lock
        f.write(f"line {i}\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)
        if i % 10 == 0:
            time.sleep(0.002)
"""


def test_copytruncate_with_a_live_writer(tmp_path: Path) -> None:
    """A writer keeps appending while the test copies and truncates its log several times (the
    writer paused only for the copy and truncate themselves): every line is counted exactly
    once, by the log alone and under a glob that also matches the copies."""
    import fcntl

    n = 3000
    path = tmp_path / "run.log"
    path.touch()
    single, rs1 = make_probe(tmp_path, "- {path: run.log, extract: {x: 'line (?P<n>\\d+)'}}")
    globbed, rs2 = make_probe(tmp_path,
                              "- {path: 'run.log*', extract: {x: 'line (?P<n>\\d+)'}}")
    writer = subprocess.Popen([sys.executable, "-c", COPYTRUNCATE_WRITER, str(path), str(n)])
    rotations = 0
    try:
        while writer.poll() is None:
            for probe, rs in ((single, rs1), (globbed, rs2)):
                collect(probe, rs, tmp_path)
            if path.stat().st_size > 4000 and rotations < 5:
                rotations += 1
                with path.open("r+b") as f:
                    fcntl.flock(f, fcntl.LOCK_EX)
                    for k in range(rotations - 1, 0, -1):  # run.log.1 -> run.log.2 ...
                        (tmp_path / f"run.log.{k}").rename(tmp_path / f"run.log.{k + 1}")
                    shutil.copyfile(path, tmp_path / "run.log.1")
                    f.truncate(0)
                    fcntl.flock(f, fcntl.LOCK_UN)
            time.sleep(0.003)
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert rotations >= 2
    for probe, rs in ((single, rs1), (globbed, rs2)):
        facts: dict[str, Any] = {}
        for _ in range(4):
            facts = collect(probe, rs, tmp_path)[KEY]
        assert facts["log.extractors.x.count"] == n, (rs.jobs["embed"].logs[0].path, rotations)
        assert facts["log.n"] == n - 1


def test_truncate_then_regrow_between_polls(tmp_path: Path) -> None:
    """Truncated and grown past the old offset before the next poll: the changed first bytes
    reveal it and the file is read again from the start."""
    path = tmp_path / "a.log"
    path.write_text("first run line 1\nfirst run line 2\n")
    t = Tailer(path)
    assert t.read() == ["first run line 1", "first run line 2"]
    with path.open("w") as f:  # truncate, then write more than before
        f.write("".join(f"second run line {i}\n" for i in range(5)))
    assert t.read() == [f"second run line {i}" for i in range(5)]


def test_path_becomes_a_directory(tmp_path: Path, caplog: Any) -> None:
    """A log replaced by a directory gives log.available False and log.error with the reason,
    one warning (not one per tick), and the probe does not raise; when a file is back it is
    read again."""
    path = tmp_path / "a.log"
    path.write_text("Processed 1/2\n")
    probe, rs = make_probe(tmp_path, "- {path: a.log, preset: python-logging}")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.done"] == 1 and facts["log.available"] is True
    assert "log.error" not in facts
    path.unlink()
    path.mkdir()
    with caplog.at_level("INFO", logger="rulesmon.probes.logs"):
        for _ in range(3):
            facts = collect(probe, rs, tmp_path)[KEY]
            assert facts == {"log.available": False, "log.error": f"is a directory: {path}"}
        assert probe.errors[str(path)] == f"is a directory: {path}"
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and f"is a directory: {path}" in warnings[0].getMessage()
        path.rmdir()
        path.write_text("Processed 2/2\n")
        facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.done"] == 2 and probe.errors == {} and facts["log.available"] is True
    assert any("log_readable" in r.getMessage() for r in caplog.records)


def test_glob_matching_nothing_is_reported(tmp_path: Path) -> None:
    """A glob that matches no file gives log.available False and says so; a second log that
    can be read keeps log.available True with the first one's reason in log.error."""
    probe, rs = make_probe(tmp_path, """
        - 'out/*.log'
        - {path: main.log, preset: python-logging}
        """)
    (tmp_path / "main.log").write_text("Processed 3/9\n")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.available"] is True and facts["log.done"] == 3
    assert facts["log.error"] == f"no file matches {tmp_path / 'out' / '*.log'}"
    (tmp_path / "main.log").unlink()
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.available"] is False
    assert facts["log.error"] == (f"no file matches {tmp_path / 'out' / '*.log'}; "
                                  f"no such file: {tmp_path / 'main.log'}")


def test_unreadable_file(tmp_path: Path) -> None:
    """A file that cannot be read gives no facts and a one-line reason (permission denied where
    the test user can be denied; a dangling symlink otherwise, root reads everything)."""
    probe, rs = make_probe(tmp_path, "- {path: a.log, preset: python-logging}")
    path = tmp_path / "a.log"
    path.write_text("Processed 1/2\n")
    path.chmod(0)
    try:
        if not os.access(path, os.R_OK):
            assert collect(probe, rs, tmp_path)[KEY] == {
                "log.available": False, "log.error": f"permission denied: {path}"}
            assert probe.errors[str(path)] == f"permission denied: {path}"
    finally:
        path.chmod(0o644)
    path.unlink()
    path.symlink_to(tmp_path / "nowhere.log")
    assert collect(probe, rs, tmp_path)[KEY]["log.error"] == f"dangling symlink: {path}"
    assert probe.errors[str(path)] == f"dangling symlink: {path}"
    t = Tailer(tmp_path / "missing" / "x.log")
    assert t.read() == [] and t.error == f"no such file: {tmp_path / 'missing' / 'x.log'}"


def test_bad_template_is_reported_not_raised(tmp_path: Path) -> None:
    """A path template that cannot be rendered for an instance gives no facts but the
    reason."""
    probe, rs = make_probe(tmp_path, "- 'logs/{{ job.array_task }}.log'")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.available"] is False and "array_task" in facts["log.error"]
    assert "array_task" in probe.errors["logs/{{ job.array_task }}.log"]


def test_a_path_rendering_empty_follows_nothing(tmp_path: Path) -> None:
    """A path template that renders empty (`{{ job.stderr if ... else '' }}` when stderr is
    stdout) follows nothing and is no error."""
    (tmp_path / "out.log").write_text("Processed 1/4\n")
    probe, rs = make_probe(tmp_path, """
        - {path: "{{ job.stdout }}", preset: python-logging}
        - "{{ job.stderr if job.stderr != job.stdout else '' }}"
        """)
    out = collect(probe, rs, tmp_path, {KEY: {"job.key": "embed", "job.stdout": "out.log",
                                              "job.stderr": "out.log"}})
    assert out[KEY]["log.done"] == 1 and out[KEY]["log.available"] is True
    assert "log.error" not in out[KEY] and probe.errors == {}


def test_discarded_scheduler_output_is_no_error(tmp_path: Path) -> None:
    """An htcondor job without `logs:` whose output goes to /dev/null (HTCondor's default)
    follows nothing and reports no log error; with a real output file it follows that."""
    (tmp_path / "job.out").write_text("Traceback (most recent call last):\n")
    rs = load_text("version: 1\nname: t\njobs:\n  c:\n    htcondor: {ids: [3]}\n", "t.yaml",
                   env={}, base=tmp_path).ruleset
    probe = LogsProbe(rs, tmp_path)
    out = collect(probe, rs, tmp_path, {
        "c/3.0": {"job.key": "c", "job.stdout": "/dev/null", "job.stderr": "/dev/null"},
        "c/3.1": {"job.key": "c", "job.stdout": str(tmp_path / "job.out"),
                  "job.stderr": "/dev/null"}})
    assert "log.error" not in out.get("c/3.0", {}) and probe.errors == {}
    assert out["c/3.1"]["log.errors.traceback.count"] == 1


def test_slurm_placeholders(tmp_path: Path) -> None:
    """sbatch's %x-%j placeholders are expanded from the job's facts for SLURM jobs."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "train-4242.out").write_text("Epoch 2/10\n")
    text = ("version: 1\nname: t\njobs:\n  train:\n    slurm: {ids: [4242]}\n"
            "    logs: [{path: 'logs/%x-%j.out', preset: python-logging}]\n")
    rs = load_text(text, "t.yaml", env={}, base=tmp_path).ruleset
    probe = LogsProbe(rs, tmp_path)
    out = collect(probe, rs, tmp_path, {"train/4242": {
        "job.key": "train", "job.id": "4242", "job.name": "train"}})
    assert out["train/4242"]["log.epoch"] == 2 and out["train/4242"]["log.epochs"] == 10


# --- globs and big files --------------------------------------------------------------------------


def test_per_worker_logs_and_glob(tmp_path: Path) -> None:
    """`logs/worker_{{ worker }}.log` follows each worker's own log; an instance without a
    worker index follows all of them as a glob, merging counts, taking the last value from the
    most recently written file, and picking up a new worker's log later."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "worker_0.log").write_text("Processed 10/100\nTraceback (most recent call last):\n")
    (logs / "worker_1.log").write_text("Processed 20/100\n")
    os.utime(logs / "worker_0.log", (1000, 1000))
    os.utime(logs / "worker_1.log", (2000, 2000))
    probe, rs = make_probe(tmp_path, """
        - path: 'logs/worker_{{ worker }}.log'
          preset: [python-logging, traceback]
        """)
    instances = {f"embed/{i}": {"job.key": "embed", "job.id": "7", "worker.index": i}
                 for i in range(2)}
    instances["embed/all"] = {"job.key": "embed", "job.id": "7"}
    out = collect(probe, rs, tmp_path, instances)
    assert out["embed/0"]["log.done"] == 10 and out["embed/0"]["log.errors.traceback.count"] == 1
    assert out["embed/1"]["log.done"] == 20 and out["embed/1"]["log.errors.traceback.count"] == 0
    assert out["embed/1"]["log.path"] == str(logs / "worker_1.log")
    assert out["embed/all"]["log.done"] == 20  # worker_1.log is the newer file
    assert out["embed/all"]["log.extractors.items.count"] == 2
    assert out["embed/all"]["log.errors.traceback.count"] == 1
    (logs / "worker_2.log").write_text("Processed 30/100\n")
    append(logs / "worker_0.log", b"Processed 11/100\n")
    out = collect(probe, rs, tmp_path, instances)
    assert out["embed/all"]["log.extractors.items.count"] == 4
    assert out["embed/all"]["log.done"] in (11, 30)  # same tick: the newer file wins
    newest = max(logs.glob("worker_*.log"), key=lambda p: p.stat().st_mtime)
    assert out["embed/all"]["log.path"] == str(newest)


def test_glob_over_worker_logs_sums_per_file_values(tmp_path: Path) -> None:
    """With one instance following every worker's log through a glob, log.done jumps between
    workers but log.sum.done adds each file's own last value, so progress over log.sum
    advances steadily (progress.elapsed is never reset)."""
    from rulesmon.probes.progress import Tracker

    logs = tmp_path / "logs"
    logs.mkdir()
    probe, rs = make_probe(tmp_path, "- {path: 'logs/worker_*.log', preset: python-logging}")
    tracker = Tracker()
    done = [0, 0, 0]
    elapsed: list[float] = []
    for tick in range(12):
        w = tick % 3  # the workers write in turn, each at its own pace
        done[w] += 10 * (w + 1)
        append(logs / f"worker_{w}.log", f"Processed {done[w]}/1000 items\n".encode())
        facts = collect(probe, rs, tmp_path, now=1000.0 + tick)[KEY]
        assert facts["log.done"] == done[w]
        assert facts["log.sum.done"] == sum(done)
        assert facts["log.sum.total"] == 1000 * sum(1 for d in done if d)
        assert facts["log.files"] == sum(1 for d in done if d)
        p = tracker.update(1000.0 + tick, facts["log.sum.done"], facts["log.sum.total"],
                           300, None, "items")
        elapsed.append(p["progress.elapsed"])
    assert elapsed == [float(t) for t in range(12)]
    (logs / "worker_2.log").unlink()  # drained to its end, then no longer counted
    for tick in range(4):
        facts = collect(probe, rs, tmp_path, now=2000.0 + tick)[KEY]
    assert facts["log.sum.done"] == done[0] + done[1] and facts["log.files"] == 2


def test_sparse_200mb_file_is_read_in_bounded_steps(tmp_path: Path) -> None:
    """A 200 MB sparse file is read at most 64 MiB per collect, in small chunks, and the lines
    appended at its end arrive after a few collects."""
    path = tmp_path / "big.log"
    with path.open("wb") as f:
        f.truncate(200_000_000)
    append(path, b"\nProcessed 7/9\n")
    probe, rs = make_probe(tmp_path, "- {path: big.log, preset: python-logging}")
    tracemalloc.start()
    try:
        started = time.monotonic()
        out = collect(probe, rs, tmp_path)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    tailer = probe._instances[KEY].logs[0].tailers[str(path)]
    assert tailer.offset == MAX_READ
    assert peak < 32 << 20, f"peak memory {peak} bytes"
    assert elapsed < 10
    assert "log.done" not in out[KEY]
    for _ in range(4):
        out = collect(probe, rs, tmp_path)
        if "log.done" in out[KEY]:
            break
    assert out[KEY]["log.done"] == 7 and out[KEY]["log.total"] == 9
    assert tailer.offset == path.stat().st_size


def test_sparse_2gb_log_never_crashes_and_catches_up(tmp_path: Path) -> None:
    """A 2 GB sparse log (NUL bytes) is read in bounded steps without a crash or a memory
    spike, and the line written at its end is found once the tailer has caught up."""
    path = tmp_path / "huge.log"
    with path.open("wb") as f:
        f.truncate(2 * 1024**3)
    append(path, b"\nProcessed 5/6\n")
    probe, rs = make_probe(tmp_path, "- {path: huge.log, preset: python-logging}")
    tracemalloc.start()
    try:
        out: dict[str, Any] = {}
        for _ in range(40):
            out = collect(probe, rs, tmp_path)
            if "log.done" in out[KEY]:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out[KEY]["log.done"] == 5
    assert peak < 200 << 20, f"peak memory {peak} bytes"


def test_line_splitting_semantics_and_unterminated_escape(tmp_path: Path) -> None:
    """CRLF is one terminator, a lone CR ends a line, the empty piece before a tqdm redraw is
    no line, blank lines stay, and an unterminated escape sequence never swallows the next
    lines."""
    from rulesmon.probes.tail import Tailer

    path = tmp_path / "t.log"
    path.write_bytes(b"a\r\nb\n\n\rc\rd\n\x1b]0;title-without-end\nline after\n"
                     b"\x1b[31mred\x1b[0m\n")
    assert Tailer(path).read() == ["a", "b", "", "c", "d", "", "line after", "red"]


def test_many_unreadable_logs_are_one_warning_each_at_most_five(tmp_path: Path,
                                                                caplog: Any) -> None:
    """Hundreds of instances whose logs do not exist yet give five warnings and one line
    counting the rest, once: not a line per instance per tick."""
    probe, rs = make_probe(tmp_path, "- 'logs/{{ job.id }}.out'")
    instances = {f"embed/{i}": {"job.key": "embed", "job.id": str(i)} for i in range(300)}
    with caplog.at_level("WARNING", logger="rulesmon.probes.logs"):
        for _ in range(3):
            out = collect(probe, rs, tmp_path, instances)
    assert out["embed/7"]["log.error"] == f"no such file: {tmp_path / 'logs' / '7.out'}"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 6 and "more=295" in messages[-1]


# --- real tqdm output: the last redraw; logs-only jobs; blank lines ------------------------------

LOGS = Path(__file__).parent / "fixtures" / "logs"
PRESETS_DIR = Path(__file__).parent / "fixtures" / "presets"
LOSS = "- {path: train.log, preset: tqdm, extract: {loss: 'loss=(?P<loss>[\\d.]+)'}}"


def _redraws(data: bytes) -> int:
    """How many tqdm redraws of the `train` bar a log holds."""
    return data.count(b"\rtrain:")


def test_tqdm_last_redraw_is_read_once_the_file_is_quiet(tmp_path: Path) -> None:
    """The last `\\r<bar>` of a real tqdm run killed mid-bar (no newline after it) is read on
    the first tick that finds the file quiet, once: later ticks and a newline that finally ends
    it add no event."""
    data = (LOGS / "tqdm_killed.log").read_bytes()
    (tmp_path / "train.log").write_bytes(data)
    probe, rs = make_probe(tmp_path, LOSS)
    first = collect(probe, rs, tmp_path)[KEY]
    assert (first["log.done"], first["log.loss"]) == (150, 0.5634)  # the last bar pending
    quiet = collect(probe, rs, tmp_path)[KEY]
    assert (quiet["log.done"], quiet["log.total"], quiet["log.loss"]) == (155, 500, 0.536)
    assert quiet["log.extractors.tqdm.count"] == _redraws(data)
    assert quiet["log.lines"][-1].startswith("train:  31%")
    append(tmp_path / "train.log", b"\n")
    for _ in range(2):
        again = collect(probe, rs, tmp_path)[KEY]
        assert again["log.extractors.tqdm.count"] == _redraws(data)
        assert again["log.extractors.loss.count"] == quiet["log.extractors.loss.count"]
        assert again["log.lines"] == quiet["log.lines"]


def test_tqdm_last_redraw_of_a_log_quiet_for_a_tick_needs_no_second_read(
        tmp_path: Path) -> None:
    """A log last written more than a tick ago (a run killed an hour ago) gives its last
    redraw on the first read, as `rulesmon facts` (one tick) shows it; a log written this
    instant keeps it pending until a tick finds it quiet."""
    data = (LOGS / "tqdm_killed.log").read_bytes()
    path = tmp_path / "train.log"
    path.write_bytes(data)
    now = time.time()
    os.utime(path, (now - 3600, now - 3600))
    probe, rs = make_probe(tmp_path, LOSS)
    facts = collect(probe, rs, tmp_path, now=now)[KEY]
    assert (facts["log.done"], facts["log.loss"]) == (155, 0.536)
    assert facts["log.extractors.tqdm.count"] == _redraws(data)
    os.utime(path, (now, now))
    probe, rs = make_probe(tmp_path, LOSS)
    assert collect(probe, rs, tmp_path, now=now)[KEY]["log.done"] == 150


def test_tqdm_last_redraw_is_read_at_once_when_the_job_has_ended(tmp_path: Path) -> None:
    """Once the job has ended, the pending last redraw is read on the same tick as the bytes
    before it, without waiting for a quiet tick."""
    data = (LOGS / "tqdm_killed.log").read_bytes()
    (tmp_path / "train.log").write_bytes(data)
    probe, rs = make_probe(tmp_path, LOSS)
    ended = {KEY: {"job.key": "embed", "job.id": "123", "job.terminal": True}}
    facts = collect(probe, rs, tmp_path, ended)[KEY]
    assert (facts["log.done"], facts["log.loss"]) == (155, 0.536)
    assert facts["log.extractors.tqdm.count"] == _redraws(data)
    assert collect(probe, rs, tmp_path, ended)[KEY]["log.extractors.tqdm.count"] == \
        _redraws(data)


def test_tqdm_run_to_its_end_reads_each_redraw_once(tmp_path: Path) -> None:
    """A real tqdm run that finished (final bar, newline, a last print) is read whole: every
    redraw counted once, the final 500/500, and no line twice however many ticks follow."""
    data = (LOGS / "tqdm_done.log").read_bytes()
    (tmp_path / "train.log").write_bytes(data)
    probe, rs = make_probe(tmp_path, LOSS)
    for _ in range(3):
        facts = collect(probe, rs, tmp_path)[KEY]
        assert facts["log.extractors.tqdm.count"] == _redraws(data)
        assert (facts["log.done"], facts["log.total"], facts["log.loss"]) == (500, 500, 0.017)
        assert facts["log.lines"][-1] == "training done"
        assert facts["log.lines"][-2].startswith("train: 100%")


def test_a_plain_partial_line_waits_for_its_writer(tmp_path: Path) -> None:
    """A half line without `\\r` (a block-buffered writer's buffer boundary) is not read while
    the job runs, however quiet the file; once the job has ended it is read, and its late
    completion is a line of its own, never a second event for the half already read."""
    path = tmp_path / "train.log"
    path.write_bytes(b"step 1 loss=0.5\nstep 2 loss=0.4")
    probe, rs = make_probe(tmp_path, "- {path: train.log, extract: "
                           "{s: 'step (?P<step>\\d+) loss=(?P<loss>[\\d.]+)'}}")
    for _ in range(2):
        facts = collect(probe, rs, tmp_path)[KEY]
        assert (facts["log.step"], facts["log.extractors.s.count"]) == (1, 1)
    ended = {KEY: {"job.key": "embed", "job.id": "123", "job.terminal": True}}
    facts = collect(probe, rs, tmp_path, ended)[KEY]
    assert (facts["log.step"], facts["log.loss"], facts["log.extractors.s.count"]) == \
        (2, 0.4, 2)
    append(path, b"1\n")
    facts = collect(probe, rs, tmp_path, ended)[KEY]
    assert facts["log.extractors.s.count"] == 2
    assert facts["log.lines"] == ["step 1 loss=0.5", "step 2 loss=0.4", "1"]


def test_a_real_process_killed_mid_bar_leaves_its_last_redraw(tmp_path: Path) -> None:
    """A real process writing real tqdm output, watched by pid through an engine run and
    killed with SIGKILL mid-bar: the tick that sees it ended reads its last redraw (step 155,
    not the 150 drawn before)."""
    import signal

    from rulesmon.engine import Engine
    from rulesmon.testing import NullLog

    data = (LOGS / "tqdm_killed.log").read_bytes()
    cut = data.rindex(b"\rtrain:", 0, data.rindex(b"\rtrain:"))  # part 1 ends with 145/500
    writer = textwrap.dedent(f"""
        import sys, time
        data = open({str(LOGS / "tqdm_killed.log")!r}, "rb").read()
        with open({str(tmp_path / "train.log")!r}, "ab", buffering=0) as log:
            log.write(data[:{cut}])
            print("ready", flush=True)
            sys.stdin.readline()
            log.write(data[{cut}:])
            print("done", flush=True)
            time.sleep(600)
        """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        text = (f"version: 1\nname: t\njobs:\n  train:\n    local: {{pids: [{proc.pid}]}}\n"
                f"    logs:\n      {LOSS}\nrules: []\n")
        engine = Engine(load_text(text, str(tmp_path / "r.yaml")),
                        state_path=tmp_path / "s.db", log=NullLog(), dry_run=True)
        try:
            engine.tick()
            running = next(iter(engine.instances.values()))
            assert running["job.terminal"] is False
            assert running["log.done"] == 140  # 145/500 pending: the writer may go on
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "done\n"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
            engine.tick()
            ended = next(iter(engine.instances.values()))
            assert ended["job.terminal"] is True
            assert (ended["log.done"], ended["log.loss"]) == (155, 0.536)
            assert ended["log.extractors.tqdm.count"] == _redraws(data)
        finally:
            engine.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_logs_only_job_is_one_followed_instance(tmp_path: Path) -> None:
    """A job with `logs:` and no source is one instance (`train/-`, source none) whose growing
    log gives `log.*` facts through an engine run, tick after tick."""
    from rulesmon.engine import Engine
    from rulesmon.testing import NullLog

    data = (LOGS / "tqdm_done.log").read_bytes()
    half = data.index(b"\rtrain:  50%")
    path = tmp_path / "train.log"
    path.write_bytes(data[:half])
    text = f"version: 1\nname: t\njobs:\n  train:\n    logs:\n      {LOSS}\nrules: []\n"
    engine = Engine(load_text(text, str(tmp_path / "r.yaml")), state_path=tmp_path / "s.db",
                    log=NullLog(), dry_run=True)
    try:
        engine.tick()
        assert list(engine.instances) == ["train/-"]
        first = engine.instances["train/-"]
        assert (first["job.source"], first["log.available"], first["log.total"]) == \
            ("none", True, 500)
        assert 0 < first["log.done"] < 250
        append(path, data[half:])
        engine.tick()
        grown = engine.instances["train/-"]
        assert (grown["log.done"], grown["log.loss"]) == (500, 0.017)
        assert grown["log.lines"][-1] == "training done"
        assert grown["disk.path"] == str(tmp_path)  # the files probe's facts, same instance
        run = engine.run_facts
        assert (run["run.total"], run["run.watched"]) == (0, 1)
        assert run["run.summary"].endswith("1 watched without a source (logs and files only)")
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["lightning.log", "hf_trainer.log"])
def test_tail_drops_lines_left_blank_by_cleared_bars(tmp_path: Path, name: str) -> None:
    """`log.tail` and `log.lines` hold the last lines that are not blank: the empty lines and
    runs of spaces that cleared progress bars leave among the last 30 lines of a Lightning
    and a Hugging Face Trainer log are dropped, the other lines kept in order."""
    data = (PRESETS_DIR / name).read_bytes()
    (tmp_path / "train.log").write_bytes(data)
    lines = Tailer(tmp_path / "train.log").read()
    assert any(not line.strip() for line in lines[-30:])  # what the bars left
    probe, rs = make_probe(tmp_path, "- {path: train.log, tail: 30}")
    facts = collect(probe, rs, tmp_path)[KEY]
    kept = [line for line in lines if line.strip()][-30:]
    assert facts["log.lines"] == kept and len(kept) == 30
    assert facts["log.tail"] == "\n".join(kept)


def test_tail_drops_the_spaces_a_cleared_tqdm_bar_leaves(tmp_path: Path) -> None:
    """A real tqdm bar cleared at its end (`leave=False`) leaves a line of spaces before the
    next print; `log.tail` skips it and shows the bar's last state instead."""
    (tmp_path / "train.log").write_bytes((LOGS / "tqdm_cleared.log").read_bytes())
    probe, rs = make_probe(tmp_path, "- {path: train.log, tail: 3}")
    facts = collect(probe, rs, tmp_path)[KEY]
    assert facts["log.lines"][0].startswith("epoch 2: 100%|")
    assert facts["log.lines"][1:] == ["epoch 2 done: val_loss=0.167", "finished"]
    probe, rs = make_probe(tmp_path, "- {path: train.log, tail: 1000}")
    every = collect(probe, rs, tmp_path)[KEY]["log.lines"]
    assert all(line.strip() for line in every)
    assert [line for line in every if "done" in line] == [
        "epoch 0 done: val_loss=0.500", "epoch 1 done: val_loss=0.250",
        "epoch 2 done: val_loss=0.167"]


def test_quiet_reads_between_redraws_equal_one_read(tmp_path: Path) -> None:
    """However quiet reads fall between whole writes of redraws, newlines, CRLFs, cleared bars
    and printed lines (tqdm writes and flushes each redraw at once), the lines are those of
    reading the log whole: a redraw given out early is never read again."""
    import random

    rng = random.Random(3)
    path = tmp_path / "a.log"
    for _ in range(500):
        writes = [rng.choice([b"\rbar %d" % i, b"\n", b"\r     \r", b"\nline %d\n" % i,
                              b"\r\n"]) for i in range(rng.randint(0, 12))]
        path.write_bytes(b"".join(writes))
        reader = Tailer(path)
        whole = reader.read() + reader.read()
        path.write_bytes(b"")
        t = Tailer(path)
        got: list[str] = []
        for data in writes:
            append(path, data)
            got += t.read()
            if rng.random() < 0.5:
                got += t.read()  # a tick that finds the log quiet
        got += t.read()
        assert got == whole, writes
