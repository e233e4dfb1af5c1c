"""Tables that fit the terminal without cutting what a reviewer must read whole.

Ids, accounts, regions and dates are never cut or wrapped; free text (names, reasons,
lists) wraps between words, and no column is narrower than its longest word, so an id
inside a list stays whole too. When the table is wider than the terminal, columns are
dropped in the order given (e.g. account when there is one account, source, type); when
even that does not fit, each record is shown as a block of ``field: value`` lines.
Every value is escaped (:func:`awsops.output.printable`) and never read as markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from awsops.text import cell, printable

# Column names whose values are identifiers or instants: never cut or wrapped.
_KEY_NAMES = frozenset(
    {"account", "region", "instance", "volume", "snapshot", "stopped", "date", "time", "arn"}
)
_KEY_SUFFIXES = ("_id", "_arn", "_at", "_time", "_date", "account", "region")
_CELL_PADDING = 3  # one space each side and one border per column
_PLAIN_TITLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ,./()-]*[A-Za-z0-9)]|[A-Za-z0-9]")


@dataclass(frozen=True)
class Column:
    """``key`` columns are never cut or wrapped; ``drop`` orders the columns that may be
    left out on a narrow terminal (1 first; 0 never)."""

    name: str
    key: bool = False
    drop: int = 0


def column(name: str, drop: int = 0) -> Column:
    """A column whose kind is told by its name (``instance_id``, ``region``...)."""
    lowered = name.lower().replace(" ", "_")
    key = lowered in _KEY_NAMES or lowered.endswith(_KEY_SUFFIXES)
    return Column(name, key=key, drop=drop)


def _text(value: Any) -> str:
    return printable(cell(value))


def _min_width(col: Column, values: Sequence[str]) -> int:
    longest = max((len(v) if col.key else max(map(len, v.split()), default=0)) for v in values)
    return max(len(col.name), longest, 1)


def _fits(cols: Sequence[Column], widths: Mapping[str, int], width: int) -> bool:
    return sum(widths[c.name] + _CELL_PADDING for c in cols) + 1 <= width


def render_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    title: str | None = None,
) -> None:
    """Print ``rows`` under ``columns`` within ``console.width`` (see the module doc)."""
    texts = [[_text(v) for v in row] for row in rows]
    by_name = {c.name: i for i, c in enumerate(columns)}
    natural = {
        c.name: max([1, cell_len(c.name), *(cell_len(r[i]) for r in texts)])
        for i, c in enumerate(columns)
    }
    if _fits(columns, natural, console.width):
        # Every value fits on one line: the table rich would draw, drawn directly (rich
        # costs about 2 ms per table, most of a plan's review of many small targets).
        drawn = _drawn(console, columns, texts, title, natural)
        console.print(drawn if drawn is not None else _table(columns, texts, title, natural, True))
        return
    widths = {c.name: _min_width(c, [r[by_name[c.name]] for r in texts] or [""]) for c in columns}
    visible = list(columns)
    droppable = sorted((c for c in columns if c.drop), key=lambda c: c.drop)
    while not _fits(visible, widths, console.width) and droppable:
        visible.remove(droppable.pop(0))
    if not _fits(visible, widths, console.width):
        _render_blocks(console, columns, texts, title)
        return
    shown = [by_name[c.name] for c in visible]
    console.print(_table(visible, [[r[i] for i in shown] for r in texts], title, widths))
    hidden = [c.name for c in columns if c not in visible]
    if hidden:
        console.print(
            Text(f"(left out to fit {console.width} columns: {', '.join(hidden)})", style="dim")
        )


def _table(
    columns: Sequence[Column],
    texts: Sequence[Sequence[str]],
    title: str | None,
    widths: Mapping[str, int],
    exact: bool = False,
) -> Table:
    """The rich table of ``texts`` (one value per column): each column at least its
    width, free text wrapping; or, ``exact``, each column exactly its width, unwrapped
    (for values that all fit)."""
    table = Table(title=title, header_style="bold", title_justify="left")
    for c in columns:
        table.add_column(
            c.name,
            no_wrap=c.key or exact,
            min_width=None if exact else widths[c.name],
            width=widths[c.name] if exact else None,
            overflow="ellipsis" if c.key else "fold",
        )
    for row in texts:
        table.add_row(*(Text(v) for v in row))
    return table


def _drawn(
    console: Console,
    columns: Sequence[Column],
    texts: Sequence[Sequence[str]],
    title: str | None,
    widths: Mapping[str, int],
) -> _Lines | None:
    """The lines rich draws for a table whose values all fit on one line (its default
    heavy-headed box, bold header, title in the theme's ``table.title`` style), or None
    where rich would draw something else: a console limited to ASCII or the legacy
    Windows console (rich substitutes the box), a title that is not plain words or is
    wider than the table (rich reads markup in titles, and wraps them)."""
    if console.options.ascii_only or console.legacy_windows:
        return None
    inner = [widths[c.name] for c in columns]
    total = sum(inner) + _CELL_PADDING * len(inner) + 1
    if title is not None and not (_PLAIN_TITLE.fullmatch(title) and len(title) <= total):
        return None
    b = box.HEAVY_HEAD
    bold = Style(bold=True)

    def rule(left: str, fill: str, cross: str, right: str) -> list[Segment]:
        return [Segment(left + cross.join(fill * (w + 2) for w in inner) + right)]

    def pad(value: str, width: int) -> str:
        return f" {value}{' ' * (width - cell_len(value))} "

    lines = [[Segment(title.ljust(total), console.get_style("table.title"))]] if title else []
    lines.append(rule(b.top_left, b.top, b.top_divider, b.top_right))
    head = [Segment(b.head_left)]
    for c, w in zip(columns, inner, strict=True):
        head += [Segment(pad(c.name, w), bold), Segment(b.head_vertical)]
    lines.append(head)
    lines.append(rule(b.head_row_left, b.head_row_horizontal, b.head_row_cross, b.head_row_right))
    for row in texts:
        cells = (pad(v, w) for v, w in zip(row, inner, strict=True))
        lines.append([Segment(b.mid_left + b.mid_vertical.join(cells) + b.mid_right)])
    lines.append(rule(b.bottom_left, b.bottom, b.bottom_divider, b.bottom_right))
    return _Lines(lines)


@dataclass(frozen=True)
class _Lines:
    """Lines of segments already laid out, printed as they are."""

    lines: list[list[Segment]]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from line
            yield Segment.line()


def _render_blocks(
    console: Console, columns: Sequence[Column], texts: Sequence[Sequence[str]], title: str | None
) -> None:
    """One record per block: ``field: value`` lines (values wrap between words)."""
    if title:
        console.print(Text(title, style="bold"))
    label = max((len(c.name) for c in columns), default=0)
    for n, row in enumerate(texts):
        if n:
            console.print()
        for c, value in zip(columns, row, strict=True):
            # soft_wrap: the terminal may wrap the line, but no id is cut in the text
            console.print(Text(f"{c.name.rjust(label)}: {value}"), soft_wrap=True)
