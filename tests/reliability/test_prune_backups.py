"""``decommission prune-backups`` deletes only what awsops made, only once it is older
than the retention period, and only with --delete; judged from the proxy's ledger and
moto's state. The Recycle Bin calls (moto has no Recycle Bin) are checked for their
exact request shapes with botocore's Stubber."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber

from awsops.decommission.prune import create_recycle_bin_rule, recycle_bin_rules
from tests.reliability.apply_world import cli, rows, run
from tests.reliability.conftest import Proxied
from tests.reliability.mixed_fleet import (
    AMI,
    REGION,
    apply_with_images,
    plan_all,
    seed_mixed_fleet,
)


def _prune(*args: str) -> Any:
    return run(
        cli(
            "--sandbox",
            "decommission",
            "prune-backups",
            "--regions",
            REGION,
            "--output",
            "jsonl",
            *args,
        )
    )


def test_prune_deletes_only_old_awsops_backups_and_only_when_asked(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    made = seed_mixed_fleet(proxied)
    path = tmp_path / "plan.json"
    plan_all(path)
    applied = apply_with_images(path, "--snapshot-delay", "0")
    assert applied.returncode == 0, applied.stderr[-2000:]
    plan_id = json.loads(path.read_text())["plan_id"]
    ec2 = proxied.direct("ec2", REGION)
    ours = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "tag:awsops:plan-id", "Values": [plan_id]}]
    )["Images"]
    assert len(ours) == len(made.instances)
    old = sorted(i["ImageId"] for i in ours)[:2]
    young = sorted(i["ImageId"] for i in ours)[2:]
    old_snaps = [
        m["Ebs"]["SnapshotId"]
        for i in ours
        if i["ImageId"] in old
        for m in i["BlockDeviceMappings"]
    ]
    ec2.create_tags(Resources=old + old_snaps, Tags=[{"Key": "awsops:date", "Value": "2026-01-01"}])
    # Things awsops did not make, or cannot be sure it made, however old.
    running = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"][0]
    volume = running["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    foreign_snap = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    foreign_image = ec2.create_image(InstanceId=running["InstanceId"], Name="team-golden")[
        "ImageId"
    ]
    undated = ec2.create_snapshot(
        VolumeId=volume,
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": "awsops:plan-id", "Value": plan_id}]}
        ],
    )["SnapshotId"]
    lone_old = ec2.create_snapshot(
        VolumeId=volume,
        TagSpecifications=[
            {
                "ResourceType": "snapshot",
                "Tags": [
                    {"Key": "awsops:plan-id", "Value": plan_id},
                    {"Key": "awsops:date", "Value": "2025-12-01"},
                ],
            }
        ],
    )["SnapshotId"]
    proxied.proxy.stats.reset()

    listed = _prune("--older-than", "90d")
    assert listed.returncode == 0, listed.stderr
    assert {r["backup_id"] for r in rows(listed.stdout)} == {*old, lone_old}
    assert {r["outcome"] for r in rows(listed.stdout)} == {"would-delete"}
    assert not proxied.proxy.stats.mutation_list()  # dry run by default

    done = _prune("--older-than", "90d", "--delete")
    assert done.returncode == 0, done.stderr
    ledger = [(m.action, m.params) for m in proxied.proxy.stats.mutation_list() if m.status < 300]
    assert sorted(p["ImageId"] for a, p in ledger if a == "ec2:DeregisterImage") == old
    assert sorted(p["SnapshotId"] for a, p in ledger if a == "ec2:DeleteSnapshot") == sorted(
        [*old_snaps, lone_old]
    )
    assert {a for a, _ in ledger} == {"ec2:DeregisterImage", "ec2:DeleteSnapshot"}
    left_images = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert set(young) | {foreign_image} <= left_images and not set(old) & left_images
    left_snaps = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert {foreign_snap, undated} <= left_snaps and not {lone_old, *old_snaps} & left_snaps


def _rbin() -> Any:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("rbin", region_name="us-east-1")


def test_recycle_bin_rules_are_read_and_made_with_the_exact_request_shapes() -> None:
    rbin = _rbin()
    with Stubber(rbin) as stub:
        stub.add_response(
            "list_rules",
            {
                "Rules": [
                    {
                        "Identifier": "r-1",
                        "RetentionPeriod": {
                            "RetentionPeriodValue": 30,
                            "RetentionPeriodUnit": "DAYS",
                        },
                    }
                ]
            },
            {
                "ResourceType": "EBS_SNAPSHOT",
                "ResourceTags": [{"ResourceTagKey": "awsops:plan-id"}],
            },
        )
        stub.add_response(
            "list_rules",
            {"Rules": []},
            {"ResourceType": "EC2_IMAGE", "ResourceTags": [{"ResourceTagKey": "awsops:plan-id"}]},
        )
        rules = recycle_bin_rules(rbin, "us-east-1")
        stub.add_response(
            "create_rule",
            {"Identifier": "r-2"},
            {
                "ResourceType": "EC2_IMAGE",
                "RetentionPeriod": {"RetentionPeriodValue": 14, "RetentionPeriodUnit": "DAYS"},
                "ResourceTags": [{"ResourceTagKey": "awsops:plan-id"}],
                "Description": "awsops decommission backups: recoverable after prune-backups",
                "Tags": [{"Key": "awsops:managed", "Value": "true"}],
            },
        )
        assert create_recycle_bin_rule(rbin, "us-east-1", "EC2_IMAGE", 14) == "r-2"
        stub.assert_no_pending_responses()
    assert [(r.resource_type, r.identifier, r.days) for r in rules] == [
        ("EBS_SNAPSHOT", "r-1", 30),
        ("EC2_IMAGE", None, None),
    ]
