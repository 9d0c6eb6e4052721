# Over 800 lines: every source's and action's options model in one module, so the JSON Schema
# and docs come from one place; it is to be divided per source with the layout of issue 16
# (sources/<name>/ holding its own options).
"""The ruleset language as pydantic models: the single source of truth for keys, types,
defaults and descriptions (the JSON Schema and the reference docs are generated from here).

Models are strict (no silent coercion: `"4"` is not 4) and forbid unknown keys. Custom checks
raise `PydanticCustomError` whose type is the diagnostic code, so the loader can report them
with the right code at the right node.
"""

from __future__ import annotations

import re
import warnings
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .. import templates
from ..rules import expressions
from .units import DURATION_PATTERN, SIZE_PATTERN, parse_duration, parse_size

# --- scalar types --------------------------------------------------------------------------------


def _duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("RM205", str(exc)) from None


def _size(value: Any) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise PydanticCustomError("RM204", str(exc)) from None


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": DURATION_PATTERN},
        ],
        "description": "Seconds, or a duration such as 30s, 5m, 2h, 1d, 1h30m.",
    }),
]

Size = Annotated[
    int,
    BeforeValidator(_size),
    WithJsonSchema({
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": SIZE_PATTERN},
        ],
        "description": "Bytes, or a size such as 10GB, 512MiB.",
    }),
]


def _regex(value: str) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            re.compile(value)
    except (re.error, Warning, RecursionError, OverflowError) as exc:
        msg = getattr(exc, "msg", str(exc))
        pos = getattr(exc, "pos", None)
        where = f" at position {pos}" if pos is not None else ""
        raise PydanticCustomError("RM207", "invalid regular expression: {msg}{where}",
                                  {"msg": msg, "where": where}) from None
    return value


def _extractor(value: str) -> str:
    _regex(value)
    if not re.compile(value).groupindex:
        raise PydanticCustomError(
            "RM207", "an extractor needs at least one named group such as (?P<step>\\d+)")
    return value


Regex = Annotated[str, AfterValidator(_regex),
                  Field(description="A Python regular expression.")]
ExtractorRegex = Annotated[str, AfterValidator(_extractor),
                           Field(description="A regular expression with named groups; each "
                                 "group becomes a fact `log.<group>`.")]


def _expression(value: str) -> str:
    try:
        expressions.parse(value)
    except expressions.ExpressionError as exc:
        where = f" (column {exc.col})" if exc.col > 0 else ""
        raise PydanticCustomError("RM208", "invalid condition: {msg}{where}",
                                  {"msg": str(exc), "where": where}) from None
    return value


def _template(value: str) -> str:
    try:
        templates.parse(value)
    except templates.TemplateCheckError as exc:
        code = "RM404" if templates.is_unknown_filter(str(exc)) else "RM209"
        where = f" (template line {exc.line})" if exc.line > 1 else ""
        raise PydanticCustomError(code, "invalid template: {msg}{where}",
                                  {"msg": str(exc), "where": where}) from None
    return value


Expression = Annotated[str, AfterValidator(_expression),
                       Field(description="A condition: facts, comparisons, arithmetic, and/or/not, "
                             "and registered functions (see docs/language.md).")]
Template = Annotated[str, AfterValidator(_template),
                     Field(description="A Jinja2 template rendered in a sandbox with the facts.")]
PathTemplate = Annotated[str, AfterValidator(_template),
                         Field(description="A path; may use templates such as {{ job.id }} and, "
                               "for SLURM jobs, %j %A %a %x %u placeholders.")]

_RULE_NAME = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _named(pattern: str, what: str) -> Any:
    rx = re.compile(pattern)

    def check(value: str) -> str:
        if not rx.match(value):
            raise PydanticCustomError("RM211", "{what} {value} is not valid: {hint}",
                                      {"what": what, "value": repr(value), "hint": _HINTS[what]})
        return value

    return AfterValidator(check)


_HINTS = {
    "rule name": "use kebab-case that says what the rule detects, such as gpu-idle",
    "job key": "use letters, digits and _ (it becomes part of fact paths)",
    "target name": "use letters, digits and _",
    "file name": "use letters, digits and _ (it becomes files.<name>.*)",
    "pattern name": "use letters, digits and _ (it becomes a fact name)",
    "fact name": "write a fact's full dotted name, such as job.state (see docs/facts.md)",
}

