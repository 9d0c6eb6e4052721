"""Benchmark: lint 500 rule files, against plain ruamel.yaml parsing of the same files.

Run: python benchmarks/lint_500.py
The baseline (round-trip YAML parsing alone, the floor any located-error linter pays) is
measured in the same run, so the ratio is stable across machines.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

from rulesmon.lint import lint

TEMPLATE = """\
# yaml-language-server: $schema=../schemas/ruleset.schema.json
version: 1
name: bench-{i}
extends: [builtin:slurm-basics]
every: 60s
notify:
  team: "json://127.0.0.1:9/hook-{i}"
defaults:
  notify: [team]
jobs:
  train:
    slurm: {{user: alice, name: "ft-{i}-*"}}
    logs:
      - path: "logs/{{{{ job.id }}}}.out"
        preset: [tqdm, traceback, cuda-oom]
        extract:
          step: 'step (?P<step>\\d+)/(?P<total>\\d+)'
          loss: 'loss[=:]\\s*(?P<loss>[0-9.eE+-]+)'
        errors:
          nccl: 'NCCL error'
    files:
      checkpoints: {{glob: "ckpt/*.pt", expect_every: 30m}}
    progress: {{done: log.step, total: log.total}}
rules:
  - name: stalled
    when: job.state == "RUNNING" and progress.age > 600
    for: 5m
    repeat: 1h
    message: "[{i}] {{{{ job.name }}}} stalled at {{{{ progress.done }}}}/{{{{ progress.total }}}}"
  - name: loss-rising
    when: rate(log.loss, "10m") > 0 and avg(log.loss, "30m") > {i}
    for: 10m
    message: "loss rising in {i}: {{{{ log.loss | round(3) }}}}"
  - name: checkpoint-late
    when: files.checkpoints.late
    message: "run {i}: no checkpoint for {{{{ files.checkpoints.age | duration }}}}"
"""


def main(n: int = 500) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(n):
            (root / f"r{i:03d}.yaml").write_text(TEMPLATE.format(i=i), encoding="utf-8")
        files = sorted(root.glob("*.yaml"))
        lint([str(files[0])])  # warm imports (apprise, pydantic) outside the timing

        t0 = time.perf_counter()
        yaml = YAML(typ="rt", pure=True)
        for f in files:
            yaml.load(f.read_text(encoding="utf-8"))
        base = time.perf_counter() - t0

        t0 = time.perf_counter()
        diags = lint([str(root)])
        took = time.perf_counter() - t0
    assert not [d for d in diags if d.severity.value == "error"], diags[:3]
    print(f"files: {n}")
    print(f"baseline (ruamel.yaml round-trip parse only): {base:.2f} s ({n / base:.0f} files/s)")
    print(f"rulesmon lint (parse, extends, validate, static checks): {took:.2f} s "
          f"({n / took:.0f} files/s, {took / n * 1000:.1f} ms per file)")
    print(f"ratio lint / parse: {took / base:.1f}x")


if __name__ == "__main__":
    main()
