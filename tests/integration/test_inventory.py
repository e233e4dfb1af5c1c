"""``awsops inventory`` against the moto server: every page, region and kind, queries and
output formats. Multi-account and failing targets are in test_inventory_targets.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import CliResult, assert_one_line_error, invoke

from awsops.inventory import InventoryRequest, InventoryRun
from awsops.inventory.filters import parse_filters
from awsops.output import cell
from awsops.paginate import iter_items
from awsops.sandbox.manager import control

AMI = "ami-12c6146b"
SUMMARY_RE = re.compile(
    r"(\d+) items, (\d+) pages, (\d+) API calls, (\d+) targets, (\d+) errors, [\d.]+s"
)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    return invoke(["inventory", *args, "--sandbox"], capsys)


def _jsonl(result: CliResult) -> list[dict[str, Any]]:
    assert result.code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _summary(result: CliResult) -> tuple[int, ...]:
    m = SUMMARY_RE.search(result.stderr)
    assert m, result.stderr
    return tuple(int(g) for g in m.groups())


def _launch(ec2: Any, sizes: list[int], **kwargs: Any) -> list[str]:
    ids: list[str] = []
    for n in sizes:
        resp = ec2.run_instances(ImageId=AMI, MinCount=n, MaxCount=n, **kwargs)
        ids += [i["InstanceId"] for i in resp["Instances"]]
    return ids


def test_fleet_larger_than_one_page_comes_back_exactly_once(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ec2 = aws.client("ec2")
    sizes = [1, 2, 3, 1, 1, 2, 1, 3, 1, 1, 2, 1, 1, 3]  # 14 reservations, 23 instances
    made = _launch(ec2, sizes)
    r = _run(capsys, "ec2-instances", "--page-size", "4")
    records = _jsonl(r)
    ids = [rec["instance_id"] for rec in records]
    assert len(ids) == len(set(ids)) == len(made) == 23
    assert set(ids) == set(made)
    items, pages, calls, targets, errors = _summary(r)
    # moto pages by reservation: 14 reservations, 4 per page
    assert (items, pages, targets, errors) == (23, 4, 1, 0)
    assert calls == pages + 1  # + one GetCallerIdentity for the account id
    assert all(rec["account_id"] == "123456789012" for rec in records)


def test_library_streams_records_with_counts(aws: Any) -> None:
    ec2 = aws.client("ec2", "eu-west-1")
    made = _launch(ec2, [2, 2, 1])
    from awsops.config import Target

    run = InventoryRun(
        aws.factory(),
        [Target("eu-west-1")],
        InventoryRequest.build("ec2-instances", page_size=1),
    )
    got = [r["instance_id"] for r in run]
    assert sorted(got) == sorted(made)
    assert run.summary.pages == 3 and run.summary.api_calls == 4 and run.summary.items == 5


def test_many_regions_carry_their_region(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = {
        region: set(_launch(aws.client("ec2", region), [1, 2]))
        for region in ("us-east-1", "eu-west-1", "ap-southeast-2")
    }
    r = _run(capsys, "ec2-instances", "--regions", "us-east-1,eu-west-1,ap-southeast-2")
    by_region: dict[str, set[str]] = {}
    for rec in _jsonl(r):
        by_region.setdefault(rec["region"], set()).add(rec["instance_id"])
    assert by_region == made
    assert _summary(r)[3] == 3


def test_regions_all_lists_every_enabled_region(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # RDS, not EC2: moto builds an EC2 backend per region at first use, which is slow
    for region in ("us-west-2", "eu-central-1"):
        rds = aws.client("rds", region)
        rds.create_db_instance(
            DBInstanceIdentifier=f"db-{region}",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="admin",
            MasterUserPassword="secret-password",
        )
        rds.create_db_snapshot(
            DBInstanceIdentifier=f"db-{region}", DBSnapshotIdentifier=f"snap-{region}"
        )
    enabled = aws.client("ec2").describe_regions()["Regions"]
    r = _run(
        capsys,
        "rds-snapshots",
        "--regions",
        "all",
        "--concurrency",
        "16",
        "--filters",
        "Name=snapshot-type,Values=manual",
    )
    found = {(rec["region"], rec["snapshot_id"]) for rec in _jsonl(r)}
    assert found == {("us-west-2", "snap-us-west-2"), ("eu-central-1", "snap-eu-central-1")}
    assert _summary(r)[3] == len(enabled) > 10


def test_instance_record_fields(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ec2 = aws.client("ec2")
    mappings = [
        {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}},
        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20, "DeleteOnTermination": False}},
    ]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "db-1"}]}]
    [stopped, running] = _launch(ec2, [1, 1], BlockDeviceMappings=mappings, TagSpecifications=tags)
    ec2.stop_instances(InstanceIds=[stopped])
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    stopped_at, launched = now - dt.timedelta(days=40), now - dt.timedelta(days=100)
    control(
        aws.server_url,
        "backdate",
        {
            "account_id": "123456789012",
            "region": "us-east-1",
            "instances": [
                {
                    "id": stopped,
                    "reason": f"User initiated ({stopped_at:%Y-%m-%d %H:%M:%S} GMT)",
                    "launch_time": launched.isoformat(),
                }
            ],
        },
    )
    ec2.modify_instance_attribute(InstanceId=stopped, DisableApiTermination={"Value": True})
    r = _run(capsys, "ec2-instances", "--with-attributes")
    recs = {rec["instance_id"]: rec for rec in _jsonl(r)}
    s = recs[stopped]
    assert s["name"] == "db-1" and s["state"] == "stopped"
    assert s["stop_time"] == stopped_at.isoformat()
    assert s["stop_time_source"] == "state-transition-reason"
    assert s["stopped_days"] == 40 and s["age_days"] == 100
    assert s["launch_time"] == launched.isoformat()
    assert s["availability_zone"].startswith("us-east-1") and s["instance_type"]
    assert {v["device"]: v["delete_on_termination"] for v in s["volumes"]} == {
        "/dev/xvda": True,
        "/dev/sdf": False,
    }
    assert s["termination_protection"] is True
    assert recs[running]["termination_protection"] is False
    assert recs[running]["stop_time"] is None
    # one DescribeInstanceAttribute per instance on top of the listing
    assert _summary(r)[2] == 1 + 1 + 2

    plain = _jsonl(_run(capsys, "ec2-instances"))
    assert all("termination_protection" not in rec for rec in plain)


def test_server_side_filters_and_tags(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ec2 = aws.client("ec2")
    prod = _launch(
        ec2,
        [2],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "env", "Value": "prod"}]}],
    )
    other = _launch(ec2, [3])
    ec2.stop_instances(InstanceIds=[prod[0], other[0]])
    stopped = _jsonl(
        _run(capsys, "ec2-instances", "--filters", "Name=instance-state-name,Values=stopped")
    )
    assert {rec["instance_id"] for rec in stopped} == {prod[0], other[0]}
    tagged = _jsonl(_run(capsys, "ec2-instances", "--tag", "env=prod"))
    assert {rec["instance_id"] for rec in tagged} == set(prod)
    both = _jsonl(
        _run(
            capsys,
            "ec2-instances",
            "--tag",
            "env=prod",
            "--filters",
            "Name=instance-state-name,Values=stopped",
        )
    )
    assert [rec["instance_id"] for rec in both] == [prod[0]]


def _seed_objects(aws: Any, bucket: str) -> list[dict[str, Any]]:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    for i in range(23):
        s3.put_object(Bucket=bucket, Key=f"data/{i:03d}", Body=b"x" * (i * 100))
    s3.put_object(Bucket=bucket, Key="other/a", Body=b"y" * 5000)
    return list(iter_items(s3, "list_objects_v2", "Contents[]", {"Bucket": bucket}))


def test_query_across_pages_equals_filtering_the_whole_list(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = _seed_objects(aws, "inv-q")
    r = _run(
        capsys,
        "s3-objects",
        "--bucket",
        "inv-q",
        "--page-size",
        "5",
        "--page-query",
        "Contents[?Size > `1000`]",
    )
    got = _jsonl(r)
    expected = sorted(o["Key"] for o in everything if o["Size"] > 1000)
    assert sorted(o["Key"] for o in got) == expected and len(expected) == 13
    assert all(o["account_id"] == "123456789012" and o["region"] == "us-east-1" for o in got)
    assert _summary(r)[1] == 5  # 24 objects, 5 per page

    keys = _jsonl(
        _run(
            capsys,
            "s3-objects",
            "--bucket",
            "inv-q",
            "--prefix",
            "data/",
            "--page-size",
            "7",
            "--page-query",
            "Contents[].Key",
        )
    )
    assert sorted(keys) == sorted(o["Key"] for o in everything if o["Key"].startswith("data/"))  # type: ignore[arg-type]


def test_query_runs_on_the_records_shown_over_all_pages(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seen: --query ran on each raw page: `[?state=='stopped'].instance_id` gave 0
    items without a warning and `length(@)` gave 2 (the keys of one page)."""
    everything = _seed_objects(aws, "inv-r")
    big = _jsonl(
        _run(
            capsys,
            "s3-objects",
            "--bucket",
            "inv-r",
            "--page-size",
            "5",
            "--query",
            "[?size > `1000`].key",
        )
    )
    assert sorted(big) == sorted(o["Key"] for o in everything if o["Size"] > 1000)  # type: ignore[type-var]
    count = _run(
        capsys, "s3-objects", "--bucket", "inv-r", "--page-size", "5", "--query", "length(@)"
    )
    assert count.stdout.strip() == str(len(everything)) == "24"
    ec2 = aws.client("ec2")
    made = _launch(ec2, [3])
    ec2.stop_instances(InstanceIds=made[:2])
    stopped = _jsonl(
        _run(
            capsys,
            "ec2-instances",
            "--page-size",
            "1",
            "--query",
            "[?state=='stopped'].instance_id",
        )
    )
    assert sorted(stopped) == sorted(made[:2])  # type: ignore[type-var]
    # the same columns with or without --query: the json output's names
    rows = _jsonl(_run(capsys, "s3-objects", "--bucket", "inv-r", "--query", "[?size > `2000`]"))
    assert rows and all({"key", "size", "account_id", "region"} <= set(r) for r in rows)  # type: ignore[arg-type]
    none = _run(capsys, "ec2-instances", "--query", "[?state=='pending'].instance_id")
    assert none.stdout.strip() == "" and "selected nothing from 3 record(s)" in none.stderr


