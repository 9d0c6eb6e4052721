"""Benchmark: `rulesmon lint` of hostile rulesets (format and template bombs) finishes quickly.

Each hostile file holds one bomb from tests/hostile/test_evaluation.py (the slowest ones: nested
loops, macro and loop recursion, a captured loop, a 1 GB %-format condition) and one file holds
all of them. Each is linted with the real CLI in a subprocess; the baseline, in the same run, is
lint of a clean file of the same shape, which pays the same interpreter start-up. Target: every
hostile file under 5 s wall clock, and within 2 s of the baseline.

Also measured: rendering the default notification body with the bounded sandbox, against
Jinja2's plain ImmutableSandboxedEnvironment (the floor); target within 3x.
Run: python benchmarks/hostile_lint.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rulesmon import templates
from rulesmon.rules.program import DEFAULT_MESSAGE

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.hostile.test_evaluation import CONDITIONS, TEMPLATES  # noqa: E402

SLOW = ["nested-loops", "macro-recursion", "recursive-loop", "captured-loop", "range-join"]


def _file(folder: Path, name: str, rules: list[str]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text("version: 1\nname: bench\njobs:\n  train:\n    logs:\n"
                    "      - path: train.log\nrules:\n" + "".join(rules), encoding="utf-8")
    return path


def _rule(i: int, when: str, message: str | None = None) -> str:
    def q(t: str) -> str:
        return "'" + t.replace("'", "''") + "'"
    out = f"  - name: r{i}\n    when: {q(when)}\n    do: [log]\n"
    return out + (f"    message: {q(message)}\n" if message else "")


def _lint_seconds(path: Path, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rulesmon", "lint", str(path)],
                       capture_output=True, timeout=120, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clean = _file(folder, "clean", [_rule(0, "known(log.tail)", "{{ log.tail }}")])
        base = _lint_seconds(clean)
        print(f"baseline: lint of a clean file: {base:.2f} s")
        files = {name: _file(folder, name, [_rule(0, "known(log.tail)", TEMPLATES[name])])
                 for name in SLOW}
        files["percent-condition"] = _file(folder, "cond", [_rule(0, CONDITIONS["percent-width"])])
        files["all-bombs"] = _file(folder, "all", [
            *(_rule(i, c) for i, c in enumerate(CONDITIONS.values())),
            *(_rule(100 + i, "known(log.tail)", t) for i, t in enumerate(TEMPLATES.values()))])
        worst = 0.0
        for name, path in files.items():
            t = _lint_seconds(path)
            worst = max(worst, t)
            print(f"lint {name:18s} {t:5.2f} s  (+{t - base:.2f} s over the baseline)")
        print(f"worst: {worst:.2f} s (target < 5 s)")

    ctx = {"rule": {"name": "r", "severity": "critical", "description": "d", "labels": {}},
           "alert": {"state": "firing", "instance": "train/1", "duration": 5.0},
           "job": {"name": "train", "id": "1", "state": "FAILED", "exit_code": 1},
           "log": {"tail": "a\nb\nc"}}
    plain = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    plain.filters.update(templates.FILTERS)
    floor_t = plain.from_string(DEFAULT_MESSAGE)
    n = 5000
    start = time.perf_counter()
    for _ in range(n):
        floor_t.render(ctx)
    floor = (time.perf_counter() - start) / n
    templates.render(DEFAULT_MESSAGE, ctx, strict=False)
    start = time.perf_counter()
    for _ in range(n):
        templates.render(DEFAULT_MESSAGE, ctx, strict=False)
    ours = (time.perf_counter() - start) / n
    print(f"default message: plain sandbox {floor * 1e6:.0f} us, bounded {ours * 1e6:.0f} us "
          f"({ours / floor:.1f}x, target <= 3x)")


if __name__ == "__main__":
    main()
