"""The probe interface: what every source of facts implements.

A probe turns the outside world into flat facts (`{"job.state": "RUNNING", "worker.pid": 42}`)
per job instance. Source probes (slurm, htcondor, dagman, local) create instances; node probes
(logs, files, gpu) add facts to the instances that exist. A probe knows nothing of rules.

The engine calls `collect` once per tick on a worker thread with a timeout; an exception or a
timeout becomes the facts `probe.<name>.ok/failures/error`, never a stopped tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config.models import Job, Ruleset

Facts = dict[str, Any]


@dataclass
class TickContext:
    """What a probe may read during one tick."""

    now: float
    ruleset: Ruleset
    base_dir: Path
    #: Facts gathered so far this tick by instance key (source probes run first; node probes
    #: see what the sources found). Read-only by convention.
    instances: Mapping[str, Facts] = field(default_factory=dict)
    dry_run: bool = False
    #: The `time.monotonic()` by which `collect` should return: the engine's probe timeout
    #: (`Engine(probe_timeout=...)` or its default), so a probe that can stop early (a large
    #: log caught up over several ticks) stops in time. None outside the engine.
    deadline: float | None = None


class ProbeError(Exception):
    """A probe's failure, with a one-line message for `probe.<name>.error`.

    `repeated`: the probe did not ask again (its `min_interval` holds) and reports its last
    failure once more; the engine keeps the failed state without counting (or logging) one
    more failed poll."""

    def __init__(self, message: str = "", *, repeated: bool = False) -> None:
        super().__init__(message)
        self.repeated = repeated


class Probe(Protocol):
    """One source of facts."""

    name: str

    def start(self, ctx: TickContext) -> None:
        """Prepare (launch processes, submit jobs); called once before the first tick."""

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        """Facts per instance key for this tick."""

    def close(self) -> None:
        """Release resources; launched processes are left running unless the probe owns
        their lifetime."""


def instance_key(job: str, unit: str | int) -> str:
    """`train/12345`, `embed/0`: stable across restarts, used in fingerprints."""
    return f"{job}/{unit}"


SOURCES = ("slurm", "htcondor", "dagman", "local")  #: the job keys that create instances


def sourceless_instances(ruleset: Ruleset, seen: Mapping[str, Facts]) -> dict[str, Facts]:
    """The one instance of each job that has no source (it watches only logs and files) and
    no instance in `seen` yet: `<job>/-` with `job.key`, `job.name` (the job's key) and
    `job.source` = none. Node probes that serve such jobs (files, logs) each create it alike,
    as they run side by side and do not see each other's instances."""
    keys = [key for key, job in ruleset.jobs.items()
            if all(getattr(job, s) is None for s in SOURCES)]
    if not keys:
        return {}
    known = {f.get("job.key") for f in seen.values()}
    return {instance_key(key, "-"): {"job.key": key, "job.name": key, "job.source": "none"}
            for key in keys if key not in known}


_RENDERED: dict[tuple[Any, ...], Path | None] = {}


def render_path(template: str, context: Mapping[str, Any], base: Path) -> Path:
    """A path template rendered in the sandbox and resolved from the ruleset's folder (an
    empty render is that folder itself).

    Renders are cached by the values the template reads (`job.id`, `worker`), so a probe
    that resolves hundreds of paths every tick renders each only when its inputs change.
    """
    path = render_optional_path(template, context, base)
    return base if path is None else path


def render_optional_path(template: str, context: Mapping[str, Any], base: Path) -> Path | None:
    """`render_path`, but None when the template renders empty (SCHEDULER_LOGS' `''` for a
    discarded output): a file to follow that is no file, not `base` (whose parent is another
    filesystem when the workdir is a mount point)."""
    if "{{" not in template and "{%" not in template:
        if not template.strip():
            return None
        plain = Path(template).expanduser()
        return plain if plain.is_absolute() else base / plain
    from ..templates import parse, paths, render

    key: tuple[Any, ...] | None = (template, str(base),
                                   *(_dig(context, p) for p in paths(parse(template))))
    try:
        hash(key)
    except TypeError:  # the template reads a whole namespace: render every time
        key = None
    if key is not None and key in _RENDERED:
        return _RENDERED[key]
    text = render(template, dict(context))
    path: Path | None = None
    if text.strip():
        rendered = Path(text).expanduser()
        path = rendered if rendered.is_absolute() else base / rendered
    if key is not None:
        if len(_RENDERED) > 8192:
            _RENDERED.clear()
        _RENDERED[key] = path
    return path


def _dig(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = context
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return ("missing", path)
        node = node[part]
    return node


def job_base(job: Job, base: Path) -> Path:
    if job.workdir:
        return render_path(job.workdir, {}, base)
    return base
