"""The sandbox server's fault settings, its CloudTrail store, its credential clock and
awsops' lifetime-scaled credential refresh, without a server."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from awsops.errors import UsageError
from awsops.sandbox.awscalls import CallInfo
from awsops.sandbox.cloudtrail import Trail, TrailError
from awsops.sandbox.expiry import CredentialClock
from awsops.sandbox.faultspec import FaultSpec
from awsops.sandbox.serverfaults import ServerFaults, fails, parse_faults, split_faults
from awsops.session import LifetimeRefreshCredentials


def test_server_faults_parse_round_trip_and_json() -> None:
    faults = ServerFaults.parse(
        "snapshot-delay=30s,Snapshot_Error=0.1,image-delay=2m,image-error=1,"
        "credential-ttl=60,seed=7"
    )
    assert faults == ServerFaults(30.0, 0.1, 120.0, 1.0, 60.0, 7)
    assert ServerFaults.parse(str(faults)) == faults
    assert faults.active and not ServerFaults(seed=3).active
    assert ServerFaults.parse("") == ServerFaults()
    merged = faults.merged({"snapshot_delay": "500ms", "credential_ttl": None}.items())
    assert (merged.snapshot_delay, merged.credential_ttl, merged.image_delay) == (0.5, None, 120.0)
    assert ServerFaults.from_json(faults.to_json()) == faults


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("snapshot-delay=soon", "not a duration"),
        ("snapshot-delay=2d", "not a duration"),
        ("image-delay=25h", "longer than 86400s"),
        ("snapshot-error=1.5", "between 0 and 1"),
        ("image-error=nan", "not a number"),
        ("credential-ttl=0", "greater than 0"),
        ("seed=x", "not an integer"),
        ("snapshot-delay=1,snapshot_delay=2", "given twice"),
        ("snapshot-delays=1", "unknown server key"),
        ("snapshot-delay", "expected key=value"),
    ],
)
def test_bad_server_faults_are_one_line_usage_errors(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        ServerFaults.parse(text)
    assert needle in str(info.value) and "\n" not in info.value.one_line()


def test_json_settings_refuse_non_numbers() -> None:
    with pytest.raises(UsageError, match="not a number or a duration"):
        ServerFaults.from_json({"snapshot_delay": [1]})
    with pytest.raises(UsageError, match="not a number or a duration"):
        ServerFaults.from_json({"snapshot_error": True})


def test_split_sends_server_keys_to_the_server_and_the_rest_to_the_proxy() -> None:
    assert split_faults("snapshot-delay=30s,snapshot-error=0.1") == (
        "",
        "snapshot_delay=30s,snapshot_error=0.1",
    )
    # seed goes to both, but alone it starts no proxy.
    assert split_faults("throttle=0.2,credential-ttl=60s,seed=4") == (
        "throttle=0.2,seed=4",
        "credential_ttl=60s,seed=4",
    )
    assert split_faults("seed=4,image-delay=1") == ("", "image_delay=1,seed=4")
    proxy, server = parse_faults("latency=5ms,snapshot-delay=1")
    assert proxy == FaultSpec(latency_ms=5.0) and server == ServerFaults(snapshot_delay=1.0)
    with pytest.raises(UsageError, match=r"unknown key 'throtle'.*throttle.*snapshot-delay"):
        parse_faults("throtle=0.2,snapshot-delay=1")


def test_failures_are_deterministic_per_seed_and_id_and_near_the_share() -> None:
    ids = [f"snap-{i:017x}" for i in range(2000)]
    first = [fails(3, rid, 0.1) for rid in ids]
    assert first == [fails(3, rid, 0.1) for rid in ids]
    assert first != [fails(4, rid, 0.1) for rid in ids]
    assert 140 <= sum(first) <= 260
    assert not any(fails(3, rid, 0.0) for rid in ids)
    assert all(fails(3, rid, 1.0) for rid in ids)


# --- the CloudTrail store -----------------------------------------------------------


def _stops(trail: Trail, n: int, start: float, account: str = "111", region: str = "r") -> None:
    for i in range(n):
        trail.record_stop(account, region, [f"i-{i}", "i-all"], "alice", at=start + i)


def test_lookup_pages_newest_first_within_the_window() -> None:
    trail = Trail()
    _stops(trail, 7, start=1000.0)
    trail.record_stop("111", "other-region", ["i-all"], "bob", at=1003.5)
    seen: list[float] = []
    request: dict[str, Any] = {
        "LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": "i-all"}],
        "StartTime": 1001.0,
        "EndTime": 1005.0,
        "MaxResults": 2,
    }
    for _ in range(10):
        page = trail.lookup("111", "r", request)
        assert len(page["Events"]) <= 2
        seen += [e["EventTime"] for e in page["Events"]]
        if "NextToken" not in page:
            break
        request["NextToken"] = page["NextToken"]
    assert seen == [1005.0, 1004.0, 1003.0, 1002.0, 1001.0]
    one = trail.lookup(
        "111",
        "r",
        {"LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": "i-3"}]},
    )
    assert [e["EventTime"] for e in one["Events"]] == []  # older than the default 90 days
    both = trail.lookup("111", "r", {"StartTime": 0, "EndTime": 2000})
    assert len(both["Events"]) == 7
    assert trail.lookup("222", "r", {"StartTime": 0, "EndTime": 2000}) == {"Events": []}


def test_event_shape_is_cloudtrails() -> None:
    trail = Trail()
    event = trail.record_stop("111", "eu-west-1", ["i-1", "i-2"], "ops", "AssumedRole", "ASIA1")
    answer = trail.lookup(
        "111",
        "eu-west-1",
        {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "StopInstances"}]},
    )
    (item,) = answer["Events"]
    assert item["EventId"] == event.event_id and item["EventName"] == "StopInstances"
    assert item["Resources"] == [
        {"ResourceType": "AWS::EC2::Instance", "ResourceName": "i-1"},
        {"ResourceType": "AWS::EC2::Instance", "ResourceName": "i-2"},
    ]
    detail = json.loads(item["CloudTrailEvent"])
    assert "errorCode" not in detail
    items = detail["requestParameters"]["instancesSet"]["items"]
    assert [i["instanceId"] for i in items] == ["i-1", "i-2"]
    assert detail["userIdentity"]["type"] == "AssumedRole" and detail["awsRegion"] == "eu-west-1"
    assert detail["eventTime"].endswith("Z") and item["Username"] == "ops"


def test_backdating_replaces_the_instances_recorded_stops() -> None:
    trail = Trail()
    trail.record_stop("111", "r", ["i-1", "i-2"], "seed", at=5000.0)
    trail.backdate_stop("111", "r", "i-1", at=100.0)
    window = {"StartTime": 0, "EndTime": 6000}

    def times(iid: str) -> list[float]:
        attrs = [{"AttributeKey": "ResourceName", "AttributeValue": iid}]
        page = trail.lookup("111", "r", {**window, "LookupAttributes": attrs})
        return [e["EventTime"] for e in page["Events"]]

    assert times("i-1") == [100.0]
    assert times("i-2") == [5000.0]


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        (
            {
                "LookupAttributes": [
                    {"AttributeKey": "EventName", "AttributeValue": "StopInstances"},
                    {"AttributeKey": "ResourceName", "AttributeValue": "i-1"},
                ]
            },
            "InvalidLookupAttributesException",
        ),
        (
            {"LookupAttributes": [{"AttributeKey": "Colour", "AttributeValue": "x"}]},
            "InvalidLookupAttributesException",
        ),
        ({"StartTime": 10, "EndTime": 5}, "InvalidTimeRangeException"),
        ({"MaxResults": 51}, "InvalidMaxResultsException"),
        ({"MaxResults": 0}, "InvalidMaxResultsException"),
        ({"NextToken": "not-a-token"}, "InvalidNextTokenException"),
        ({"EndTime": "yesterday"}, "ValidationException"),
    ],
)
def test_lookup_refuses_what_aws_refuses(request_body: dict[str, Any], code: str) -> None:
    with pytest.raises(TrailError) as info:
        Trail().lookup("111", "r", request_body)
    assert info.value.code == code


# --- expiring credentials -----------------------------------------------------------

ASSUMED = (
    b"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAKEY1</AccessKeyId>"
    b"<SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>"
    b"<Expiration>2099-01-01T00:00:00.000Z</Expiration></Credentials></AssumeRoleResult>"
    b"</AssumeRoleResponse>"
)


def test_credential_clock_rewrites_expiry_and_refuses_after_it() -> None:
    clock = CredentialClock()
    assert clock.issued(ASSUMED, ttl=None) == ASSUMED  # no ttl: moto's answer unchanged
    now = 1_800_000_000.0
    body = clock.issued(ASSUMED, ttl=60.0, now=now)
    expected = dt.datetime.fromtimestamp(now + 60, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert f"<Expiration>{expected}.000Z</Expiration>".encode() in body
    ec2 = CallInfo("ec2", "DescribeInstances", "us-east-1", "ASIAKEY1", "ec2")
    sts = CallInfo("sts", "GetCallerIdentity", "us-east-1", "ASIAKEY1", "query")
    other = CallInfo("ec2", "DescribeInstances", "us-east-1", "testing", "ec2")
    assert clock.refusal(ec2, now=now + 59.9) is None
    refused = clock.refusal(ec2, now=now + 60.0)
    assert refused is not None and refused.status == 400 and b"RequestExpired" in refused.body
    sts_refused = clock.refusal(sts, now=now + 61)
    assert sts_refused is not None and b"ExpiredToken" in sts_refused.body
    assert clock.refusal(other, now=now + 1e6) is None
    assert clock.counters() == {
        "assume_role_calls": 2,
        "expiring_keys": 1,
        "expired_refusals": 2,
        "expired_refusals_by_action": {"ec2:DescribeInstances": 1, "sts:GetCallerIdentity": 1},
    }
    clock.clear()
    assert clock.refusal(ec2, now=now + 100) is None


# --- awsops' refresh windows --------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


def _credentials(clock: _Clock, lifetime: float, fetched: list[int]) -> LifetimeRefreshCredentials:
    def fetch() -> dict[str, str]:
        fetched.append(1)
        expiry = clock.now + dt.timedelta(seconds=lifetime)
        return {
            "access_key": "a",
            "secret_key": "s",
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    first = fetch()
    return LifetimeRefreshCredentials(
        first["access_key"],
        first["secret_key"],
        first["token"],
        dt.datetime.fromisoformat(first["expiry_time"]),
        fetch,
        "test",
        time_fetcher=clock,
    )


@pytest.mark.parametrize(
    ("lifetime", "advisory", "mandatory"),
    [(3600.0, 900.0, 600.0), (900.0, 225.0, 150.0), (60.0, 15.0, 10.0), (12.0, 3.0, 2.0)],
)
def test_refresh_windows_scale_with_the_lifetime(
    lifetime: float, advisory: float, mandatory: float
) -> None:
    clock, fetched = _Clock(), []
    creds = _credentials(clock, lifetime, fetched)
    assert (creds._advisory_refresh_timeout, creds._mandatory_refresh_timeout) == pytest.approx(
        (advisory, mandatory)
    )
    # Used 100 times a lifetime for ten lifetimes: refreshed about once per (lifetime -
    # advisory window), not on every use.
    for _ in range(1000):
        clock.now += dt.timedelta(seconds=lifetime / 100)
        creds.get_frozen_credentials()
    expected = 10 * lifetime / (lifetime - advisory)
    assert expected - 1 <= len(fetched) - 1 <= expected + 1


def test_refresh_windows_follow_each_new_lifetime() -> None:
    clock, fetched = _Clock(), []
    creds = _credentials(clock, 3600.0, fetched)
    assert creds._advisory_refresh_timeout == 900.0
    creds._refresh_using = _credentials(clock, 60.0, fetched)._refresh_using  # now 60 s
    clock.now += dt.timedelta(seconds=2701)  # inside the 900 s advisory window
    creds.get_frozen_credentials()
    assert (creds._advisory_refresh_timeout, creds._mandatory_refresh_timeout) == (15.0, 10.0)