RuleName = Annotated[str, _named(_RULE_NAME, "rule name"), Field(pattern=_RULE_NAME)]
JobKey = Annotated[str, _named(_IDENT, "job key"), Field(pattern=_IDENT)]
TargetName = Annotated[str, _named(_IDENT, "target name"), Field(pattern=_IDENT)]
FileName = Annotated[str, _named(_IDENT, "file name"), Field(pattern=_IDENT)]
PatternName = Annotated[str, _named(_IDENT, "pattern name"), Field(pattern=_IDENT)]

Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES = ("info", "warning", "error", "critical")


def _close(word: str, choices: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              use_attribute_docstrings=False, populate_by_name=False)


# --- notification targets -----------------------------------------------------------------------


class Target(Model):
    """A named notification target: one or more apprise URLs (Slack, email, ntfy, webhooks...)."""

    urls: list[str] = Field(
        description="apprise URLs, usually from the environment: `${SLACK_WEBHOOK_URL}`. Empty "
        "strings (an unset `${VAR:-}`) are dropped.")
    tags: list[str] = Field(default_factory=list,
                            description="apprise tags, to address a subset of the URLs.")
    timeout: Duration = Field(10.0, description="Per-delivery timeout.")
    max_per_hour: int | None = Field(
        None, ge=1, description="At most this many messages per hour; the rest are summarised "
        "in one \"N more suppressed\" message.")
    retry_max: Duration = Field(
        600.0, description="Longest wait between two delivery attempts while the service is "
        "down (attempts back off 1s, 2s, 4s... up to this).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str | list):
            value = {"urls": _one_or_many(value)}
        if isinstance(value, dict) and isinstance(value.get("urls"), list):
            value = {**value, "urls": [u for u in value["urls"]
                                       if not (isinstance(u, str) and not u.strip())]}
        return value


# --- sources -------------------------------------------------------------------------------------


class SlurmSubmit(Model):
    """Submit a batch script with sbatch when the run starts (as a launcher script would)."""

    script: PathTemplate = Field(description="The batch script.")
    args: list[Template] = Field(default_factory=list, description="Arguments to the script.")
    sbatch_args: list[Template] = Field(default_factory=list,
                                        description="Extra sbatch options, e.g. --partition=gpu.")
    verify_within: Duration = Field(
        120.0, description="The job must appear in squeue or sacct within this time.")


class SlurmSource(Model):
    """Jobs of a SLURM cluster: one squeue call per tick for all, sacct for those that left."""

    ids: list[Annotated[int | str, Field(union_mode="left_to_right")]] = Field(
        default_factory=list, description="Job ids (`12345`, or `12345_7` for an array task).")
    array: int | str | None = Field(None, description="An array job id: every task of it.")
    user: str | None = Field(None, description="Jobs of this user (`${USER}`).")
    name: str | None = Field(None, description="Job name glob, such as `*eval*`.")
    partition: str | None = Field(None, description="Jobs in this partition.")
    account: str | None = Field(None, description="Jobs charged to this account.")
    submit: SlurmSubmit | None = Field(None, description="Submit the job(s) when the run starts.")
    min_interval: Duration = Field(
        30.0, description="Least time between two scheduler calls; results are cached between.")
    sacct_retries: int = Field(5, ge=0, le=50,
                               description="Retries (with backoff) while accounting lags.")

    @model_validator(mode="after")
    def _selector(self) -> SlurmSource:
        if not (self.ids or self.array is not None or self.user or self.name or self.partition
                or self.account or self.submit):
            raise PydanticCustomError(
                "RM212", "slurm selects no jobs: give ids, array, user, name, partition, "
                "account or submit")
        return self


class CondorSubmit(Model):
    """Submit with condor_submit when the run starts."""

    file: PathTemplate = Field(description="The submit description file.")
    vars: dict[str, Template] = Field(default_factory=dict,
                                      description="Macro definitions passed as `-append`.")
    verify_within: Duration = Field(120.0, description="The job must appear within this time.")


class HTCondorSource(Model):
    """Jobs of an HTCondor schedd: one condor_q call per tick, condor_history for the rest."""

    ids: list[Annotated[int | str, Field(union_mode="left_to_right")]] = Field(
        default_factory=list, description="Cluster ids or cluster.proc ids (`42`, `42.3`).")
    owner: str | None = Field(None, description="Jobs of this owner.")
    batch_name: str | None = Field(None, description="JobBatchName glob.")
    constraint: str | None = Field(None, description="A ClassAd constraint expression.")
    submit: CondorSubmit | None = Field(None, description="Submit when the run starts.")
    min_interval: Duration = Field(30.0, description="Least time between two scheduler calls.")
    attrs: list[str] | None = Field(
        None, description="The job ad attributes to report as `job.attrs.<Name>` (only these, "
        "spelt as given, matched ignoring case). Without it, every attribute that is not a "
        "standard HTCondor one is reported (`+RunUUID` → `job.attrs.RunUUID`).")

    @model_validator(mode="after")
    def _selector(self) -> HTCondorSource:
        if not (self.ids or self.owner or self.batch_name or self.constraint or self.submit):
            raise PydanticCustomError(
                "RM212", "htcondor selects no jobs: give ids, owner, batch_name, constraint "
                "or submit")
        return self


class DagmanSource(Model):
    """A DAGMan workflow: the .dag file, its node log, node status file and dagman.out."""

    dag: PathTemplate = Field(description="The .dag file.")
    nodes_log: PathTemplate | None = Field(None, description="Defaults to `<dag>.nodes.log`.")
    dagman_out: PathTemplate | None = Field(None, description="Defaults to `<dag>.dagman.out`.")
    dagman_log: PathTemplate | None = Field(
        None, description="The DAGMan job's own user log; defaults to `<dag>.dagman.log`.")
    status_file: PathTemplate | None = Field(
        None, description="Defaults to the NODE_STATUS_FILE named in the .dag file.")
    submit: bool = Field(False, description="Run condor_submit_dag when the run starts "
                         "(skipped while the DAG's lock file shows it running).")
    min_interval: Duration = Field(
        0.0, description="Least time between two checks of the .dag files, the node status "
        "file and the rescue DAGs (0: every tick). The logs are read every tick, and only "
        "their new bytes.")
    live_usage: bool = Field(
        False, description="Also ask the schedd for the CPU time, memory and host of the node "
        "jobs while they run (the node log has them only when a job ends): one condor_q call "
        "per tick for every such DAG, at most every 30s.")


class Preflight(Model):
    """Checks before launching, as a careful launcher script would do them."""

    dirs: list[PathTemplate] = Field(default_factory=list,
                                     description="Folders that must exist and be writable.")
    inputs: list[PathTemplate] = Field(default_factory=list,
                                       description="Files that must exist and be readable.")
    min_free_disk: Size | None = Field(None, description="Free space needed in the job's folders.")
    min_free_pct: float | None = Field(None, ge=0, le=100,
                                       description="Free space needed, in percent.")
    gpus: int | None = Field(None, ge=0, description="GPUs that must be visible.")


class LocalSource(Model):
    """Processes on this machine: launched by rulesmon (`command`) or only watched."""

    command: Template | list[Template] | None = Field(
        None, description="Command to launch; a string is split like a shell would, without a "
        "shell. Templates see `worker` (the worker index).")
    workers: int = Field(1, ge=1, le=1024, description="Number of worker processes to launch.")
    env: dict[str, Template] = Field(
        default_factory=dict, description="Environment per worker, e.g. CUDA_VISIBLE_DEVICES: "
        "'{{ worker }}'.")
    cwd: PathTemplate | None = Field(None, description="Working directory.")
    stdout: PathTemplate | None = Field(
        None, description="Log file per worker; default logs/<job>_<worker>.log.")
    stderr: PathTemplate | None = Field(None, description="Separate stderr file; default: stdout.")
    launch_timeout: Duration = Field(
        60.0, description="All workers must be up within this time (launch verification).")
    pid_file: PathTemplate | None = Field(None, description="Watch the process in this pid file.")
    pids: list[int] = Field(default_factory=list, description="Watch these process ids.")
    pattern: Regex | None = Field(None,
                                  description="Watch processes whose command line matches.")
    preflight: Preflight | None = Field(None, description="Checks before launching.")

    @model_validator(mode="after")
    def _mode(self) -> LocalSource:
        watch = [k for k in ("pid_file", "pids", "pattern") if getattr(self, k)]
        if self.command and watch:
            raise PydanticCustomError(
                "RM206", "local has both command and {keys}: launch or watch, not both",
                {"keys": ", ".join(watch)})
        if not self.command and not watch:
            raise PydanticCustomError(
                "RM212", "local needs a command to launch, or pid_file, pids or pattern to watch")
        return self


# --- what a job is observed through --------------------------------------------------------------


class ErrorSpec(Model):
    """An error pattern with its severity."""

    pattern: Regex
    severity: Severity = Field("error", description="Severity of a match.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"pattern": value} if isinstance(value, str) else value


class LogSpec(Model):
    """A log to follow incrementally, with extractors and error patterns."""

    path: PathTemplate = Field(description="Path or glob; templates such as {{ job.id }}, "
                               "{{ worker }}, and SLURM's %j %A %a %x %u.")
    preset: list[str] = Field(default_factory=list,
                              description="Builtin extractor presets: python-logging, tqdm, "
                              "lightning, hf-trainer, traceback, cuda-oom, nccl, nan-loss.")
    extract: dict[PatternName, ExtractorRegex] = Field(
        default_factory=dict, description="Name → regex with named groups; each group is a fact "
        "`log.<group>` holding its last value.")
    errors: dict[PatternName, ErrorSpec] = Field(
        default_factory=dict, description="Name → regex (or {pattern, severity}); facts "
        "`log.errors.<name>.count` and friends.")
    tail: int | None = Field(None, ge=0, le=10_000,
                             description="Lines kept for `log.tail` (default from defaults).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"path": value}
        if isinstance(value, dict) and isinstance(value.get("preset"), str):
            return {**value, "preset": [value["preset"]]}
        return value

    @property
    def preset_list(self) -> list[str]:
        return list(self.preset)


FileFormat = Literal["json", "jsonl", "csv", "torch", "safetensors", "none"]


class FileSpec(Model):
    """A named set of files: counts, sizes, growth, stalls, cadence, integrity, new files."""

    glob: PathTemplate | None = Field(None, description="Glob relative to root, e.g. ckpt/*.pt; "
                                      "a template rendered per instance, e.g. "
                                      "out/{{ job.id }}/*.json.")
    pattern: Regex | None = Field(
        None, description="Regex matched against paths relative to root (Parsl FileMonitor style); "
        "named groups become files.<name>.matches.")
    root: PathTemplate = Field(".", description="Folder the glob or pattern is relative to.")
    validate_: FileFormat = Field("none", alias="validate",
                                  description="Integrity check of each file.")
    stall_after: Duration | None = Field(None, description="Stalled when no growth this long.")
    min_growth: Size | None = Field(None, description="Least growth per growth_window.")
    growth_window: Duration = Field(300.0, description="Window for growth_rate.")
    expect_every: Duration | None = Field(
        None, description="Expected cadence (checkpoints): late when overdue.")
    expect_count: int | None = Field(None, ge=0, description="Files expected at the end.")
    quiet_for: Duration = Field(
        0.0, description="A new file is reported only after it has been unchanged this long.")
    new_files: bool = Field(False, description="Report new files (files.<name>.new), each once.")

    @model_validator(mode="after")
    def _one_matcher(self) -> FileSpec:
        if self.glob and self.pattern:
            raise PydanticCustomError("RM206", "give either glob or pattern, not both")
        if not self.glob and not self.pattern:
            raise PydanticCustomError("RM202", "missing required key \"glob\" (or \"pattern\")")
        return self


class GpuSpec(Model):
    """Where GPU facts come from: NVML on this machine, or a metrics CSV the job writes."""

    devices: list[int] | Literal["auto", "job"] = Field(
        "job", description="`job`: the GPUs the job's processes use; `auto`: every visible GPU; "
        "or a list of indices.")
    csv: PathTemplate | None = Field(
        None, description="A CSV of GPU metrics written by the job on a shared filesystem "
        "(nvidia-smi --query-gpu=... --format=csv); its last row is read.")


class ProgressSpec(Model):
    """How far along a job is, for percent, throughput, ETA, slowdown and stall facts."""

    done: Expression | None = Field(None, description="Items done, e.g. log.done or "
                                    "files.outputs.count.")
    total: Expression | float | None = Field(None, description="Items expected, a number or an "
                                             "expression such as log.total.")
    job_total: float | None = Field(
        None, ge=0, description="Items expected for the whole job, over all its instances "
        "(workers, array tasks), for progress.job_*; default: the sum of their totals.")
    unit: str = Field("items", description="Unit for messages and the display.")
    window: Duration = Field(300.0, description="Window for the recent throughput.")
    stall_after: Duration | None = Field(None, description="progress.stalled after this long "
                                         "without progress.")


#: The logs of a slurm or htcondor job that declares no `logs:`: its standard output and, when
#: it is another file, its standard error, with the presets that catch a crash. A path renders
#: empty, following nothing, when both are one file or the output is discarded (HTCondor's
#: default Output and Error are /dev/null).
SCHEDULER_LOGS: tuple[dict[str, Any], ...] = (
    {"path": "{{ job.stdout if job.stdout != '/dev/null' else '' }}",
     "preset": ["traceback", "cuda-oom"]},
    {"path": "{{ job.stderr if job.stderr not in (job.stdout, '/dev/null') else '' }}",
     "preset": ["traceback", "cuda-oom"]},
)


class Job(Model):
    """A job to watch: at most one source, plus its logs, files, GPUs and progress."""

    description: str = Field("", description="What this job is.")
    slurm: SlurmSource | None = Field(None, description="A SLURM job selection.")
    htcondor: HTCondorSource | None = Field(None, description="An HTCondor job selection.")
    dagman: DagmanSource | None = Field(None, description="A DAGMan workflow.")
    local: LocalSource | None = Field(None, description="Local processes, launched or watched.")
    workdir: PathTemplate | None = Field(None, description="Folder relative paths start from "
                                         "(default: the ruleset's folder).")
    logs: list[LogSpec] = Field(
        default_factory=list, description="Logs to follow. A slurm or htcondor job without "
        "this key follows job.stdout (and job.stderr when it is another file) with the "
        "traceback and cuda-oom presets; `[]` follows none.")
    files: dict[FileName, FileSpec] = Field(default_factory=dict,
                                            description="Named file sets to watch.")
    gpu: GpuSpec | None = Field(None, description="GPU facts for this job.")
    progress: ProgressSpec | None = Field(None, description="Progress declaration.")
    disk: list[PathTemplate] = Field(default_factory=list,
                                     description="Folders whose free space is disk.*; default "
                                     "the workdir and the folders of files and logs.")
    group_by: list[str] = Field(default_factory=list,
                                description="Group instances by these VARS keys or facts "
                                "(run_uuid); rules with scope: group see group.*.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels for messages.")

    @model_validator(mode="before")
    @classmethod
    def _scheduler_logs(cls, value: Any) -> Any:
        """A slurm or htcondor job without `logs:` follows the output its scheduler names
        (`logs: []` follows nothing): see SCHEDULER_LOGS."""
        if isinstance(value, dict) and "logs" not in value and (
                value.get("slurm") is not None or value.get("htcondor") is not None):
            return {**value, "logs": [dict(entry) for entry in SCHEDULER_LOGS]}
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Job:
        sources = [s for s in ("slurm", "htcondor", "dagman", "local") if getattr(self, s)]
        if len(sources) > 1:
            raise PydanticCustomError(
                "RM206", "job has more than one source ({sources}): a job watches exactly one; "
                "declare two jobs", {"sources": ", ".join(sources)})
        return self


# --- rules and actions ---------------------------------------------------------------------------


class Repeat(Model):
    """Re-notify while an alert keeps firing, optionally backing off (10m, 20m, 40m...)."""

    every: Duration = Field(description="First re-notification interval.")
    backoff: float = Field(1.0, ge=1.0, le=10.0, description="Factor applied after each repeat.")
    max: Duration | None = Field(None, description="Largest interval.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"every": value} if isinstance(value, str | int | float) \
            and not isinstance(value, bool) else value


class Occurrences(Model):
    """Monit style: fire when the condition held `times` times within the last `ticks` ticks."""

    times: int = Field(ge=1, description="How many ticks the condition must hold...")
    ticks: int = Field(ge=1, le=1000, description="...within this many recent ticks.")

    @model_validator(mode="after")
    def _order(self) -> Occurrences:
        if self.times > self.ticks:
            raise PydanticCustomError("RM204", "times ({t}) cannot exceed ticks ({n})",
                                      {"t": self.times, "n": self.ticks})
        return self


class NotifyAction(Model):
    """Send a notification to one or more targets."""

    notify: list[TargetName] = Field(description="Target names from `notify:`.")
    title: Template | None = Field(None, description="Title; default from the rule.")
    message: Template | None = Field(None, description="Body; default from the rule.")

    @model_validator(mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("notify"), str):
            return {**value, "notify": [value["notify"]]}
        return value


LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class LogAction(Model):
    """Write a log line (console and the JSON log)."""

    log: LogLevel | None = Field(None, description="Level; default from the rule's severity.")
    message: Template | None = Field(None, description="Text; default from the rule.")


class ExecAction(Model):
    """Run a command without a shell. Needs `rulesmon run --allow-exec`."""

    exec: list[Template] = Field(min_length=1, description="argv; each item is a template.")
    timeout: Duration = Field(60.0, description="Killed after this long.")
    cwd: PathTemplate | None = Field(None, description="Working directory.")


ControlVerb = Literal["cancel", "requeue", "hold", "release", "remove", "resubmit"]


class ControlAction(Model):
    """Act on the job through its scheduler. Needs `rulesmon run --allow-control`.

    SLURM: cancel (scancel), requeue, hold, release (scontrol). HTCondor: hold, release, remove
    (cancel is the same as remove), requeue (condor_vacate_job). DAGMan: remove or hold the
    DAGMan job, resubmit the newest rescue DAG.
    """

    control: ControlVerb = Field(description="What to do with the job.")
    reason: Template | None = Field(None, description="Why, passed to the scheduler where it "
                                    "takes one (condor_hold -reason) and kept in the history.")
    timeout: Duration = Field(60.0, description="The scheduler command is abandoned after this.")


class StopAction(Model):
    """End the run with an exit code."""

    stop: int | None = Field(
        None, ge=0, le=255, description="Exit code of `rulesmon run`; without one (a bare "
        "`stop`) the run's own: 0 when every job succeeded, 1 when one failed, 3 when none "
        "failed but one's outcome is unknown.")


ACTION_KINDS = ("notify", "log", "exec", "control", "stop")


def _action_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        if value not in ACTION_KINDS:
            raise PydanticCustomError("RM213", "unknown action {value}: use one of {kinds}{hint}",
                                      {"value": repr(value), "kinds": ", ".join(ACTION_KINDS),
                                       "hint": _close(value, ACTION_KINDS)})
        if value == "notify":
            raise PydanticCustomError(
                "RM213", "notify needs its targets, for example `- notify: team`")
        if value == "exec":
            raise PydanticCustomError(
                "RM213", "exec needs a command, for example `- exec: [python, post.py]`")
        if value == "control":
            raise PydanticCustomError(
                "RM213", "control needs a verb, for example `- control: cancel`")
        return {value: None}  # log, or a stop that keeps the run's own exit code
    if isinstance(value, dict):
        kinds = [k for k in value if k in ACTION_KINDS]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise PydanticCustomError(
                "RM213", "an action names exactly one of notify, log, exec, control, stop "
                "(found {found})",
                {"found": found})
    return value


def _action_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for kind in ACTION_KINDS:
            if kind in value:
                return kind
    return None


Action = Annotated[
    Annotated[NotifyAction, Tag("notify")]
    | Annotated[LogAction, Tag("log")]
    | Annotated[ExecAction, Tag("exec")]
    | Annotated[ControlAction, Tag("control")]
    | Annotated[StopAction, Tag("stop")],
    Discriminator(_action_kind),
    BeforeValidator(_action_shorthand),
]

Scope = Literal["job", "group", "run"]


class Inhibit(Model):
    """A rule muted while this one fires, for instances sharing the listed facts."""

    rule: RuleName = Field(description="The rule to mute.")
    equal: list[str] = Field(default_factory=list,
                             description="Facts that must be equal (job.node_list, "
                             "node.vars.run_uuid); empty: the same instance.")


class Rule(Model):
    """A condition over the facts, and what to do when it holds."""

    name: RuleName = Field(description="Unique, kebab-case, says what it detects.")
    description: str = Field("", description="Why the rule exists.")
    enabled: bool = Field(True, description="false disables a rule (for example one inherited "
                          "through extends).")
    when: Expression = Field(description="The condition (or, with absent_for/stale_for, the "
                             "fact watched).")
    for_: Duration | None = Field(None, alias="for",
                                  description="The condition must hold this long before firing.")
    keep_firing_for: Duration | None = Field(
        None, description="Keep firing this long after the condition clears (against flapping).")
    clear_when: Expression | None = Field(
        None, description="A separate condition that resolves the alert (hysteresis).")
    repeat: Repeat | None = Field(None, description="Re-notify while firing: a duration or "
                                  "{every, backoff, max}.")
    resolve: bool | None = Field(None, description="Notify on recovery (default from defaults).")
    once: bool = Field(False, description="Fire at most once per job instance, ever.")
    times: Occurrences | None = Field(None, description="Fire when the condition held N times "
                                      "within M ticks.")
    absent_for: Duration | None = Field(
        None, description="Fire when `when` has been unknown (missing data) this long.")
    stale_for: Duration | None = Field(
        None, description="Fire when the value of `when` has not changed this long.")
    severity: Severity | None = Field(None, description="info, warning, error or critical.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels for messages.")
    scope: Scope = Field("job", description="Evaluate per job instance, per group, or once for "
                         "the run.")
    jobs: list[JobKey] = Field(default_factory=list,
                               description="Only these jobs (default: all).")
    notify: list[TargetName] | None = Field(None, description="Shorthand for a notify action.")
    do: list[Action] = Field(default_factory=list, description="Actions: notify, log, exec, "
                             "stop.")
    title: Template | None = Field(None, description="Default title of its notifications.")
    message: Template | None = Field(None, description="Default body of its notifications and "
                                     "log lines.")
    inhibits: list[RuleName | Inhibit] = Field(
        default_factory=list, description="While this rule fires, the listed rules send nothing "
        "for the instances it covers: the same instance, every instance when this rule has "
        "scope: run, or, with `equal`, every instance whose listed facts have the same values.")
    group_wait: Duration | None = Field(
        None, description="Wait this long after a first notification so that other instances "
        "of the rule that fire meanwhile go out in the same message (default from defaults).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("notify"), str):
            return {**value, "notify": [value["notify"]]}
        return value


class Defaults(Model):
    """Defaults applied to every rule that does not say otherwise."""

    severity: Severity = Field("warning", description="Default severity.")
    notify: list[TargetName] = Field(default_factory=list,
                                     description="Targets for rules without actions.")
    repeat: Repeat | None = Field(None, description="Default repeat.")
    resolve: bool = Field(True, description="Notify on recovery.")
    tail: int = Field(20, ge=0, le=10_000, description="Log lines kept for log.tail.")
    group_wait: Duration = Field(
        0.0, description="Default group_wait: instances of a rule that fire in the same tick "
        "always share one message; a wait also gathers those that follow.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels on every rule.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("notify"), str):
            return {**value, "notify": [value["notify"]]}
        return value


class Summary(Model):
    """Where the run's final summary goes when every job has ended."""

    notify: list[TargetName] = Field(description="Targets for the summary.")
    title: Template | None = Field(None, description="Title; default names the ruleset.")
    message: Template | None = Field(None, description="Body; default run.summary.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"notify": [value]}
        if isinstance(value, list):
            return {"notify": value}
        if isinstance(value, dict) and isinstance(value.get("notify"), str):
            return {**value, "notify": [value["notify"]]}
        return value


class History(Model):
    """What `rulesmon run` records for `rulesmon history`, `stats` and `show`."""

    enabled: bool = Field(True, description="Record jobs, state changes, resource samples "
                          "and progress in the state database.")
    retention: Annotated[Duration, Field(gt=0)] = Field(
        365 * 86400.0, description="Jobs that ended longer ago than this are deleted, with "
        "their state changes, samples and alerts (checked hourly, in small batches).")
    sample_every: Annotated[Duration, Field(ge=0)] = Field(
        60.0, description="Resource samples and progress points are written at most this "
        "often per job (0: every tick). State changes are always written.")
    sample_retention: Annotated[Duration, Field(gt=0)] = Field(
        30 * 86400.0, description="Resource samples and progress points of jobs that ended "
        "longer ago than this are deleted; the jobs keep their totals.")


#: Facts kept per job instance in a `state_file:` unless `fields:` says otherwise.
STATE_FILE_FIELDS = ("job.key", "job.id", "job.name", "job.state", "job.raw_state",
                     "job.terminal", "job.outcome", "job.exit_code", "job.signal",
                     "job.diagnosis", "job.submit_time", "job.start_time", "job.end_time",
                     "job.elapsed", "job.workdir", "job.stdout", "job.accounted",
                     "progress.pct")
_FACT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)+$"
FactName = Annotated[str, _named(_FACT_NAME, "fact name"), Field(pattern=_FACT_NAME)]


class StateFile(Model):
    """A JSON file with every job's state, rewritten atomically (at most every `every` or 5 s,
    and when the run ends), for the next stage of a pipeline (the SLURM procedure's
    run-experiment-state.json)."""

    path: str = Field(min_length=1, description="The file; relative paths start from the "
                      "ruleset's folder. Written as a temporary file beside it, then renamed.")
    fields: list[FactName] = Field(
        default_factory=lambda: list(STATE_FILE_FIELDS),
        description="Facts kept per job instance (those it has), by their full names.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


class ExtendsEntry(Model):
    """An `extends:` entry written as a mapping, to trust the parent."""

    path: str = Field(min_length=1, description="builtin:NAME or a path, as in the string form.")
    trust: bool = Field(False, description="true: the parent may also do what only your own "
                        "file may (launch, submit, exec and control actions, notification "
                        "targets, summary, state_file, ${VAR}); see docs/security.md.")


class Ruleset(Model):
    """A rulesmon ruleset: jobs to watch and rules over their facts."""

    version: Literal[1] = Field(description="Language version; 1.")
    name: str = Field(min_length=1, max_length=200, description="Name of the ruleset.")
    description: str = Field("", description="What it watches and why.")
    extends: list[str | ExtendsEntry] = Field(
        default_factory=list,
        description="Rulesets merged under this one: builtin:NAME, or a path under this file's "
        "folder (or under a folder named with --extends-path or RULESMON_EXTENDS_PATH). A "
        "parent brings rules, defaults and jobs to watch; to let it also launch, submit, run "
        "commands, control jobs, add notification targets or read the environment, trust it: "
        "{path: team.yaml, trust: true}.")
    every: Annotated[Duration, Field(gt=0, le=86400)] = Field(
        30.0, description="Tick interval (more than 0, at most 1d).")
    defaults: Defaults = Field(default_factory=Defaults, description="Rule defaults.")
    notify: dict[TargetName, Target] = Field(default_factory=dict,
                                             description="Named notification targets.")
    jobs: dict[JobKey, Job] = Field(default_factory=dict, description="Jobs to watch.")
    rules: list[Rule] = Field(default_factory=list, description="Rules.")
    summary: Summary | None = Field(None, description="Send the final summary to these "
                                    "targets when every job has ended.")
    history: History = Field(default_factory=History,
                             description="Job history kept in the state database.")
    state_file: StateFile | None = Field(
        None, description="Write every job's state to this JSON file, at most every tick or "
        "5 s and when the run ends (a path, or {path, fields}).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("extends"), str):
            return {**value, "extends": [value["extends"]]}
        return value
