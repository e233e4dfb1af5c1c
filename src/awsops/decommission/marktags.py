"""The tags of the mark-and-notify cycle, and what they mean. Pure: no I/O, no clock.

- ``awsops:terminate-after=<ISO-8601 UTC instant>``: the mark. awsops writes it once,
  as ``2026-06-15T09:00:00Z``, and never rewrites it while the instance qualifies.
- ``awsops:keep`` (any value, e.g. a reason or a ticket): the owner opts out for good.
- ``awsops:keep-until=<date or instant>``: the owner opts out until then.

Every time here is timezone-aware UTC. A value without a zone is read as UTC (never as
the host's local time), and a date alone means the *end* of that day in UTC, so
``awsops:keep-until=2026-07-01`` keeps the instance through 1 July and a hand-written
``awsops:terminate-after=2026-07-01`` is not due before 2 July: a date is never read as
earlier than a person writing it would expect.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from awsops.clock import UTC, iso_utc

MARK_TAG = "awsops:terminate-after"
KEEP_TAG = "awsops:keep"
KEEP_UNTIL_TAG = "awsops:keep-until"
OPT_OUT_TAGS = (KEEP_TAG, KEEP_UNTIL_TAG)

MAX_TAG_KEY = 128  # EC2's limits, in characters
MAX_TAG_VALUE = 256

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_INSTANT = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)


def parse_instant(value: str) -> dt.datetime | None:
    """The UTC instant a tag value names, or None if it names none.

    Accepts ``2026-07-01`` (the end of that day, UTC), ``2026-07-01T09:30[:00[.123]]``
    with ``T`` or a space, and an optional ``Z`` or ``+02:00``/``+0200`` offset (none:
    UTC)."""
    text = value.strip()
    try:
        if _DATE.fullmatch(text):
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time(), UTC) + dt.timedelta(days=1)
        m = _INSTANT.fullmatch(text)
        if not m:
            return None
        zone = m.group("zone") or "+00:00"
        if zone == "Z":
            zone = "+00:00"
        elif ":" not in zone:
            zone = f"{zone[:3]}:{zone[3:]}"
        parsed = dt.datetime.fromisoformat(f"{m.group('date')}T{m.group('time')}{zone}")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def check_tag(key: str, value: str) -> None:
    """A ValueError if EC2 would refuse the tag (key 128, value 256 characters)."""
    if not 0 < len(key) <= MAX_TAG_KEY:
        raise ValueError(f"tag key {key[:40]!r}... is not 1 to {MAX_TAG_KEY} characters")
    if len(value) > MAX_TAG_VALUE:
        raise ValueError(f"tag {key}: value is longer than {MAX_TAG_VALUE} characters")


def mark_value(at: dt.datetime) -> str:
    """The value of the mark tag for ``at``: ``2026-06-15T09:00:00Z``."""
    value = iso_utc(at)
    check_tag(MARK_TAG, value)
    return value


@dataclass(frozen=True)
class Mark:
    """An instance's mark as its tag reads; ``at`` is None when the value is no date."""

    value: str
    at: dt.datetime | None

    @property
    def readable(self) -> bool:
        return self.at is not None

    def due(self, now: dt.datetime) -> bool:
        return self.at is not None and now >= self.at


def read_mark(tags: Mapping[str, str]) -> Mark | None:
    """The mark on an instance with ``tags``, or None if it has none."""
    value = tags.get(MARK_TAG)
    if value is None:
        return None
    return Mark(value, parse_instant(value))


def mark_key(account_id: str, region: str, instance_id: str, at: dt.datetime) -> str:
    """One mark of one instance, as the notices log names it: a new mark (after an
    unmark) is another key, owed its own notices."""
    return f"{account_id}/{region}/{instance_id}@{iso_utc(at)}"


def _tag(tags: Mapping[str, str], key: str) -> tuple[str, str] | None:
    """(key as written, value) of ``key``, compared case-insensitively: people write
    ``awsops:Keep`` and ``awsops:keep`` alike."""
    wanted = key.lower()
    for k, v in tags.items():
        if k.lower() == wanted:
            return k, v
    return None


def opt_out(tags: Mapping[str, str], now: dt.datetime) -> str | None:
    """Why the owner's opt-out keeps the instance now, or None if it does not.

    ``awsops:keep`` keeps it whatever its value. ``awsops:keep-until`` keeps it until
    the instant it names; a value that names no date keeps it too (the owner meant to
    keep it: the tag is read as an opt-out until someone fixes or removes it)."""
    keep = _tag(tags, KEEP_TAG)
    if keep is not None:
        key, value = keep
        return f"tag {key}={value}" if value else f"tag {key}"
    until = _tag(tags, KEEP_UNTIL_TAG)
    if until is None:
        return None
    key, value = until
    at = parse_instant(value)
    if at is None:
        return f"tag {key}={value!r} is not a date (YYYY-MM-DD): kept until it is fixed"
    if now < at:
        return f"tag {key}={value} (kept until {iso_utc(at)})"
    return None
