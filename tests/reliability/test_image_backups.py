"""Backups as images: an instance is terminated only after its image is available, an
instance whose image failed is kept and reported, and a resumed run adopts the images
already made. Judged from the proxy's ledger and the sandbox server's own record of
each image (created, final, state), never from awsops' report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.reliability.apply_world import rows
from tests.reliability.conftest import Proxied
from tests.reliability.mixed_fleet import REGION, apply_with_images, plan_all, seed_mixed_fleet


def _apply(path: Path) -> Any:
    return apply_with_images(path, "--snapshot-delay", "0.2")


def _created(ledger: list[Any]) -> dict[str, str]:
    return {
        r.params["InstanceId"]: r.created[0]
        for r in ledger
        if r.action == "ec2:CreateImage" and r.status < 300 and not r.dry_run
    }


def _terminated_at(ledger: list[Any]) -> dict[str, float]:
    return {
        iid: r.at
        for r in ledger
        if r.action == "ec2:TerminateInstances" and r.status < 300
        for iid, previous, _ in r.changes
        if previous == "stopped"
    }


def test_instances_are_terminated_only_after_their_image_is_available(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    made = seed_mixed_fleet(proxied)
    plan = plan_all(tmp_path / "plan.json")
    chosen = {f["instance_id"] for t in plan["targets"] for f in t["terminate"]}
    assert chosen == set(made.instances.values())
    ec2 = proxied.direct("ec2", REGION)

    # 1. Every image fails after 1 s pending: nothing is terminated, each is reported.
    proxied.aws.backup_faults(image_delay=1.0, image_error=1.0)
    failed = _apply(tmp_path / "plan.json")
    assert failed.returncode == 1, failed.stderr[-2000:]
    ledger = proxied.proxy.stats.mutation_list()
    first = _created(ledger)
    assert set(first) == chosen  # one image per instance
    witness = {b["id"]: b for b in proxied.aws.backups()["images"]}
    assert {witness[i]["final_state"] for i in first.values()} == {"failed"}
    assert not _terminated_at(ledger)
    reported = {r["instance_id"]: r for r in rows(failed.stdout)}
    for iid, image in first.items():
        assert reported[iid]["outcome"] == "failed" and reported[iid]["image"] == image
        assert reported[iid]["code"] == "ImageFailed", reported[iid]["reason"]

    # 2. Healthy but slow images (1.5 s pending): each made again once, each instance
    # terminated only once its new image was available, and its snapshots tagged.
    proxied.aws.backup_faults(image_delay=1.5)
    proxied.proxy.stats.reset()
    done = _apply(tmp_path / "plan.json")
    assert done.returncode == 0, done.stderr[-2000:]
    ledger = proxied.proxy.stats.mutation_list()
    second = _created(ledger)
    assert set(second) == chosen and not set(second.values()) & set(first.values())
    witness = {b["id"]: b for b in proxied.aws.backups()["images"]}
    terminated_at = _terminated_at(ledger)
    for iid, image in second.items():
        assert witness[image]["final_state"] == "available"
        assert terminated_at[iid] >= witness[image]["final_at"], iid
    reported = {r["instance_id"]: r for r in rows(done.stdout)}
    assert {r["image"] for r in reported.values()} == set(second.values())
    for image in ec2.describe_images(ImageIds=sorted(second.values()))["Images"]:
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        assert tags["awsops:plan-id"] == plan["plan_id"]
        for m in image["BlockDeviceMappings"]:
            snap = ec2.describe_snapshots(SnapshotIds=[m["Ebs"]["SnapshotId"]])["Snapshots"][0]
            assert {t["Key"]: t["Value"] for t in snap["Tags"]}["awsops:plan-id"] == plan["plan_id"]
    after = {
        i["InstanceId"]: i["State"]["Name"]
        for res in ec2.describe_instances(InstanceIds=sorted(chosen))["Reservations"]
        for i in res["Instances"]
    }
    assert set(after.values()) == {"terminated"}

    # 3. Once more: everything is done; nothing is made or terminated again.
    proxied.proxy.stats.reset()
    again = _apply(tmp_path / "plan.json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert not [r for r in proxied.proxy.stats.mutation_list() if not r.dry_run]