def test_csv_json_and_jsonl_parse_back_to_the_same_records(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ec2 = aws.client("ec2")
    made = _launch(
        ec2,
        [2, 1],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "a,b"}]}],
    )
    ec2.stop_instances(InstanceIds=[made[0]])
    args = ["ec2-instances", "--concurrency", "1"]
    jsonl = _jsonl(_run(capsys, *args, "--output", "jsonl"))
    as_json = json.loads(_run(capsys, *args, "--output", "json").stdout)
    rows = list(csv.DictReader(io.StringIO(_run(capsys, *args, "--output", "csv").stdout)))
    assert len(jsonl) == 3
    key = "instance_id"
    assert sorted(as_json, key=lambda r: r[key]) == sorted(jsonl, key=lambda r: r[key])
    by_id = {r[key]: r for r in jsonl}
    assert {r[key]: r for r in rows} == {
        i: {k: cell(v) for k, v in rec.items()} for i, rec in by_id.items()
    }
    for row in rows:  # nested values come back as the same JSON
        assert json.loads(row["volumes"]) == by_id[row[key]]["volumes"]


def test_max_items(aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _launch(aws.client("ec2"), [1] * 9)
    r = _run(capsys, "ec2-instances", "--page-size", "2", "--max-items", "5")
    assert len(_jsonl(r)) == 5 and _summary(r)[0] == 5


def test_other_kinds_list_what_the_api_lists(aws: Any) -> None:
    """Each kind against its own API call: ids match one to one, in every kind."""
    from awsops.config import Target

    ec2 = aws.client("ec2")
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=5)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
    [iid] = _launch(ec2, [1])
    ami = ec2.create_image(InstanceId=iid, Name="inv-ami")["ImageId"]
    iam = aws.client("iam")
    users = {f"user-{i}" for i in range(3)}
    for u in users:
        iam.create_user(UserName=u)
    rds = aws.client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier="db1",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="secret-password",
    )
    rds.create_db_snapshot(DBInstanceIdentifier="db1", DBSnapshotIdentifier="db1-snap")
    asg = aws.client("autoscaling")
    asg.create_launch_configuration(
        LaunchConfigurationName="lc", ImageId=AMI, InstanceType="t3.micro"
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName="grp",
        LaunchConfigurationName="lc",
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=1,
        AvailabilityZones=["us-east-1a"],
        Tags=[{"Key": "team", "Value": "x", "PropagateAtLaunch": False}],
    )

    def ids(kind: str, field: str, *filters: str, tags: tuple[str, ...] = ()) -> list[Any]:
        req = InventoryRequest.build(kind, parse_filters(filters, tags))
        run = InventoryRun(aws.factory(), [Target("us-east-1", account_id="123456789012")], req)
        out = [r[field] for r in run]
        assert not run.failures, run.failures
        return out

    assert vol in ids("ebs-volumes", "volume_id")
    assert ids("ebs-volumes", "volume_id", f"Name=volume-id,Values={vol}") == [vol]
    assert ids("ebs-snapshots", "snapshot_id", f"Name=volume-id,Values={vol}") == [snap]
    assert ids("amis", "image_id", "Name=name,Values=inv-ami") == [ami]
    assert set(ids("iam-users", "user_name")) == users
    assert ids(
        "rds-snapshots",
        "snapshot_id",
        "Name=db-instance-id,Values=db1 Name=snapshot-type,Values=manual",
    ) == ["db1-snap"]
    assert ids("autoscaling-groups", "name", tags=("team=x",)) == ["grp"]
    assert ids("autoscaling-groups", "name", tags=("team=y",)) == []


def test_iam_users_are_listed_once_per_account_as_global(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.client("iam").create_user(UserName="solo")
    r = _run(capsys, "iam-users", "--regions", "us-east-1,eu-west-1")
    recs = _jsonl(r)
    assert [(x["user_name"], x["region"]) for x in recs] == [("solo", "global")]
    assert _summary(r)[3] == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ec2-instances", "--filters", "Name=colour,Values=red"], "valid filters:"),
        (["ec2-instances", "--filters", "colour=red"], "expected Name="),
        (["ec2-instances", "--query", "Reservations[?"], "invalid JMESPath"),
        (["s3-objects"], "needs filter 'bucket'"),
        (["iam-users", "--with-attributes"], "no per-item attributes"),
        (["rds-snapshots", "--tag", "a=b"], "no tag filters"),
        (["ec2-instances", "--regions", "mars-east-1"], "not a region|unknown region"),
    ],
)
def test_bad_input_is_one_line_usage_error(
    args: list[str], needle: str, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = _run(capsys, *args)
    assert r.code == 2
    assert_one_line_error(r)
    assert re.search(needle, r.stderr), r.stderr
