"""The command line: arguments in, calls out. Nothing else lives here."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, overload

import click

from . import __version__

FORMATS = ("text", "json", "github", "sarif")
#: `--extends-path DIR` (repeatable): folders, besides the ruleset's own, that `extends:` may read.
_EXTENDS_PATH = click.option(
    "--extends-path", "extends_path", multiple=True, metavar="DIR",
    type=click.Path(file_okay=False),
    help="A folder `extends:` entries may also read from (repeatable; also "
    "RULESMON_EXTENDS_PATH). Without it, only builtin:NAME and files under the ruleset's "
    "own folder.")
REPO_ROOT = Path(__file__).resolve().parent.parent


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rulesmon")
def main() -> None:
    """Watch cluster jobs with declarative rules.

    \b
      rulesmon demo                  launch and watch a small local demo job
      rulesmon run RULESET           watch until every job is terminal
      rulesmon lint rulesets/        check rule files (CI)
      rulesmon test RULESET TESTS    unit-test rules against timed facts
      rulesmon facts RULESET         print the facts the rules would see now
      rulesmon schema                write the JSON Schema for editors
      rulesmon history / stats       jobs recorded, and their totals
      rulesmon show JOB              everything known about one job
      rulesmon serve [RULESET]       web dashboard of the history (read-only)
      rulesmon track -- CMD ARGS     run a command and record it in the history
    """


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when clean.")
@_EXTENDS_PATH
def lint(paths: tuple[str, ...], fmt: str, strict: bool, quiet: bool,
         extends_path: tuple[str, ...]) -> None:
    """Check ruleset files and folders.

    Exit status: 0 clean (warnings allowed unless --strict), 1 findings, 2 usage error or
    unreadable input.
    """
    from .diagnostics import FORMATTERS, Severity, effective
    from .lint import lint as run_lint

    diags = run_lint(paths, extends_path=extends_path)
    text = FORMATTERS[fmt](diags, strict=strict)
    if (text and (diags or fmt != "text")) or fmt != "text":
        click.echo(text)
    if any(d.code == "RM001" for d in diags):
        sys.exit(2)
    if any(effective(d, strict=strict) is Severity.ERROR for d in diags):
        sys.exit(1)
    if not diags and not quiet and fmt == "text":
        click.echo(f"{len(paths)} path(s) checked: no findings", err=True)


def _load_or_exit(path: str, extends_path: tuple[str, ...] = (), *, checked: bool = True
                  ) -> Any:
    """The ruleset, or exit 2 with its errors: `checked` applies lint's errors too (run,
    facts, test), so nothing runs that `rulesmon lint` refuses."""
    from .config.loader import load
    from .diagnostics import RulesetError, format_text
    from .lint import load_checked

    try:
        if checked:
            return load_checked(path, extends_path=extends_path)
        return load(path, extends_path=extends_path)
    except RulesetError as exc:
        click.echo(format_text(exc.diagnostics), err=True)
        n = len(exc.diagnostics)
        click.echo(f"rulesmon: {path}: {n} error{'s' if n != 1 else ''}; nothing was run",
                   err=True)
        sys.exit(2)


def _state_path(loaded: Any, state: Path | None) -> Path:
    if state is not None:
        return state
    base = Path(loaded.path).resolve().parent
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in loaded.ruleset.name)
    return base / ".rulesmon" / f"{safe}.db"


@main.command()
@click.argument("ruleset", type=click.Path(dir_okay=False))
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--dry-run", is_flag=True,
              help="Evaluate and print what would fire; launch and send nothing.")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="State database (default .rulesmon/<name>.db beside the ruleset).")
@click.option("--allow-exec", is_flag=True, help="Let `exec` actions run commands.")
@click.option("--allow-control", is_flag=True,
              help="Let `control` actions cancel, requeue, hold, release or remove jobs.")
@click.option("--log-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write JSON lines logs to this file.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--live", is_flag=True,
              help="Full-screen dashboard while watching (needs a terminal; without one, "
              "plain timestamped lines are printed anyway).")
@click.option("--group", "group", metavar="KEY=VALUE", default=None,
              help="Watch only the instances whose KEY (a DAG node's VARS key, or a fact) "
              "is VALUE, e.g. --group run_uuid=abc123.")
@click.option("--run-uuid", default=None, metavar="UUID",
              help="Watch one training run: the same as --group run_uuid=UUID.")
@click.option("--every", "every", metavar="DURATION", default=None,
              help="Tick interval for this run (5s, 1m), instead of the ruleset's `every:`.")
@_EXTENDS_PATH
def run(ruleset: str, once: bool, dry_run: bool, state: Path | None, allow_exec: bool,
        allow_control: bool, log_json: Path | None, verbose: bool, live: bool,
        group: str | None, run_uuid: str | None, every: str | None,
        extends_path: tuple[str, ...]) -> None:
    """Watch the jobs of RULESET until every one is terminal.

    When stdout is not a terminal, prints plain timestamped lines (STATUS_CHECK,
    STATE_CHANGE, COMPUTE_METRICS, RESOURCE_STATUS, RUN_PROGRESS, ALERT, ALL_COMPLETE) on it.

    SIGHUP reloads RULESET between two ticks: lint first (a bad file keeps the old one
    running), alert states kept for rules that still exist; a changed `jobs:` waits for a
    restart (docs/reliability.md).

    Exit status: 0 when every job succeeded, 1 when one failed or could not be found
    (UNKNOWN: an id or pid no scheduler or process has), 3 when none failed but one ended
    with an outcome no evidence shows (`run.unknown`), the code of a `stop` action (a bare
    `stop` keeps 0, 1 or 3), 2 for an unusable ruleset or state file (lint errors; a state
    that is damaged, not writable, or in use by another run), 128+N after signal N (SIGINT
    and SIGTERM end a run within about 2 s; 137 when rulesmon was stuck in C code and its
    watchdog had to kill it).
    """
    sys.exit(_run(ruleset, once=once, dry_run=dry_run, state=state, allow_exec=allow_exec,
                  allow_control=allow_control, log_json=log_json, verbose=verbose, live=live,
                  group_filter=_group_filter(group, run_uuid),
                  every=_duration_opt(every, "--every", ruleset_field="every"),
                  extends_path=extends_path))


@overload
def _duration_opt(text: str, hint: str, *, ruleset_field: str | None = None,
                  positive: bool = False) -> float: ...


@overload
def _duration_opt(text: str | None, hint: str, *, ruleset_field: str | None = None,
                  positive: bool = False) -> float | None: ...


def _duration_opt(text: str | None, hint: str, *, ruleset_field: str | None = None,
                  positive: bool = False) -> float | None:
    """A duration option in seconds (None when not given), or click's usage error naming the
    option. `ruleset_field`: checked as that Ruleset field is (its bounds too), so the option
    takes what a ruleset may say and nothing more."""
    if text is None:
        return None
    try:
        if ruleset_field is not None:
            from typing import Annotated

            from pydantic import TypeAdapter, ValidationError

            from .config.models import Ruleset

            info = Ruleset.model_fields[ruleset_field]
            form: Any = Annotated[info.annotation, *info.metadata]  # the field as declared
            try:
                seconds = float(TypeAdapter(form).validate_python(text))
            except ValidationError as exc:
                raise ValueError(exc.errors()[0]["msg"]) from None
        else:
            from .config.units import parse_duration

            seconds = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    if positive and seconds <= 0:
        raise click.BadParameter("must be more than 0s", param_hint=hint)
    return seconds


def _group_filter(group: str | None, run_uuid: str | None) -> tuple[str, str] | None:
    if group is not None and run_uuid is not None:
        raise click.UsageError("give --group or --run-uuid, not both")
    if run_uuid is not None:
        return ("run_uuid", run_uuid)
    if group is None:
        return None
    key, eq, value = group.partition("=")
    if not eq or not key.strip():
        raise click.BadParameter("expected KEY=VALUE, such as run_uuid=abc123",
                                 param_hint="--group")
    return (key.strip(), value)


def _run(ruleset: str, *, once: bool = False, dry_run: bool = False, state: Path | None = None,
         allow_exec: bool = False, allow_control: bool = False, log_json: Path | None = None,
         verbose: bool = False, live: bool = False,
         group_filter: tuple[str, str] | None = None, every: float | None = None,
         extends_path: tuple[str, ...] = ()) -> int:
    import dataclasses

    import structlog

    from . import display, logsetup
    from .delivery import Delivery
    from .engine import Engine

    loaded = _load_or_exit(ruleset, extends_path)
    if every is not None:  # --every: this run's tick, as if the ruleset said so
        loaded = dataclasses.replace(loaded, ruleset=loaded.ruleset.model_copy(
            update={"every": every}))
    log = logsetup.setup("debug" if verbose else "info", log_json)
    structlog.contextvars.bind_contextvars(ruleset=loaded.ruleset.name)
    state_path = _state_path(loaded, state)
    from .probes.handles import raise_nofile_limit

    raise_nofile_limit()  # many followed logs; the logs probe keeps within the limit anyway
    import sqlite3

    from .statelock import StateLock, StateLockError
    from .store import SchemaError, StorageError
    from .storefaults import classify

    # one run per state file: a second refuses before it launches or sends anything (a dry
    # run keeps its state in memory and needs no lock)
    lock = StateLock(state_path)
    if not dry_run:
        try:
            lock.acquire()
        except StateLockError as exc:
            click.echo(f"rulesmon: {exc}", err=True)
            return 2
    shown = display.for_run(loaded, live=live)
    try:
        engine = Engine(loaded, state_path=state_path, log=log, dry_run=dry_run,
                        allow_exec=allow_exec, allow_control=allow_control,
                        observers=shown.observers, group_filter=group_filter)
    except (SchemaError, StorageError, sqlite3.Error) as exc:
        # a state file from a newer rulesmon, damaged, not a database, or not writable
        why = exc if isinstance(exc, SchemaError) else classify(exc, state_path)
        click.echo(f"rulesmon: {why}", err=True)
        lock.release()
        return 2
    from .reload import loader  # SIGHUP reads the ruleset again (rulesmon/reload.py)

    engine.reload_from = loader(ruleset, extends_path, every)
    if not dry_run:
        engine.delivery = Delivery(state_path, loaded.ruleset.notify, loaded.secrets, log)
        engine.delivery.start()
    from .signals import HardStop, exit_now

    # SIGINT/SIGTERM end the run within about 2 s whatever the tick is doing; the watchdog
    # process covers an interpreter stuck in C code (rulesmon/signals.py)
    watchdog = HardStop()
    try:
        with shown:
            code = engine.run(once=once, hard_stop=watchdog)
            shown.finished(code)
    finally:
        engine.close()
        watchdog.close()
        lock.release()
    if engine.storage_error is not None:  # rulesmon/storefaults.py: ended as on SIGTERM
        click.echo(f"rulesmon: {engine.storage_error}; the run was stopped as on SIGTERM",
                   err=True)
    if engine.interrupted is not None:  # a probe thread stuck in a hung command: not joined
        exit_now(code)
    return code


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where to put the demo (default: a new temporary folder).")
@click.option("--live/--no-live", default=None,
              help="The dashboard (default: when stdout is a terminal).")
def demo(directory: Path | None, live: bool | None) -> None:
    """Launch and watch the quick-start demo: three training workers, one of which crashes."""
    import tempfile
    from importlib import resources

    target = directory or Path(tempfile.mkdtemp(prefix="rulesmon-demo-"))
    source = resources.files("rulesmon") / "demo"
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name.endswith((".py", ".yaml")) and not item.name.startswith("__"):
            (target / item.name).write_bytes(item.read_bytes())
    click.echo(f"demo folder: {target}", err=True)
    sys.exit(_run(str(target / "ruleset.yaml"),
                  live=sys.stdout.isatty() if live is None else live))


@main.command()
@click.argument("ruleset", type=click.Path(dir_okay=False))
@click.argument("tests", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@_EXTENDS_PATH
def test(ruleset: str, tests: tuple[Path, ...], extends_path: tuple[str, ...]) -> None:
    """Run rule unit tests (default: RULESET's sibling <name>.test.yaml)."""
    import logging

    from . import redact
    from .diagnostics import RulesetError, format_text
    from .testing import run_file

    logging.getLogger("test").setLevel(logging.CRITICAL)
    path = Path(ruleset)
    files = list(tests) or [path.with_name(path.name.rsplit(".", 1)[0] + ".test.yaml")]
    failed = 0
    for tfile in files:
        try:
            results = run_file(path, tfile, extends_path)
        except RulesetError as exc:  # the ruleset's lint errors, or a malformed test file
            click.echo(format_text(exc.diagnostics), err=True)
            click.echo(f"rulesmon: {tfile}: not run; fix the errors above", err=True)
            sys.exit(2)
        for result in results:
            click.echo(f"{'PASS' if result.ok else 'FAIL'} {tfile}: {result.name}")
            for line in result.diff:  # the test's engine activated the ruleset's secrets
                click.echo(redact.scrub(line))
            failed += not result.ok
        click.echo(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("ruleset", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text",
              show_default=True)
@_EXTENDS_PATH
def facts(ruleset: str, fmt: str, extends_path: tuple[str, ...]) -> None:
    """Collect facts once (launching nothing) and print them per job instance; facts that
    the rules use but no probe provided are marked unknown."""
    from . import jsonout, logsetup
    from .engine import Engine
    from .rules.program import build

    loaded = _load_or_exit(ruleset, extends_path)
    log = logsetup.setup("error")  # on stderr: stdout holds the facts (JSON must parse)
    engine = Engine(loaded, state_path=Path(":memory:"), log=log, dry_run=True)
    try:
        engine.start()
        engine.tick()
    finally:
        engine.close()
    used = sorted({k for r in build(loaded.ruleset).rules for k in r.condition.keys})
    groups = engine.group_instances()  # training runs (`group_by`): what scope: group sees
    # secrets masked (rulesmon/redact.py): a process's command line may hold a token
    rows = loaded.secrets.scrub_obj({"run": engine.run_facts, **engine.instances, **groups})
    run_level = ("run", "host", "probe")

    def unknown(key: str, values: dict[str, Any]) -> list[str]:
        """Used facts this row's scope should have and does not."""
        out = []
        for name in used:
            prefix = name.split(".", 1)[0]
            scope_ok = prefix in run_level if key == "run" else prefix == "group" \
                if key in groups else prefix not in (*run_level, "group")
            if scope_ok and name not in values and name not in engine.run_facts:
                out.append(name)
        return out

    if fmt == "json":  # NaN and infinity as null: strict parsers refuse the bare words
        click.echo(jsonout.dumps({k: {"facts": v, "unknown": unknown(k, v)}
                                  for k, v in rows.items()}, indent=2))
        return
    for key, values in rows.items():
        click.echo(f"== {key}")
        for name in sorted(values):
            click.echo(f"  {name} = {values[name]!r}")
        for name in unknown(key, values):
            click.echo(f"  {name} = unknown")


@main.group()
def silence() -> None:
    """Mute notifications of matching alerts for a while (they are still evaluated and
    logged)."""


@contextlib.contextmanager
def _store_for(ruleset: str, state: Path | None) -> Iterator[Any]:
    """The ruleset's state store for a short command; a state that is damaged, not SQLite or
    not writable is one line and exit 2, never a traceback."""
    import sqlite3

    from .store import SchemaError, StateStore, StorageError
    from .storefaults import classify

    loaded = _load_or_exit(ruleset, checked=False)  # only its name and folder are needed
    path = _state_path(loaded, state)
    store = None
    try:
        store = StateStore(path)
        yield store
    except (SchemaError, StorageError, sqlite3.Error) as exc:
        click.echo(f"rulesmon: {exc if isinstance(exc, SchemaError) else classify(exc, path)}",
                   err=True)
        sys.exit(2)
    finally:
        if store is not None:
            store.close()


@silence.command("add")
@click.argument("ruleset", type=click.Path(dir_okay=False))
@click.option("--rule", default="*", show_default=True, help="Rule name or glob.")
@click.option("--instance", default="*", show_default=True,
              help="Instance key or glob (train/12345, train/*).")
@click.option("--for", "duration", required=True, help="How long: 30m, 2h, 1d.")
@click.option("--comment", default="", help="Why (shown by list).")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=None)
def silence_add(ruleset: str, rule: str, instance: str, duration: str, comment: str,
                state: Path | None) -> None:
    """Add a silence that expires by itself."""
    import time

    seconds = _duration_opt(duration, "--for")
    with _store_for(ruleset, state) as store:
        sid = store.add_silence(rule, instance, time.time() + seconds, comment)
    click.echo(f"silence {sid}: rule {rule} instance {instance} for {duration}")


@silence.command("list")
@click.argument("ruleset", type=click.Path(dir_okay=False))
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=None)
def silence_list(ruleset: str, show_all: bool, state: Path | None) -> None:
    """List silences (active ones unless --all)."""
    import time

    from .config.units import format_duration

    now = time.time()
    with _store_for(ruleset, state) as store:
        rows = store.silences(now, include_expired=show_all)
    if not rows:
        click.echo("no silences")
    for s in rows:
        left = "expired" if s.expires <= now else f"{format_duration(s.expires - now)} left"
        click.echo(f"{s.id}\trule={s.rule}\tinstance={s.instance}\t{left}\t{s.comment}")


