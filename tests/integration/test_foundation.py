"""Sessions, clients, pagination and the sandbox's backdated fleet, against moto."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from awsops.clients import build_config, make_client
from awsops.config import ClientSettings
from awsops.errors import EndpointUnreachableError, UsageError
from awsops.paginate import CallCounter, PageStats, iter_items, iter_pages
from awsops.session import AssumeRoleSpec, SessionFactory


def test_client_config_contract() -> None:
    cfg = build_config(ClientSettings(endpoint_url="http://127.0.0.1:1"), "eu-west-1")
    assert cfg.retries == {"mode": "adaptive", "total_max_attempts": 10}
    assert cfg.connect_timeout == 5.0 and cfg.read_timeout == 30.0
    assert cfg.user_agent_extra.startswith("awsops/")
    assert cfg.s3 == {"addressing_style": "path"}


def test_endpoint_override_is_used(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    assert ec2.meta.endpoint_url == aws.endpoint


def test_pagination_many_pages_no_item_lost_or_repeated(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    made = []
    for _ in range(53):  # 53 reservations: moto pages by reservation
        r = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
        made.append(r["Instances"][0]["InstanceId"])
    counter = CallCounter()
    counter.attach(ec2)
    stats = PageStats()
    seen = list(
        iter_items(
            ec2,
            "describe_instances",
            "Reservations[].Instances[].InstanceId",
            page_size=5,
            stats=stats,
        )
    )
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen)) == 53
    assert stats.pages == 11 and stats.items == 53
    assert counter.calls["DescribeInstances"] == 11


def test_query_across_pages_equals_filtering_everything(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    for i in range(12):
        ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro" if i % 3 else "m5.large",
        )
    q = "Reservations[].Instances[?InstanceType=='m5.large'].InstanceId[]"
    paged = list(iter_items(ec2, "describe_instances", "", query=q, page_size=5))
    everything = [
        i
        for p in iter_pages(ec2, "describe_instances")
        for r in p["Reservations"]
        for i in r["Instances"]
        if i["InstanceType"] == "m5.large"
    ]
    assert sorted(paged) == sorted(i["InstanceId"] for i in everything) and len(paged) == 4


def test_assumed_role_session_maps_to_role_account(aws) -> None:  # type: ignore[no-untyped-def]
    factory = aws.factory()
    sess = factory.assume(AssumeRoleSpec("arn:aws:iam::210987654321:role/ops", external_id="ext-1"))
    assert factory.account_id(sess) == "210987654321"
    assert (
        factory.assume(AssumeRoleSpec("arn:aws:iam::210987654321:role/ops", external_id="ext-1"))
        is sess
    )


def test_short_lived_role_is_reused_until_its_refresh_window(aws) -> None:  # type: ignore[no-untyped-def]
    """900 s credentials are no longer fetched again on every use (inside botocore's
    fixed 15-minute window from birth): the refresh window scales with the lifetime, so
    they are reused, and refreshed before expiry during a run (the sandbox's
    short-lived credentials test proves that part)."""
    factory = aws.factory()
    short = factory.assume(
        AssumeRoleSpec("arn:aws:iam::210987654321:role/ops", duration_seconds=900)
    )
    creds = short.get_credentials()
    first = creds.get_frozen_credentials()
    second = creds.get_frozen_credentials()
    assert first.access_key == second.access_key and first.token == second.token
    make_client(short, "ec2", "us-east-1", aws.settings).describe_instances()

    long = factory.assume(AssumeRoleSpec("arn:aws:iam::210987654321:role/long"))
    lcreds = long.get_credentials()
    assert lcreds.get_frozen_credentials().access_key == lcreds.get_frozen_credentials().access_key


def test_bad_inputs_are_usage_errors(aws) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="unknown region"):
        SessionFactory(region="mars-east-1", settings=ClientSettings())
    with pytest.raises(UsageError, match="profile"):
        SessionFactory(profile="no-such-profile", region="us-east-1")
    with pytest.raises(UsageError, match="malformed role ARN"):
        AssumeRoleSpec("arn:aws:iam::123:role/x")


def test_unreachable_endpoint(aws) -> None:  # type: ignore[no-untyped-def]
    settings = ClientSettings(endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=1)
    factory = SessionFactory(
        region="us-east-1", settings=settings, static_credentials=("testing", "testing")
    )
    ec2 = make_client(factory.session(), "ec2", settings=settings)
    with pytest.raises(EndpointUnreachableError) as info:
        list(iter_pages(ec2, "describe_instances"))
    assert info.value.operation == "DescribeInstances"


def test_sandbox_seed_backdates_stop_times_exactly(aws) -> None:  # type: ignore[no-untyped-def]
    from awsops.sandbox.seed import CATEGORIES, allocate, seed_demo

    now = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc)
    report = seed_demo(
        aws.session(),
        aws.settings,
        aws.server_url,
        ["us-east-1", "eu-west-1"],
        24,
        now=now,
        with_buckets=True,
    )
    assert report.total_instances == 48
    assert report.instances["eu-west-1"] == allocate(24)
    ec2 = aws.client("ec2", "eu-west-1")
    by_cat: dict[str, list[dict]] = {}
    for inst in iter_items(ec2, "describe_instances", "Reservations[].Instances[]"):
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        by_cat.setdefault(tags["awsops:demo"], []).append(inst)
    assert set(by_cat) == {c.name for c in CATEGORIES}
    for cat in CATEGORIES:
        for inst in by_cat[cat.name]:
            if cat.stopped_days is None:
                assert inst["State"]["Name"] == "running"
                continue
            assert inst["State"]["Name"] == "stopped"
            reason = inst["StateTransitionReason"]
            if cat.reason is not None:
                assert reason == cat.reason
                continue
            m = re.fullmatch(r"User initiated \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) GMT\)", reason)
            assert m, reason
            stopped = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=dt.timezone.utc
            )
            assert stopped == now - dt.timedelta(days=cat.stopped_days)
            if cat.launch_days:
                assert inst["LaunchTime"] == now - dt.timedelta(days=cat.launch_days)
    protected = by_cat["termination-protected"][0]["InstanceId"]
    attr = ec2.describe_instance_attribute(InstanceId=protected, Attribute="disableApiTermination")
    assert attr["DisableApiTermination"]["Value"] is True
    asg_tags = {t["Key"] for t in by_cat["asg-member"][0]["Tags"]}
    assert "aws:autoscaling:groupName" in asg_tags
    s3 = aws.client("s3")
    sizes = {
        o["Size"]
        for o in iter_items(s3, "list_objects_v2", "Contents[]", {"Bucket": report.buckets[0]})
    }
    assert {1024, 12_582_912} <= sizes
