"""The files probe and the integrity checks, on real files in tmp_path with a controlled clock."""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rulesmon.config.loader import load_text
from rulesmon.probes import integrity
from rulesmon.probes.base import TickContext
from rulesmon.probes.files import FilesProbe

T0 = 1_700_000_000.0


def make(tmp_path: Path, jobs: str) -> FilesProbe:
    text = f"version: 1\nname: files-test\njobs:\n{jobs}"
    ruleset = load_text(text, "files-test.yaml", env={}, base=tmp_path).ruleset
    return FilesProbe(ruleset, tmp_path)


def tick(probe: FilesProbe, tmp_path: Path, now: float,
         instances: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    ctx = TickContext(now=now, ruleset=probe.ruleset, base_dir=tmp_path,
                      instances=instances or {})
    return probe.collect(ctx)


def put(path: Path, data: bytes | str, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def append(path: Path, data: bytes, mtime: float) -> None:
    with path.open("ab") as f:
        f.write(data)
    os.utime(path, (mtime, mtime))


def torch_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def safetensors(tensors: dict[str, tuple[int, int]], data_len: int,
                header_len: int | None = None) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    for name, (begin, end) in tensors.items():
        header[name] = {"dtype": "F32", "shape": [(end - begin) // 4], "data_offsets": [begin, end]}
    raw = json.dumps(header).encode()
    n = len(raw) if header_len is None else header_len
    return struct.pack("<Q", n) + raw + b"\0" * data_len


# --- counts, sizes, growth, stalls, cadence -----------------------------------------------------


def test_counts_sizes_newest_age(tmp_path: Path) -> None:
    """Count, total size, newest file, its size and mtime, age, sorted paths and interval."""
    probe = make(tmp_path, "  sim:\n    files:\n      out: {glob: 'out/**/*.json'}\n")
    a = put(tmp_path / "out/a.json", "x" * 10, T0 - 100)
    b = put(tmp_path / "out/sub/b.json", "y" * 20, T0 - 50)
    put(tmp_path / "out/c.txt", "ignored", T0)
    put(tmp_path / "out/.hidden/d.json", "{}", T0)
    facts = tick(probe, tmp_path, T0)["sim/-"]
    assert facts["files.out.count"] == 2
    assert facts["files.out.size"] == 30
    assert facts["files.out.newest"] == str(b)
    assert facts["files.out.newest_size"] == 20
    assert facts["files.out.newest_mtime"] == pytest.approx(T0 - 50)
    assert facts["files.out.age"] == pytest.approx(50)
    assert facts["files.out.paths"] == sorted([str(a), str(b)])
    assert facts["files.out.interval"] == pytest.approx(50)
    assert "files.out.valid" not in facts  # no validate: no integrity facts


def test_growth_rate_and_stalled(tmp_path: Path) -> None:
    """growth_rate follows the window and stalled turns true after stall_after without growth."""
    probe = make(tmp_path, "  sim:\n    files:\n      log: {glob: 'out.jsonl', "
                 "growth_window: 20s, stall_after: 30s}\n")
    f = put(tmp_path / "out.jsonl", b"a" * 100, T0)
    facts = tick(probe, tmp_path, T0)["sim/-"]
    assert "files.log.growth_rate" not in facts  # one sample: no rate yet
    assert facts["files.log.stalled"] is False
    append(f, b"b" * 100, T0 + 10)
    assert tick(probe, tmp_path, T0 + 10)["sim/-"]["files.log.growth_rate"] == pytest.approx(10)
    append(f, b"c" * 200, T0 + 20)
    assert tick(probe, tmp_path, T0 + 20)["sim/-"]["files.log.growth_rate"] == pytest.approx(15)
    facts = tick(probe, tmp_path, T0 + 30)["sim/-"]
    assert facts["files.log.growth_rate"] == pytest.approx(10)
    assert facts["files.log.stalled"] is False
    facts = tick(probe, tmp_path, T0 + 50)["sim/-"]
    assert facts["files.log.growth_rate"] == pytest.approx(0)
    assert facts["files.log.stalled"] is True
    append(f, b"d", T0 + 60)
    assert tick(probe, tmp_path, T0 + 60)["sim/-"]["files.log.stalled"] is False


def test_not_stalled_without_files(tmp_path: Path) -> None:
    """An empty file set is never stalled, however long it stays empty."""
    probe = make(tmp_path, "  sim:\n    files:\n      out: {glob: '*.bin', stall_after: 10s}\n")
    tick(probe, tmp_path, T0)
    assert tick(probe, tmp_path, T0 + 100)["sim/-"]["files.out.stalled"] is False


def test_already_stalled_at_start(tmp_path: Path) -> None:
    """Files untouched for longer than stall_after before the probe started count as stalled."""
    probe = make(tmp_path, "  sim:\n    files:\n      out: {glob: '*.bin', stall_after: 10m}\n")
    put(tmp_path / "a.bin", b"x", T0 - 3600)
    assert tick(probe, tmp_path, T0)["sim/-"]["files.out.stalled"] is True


def test_checkpoint_cadence_late_and_expected_next(tmp_path: Path) -> None:
    """Checkpoints 10 minutes apart give interval 600 s; past expect_every they are late."""
    probe = make(tmp_path, "  train:\n    files:\n      ckpt: {glob: 'ckpt/*.pt', "
                 "expect_every: 30m}\n")
    for i, ago in enumerate((1500, 900, 300)):
        put(tmp_path / f"ckpt/epoch_{i}.pt", b"x", T0 - ago)
    facts = tick(probe, tmp_path, T0)["train/-"]
    assert facts["files.ckpt.interval"] == pytest.approx(600)
    assert facts["files.ckpt.age"] == pytest.approx(300)
    assert facts["files.ckpt.expected_next"] == pytest.approx(1500)
    assert facts["files.ckpt.late"] is False
    facts = tick(probe, tmp_path, T0 + 1600)["train/-"]
    assert facts["files.ckpt.expected_next"] == pytest.approx(-100)
    assert facts["files.ckpt.late"] is True


def test_late_when_no_file_ever_appears(tmp_path: Path) -> None:
    """With no file at all, late counts from when the probe first saw the job."""
    probe = make(tmp_path, "  train:\n    files:\n      ckpt: {glob: 'ckpt/*.pt', "
                 "expect_every: 30m}\n")
    facts = tick(probe, tmp_path, T0)["train/-"]
    assert facts["files.ckpt.late"] is False
    assert facts["files.ckpt.expected_next"] == pytest.approx(1800)
    facts = tick(probe, tmp_path, T0 + 1801)["train/-"]
    assert facts["files.ckpt.late"] is True
    assert facts["files.ckpt.count"] == 0


# --- integrity -----------------------------------------------------------------------------------


def test_json_valid_and_truncated(tmp_path: Path) -> None:
    """A whole JSON document is valid; a truncated or empty one is not."""
    assert integrity.check(put(tmp_path / "ok.json", '{"a": [1, 2]}'), "json") is None
    reason = integrity.check(put(tmp_path / "bad.json", '{"a": [1,'), "json")
    assert reason is not None
    assert reason.startswith("invalid JSON")
    assert integrity.check(put(tmp_path / "empty.json", ""), "json") == "empty file"


def test_json_beyond_parse_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the parse limit only the opening and closing brackets are checked."""
    monkeypatch.setattr(integrity, "JSON_PARSE_LIMIT", 10)
    assert integrity.check(put(tmp_path / "big.json", '[1, 2, 3, 4, 5, 6]\n'), "json") is None
    assert integrity.check(put(tmp_path / "cut.json", '[1, 2, 3, 4, 5, 6'), "json") is not None
    assert integrity.check(put(tmp_path / "odd.json", 'x1, 2, 3, 4, 5]'), "json") is not None


def test_jsonl_last_line(tmp_path: Path) -> None:
    """The last complete line must parse; an unfinished last line matters only once quiet."""
    ok = put(tmp_path / "ok.jsonl", '{"i": 1}\n{"i": 2}\n')
    assert integrity.check(ok, "jsonl") is None
    no_newline = put(tmp_path / "nonl.jsonl", '{"i": 1}\n{"i": 2}')
    assert integrity.check(no_newline, "jsonl") is None
    bad = put(tmp_path / "bad.jsonl", '{"i": 1}\n{"i": \n')
    assert "last line" in (integrity.check(bad, "jsonl") or "")
    writing = put(tmp_path / "writing.jsonl", '{"i": 1}\n{"i": 2, "x": ')
    assert integrity.check(writing, "jsonl", quiet=False) is None
    assert "unfinished" in (integrity.check(writing, "jsonl", quiet=True) or "")
    assert integrity.check(put(tmp_path / "empty.jsonl", ""), "jsonl") is None
    long_line = put(tmp_path / "long.jsonl", '{"i": 1}\n' + json.dumps({"x": "y" * 200_000})
                    + "\n")
    assert integrity.check(long_line, "jsonl") is None


def test_csv_field_counts(tmp_path: Path) -> None:
    """The header and the last complete row must have the same number of fields."""
    assert integrity.check(put(tmp_path / "ok.csv", "a,b,c\n1,2,3\n4,5,6\n"), "csv") is None
    assert integrity.check(put(tmp_path / "head.csv", "a,b,c\n"), "csv") is None
    bad = integrity.check(put(tmp_path / "bad.csv", "a,b,c\n1,2,3\n4,5\n"), "csv")
    assert bad == "last row has 2 field(s), header has 3"
    writing = put(tmp_path / "writing.csv", "a,b,c\n1,2,3\n4,")
    assert integrity.check(writing, "csv", quiet=False) is None
    assert "unfinished" in (integrity.check(writing, "csv", quiet=True) or "")
    tsv = put(tmp_path / "ok.tsv", "a\tb\n1\t2\n")
    assert integrity.check(tsv, "csv") is None
    rows = "".join(f"{i},{i * 2},{i * 3}\n" for i in range(20_000))
    assert integrity.check(put(tmp_path / "big.csv", "a,b,c\n" + rows), "csv") is None
    assert integrity.check(put(tmp_path / "bigbad.csv", "a,b,c\n" + rows + "1,2\n"),
                           "csv") is not None
    assert integrity.check(put(tmp_path / "empty.csv", ""), "csv") == "empty file"


def test_torch_zip_and_legacy(tmp_path: Path) -> None:
    """A zip with data.pkl or a legacy pickle is a checkpoint; truncated or foreign files not."""
    data = torch_zip({"archive/data.pkl": b"\x80\x02}q\x00.", "archive/data/0": b"\0" * 64,
                      "archive/version": b"3\n"})
    assert integrity.check(put(tmp_path / "ok.pt", data), "torch") is None
    truncated = integrity.check(put(tmp_path / "cut.pt", data[:-40]), "torch")
    assert truncated is not None
    assert "truncated" in truncated
    other = torch_zip({"readme.txt": b"hello"})
    assert "data.pkl" in (integrity.check(put(tmp_path / "other.pt", other), "torch") or "")
    assert integrity.check(put(tmp_path / "legacy.pt", b"\x80\x02\x8a\x0al\xfc\x9cF"),
                           "torch") is None
    assert integrity.check(put(tmp_path / "text.pt", "not a checkpoint"), "torch") is not None
    assert integrity.check(put(tmp_path / "empty.pt", b""), "torch") == "empty file"


def test_safetensors_header_and_offsets(tmp_path: Path) -> None:
    """The header must parse and every tensor must end within the file."""
    ok = safetensors({"w": (0, 16), "b": (16, 24)}, data_len=24)
    assert integrity.check(put(tmp_path / "ok.safetensors", ok), "safetensors") is None
    short = safetensors({"w": (0, 16), "b": (16, 24)}, data_len=20)
    assert "truncated" in (integrity.check(put(tmp_path / "short.safetensors", short),
                                           "safetensors") or "")
    header_cut = ok[:20]
    assert "truncated header" in (integrity.check(put(tmp_path / "hc.safetensors", header_cut),
                                                  "safetensors") or "")
    huge = struct.pack("<Q", 10**9) + b"{}"
    assert "implausible" in (integrity.check(put(tmp_path / "huge.safetensors", huge),
                                             "safetensors") or "")
    garbage = struct.pack("<Q", 4) + b"{{{{"
    assert "JSON" in (integrity.check(put(tmp_path / "g.safetensors", garbage),
                                      "safetensors") or "")
    assert integrity.check(put(tmp_path / "tiny.safetensors", b"abc"), "safetensors") is not None


def test_check_never_raises(tmp_path: Path) -> None:
    """Missing files, folders and unknown formats give a reason instead of an exception."""
    assert integrity.check(tmp_path / "missing.json", "json") is not None
    assert integrity.check(tmp_path, "json") is not None
    assert integrity.check(put(tmp_path / "x.bin", b"x"), "none") is None
    assert integrity.check(put(tmp_path / "y.bin", b"x"), "hdf5") is not None


def test_probe_valid_invalid_and_stat_only_ticks(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """valid/invalid per file set; unchanged files are not re-read on later ticks."""
    probe = make(tmp_path, "  sim:\n    files:\n      out: {glob: 'out/*.json', "
                 "validate: json}\n")
    for i in range(1000):
        put(tmp_path / f"out/{i:04d}.json", json.dumps({"i": i}), T0 - 10)
    bad = put(tmp_path / "out/bad.json", '{"i": ', T0 - 10)
    calls: list[Path] = []
    real = integrity.check

    def counting(path: Path, fmt: str, *, quiet: bool = True) -> str | None:
        calls.append(path)
        return real(path, fmt, quiet=quiet)

    monkeypatch.setattr(integrity, "check", counting)
    facts = tick(probe, tmp_path, T0)["sim/-"]
    assert facts["files.out.count"] == 1001
    assert facts["files.out.valid"] is False
    assert facts["files.out.invalid"] == [str(bad)]
    assert len(facts["files.out.paths"]) == 1000
    assert len(calls) == 1001
    calls.clear()
    facts = tick(probe, tmp_path, T0 + 30)["sim/-"]
    assert calls == []  # stat only
    assert facts["files.out.invalid"] == [str(bad)]
    put(bad, '{"i": 1}', T0 + 40)
    facts = tick(probe, tmp_path, T0 + 60)["sim/-"]
    assert calls == [bad]
    assert facts["files.out.valid"] is True
    assert facts["files.out.invalid"] == []


def test_probe_jsonl_being_written_is_valid_until_quiet(tmp_path: Path) -> None:
    """A JSONL file with an unfinished last line is invalid only after it stopped changing."""
    probe = make(tmp_path, "  sim:\n    files:\n      out: {glob: '*.jsonl', "
                 "validate: jsonl}\n")
    put(tmp_path / "a.jsonl", '{"i": 1}\n{"i": ', T0 - 5)
    assert tick(probe, tmp_path, T0)["sim/-"]["files.out.valid"] is True
    assert tick(probe, tmp_path, T0 + 120)["sim/-"]["files.out.valid"] is False


# --- new files -----------------------------------------------------------------------------------


def test_new_files_after_quiet_each_once(tmp_path: Path) -> None:
    """Baseline files are not new; a new file is reported once, after quiet_for unchanged."""
    probe = make(tmp_path, "  sim:\n    files:\n      res: {glob: 'out/*.txt', quiet_for: 30s, "
                 "new_files: true}\n")
    put(tmp_path / "out/base.txt", "old", T0 - 1000)
    facts = tick(probe, tmp_path, T0)["sim/-"]
    assert facts["files.res.new"] == []
    assert facts["files.res.new_count"] == 0
    a = put(tmp_path / "out/a.txt", "1", T0 + 10)
    assert tick(probe, tmp_path, T0 + 10)["sim/-"]["files.res.new"] == []
    append(a, b"2", T0 + 20)  # still growing
    assert tick(probe, tmp_path, T0 + 20)["sim/-"]["files.res.new"] == []
    assert tick(probe, tmp_path, T0 + 40)["sim/-"]["files.res.new"] == []
    facts = tick(probe, tmp_path, T0 + 50)["sim/-"]
    assert facts["files.res.new"] == [str(a)]
    assert facts["files.res.new_count"] == 1
    assert tick(probe, tmp_path, T0 + 60)["sim/-"]["files.res.new"] == []
    # a file copied in with an old mtime: quiet once seen unchanged on a second tick
    b = put(tmp_path / "out/b.txt", "copied", T0 - 5000)
    assert tick(probe, tmp_path, T0 + 70)["sim/-"]["files.res.new"] == []
    assert tick(probe, tmp_path, T0 + 80)["sim/-"]["files.res.new"] == [str(b)]
    assert tick(probe, tmp_path, T0 + 90)["sim/-"]["files.res.new_count"] == 0


def test_new_files_without_quiet_for(tmp_path: Path) -> None:
    """With quiet_for 0 a new file is reported on the first tick that sees it."""
    probe = make(tmp_path, "  sim:\n    files:\n      res: {glob: '*.txt', new_files: true}\n")
    tick(probe, tmp_path, T0)
    a = put(tmp_path / "a.txt", "1", T0 + 5)
    assert tick(probe, tmp_path, T0 + 10)["sim/-"]["files.res.new"] == [str(a)]
    assert tick(probe, tmp_path, T0 + 20)["sim/-"]["files.res.new"] == []


def test_parsl_style_pattern_with_named_groups(tmp_path: Path) -> None:
    """A regex over paths relative to root finds Parsl's result files; groups become matches."""
    probe = make(tmp_path, "  sim:\n    files:\n"
                 "      results: {pattern: 'results-(?P<field>\\S+)\\.txt', root: output}\n"
                 "      images: {glob: 'images/*.gif'}\n")
    out = tmp_path / "output"
    put(tmp_path / "images/composite.gif", "g", T0 - 10)
    put(tmp_path / "images/rgb.png", "p", T0 - 10)
    psi = put(out / "results-psi.txt", "1", T0 - 20)
    temp = put(out / "results-temperature.txt", "2", T0 - 10)
    put(out / "results-psi.gif", "3", T0)
    put(out / "results-info.dat", "4", T0)
    put(out / ".cache/results-hidden.txt", "5", T0)
    put(out / "sub/results-deep.txt", "6", T0)  # fullmatch: the relative path must match
    facts = tick(probe, tmp_path, T0)["sim/-"]
    assert facts["files.results.count"] == 2
    assert facts["files.results.paths"] == sorted([str(psi), str(temp)])
    assert facts["files.results.newest"] == str(temp)
    assert facts["files.results.matches.field"] == "temperature"
    assert facts["files.images.count"] == 1


def test_pattern_spanning_folders(tmp_path: Path) -> None:
    """A pattern may match nested paths; hidden folders are not entered."""
    probe = make(tmp_path, "  sim:\n    files:\n"
                 "      steps: {pattern: 'run(?P<run>\\d+)/step_(?P<step>\\d+)\\.npz'}\n")
    put(tmp_path / "run1/step_10.npz", "a", T0 - 10)
    put(tmp_path / "run2/step_20.npz", "b", T0 - 5)
    put(tmp_path / ".git/run3/step_30.npz", "c", T0)
    facts = tick(probe, tmp_path, T0)["sim/-"]
    assert facts["files.steps.count"] == 2
    assert facts["files.steps.matches.run"] == "2"
    assert facts["files.steps.matches.step"] == "20"


# --- instances, disk, broken roots ---------------------------------------------------------------


def test_file_only_job_gets_a_synthetic_instance(tmp_path: Path) -> None:
    """A job without a source gets one instance `<job>/-`; jobs with a source get none."""
    probe = make(tmp_path, "  sim:\n    files:\n      out: {glob: '*.txt'}\n"
                 "  embed:\n    local: {pids: [1]}\n"
                 "    files:\n      out: {glob: '*.txt', root: 'out/{{ job.id }}/w{{ worker }}'}\n")
    put(tmp_path / "out/77/w1/x.txt", "x", T0)
    instances = {"embed/1": {"job.key": "embed", "job.id": "77", "worker.index": 1},
                 "": {"host.name": "h"}}
    result = tick(probe, tmp_path, T0, instances)
    assert set(result) == {"sim/-", "embed/1"}
    sim = result["sim/-"]
    assert (sim["job.key"], sim["job.name"], sim["job.source"]) == ("sim", "sim", "none")
    assert result["embed/1"]["files.out.count"] == 1
    assert "job.source" not in result["embed/1"]


def test_existing_instance_of_a_sourceless_job_is_reused(tmp_path: Path) -> None:
    """When another probe already made the job's instance, no second one is created."""
    probe = make(tmp_path, "  sim:\n    files:\n      out: {glob: '*.txt'}\n")
    result = tick(probe, tmp_path, T0, {"sim/-": {"job.key": "sim", "job.source": "none"}})
    assert list(result) == ["sim/-"]
    assert "job.key" not in result["sim/-"]


def test_disk_facts(tmp_path: Path) -> None:
    """disk.* comes from an existing folder of the job; missing folders are skipped."""
    probe = make(tmp_path, "  sim:\n    disk: [nowhere, data]\n"
                 "    files:\n      out: {glob: '*.txt', root: missing}\n")
    (tmp_path / "data").mkdir()
    facts = tick(probe, tmp_path, T0)["sim/-"]
    assert facts["disk.total"] > 0
    assert 0 <= facts["disk.free"] <= facts["disk.total"]
    assert facts["disk.used"] >= 0
    assert 0.0 <= facts["disk.free_pct"] <= 100.0
    assert facts["disk.path"] in {str(tmp_path), str(tmp_path / "data")}


def test_a_log_path_rendering_empty_adds_no_disk_folder(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A log path that renders empty (a scheduler's discarded stderr) is no folder for disk.*:
    not the workdir's parent, which is another filesystem when the workdir is a mount."""
    from rulesmon.probes import files

    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    asked: list[str] = []

    def usage(folder: Any) -> tuple[int, int, int]:
        asked.append(str(folder))  # the workdir's parent would be the fullest filesystem
        return (100, 95, 5) if Path(folder) == tmp_path else (100, 10, 90)

    monkeypatch.setattr(files.shutil, "disk_usage", usage)
    probe = make(tmp_path, f"""  sim:
    workdir: {work}
    logs:
      - "logs/out.log"
      - "{{{{ job.stderr if job.stderr != job.stdout else '' }}}}"
""")
    facts = tick(probe, tmp_path, T0, {"sim/1": {"job.key": "sim", "job.stdout": "a",
                                                 "job.stderr": "a"}})["sim/1"]
    assert str(tmp_path) not in asked and facts["disk.path"] in {str(work), str(work / "logs")}
    from rulesmon.probes.base import render_optional_path, render_path
    assert render_optional_path("{{ '' }}", {}, work) is None
    assert render_optional_path("", {}, work) is None
    assert render_path("{{ '' }}", {}, work) == work  # the plain render stays the folder
    assert render_optional_path("{{ 'a.log' }}", {}, work) == work / "a.log"


def test_missing_unreadable_or_file_root(tmp_path: Path) -> None:
    """A missing root, a root that is a file, or a bad template gives count 0 and no crash."""
    put(tmp_path / "afile", "x")
    probe = make(tmp_path, "  sim:\n    files:\n"
                 "      a: {glob: '*.txt', root: missing, validate: json, new_files: true}\n"
                 "      b: {glob: '*.txt', root: afile, stall_after: 1m}\n"
                 "      c: {pattern: '.*', root: '{{ job.id }}'}\n")
    for now in (T0, T0 + 100):
        facts = tick(probe, tmp_path, now)["sim/-"]
        assert facts["files.a.count"] == 0
        assert facts["files.a.valid"] is True
        assert facts["files.a.new"] == []
        assert facts["files.b.count"] == 0
        assert facts["files.b.stalled"] is False
        assert facts["files.c.count"] == 0
    # the folder appears later: its files count as new
    f = put(tmp_path / "missing/x.txt", "1", T0 + 150)
    assert tick(probe, tmp_path, T0 + 200)["sim/-"]["files.a.new"] == [str(f)]


def test_unreadable_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable root gives count 0, and its files are not taken for new ones later."""
    from rulesmon.probes import files as files_mod

    locked = tmp_path / "locked"
    a = put(locked / "a.txt", "x", T0 - 100)
    real = os.scandir

    def deny(path: Any) -> Any:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real(path)

    probe = make(tmp_path, "  sim:\n    files:\n      out: {pattern: '.*', root: locked, "
                 "new_files: true}\n")
    monkeypatch.setattr(files_mod.os, "scandir", deny)
    facts = tick(probe, tmp_path, T0)["sim/-"]
    assert facts["files.out.count"] == 0
    assert facts["files.out.new"] == []
    monkeypatch.setattr(files_mod.os, "scandir", real)
    facts = tick(probe, tmp_path, T0 + 10)["sim/-"]
    assert facts["files.out.count"] == 1
    assert facts["files.out.new"] == []  # the first readable scan is the baseline
    b = put(locked / "b.txt", "y", T0 + 15)
    assert tick(probe, tmp_path, T0 + 20)["sim/-"]["files.out.new"] == [str(b)]
    assert str(a) in tick(probe, tmp_path, T0 + 30)["sim/-"]["files.out.paths"]


def test_file_being_written_at_start_is_reported_once_quiet(tmp_path: Path) -> None:
    """A file changed within quiet_for when rulesmon starts may still be being written: it is
    not part of the baseline, and is reported once it has been quiet."""
    probe = make(tmp_path, "  sim:\n    files:\n      res: {glob: '*.txt', quiet_for: 30s, "
                 "new_files: true}\n")
    put(tmp_path / "old.txt", "done long ago", T0 - 1000)
    writing = put(tmp_path / "writing.txt", "half", T0 - 5)
    assert tick(probe, tmp_path, T0)["sim/-"]["files.res.new"] == []
    append(writing, b" and the rest", T0 + 10)
    assert tick(probe, tmp_path, T0 + 20)["sim/-"]["files.res.new"] == []
    assert tick(probe, tmp_path, T0 + 50)["sim/-"]["files.res.new"] == [str(writing)]
    assert tick(probe, tmp_path, T0 + 60)["sim/-"]["files.res.new"] == []


def test_new_files_survive_a_restart(tmp_path: Path) -> None:
    """With its state beside the state database, a restarted probe reports the files that
    appeared while it was down (and one still pending at shutdown), and never a file it
    already reported or the baseline again."""
    jobs = "  sim:\n    files:\n      res: {glob: 'out/*.txt', quiet_for: 30s, new_files: true}\n"
    state = tmp_path / ".rulesmon" / "files-test.db"
    first = make(tmp_path, jobs)
    first.use_state(state)
    put(tmp_path / "out/base.txt", "x", T0 - 1000)
    tick(first, tmp_path, T0)
    reported = put(tmp_path / "out/a.txt", "a", T0 + 1)
    tick(first, tmp_path, T0 + 10)
    assert tick(first, tmp_path, T0 + 40)["sim/-"]["files.res.new"] == [str(reported)]
    pending = put(tmp_path / "out/b.txt", "b", T0 + 45)
    assert tick(first, tmp_path, T0 + 50)["sim/-"]["files.res.new"] == []
    first.close()
    assert (tmp_path / ".rulesmon" / "files-test.files.db").exists()
    down = put(tmp_path / "out/c.txt", "c", T0 + 100)  # while rulesmon was down
    second = make(tmp_path, jobs)
    second.use_state(state)
    assert tick(second, tmp_path, T0 + 500)["sim/-"]["files.res.new"] == []
    assert tick(second, tmp_path, T0 + 510)["sim/-"]["files.res.new"] == sorted(
        [str(pending), str(down)])
    assert tick(second, tmp_path, T0 + 600)["sim/-"]["files.res.new"] == []
    second.close()


def test_unusable_state_file_leaves_new_files_in_memory(tmp_path: Path, caplog: Any) -> None:
    """A state file that cannot be created is one warning; new files are still reported."""
    blocker = put(tmp_path / "blocker", "a file, not a folder")
    probe = make(tmp_path, "  sim:\n    files:\n      res: {glob: '*.txt', new_files: true}\n")
    probe.use_state(blocker / "state.db")
    with caplog.at_level("WARNING", logger="rulesmon.probes.files"):
        tick(probe, tmp_path, T0)
        a = put(tmp_path / "a.txt", "1", T0 + 5)
        assert tick(probe, tmp_path, T0 + 10)["sim/-"]["files.res.new"] == [str(a)]
        tick(probe, tmp_path, T0 + 20)
    warnings = [r for r in caplog.records if "files_state_unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_engine_restart_keeps_new_file_events(tmp_path: Path) -> None:
    """Through two engine runs on the same state database, a new file is reported in the run
    that sees it and not again in the next one."""
    from rulesmon.engine import Engine
    from rulesmon.testing import NullLog

    text = ("version: 1\nname: parsl\nevery: 1s\njobs:\n  sim:\n    files:\n"
            "      res: {glob: 'out/*.txt', new_files: true}\nrules: []\n")
    path = tmp_path / "r.yaml"
    path.write_text(text)
    seen: list[list[str]] = []
    for run in range(2):
        engine = Engine(load_text(text, str(path)), state_path=tmp_path / "s.db",
                        log=NullLog())
        try:
            engine.tick(T0 + 100 * run)
            if run == 0:
                put(tmp_path / "out/one.txt", "1", T0 + 1)
            engine.tick(T0 + 100 * run + 10)
            seen.append(engine.instances["sim/-"]["files.res.new"])
            engine.tick(T0 + 100 * run + 20)
            seen.append(engine.instances["sim/-"]["files.res.new"])
        finally:
            engine.close()
    assert seen == [[str(tmp_path / "out/one.txt")], [], [], []]


def test_templated_glob_is_rendered_per_instance(tmp_path: Path) -> None:
    """`glob: "out/{{ job.id }}/*.json"` matches each instance's own folder; an instance
    whose fact is missing gets nothing rather than another's files."""
    probe = make(tmp_path, "  sim:\n    local: {pids: [1]}\n    files:\n"
                 "      res: {glob: 'out/{{ job.id }}/*.json'}\n")
    for jid, n in (("11", 2), ("12", 3)):
        for i in range(n):
            put(tmp_path / f"out/{jid}/r{i}.json", "{}", T0 - 100)
    out = tick(probe, tmp_path, T0, {
        "sim/11": {"job.key": "sim", "job.id": "11"},
        "sim/12": {"job.key": "sim", "job.id": "12"},
        "sim/x": {"job.key": "sim"}})
    assert out["sim/11"]["files.res.count"] == 2
    assert out["sim/12"]["files.res.count"] == 3
    assert out["sim/12"]["files.res.paths"][0] == str(tmp_path / "out/12/r0.json")
    assert out["sim/x"]["files.res.count"] == 0


def test_growing_json_is_judged_once_it_settles(tmp_path: Path) -> None:
    """A JSON output still being written is not invalid while it changes; once it has settled
    (or its job has ended) a truncated one is."""
    probe = make(tmp_path, "  sim:\n    local: {pids: [1]}\n    files:\n"
                 "      out: {glob: '*.json', validate: json}\n")
    running = {"sim/1": {"job.key": "sim", "job.id": "1", "job.terminal": False}}
    f = put(tmp_path / "results.json", '{"items": [1, 2', T0)
    for t in (1, 3, 5):
        append(f, b", 3", T0 + t)
        facts = tick(probe, tmp_path, T0 + t + 1, running)["sim/1"]
        assert facts["files.out.valid"] is True, t
    facts = tick(probe, tmp_path, T0 + 60, running)["sim/1"]
    assert facts["files.out.valid"] is False and facts["files.out.invalid"] == [str(f)]
    append(f, b", 4", T0 + 61)
    ended = {"sim/1": {"job.key": "sim", "job.id": "1", "job.terminal": True}}
    assert tick(probe, tmp_path, T0 + 62, ended)["sim/1"]["files.out.valid"] is False
    append(f, b"]}", T0 + 63)
    assert tick(probe, tmp_path, T0 + 64, ended)["sim/1"]["files.out.valid"] is True


# --- new-file events through the engine and across restarts (issue 13, item 20) ----------------

_EVENTS = """\
version: 1
name: parsl
every: 1s
jobs:
  sim:
    files:
      results: {{pattern: 'results-(?P<field>\\S+)\\.txt', root: output, new_files: true}}
rules:
  - name: new-results
    when: files.results.new_count > 0
    severity: info
    resolve: false
    {action}
    message: "{{{{ files.results.new | join(' ') }}}}"
"""


def test_files_new_a_tick_apart_each_notify_once_through_the_engine(tmp_path: Path) -> None:
    """Results A, B and C written a tick apart, then D after a quiet tick, each get exactly
    one notification from a rule on new_count (the Parsl-style example's rule), also across
    an engine restart on the same state database."""
    from rulesmon.engine import Engine
    from rulesmon.testing import NullLog

    text = _EVENTS.format(action="do: [log]")
    path = tmp_path / "r.yaml"
    path.write_text(text)
    out = tmp_path / "output"
    bodies: list[str] = []
    t = T0
    engine = Engine(load_text(text, str(path)), state_path=tmp_path / "s.db", log=NullLog())
    try:
        bodies += [n.body for n in engine.tick(t).fired]  # the baseline: nothing yet
        for name in ("A", "B", "C"):  # one file per tick, on consecutive ticks
            put(out / f"results-{name}.txt", name)
            t += 1
            bodies += [n.body for n in engine.tick(t).fired]
        t += 1
        bodies += [n.body for n in engine.tick(t).fired]  # a tick without new files
        put(out / "results-D.txt", "D")
        t += 1
        bodies += [n.body for n in engine.tick(t).fired]
    finally:
        engine.close()
    put(out / "results-E.txt", "E")  # while rulesmon is down
    engine = Engine(load_text(text, str(path)), state_path=tmp_path / "s.db", log=NullLog())
    try:
        for _ in range(3):
            t += 1
            bodies += [n.body for n in engine.tick(t).fired]
        put(out / "results-F.txt", "F")
        t += 1
        bodies += [n.body for n in engine.tick(t).fired]
    finally:
        engine.close()
    assert bodies == [str(out / f"results-{n}.txt") for n in "ABCDEF"]


def test_a_file_reported_by_an_unused_collection_is_reported_again(tmp_path: Path) -> None:
    """Under the engine a new file is known for good only once the tick that reported it is
    committed: one reported by a collection the engine did not use (timed out) is reported by
    the next, and a committed one never again, even by a restarted probe."""
    jobs = "  sim:\n    files:\n      res: {glob: 'out/*.txt', new_files: true}\n"
    state = tmp_path / ".rulesmon" / "files-test.db"
    probe = make(tmp_path, jobs)
    probe.use_state(state)
    tick(probe, tmp_path, T0)
    probe.tick_committed(T0)
    a = put(tmp_path / "out/a.txt", "a")
    assert tick(probe, tmp_path, T0 + 1)["sim/-"]["files.res.new"] == [str(a)]
    # the engine did not use that result (its tick committed without it): a is due again
    probe.tick_committed(T0 + 2)
    assert tick(probe, tmp_path, T0 + 3)["sim/-"]["files.res.new"] == [str(a)]
    probe.tick_committed(T0 + 3)
    assert tick(probe, tmp_path, T0 + 4)["sim/-"]["files.res.new"] == []
    probe.close()
    b = put(tmp_path / "out/b.txt", "b")
    again = make(tmp_path, jobs)
    again.use_state(state)
    assert tick(again, tmp_path, T0 + 10)["sim/-"]["files.res.new"] == [str(b)]
    again.close()


def test_new_file_events_survive_kill_minus_9_of_a_real_run(tmp_path: Path) -> None:
    """A real `rulesmon run` (exec callbacks, as the Parsl-style example) killed with kill -9
    and restarted calls back exactly once for every result file: those written a tick apart
    before the kill, those written while it was down, and one written after the restart."""
    import signal
    import subprocess
    import sys
    import time

    calls = tmp_path / "callbacks.txt"
    action = ('do:\n      - exec: ["sh", "-c", "echo \\"$0\\" >> ' + str(calls)
              + '", "{{ files.results.new | join(\' \') }}"]')
    path = tmp_path / "r.yaml"
    path.write_text(_EVENTS.format(action=action))
    out = tmp_path / "output"
    out.mkdir()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "rulesmon", "run", str(path), "--allow-exec"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def called() -> list[str]:
        return calls.read_text().split() if calls.exists() else []

    def known() -> set[str]:
        """The paths the files state database holds (the baseline and confirmed reports);
        {""} once the baseline is taken."""
        import sqlite3

        db_path = tmp_path / ".rulesmon" / "parsl.files.db"
        if not db_path.exists():
            return set()
        try:
            with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
                sets = db.execute("SELECT count(*) FROM sets").fetchone()[0]
                return {r[0] for r in db.execute("SELECT path FROM seen")} | (
                    {""} if sets else set())
        except sqlite3.Error:  # not created yet
            return set()

    def until(check: Any, what: str) -> None:
        deadline = time.monotonic() + 60
        while not check():
            assert time.monotonic() < deadline, (what, called(), known())
            time.sleep(0.1)

    def wait_for(names: str) -> None:
        want = {str(out / f"results-{n}.txt") for n in names}
        until(lambda: want <= set(called()), f"callbacks for {names}")

    run = start()
    try:
        until(lambda: "" in known(), "the baseline")  # taken on its first tick (empty)
        for name in "AB":  # a tick apart
            put(out / f"results-{name}.txt", name)
            time.sleep(1.0)
        wait_for("AB")
        # the tick that reported B is committed (B is known for good): kill -9 after it
        until(lambda: str(out / "results-B.txt") in known(), "B confirmed")
        run.send_signal(signal.SIGKILL)
        run.wait(30)
        for name in "CD":  # while rulesmon is down
            put(out / f"results-{name}.txt", name)
        run = start()
        wait_for("CD")
        put(out / "results-E.txt", "E")
        wait_for("E")
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(60)
    got = called()
    assert sorted(got) == [str(out / f"results-{n}.txt") for n in "ABCDE"], got
