"""Decommission against the moto server: decisions, drift, backups, batches, resume."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from awsops.config import Target
from awsops.decommission.executor import ApplyOptions, ApplyReport, Outcome, apply_plan
from awsops.decommission.journal import Event, journal_path_for, read_events
from awsops.decommission.model import Plan, PlanCriteria, SkipReason
from awsops.decommission.planfile import write_plan
from awsops.decommission.planner import build_plan
from awsops.paginate import iter_items
from awsops.sandbox.seed import seed_demo

REGION = "us-east-1"
PROTECT = ("awsops:protect", "DoNotDelete")

EXPECTED = {
    "stopped-3d": SkipReason.TOO_RECENT,
    "stopped-20d": SkipReason.TOO_RECENT,
    "launched-400d-stopped-1d": SkipReason.TOO_RECENT,
    "stopped-45d": None,
    "stopped-200d": None,
    "stopped-bare-reason": SkipReason.STOP_TIME_UNKNOWN,
    "stopped-empty-reason": SkipReason.STOP_TIME_UNKNOWN,
    "termination-protected": SkipReason.TERMINATION_PROTECTION,
    "tag-protected": SkipReason.PROTECT_TAG,
    "tag-donotdelete": SkipReason.PROTECT_TAG,
    "asg-member": SkipReason.AUTO_SCALING,
}


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing catches it."""


def criteria(**kw: Any) -> PlanCriteria:
    return PlanCriteria(older_than_days=kw.pop("older_than_days", 30), protect_tags=PROTECT, **kw)


def plan_for(aws: Any, **kw: Any) -> Plan:
    return build_plan(aws.factory(REGION), [Target(REGION)], criteria(**kw))


def apply(aws: Any, plan: Plan, tmp_path: Path, on_event: Any = None, **opts: Any) -> ApplyReport:
    write_plan(plan, tmp_path / "plan.json")
    opts.setdefault("backup", "snapshots")
    options = ApplyOptions(snapshot_delay=0, terminate_delay=0, **opts)
    return apply_plan(
        plan, aws.factory(REGION), options, journal_path_for(plan.plan_id), None, on_event
    )


def instances(aws: Any) -> dict[str, dict[str, Any]]:
    ec2 = aws.client("ec2", REGION)
    return {
        i["InstanceId"]: i
        for i in iter_items(ec2, "describe_instances", "Reservations[].Instances[]")
    }


def category(inst: Mapping[str, Any]) -> str:
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}["awsops:demo"]


def snapshots_by_volume(aws: Any, plan_id: str) -> Counter[str]:
    ec2 = aws.client("ec2", REGION)
    snaps = iter_items(
        ec2,
        "describe_snapshots",
        "Snapshots[]",
        {"OwnerIds": ["self"], "Filters": [{"Name": "tag:awsops:plan-id", "Values": [plan_id]}]},
    )
    return Counter(s["VolumeId"] for s in snaps)


@pytest.fixture
def fleet(aws: Any) -> dict[str, dict[str, Any]]:
    seed_demo(aws.session(REGION), aws.settings, aws.server_url, [REGION], 30, with_buckets=False)
    return instances(aws)


def test_every_decision_on_the_demo_fleet(aws: Any, fleet: dict[str, dict[str, Any]]) -> None:
    plan = plan_for(aws)
    (tp,) = plan.targets
    stopped = {i for i, inst in fleet.items() if inst["State"]["Name"] == "stopped"}
    assert tp.examined == len(stopped)
    decided = {f.instance_id: None for f in tp.chosen}
    decided.update({d.facts.instance_id: d.reason for d in tp.skipped})
    assert set(decided) == stopped  # every stopped instance has a verdict, once
    for iid, reason in decided.items():
        assert reason == EXPECTED[category(fleet[iid])], (category(fleet[iid]), reason)
    assert {category(fleet[f.instance_id]) for f in tp.chosen} == {"stopped-45d", "stopped-200d"}
    # The plan knows what termination deletes, with sizes, and prices it.
    est = plan.summary["estimate"]
    deletable = [v for f in tp.chosen for v in f.deletable_volumes]
    assert est["deleted_volumes"] == len(deletable) > 0
    assert est["deleted_gib"] == sum(v.size_gib or 0 for v in deletable)
    assert est["monthly_ebs_saving"] > 0 and est["prices_as_of"]
    launched_long_ago = [
        d for d in tp.skipped if category(fleet[d.facts.instance_id]) == "launched-400d-stopped-1d"
    ]
    assert launched_long_ago and all(
        d.facts.stop_source == "state-transition-reason" for d in launched_long_ago
    )


