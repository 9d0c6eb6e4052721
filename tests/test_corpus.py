"""The corpus of broken rulesets: each file holds one mistake and must give its exact diagnostic.

`tests/corpus/bad/expected.txt` lists, one line per file, `NAME LINE:COL CODE`: the first
diagnostic (sorted by line and column) that `lint_file` must report for that file. Files that
cannot be committed sensibly (binary, over 1 MiB) are generated into tmp_path by dedicated
tests below.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import pytest

from rulesmon.diagnostics import Diagnostic
from rulesmon.lint import lint, lint_file

from .conftest import ROOT, run_cli

CORPUS = ROOT / "tests" / "corpus" / "bad"
EXPECTED_FILE = CORPUS / "expected.txt"

_LINE = re.compile(r"(?P<name>\S+\.ya?ml) (?P<line>\d+):(?P<col>\d+) (?P<code>RM\d{3})")
_RENDERED = re.compile(
    r"(?P<path>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning|info) "
    r"(?P<code>RM\d{3}) (?P<message>\S.*)"
)


def _read_expected() -> list[tuple[str, int, int, str]]:
    out = []
    for number, raw in enumerate(EXPECTED_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        m = _LINE.fullmatch(raw.strip())
        assert m, f"expected.txt line {number} is not `NAME LINE:COL CODE`: {raw!r}"
        out.append((m["name"], int(m["line"]), int(m["col"]), m["code"]))
    return out


EXPECTED = _read_expected()

#: Parts the message of the first diagnostic must contain (did-you-mean hints, named variables).
MESSAGE_CONTAINS: dict[str, str] = {
    "001-unknown-top-key.yaml": 'did you mean "rules"',
    "002-unknown-job-key.yaml": 'did you mean "logs"',
    "003-unknown-slurm-key.yaml": 'did you mean "user"',
    "004-unknown-log-key.yaml": 'did you mean "extract"',
    "005-unknown-files-key.yaml": 'did you mean "stall_after"',
    "006-unknown-rule-key.yaml": 'did you mean "severity"',
    "007-unknown-action-key.yaml": 'did you mean "title"',
    "022-lambda.yaml": "lambda",
    "033-unset-env-var.yaml": "NOPE_NOT_SET",
    "034-malformed-interpolation.yaml": "${A B}",
    "036-extends-unknown-builtin.yaml": 'did you mean "slurm-basics"',
    "038-unknown-fact.yaml": 'did you mean "state"',
    "039-unknown-extractor-group.yaml": 'did you mean "step"',
    "040-unknown-function.yaml": 'did you mean "rate"',
    "043-unknown-fact-in-template.yaml": 'did you mean "name"',
    "044-unknown-notify-target.yaml": 'did you mean "team"',
    "047-rule-unknown-job.yaml": 'did you mean "train"',
    "048-unknown-preset.yaml": 'did you mean "tqdm"',
    "049-state-lowercase.yaml": 'did you mean "RUNNING"',
    "079-unknown-target-key.yaml": 'did you mean "timeout"',
    "080-unknown-log-action-key.yaml": 'did you mean "message"',
    "081-unknown-repeat-key.yaml": 'did you mean "backoff"',
    "082-unknown-defaults-key.yaml": 'did you mean "severity"',
    "100-unset-env-in-list.yaml": "NOPE_SCRATCH_NOT_SET",
}


def _first(diags: list[Diagnostic]) -> Diagnostic:
    return sorted(diags, key=lambda d: (d.line, d.col))[0]


def _assert_clean_messages(diags: list[Diagnostic]) -> None:
    for d in diags:
        assert "\n" not in d.message and "\r" not in d.message, f"multi-line message: {d}"
        assert "Traceback" not in d.message, f"traceback in message: {d}"
        assert d.code != "RM009", f"internal error: {d}"


def test_expected_lists_every_corpus_file() -> None:
    """expected.txt has exactly one line for every YAML file under the corpus folder."""
    names = [name for name, *_ in EXPECTED]
    on_disk = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.y*ml"))
    assert len(names) == len(set(names)), "a file is listed twice in expected.txt"
    assert sorted(names) == on_disk
    assert len(names) >= 45


@pytest.mark.parametrize(("name", "line", "col", "code"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_corpus_file_gives_expected_diagnostic(name: str, line: int, col: int, code: str) -> None:
    """Each broken file's first diagnostic has the expected code at the expected line:col."""
    diags = lint_file(CORPUS / name, {})
    assert diags, f"{name}: no diagnostic at all, expected {code} at {line}:{col}"
    _assert_clean_messages(diags)
    first = _first(diags)
    rendered = "\n".join(d.render() for d in diags)
    assert (first.code, first.line, first.col) == (code, line, col), (
        f"{name}: expected {code} at {line}:{col}, got:\n{rendered}"
    )


