"""The page frame and value formats shared by every page.

Values from the database reach the HTML only through `esc` (via the helpers here or svg.esc):
job names, log lines and alert bodies are whatever a job or a ruleset wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from .svg import colour, esc

REFRESH_CHOICES = (5, 30)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2126;
background:#f6f7f9}
header{background:#1f2933;color:#e4e7eb;padding:8px 20px;display:flex;gap:18px;
align-items:baseline;flex-wrap:wrap}
header a{color:#9fd3ff;text-decoration:none}header .db{color:#9aa5b1;font-size:12px}
header .right{margin-left:auto;font-size:12px}
main{padding:12px 20px 40px;max-width:1400px}
h1{font-size:20px;margin:10px 0}h2{font-size:16px;margin:22px 0 8px}
a{color:#0b63b5}
table{border-collapse:collapse;background:#fff;margin:4px 0 8px}
th,td{padding:3px 10px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr:hover td{background:#f3f8fd}
.kv th{background:none;font-weight:500;color:#52606d}
.badge{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px;
white-space:nowrap}
.muted{color:#7b8794}.err{color:#b71c1c}
.grid-figs{display:flex;flex-wrap:wrap;gap:10px}
.fig{background:#fff;border:1px solid #e4e7eb;border-radius:6px;padding:6px 12px;min-width:110px}
.fig b{display:block;font-size:18px}.fig span{color:#52606d;font-size:12px}
pre{background:#111820;color:#d9e2ec;padding:10px;overflow:auto;max-height:420px;
font-size:12px}
.scroll{overflow:auto;max-height:680px;background:#fff;border:1px solid #e4e7eb}
.key{margin-right:14px;white-space:nowrap}.sw{display:inline-block;width:11px;height:11px;
border-radius:2px;margin-right:4px;vertical-align:-1px}
svg text{font:11px system-ui,sans-serif}svg .ct{font-weight:600;font-size:12px}
svg .ax{fill:#52606d}svg .grid{stroke:#e4e7eb}svg .nl,svg .lbl{fill:#fff}
svg .edge{fill:none;stroke:#9aa5b1;stroke-width:1.2}
svg a:hover rect{stroke:#111;stroke-width:2}
.chart,.timeline{background:#fff;border:1px solid #e4e7eb;margin:4px 8px 4px 0}
details summary{cursor:pointer}
"""


def when(iso_text: str | None) -> str:
    """Local time of an ISO time, with the ISO text (UTC) as a tooltip."""
    if not iso_text:
        return '<span class="muted">-</span>'
    local = datetime.fromisoformat(iso_text).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return f'<span title="{esc(iso_text)}">{esc(local)}</span>'


def timestamp(iso_text: str) -> float:
    return datetime.fromisoformat(iso_text).timestamp()


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def num(value: Any) -> str:
    return "-" if value is None else esc(value)


def badge(status: str | None) -> str:
    return (f'<span class="badge" style="background:{colour(status)}">'
            f"{esc(status or 'unknown')}</span>")


def job_url(uid: str) -> str:
    return "/job/" + quote(uid, safe="")


def link(href: str, text: Any) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
          numeric: Sequence[int] = (), cls: str = "") -> str:
    """A table whose cells are HTML already (escaped by the caller)."""
    head = "".join(f'<th class="n">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def kv(pairs: Iterable[tuple[str, str]]) -> str:
    """A two-column table of label and HTML value, leaving out empty values."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in pairs
                   if v not in ("", "-", '<span class="muted">-</span>'))
    return f'<table class="kv"><tbody>{rows}</tbody></table>' if rows else ""


def section(title: str, content: str) -> str:
    """A heading and its content, or nothing when there is no content."""
    return f"<h2>{esc(title)}</h2>{content}" if content else ""


def figs(pairs: Iterable[tuple[str, str]]) -> str:
    return '<div class="grid-figs">' + "".join(
        f'<div class="fig"><b>{v}</b><span>{esc(k)}</span></div>' for k, v in pairs) + "</div>"


def page(title: str, body: str, *, path: str, query: Mapping[str, str], db_label: str,
         refresh: int | None) -> str:
    """The whole document: header with navigation and the auto-refresh toggle, then body."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    choices = []
    for value in (None, *REFRESH_CHOICES):
        text = "off" if value is None else f"{value}s"
        if value == refresh:
            choices.append(f"<b>{text}</b>")
            continue
        params = {k: v for k, v in query.items() if k != "refresh"}
        if value is not None:
            params["refresh"] = str(value)
        href = path + ("?" + urlencode(params) if params else "")
        choices.append(link(href, text))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{esc(title)} · rulesmon</title><style>{_CSS}</style></head><body>"
        '<header><b>rulesmon</b><a href="/">Runs</a><a href="/tracked">Tracked work</a>'
        f'<span class="db">{esc(db_label)} (read-only)</span>'
        f'<span class="right">auto-refresh: {" · ".join(choices)}</span></header>'
        f"<main>{body}</main></body></html>")


def message_page(title: str, line: str, *, db_label: str) -> str:
    """A plain page with one line: not found, or what went wrong."""
    body = f'<h1>{esc(title)}</h1><p>{esc(line)}</p><p><a href="/">All runs</a></p>'
    return page(title, body, path="/", query={}, db_label=db_label, refresh=None)
