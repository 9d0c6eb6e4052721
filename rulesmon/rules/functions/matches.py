"""`matches(text, regex)`: True when the regular expression finds a match in `text`.

The pattern comes from a ruleset, so it runs on RE2 in linear time, or, for what RE2 lacks
(lookaround, back references...), on Python's `re` in a helper process with a time bound
(rulesmon/regex.py); a search stopped at its bound gives unknown, never a stalled tick."""

from __future__ import annotations

import logging
import re
from typing import Any

from ... import regex
from ..unknown import UNKNOWN
from .spec import Arg, FunctionSpec

SPEC = FunctionSpec(
    name="matches",
    min_args=2,
    max_args=2,
    signature="matches(text, regex)",
    doc='True when the regular expression finds a match in `text`.',
    window_args=frozenset(),
    fact_args=frozenset(),
    stateful=False,
)


log = logging.getLogger(__name__)


def _matches(text: Any, pattern: Any) -> Any:
    if text is UNKNOWN or pattern is UNKNOWN:
        return UNKNOWN
    try:
        rx = regex.compile_search(str(pattern))
        return rx.search(str(text)) is not None
    except regex.RegexTimeout as exc:
        log.warning("matches(): %s", exc)
        return UNKNOWN
    except re.error:
        return UNKNOWN


RUNTIME = {"_fn_matches": _matches}


def emit(args: list[Arg]) -> str:
    return f"_fn_matches({args[0].code}, {args[1].code})"
