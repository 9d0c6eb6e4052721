"""Named file sets of a job (`files:`): counts, sizes, growth, stalls, checkpoint cadence,
integrity, new files (Parsl FileMonitor style), and the free space of the job's folders.

A node probe: it adds `files.<name>.*` and `disk.*` facts to the instances the source probes
found, and creates one instance (`<job>/-`, `job.source` = none) for each job that has no
source, so file-only jobs are watched too.

A tick costs one directory scan and one stat per file; file contents are read only by the
integrity checks, and only for files whose size or modification time changed since the last
check. Scans are shared between instances that render the same root and glob; `root` and
`glob` are templates rendered per instance (`glob: "out/{{ job.id }}/*.json"`).

New files (`new_files: true`, Parsl's FileMonitor): the files present at the first scan are
the baseline, except those changed within `quiet_for`, which may still be being written and
are reported once quiet. Every new file is reported exactly once, on one tick, whatever the
spacing between files (rules reading `.new`/`.new_count` fire again on every tick that has
new files: rules/state.py). What is known (the baseline and every file reported) is kept in
a small SQLite file beside the state database (`<state>.files.db`, written when a baseline is
taken and, under the engine, when the tick that reported a file has been committed to the
state database with the notifications it owes: `tick_committed`), so after a restart (even
after `kill -9`) the files that appeared while rulesmon was down are reported, and none is
reported twice or lost. A file reported by a collection whose result the engine did not use
(the probe timed out) is reported again by the next one. The one window left is a kill
between the two commits, a moment after each tick that reported files: those files are
reported again after the restart (never lost). A dry run keeps it in memory.

Integrity: a JSON file is judged once it has not changed for `quiet_for` (at least
`JSON_SETTLE`), or once its job has ended; until then a half-written JSON output is not
"invalid". JSONL and CSV are judged by their last complete line while they grow.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import regex
from . import integrity
from .base import (
    Facts,
    ProbeError,
    TickContext,
    job_base,
    render_optional_path,
    render_path,
    sourceless_instances,
)
from .sidecar import Sidecar

if TYPE_CHECKING:
    from ..config.models import FileSpec, Job, Ruleset

#: At most this many paths in `files.<name>.paths` and `.new` (the rest of the new files are
#: reported on the next ticks).
MAX_PATHS = 1000
#: A scan stops after this many directory entries.
MAX_ENTRIES = 200_000
#: A JSONL or CSV file counts as finished (its unfinished last line is an error) once it has
#: not changed for this long, or for `quiet_for` when that is longer.
APPEND_QUIET = 60.0
#: A JSON file is judged only once it has not changed for this long (or `quiet_for` when
#: that is longer), or its job has ended: a JSON output being written is not yet invalid.
JSON_SETTLE = 10.0
#: State of an instance that has not been seen for this long is dropped.
STATE_TTL = 86_400.0
#: Persisted new-file state of a file set not updated for this long is dropped at start.
SEEN_RETENTION = 30 * 86_400.0

log = logging.getLogger(__name__)
_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Entry:
    """One matching file."""

    path: str
    rel: str
    size: int
    mtime: float
    mtime_ns: int


@dataclass
class Scan:
    """The files of one file set: status is ok, missing (no such folder) or error."""

    status: str
    entries: list[Entry] = field(default_factory=list)


@dataclass
class SetState:
    """What one file set of one instance remembers between ticks."""

    first_seen: float
    last_seen: float
    #: Paths present at the first scan plus those already reported as new; None until a scan
    #: has said what is there.
    seen: set[str] | None = None
    #: Candidate new files: path → (size, mtime_ns, time this signature was first observed).
    pending: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=10_000))
    last_sig: tuple[int, int] | None = None
    last_change: float = 0.0
    #: The set's identity in the SeenStore.
    set_id: str = ""
    #: Files reported as new and not yet confirmed by the engine: path → the tick that
    #: reported them (under the engine only; see `FilesProbe.tick_committed`).
    unconfirmed: dict[str, float] = field(default_factory=dict)


class SeenStore(Sidecar):
    """The files of each set already known (baseline or reported), across restarts (a
    sidecar file: rulesmon/probes/sidecar.py)."""

    schema = ("CREATE TABLE IF NOT EXISTS sets (instance TEXT, fileset TEXT, updated REAL, "
              "PRIMARY KEY (instance, fileset))",
              "CREATE TABLE IF NOT EXISTS seen (instance TEXT, fileset TEXT, path TEXT, "
              "PRIMARY KEY (instance, fileset, path)) WITHOUT ROWID")
    logger = log
    unavailable = "files_state_unavailable"
    consequence = "new files are tracked in memory only"

    def _opened(self, db: sqlite3.Connection) -> None:
        old = time.time() - SEEN_RETENTION
        with db:
            db.execute("DELETE FROM seen WHERE (instance, fileset) IN (SELECT instance, "
                       "fileset FROM sets WHERE updated < ?)", (old,))
            db.execute("DELETE FROM sets WHERE updated < ?", (old,))

    def load(self, instance: str, fileset: str) -> set[str] | None:
        """The known paths of a set, or None when no baseline was ever taken."""
        db = self._conn()
        if db is None:
            return None
        try:
            if db.execute("SELECT 1 FROM sets WHERE instance=? AND fileset=?",
                          (instance, fileset)).fetchone() is None:
                return None
            return {row[0] for row in db.execute(
                "SELECT path FROM seen WHERE instance=? AND fileset=?", (instance, fileset))}
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)
            return None

    def add(self, instance: str, fileset: str, paths: Iterable[str]) -> None:
        """Record paths as known (and the set's baseline as taken), in one transaction."""
        db = self._conn()
        if db is None:
            return
        try:
            with db:
                db.execute("INSERT INTO sets VALUES (?, ?, ?) ON CONFLICT (instance, fileset) "
                           "DO UPDATE SET updated=excluded.updated",
                           (instance, fileset, time.time()))
                db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                               [(instance, fileset, p) for p in paths])
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None