def test_config_exclusions(aws: Any, fleet: dict[str, dict[str, Any]]) -> None:
    old = sorted(i for i, inst in fleet.items() if category(inst) == "stopped-200d")
    plan = plan_for(aws, exclude_instance_ids=(old[0],), exclude_tags={"Name": "demo-stopped-45d"})
    (tp,) = plan.targets
    reasons = {d.facts.instance_id: d.reason for d in tp.skipped}
    assert reasons[old[0]] == SkipReason.EXCLUDED
    assert all(category(fleet[f.instance_id]) == "stopped-200d" for f in tp.chosen)
    denied = plan_for(aws, account_denylist=("123456789012",))
    assert not denied.targets[0].chosen
    assert {d.reason for d in denied.targets[0].skipped} == {SkipReason.ACCOUNT_EXCLUDED}


def snapshot_count(aws: Any) -> int:
    ec2 = aws.client("ec2", REGION)
    return sum(
        1 for _ in iter_items(ec2, "describe_snapshots", "Snapshots[]", {"OwnerIds": ["self"]})
    )


def test_plan_changes_nothing(aws: Any, fleet: dict[str, dict[str, Any]]) -> None:
    before = {i: x["State"]["Name"] for i, x in fleet.items()}
    snaps = snapshot_count(aws)
    plan_for(aws)
    assert {i: x["State"]["Name"] for i, x in instances(aws).items()} == before
    assert snapshot_count(aws) == snaps