@silence.command("remove")
@click.argument("ruleset", type=click.Path(dir_okay=False))
@click.argument("silence_id", type=int)
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=None)
def silence_remove(ruleset: str, silence_id: int, state: Path | None) -> None:
    """Remove a silence before it expires."""
    with _store_for(ruleset, state) as store:
        found = store.remove_silence(silence_id)
    if not found:
        click.echo(f"no silence {silence_id}", err=True)
        sys.exit(1)
    click.echo(f"removed silence {silence_id}")


# --- history -------------------------------------------------------------------------------

_VIEW_FORMATS = ("table", "json", "csv")


def _history_db(ruleset: str | None, db: Path | None) -> Any:
    """The history database a view reads: --db, else the ruleset's state file, else the
    default one `rulesmon track` writes."""
    from .history.location import default_path
    from .history.queries import HistoryError, open_db

    path = db or (_view_state_path(ruleset) if ruleset else default_path())
    try:
        return open_db(path)
    except HistoryError as exc:
        click.echo(f"rulesmon: {exc}", err=True)
        sys.exit(1)


class _UnsetIsEmpty(dict[str, str]):
    """The environment, with unset variables read as empty: a view only needs the
    ruleset's name, not its webhook URLs."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, "")


def _view_state_path(ruleset: str) -> Path:
    import os

    from .config.loader import load
    from .diagnostics import RulesetError, format_text

    try:
        loaded = load(ruleset, env=_UnsetIsEmpty(os.environ))
    except RulesetError as exc:
        click.echo(format_text(exc.diagnostics), err=True)
        sys.exit(2)
    return _state_path(loaded, None)


def _filters(status: str | None, job: str | None, tool: str | None, source: str | None,
             since: str | None) -> Any:
    import time

    from .history.queries import Filters, parse_since

    try:
        when = parse_since(since, time.time()) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    return Filters(status=status, job=job, tool=tool, source=source, since=when)


def _view_options(fn: Any) -> Any:
    for option in reversed((
            click.argument("ruleset", required=False, type=click.Path(dir_okay=False)),
            click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="History database (default: the RULESET's state file, else "
                         "the one `rulesmon track` writes)."),
            click.option("--source", default=None,
                         help="slurm, htcondor, dagman, local, track, command, celery "
                         "(comma list)."),
            click.option("--tool", default=None, help="Job key or tracked tool (glob)."),
            click.option("--since", default=None, help="7d, 12h, or an ISO date."),
            click.option("--format", "fmt", type=click.Choice(_VIEW_FORMATS),
                         default="table", show_default=True))):
        fn = option(fn)
    return fn


@main.command()
@_view_options
@click.option("--limit", "-n", type=click.IntRange(min=0), default=20, show_default=True,
              help="At most this many jobs (0: all).")
@click.option("--status", default=None,
              help="success, failed, timeout, cancelled, error, running, pending (comma list).")
@click.option("--job", default=None, help="Id prefix, job id, instance or name (glob).")
def history(ruleset: str | None, db: Path | None, source: str | None, tool: str | None,
            since: str | None, fmt: str, limit: int, status: str | None,
            job: str | None) -> None:
    """Recorded jobs, newest first."""
    from .history import queries, views

    con = _history_db(ruleset, db)
    try:
        found = queries.jobs(con, _filters(status, job, tool, source, since), limit or None)
    except queries.HistoryError as exc:
        click.echo(f"rulesmon: {exc}", err=True)
        sys.exit(1)
    views.history(found, fmt, sys.stdout)


@main.command()
@_view_options
@click.option("--status", default=None, help="Only jobs with this status (comma list).")
def stats(ruleset: str | None, db: Path | None, source: str | None, tool: str | None,
          since: str | None, fmt: str, status: str | None) -> None:
    """Totals, success rate, CPU time and durations, by source, tool, partition and resource."""
    from .history import queries, views

    con = _history_db(ruleset, db)
    try:
        summary = queries.summary(con, _filters(status, None, tool, source, since))
    except queries.HistoryError as exc:
        click.echo(f"rulesmon: {exc}", err=True)
        sys.exit(1)
    views.stats(summary, fmt, sys.stdout)


@main.command()
@click.argument("job")
@click.argument("ruleset", required=False, type=click.Path(dir_okay=False))
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="History database (default: the RULESET's state file, else the one "
              "`rulesmon track` writes).")
@click.option("--format", "fmt", type=click.Choice(_VIEW_FORMATS), default="table",
              show_default=True)
def show(job: str, ruleset: str | None, db: Path | None, fmt: str) -> None:
    """Everything known about JOB (an id or its prefix, a job id, an instance or a name):
    timing, parameters, resource usage and efficiency, state changes, alerts with their
    deliveries, the last log lines."""
    from .history import queries, views

    if Path(job).suffix in (".yaml", ".yml") and Path(job).is_file() and \
            not (ruleset and Path(ruleset).is_file()):
        if ruleset is None:
            click.echo(f"rulesmon: {job} is a ruleset, not a job: rulesmon show JOB {job}",
                       err=True)
            sys.exit(1)
        job, ruleset = ruleset, job  # `show RULESET JOB`: the same request, swapped
    con = _history_db(ruleset, db)
    try:
        record = queries.job(con, job)
    except queries.HistoryError as exc:
        click.echo(f"rulesmon: {exc}", err=True)
        sys.exit(1)
    views.show(record, fmt, sys.stdout)


def _alias(name: str, command: click.Command) -> None:
    """The Keystone job monitor's command names, for scripts written against it."""
    import copy

    alias = copy.copy(command)
    alias.hidden = True
    main.add_command(alias, name)


