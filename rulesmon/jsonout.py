"""JSON as it leaves rulesmon: always valid JSON (RFC 8259), whatever the facts hold.

Python's `json.dumps` writes a float NaN or infinity as the bare words `NaN` and `Infinity`,
which no strict parser accepts (`jq`, JavaScript's `JSON.parse`, Go, Rust's serde). A loss that
became NaN is a common fact, so every JSON document rulesmon writes (`facts --format json`,
the state file, `history`/`stats`/`show --format json`, the web pages' JSON, the history
columns, the JSON log, a template's `tojson`) goes through `dumps` here: a number that JSON
cannot hold is written as null, a value that is not JSON (a date, a path) as its text. The
common case, nothing to replace, costs one call of the C encoder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def plain(value: Any, *, sort_keys: bool = False) -> Any:
    """`value` as JSON can hold it: non-finite numbers become None, containers recurse (maps
    with their keys as text, sorted if `sort_keys`), anything else that is not JSON becomes
    its text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
        if sort_keys:
            items.sort(key=lambda kv: kv[0])
        return {k: plain(v, sort_keys=sort_keys) for k, v in items}
    if isinstance(value, list | tuple):
        return [plain(v, sort_keys=sort_keys) for v in value]
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps(value, **kwargs)` that never writes NaN or Infinity: such numbers become
    null (see the module docstring). `default` is `str` unless given."""
    kwargs["allow_nan"] = False
    kwargs.setdefault("default", str)
    try:
        return json.dumps(value, **kwargs)
    except ValueError:  # a non-finite number somewhere: write the plain copy
        return json.dumps(plain(value, sort_keys=bool(kwargs.get("sort_keys"))), **kwargs)


def loads_strict(text: str | bytes) -> Any:
    """`json.loads` that, like strict parsers, refuses `NaN`, `Infinity` and `-Infinity`
    (for tests and for checking what rulesmon writes)."""

    def refuse(word: str) -> Any:
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)
