"""A plan's review and an apply's report as documents for a change ticket: markdown, and
one self-contained HTML file (inline style, no script, nothing fetched from a network).
Every value is escaped for its format."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from awsops.decommission.render import target_heading, totals_lines, volumes_text
from awsops.text import cell, printable

Table = tuple[Sequence[str], Sequence[Sequence[Any]]]


def _terminate_table(t: Mapping[str, Any]) -> Table:
    return (
        ("instance", "name", "stopped", "source", "type", "volumes deleted", "saving/mo"),
        [
            (
                r["instance_id"],
                r["name"],
                r["stopped_at"] or "?",
                r["stop_source"],
                r["instance_type"] or "",
                volumes_text(r["volumes_deleted"]),
                f"{r['monthly_saving']:.2f}",
            )
            for r in t["terminate"]
        ],
    )


def _keep_table(t: Mapping[str, Any]) -> Table:
    return (
        ("instance", "name", "reason", "detail"),
        [(r["instance_id"], r["name"], r["reason"], r["detail"]) for r in t["keep"]],
    )


def _sections(review: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, Table]]]]:
    out = []
    for t in review["targets"]:
        tables: list[tuple[str, Table]] = []
        if t["terminate"]:
            tables.append(("to terminate", _terminate_table(t)))
        if t["keep"]:
            tables.append(("kept", _keep_table(t)))
        heading = target_heading(t)
        if t.get("error"):
            heading += f" (could not be planned: {t['error']})"
        out.append((heading, tables))
    return out


# --- markdown -----------------------------------------------------------------------------


def _md(value: Any) -> str:
    text = printable(cell(value))
    for ch in ("\\", "|", "`", "*", "_", "<", ">", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text


def _md_table(table: Table) -> list[str]:
    head, rows = table
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return lines


def review_markdown(review: Mapping[str, Any]) -> str:
    lines = [f"# Decommission plan {_md(review['plan_id'])}", ""]
    for heading, tables in _sections(review):
        lines += [f"## {_md(heading)}", ""]
        for title, table in tables:
            lines += [f"**{_md(title)}**", "", *_md_table(table), ""]
    lines += ["## Totals", ""]
    lines += [f"- {_md(line)}" for line in totals_lines(review)]
    return "\n".join(lines) + "\n"


def report_markdown(title: str, table: Table, summary: Sequence[str]) -> str:
    lines = [f"# {_md(title)}", "", *_md_table(table), ""]
    lines += [f"- {_md(line)}" for line in summary]
    return "\n".join(lines) + "\n"


# --- html ---------------------------------------------------------------------------------

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #111; background: #fff; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eee; } td.id { font-family: ui-monospace, monospace; white-space: nowrap; }
caption { text-align: left; font-weight: bold; padding: .3em 0; }
"""
_ID_HEADINGS = frozenset({"instance", "stopped", "instance_id", "account_id", "region"})


def _h(value: Any) -> str:
    return html.escape(printable(cell(value)), quote=True)


def _html_table(title: str, table: Table) -> str:
    head, rows = table
    ids = [h in _ID_HEADINGS for h in head]
    out = [f"<table><caption>{_h(title)}</caption><tr>"]
    out += [f"<th>{_h(h)}</th>" for h in head]
    out.append("</tr>")
    for row in rows:
        cells = "".join(
            f'<td class="id">{_h(v)}</td>' if is_id else f"<td>{_h(v)}</td>"
            for v, is_id in zip(row, ids, strict=True)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{_h(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def review_html(review: Mapping[str, Any]) -> str:
    title = f"Decommission plan {review['plan_id']}"
    body = [f"<h1>{_h(title)}</h1>"]
    for heading, tables in _sections(review):
        body.append(f"<h2>{_h(heading)}</h2>")
        body += [_html_table(t, table) for t, table in tables]
    body.append("<h2>Totals</h2><ul>")
    body += [f"<li>{_h(line)}</li>" for line in totals_lines(review)]
    body.append("</ul>")
    return _page(title, body)


def report_html(title: str, table: Table, summary: Sequence[str]) -> str:
    body = [f"<h1>{_h(title)}</h1>", _html_table("instances", table), "<ul>"]
    body += [f"<li>{_h(line)}</li>" for line in summary]
    body.append("</ul>")
    return _page(title, body)
