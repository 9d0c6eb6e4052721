"""`${VAR}` / `${VAR:-default}` environment interpolation in string values.

Interpolated values are recorded with their variable's name in a `Secrets` (rulesmon/redact.py,
which decides which of them are secret), so that diagnostics, logs, the state database and every
other output rulesmon writes can be masked of them, because environment variables are where
webhook URLs and passwords live.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..diagnostics import Diagnostic, make
from ..redact import Ref, Secrets
from .nodes import YList, YMap

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

__all__ = ["Secrets", "interpolate"]


def interpolate(root: YMap, env: Mapping[str, str], secrets: Secrets) -> list[Diagnostic]:
    """Replace references in every string value of the tree, in place."""
    diags: list[Diagnostic] = []
    _walk(root, env, secrets, diags)
    return diags


def _walk(node: Any, env: Mapping[str, str], secrets: Secrets, diags: list[Diagnostic]) -> None:
    if isinstance(node, YMap):
        for key, value in node.items():
            if isinstance(value, str):
                if "$" in value:
                    pos = node.value_pos[key]
                    node[key] = _expand(value, env, secrets, diags, pos.path, pos.line, pos.col,
                                        str(key))
            else:
                _walk(value, env, secrets, diags)
    elif isinstance(node, YList):
        for i, value in enumerate(node):
            if isinstance(value, str):
                if "$" in value:
                    pos = node.item_pos[i]
                    node[i] = _expand(value, env, secrets, diags, pos.path, pos.line, pos.col)
            else:
                _walk(value, env, secrets, diags)


def _expand(text: str, env: Mapping[str, str], secrets: Secrets, diags: list[Diagnostic],
            path: str, line: int, col: int, key: str = "") -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        body = m.group(1)
        name, sep, default = body.partition(":-")
        if not _NAME.match(name):
            diags.append(make(path, line, col, "RM305",
                              f"malformed reference ${{{body}}}: expected ${{NAME}} or "
                              "${NAME:-default}"))
            return ""
        secrets.refs.append(Ref(name, key, path, line, col))
        value = env.get(name)
        if value is not None and (value or not sep):
            secrets.add(value, name)
            return value
        if sep:  # like the shell: the default also replaces a set but empty variable
            return default
        diags.append(make(path, line, col, "RM301",
                          f"environment variable {name} is not set (give a default with "
                          f"${{{name}:-...}})"))
        return ""

    return _REF.sub(sub, text)
