"""`matches(text, regex)`: True when the regular expression finds a match in `text`."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

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


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _matches(text: Any, pattern: Any) -> Any:
    if text is UNKNOWN or pattern is UNKNOWN:
        return UNKNOWN
    return _regex(str(pattern)).search(str(text)) is not None


RUNTIME = {"_fn_matches": _matches}


def emit(args: list[Arg]) -> str:
    return f"_fn_matches({args[0].code}, {args[1].code})"
