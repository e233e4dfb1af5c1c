"""The notices log: what each channel delivered to whom, so nothing is sent twice.

``$AWSOPS_HOME/notices/log.jsonl`` (0600), one JSON record per delivery attempt,
appended and fsync'd right after the attempt::

    {"ts": ..., "channel": "smtp", "owner": "alice@example.com", "notice_id": ...,
     "kind": "final", "status": "delivered", "to": "alice@example.com",
     "delivers": [["111.../us-east-1/i-0abc@2026-06-15T09:00:00Z", "final"]]}

Only ``delivered`` records count as sent; ``failed`` and ``undeliverable`` ones are
history (the notice is owed again on the next run). A crash between a delivery and its
record sends that one notice again on the next run: a repeat is preferred to a loss.
A torn last line (a crash mid-write) is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from awsops.clock import iso_utc, system_clock
from awsops.errors import UsageError
from awsops.home import home, open_private, private_dir

DELIVERED = "delivered"
FAILED = "failed"
UNDELIVERABLE = "undeliverable"  # no configured channel can reach the owner


def log_path() -> Path:
    return home() / "notices" / "log.jsonl"


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record
    except FileNotFoundError:
        return


class NoticeLog:
    """Append-only; :meth:`delivered` is what the log says each channel sent."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or log_path()

    def delivered(self, channel: str) -> dict[str, set[tuple[str, str]]]:
        """Owner label -> the (instance key, kind) pairs ``channel`` delivered to them."""
        out: dict[str, set[tuple[str, str]]] = {}
        for r in read_records(self.path):
            if r.get("channel") != channel or r.get("status") != DELIVERED:
                continue
            pairs = out.setdefault(str(r.get("owner")), set())
            for item in r.get("delivers") or ():
                if isinstance(item, list) and len(item) == 2:
                    pairs.add((str(item[0]), str(item[1])))
        return out

    def notified(self) -> set[str]:
        """The marks (instance keys) some channel delivered a notice about."""
        return {
            str(item[0])
            for r in read_records(self.path)
            if r.get("status") == DELIVERED
            for item in r.get("delivers") or ()
            if isinstance(item, list) and len(item) == 2
        }

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record and fsync it; a failure is a UsageError naming the log."""
        line = json.dumps({"ts": iso_utc(system_clock()), **record}, sort_keys=True) + "\n"
        private_dir(self.path.parent)
        try:
            fd = open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise UsageError(
                f"cannot write the notices log {self.path}: {exc.strerror or exc}"
            ) from None