class FilesProbe:
    name = "files"

    def __init__(self, ruleset: Ruleset, base_dir: Path) -> None:
        self.ruleset = ruleset
        self.base_dir = base_dir
        #: Where new-file state survives restarts (set by `use_state`); None: memory only.
        self.seen_store: SeenStore | None = None
        self._states: dict[tuple[str, str], SetState] = {}
        #: (path, format) → (size, mtime_ns, quiet, reason)
        self._checked: dict[tuple[str, str], tuple[int, int, bool, str | None]] = {}
        self._regex: dict[str, Any] = {}  # ruleset patterns: RE2 or the bounded fallback
        self._lock = threading.Lock()
        #: Set by the first `tick_committed`: new files are persisted once the engine has
        #: committed the tick that reported them, not when they are found.
        self._confirming = False
        #: Guards `unconfirmed` and the SeenStore between a collection (a worker thread) and
        #: `tick_committed` (the engine's thread).
        self._confirm_lock = threading.Lock()

    def use_state(self, state_path: Path) -> None:
        """Keep new-file state beside the engine's state database, across restarts."""
        if any(spec.new_files for job in self.ruleset.jobs.values()
               for spec in job.files.values()):
            self.seen_store = SeenStore(state_path.with_suffix(".files.db"))

    def start(self, ctx: TickContext) -> None:
        return None

    def tick_committed(self, now: float) -> None:
        """The engine has committed the tick `now` (its alert states and the notifications
        it owes): the files that tick reported are known for good. Files reported by a
        collection the engine did not use stay unconfirmed and are reported again."""
        with self._confirm_lock:
            self._confirming = True
            for (key, _name), state in list(self._states.items()):
                done = [path for path, t in state.unconfirmed.items() if t == now]
                if not done:
                    continue
                for path in done:
                    del state.unconfirmed[path]
                if self.seen_store is not None:
                    self.seen_store.add(key, state.set_id, done)

    def close(self) -> None:
        self._states.clear()
        self._checked.clear()
        if self.seen_store is not None:
            self.seen_store.close()

    def collect(self, ctx: TickContext) -> dict[str, Facts]:
        if not self._lock.acquire(blocking=False):
            raise ProbeError("the previous files collection is still running")
        try:
            return self._collect(ctx)
        finally:
            self._lock.release()

    # --- one tick ----------------------------------------------------------------------------

    def _collect(self, ctx: TickContext) -> dict[str, Facts]:
        ruleset = ctx.ruleset or self.ruleset
        base_dir = ctx.base_dir or self.base_dir
        scans: dict[tuple[str, str, str], Scan] = {}
        usage: dict[str, tuple[int, int, int] | None] = {}
        checked: set[tuple[str, str]] = set()
        out: dict[str, Facts] = {}

        items: list[tuple[str, Job, Mapping[str, Any], Facts]] = []
        for key, facts in ctx.instances.items():
            job_key = facts.get("job.key")
            if not isinstance(job_key, str) or job_key not in ruleset.jobs:
                continue
            job = ruleset.jobs[job_key]
            items.append((key, job, facts, {}))
        for key, own in sourceless_instances(ruleset, ctx.instances).items():
            items.append((key, ruleset.jobs[own["job.key"]], own, dict(own)))

        for key, job, seen, result in items:
            context = {"job": _nest(seen, "job."), "worker": seen.get("worker.index")}
            base = _job_base(job, base_dir, context)
            folders: list[Path] = []
            if base is not None:
                folders.append(base)
            ended = bool(seen.get("job.terminal"))
            for name, spec in job.files.items():
                root = _render(spec.root, context, base)
                if root is not None:
                    folders.append(root)
                pattern = spec.glob
                if pattern and ("{{" in pattern or "{%" in pattern):
                    rendered = _render(pattern, context, Path())
                    pattern = None if rendered is None else str(rendered)
                scan = self._scan(root, spec, pattern, scans)
                state = self._state(key, name, ctx.now)
                result.update(self._facts(key, name, spec, scan, state, ctx.now, checked,
                                          ended))
            for template in job.disk:
                folder = _render(template, context, base)
                if folder is not None:
                    folders.append(folder)
            for log in job.logs:
                # a log path that renders empty follows nothing: no folder (not `base`)
                path = _render(log.path, context, base, render_optional_path)
                if path is not None:
                    parent = path.parent
                    while _MAGIC.search(str(parent)) and parent != parent.parent:
                        parent = parent.parent
                    folders.append(parent)
            result.update(_disk(folders, usage))
            out[key] = result

        for ck in [k for k in self._checked if k not in checked]:
            del self._checked[ck]
        for sk in [k for k, s in self._states.items() if ctx.now - s.last_seen > STATE_TTL]:
            del self._states[sk]
        return out

    def _state(self, key: str, name: str, now: float) -> SetState:
        state = self._states.get((key, name))
        if state is None:
            state = self._states[(key, name)] = SetState(first_seen=now, last_seen=now)
        state.last_seen = now
        return state

    # --- scanning ----------------------------------------------------------------------------

    def _scan(self, root: Path | None, spec: FileSpec, pattern: str | None,
              cache: dict[tuple[str, str, str], Scan]) -> Scan:
        """`pattern`: the glob rendered for this instance (None when it cannot be)."""
        if root is None or (spec.glob and pattern is None):
            return Scan("error")
        cache_key = (str(root), pattern or "", spec.pattern or "")
        if cache_key not in cache:
            cache[cache_key] = self._scan_uncached(root, spec, pattern)
        return cache[cache_key]

    def _scan_uncached(self, root: Path, spec: FileSpec, pattern: str | None) -> Scan:
        if pattern and Path(pattern).is_absolute():
            root = Path(Path(pattern).anchor)
            pattern = str(Path(pattern).relative_to(root))
        try:
            st = root.stat()
        except FileNotFoundError:
            return Scan("missing")
        except OSError:
            return Scan("error")
        if not stat.S_ISDIR(st.st_mode):
            return Scan("missing")
        try:
            with os.scandir(root):  # readable? (glob and the walk would quietly find nothing)
                pass
            if pattern:
                return Scan("ok", _glob(root, pattern))
            assert spec.pattern is not None
            rx = self._regex.get(spec.pattern)
            if rx is None:
                rx = self._regex[spec.pattern] = regex.compile_search(spec.pattern)
            return Scan("ok", _walk(root, rx))
        except (OSError, regex.RegexTimeout):
            return Scan("error")

    # --- facts -------------------------------------------------------------------------------

    def _facts(self, key: str, name: str, spec: FileSpec, scan: Scan, state: SetState,
               now: float, checked: set[tuple[str, str]], ended: bool) -> Facts:
        p = f"files.{name}."
        entries = scan.entries
        count = len(entries)
        total = sum(e.size for e in entries)
        facts: Facts = {p + "count": count, p + "size": total,
                        p + "paths": sorted(e.path for e in entries)[:MAX_PATHS]}
        newest = max(entries, key=lambda e: (e.mtime_ns, e.path)) if entries else None
        age: float | None = None
        if newest is not None:
            age = max(0.0, now - newest.mtime)
            facts.update({p + "newest": newest.path, p + "newest_size": newest.size,
                          p + "newest_mtime": newest.mtime, p + "age": age})
            if spec.pattern:
                try:
                    m = self._regex[spec.pattern].fullmatch(newest.rel)
                except regex.RegexTimeout:
                    m = None
                for group, value in (m.groupdict() if m else {}).items():
                    if value is not None:
                        facts[f"{p}matches.{group}"] = value
        if count >= 2:
            mtimes = [e.mtime for e in entries]
            facts[p + "interval"] = (max(mtimes) - min(mtimes)) / (count - 1)
        if spec.expect_every is not None:
            since = age if age is not None else max(0.0, now - state.first_seen)
            facts[p + "expected_next"] = spec.expect_every - since
            facts[p + "late"] = since > spec.expect_every
        if spec.validate_ != "none":
            invalid = [e.path for e in entries if self._check(e, spec, now, checked, ended)]
            facts[p + "valid"] = not invalid
            facts[p + "invalid"] = sorted(invalid)[:MAX_PATHS]

        if scan.status == "error":
            # An unreadable root says nothing about growth or new files: keep the state as is.
            if spec.new_files:
                facts[p + "new"] = []
                facts[p + "new_count"] = 0
            return facts

        # growth and stalls
        if state.samples and now < state.samples[-1][0]:
            state.samples.clear()  # the clock went backwards
        if state.samples and now == state.samples[-1][0]:
            state.samples.pop()
        state.samples.append((now, total))
        while len(state.samples) >= 2 and state.samples[1][0] <= now - spec.growth_window:
            state.samples.popleft()
        t0, s0 = state.samples[0]
        if now > t0:
            facts[p + "growth_rate"] = (total - s0) / (now - t0)
        sig = (count, total)
        if state.last_sig is None:
            state.last_change = min(now, newest.mtime) if newest is not None else now
        elif sig != state.last_sig:
            state.last_change = now
        state.last_sig = sig
        if spec.stall_after is not None or spec.min_growth is not None:
            stalled = False
            if count and spec.stall_after is not None:
                stalled = now - state.last_change >= spec.stall_after
            if (count and spec.min_growth is not None
                    and now - t0 >= spec.growth_window and total - s0 < spec.min_growth):
                stalled = True
            facts[p + "stalled"] = stalled

        if spec.new_files:
            new = self._new_files(key, name, spec, entries, state, now)
            facts[p + "new"] = new
            facts[p + "new_count"] = len(new)
        return facts

    def _new_files(self, key: str, name: str, spec: FileSpec, entries: list[Entry],
                   state: SetState, now: float) -> list[str]:
        quiet_for = spec.quiet_for
        set_id = "\0".join((name, spec.root, spec.glob or "", spec.pattern or ""))
        state.set_id = set_id
        store = self.seen_store
        if state.seen is None:
            with self._confirm_lock:
                known = store.load(key, set_id) if store is not None else None
                if known is None:
                    # the baseline: files present before we looked, except those changed
                    # within quiet_for (perhaps still being written), which are candidates
                    # like new ones
                    known = {e.path for e in entries
                             if quiet_for <= 0 or now - e.mtime >= quiet_for}
                    if store is not None:
                        store.add(key, set_id, known)
            state.seen = known
        present: set[str] = set()
        new: list[str] = []
        with self._confirm_lock:
            # reported by a collection whose result the engine did not use: report again
            again = {path for path, t in state.unconfirmed.items() if t != now}
        for e in entries:
            if e.path in again:
                new.append(e.path)
                continue
            if e.path in state.seen:
                continue
            present.add(e.path)
            prev = state.pending.get(e.path)
            if prev is None or prev[:2] != (e.size, e.mtime_ns):
                state.pending[e.path] = (e.size, e.mtime_ns, now)
                stable_since, observed = now, False
            else:
                stable_since, observed = prev[2], True
            quiet = (quiet_for <= 0 or now - stable_since >= quiet_for
                     or (observed and now - e.mtime >= quiet_for))
            if quiet:
                new.append(e.path)
        for gone in [path for path in state.pending if path not in present]:
            del state.pending[gone]
        new = sorted(new)[:MAX_PATHS]
        for path in new:
            state.seen.add(path)
            state.pending.pop(path, None)
        with self._confirm_lock:
            for path in again.difference(e.path for e in entries):
                state.unconfirmed.pop(path, None)  # gone before it could be reported
            if self._confirming:
                state.unconfirmed.update(dict.fromkeys(new, now))
            elif new and store is not None:
                store.add(key, set_id, new)
        return new

    def _check(self, e: Entry, spec: FileSpec, now: float, checked: set[tuple[str, str]],
               ended: bool) -> str | None:
        fmt = spec.validate_
        key = (e.path, fmt)
        checked.add(key)
        quiet = True
        if fmt in integrity.APPENDED:
            quiet = ended or now - e.mtime >= max(spec.quiet_for, APPEND_QUIET)
        elif fmt == "json" and not ended and now - e.mtime < max(spec.quiet_for, JSON_SETTLE):
            return None  # still being written: judged once it settles
        cached = self._checked.get(key)
        if cached is not None and cached[:3] == (e.size, e.mtime_ns, quiet):
            return cached[3]
        reason = integrity.check(Path(e.path), fmt, quiet=quiet)
        self._checked[key] = (e.size, e.mtime_ns, quiet, reason)
        return reason