_alias("job-history", history)
_alias("job-stats", stats)
_alias("job-details", show)


@main.command()
@click.argument("target", metavar="[RULESET_OR_DB]", required=False,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="History database (default: the RULESET's state file, else the one "
              "`rulesmon track` writes).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (there is no authentication: keep the loopback and "
              "use an ssh tunnel from elsewhere).")
@click.option("--port", type=click.IntRange(0, 65535), default=8642, show_default=True,
              help="Port (0: any free one; the URL is printed on stdout).")
def serve(target: Path | None, db: Path | None, host: str, port: int) -> None:
    """Web dashboard of the history: runs, a run's jobs, alerts and DAG, one job's state
    changes and resource plots, and their JSON under /api/. Read-only, safe beside a running
    engine; stops on Ctrl-C or SIGTERM."""
    from .history.location import default_path
    from .web import is_database
    from .web import serve as run_server

    if db is None and target is not None:
        db = target if is_database(target) else _view_state_path(str(target))
    sys.exit(run_server(db or default_path(), host=host, port=port))


@main.command(context_settings={"allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--tool", default=None, help="Tool name (default: the program's name).")
@click.option("--script", default=None, help="Script name (default: the first file argument).")
@click.option("--name", default=None, help="Name shown in the history (default: the command).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter to record (repeatable).")
@click.option("--id", "task_id", default=None, help="Record under this id.")
@click.option("--timeout", default=None, help="Stop the command after this long (30m, 2h); "
              "status timeout.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="History database (default $RULESMON_HISTORY, else "
              "~/.local/share/rulesmon/history.db).")
@click.option("--retention", default=None, help="Keep tracked records this long (90d; "
              "default $RULESMON_HISTORY_RETENTION, else 365d).")
@click.option("--quiet", "-q", is_flag=True, help="No summary line on stderr.")
def track(command: tuple[str, ...], tool: str | None, script: str | None, name: str | None,
          params: tuple[str, ...], task_id: str | None, timeout: str | None, db: Path | None,
          retention: str | None, quiet: bool) -> None:
    """Run COMMAND, record it (CPU, peak memory, duration, status) and exit with its status.

    \b
      rulesmon track -- python simulate.py --mesh 64
      rulesmon track --tool lammps --param atoms=4000 -- lmp -in in.melt
    """
    from .track import run_command

    values = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        values[key] = value
    seconds = _duration_opt(timeout or None, "--timeout")
    keep = _duration_opt(retention or None, "--retention", positive=True)
    sys.exit(run_command(command, tool=tool, script=script, name=name, params=values,
                         task_id=task_id, db=db, timeout=seconds, quiet=quiet,
                         retention=keep))


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
