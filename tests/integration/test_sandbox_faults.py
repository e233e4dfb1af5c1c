"""The sandbox server's own faults, seen through boto3: snapshots and images that stay
pending and sometimes fail, CloudTrail StopInstances events, and assumed-role
credentials that expire during a run."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from awsops.clients import make_client
from awsops.decommission.stoptime import SOURCE_CLOUDTRAIL, CloudTrailStopLookup, RateLimiter
from awsops.sandbox.manager import control, reset
from awsops.sandbox.serverfaults import fails
from awsops.session import AssumeRoleSpec

IMAGE = "ami-12c6146b"


def _states(ec2: Any, ids: list[str]) -> dict[str, tuple[str, str]]:
    snaps = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
    return {s["SnapshotId"]: (s["State"], s["Progress"]) for s in snaps}


def _filtered(ec2: Any, status: str, ids: list[str]) -> set[str]:
    filters = [{"Name": "status", "Values": [status]}, {"Name": "snapshot-id", "Values": ids}]
    return {s["SnapshotId"] for s in ec2.describe_snapshots(Filters=filters)["Snapshots"]}


def test_snapshots_stay_pending_then_complete_or_fail_as_seeded(aws: Any) -> None:
    ec2 = aws.client("ec2")
    volume = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    before_faults = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    aws.backup_faults(snapshot_delay=1.0, snapshot_error=0.5, seed=11)
    created = time.time()
    ids = [ec2.create_snapshot(VolumeId=volume)["SnapshotId"] for _ in range(8)]
    expected = {sid: "error" if fails(11, sid, 0.5) else "completed" for sid in ids}
    assert set(expected.values()) == {"error", "completed"}, "pick a seed that fails some"

    pending = _states(ec2, ids)
    assert {state for state, _ in pending.values()} == {"pending"}
    assert all(int(progress.rstrip("%")) < 100 for _, progress in pending.values())
    assert _filtered(ec2, "pending", ids) == set(ids)
    assert _states(ec2, [before_faults])[before_faults] == ("completed", "100%")

    good = sorted(s for s, e in expected.items() if e == "completed")
    ec2.get_waiter("snapshot_completed").wait(
        SnapshotIds=good, WaiterConfig={"Delay": 0.25, "MaxAttempts": 20}
    )
    assert time.time() - created >= 1.0  # the waiter really waited
    with pytest.raises(WaiterError, match="terminal failure state"):
        ec2.get_waiter("snapshot_completed").wait(
            SnapshotIds=ids, WaiterConfig={"Delay": 0.5, "MaxAttempts": 4}
        )
    final = _states(ec2, ids)
    assert {sid: state for sid, (state, _) in final.items()} == expected
    assert _filtered(ec2, "error", ids) == {s for s, e in expected.items() if e == "error"}
    errored = ec2.describe_snapshots(SnapshotIds=[min(_filtered(ec2, "error", ids))])
    assert "snapshot-error" in errored["Snapshots"][0]["StateMessage"]

    witness = {w["id"]: w for w in aws.backups()["snapshots"]}
    assert set(witness) == set(ids)  # neither the earlier snapshot nor moto's AMI ones
    for sid, seen in witness.items():
        assert seen["final_state"] == expected[sid] == seen["state"]
        assert seen["final_at"] - seen["created_at"] == pytest.approx(1.0)
        assert created - 1 <= seen["created_at"] <= created + 5
        assert (seen["account_id"], seen["region"]) == ("123456789012", "us-east-1")


def test_settings_change_at_run_time_apply_to_new_backups_and_reset_clears_them(
    aws: Any,
) -> None:
    ec2 = aws.client("ec2")
    volume = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    answer = aws.server_faults(snapshot_delay="10m")
    assert answer["settings"]["snapshot_delay"] == 600.0 and answer["spec"] == "snapshot-delay=600s"
    slow = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    aws.server_faults(snapshot_delay=None)
    fast = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    states = _states(ec2, [slow, fast])
    assert states[slow][0] == "pending" and states[fast] == ("completed", "100%")
    with pytest.raises(Exception, match="not a duration"):
        aws.server_faults(snapshot_delay="soon")

    aws.backup_faults(snapshot_delay=5)
    reset(aws.server_url)
    after = control(aws.server_url, "faults", None, method="GET")
    assert after["settings"]["snapshot_delay"] == 0.0 and after["spec"] == ""
    assert aws.backups() == {"snapshots": [], "images": []}


def test_images_stay_pending_then_fail_and_moto_defaults_are_untouched(aws: Any) -> None:
    ec2 = aws.client("ec2", "eu-west-1")
    aws.backup_faults(image_delay=1.0, image_error=1.0)
    iid = ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=iid, Name="backup-1")["ImageId"]
    (described,) = ec2.describe_images(ImageIds=[image])["Images"]
    assert described["State"] == "pending"
    pending = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "state", "Values": ["pending"]}]
    )
    assert [i["ImageId"] for i in pending["Images"]] == [image]
    assert ec2.describe_images(ImageIds=[IMAGE])["Images"][0]["State"] == "available"
    with pytest.raises(WaiterError, match="terminal failure state"):
        ec2.get_waiter("image_available").wait(
            ImageIds=[image], WaiterConfig={"Delay": 0.5, "MaxAttempts": 10}
        )
    assert ec2.describe_images(ImageIds=[image])["Images"][0]["State"] == "failed"
    witness = aws.backups()
    assert [(w["id"], w["final_state"]) for w in witness["images"]] == [(image, "failed")]
    assert witness["snapshots"] == []


# --- CloudTrail -----------------------------------------------------------------------


def _lookup(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in client.get_paginator("lookup_events").paginate(**kwargs):
        events += page["Events"]
    return events


def _by_resource(iid: str) -> list[dict[str, str]]:
    return [{"AttributeKey": "ResourceName", "AttributeValue": iid}]


def test_lookup_events_serves_stop_instances_calls_in_aws_shape(aws: Any) -> None:
    ec2 = aws.client("ec2")
    trail = aws.client("cloudtrail")
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(ImageId=IMAGE, MinCount=12, MaxCount=12)["Instances"]
    ]
    with pytest.raises(ClientError, match="DryRunOperation"):
        ec2.stop_instances(InstanceIds=ids[:1], DryRun=True)
    with pytest.raises(ClientError):
        ec2.stop_instances(InstanceIds=["i-0123456789abcdef0"])  # refused: not recorded
    t0 = dt.datetime.now(dt.timezone.utc)
    ec2.stop_instances(InstanceIds=ids[:2])
    ec2.start_instances(InstanceIds=ids[:1])
    ec2.stop_instances(InstanceIds=ids[:1])
    ec2.stop_instances(InstanceIds=ids[2:])

    mine = _lookup(trail, LookupAttributes=_by_resource(ids[0]))
    assert [e["EventName"] for e in mine] == ["StopInstances", "StopInstances"]
    assert mine[0]["EventTime"] >= mine[1]["EventTime"] >= t0 - dt.timedelta(seconds=1)
    detail = json.loads(mine[1]["CloudTrailEvent"])
    assert "errorCode" not in detail
    assert [i["instanceId"] for i in detail["requestParameters"]["instancesSet"]["items"]] == ids[
        :2
    ]
    assert [r["ResourceName"] for r in mine[1]["Resources"]] == ids[:2]
    assert detail["awsRegion"] == "us-east-1" and detail["recipientAccountId"] == "123456789012"
    (ten,) = _lookup(trail, LookupAttributes=_by_resource(ids[-1]))
    assert [r["ResourceName"] for r in ten["Resources"]] == ids[2:]  # in the call's order

    # Every stop, paged two at a time, each exactly once.
    stops = _lookup(
        trail,
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "StopInstances"}],
        PaginationConfig={"PageSize": 2},
    )
    assert len(stops) == len({e["EventId"] for e in stops}) == 3
    later = t0 + dt.timedelta(hours=1)
    assert _lookup(trail, StartTime=later, EndTime=later + dt.timedelta(hours=1)) == []
    assert (
        _lookup(aws.client("cloudtrail", "eu-west-1"), LookupAttributes=_by_resource(ids[0])) == []
    )
    with pytest.raises(ClientError, match="InvalidLookupAttributesException"):
        trail.lookup_events(LookupAttributes=_by_resource(ids[0]) * 2)


def test_awsops_finds_seeded_and_served_stop_times(aws: Any) -> None:
    ec2 = aws.client("ec2")
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(ImageId=IMAGE, MinCount=2, MaxCount=2)["Instances"]
    ]
    ec2.stop_instances(InstanceIds=ids)
    stopped = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=40)
    control(
        aws.server_url,
        "backdate",
        {
            "region": "us-east-1",
            "instances": [{"id": ids[0], "reason": "", "stop_event_time": stopped.isoformat()}],
        },
    )
    lookup = CloudTrailStopLookup(aws.client("cloudtrail"), limiter=RateLimiter(100.0))
    seeded = lookup.lookup(ids[0])
    assert seeded.source == SOURCE_CLOUDTRAIL and seeded.at == stopped
    served = lookup.lookup(ids[1])
    assert served.source == SOURCE_CLOUDTRAIL and served.at is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - served.at).total_seconds()) < 60


# --- credentials that expire mid-run --------------------------------------------------

TTL = 12.0
RUN_SECONDS = 35.0


@pytest.mark.slow
def test_short_lived_credentials_are_refreshed_during_a_run_and_never_refused(aws: Any) -> None:
    aws.server_faults(credential_ttl=TTL)
    factory = aws.factory()
    session = factory.assume(AssumeRoleSpec("arn:aws:iam::210987654321:role/ops"))
    ec2 = make_client(session, "ec2", "us-east-1", aws.settings)
    ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1)
    first = session.get_credentials().get_frozen_credentials()
    calls = 0
    started = time.monotonic()
    while time.monotonic() - started < RUN_SECONDS:
        assert len(ec2.describe_instances()["Reservations"]) == 1  # never raises
        calls += 1
        time.sleep(0.2)
    counters = aws.fault_counters()
    assert counters["expired_refusals"] == 0
    # Refreshed once per (lifetime - advisory window) = 9 s, plus the first fetch.
    expected = 1 + RUN_SECONDS / (TTL - TTL / 4)
    assert expected - 1.5 <= counters["assume_role_calls"] <= expected + 1.5
    assert counters["assume_role_calls"] * 10 < calls
    # The server does refuse credentials past their time: the first set, used now.
    stale = aws.session().client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=aws.endpoint,
        aws_access_key_id=first.access_key,
        aws_secret_access_key=first.secret_key,
        aws_session_token=first.token,
    )
    with pytest.raises(ClientError, match="RequestExpired"):
        stale.describe_instances()
    assert aws.fault_counters()["expired_refusals"] == 1