# --- helpers -------------------------------------------------------------------------------------


def _nest(facts: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """`{"job.id": 1, "job.attrs.X": 2}` → `{"id": 1, "attrs": {"X": 2}}` for templates."""
    out: dict[str, Any] = {}
    for key, value in facts.items():
        if not key.startswith(prefix):
            continue
        *parents, leaf = key[len(prefix):].split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if not (isinstance(node.get(leaf), dict) and not isinstance(value, dict)):
            node[leaf] = value
    return out


def _render(template: str, context: Mapping[str, Any], base: Path | None,
            how: Callable[[str, Mapping[str, Any], Path], Path | None] = render_path,
            ) -> Path | None:
    if base is None:
        return None
    try:
        return how(template, context, base)
    except Exception:  # an undefined fact or a bad template: this folder cannot be known
        return None


def _job_base(job: Job, base_dir: Path, context: Mapping[str, Any]) -> Path | None:
    try:
        return job_base(job, base_dir)
    except Exception:
        assert job.workdir is not None
        return _render(job.workdir, context, base_dir)


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _glob(root: Path, pattern: str) -> list[Entry]:
    """os-level glob and stat: Path objects per entry cost more than the scan itself on an
    idle tick over a thousand files (benchmarks/idle_tick.py)."""
    allow_hidden = _hidden(pattern)
    out: list[Entry] = []
    base = str(root)
    for n, rel in enumerate(glob.iglob(pattern, root_dir=base, recursive=True,  # noqa: PTH207
                                       include_hidden=allow_hidden)):
        if n >= MAX_ENTRIES:
            break
        if not allow_hidden and _hidden(rel):
            continue
        full = os.path.join(base, rel)  # noqa: PTH118
        try:
            st = os.stat(full)  # noqa: PTH116
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.append(Entry(full, Path(rel).as_posix(), st.st_size, st.st_mtime,
                             st.st_mtime_ns))
    return out


def _walk(root: Path, rx: Any) -> list[Entry]:
    """Files under root whose POSIX path relative to root fullmatches rx; hidden folders and
    symlinked folders are not entered."""
    out: list[Entry] = []
    stack: list[tuple[str, str]] = [(str(root), "")]
    seen = 0
    while stack and seen < MAX_ENTRIES:
        folder, prefix = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError:
            continue
        with it:
            for entry in it:
                seen += 1
                rel = prefix + entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not entry.name.startswith("."):
                            stack.append((entry.path, rel + "/"))
                        continue
                    if not rx.fullmatch(rel):
                        continue
                    st = entry.stat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    out.append(Entry(entry.path, rel, st.st_size, st.st_mtime, st.st_mtime_ns))
    return out


def _disk(folders: list[Path], cache: dict[str, tuple[int, int, int] | None]) -> Facts:
    """disk.* for the fullest filesystem among the folders that exist."""
    best: tuple[float, str, tuple[int, int, int]] | None = None
    for folder in folders:
        key = str(folder)
        if key not in cache:
            try:
                cache[key] = tuple(shutil.disk_usage(folder))  # type: ignore[assignment]
            except OSError:
                cache[key] = None
        du = cache[key]
        if du is None or du[0] <= 0:
            continue
        free_pct = 100.0 * du[2] / du[0]
        if best is None or free_pct < best[0]:
            best = (free_pct, key, du)
    if best is None:
        return {}
    free_pct, path, (total, used, free) = best
    return {"disk.free": free, "disk.total": total, "disk.used": used,
            "disk.free_pct": free_pct, "disk.path": path}
