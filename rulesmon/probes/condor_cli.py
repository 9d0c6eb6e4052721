"""Running HTCondor's command-line tools and reading what they print.

Shared by the htcondor and dagman probes (and the test fixtures), so that finding the tools,
timeouts, error messages and ClassAd value quirks are handled in one place.

Where the tools are: `$RULESMON_CONDOR_BIN/<tool>` when that variable names a folder (the
development pool's wrappers, see scripts/dev-condor), else the tool on PATH.

Every failure is a `CondorError` (a `ProbeError`) with one line: the tool is missing, it timed
out, it exited non-zero (the first meaningful line of its stderr), or it printed something
that is not the JSON asked for. Nothing here raises anything else for the outside world's
output.

The public interface (kept stable for the probes and tests that use it):

- `tool(name)`: the path of a tool, or CondorError.
- `run(args, timeout=, cwd=)`: stdout of a tool run with an argv list, never a shell.
- `parse_ads(text)`: the ClassAds of `-json` output as dicts (empty output is no ads).
- `query(constraint, ...)` / `history(constraint, ...)`: condor_q / condor_history as ads.
- `submit(file, append=, cwd=)`: condor_submit -terse; the (cluster, proc) ids submitted.
- `value(ad, name)`: an attribute, case-insensitively, with ClassAd quirks normalised.
- `quote(text)`: a ClassAd string literal; `id_constraint(ids)`: a constraint for job ids.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import ProbeError

ENV_BIN = "RULESMON_CONDOR_BIN"
DEFAULT_TIMEOUT = 60.0
#: An unevaluated expression in `-json` output: `"/Expr(RequestMemory * 2)/"`.
_EXPR = re.compile(r"^\\?/Expr\((.*)\)\\?/$", re.S)
_TERSE = re.compile(r"^(\d+)\.(\d+)\s*-\s*(\d+)\.(\d+)\s*$")
_CLUSTER = re.compile(r"(\d+)\s+job\(s\) submitted to cluster\s+(\d+)")
_NOISE = re.compile(r"^\s*$|^-- |^\s*(Submitting job|WARNING)", re.I)


class CondorError(ProbeError):
    """A condor tool could not be run or its output could not be read (one line)."""


class CondorRefused(CondorError):
    """A condor tool ran and said no (a non-zero exit): what was asked is at fault, not the
    time it took or the tool's absence."""


def tool(name: str) -> str:
    """The executable to run for `name` (condor_q, condor_submit_dag, ...)."""
    folder = os.environ.get(ENV_BIN, "").strip()
    if folder:
        path = Path(folder) / name
        if os.access(path, os.X_OK):
            return str(path)
        raise CondorError(f"{name} not found in {ENV_BIN}={folder}")
    found = shutil.which(name)
    if found is None:
        raise CondorError(f"{name} not found on PATH (install HTCondor's tools or set "
                          f"{ENV_BIN} to their folder)")
    return found


