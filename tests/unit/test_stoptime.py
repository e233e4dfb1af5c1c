"""Stop times: StateTransitionReason parsing, CloudTrail look-ups (botocore Stubber; moto
has no LookupEvents) and the LookupEvents rate limiter (fake clock and sleep)."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from awsops.decommission.stoptime import (
    CLOUDTRAIL_WINDOW_DAYS,
    SOURCE_CLOUDTRAIL,
    SOURCE_REASON,
    SOURCE_UNKNOWN,
    UNKNOWN,
    CloudTrailStopLookup,
    RateLimiter,
    from_instance,
    parse_reason,
)
from awsops.errors import AccessDeniedError

UTC = dt.timezone.utc


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --- parse_reason ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        # real EC2
        ("User initiated (2024-03-05 06:07:08 GMT)", _utc(2024, 3, 5, 6, 7, 8)),
        # moto and some tools
        ("User initiated (2024-03-05 06:07:08 UTC)", _utc(2024, 3, 5, 6, 7, 8)),
        # other reason texts with the date in parentheses
        ("Server.ScheduledStop (2019-12-31 23:59:59 GMT)", _utc(2019, 12, 31, 23, 59, 59)),
        # ISO forms, in parentheses and bare
        ("User initiated (2024-03-05T06:07:08Z)", _utc(2024, 3, 5, 6, 7, 8)),
        ("2024-03-05T06:07:08Z", _utc(2024, 3, 5, 6, 7, 8)),
        ("2024-03-05T06:07:08+02:00", _utc(2024, 3, 5, 4, 7, 8)),
        ("2024-03-05T06:07:08-0530", _utc(2024, 3, 5, 11, 37, 8)),
        ("User initiated (2024-03-05T06:07:08.250000+00:00)", _utc(2024, 3, 5, 6, 7, 8, 250000)),
        # no seconds
        ("User initiated (2024-03-05 06:07 GMT)", _utc(2024, 3, 5, 6, 7)),
        ("2024-03-05T06:07Z", _utc(2024, 3, 5, 6, 7)),
        # no zone at all: EC2 times are UTC
        ("User initiated (2024-03-05 06:07:08)", _utc(2024, 3, 5, 6, 7, 8)),
        # an offset that crosses midnight and a year
        ("User initiated (2007-01-01 01:00:00 +02:00)", _utc(2006, 12, 31, 23, 0, 0)),
    ],
)
def test_parse_reason_accepts(reason: str, expected: dt.datetime) -> None:
    got = parse_reason(reason)
    assert got == expected
    assert got is not None and got.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "reason",
    [
        None,
        "",
        "   ",
        "User initiated",
        "User initiated ()",
        "Client.UserInitiatedShutdown: User initiated shutdown",
        "garbage",
        "User initiated (yesterday)",
        "User initiated (2024/03/05 06:07:08 GMT)",
        "User initiated (05-03-2024 06:07:08 GMT)",
        # the date must be in the trailing parentheses or the whole string
        "User initiated (2024-03-05 06:07:08 GMT) by someone",
        "stopped at 2024-03-05 06:07:08 GMT",
        # impossible dates and times
        "User initiated (2024-02-30 06:07:08 GMT)",
        "User initiated (2023-02-29 06:07:08 GMT)",
        "User initiated (2024-13-01 06:07:08 GMT)",
        "User initiated (2024-03-05 24:00:00 GMT)",
        "User initiated (2024-03-05 06:60:08 GMT)",
        "User initiated (2024-03-05 06:07:61 GMT)",
        "2024-03-05T06:07:08+25:00",
        # before EC2 existed
        "User initiated (2005-12-31 23:59:59 GMT)",
        "User initiated (1970-01-01 00:00:00 GMT)",
        "2006-01-01T00:30:00+01:00",  # 2005-12-31 23:30 UTC
    ],
)
def test_parse_reason_rejects(reason: str | None) -> None:
    assert parse_reason(reason) is None


def test_parse_reason_rejects_future_dates() -> None:
    now = dt.datetime.now(UTC)
    for ahead in (dt.timedelta(hours=2), dt.timedelta(days=1), dt.timedelta(days=3650)):
        stamp = (now + ahead).strftime("%Y-%m-%d %H:%M:%S")
        assert parse_reason(f"User initiated ({stamp} GMT)") is None, ahead
    assert parse_reason("User initiated (2999-01-01 00:00:00 GMT)") is None


def test_parse_reason_2006_boundary() -> None:
    assert parse_reason("User initiated (2006-01-01 00:00:00 GMT)") == _utc(2006, 1, 1)


_NOW = dt.datetime.now(UTC).replace(tzinfo=None)


@settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(min_value=dt.datetime(2006, 1, 1), max_value=_NOW),
    zone=st.sampled_from(["GMT", "UTC"]),
)
def test_parse_reason_round_trip(when: dt.datetime, zone: str) -> None:
    when = when.replace(microsecond=0, tzinfo=UTC)
    reason = f"User initiated ({when.strftime('%Y-%m-%d %H:%M:%S')} {zone})"
    assert parse_reason(reason) == when


def test_from_instance_never_falls_back_to_launch_time() -> None:
    launched = _utc(2020, 1, 1)
    stopped = from_instance(
        {
            "StateTransitionReason": "User initiated (2024-03-05 06:07:08 GMT)",
            "LaunchTime": launched,
        }
    )
    assert stopped.at == _utc(2024, 3, 5, 6, 7, 8)
    assert stopped.source == SOURCE_REASON and stopped.known
    for reason in ("User initiated", "", None):
        unknown = from_instance({"StateTransitionReason": reason, "LaunchTime": launched})
        assert unknown == UNKNOWN
        assert unknown.at is None and unknown.source == SOURCE_UNKNOWN and not unknown.known
    assert from_instance({"LaunchTime": launched}) == UNKNOWN


# --- CloudTrail --------------------------------------------------------------------------

NOW = _utc(2026, 6, 1, 12, 0, 0)
IID = "i-0123456789abcdef0"


class RecordingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(2.0, clock=lambda: 0.0, sleep=lambda _s: None)
        self.acquired = 0

    def acquire(self) -> None:
        self.acquired += 1


@functools.cache
def _session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def _cloudtrail() -> Any:
    """A fresh client of one shared session (the Stubber is per client)."""
    return _session().client("cloudtrail", region_name="us-east-1")


def _params(token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": IID}],
        "StartTime": NOW - dt.timedelta(days=90),
        "EndTime": NOW,
        "MaxResults": 50,
    }
    if token:
        params["NextToken"] = token
    return params


def _event(name: str, when: dt.datetime, n: int = 0) -> dict[str, Any]:
    return {
        "EventId": f"ev-{name}-{n}",
        "EventName": name,
        "EventTime": when,
        "EventSource": "ec2.amazonaws.com",
        "Resources": [{"ResourceType": "AWS::EC2::Instance", "ResourceName": IID}],
    }


def _lookup(client: Any, max_pages: int = 5) -> tuple[CloudTrailStopLookup, RecordingLimiter]:
    limiter = RecordingLimiter()
    return CloudTrailStopLookup(client, limiter, max_pages=max_pages, now=lambda: NOW), limiter


def test_cloudtrail_window_is_90_days() -> None:
    assert CLOUDTRAIL_WINDOW_DAYS == 90


def test_cloudtrail_latest_stop_found() -> None:
    client = _cloudtrail()
    lookup, limiter = _lookup(client)
    events = [
        _event("StopInstances", _utc(2026, 4, 1, 8, 0, 0), 1),
        _event("CreateTags", _utc(2026, 5, 20), 2),
        _event("StopInstances", _utc(2026, 5, 10, 9, 30, 0), 3),  # the latest stop
        _event("StartInstances", _utc(2026, 5, 1), 4),
    ]
    with Stubber(client) as stub:
        stub.add_response("lookup_events", {"Events": events}, _params())
        got = lookup.lookup(IID)
        stub.assert_no_pending_responses()
    assert got.at == _utc(2026, 5, 10, 9, 30, 0)
    assert got.source == SOURCE_CLOUDTRAIL
    assert lookup.calls == 1 and limiter.acquired == 1


def test_cloudtrail_event_time_is_normalized_to_utc() -> None:
    client = _cloudtrail()
    lookup, _ = _lookup(client)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    with Stubber(client) as stub:
        stub.add_response(
            "lookup_events",
            {"Events": [_event("StopInstances", dt.datetime(2026, 5, 10, 11, 0, tzinfo=plus2))]},
            _params(),
        )
        got = lookup.lookup(IID)
    assert got.at == _utc(2026, 5, 10, 9, 0)
    assert got.at is not None and got.at.utcoffset() == dt.timedelta(0)


def test_cloudtrail_start_newer_than_last_stop_is_unknown() -> None:
    client = _cloudtrail()
    lookup, _ = _lookup(client)
    events = [
        _event("StopInstances", _utc(2026, 4, 1), 1),
        _event("StartInstances", _utc(2026, 4, 2), 2),  # started again, stopped by the OS
    ]
    with Stubber(client) as stub:
        stub.add_response("lookup_events", {"Events": events}, _params())
        assert lookup.lookup(IID) == UNKNOWN
        stub.assert_no_pending_responses()


def test_cloudtrail_run_instances_newer_than_any_stop_is_unknown() -> None:
    client = _cloudtrail()
    lookup, _ = _lookup(client)
    with Stubber(client) as stub:
        stub.add_response(
            "lookup_events", {"Events": [_event("RunInstances", _utc(2026, 4, 2))]}, _params()
        )
        assert lookup.lookup(IID) == UNKNOWN


def _failed(name: str, when: dt.datetime, code: str, n: int = 0) -> dict[str, Any]:
    """A CloudTrail record of a call that AWS refused (CloudTrail logs those too)."""
    event = _event(name, when, n)
    event["CloudTrailEvent"] = json.dumps(
        {"eventName": name, "errorCode": code, "errorMessage": "refused"}
    )
    return event


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # a DryRun probe 60 days ago; the instance was really shut down from inside the
        # OS later (no StopInstances): the stop time is unknown, not 60 days ago
        ([_failed("StopInstances", _utc(2026, 4, 2), "Client.DryRunOperation")], None),
        # a refused stop newer than the real one: the real one counts
        (
            [
                _failed("StopInstances", _utc(2026, 5, 20), "Client.UnauthorizedOperation", 1),
                _event("StopInstances", _utc(2026, 3, 1), 2),
            ],
            _utc(2026, 3, 1),
        ),
    ],
    ids=["dry-run-stop-only", "refused-stop-newer-than-real-stop"],
)
def test_cloudtrail_refused_stop_calls_are_not_stops(
    events: list[dict[str, Any]], expected: dt.datetime | None
) -> None:
    client = _cloudtrail()
    lookup, _ = _lookup(client)
    with Stubber(client) as stub:
        stub.add_response("lookup_events", {"Events": events}, _params())
        assert lookup.lookup(IID).at == expected


def test_cloudtrail_events_across_two_pages() -> None:
    client = _cloudtrail()
    lookup, limiter = _lookup(client)
    with Stubber(client) as stub:
        stub.add_response(
            "lookup_events",
            {"Events": [_event("CreateTags", _utc(2026, 5, 30))], "NextToken": "page-2"},
            _params(),
        )
        stub.add_response(
            "lookup_events",
            {
                "Events": [
                    _event("ModifyInstanceAttribute", _utc(2026, 5, 1), 1),
                    _event("StopInstances", _utc(2026, 3, 15, 7, 0, 0), 2),
                ]
            },
            _params("page-2"),
        )
        got = lookup.lookup(IID)
        stub.assert_no_pending_responses()
    assert got.at == _utc(2026, 3, 15, 7, 0, 0)
    assert got.source == SOURCE_CLOUDTRAIL
    assert lookup.calls == 2 and limiter.acquired == 2


def test_cloudtrail_page_limit_bounds_the_calls() -> None:
    client = _cloudtrail()
    lookup, _ = _lookup(client, max_pages=2)
    with Stubber(client) as stub:
        stub.add_response(
            "lookup_events",
            {"Events": [_event("CreateTags", _utc(2026, 5, 30))], "NextToken": "t2"},
            _params(),
        )
        stub.add_response(
            "lookup_events",
            {"Events": [_event("CreateTags", _utc(2026, 5, 29))], "NextToken": "t3"},
            _params("t2"),
        )
        assert lookup.lookup(IID) == UNKNOWN
        stub.assert_no_pending_responses()
    assert lookup.calls == 2


def test_cloudtrail_no_events_is_unknown() -> None:
    client = _cloudtrail()
    lookup, _ = _lookup(client)
    with Stubber(client) as stub:
        stub.add_response("lookup_events", {"Events": []}, _params())
        assert lookup.lookup(IID) == UNKNOWN
        stub.assert_no_pending_responses()
    assert lookup.calls == 1


def test_cloudtrail_access_denied_is_translated() -> None:
    client = _cloudtrail()
    lookup, _ = _lookup(client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "lookup_events",
            service_error_code="AccessDeniedException",
            service_message="User is not authorized to perform: cloudtrail:LookupEvents",
            http_status_code=400,
            expected_params=_params(),
        )
        with pytest.raises(AccessDeniedError) as info:
            lookup.lookup(IID)
        stub.assert_no_pending_responses()
    err = info.value
    assert err.code == "AccessDeniedException"
    assert err.operation == "LookupEvents"
    assert err.region == "us-east-1"
    assert "\n" not in err.one_line()


def test_cloudtrail_plain_access_denied_code_is_translated() -> None:
    client = _cloudtrail()
    lookup, _ = _lookup(client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "lookup_events", service_error_code="AccessDenied", http_status_code=403
        )
        with pytest.raises(AccessDeniedError):
            lookup.lookup(IID)


# --- RateLimiter ------------------------------------------------------------------------


class FakeClock:
    """Time that moves only when the limiter sleeps (or the test advances it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_spaces_acquisitions_half_a_second_apart() -> None:
    fake = FakeClock()
    limiter = RateLimiter(2.0, clock=fake.clock, sleep=fake.sleep)
    times = []
    for _ in range(9):
        limiter.acquire()
        times.append(fake.now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([0.5] * 8)
    assert times[0] == 1000.0  # the first one does not wait
    # never more than 2 acquisitions in any 1-second window
    for t in times:
        assert sum(1 for u in times if t <= u < t + 1.0) <= 2


def test_rate_limiter_does_not_burst_after_idle_time() -> None:
    fake = FakeClock()
    limiter = RateLimiter(2.0, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    fake.now += 60.0  # idle for a minute: no credit is saved up
    times = []
    for _ in range(4):
        limiter.acquire()
        times.append(fake.now)
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([0.5] * 3)
    assert fake.sleeps == pytest.approx([0.5] * 3)


def test_rate_limiter_does_not_sleep_when_calls_are_slow_enough() -> None:
    fake = FakeClock()
    limiter = RateLimiter(2.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        limiter.acquire()
        fake.now += 0.6
    assert fake.sleeps == []
