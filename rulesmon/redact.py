"""Secrets: which interpolated values are secret, and the one place that masks them.

A ruleset's `${VAR}` values come from the environment, where webhook URLs, tokens and
passwords live. The loader records each interpolated value here (`Secrets.add`) together
with the variable's name, and every notify target URL (`Secrets.add_url`). Whatever rulesmon
writes itself passes through this module first:

- `Secrets.scrub` / `scrub_obj` replace each secret with `***` (console lines, the log, the
  event log, history rows, the state file, `rulesmon facts`, lint findings, delivery errors);
- `Secrets.seal` is how a message waits in the outbox: each secret that came from a variable
  becomes the reference `${NAME}` again (a literal `${` is written `$${`, as in a ruleset), so
  the state database holds no secret; `Secrets.unseal` puts the values back only when the
  message is handed to its target, from this process's environment (a restarted process
  delivers what a killed one left owed);
- `processor` is the structlog processor (every log line, console and JSON file), and
  `scrub_report` wraps an engine tick report so displays and the state file read masked facts.

Which values count as secret (docs/security.md, "Secrets: what is redacted where"):
a variable whose name says so (a word such as TOKEN, SECRET, KEY, PASSWORD, PASS, AUTH, HOOK,
WEBHOOK, DSN, COOKIE, SESSION, CREDENTIALS, PRIVATE, SIGNATURE) with a value of at least
`MIN_NAMED` characters; any other variable whose value is a URL or looks like a token (at
least `MIN_SHAPED` characters, no spaces, letters and digits, not a path); every notify URL.
`${USER}` = `alice`, `${HOME}`, `${SCRATCH}` = `/scratch/alice` or a job count are not: masking
them would blank every path and user name in every output. Distinctive pieces of a secret
(runs of letters and digits of at least `MIN_PIECE` characters holding a digit or mixed case, or
of `MIN_WORD` characters, that are not common words) are masked too, since a secret quoted
through a parser or a path may appear split. Numbers are never masked (no credential is only
digits, and masking one would break JSON text).
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from . import jsonout

#: What a secret becomes in text rulesmon writes itself.
MASK = "***"
#: A variable named like a secret is masked from this length on (a shorter value would mask
#: common text everywhere and protects nothing).
MIN_NAMED = 6
#: Any other variable is masked when its value is a URL or token-like and at least this long.
MIN_SHAPED = 20
#: Pieces of a secret masked on their own from this length (with a digit or mixed case;
#: an all-lowercase piece from `MIN_WORD`), so plain words of a passphrase are not.
MIN_PIECE = 6
MIN_WORD = 10

_WORDS = frozenset({
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWORDS", "PASSWD", "PASSPHRASE",
    "PASS", "PW", "KEY", "KEYS", "APIKEY", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH",
    "WEBHOOK", "HOOK", "DSN", "COOKIE", "SESSION", "SIGNATURE", "PRIVATE", "BEARER"})
_INFIXES = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "WEBHOOK", "APIKEY", "CREDENTIAL")
#: Names of well-known variables that hold no secret whatever they look like.
_PUBLIC = frozenset({"PWD", "OLDPWD", "HOME", "USER", "LOGNAME", "SHELL", "PATH", "HOSTNAME",
                     "TMPDIR", "LANG", "TERM", "DISPLAY", "EDITOR", "PAGER"})
_PIECES = re.compile(r"[A-Za-z0-9_]+")
_COMMON = {"https", "hooks", "services", "localhost", "mailto", "slack", "discord", "ntfy",
           "webhook", "webhooks", "api", "true", "false", "example", "amazonaws"}
_NUMBER = re.compile(r"[+-]?[0-9][0-9_.,eE+-]*\Z")
_MISSING = object()
_SCALARS = frozenset({int, float, bool, type(None)})
_TOKENISH = re.compile(r"[A-Za-z0-9+/=_.:~-]+\Z")


def name_is_secret(name: str) -> bool:
    """A variable whose name says it holds a secret (`AWS_SECRET_ACCESS_KEY`, `GH_TOKEN`)."""
    upper = name.upper()
    if upper in _PUBLIC:
        return False
    words = set(re.split(r"[^A-Z0-9]+", upper))
    return bool(words & _WORDS) or any(infix in upper for infix in _INFIXES)


def value_is_secret(name: str | None, value: str) -> bool:
    """Whether `${name}` = value is masked (the policy in the module docstring)."""
    if name is not None and name.upper() in _PUBLIC:
        return False
    if _NUMBER.match(value):  # a number is no credential, and masking it would break JSON
        return False
    if name is not None and name_is_secret(name):
        return len(value) >= MIN_NAMED
    if len(value) < MIN_SHAPED or any(c.isspace() for c in value):
        return False
    if "://" in value:
        return True
    return bool(_TOKENISH.match(value)) and value[0] not in "/.~" and \
        any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _distinctive(piece: str) -> bool:
    """A piece of a secret worth masking on its own: long, not a common word, not a number."""
    if len(piece) < MIN_PIECE or piece.lower() in _COMMON or piece.isdigit():
        return False
    return len(piece) >= MIN_WORD or any(c.isdigit() for c in piece) or (
        piece.lower() != piece and piece.upper() != piece)


class Ref(NamedTuple):
    """One `${NAME}` reference of a ruleset: the variable, the key whose value holds it, and
    where (lint's RM690 reads these)."""

    name: str
    key: str
    path: str
    line: int
    col: int


class Secrets:
    """Values that must never be printed, and the maskers built from them."""

    def __init__(self) -> None:
        #: every `${NAME}` reference met while interpolating, set or not
        self.refs: list[Ref] = []
        #: every string masked (values, their pieces, their JSON and HTML spellings)
        self.values: set[str] = set()
        #: value -> the variable it came from (what `seal` writes for it)
        self.names: dict[str, str] = {}
        #: every interpolated value -> its variable, secret or not (names a notify URL)
        self.origins: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        self._seal_pattern: re.Pattern[str] | None = None
        self._cache: dict[str, str] = {}
        self._needles: tuple[str, ...] = ()
        self._shortest = 0

    def __bool__(self) -> bool:
        return bool(self.values)

    def add(self, value: str, name: str | None = None) -> None:
        """A value interpolated from `${name}`: recorded when the policy says it is secret."""
        if name is not None:
            self.origins.setdefault(value, name)
        if value_is_secret(name, value):
            self._add(value, name)

    def add_url(self, url: str) -> None:
        """A notify target URL: always a secret (it often carries a token)."""
        if len(url.strip()) >= MIN_NAMED:
            self._add(url.strip(), self.origins.get(url.strip()))

    def add_notify(self, notify: Any) -> None:
        """Every URL of a ruleset's `notify:` block (as loaded, before validation)."""
        if isinstance(notify, str):
            if "://" in notify:
                self.add_url(notify)
        elif isinstance(notify, Mapping):
            for value in notify.values():
                self.add_notify(value)
        elif isinstance(notify, list | tuple):
            for value in notify:
                self.add_notify(value)

    def _add(self, value: str, name: str | None) -> None:
        spellings = {value, jsonout.dumps(value)[1:-1],
                     jsonout.dumps(value, ensure_ascii=False)[1:-1],
                     html.escape(value, quote=True), html.escape(value, quote=False)}
        self.values.update(spellings)
        if name is not None:
            self.names.setdefault(value, name)
        rest = value.split("://", 1)[1] if "://" in value else value  # not the scheme
        for piece in _PIECES.findall(rest):
            if _distinctive(piece):
                self.values.add(piece)
        self._pattern = self._seal_pattern = None
        self._cache.clear()

    # --- masking ------------------------------------------------------------------------------

    def _regex(self) -> re.Pattern[str]:
        if self._pattern is None:
            alts = sorted(self.values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, alts)))
            # the fewest strings one of which every secret contains (its pieces, mostly):
            # text without any of them needs no regex (most facts, every tick)
            needles: list[str] = []
            for value in sorted(self.values, key=len):
                if not any(n in value for n in needles):
                    needles.append(value)
            self._needles = tuple(needles)
            self._shortest = len(needles[0]) if needles else 0
        return self._pattern

    def scrub(self, text: str) -> str:
        """The text with every secret replaced by `***`."""
        if not self.values or not text:
            return text
        pattern = self._pattern or self._regex()
        if len(text) < self._shortest:
            return text
        for needle in self._needles:
            if needle in text:
                break
        else:
            return text
        done = self._cache.get(text)
        if done is None:
            done = pattern.sub(MASK, text)
            if len(self._cache) > 10_000:
                self._cache.clear()
            if len(text) < 4096:
                self._cache[text] = done
        return done

    def scrub_obj(self, value: Any) -> Any:
        """Strings inside a value (maps, lists, tuples) masked; the value itself when no
        secret is in it (nothing is copied then)."""
        if not self.values:
            return value
        kind = type(value)
        if kind is str:
            return self.scrub(value)
        if kind in _SCALARS:
            return value
        if isinstance(value, Mapping):
            out = {self.scrub(k) if isinstance(k, str) else k: self.scrub_obj(v)
                   for k, v in value.items()}
            same = len(out) == len(value) and all(
                k in value and out[k] is value[k] for k in out)
            return value if same else out
        if isinstance(value, list | tuple):
            items = [self.scrub_obj(v) for v in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return type(value)(items) if isinstance(value, list) else tuple(items)
        return value

    # --- the outbox ---------------------------------------------------------------------------

    def seal(self, text: str) -> str:
        """A message as the outbox keeps it: each secret from a variable as `${NAME}`, any
        other secret as `***`, a literal `${` as `$${`; `unseal` reverses it."""
        if not text:
            return text
        if self._seal_pattern is None:
            alts = sorted(self.values, key=len, reverse=True)
            self._seal_pattern = re.compile(
                "|".join([*map(re.escape, alts), r"\$\{"]) if alts else r"\$\{")
        names = self.names

        def sub(m: re.Match[str]) -> str:
            found = m.group(0)
            if found == "${":
                return "$${"
            name = names.get(found)
            return f"${{{name}}}" if name is not None else MASK

        return self._seal_pattern.sub(sub, text)

    def unseal(self, text: str, env: Mapping[str, str] | None = None,
               missing: list[str] | None = None) -> str:
        """The real message: `${NAME}` from the values this process interpolated, else from
        its environment; a name set in neither stays `${NAME}` (and is added to `missing`)."""
        if "${" not in text:
            return text
        env = os.environ if env is None else env
        by_name = {n: v for v, n in self.names.items()}

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name = m.group(1)
            value = by_name.get(name, env.get(name))
            if value is None:
                if missing is not None:
                    missing.append(name)
                return m.group(0)
            return value

        return _SEALED.sub(sub, text)


_SEALED = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: The secrets of the ruleset this process runs: what the log processor masks.
_ACTIVE: list[Secrets] = [Secrets()]


def activate(secrets: Secrets) -> None:
    """Mask these secrets in every log line from now on (one ruleset per process)."""
    _ACTIVE[0] = secrets


def active() -> Secrets:
    return _ACTIVE[0]


def scrub(text: str) -> str:
    """The text with the active ruleset's secrets masked."""
    return _ACTIVE[0].scrub(text)


def processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every value of a log event masked (console and JSON log)."""
    secrets = _ACTIVE[0]
    if not secrets:
        return event
    for key, value in event.items():
        if isinstance(value, str | Mapping | list | tuple):
            event[key] = secrets.scrub_obj(value)
        elif not isinstance(value, int | float | bool | type(None)):
            text = str(value)  # an exception or a path: masked as the renderer shows it
            if secrets.scrub(text) != text:
                event[key] = secrets.scrub(text)
    return event




class _Masked(Mapping[str, Any]):
    """A read-only view of an instance's facts with every string value masked on access."""

    __slots__ = ("_facts", "_secrets")

    def __init__(self, facts: Mapping[str, Any], secrets: Secrets) -> None:
        self._facts = facts
        self._secrets = secrets

    def __getitem__(self, key: str) -> Any:
        value = self._facts[key]
        kind = type(value)
        if kind is str:
            return self._secrets.scrub(value)
        return value if kind in _SCALARS else self._secrets.scrub_obj(value)

    def get(self, key: str, default: Any = None) -> Any:
        value = self._facts.get(key, _MISSING)
        if value is _MISSING:
            return default
        kind = type(value)
        if kind is str:
            return self._secrets.scrub(value)
        return value if kind in _SCALARS else self._secrets.scrub_obj(value)

    def __contains__(self, key: object) -> bool:
        return key in self._facts

    def __iter__(self) -> Iterator[str]:
        return iter(self._facts)

    def __len__(self) -> int:
        return len(self._facts)


def scrub_report(report: Any, secrets: Secrets) -> Any:
    """An engine TickReport as displays and the state file may see it: facts, fired
    notifications and events masked (facts lazily: observers read only some)."""
    if not secrets:
        return report
    instances = {secrets.scrub(k): _Masked(v, secrets) for k, v in report.instances.items()}
    fired = [replace(n, title=secrets.scrub(n.title), body=secrets.scrub(n.body))
             for n in report.fired]
    events = [secrets.scrub_obj(e) for e in report.events]
    return replace(report, instances=instances, run=_Masked(report.run, secrets), fired=fired,
                   events=events)