def run(args: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
        cwd: Path | str | None = None) -> str:
    """Run a condor tool (`args[0]` is its name) and return its stdout.

    The working directory matters: condor_submit resolves relative paths from it.
    """
    exe = tool(args[0])
    try:
        proc = subprocess.run([exe, *args[1:]], capture_output=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise CondorError(f"{args[0]} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise CondorError(f"{args[0]} could not run: {exc.strerror or exc}") from None
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        raise CondorRefused(f"{args[0]} failed (exit {proc.returncode}): "
                          f"{first_line(err) or first_line(out) or 'no message'}")
    return out


def first_line(text: str) -> str:
    """The first line of a tool's message worth showing, cut to 300 characters."""
    lines = [ln.strip() for ln in text.splitlines()]
    useful = [ln for ln in lines if ln and not _NOISE.match(ln)]
    line = (useful or [ln for ln in lines if ln] or [""])[0]
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line[:300]


def parse_ads(text: str, what: str = "condor_q") -> list[dict[str, Any]]:
    """The ads of `-json` output.

    Empty output (some versions print nothing when no job matches) is no ads; several
    concatenated arrays (one per schedd) are joined; anything else that is not a list of
    objects is a CondorError naming what was wrong.
    """
    stripped = text.strip()
    if not stripped:
        return []
    if stripped[0] == "[" and stripped[-1] == "]":
        try:  # the common case, in one call
            whole = json.loads(stripped)
        except json.JSONDecodeError:
            pass  # two arrays, or broken: the careful loop below says which
        else:
            if isinstance(whole, list) and all(isinstance(ad, dict) for ad in whole):
                return whole
    decoder = json.JSONDecoder()
    ads: list[dict[str, Any]] = []
    pos = 0
    while pos < len(stripped):
        try:
            doc, end = decoder.raw_decode(stripped, pos)
        except json.JSONDecodeError as exc:
            snippet = first_line(stripped[exc.pos:exc.pos + 60]) or "end of output"
            raise CondorError(f"{what} printed output that is not JSON (line {exc.lineno}, "
                              f"column {exc.colno}: {exc.msg} near {snippet!r})") from None
        if isinstance(doc, dict):
            doc = [doc]
        if not isinstance(doc, list) or not all(isinstance(ad, dict) for ad in doc):
            raise CondorError(f"{what} printed JSON that is not a list of job ads "
                              f"({type(doc).__name__})")
        ads.extend(doc)
        pos = end
        while pos < len(stripped) and stripped[pos] in " \t\r\n":
            pos += 1
    return ads


def query(constraint: str | None = None, *, attributes: Sequence[str] = (),
          timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
    """condor_q's job ads for a constraint (all jobs of all users when None)."""
    args = ["condor_q", "-allusers", "-json"]
    if constraint:
        args += ["-constraint", constraint]
    if attributes:
        args += ["-attributes", ",".join(attributes)]
    return parse_ads(run(args, timeout=timeout), "condor_q")


def history(constraint: str, *, match: int | None = None, attributes: Sequence[str] = (),
            timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
    """condor_history's ads for a constraint, newest first; `match` stops the scan early."""
    args = ["condor_history", "-json", "-constraint", constraint]
    if match:
        args += ["-match", str(match)]
    if attributes:
        args += ["-attributes", ",".join(attributes)]
    return parse_ads(run(args, timeout=timeout), "condor_history")


def submit(file: Path | str, *, append: Iterable[str] = (), cwd: Path | str | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> list[tuple[int, int]]:
    """Submit a description file; the (cluster, proc) of every job it queued."""
    args = ["condor_submit", "-terse"]
    for line in append:
        args += ["-append", line]
    args.append(str(file))
    out = run(args, timeout=timeout, cwd=cwd)
    return parse_submitted(out)


def parse_submitted(out: str) -> list[tuple[int, int]]:
    """Job ids from condor_submit's output (`-terse` ranges or the plain summary line)."""
    ids: list[tuple[int, int]] = []
    for line in out.splitlines():
        m = _TERSE.match(line.strip())
        if m:
            c1, p1, c2, p2 = (int(g) for g in m.groups())
            if c1 == c2:
                ids += [(c1, p) for p in range(p1, p2 + 1)]
            continue
        m2 = _CLUSTER.search(line)
        if m2:
            ids += [(int(m2.group(2)), p) for p in range(int(m2.group(1)))]
    if not ids:
        raise CondorError(f"condor_submit printed no job id: {first_line(out) or 'nothing'}")
    return ids


# --- ClassAd values ---------------------------------------------------------------------------


def expression(raw: Any) -> str | None:
    """The text of an unevaluated expression as `-json` writes it, or None."""
    if isinstance(raw, str) and raw[:2] in ("/E", "\\/"):
        m = _EXPR.match(raw)
        if m:
            return m.group(1)
    return None


def normalise(raw: Any) -> Any:
    """A ClassAd value as a plain fact: expressions (unevaluated) and NaN become None."""
    if isinstance(raw, str):
        return None if raw[:2] in ("/E", "\\/") and expression(raw) is not None else raw
    if isinstance(raw, float) and (math.isnan(raw) or math.isinf(raw)):
        return None
    if isinstance(raw, list):
        return [normalise(v) for v in raw]
    if isinstance(raw, dict):
        return {str(k): normalise(v) for k, v in raw.items()}
    return raw


def lower_keys(ad: Mapping[str, Any]) -> dict[str, Any]:
    """The ad keyed by lower-case names: ClassAd attribute names ignore case."""
    return dict(zip(map(str.lower, ad), ad.values(), strict=True))


def value(ad: Mapping[str, Any], name: str) -> Any:
    """An attribute of a lower-cased ad (see `lower_keys`), normalised."""
    return normalise(ad.get(name.lower()))


def number(ad: Mapping[str, Any], name: str) -> float | None:
    """A numeric attribute (numbers in strings too, as some versions write them), or None."""
    v = value(ad, name)
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            return None
        return None if math.isnan(f) or math.isinf(f) else f
    return None


def integer(ad: Mapping[str, Any], name: str) -> int | None:
    v = number(ad, name)
    return int(v) if v is not None else None


def boolean(ad: Mapping[str, Any], name: str) -> bool | None:
    v = value(ad, name)
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    if isinstance(v, int):
        return bool(v)
    return None


def quote(text: str) -> str:
    """A string literal for a constraint on the command line.

    The tools read constraints in the old ClassAd syntax, where a backslash stands for itself
    except before a double quote (checked on HTCondor 23.9: `"a\\.b"` is the four characters
    a, backslash, dot, b), so only quotes are escaped.
    """
    return '"' + text.replace('"', '\\"') + '"'


_PCRE_SPECIAL = frozenset("\\.^$|+*?()[]{}")


def regex_literal(text: str) -> str:
    """`text` as a regex matching itself, escaped for the schedd's regexp().

    Only the regex metacharacters are escaped, so the pattern stays readable in the
    constraint (`quote` keeps its backslashes as they are).
    """
    return "".join("\\" + ch if ch in _PCRE_SPECIAL else ch for ch in text)


def glob_regex(glob: str) -> str:
    """A shell glob (`*`, `?`, `[...]`) as an anchored regex for the schedd's regexp()."""
    out, i = ["^"], 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and "]" in glob[i + 2:]:
            end = glob.index("]", i + 2)
            body = glob[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(regex_literal(ch))
        i += 1
    out.append("$")
    return "".join(out)


def id_constraint(ids: Iterable[tuple[int, int | None]]) -> str:
    """A constraint for jobs by (cluster, proc), proc None meaning the whole cluster."""
    by_cluster: dict[int, set[int] | None] = {}
    for cluster, proc in ids:
        if proc is None:
            by_cluster[cluster] = None
        elif cluster not in by_cluster or by_cluster[cluster] is not None:
            procs = by_cluster.setdefault(cluster, set())
            assert procs is not None
            procs.add(proc)
    parts = []
    for cluster, procs in sorted(by_cluster.items()):
        if procs is None:
            parts.append(f"ClusterId == {cluster}")
        elif len(procs) == 1:
            parts.append(f"(ClusterId == {cluster} && ProcId == {next(iter(procs))})")
        else:
            alts = " || ".join(f"ProcId == {p}" for p in sorted(procs))
            parts.append(f"(ClusterId == {cluster} && ({alts}))")
    return " || ".join(parts) if parts else "false"
