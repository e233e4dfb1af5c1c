"""When was an instance stopped? Parse ``StateTransitionReason``; optionally ask CloudTrail.

The answer is a :class:`StopTime`: a time and where it came from, or unknown. There is
deliberately no fallback to ``LaunchTime``: an instance launched long ago and stopped
yesterday must never look long-stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from awsops.errors import translate

SOURCE_REASON = "state-transition-reason"
SOURCE_CLOUDTRAIL = "cloudtrail"
SOURCE_UNKNOWN = "unknown"

# "User initiated (2026-01-02 03:04:05 GMT)" (EC2), "... UTC)" (moto and some tools),
# ISO forms with T/Z/offsets, and dates without seconds. The date must sit in parentheses
# after a reason text, as EC2 writes it, or be the whole string.
_STAMP = (
    r"(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    r"\s*(?P<zone>GMT|UTC|Z|[+-]\d{2}:?\d{2})?"
)
_REASON_RE = re.compile(r"\(\s*" + _STAMP + r"\s*\)\s*$")
_BARE_RE = re.compile(r"^\s*" + _STAMP + r"\s*$")


@dataclass(frozen=True)
class StopTime:
    """A stop time and its source; ``at`` is None when unknown (never guessed)."""

    at: dt.datetime | None
    source: str

    @property
    def known(self) -> bool:
        return self.at is not None

    def age_days(self, now: dt.datetime) -> float | None:
        if self.at is None:
            return None
        return (now - self.at).total_seconds() / 86400.0

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat() if self.at else None, "source": self.source}


UNKNOWN = StopTime(None, SOURCE_UNKNOWN)


def _zone(value: str | None) -> dt.tzinfo:
    if value in (None, "GMT", "UTC", "Z"):
        return dt.timezone.utc
    assert value is not None
    sign = 1 if value[0] == "+" else -1
    digits = value[1:].replace(":", "")
    return dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def parse_reason(reason: str | None) -> dt.datetime | None:
    """The UTC time in a ``StateTransitionReason``, or None if it holds no usable date.

    Timestamps in the future or before 2006 (EC2's launch) are rejected as corrupt.
    """
    if not reason:
        return None
    m = _REASON_RE.search(reason) or _BARE_RE.match(reason)
    if not m:
        return None
    clock = m.group("time")
    fmt = "%Y-%m-%d %H:%M" + (":%S" if clock.count(":") == 2 else "")
    if "." in clock:
        fmt += ".%f"
    try:
        parsed = dt.datetime.strptime(f"{m.group('date')} {clock}", fmt)
    except ValueError:
        return None
    try:
        when = parsed.replace(tzinfo=_zone(m.group("zone"))).astimezone(dt.timezone.utc)
    except (ValueError, IndexError):
        return None
    if when.year < 2006 or when > dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1):
        return None
    return when


def from_instance(instance: Mapping[str, Any]) -> StopTime:
    """The stop time of a described instance from its ``StateTransitionReason`` only."""
    at = parse_reason(instance.get("StateTransitionReason"))
    return StopTime(at, SOURCE_REASON) if at else UNKNOWN


def _refused(event: Mapping[str, Any]) -> bool:
    """True if CloudTrail recorded the call as failed (it carries an errorCode)."""
    detail = event.get("CloudTrailEvent")
    if not isinstance(detail, str):
        return False
    try:
        return bool(json.loads(detail).get("errorCode"))
    except (ValueError, AttributeError):
        return False


class RateLimiter:
    """At most ``rate`` acquisitions per second (thread-safe), by spacing them out."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            self._sleep(wait)


CLOUDTRAIL_WINDOW_DAYS = 90
CLOUDTRAIL_RATE = 2.0  # LookupEvents: 2 requests per second per account and region


class InstanceTrail:
    """The pages of CloudTrail events naming one instance (its 90-day history, newest
    first): calls spaced to at most 2 per second (the LookupEvents limit per account
    and region), at most ``max_pages`` pages per instance, counted in ``calls``."""

    def __init__(self, client: Any, limiter: RateLimiter | None, max_pages: int) -> None:
        self.client = client
        self.limiter = limiter or RateLimiter(CLOUDTRAIL_RATE)
        self.max_pages = max_pages
        self.calls = 0

    def pages(self, instance_id: str, now: dt.datetime) -> Iterator[list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": instance_id}],
            "StartTime": now - dt.timedelta(days=CLOUDTRAIL_WINDOW_DAYS),
            "EndTime": now,
            "MaxResults": 50,
        }
        for _ in range(self.max_pages):
            self.limiter.acquire()
            self.calls += 1
            try:
                resp = self.client.lookup_events(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise translate(
                    exc, operation="LookupEvents", region=self.client.meta.region_name
                ) from exc
            yield list(resp.get("Events", []))
            token = resp.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token


class CloudTrailStopLookup(InstanceTrail):
    """Find an instance's last ``StopInstances`` event in CloudTrail (90-day window)."""

    def __init__(
        self,
        client: Any,
        limiter: RateLimiter | None = None,
        max_pages: int = 5,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        super().__init__(client, limiter, max_pages)
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))

    def lookup(self, instance_id: str) -> StopTime:
        """The time of the latest StopInstances event naming ``instance_id``, or UNKNOWN.

        Events come newest first. If the newest relevant event is a start (StartInstances
        or RunInstances), the instance was stopped later by something CloudTrail did not
        record as StopInstances (an OS shutdown): the stop time is unknown.
        """
        for page in self.pages(instance_id, self._now()):
            events = sorted(
                (e for e in page if isinstance(e.get("EventTime"), dt.datetime)),
                key=lambda e: e["EventTime"],
                reverse=True,
            )
            for event in events:
                name = event.get("EventName")
                if _refused(event):
                    continue  # a DryRun probe or a denied call changed nothing
                if name == "StopInstances":
                    return StopTime(
                        event["EventTime"].astimezone(dt.timezone.utc), SOURCE_CLOUDTRAIL
                    )
                if name in ("StartInstances", "RunInstances"):
                    return UNKNOWN
        return UNKNOWN
