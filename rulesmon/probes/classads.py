"""ClassAds as text, for DAGMan's node status file and similar dumps.

Two layouts are read:

- new ClassAds, the node status file's format since HTCondor 8.1.6: `[ Attr = value; ... ]`
  one after another, with `/* ... */` and `//` comments;
- old ClassAds, as `condor_q -long` prints them: `Attr = value` one per line, an empty line
  between ads.

Values become Python values: strings (escapes undone), integers, reals, booleans, `undefined`
and `error` as None, lists `{ a, b }` as lists, nested `[ ... ]` as dicts; anything else (an
expression such as `RequestMemory * 2`) is kept as its text. A malformed ad raises
`ClassAdError` with the line it starts on; the caller decides whether one bad ad spoils the
file.
"""

from __future__ import annotations

from typing import Any


class ClassAdError(ValueError):
    """Text that is not a ClassAd, with the 1-based line where the problem is."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


def parse_classads(text: str) -> list[dict[str, Any]]:
    """Every ad in `text`, in order; old or new layout, detected from the first character."""
    stripped = _strip_comments(text)
    head = stripped.lstrip()
    if not head:
        return []
    if head[0] == "[":
        return _NewParser(stripped).ads()
    return _old(stripped)


def _strip_comments(text: str) -> str:
    """Comments out, strings kept (a `/*` inside quotes is text); line breaks preserved so
    errors keep their line numbers."""
    if "/*" not in text and "//" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _NewParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def line(self, pos: int | None = None) -> int:
        return self.text.count("\n", 0, self.i if pos is None else pos) + 1

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.i < n and text[self.i] in " \t\r\n;":
            self.i += 1

    def ads(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            self.skip()
            if self.i >= len(self.text):
                return out
            if self.text[self.i] != "[":
                raise ClassAdError(self.line(), f"expected '[' to start an ad, found "
                                   f"{self.text[self.i:self.i + 20]!r}")
            out.append(self.record())

    def record(self) -> dict[str, Any]:
        start = self.i
        self.i += 1  # [
        ad: dict[str, Any] = {}
        text = self.text
        while True:
            self.skip()
            if self.i >= len(text):
                raise ClassAdError(self.line(start), "ad is not closed with ']'")
            if text[self.i] == "]":
                self.i += 1
                return ad
            eq = text.find("=", self.i)
            if eq < 0:
                raise ClassAdError(self.line(), "expected Attr = value")
            name = text[self.i:eq].strip()
            if not name or not (name.replace("_", "a").replace(".", "a").isalnum()):
                raise ClassAdError(self.line(), f"bad attribute name {name!r}")
            self.i = eq + 1
            ad[name] = self.value()

    def value(self) -> Any:
        """One value up to `;` or the ad's `]` at depth 0."""
        text, n = self.text, len(self.text)
        while self.i < n and text[self.i] in " \t\r\n":
            self.i += 1
        if self.i < n and text[self.i] == "[":
            return self.record()
        start = self.i
        depth = 0
        while self.i < n:
            ch = text[self.i]
            if ch == '"':
                j = self.i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                if j >= n:
                    raise ClassAdError(self.line(start), "string is not closed")
                self.i = j + 1
                continue
            if ch in "{(":
                depth += 1
            elif ch in "})":
                depth -= 1
            elif depth == 0 and ch in ";]":
                break
            self.i += 1
        raw = text[start:self.i].strip()
        if self.i < n and text[self.i] == ";":
            self.i += 1
        if not raw:
            raise ClassAdError(self.line(start), "attribute has no value")
        return literal(raw)


def _old(text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ad: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            if ad:
                out.append(ad)
                ad = {}
            continue
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or not name or not name.replace("_", "a").replace(".", "a").isalnum():
            raise ClassAdError(number, f"expected Attr = value, found {line[:40]!r}")
        ad[name] = literal(value.strip().rstrip(";").strip())
    if ad:
        out.append(ad)
    return out


def literal(raw: str) -> Any:
    """A ClassAd literal as a Python value; an expression stays text."""
    if not raw:
        return None
    first = raw[0]
    if first == '"' and raw.endswith('"') and len(raw) >= 2:
        return _unescape(raw[1:-1])
    if first == "{" and raw.endswith("}"):
        return [literal(item) for item in _split_list(raw[1:-1])]
    low = raw.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low in ("undefined", "error"):
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def _split_list(body: str) -> list[str]:
    items: list[str] = []
    depth, start, i, n = 0, 0, 0, len(body)
    while i < n:
        ch = body[i]
        if ch == '"':
            i += 1
            while i < n and body[i] != '"':
                i += 2 if body[i] == "\\" else 1
        elif ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(body[start:i].strip())
            start = i + 1
        i += 1
    last = body[start:].strip()
    if last or items:
        items.append(last)
    return [item for item in items if item]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'"}


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n:
            out.append(_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
