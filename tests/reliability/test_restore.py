"""Undo: a mixed fleet decommissioned with image backups, then restored; old and new
instances compared field by field; a restore that cannot be faithful refuses and changes
nothing; an interrupted restore resumes without a second RunInstances. Judged from moto
and the fault proxy's ledger.

Differences allowed between an instance and its restored copy: its id, launch time and
the ids of the volumes made from the image (new volumes); the tags awsops adds
(``awsops:restored-from``, ``awsops:plan-id``); and, where the old address is still
held when the restore runs, the private IP (reported as a difference).
"""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path
from typing import Any

from tests.reliability.apply_world import cli, rows, run, start
from tests.reliability.conftest import Proxied
from tests.reliability.mixed_fleet import (
    REGION,
    Made,
    apply_with_images,
    plan_all,
    seed_mixed_fleet,
)


def _describe(ec2: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {
        i["InstanceId"]: i
        for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
        for i in r["Instances"]
    }


def _volumes(ec2: Any, inst: dict[str, Any]) -> dict[str, tuple[int, str, str]]:
    """Device -> (size, type, volume id)."""
    out = {}
    for m in inst.get("BlockDeviceMappings", []):
        vid = m["Ebs"]["VolumeId"]
        v = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]
        out[m["DeviceName"]] = (v["Size"], v["VolumeType"], vid)
    return out


def _decommission(proxied: Proxied, tmp_path: Path) -> tuple[Made, Path, dict[str, Any]]:
    made = seed_mixed_fleet(proxied)
    ec2 = proxied.direct("ec2", REGION)
    before = _describe(ec2, list(made.instances.values()))
    path = tmp_path / "plan.json"
    plan_all(path)
    r = apply_with_images(path, "--snapshot-delay", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    return made, path, before


def _restore(path: Path, *args: str) -> Any:
    return run(
        cli(
            "--sandbox",
            "decommission",
            "restore",
            str(path),
            "--delay",
            "0",
            "--output",
            "jsonl",
            *args,
        )
    )


def test_a_decommissioned_fleet_comes_back_field_by_field(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    made, path, before = _decommission(proxied, tmp_path)
    ec2 = proxied.direct("ec2", REGION)
    old_volumes = {iid: _volumes(ec2, inst) for iid, inst in before.items()}
    proxied.proxy.stats.reset()
    r = _restore(path, "--all")
    assert r.returncode == 0, r.stderr[-2000:]
    restored = {row["instance_id"]: row["new_instance_id"] for row in rows(r.stdout)}
    assert set(restored) == set(before) and all(restored.values())
    launches = [
        m
        for m in proxied.proxy.stats.mutation_list()
        if m.action == "ec2:RunInstances" and not m.dry_run
    ]
    assert len(launches) == len(before)  # one RunInstances per instance
    after = _describe(ec2, list(restored.values()))
    for old_id, new_id in restored.items():
        old, new = before[old_id], after[new_id]
        assert new["State"]["Name"] == "running"
        assert new["ImageId"] != old["ImageId"]  # launched from the backup image
        for key in ("InstanceType", "SubnetId", "KeyName"):
            assert new.get(key) == old.get(key), (key, old_id)
        assert {g["GroupId"] for g in new["SecurityGroups"]} == {
            g["GroupId"] for g in old["SecurityGroups"]
        }
        assert (
            new["IamInstanceProfile"]["Arn"] == old["IamInstanceProfile"]["Arn"] == made.profile_arn
        )
        old_tags = {t["Key"]: t["Value"] for t in old.get("Tags", [])}
        new_tags = {t["Key"]: t["Value"] for t in new.get("Tags", [])}
        assert new_tags.pop("awsops:restored-from") == old_id
        assert new_tags.pop("awsops:plan-id") == json.loads(path.read_text())["plan_id"]
        assert new_tags == old_tags
        data = ec2.describe_instance_attribute(InstanceId=new_id, Attribute="userData")
        assert data["UserData"]["Value"] == made.user_data
        assert base64.b64decode(data["UserData"]["Value"]).startswith(b"#!/bin/sh")
        new_volumes = _volumes(ec2, new)
        for device, (size, kind, _vid) in old_volumes[old_id].items():
            assert device in new_volumes, (old_id, device)
            assert new_volumes[device][:2] == (size, kind), (old_id, device)
        kept = [vid for dev, (_, _, vid) in old_volumes[old_id].items() if dev == "/dev/sdg"]
        if kept:  # the data volume that survived termination is attached again
            assert new_volumes["/dev/sdg"][2] == kept[0]
    address = ec2.describe_addresses(AllocationIds=[made.allocation_id])["Addresses"][0]
    assert address["InstanceId"] == restored[made.instances["elastic-ip"]]


def test_restore_refuses_cleanly_when_the_image_or_subnet_is_gone(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    made, path, _ = _decommission(proxied, tmp_path)
    ec2 = proxied.direct("ec2", REGION)
    victim = made.instances["one-volume"]
    image = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "tag:awsops:instance-id", "Values": [victim]}]
    )["Images"][0]["ImageId"]
    ec2.deregister_image(ImageId=image)
    proxied.proxy.stats.reset()
    r = _restore(path, "--instance-ids", victim)
    assert r.returncode == 1
    (row,) = rows(r.stdout)
    assert row["outcome"] == "refused" and f"image {image} is gone" in row["reason"]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and victim in errors[0]
    assert not [m for m in proxied.proxy.stats.mutation_list() if not m.dry_run]
    # a dry run says the same and also changes nothing
    dry = _restore(path, "--all", "--dry-run")
    outcomes = {x["instance_id"]: x["outcome"] for x in rows(dry.stdout)}
    assert outcomes[victim] == "refused"
    assert {o for i, o in outcomes.items() if i != victim} == {"would-restore"}
    assert not [m for m in proxied.proxy.stats.mutation_list() if not m.dry_run]


def test_an_interrupted_restore_resumes_without_a_second_run_instances(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    _made, path, before = _decommission(proxied, tmp_path)
    proxy = proxied.proxy
    proxy.stats.reset()
    proc = start(cli("--sandbox", "decommission", "restore", str(path), "--all", "--delay", "0"))
    # killed after the server launched the first instance, before the answer arrives
    proxy.arm_signal(proc.pid, signal.SIGKILL, at=1, phase="after", actions=("RunInstances",))
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [f.phase for f in proxy.stats.fired_signals()] == ["after"]
    r = _restore(path, "--all")
    assert r.returncode == 0, r.stderr[-2000:]
    launches = [
        m for m in proxy.stats.mutation_list() if m.action == "ec2:RunInstances" and not m.dry_run
    ]
    assert len(launches) == len(before), [m.params.get("ClientToken") for m in launches]
    restored = {row["instance_id"]: row["new_instance_id"] for row in rows(r.stdout)}
    ec2 = proxied.direct("ec2", REGION)
    copies = [
        i
        for res in ec2.describe_instances(
            Filters=[{"Name": "tag-key", "Values": ["awsops:restored-from"]}]
        )["Reservations"]
        for i in res["Instances"]
    ]
    assert sorted(i["InstanceId"] for i in copies) == sorted(restored.values())
