"""`rulesmon lint`: load every ruleset given, run the static checks, collect diagnostics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..config.loader import Loaded, load
from ..diagnostics import Diagnostic, RulesetError, Severity, make

SUFFIXES = (".yaml", ".yml")


def expand(paths: Iterable[str]) -> tuple[list[Path], list[Diagnostic]]:
    """Files to lint: given files as they are, folders searched for *.yaml / *.yml.

    `*.test.yaml` files are rule tests for `rulesmon test`, not rulesets, and are skipped in
    folders.
    """
    files: list[Path] = []
    problems: list[Diagnostic] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file()
                           and not f.name.endswith((".test.yaml", ".test.yml"))
                           and not any(part.startswith(".")
                                       for part in f.relative_to(p).parts))
            files += found
        elif p.exists():
            files.append(p)
        else:
            problems.append(make(raw, 0, 0, "RM001", "no such file or folder"))
    return files, problems


def lint_file(path: Path, env: Mapping[str, str] | None = None,
              extends_path: Sequence[str | Path] = ()) -> list[Diagnostic]:
    from .checks import check

    try:
        loaded = load(path, env, extends_path)
        return check(loaded)
    except RulesetError as exc:
        return exc.diagnostics
    except RecursionError:
        return [make(str(path), 0, 0, "RM006", "document nests too deep")]
    except Exception as exc:  # never a traceback for a user's file: report and go on
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return [make(str(path), 0, 0, "RM009",
                     f"internal error {type(exc).__name__}: {detail} (please report this)")]


def load_checked(path: str | Path, env: Mapping[str, str] | None = None,
                 extends_path: Sequence[str | Path] = ()) -> Loaded:
    """A ruleset for use by `run`, `facts` and `test`: what `rulesmon lint` refuses is refused
    here too (RulesetError with lint's error diagnostics), so a misspelt fact or function never
    runs silently or ends in a traceback at the first tick. Warnings do not stop a run."""
    from .checks import check

    try:
        loaded = load(path, env, extends_path)
        errors = [d for d in check(loaded) if d.severity is Severity.ERROR]
    except RecursionError:
        errors = [make(str(path), 0, 0, "RM006", "document nests too deep")]
    if errors:
        raise RulesetError(errors)
    return loaded


def lint(paths: Iterable[str], env: Mapping[str, str] | None = None,
         extends_path: Sequence[str | Path] = ()) -> list[Diagnostic]:
    files, diags = expand(paths)
    for f in files:
        diags += lint_file(f, env, extends_path)
    return diags
