"""A whole apply whose create and terminate calls meet what EC2 does to them, against
exact EC2 answers (botocore Stubber): one CreateSnapshots for an instance whose volumes
termination all deletes, a lost CreateSnapshots answer whose snapshot already failed
(adopted, and the instance kept), a snapshot still pending after the wait (the instance
kept), a throttled TerminateInstances batch (sent again after
a backoff) and a lost one (described before anything is sent again)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.apply_stubs import (
    PLAN_ID,
    Factory,
    Stubs,
    backup_tags,
    by_ids,
    create_snapshot,
    described,
    facts,
    kept,
    plan_of,
    reservations,
    snapshots_of,
    stubbed_target,
    terminating,
)
from tests.unit.test_apply_paths import _two
from tests.unit.test_apply_units import FAST, _dry_run_ok, _journal, _run, _verified

from awsops.decommission.executor import ApplyPreview
from awsops.decommission.journal import Event
from awsops.decommission.model import Plan
from awsops.decommission.outcomes import Outcome

A, B = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"
ROOT, DATA = f"vol-{A[-4:]}root", f"vol-{A[-4:]}data"
SNAP_ROOT, SNAP_DATA, OLD = (
    "snap-0aaaaaaaaaaaaaaa1",
    "snap-0aaaaaaaaaaaaaaa2",
    "snap-0000000000000old",
)
CREATE_SNAPSHOTS = {
    "InstanceSpecification": {"InstanceId": A, "ExcludeBootVolume": False},
    "Description": f"awsops backup of {A} before decommission, {PLAN_ID}",
    "TagSpecifications": [
        {"ResourceType": "snapshot", "Tags": backup_tags(A, ("Name", f"awsops-backup-{A}"))}
    ],
}


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    yield from stubbed_target(monkeypatch, Factory())


def _whole(stubs: Stubs) -> Plan:
    """Verification of A, whose root and data volumes termination both deletes, and the
    permission probes of TerminateInstances and CreateSnapshots (not CreateSnapshot:
    no instance needs it)."""
    inst = described(A, volumes=((ROOT, "/dev/xvda", True), (DATA, "/dev/sdf", True)))
    stubs.describe(inst, ids=[A])
    stubs.enrich(inst)
    stub = stubs.ec2_stub
    _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
    spec = {"InstanceId": A, "ExcludeBootVolume": False}
    _dry_run_ok(stub, "create_snapshots", {"InstanceSpecification": spec, "DryRun": True})
    return plan_of(facts(inst))


def _snaps(*snaps: tuple[str, str, str]) -> dict[str, Any]:
    """Snapshots as EC2 lists them: (snapshot id, volume id, state) each."""
    return {"Snapshots": [{"SnapshotId": s, "VolumeId": v, "State": st} for s, v, st in snaps]}


def test_one_create_snapshots_backs_up_an_instance_whose_volumes_are_all_deleted(
    stubs: Stubs, tmp_path: Path
) -> None:
    plan = _whole(stubs)
    stub = stubs.ec2_stub
    stub.add_response("describe_snapshots", _snaps(), snapshots_of(A, ROOT, DATA))
    made = _snaps((SNAP_ROOT, ROOT, "pending"), (SNAP_DATA, DATA, "pending"))
    stub.add_response("create_snapshots", made, CREATE_SNAPSHOTS)
    done = _snaps((SNAP_ROOT, ROOT, "completed"), (SNAP_DATA, DATA, "completed"))
    ids = sorted([SNAP_ROOT, SNAP_DATA])
    stub.add_response("describe_snapshots", done, {"SnapshotIds": ids})
    stub.add_response(
        "describe_snapshots", done, {"Filters": [{"Name": "snapshot-id", "Values": ids}]}
    )
    stub.add_response("describe_instances", reservations(described(A)), by_ids(A))
    stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
    gone = reservations(described(A, "terminated"))
    stub.add_response("describe_instances", gone, {"InstanceIds": [A]})
    stub.add_response("describe_instances", gone, by_ids(A))
    previews: list[ApplyPreview] = []
    path = tmp_path / "j.jsonl"
    report, _ = _run(
        plan,
        stubs,
        path,
        lambda p: previews.append(p) or True,
        backup="snapshots",
        max_percent=None,
        **FAST,
    )
    assert [(p.snapshots, p.images) for p in previews] == [(2, 0)]
    assert [(r.instance_id, r.outcome, r.snapshots) for r in report.results] == [
        (A, Outcome.TERMINATED, {ROOT: SNAP_ROOT, DATA: SNAP_DATA})
    ]
    backups = [e for e in _journal(path) if e[0].startswith("snapshot-")]
    assert backups == [
        (Event.SNAPSHOT_REQUESTED, {"instance_id": A, "volume_id": v, "call": "CreateSnapshots"})
        for v in (ROOT, DATA)
    ] + [
        (event, {"instance_id": A, "volume_id": v, "snapshot_id": s})
        for event in (Event.SNAPSHOT_CREATED, Event.SNAPSHOT_COMPLETED)
        for v, s in ((ROOT, SNAP_ROOT), (DATA, SNAP_DATA))
    ]


def test_a_lost_create_snapshots_answer_whose_snapshot_failed_keeps_the_instance(
    stubs: Stubs, tmp_path: Path
) -> None:
    """CreateSnapshots answers 500, but EC2 made both snapshots, and the root volume's
    has already failed. The look-up finds them (OLD, failed before the call, is not
    theirs): both are adopted, nothing is sent again, and the failed one keeps the
    instance: no TerminateInstances (the Stubber would refuse it)."""
    plan = _whole(stubs)
    stub = stubs.ec2_stub
    before = (OLD, ROOT, "error")
    stub.add_response("describe_snapshots", _snaps(before), snapshots_of(A, ROOT, DATA))
    stub.add_client_error(
        "create_snapshots", "InternalError", "oops", 500, expected_params=CREATE_SNAPSHOTS
    )
    new = _snaps((SNAP_ROOT, ROOT, "error"), (SNAP_DATA, DATA, "pending"), before)
    stub.add_response("describe_snapshots", new, snapshots_of(A, ROOT, DATA))
    ids = sorted([SNAP_ROOT, SNAP_DATA])
    polled = _snaps((SNAP_ROOT, ROOT, "error"), (SNAP_DATA, DATA, "completed"))
    by_filter = {"Filters": [{"Name": "snapshot-id", "Values": ids}]}
    stub.add_response("describe_snapshots", polled, {"SnapshotIds": ids})
    stub.add_response("describe_snapshots", polled, by_filter)
    stub.add_response("describe_snapshots", polled, by_filter)
    slept: list[float] = []
    path = tmp_path / "j.jsonl"
    report, _ = _run(plan, stubs, path, slept=slept, backup="snapshots", max_percent=None, **FAST)
    assert [(r.instance_id, r.outcome, r.code, r.snapshots) for r in report.results] == [
        (A, Outcome.FAILED, "SnapshotFailed", {ROOT: SNAP_ROOT, DATA: SNAP_DATA})
    ]
    assert slept == [1.0]  # the pause before the look-up
    events = [(e, d.get("volume_id"), d.get("snapshot_id")) for e, d in _journal(path)]
    assert events[1:-1] == [
        (Event.SNAPSHOT_REQUESTED, ROOT, None),
        (Event.SNAPSHOT_REQUESTED, DATA, None),
        (Event.SNAPSHOT_CREATED, ROOT, SNAP_ROOT),
        (Event.SNAPSHOT_CREATED, DATA, SNAP_DATA),
        (Event.SNAPSHOT_COMPLETED, DATA, SNAP_DATA),
        (Event.SNAPSHOT_FAILED, ROOT, SNAP_ROOT),
        (Event.FAILED, None, None),
    ]
    assert not any(e == Event.TERMINATE_REQUESTED for e, _, _ in events)


def test_a_snapshot_still_pending_after_the_wait_keeps_the_instance(
    stubs: Stubs, tmp_path: Path
) -> None:
    """The snapshot is still pending when the wait's budget (two polls) is spent: the
    instance is reported failed, with its snapshot for the next run to wait for, and
    no TerminateInstances is sent (the Stubber would refuse it)."""
    plan = _verified(stubs, "snapshots")
    stub = stubs.ec2_stub
    stub.add_response("describe_snapshots", _snaps(), snapshots_of(A, ROOT))
    stub.add_response("create_snapshot", {"SnapshotId": SNAP_ROOT}, create_snapshot(A))
    pending = _snaps((SNAP_ROOT, ROOT, "pending"))
    for _ in range(FAST["snapshot_max_attempts"]):
        stub.add_response("describe_snapshots", pending, {"SnapshotIds": [SNAP_ROOT]})
    by_filter = {"Filters": [{"Name": "snapshot-id", "Values": [SNAP_ROOT]}]}
    stub.add_response("describe_snapshots", pending, by_filter)
    path = tmp_path / "j.jsonl"
    report, _ = _run(plan, stubs, path, backup="snapshots", max_percent=None, **FAST)
    assert [(r.instance_id, r.outcome, r.code, r.reason, r.snapshots) for r in report.results] == [
        (
            A,
            Outcome.FAILED,
            "SnapshotIncomplete",
            f"backup not complete, not terminated: { {SNAP_ROOT: 'pending'} }",
            {ROOT: SNAP_ROOT},
        )
    ]
    assert [e for e, _ in _journal(path)] == [
        Event.APPLY_STARTED,
        Event.SNAPSHOT_REQUESTED,
        Event.SNAPSHOT_CREATED,
        Event.FAILED,
        Event.APPLY_FINISHED,
    ]


def test_a_throttled_termination_batch_is_sent_again_after_a_backoff(
    stubs: Stubs, tmp_path: Path
) -> None:
    """A throttle is a refusal before EC2 acted: the same batch is sent again after a
    full-jitter backoff, with no look in between, and journaled once."""
    plan = _two(stubs)
    stub = stubs.ec2_stub
    stub.add_response("describe_instances", reservations(kept(A), kept(B)), by_ids(A, B))
    for _ in range(2):
        stub.add_client_error(
            "terminate_instances",
            "RequestLimitExceeded",
            "Request limit exceeded.",
            503,
            expected_params={"InstanceIds": [A, B]},
        )
    stub.add_response("terminate_instances", terminating(A, B), {"InstanceIds": [A, B]})
    gone = reservations(described(A, "terminated"), described(B, "terminated"))
    stub.add_response("describe_instances", gone, {"InstanceIds": [A, B]})
    stub.add_response("describe_instances", gone, by_ids(A, B))
    slept: list[float] = []
    path = tmp_path / "j.jsonl"
    report, _ = _run(plan, stubs, path, slept=slept, backup="none", max_percent=None, **FAST)
    assert [(r.instance_id, r.outcome) for r in report.results] == [
        (A, Outcome.TERMINATED),
        (B, Outcome.TERMINATED),
    ]
    assert slept == [0.5, 1.0]
    assert [e for e in _journal(path) if e[0].startswith("terminate-")] == [
        (Event.TERMINATE_REQUESTED, {"instance_ids": [A, B]}),
        (Event.TERMINATE_ACCEPTED, {"instance_id": A}),
        (Event.TERMINATE_ACCEPTED, {"instance_id": B}),
    ]


def test_a_lost_termination_answer_is_looked_at_before_anything_is_sent_again(
    stubs: Stubs, tmp_path: Path
) -> None:
    """The batch's answer is lost (500) after EC2 began terminating A: after a pause the
    batch is described; A is accepted without another call, and B, still stopped, is
    sent alone, once."""
    plan = _two(stubs)
    stub = stubs.ec2_stub
    stub.add_response("describe_instances", reservations(kept(A), kept(B)), by_ids(A, B))
    stub.add_client_error(
        "terminate_instances", "InternalError", "oops", 500, expected_params={"InstanceIds": [A, B]}
    )
    shutting = reservations(described(A, "shutting-down"), kept(B))
    stub.add_response("describe_instances", shutting, by_ids(A, B))
    stub.add_response("terminate_instances", terminating(B), {"InstanceIds": [B]})
    gone = reservations(described(A, "terminated"), described(B, "terminated"))
    stub.add_response("describe_instances", gone, {"InstanceIds": [A, B]})
    stub.add_response("describe_instances", gone, by_ids(A, B))
    slept: list[float] = []
    path = tmp_path / "j.jsonl"
    report, _ = _run(plan, stubs, path, slept=slept, backup="none", max_percent=None, **FAST)
    assert [(r.instance_id, r.outcome) for r in report.results] == [
        (A, Outcome.TERMINATED),
        (B, Outcome.TERMINATED),
    ]
    assert slept == [1.0]
    assert [e for e in _journal(path) if e[0] != Event.APPLY_STARTED] == [
        (Event.TERMINATE_REQUESTED, {"instance_ids": [A, B]}),
        (Event.TERMINATE_REQUESTED, {"instance_ids": [B]}),
        (Event.TERMINATE_ACCEPTED, {"instance_id": B}),
        (Event.TERMINATE_ACCEPTED, {"instance_id": A}),
        (Event.TERMINATED, {"instance_id": A}),
        (Event.TERMINATED, {"instance_id": B}),
        (
            Event.APPLY_FINISHED,
            {"terminated": 2, "skipped": 0, "failed": 0, "not_done": 0, "cancelled": None},
        ),
    ]
