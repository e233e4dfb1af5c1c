"""Time in awsops: timezone-aware UTC everywhere, from a clock that tests can replace.

A naive ``datetime`` is refused rather than guessed at: comparing a naive local time
with an aware UTC one is how date-based tooling marks the wrong day or crashes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

UTC = dt.timezone.utc

Clock = Callable[[], dt.datetime]
"""A function returning the current time, timezone-aware."""


def system_clock() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(UTC)


def as_utc(value: dt.datetime, what: str = "time") -> dt.datetime:
    """``value`` in UTC; a naive datetime is a ValueError, never assumed local."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def iso_utc(value: dt.datetime) -> str:
    """``2026-06-01T12:00:00Z``: UTC, whole seconds (microseconds are dropped)."""
    return as_utc(value).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
