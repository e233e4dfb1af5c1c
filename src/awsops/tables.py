"""Tables that fit the terminal without cutting what a reviewer must read whole.

Ids, accounts, regions and dates are never cut or wrapped; free text (names, reasons,
lists) wraps between words, and no column is narrower than its longest word, so an id
inside a list stays whole too. When the table is wider than the terminal, columns are
dropped in the order given (e.g. account when there is one account, source, type); when
even that does not fit, each record is shown as a block of ``field: value`` lines.
Every value is escaped (:func:`awsops.output.printable`) and never read as markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from awsops.text import cell, printable

# Column names whose values are identifiers or instants: never cut or wrapped.
_KEY_NAMES = frozenset(
    {"account", "region", "instance", "volume", "snapshot", "stopped", "date", "time", "arn"}
)
_KEY_SUFFIXES = ("_id", "_arn", "_at", "_time", "_date", "account", "region")
_CELL_PADDING = 3  # one space each side and one border per column


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
        # Every value fits on one line: the widths rich would measure, given outright
        # (measuring every cell again costs a third of rendering a long table).
        console.print(_table(columns, texts, title, natural, exact=True))
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
