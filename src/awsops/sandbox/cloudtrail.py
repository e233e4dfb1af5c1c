"""CloudTrail ``LookupEvents`` for ``StopInstances``, answered by the sandbox server.

moto answers LookupEvents with a 500. The sandbox keeps its own trail instead: every
StopInstances call the server has carried out, and the history seeded through the
``/_awsops/backdate`` route (``stop_event_time``), and answers LookupEvents from it in
AWS's shape: ``Events[]`` with ``EventId``, ``EventName``, ``ReadOnly``,
``AccessKeyId``, ``EventTime``, ``EventSource``, ``Username``, ``Resources`` and the
``CloudTrailEvent`` JSON string, newest first, paged by ``MaxResults``/``NextToken``
within ``StartTime``/``EndTime`` (default: the last 90 days). Each (account, region)
has its own trail, as in AWS.

Seeding rewrites history: a backdated stop replaces the stops recorded for that
instance (the seeding itself stops the instances now, then backdates them).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WINDOW_S = 90 * 86400.0
MAX_RESULTS = 50
MAX_EVENTS = 1_000_000
LOOKUP_KEYS = (
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
)
INSTANCE_TYPE = "AWS::EC2::Instance"


class TrailError(Exception):
    """A LookupEvents request AWS would refuse: ``code`` is its exception name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TrailEvent:
    """One recorded ``StopInstances`` call."""

    event_id: str
    at: float
    account_id: str
    region: str
    instance_ids: tuple[str, ...]
    username: str
    user_type: str
    access_key_id: str
    request_id: str
    name: str = "StopInstances"
    source: str = "ec2.amazonaws.com"

    def matches(self, key: str, value: str) -> bool:
        if key == "ResourceName":
            return value in self.instance_ids
        return {
            "EventId": self.event_id,
            "EventName": self.name,
            "ReadOnly": "false",
            "Username": self.username,
            "ResourceType": INSTANCE_TYPE,
            "EventSource": self.source,
            "AccessKeyId": self.access_key_id,
        }[key] == value

    def detail(self) -> str:
        """The ``CloudTrailEvent`` string, as CloudTrail records a successful call."""
        when = dt.datetime.fromtimestamp(self.at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        items = [{"instanceId": iid} for iid in self.instance_ids]
        return json.dumps(
            {
                "eventVersion": "1.09",
                "userIdentity": {
                    "type": self.user_type,
                    "accountId": self.account_id,
                    "accessKeyId": self.access_key_id,
                    "userName": self.username,
                },
                "eventTime": when,
                "eventSource": self.source,
                "eventName": self.name,
                "awsRegion": self.region,
                "sourceIPAddress": "127.0.0.1",
                "userAgent": "awsops-sandbox",
                "requestParameters": {"instancesSet": {"items": items}, "force": False},
                "responseElements": {"requestId": self.request_id},
                "requestID": self.request_id,
                "eventID": self.event_id,
                "readOnly": False,
                "eventType": "AwsApiCall",
                "managementEvent": True,
                "recipientAccountId": self.account_id,
                "eventCategory": "Management",
            }
        )

    def answer(self) -> dict[str, Any]:
        """The event as an item of LookupEvents' ``Events``."""
        return {
            "EventId": self.event_id,
            "EventName": self.name,
            "ReadOnly": "false",
            "AccessKeyId": self.access_key_id,
            "EventTime": self.at,
            "EventSource": self.source,
            "Username": self.username,
            "Resources": [
                {"ResourceType": INSTANCE_TYPE, "ResourceName": iid} for iid in self.instance_ids
            ],
            "CloudTrailEvent": self.detail(),
        }


def _order(event: TrailEvent) -> tuple[float, str]:
    return (-event.at, event.event_id)  # newest first, ties by id: a stable page order


class Trail:
    """The recorded StopInstances events of every account and region. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str], list[TrailEvent]] = {}

    def record_stop(
        self,
        account_id: str,
        region: str,
        instance_ids: Sequence[str],
        username: str,
        user_type: str = "IAMUser",
        access_key_id: str = "",
        at: float | None = None,
    ) -> TrailEvent:
        event = TrailEvent(
            event_id=str(uuid.uuid4()),
            at=time.time() if at is None else at,
            account_id=account_id,
            region=region,
            instance_ids=tuple(instance_ids),
            username=username,
            user_type=user_type,
            access_key_id=access_key_id,
            request_id=str(uuid.uuid4()),
        )
        with self._lock:
            events = self._events.setdefault((account_id, region), [])
            if sum(len(v) for v in self._events.values()) < MAX_EVENTS:
                events.append(event)
        return event

    def backdate_stop(self, account_id: str, region: str, instance_id: str, at: float) -> None:
        """Make ``at`` the only stop of ``instance_id`` in the trail."""
        with self._lock:
            kept: list[TrailEvent] = []
            for event in self._events.get((account_id, region), []):
                if instance_id not in event.instance_ids:
                    kept.append(event)
                elif len(event.instance_ids) > 1:
                    rest = tuple(i for i in event.instance_ids if i != instance_id)
                    kept.append(dataclasses.replace(event, instance_ids=rest))
            self._events[(account_id, region)] = kept
        self.record_stop(account_id, region, [instance_id], "sandbox-seed", "IAMUser", "", at=at)

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._events.values())

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def lookup(self, account_id: str, region: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a LookupEvents request body; raise :class:`TrailError` where AWS
        would refuse it."""
        key, value = _attribute(request.get("LookupAttributes") or [])
        now = time.time()
        end = _time(request, "EndTime", now)
        start = _time(request, "StartTime", end - WINDOW_S)
        if start > end:
            raise TrailError("InvalidTimeRangeException", "StartTime must be before EndTime")
        limit = request.get("MaxResults", MAX_RESULTS)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50:
            raise TrailError("InvalidMaxResultsException", "MaxResults must be from 1 to 50")
        after = _read_token(request.get("NextToken"))
        if request.get("EventCategory") == "insight":
            return {"Events": []}
        with self._lock:
            events = list(self._events.get((account_id, region), []))
        chosen = sorted(
            (
                e
                for e in events
                if start <= e.at <= end
                and (key is None or e.matches(key, value))
                and (after is None or _order(e) > after)
            ),
            key=_order,
        )
        page = chosen[:limit]
        answer: dict[str, Any] = {"Events": [e.answer() for e in page]}
        if len(chosen) > limit:
            answer["NextToken"] = _make_token(_order(page[-1]))
        return answer


def _attribute(attributes: Any) -> tuple[str | None, str]:
    if not isinstance(attributes, list) or len(attributes) > 1:
        raise TrailError(
            "InvalidLookupAttributesException", "LookupAttributes takes at most one attribute"
        )
    if not attributes:
        return None, ""
    item = attributes[0]
    key = item.get("AttributeKey") if isinstance(item, dict) else None
    value = item.get("AttributeValue") if isinstance(item, dict) else None
    if key not in LOOKUP_KEYS or not isinstance(value, str):
        raise TrailError(
            "InvalidLookupAttributesException", f"AttributeKey must be one of {LOOKUP_KEYS}"
        )
    return key, value


def _time(request: Mapping[str, Any], name: str, default: float) -> float:
    value = request.get(name)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise TrailError("ValidationException", f"{name} is not a timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def _make_token(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode()


def _read_token(token: Any) -> tuple[float, str] | None:
    if token is None:
        return None
    try:
        at, event_id = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        return float(at), str(event_id)
    except (ValueError, TypeError):
        raise TrailError("InvalidNextTokenException", "the NextToken is not valid") from None
