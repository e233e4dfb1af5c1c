"""Render records as table, json, jsonl or csv, streaming; progress on a terminal only.

No AWS calls here. Records are mappings; nested values are JSON-encoded in csv and
table cells. ``json`` streams one array without holding the records.
"""

from __future__ import annotations

import csv
import os
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

from awsops.errors import UsageError
from awsops.text import cell, json_default, printable, to_json

__all__ = [
    "FORMATS",
    "RecordWriter",
    "cell",
    "default_format",
    "json_default",
    "make_console",
    "printable",
    "progress_for",
    "to_json",
]

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


class RecordWriter:
    """Streams records to ``stream`` in one format. Use as a context manager."""

    def __init__(
        self,
        fmt: str,
        stream: IO[str] | None = None,
        columns: Sequence[str] | None = None,
        title: str | None = None,
        drop_order: Sequence[str] = (),
    ) -> None:
        self.fmt = default_format(fmt, stream)
        self.stream = stream or sys.stdout
        self.columns = list(columns) if columns else None
        self.title = title
        self.drop_order = list(drop_order)
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
        from awsops.tables import column, render_table

        names = self._columns_for(self._rows[0])
        cols = [column(c) for c in names]
        # On a narrow terminal: the columns named in drop_order go first, in that order,
        # then the free-text columns from the right.
        text_cols = [c.name for c in reversed(cols) if not c.key]
        order = {
            name: n
            for n, name in enumerate(dict.fromkeys([*self.drop_order, *text_cols]), 1)
            if name in names
        }
        cols = [column(c.name, drop=order.get(c.name, 0)) for c in cols]
        rows = [
            [(r if isinstance(r, Mapping) else {"value": r}).get(c) for c in names]
            for r in self._rows
        ]
        render_table(
            Console(file=self.stream, width=stream_width(self.stream)), cols, rows, self.title
        )


def write_records(
    records: Iterable[Any],
    fmt: str | None,
    query: str | None = None,
    stream: IO[str] | None = None,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    drop_order: Sequence[str] = (),
    warn: IO[str] | None = None,
) -> int:
    """Write records in ``fmt``; with ``query``, the JMESPath result over *all* the
    records as printed (their json field names), as the AWS CLI applies ``--query`` to
    the merged result: a list is written as records, anything else as one JSON value.
    A query that selects nothing says so on ``warn`` (stderr). Returns the count."""
    stream = stream or sys.stdout
    if query is None:
        with RecordWriter(fmt or "", stream, columns, title, drop_order) as writer:
            return writer.write_all(records)
    from awsops.paginate import compile_query

    expr = compile_query(query)
    assert expr is not None
    everything = list(records)
    found = expr.search(everything)
    if found is None or found == []:
        print(
            f"warning: --query {query!r} selected nothing from {len(everything)} record(s) "
            "(fields are the json output's, e.g. instance_id, state)",
            file=warn or sys.stderr,
        )
    if not isinstance(found, list):
        stream.write(to_json(found) + "\n")
        return 1
    with RecordWriter(fmt or "", stream, title=title) as writer:
        return writer.write_all(found)


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


PIPED_WIDTH = 200


def stream_width(stream: IO[str]) -> int | None:
    """The width to render at: the terminal's on a terminal (None: rich asks it);
    ``$COLUMNS`` or 200 when piped or redirected."""
    if stream.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= 20 else PIPED_WIDTH


def make_console(stderr: bool = False) -> Console:
    """A rich Console for tables (see :func:`stream_width`)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=stream_width(stream))
