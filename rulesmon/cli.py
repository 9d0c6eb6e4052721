"""The command line: arguments in, calls out. Nothing else lives here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__

FORMATS = ("text", "json", "github", "sarif")
REPO_ROOT = Path(__file__).resolve().parent.parent


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rulesmon")
def main() -> None:
    """Watch cluster jobs with declarative rules.

    \b
      rulesmon lint rulesets/        check rule files (CI)
      rulesmon schema                write the JSON Schema for editors
    """


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when clean.")
def lint(paths: tuple[str, ...], fmt: str, strict: bool, quiet: bool) -> None:
    """Check ruleset files and folders.

    Exit status: 0 clean (warnings allowed unless --strict), 1 findings, 2 usage error or
    unreadable input.
    """
    from .diagnostics import FORMATTERS, Severity, effective
    from .lint import lint as run_lint

    diags = run_lint(paths)
    text = FORMATTERS[fmt](diags, strict=strict)
    if (text and (diags or fmt != "text")) or fmt != "text":
        click.echo(text)
    if any(d.code == "RM001" for d in diags):
        sys.exit(2)
    if any(effective(d, strict=strict) is Severity.ERROR for d in diags):
        sys.exit(1)
    if not diags and not quiet and fmt == "text":
        click.echo(f"{len(paths)} path(s) checked: no findings", err=True)


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to write (default schemas/ruleset.schema.json in the "
              "source tree, or stdout).")
@click.option("--check", is_flag=True, help="Exit 1 if the file differs from the models.")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print instead of writing.")
def schema(output: Path | None, check: bool, to_stdout: bool) -> None:
    """Write the ruleset JSON Schema generated from the models."""
    from .config.schema import dumps

    text = dumps()
    _write_generated(text, output, REPO_ROOT / "schemas" / "ruleset.schema.json", check,
                     to_stdout)


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 if a page differs from the registries.")
def docs(check: bool) -> None:
    """Write docs/diagnostics.md and docs/facts.md from the registries."""
    from . import diagnostics, facts

    pages = {"diagnostics.md": diagnostics.render_docs(), "facts.md": facts.render_docs()}
    for name, text in pages.items():
        _write_generated(text, None, REPO_ROOT / "docs" / name, check, False)


def _write_generated(text: str, output: Path | None, default: Path, check: bool,
                     to_stdout: bool) -> None:
    target = output or (default if default.parent.is_dir() else None)
    if to_stdout or target is None:
        click.echo(text, nl=False)
        return
    if check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            command = "docs" if default.parent.name == "docs" else "schema"
            click.echo(f"{target} is stale: run `rulesmon {command}`", err=True)
            sys.exit(1)
        return
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
