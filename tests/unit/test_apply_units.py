"""A whole apply (``Executor.run``) against exact EC2 answers (botocore Stubber), one
target: every call in order, what the confirmation is shown, what is journaled and
what is reported, for snapshot and image backups, a dry run, a refusal to confirm,
credentials that reach another account and an instance an earlier run terminated."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.unit.apply_stubs import (
    NOW,
    PLAN_ID,
    Factory,
    Stubs,
    backup_tags,
    by_ids,
    create_image,
    create_snapshot,
    described,
    facts,
    images_of,
    plan_of,
    reservations,
    snapshots_of,
    stubbed_target,
    terminating,
)

from awsops.decommission import capture
from awsops.decommission.executor import ApplyPreview, ApplyReport, Executor, apply_plan
from awsops.decommission.journal import Event, Journal, read_events
from awsops.decommission.model import Plan
from awsops.decommission.outcomes import ApplyOptions, Outcome
from awsops.errors import PlanError, SafetyError

A, B = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"
ROOT_A, DATA_A = f"vol-{A[-4:]}root", f"vol-{A[-4:]}data"
SNAP, IMAGE = "snap-0aaaaaaaaaaaaaaa1", "ami-0aaaaaaaaaaaaaaa1"
TAGS = backup_tags(A)
FAST = {
    "snapshot_delay": 0,
    "snapshot_max_attempts": 2,
    "terminate_delay": 0,
    "terminate_max_attempts": 2,
}


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    yield from stubbed_target(monkeypatch, Factory())


def _dry_run_ok(stub: Stubber, method: str, params: dict[str, Any]) -> None:
    stub.add_client_error(method, "DryRunOperation", "would succeed", 412, expected_params=params)


def _verified(stubs: Stubs, backup: str, protected: tuple[str, ...] = (), stopped: int = 0) -> Plan:
    """The plan of A (and B, protected since the plan, if asked) and the calls of its
    verification (with a count of ``stopped`` instances in the region if not 0) and
    permission probes."""
    insts = [described(A), *([described(B)] if protected else [])]
    ids = [i["InstanceId"] for i in insts]
    stubs.describe(*insts, ids=ids)
    stubs.enrich(*insts, protected=protected)
    if stopped:
        stubs.stopped(*(described(f"i-0{n:016x}") for n in range(stopped)))
    stub = stubs.ec2_stub
    _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
    if backup == "snapshots":
        _dry_run_ok(stub, "create_snapshot", {"VolumeId": ROOT_A, "DryRun": True})
    if backup == "image":
        image = {"InstanceId": A, "Name": f"awsops-probe-{A}", "NoReboot": True, "DryRun": True}
        _dry_run_ok(stub, "create_image", image)
    return plan_of(*(facts(i) for i in insts))


def _terminated(stubs: Stubs) -> None:
    """The last look, TerminateInstances, the waiter and the final look, for A."""
    stub = stubs.ec2_stub
    stub.add_response("describe_instances", reservations(described(A)), by_ids(A))
    stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
    gone = reservations(described(A, "terminated"))
    stub.add_response("describe_instances", gone, {"InstanceIds": [A]})
    stub.add_response("describe_instances", gone, by_ids(A))


def _run(
    plan: Plan,
    stubs: Stubs,
    path: Path | None,
    confirm: Any = None,
    *,
    slept: list[float] | None = None,
    **options: Any,
) -> tuple[ApplyReport, list[Mapping[str, Any]]]:
    """Run the plan through the stubbed target; every event seen, and every pause
    (full jitter taken as its whole range) recorded in ``slept`` rather than waited."""
    seen: list[Mapping[str, Any]] = []
    ex = Executor(
        plan,
        stubs.factory,  # type: ignore[arg-type]
        ApplyOptions(**options),
        path,
        seen.append,
        now=lambda: NOW,
    )
    pauses: list[float] = [] if slept is None else slept
    ex.run_state.sleep = pauses.append
    ex.run_state.jitter = lambda: 1.0
    return ex.run(confirm), seen


def _journal(path: Path) -> list[tuple[Any, ...]]:
    skip = {"seq", "ts", "plan_id"}
    return [
        (e["event"], {k: v for k, v in e.items() if k not in skip and k != "event"})
        for e in read_events(path)
    ]


def test_snapshots_then_termination_with_a_protected_instance_kept(
    stubs: Stubs, tmp_path: Path
) -> None:
    plan = _verified(stubs, "snapshots", protected=(B,), stopped=4)
    stub = stubs.ec2_stub
    stub.add_response("describe_snapshots", {"Snapshots": []}, snapshots_of(A, ROOT_A))
    stub.add_response("create_snapshot", {"SnapshotId": SNAP}, create_snapshot(A))
    done = {"Snapshots": [{"SnapshotId": SNAP, "VolumeId": ROOT_A, "State": "completed"}]}
    stub.add_response("describe_snapshots", done, {"SnapshotIds": [SNAP]})
    stub.add_response(
        "describe_snapshots", done, {"Filters": [{"Name": "snapshot-id", "Values": [SNAP]}]}
    )
    _terminated(stubs)
    previews: list[ApplyPreview] = []

    def confirm(preview: ApplyPreview) -> bool:
        previews.append(preview)
        return True

    path = tmp_path / "journal.jsonl"
    report, seen = _run(plan, stubs, path, confirm, backup="snapshots", max_percent=50, **FAST)
    (preview,) = previews
    assert preview.plan_id == PLAN_ID
    assert [(tp.label, f.instance_id) for tp, f in preview.to_terminate] == [
        (plan.targets[0].label, A)
    ]
    assert [(r.instance_id, r.outcome) for r in preview.skipped] == [(B, Outcome.SKIPPED)]
    assert (preview.snapshots, preview.images, preview.already_done) == (1, 0, 0)
    assert (report.plan_id, report.dry_run, report.journal) == (PLAN_ID, False, path)
    assert report.ok and report.cancelled is None and report.journal_error is None
    assert [(r.instance_id, r.outcome, r.reason, r.snapshots) for r in report.results] == [
        (B, Outcome.SKIPPED, "now termination-protection: DisableApiTermination is true", {}),
        (A, Outcome.TERMINATED, "", {ROOT_A: SNAP}),
    ]
    assert _journal(path) == [
        (
            Event.APPLY_STARTED,
            {"run": 1, "to_terminate": 1, "snapshots": 1, "images": 0, "already_done": 0},
        ),
        (
            Event.SKIPPED,
            {
                "instance_id": B,
                "reason": "now termination-protection: DisableApiTermination is true",
            },
        ),
        (Event.SNAPSHOT_REQUESTED, {"instance_id": A, "volume_id": ROOT_A}),
        (Event.SNAPSHOT_CREATED, {"instance_id": A, "volume_id": ROOT_A, "snapshot_id": SNAP}),
        (Event.SNAPSHOT_COMPLETED, {"instance_id": A, "volume_id": ROOT_A, "snapshot_id": SNAP}),
        (Event.TERMINATE_REQUESTED, {"instance_ids": [A]}),
        (Event.TERMINATE_ACCEPTED, {"instance_id": A}),
        (Event.TERMINATED, {"instance_id": A}),
        (
            Event.APPLY_FINISHED,
            {"terminated": 1, "skipped": 1, "failed": 0, "not_done": 0, "cancelled": None},
        ),
    ]
    assert [e["event"] for e in seen] == [e for e, _ in _journal(path)]


def test_an_image_then_termination(
    stubs: Stubs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _verified(stubs, "image")
    captured = {"root_device_name": "/dev/xvda", "instance_id": A}
    monkeypatch.setattr(capture, "capture", lambda ec2, region, inst: dict(captured))
    stub = stubs.ec2_stub
    stub.add_response("describe_images", {"Images": []}, images_of(A))
    stub.add_response("create_image", {"ImageId": IMAGE}, create_image(A))
    image = {
        "ImageId": IMAGE,
        "State": "available",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": SNAP}}],
    }
    stub.add_response("describe_images", {"Images": [image]}, {"ImageIds": [IMAGE]})
    stub.add_response(
        "describe_images",
        {"Images": [image]},
        {"Filters": [{"Name": "image-id", "Values": [IMAGE]}]},
    )
    stub.add_response("create_tags", {}, {"Resources": [SNAP], "Tags": TAGS})
    _terminated(stubs)
    path = tmp_path / "journal.jsonl"
    report, _ = _run(plan, stubs, path, backup="image", max_percent=None, **FAST)
    assert [(r.instance_id, r.outcome, r.image, r.snapshots) for r in report.results] == [
        (A, Outcome.TERMINATED, IMAGE, {})
    ]
    assert [e for e, _ in _journal(path)] == [
        Event.APPLY_STARTED,
        Event.RESTORE_CAPTURED,
        Event.IMAGE_REQUESTED,
        Event.IMAGE_CREATED,
        Event.IMAGE_AVAILABLE,
        Event.TERMINATE_REQUESTED,
        Event.TERMINATE_ACCEPTED,
        Event.TERMINATED,
        Event.APPLY_FINISHED,
    ]
    journal = dict(_journal(path)[:5])
    assert journal[Event.APPLY_STARTED]["images"] == 1
    assert journal[Event.RESTORE_CAPTURED] == {"instance_id": A, "capture": captured}
    assert journal[Event.IMAGE_AVAILABLE] == {
        "instance_id": A,
        "image_id": IMAGE,
        "snapshot_ids": [SNAP],
    }


def test_a_dry_run_says_what_would_be_done_and_changes_nothing(stubs: Stubs) -> None:
    plan = _verified(stubs, "snapshots")
    report = apply_plan(
        plan,
        stubs.factory,
        ApplyOptions(dry_run=True, backup="snapshots", max_percent=None),
        None,  # type: ignore[arg-type]
    )
    assert report.dry_run and report.journal is None
    assert [(r.instance_id, r.outcome, r.reason) for r in report.results] == [
        (A, Outcome.WOULD_TERMINATE, "1 volume(s) to back up first")
    ]


@pytest.mark.parametrize(
    ("backup", "note"), [("image", "an image to make first"), ("none", "no backup (--backup none)")]
)
def test_a_dry_run_names_the_backup_it_would_make(stubs: Stubs, backup: str, note: str) -> None:
    plan = _verified(stubs, backup)
    report, _ = _run(plan, stubs, None, dry_run=True, backup=backup, max_percent=None)
    assert [(r.outcome, r.reason) for r in report.results] == [(Outcome.WOULD_TERMINATE, note)]


def test_a_real_apply_needs_a_journal(stubs: Stubs) -> None:
    with pytest.raises(ValueError, match=r"^a real apply needs a journal path$"):
        Executor(plan_of(facts(described(A))), stubs.factory, ApplyOptions(), None)  # type: ignore[arg-type]


def test_nothing_changes_unless_confirmed(stubs: Stubs, tmp_path: Path) -> None:
    plan = _verified(stubs, "snapshots")
    path = tmp_path / "journal.jsonl"
    with pytest.raises(SafetyError, match=r"^not confirmed: nothing was changed$"):
        _run(plan, stubs, path, lambda preview: False, backup="snapshots", max_percent=None)
    assert _journal(path) == []


def test_credentials_for_another_account_stop_the_whole_run(tmp_path: Path, stubs: Stubs) -> None:
    plan = plan_of(facts(described(A)))
    other = Factory(account="999999999999")
    with pytest.raises(PlanError, match="reach account 999999999999"):
        Executor(plan, other, ApplyOptions(), tmp_path / "j.jsonl").run()  # type: ignore[arg-type]
    assert _journal(tmp_path / "j.jsonl") == []


def test_an_instance_an_earlier_run_terminated_is_reported_with_its_backups(
    stubs: Stubs, tmp_path: Path
) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path, PLAN_ID) as journal:
        journal.record(Event.APPLY_STARTED, run=1)
        journal.record(Event.IMAGE_AVAILABLE, instance_id=A, image_id=IMAGE, snapshot_ids=[SNAP])
        journal.record(Event.TERMINATE_REQUESTED, instance_ids=[A])
    plan = plan_of(facts(described(A)))
    stubs.describe(described(A, "shutting-down"), ids=[A])
    gone = reservations(described(A, "terminated"))
    stubs.ec2_stub.add_response("describe_instances", gone, {"InstanceIds": [A]})
    stubs.ec2_stub.add_response("describe_instances", gone, by_ids(A))
    previews: list[ApplyPreview] = []
    report, _ = _run(
        plan,
        stubs,
        path,
        lambda p: previews.append(p) or True,
        backup="image",
        max_percent=None,
        **FAST,
    )
    assert [(p.to_terminate, p.already_done) for p in previews] == [([], 1)]
    assert [(r.instance_id, r.outcome, r.image) for r in report.results] == [
        (A, Outcome.TERMINATED, IMAGE)
    ]
    events = _journal(path)
    assert events[3] == (
        Event.APPLY_STARTED,
        {"run": 2, "to_terminate": 0, "snapshots": 0, "images": 0, "already_done": 1},
    )
    assert [e for e, _ in events[4:]] == [Event.TERMINATED, Event.APPLY_FINISHED]
