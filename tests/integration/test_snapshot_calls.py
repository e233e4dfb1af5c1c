"""Which snapshot calls reach EC2 in ``--backup snapshots`` mode, counted by the fault
proxy's ledger in front of the moto server: one CreateSnapshots per instance whose
volumes termination all deletes (one volume or two), one CreateSnapshot per deletable
volume of an instance that keeps a volume. (moto ignores ``ExcludeDataVolumeIds``; the
exact request shapes are pinned in ``tests/unit/test_snapshot_backups.py``.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.ledger_checks import CREATE_SNAPSHOT, CREATE_SNAPSHOTS, Ledger

from awsops.config import ClientSettings, Target
from awsops.decommission.executor import ApplyOptions, Outcome, apply_plan
from awsops.decommission.journal import Event, read_events
from awsops.decommission.model import EndpointKind, PlanCriteria, PlanEndpoint
from awsops.decommission.planner import build_plan
from awsops.sandbox.faults import FaultProxy
from awsops.sandbox.manager import control
from awsops.sandbox.seed import ec2_reason
from awsops.session import SessionFactory

REGION = "us-east-1"
ACCOUNT = "123456789012"
AMI = "ami-12c6146b"


def _volume(device: str, delete: bool) -> dict[str, Any]:
    return {"DeviceName": device, "Ebs": {"VolumeSize": 8, "DeleteOnTermination": delete}}


# name -> block device mappings: what termination deletes decides the call
SHAPES = {
    "one volume": [_volume("/dev/xvda", True)],
    "two volumes": [_volume("/dev/xvda", True), _volume("/dev/sdf", True)],
    "keeps a volume": [_volume("/dev/xvda", True), _volume("/dev/sdf", False)],
}


@pytest.fixture
def proxy(aws: Any) -> Iterator[FaultProxy]:
    with FaultProxy(aws.endpoint) as p:
        yield p


def _seed(aws: Any) -> dict[str, str]:
    """One stopped instance of each shape, stopped 200 days ago; instance id by name."""
    ec2 = aws.client("ec2", REGION)
    ids = {}
    for name, mappings in SHAPES.items():
        resp = ec2.run_instances(
            ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1,
            BlockDeviceMappings=mappings,
        )  # fmt: skip
        ids[name] = resp["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=list(ids.values()))
    when = ec2_reason(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=200))
    payload = {"id": "", "reason": when}
    control(
        aws.server_url,
        "backdate",
        {
            "account_id": ACCOUNT,
            "region": REGION,
            "instances": [{**payload, "id": i} for i in ids.values()],
        },
    )
    return ids


def test_one_create_snapshots_per_instance_whose_volumes_are_all_deleted(
    aws: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    ids = _seed(aws)
    plan = build_plan(
        aws.factory(REGION),
        [Target(REGION)],
        PlanCriteria(older_than_days=30, protect_tags=("awsops:protect",)),
        endpoint=PlanEndpoint(EndpointKind.CUSTOM, aws.server_url),
    )
    chosen = {f.instance_id: f for _, f in plan.chosen}
    assert set(chosen) == set(ids.values())
    factory = SessionFactory(
        region=REGION,
        settings=ClientSettings(endpoint_url=proxy.url),
        static_credentials=("testing", "testing"),
    )
    journal = tmp_path / "journal.jsonl"
    options = ApplyOptions(
        backup="snapshots", snapshot_delay=0, terminate_delay=0, max_percent=None
    )
    report = apply_plan(plan, factory, options, journal)
    assert report.count(Outcome.TERMINATED) == 3, report.results

    records = [r for r in proxy.stats.mutation_list() if not r.dry_run]
    whole = [r for r in records if r.action == CREATE_SNAPSHOTS]
    single = [r for r in records if r.action == CREATE_SNAPSHOT]
    # One CreateSnapshots for each of the one- and two-volume instances, naming the
    # instance with its boot volume; one CreateSnapshot for the root volume of the third.
    assert sorted(r.params["InstanceSpecification.InstanceId"] for r in whole) == sorted(
        [ids["one volume"], ids["two volumes"]]
    )
    assert {r.params["InstanceSpecification.ExcludeBootVolume"] for r in whole} == {"false"}
    assert not [k for r in whole for k in r.params if "ExcludeDataVolumeIds" in k]
    assert not [k for r in whole for k in r.params if k == "CopyTagsFromSource"]
    keeps = chosen[ids["keeps a volume"]]
    assert [r.params["VolumeId"] for r in single] == [keeps.deletable_volumes[0].volume_id]
    # Every deletable volume, and only those, got one snapshot, from one call.
    led = Ledger.read(proxy.stats.mutation_list())
    deletable = {v.volume_id for f in chosen.values() for v in f.deletable_volumes}
    assert set(led.snapshots) == deletable
    assert not led.duplicate_snapshots()
    for name, n in (("one volume", 1), ("two volumes", 2)):
        vols = chosen[ids[name]].volumes
        calls = {id(led.snapshot_calls[v.volume_id][0]) for v in vols}
        assert len(vols) == n and len(calls) == 1, name  # one call made all its snapshots
    # The probes: one DryRun of each kind of call the target needs.
    probes = sorted(r.action for r in proxy.stats.mutation_list() if r.dry_run)
    assert probes == [CREATE_SNAPSHOT, CREATE_SNAPSHOTS, "ec2:TerminateInstances"]
    # The journal has each volume requested and created, whichever call made it.
    events = list(read_events(journal))
    for name in ("requested", "created", "completed"):
        vols = {e["volume_id"] for e in events if e["event"] == f"snapshot-{name}"}
        assert vols == deletable, name
    made = {
        e["volume_id"]: e["snapshot_id"] for e in events if e["event"] == Event.SNAPSHOT_CREATED
    }
    assert made == {v: sids[0] for v, sids in led.snapshots.items()}
