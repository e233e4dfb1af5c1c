"""Render records as table, json, jsonl or csv, streaming; progress on a terminal only.

No AWS calls here. Records are mappings; nested values are JSON-encoded in csv and
table cells. ``json`` streams one array without holding the records.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from awsops.errors import UsageError

FORMATS = ("table", "json", "jsonl", "csv")


def default_format(requested: str | None, stream: IO[str] | None = None) -> str:
    """``requested`` if given, else table on a terminal and jsonl when piped."""
    if requested:
        if requested not in FORMATS:
            raise UsageError(
                f"unknown output format {requested!r}; use one of {', '.join(FORMATS)}"
            )
        return requested
    stream = stream or sys.stdout
    return "table" if stream.isatty() else "jsonl"


def json_default(value: Any) -> Any:
    """JSON encoding for datetimes, sets and other values boto3 returns."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, default=json_default, indent=indent, sort_keys=False)


def cell(value: Any) -> str:
    """A flat text form of a value for csv and table cells."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return to_json(value)


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\u202e``,
    ``\\x1b``...): control characters, bidirectional overrides and other format
    characters in a tag value can neither move the cursor nor reorder what a reviewer
    reads on a terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def safe_cell(value: Any) -> Text:
    """A table cell: :func:`cell`, escaped by :func:`printable`, never read as markup."""
    return Text(printable(cell(value)))


class RecordWriter:
    """Streams records to ``stream`` in one format. Use as a context manager."""

    def __init__(
        self,
        fmt: str,
        stream: IO[str] | None = None,
        columns: Sequence[str] | None = None,
        title: str | None = None,
    ) -> None:
        self.fmt = default_format(fmt, stream)
        self.stream = stream or sys.stdout
        self.columns = list(columns) if columns else None
        self.title = title
        self.count = 0
        self._csv: Any = None
        self._rows: list[Any] = []

    def __enter__(self) -> RecordWriter:
        if self.fmt == "json":
            self.stream.write("[")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _columns_for(self, record: Any) -> list[str]:
        if self.columns is None:
            self.columns = list(record) if isinstance(record, Mapping) else ["value"]
        return self.columns

    def write(self, record: Any) -> None:
        self.count += 1
        if self.fmt == "jsonl":
            self.stream.write(to_json(record) + "\n")
        elif self.fmt == "json":
            self.stream.write(("\n  " if self.count == 1 else ",\n  ") + to_json(record))
        elif self.fmt == "csv":
            cols = self._columns_for(record)
            if self._csv is None:
                self._csv = csv.writer(self.stream, lineterminator="\n")
                self._csv.writerow(cols)
            row = record if isinstance(record, Mapping) else {"value": record}
            self._csv.writerow([cell(row.get(c)) for c in cols])
        else:  # table: a terminal-sized human view, rendered at the end
            self._rows.append(record)

    def write_all(self, records: Iterable[Any]) -> int:
        for r in records:
            self.write(r)
        return self.count

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
            self.fmt = "closed"
        elif self.fmt == "table":
            self._render_table()
            self.fmt = "closed"
        self.stream.flush()

    def _render_table(self) -> None:
        if not self._rows:
            return
        cols = self._columns_for(self._rows[0])
        table = Table(title=self.title, show_lines=False, header_style="bold")
        for c in cols:
            table.add_column(c, overflow="fold")
        for r in self._rows:
            row = r if isinstance(r, Mapping) else {"value": r}
            table.add_row(*(safe_cell(row.get(c)) for c in cols))
        width = None if self.stream.isatty() else 200
        Console(file=self.stream, width=width).print(table)


def progress_for(
    stream: IO[str] | None = None, transient: bool = True
) -> AbstractContextManager[Any]:
    """A rich Progress on ``stream`` (stderr) when it is a terminal; else a no-op."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return nullcontext(None)
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=transient,
    )


def make_console(stderr: bool = False) -> Console:
    """A rich Console: the terminal's width on a terminal, wide (no wrapping of ids) when
    piped or redirected."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200)