@pytest.mark.parametrize(
    ("name", "part"), sorted(MESSAGE_CONTAINS.items()), ids=sorted(MESSAGE_CONTAINS)
)
def test_corpus_message_is_helpful(name: str, part: str) -> None:
    """The first diagnostic's message names the culprit or suggests the right spelling."""
    diags = lint_file(CORPUS / name, {})
    assert diags, f"{name}: no diagnostic"
    first = _first(diags)
    assert part in first.message, f"{name}: {part!r} not in {first.render()!r}"


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    """A billion-laughs document twelve levels deep is refused with one RM006, without hanging."""
    # The test finishing at all is the point: expanding these aliases would never end.
    names = "abcdefghijklm"
    lines = ["version: 1", "name: bomb", "x-a: &a [" + ", ".join(['"lol"'] * 10) + "]"]
    lines += [
        f"x-{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]"
        for prev, cur in itertools.pairwise(names)
    ]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    diags = lint_file(path, {})
    _assert_clean_messages(diags)
    assert [d.code for d in diags] == ["RM006"]


@pytest.mark.parametrize(
    ("data", "line", "col"),
    [
        (b"version: 1\nname: d\x00emo\n", 2, 8),
        (b"\x00\x01\x02\x03binary\x00", 1, 1),
        (b"version: 1\nname: caf\xe9\n", 2, 10),
    ],
    ids=["nul-mid-line", "nul-at-start", "invalid-utf8"],
)
def test_binary_file_is_refused(tmp_path: Path, data: bytes, line: int, col: int) -> None:
    """A file with NUL bytes or invalid UTF-8 gives exactly one RM003 at the offending byte."""
    path = tmp_path / "binary.yaml"
    path.write_bytes(data)
    diags = lint_file(path, {})
    _assert_clean_messages(diags)
    assert [(d.code, d.line, d.col) for d in diags] == [("RM003", line, col)]


def test_file_over_one_mib_is_refused(tmp_path: Path) -> None:
    """A ruleset larger than 1 MiB gives exactly one RM002 about the whole file (0:0)."""
    path = tmp_path / "huge.yaml"
    filler = "# " + "x" * 97 + "\n"
    path.write_text(
        "version: 1\nname: huge\n" + filler * ((1 << 20) // len(filler) + 10), encoding="utf-8"
    )
    assert path.stat().st_size > 1 << 20
    diags = lint_file(path, {})
    _assert_clean_messages(diags)
    assert [(d.code, d.line, d.col) for d in diags] == [("RM002", 0, 0)]


def test_cli_lints_the_corpus_folder() -> None:
    """`rulesmon lint` on the corpus folder exits 1 and prints one well-formed line per finding."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOPE_")}
    folder = CORPUS.relative_to(ROOT).as_posix()
    proc = run_cli("lint", folder, env=env)
    assert "Traceback" not in proc.stdout
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    bad = [ln for ln in lines if not _RENDERED.fullmatch(ln)]
    assert not bad, f"lines not in `path:line:col: severity CODE message` form: {bad[:5]}"
    assert not [ln for ln in lines if " RM009 " in ln]
    assert len(lines) == len(lint([str(CORPUS)], env))
    paths = {m["path"] for m in map(_RENDERED.fullmatch, lines) if m}
    assert all(p.startswith(folder + "/") for p in paths)
