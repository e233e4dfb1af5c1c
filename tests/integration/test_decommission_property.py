"""The safety invariant, on random fleets in the moto server.

No instance is terminated unless it was stopped, its stop time was known and older than
the threshold, it was not protected in any way, and each of its DeleteOnTermination
volumes had a completed snapshot first. And every instance that qualifies is terminated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from awsops.config import Target
from awsops.decommission.executor import ApplyOptions, Outcome, apply_plan
from awsops.decommission.journal import Event, journal_path_for, read_events
from awsops.decommission.model import PlanCriteria
from awsops.decommission.planfile import write_plan
from awsops.decommission.planner import build_plan
from awsops.paginate import iter_items
from awsops.sandbox.manager import control, reset
from awsops.sandbox.seed import ec2_reason

REGION = "eu-west-1"


@dataclass(frozen=True)
class Spec:
    stopped_days: int | None  # None: running
    reason: str  # "gmt", "utc", "bare", "empty"
    protect_tag: str | None
    api_protected: bool
    data_dot: bool


specs = st.builds(
    Spec,
    stopped_days=st.one_of(st.none(), st.integers(0, 120)),
    reason=st.sampled_from(["gmt", "gmt", "utc", "bare", "empty"]),
    protect_tag=st.sampled_from([None, None, None, "awsops:protect", "donotdelete"]),
    api_protected=st.sampled_from([False, False, True]),
    data_dot=st.booleans(),
)


def eligible(spec: Spec, threshold: int) -> bool:
    return (
        spec.stopped_days is not None
        and spec.reason in ("gmt", "utc")
        and spec.stopped_days >= threshold
        and spec.protect_tag is None
        and not spec.api_protected
    )


def make_fleet(aws: Any, fleet: list[Spec], now: dt.datetime) -> list[str]:
    ec2 = aws.client("ec2", REGION)
    ids = []
    backdates = []
    for spec in fleet:
        tags = [{"Key": "Name", "Value": "prop"}]
        if spec.protect_tag:
            tags.append({"Key": spec.protect_tag, "Value": "yes"})
        resp = ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}},
                {
                    "DeviceName": "/dev/sdf",
                    "Ebs": {"VolumeSize": 20, "DeleteOnTermination": spec.data_dot},
                },
            ],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
        iid = resp["Instances"][0]["InstanceId"]
        ids.append(iid)
        if spec.api_protected:
            ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": True})
        if spec.stopped_days is None:
            continue
        ec2.stop_instances(InstanceIds=[iid])
        when = now - dt.timedelta(days=spec.stopped_days)
        reason = {
            "gmt": ec2_reason(when),
            "utc": ec2_reason(when).replace("GMT", "UTC"),
            "bare": "User initiated",
            "empty": "",
        }[spec.reason]
        backdates.append({"id": iid, "reason": reason})
    if backdates:
        control(aws.server_url, "backdate", {"region": REGION, "instances": backdates})
    return ids


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fleet=st.lists(specs, min_size=1, max_size=8),
    threshold=st.sampled_from([7, 30, 60]),
    batch_size=st.integers(1, 4),
)
def test_only_safe_instances_are_terminated_and_all_of_them(
    aws: Any, tmp_path_factory: Any, fleet: list[Spec], threshold: int, batch_size: int
) -> None:
    reset(aws.server_url)
    now = dt.datetime.now(dt.timezone.utc)
    ids = make_fleet(aws, fleet, now)
    spec_of = dict(zip(ids, fleet, strict=True))
    criteria = PlanCriteria(
        older_than_days=threshold, protect_tags=("awsops:protect", "DoNotDelete")
    )
    plan = build_plan(aws.factory(REGION), [Target(REGION)], criteria)
    write_plan(plan, Path(tmp_path_factory.mktemp("prop")) / "plan.json")
    report = apply_plan(
        plan,
        aws.factory(REGION),
        ApplyOptions(
            batch_size=batch_size,
            snapshot_delay=0,
            terminate_delay=0,
            max_percent=None,
            backup="snapshots",
        ),
        journal_path_for(plan.plan_id),
    )
    ec2 = aws.client("ec2", REGION)
    state = {
        i["InstanceId"]: i["State"]["Name"]
        for i in iter_items(ec2, "describe_instances", "Reservations[].Instances[]")
    }
    terminated = {i for i, s in state.items() if s == "terminated"}
    # Safety and liveness.
    assert terminated == {i for i, s in spec_of.items() if eligible(s, threshold)}
    assert {r.instance_id for r in report.results if r.outcome == Outcome.TERMINATED} == terminated
    # Backups first: each deletable volume of a terminated instance had a completed
    # snapshot journaled before the instance was sent to TerminateInstances.
    events = list(read_events(journal_path_for(plan.plan_id)))
    completed = {
        (e["instance_id"], e["volume_id"]): e["seq"]
        for e in events
        if e["event"] == Event.SNAPSHOT_COMPLETED
    }
    planned = {f.instance_id: f for _, f in plan.chosen}
    # Not even asked: EC2 refusing a protected instance is no excuse for asking.
    requested = {
        i for e in events if e["event"] == Event.TERMINATE_REQUESTED for i in e["instance_ids"]
    }
    assert requested == terminated
    assert report.ok, [r for r in report.results if r.outcome == Outcome.FAILED]
    for e in events:
        if e["event"] == Event.TERMINATE_REQUESTED:
            for iid in e["instance_ids"]:
                vols = planned[iid].deletable_volumes
                assert len(vols) == 1 + spec_of[iid].data_dot
                for v in vols:
                    assert completed[(iid, v.volume_id)] < e["seq"]
    snaps = list(
        iter_items(
            ec2,
            "describe_snapshots",
            "Snapshots[]",
            {
                "OwnerIds": ["self"],
                "Filters": [{"Name": "tag:awsops:plan-id", "Values": [plan.plan_id]}],
            },
        )
    )
    assert all(s["State"] == "completed" for s in snaps)
    assert len(snaps) == sum(len(planned[i].deletable_volumes) for i in terminated)