def test_dry_run_changes_nothing(
    aws: Any, fleet: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    plan = plan_for(aws)
    snaps = snapshot_count(aws)
    report = apply(aws, plan, tmp_path, dry_run=True)
    assert report.count(Outcome.WOULD_TERMINATE) == len(plan.chosen) > 0
    assert not journal_path_for(plan.plan_id).exists()
    assert all(x["State"]["Name"] == fleet[i]["State"]["Name"] for i, x in instances(aws).items())
    assert snapshot_count(aws) == snaps


def test_apply_backs_up_before_terminating(
    aws: Any, fleet: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    plan = plan_for(aws)
    report = apply(aws, plan, tmp_path, batch_size=4)
    chosen = {f.instance_id: f for _, f in plan.chosen}
    assert report.ok and report.count(Outcome.TERMINATED) == len(chosen)
    now = instances(aws)
    for iid, inst in now.items():
        expected = "terminated" if iid in chosen else fleet[iid]["State"]["Name"]
        assert inst["State"]["Name"] == expected, iid
    # Journal order: every deletable volume's snapshot completed before the instance
    # was first sent to TerminateInstances.
    events = list(read_events(journal_path_for(plan.plan_id)))
    completed_at = {
        (e["instance_id"], e["volume_id"]): e["seq"]
        for e in events
        if e["event"] == Event.SNAPSHOT_COMPLETED
    }
    first_request = {}
    for e in events:
        if e["event"] == Event.TERMINATE_REQUESTED:
            for iid in e["instance_ids"]:
                first_request.setdefault(iid, e["seq"])
    for iid, facts in chosen.items():
        for vol in facts.deletable_volumes:
            assert completed_at[(iid, vol.volume_id)] < first_request[iid]
    # Snapshots in EC2: one per deletable volume, completed and tagged.
    per_volume = snapshots_by_volume(aws, plan.plan_id)
    deletable = {v.volume_id for f in chosen.values() for v in f.deletable_volumes}
    assert set(per_volume) == deletable and set(per_volume.values()) == {1}
    ec2 = aws.client("ec2")
    kept = [v.volume_id for f in chosen.values() for v in f.volumes if not v.delete_on_termination]
    assert kept, "the demo fleet has DeleteOnTermination=false volumes"
    vols = {v["VolumeId"]: v for v in iter_items(ec2, "describe_volumes", "Volumes[]")}
    assert all(vols[v]["State"] == "available" for v in kept)
    assert not deletable & set(vols)  # deleted with their instances


def test_drift_between_plan_and_apply_is_skipped(
    aws: Any, fleet: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    plan = plan_for(aws)
    ids = sorted(f.instance_id for _, f in plan.chosen)
    assert len(ids) >= 6
    started, tagged, dot, protected, gone = ids[:5]
    ec2 = aws.client("ec2")
    ec2.start_instances(InstanceIds=[started])
    ec2.create_tags(Resources=[tagged], Tags=[{"Key": "DoNotDelete", "Value": "1"}])
    device = next(v.device for _, f in plan.chosen if f.instance_id == dot for v in f.volumes)
    ec2.modify_instance_attribute(
        InstanceId=dot,
        BlockDeviceMappings=[{"DeviceName": device, "Ebs": {"DeleteOnTermination": False}}],
    )
    ec2.modify_instance_attribute(InstanceId=protected, DisableApiTermination={"Value": True})
    ec2.terminate_instances(InstanceIds=[gone])
    report = apply(aws, plan, tmp_path)
    by_id = {r.instance_id: r for r in report.results}
    assert "state stopped -> running" in by_id[started].reason
    assert "tags changed" in by_id[tagged].reason
    assert "DeleteOnTermination changed" in by_id[dot].reason
    assert "termination-protection" in by_id[protected].reason
    assert "someone else" in by_id[gone].reason
    for iid in (started, tagged, dot, protected, gone):
        assert by_id[iid].outcome == Outcome.SKIPPED
    assert {by_id[i].outcome for i in ids[5:]} == {Outcome.TERMINATED}
    state = {i: x["State"]["Name"] for i, x in instances(aws).items()}
    assert state[started] == "running" and state[tagged] == state[dot] == "stopped"
    assert state[protected] == "stopped"
    # Nothing was snapshotted for the skipped instances.
    snapped = set(snapshots_by_volume(aws, plan.plan_id))
    for _, f in plan.chosen:
        if f.instance_id in (started, tagged, dot, protected, gone):
            assert not {v.volume_id for v in f.volumes} & snapped


def test_a_failed_batch_never_blocks_the_rest(
    aws: Any, fleet: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Protection switched on after verification: the batch call fails (moto terminates
    the ids before the protected one, AWS would fail the AZ), the executor describes the
    batch, then retries the rest one by one; only the protected instance fails."""
    plan = plan_for(aws)
    ids = [f.instance_id for _, f in plan.chosen]
    victim = ids[1]
    ec2 = aws.client("ec2")

    def on_event(entry: Mapping[str, Any]) -> None:
        if entry["event"] == Event.APPLY_STARTED:
            ec2.modify_instance_attribute(InstanceId=victim, DisableApiTermination={"Value": True})

    report = apply(aws, plan, tmp_path, on_event=on_event, batch_size=4)
    by_id = {r.instance_id: r for r in report.results}
    assert by_id[victim].outcome == Outcome.FAILED
    assert by_id[victim].code == "OperationNotPermitted"
    assert all(by_id[i].outcome == Outcome.TERMINATED for i in ids if i != victim)
    assert instances(aws)[victim]["State"]["Name"] == "stopped"
    events = list(read_events(journal_path_for(plan.plan_id)))
    accepted = Counter(e["instance_id"] for e in events if e["event"] == Event.TERMINATE_ACCEPTED)
    assert set(accepted) == set(ids) - {victim} and set(accepted.values()) == {1}
    # The victim's batch was retried one instance at a time.
    singles = [
        e["instance_ids"]
        for e in events
        if e["event"] == Event.TERMINATE_REQUESTED and len(e["instance_ids"]) == 1
    ]
    assert [victim] in singles


CRASH_POINTS = [
    Event.SNAPSHOT_REQUESTED,
    Event.SNAPSHOT_CREATED,
    Event.SNAPSHOT_COMPLETED,
    Event.TERMINATE_REQUESTED,
    Event.TERMINATE_ACCEPTED,
    Event.TERMINATED,
]


@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.parametrize("occurrence", [1, 2])
def test_resume_after_a_crash_at_each_step(
    aws: Any, fleet: dict[str, dict[str, Any]], tmp_path: Path, point: str, occurrence: int
) -> None:
    plan = plan_for(aws)
    seen = Counter[str]()

    def crash(entry: Mapping[str, Any]) -> None:
        seen[entry["event"]] += 1
        if entry["event"] == point and seen[point] == occurrence:
            raise Crash(point)

    with pytest.raises(Crash):
        apply(aws, plan, tmp_path, on_event=crash, batch_size=2)
    report = apply(aws, plan, tmp_path, batch_size=2)
    chosen = {f.instance_id: f for _, f in plan.chosen}
    assert report.ok, report.results
    assert {r.instance_id for r in report.results if r.outcome == Outcome.TERMINATED} == set(chosen)
    state = instances(aws)
    assert all(state[i]["State"]["Name"] == "terminated" for i in chosen)
    assert sum(1 for i, x in state.items() if x["State"]["Name"] == "terminated") == len(chosen)
    # Exactly one snapshot per deletable volume across both runs.
    per_volume = snapshots_by_volume(aws, plan.plan_id)
    deletable = {v.volume_id for f in chosen.values() for v in f.deletable_volumes}
    assert set(per_volume) == deletable and set(per_volume.values()) == {1}
    events = list(read_events(journal_path_for(plan.plan_id)))
    assert sum(1 for e in events if e["event"] == Event.APPLY_STARTED) == 2
    completed = {
        (e["instance_id"], e["volume_id"]): e["seq"]
        for e in events
        if e["event"] == Event.SNAPSHOT_COMPLETED
    }
    for e in events:
        if e["event"] == Event.TERMINATE_REQUESTED:
            for iid in e["instance_ids"]:
                for vol in chosen[iid].deletable_volumes:
                    assert completed[(iid, vol.volume_id)] < e["seq"]
    # An instance is sent to TerminateInstances again only if it was still stopped,
    # i.e. never after it was accepted.
    accepted_at: dict[str, int] = {}
    for e in events:
        if e["event"] == Event.TERMINATE_ACCEPTED:
            accepted_at.setdefault(e["instance_id"], e["seq"])
        if e["event"] == Event.TERMINATE_REQUESTED:
            assert not set(e["instance_ids"]) & set(accepted_at)


def test_plan_of_another_account_is_refused(
    aws: Any, fleet: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    import dataclasses

    from awsops.errors import PlanError

    plan = plan_for(aws)
    # A plan for another account (as the key holder could sign one): apply checks the
    # account the credentials reach before anything else.
    forged = dataclasses.replace(
        plan, targets=(dataclasses.replace(plan.targets[0], account_id="999999999999"),)
    )
    with pytest.raises(PlanError, match="reach account 123456789012"):
        apply(aws, forged, tmp_path)
    assert all(x["State"]["Name"] != "terminated" for x in instances(aws).values())


def test_targets_plan_concurrently_and_keep_their_region(aws: Any, tmp_path: Path) -> None:
    seed_demo(
        aws.session(),
        aws.settings,
        aws.server_url,
        ["us-east-1", "eu-west-1"],
        14,
        with_buckets=False,
        now=dt.datetime.now(dt.timezone.utc),
    )
    plan = build_plan(
        aws.factory(), [Target("us-east-1"), Target("eu-west-1")], criteria(), concurrency=2
    )
    assert [t.region for t in plan.targets] == ["us-east-1", "eu-west-1"]
    for tp in plan.targets:
        ec2 = aws.client("ec2", tp.region)
        ids = {
            i["InstanceId"]
            for i in iter_items(ec2, "describe_instances", "Reservations[].Instances[]")
        }
        assert {f.instance_id for f in tp.chosen} <= ids and tp.chosen


class FixedTrail:
    """A CloudTrail look-up that knows one stop time for every instance."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at
        self.asked: list[str] = []

    def lookup(self, instance_id: str) -> Any:
        from awsops.decommission.stoptime import StopTime

        self.asked.append(instance_id)
        return StopTime(self.at, "cloudtrail")


def test_cloudtrail_dated_plans_can_be_applied(
    aws: Any, fleet: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Seen: every instance whose stop time came from CloudTrail was skipped at apply as
    `drift: stopped again since the plan`. Drift for them is decided from the live state
    and StateTransitionReason; a restart (a new reason) is still drift."""
    trail = FixedTrail(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=90))
    plan = build_plan(
        aws.factory(REGION),
        [Target(REGION)],
        criteria(cloudtrail=True),
        lookup_factory=lambda session, region: trail,
    )
    undated = {
        i
        for i, x in fleet.items()
        if category(x) in ("stopped-bare-reason", "stopped-empty-reason")
    }
    from_trail = {f.instance_id for _, f in plan.chosen if f.stop_source == "cloudtrail"}
    assert from_trail == undated and len(undated) >= 2 and set(trail.asked) == undated
    restarted = sorted(from_trail)[0]
    ec2 = aws.client("ec2", REGION)
    ec2.start_instances(InstanceIds=[restarted])
    ec2.stop_instances(InstanceIds=[restarted])
    report = apply(aws, plan, tmp_path, max_percent=None)
    outcomes = {r.instance_id: r for r in report.results}
    for iid in from_trail - {restarted}:
        assert outcomes[iid].outcome == Outcome.TERMINATED, outcomes[iid]
    assert outcomes[restarted].outcome == Outcome.SKIPPED
    assert "StateTransitionReason changed" in outcomes[restarted].reason
    states = {i: x["State"]["Name"] for i, x in instances(aws).items()}
    assert {i for i in from_trail if states[i] == "terminated"} == from_trail - {restarted}
    assert states[restarted] == "stopped"
