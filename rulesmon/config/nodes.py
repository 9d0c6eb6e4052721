"""Plain YAML data that remembers where each key, value and item came from.

The loader turns ruamel's round-trip tree into these dict/list subclasses so that positions
survive interpolation and `extends:` merging (a merged mapping holds keys from several files).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple


class Pos(NamedTuple):
    """A 1-based location in a file."""

    path: str
    line: int
    col: int


class YMap(dict[str, Any]):
    """A mapping whose keys and values know their positions."""

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.key_pos: dict[str, Pos] = {}
        self.value_pos: dict[str, Pos] = {}

    def put(self, key: str, value: Any, key_pos: Pos, value_pos: Pos) -> None:
        self[key] = value
        self.key_pos[key] = key_pos
        self.value_pos[key] = value_pos

    def copy_from(self, other: YMap, key: str) -> None:
        self.put(key, other[key], other.key_pos[key], other.value_pos[key])


class YList(list[Any]):
    """A sequence whose items know their positions."""

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.item_pos: list[Pos] = []

    def push(self, value: Any, pos: Pos) -> None:
        self.append(value)
        self.item_pos.append(pos)


def locate(root: Any, loc: Sequence[str | int], *, at_key: bool = False) -> Pos | None:
    """Follow a validation `loc` through the tree to the deepest node it reaches.

    Elements that are not in the data (pydantic's union tags, validator names) are skipped. A
    tag can also look like a key (`notify` in `{notify: team}`), so the walk takes the reading
    that matches the most elements, preferring one that reaches the last element. `at_key`
    points at the last key itself, which is what a user wants for an unknown key.
    """
    _, _, pos, _ = _walk(root, tuple(loc), at_key)
    return pos if pos is not None else getattr(root, "pos", None)


def matched(root: Any, loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """The elements of `loc` that are real keys and indices of the data, in order."""
    return _walk(root, tuple(loc), False)[3]


_Walk = tuple[int, bool, "Pos | None", tuple["str | int", ...]]


def _walk(node: Any, loc: tuple[str | int, ...], at_key: bool) -> _Walk:
    """(elements matched, whether the last one was, position reached, elements matched)."""
    if not loc:
        return 0, True, None, ()
    part, rest = loc[0], loc[1:]
    skipped = _walk(node, rest, at_key)
    if not rest:
        skipped = (skipped[0], False, skipped[2], skipped[3])
    if isinstance(node, YMap) and isinstance(part, str) and part in node:
        pos = node.key_pos[part] if (at_key and not rest) else node.value_pos[part]
        child = node[part]
    elif isinstance(node, YList) and isinstance(part, int) and 0 <= part < len(node):
        pos = node.item_pos[part]
        child = node[part]
    else:
        return skipped
    n, last, deeper, trail = _walk(child, rest, at_key)
    taken = (n + 1, last, deeper or pos, (part, *trail))
    return taken if taken[:2] >= skipped[:2] else skipped


def copy_tree(node: Any) -> Any:
    """A copy whose containers can be changed (interpolation edits values in place)."""
    if isinstance(node, YMap):
        m = YMap(node.pos)
        for k, v in node.items():
            m.put(k, copy_tree(v), node.key_pos[k], node.value_pos[k])
        return m
    if isinstance(node, YList):
        s = YList(node.pos)
        for v, pos in zip(node, node.item_pos, strict=True):
            s.push(copy_tree(v), pos)
        return s
    return node


def to_plain(node: Any) -> Any:
    """Drop the position bookkeeping (for hashing, comparing and dumping)."""
    if isinstance(node, dict):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    return node
