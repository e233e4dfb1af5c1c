"""Backups before termination against exact EC2 answers (botocore Stubber): only an
instance whose every snapshot is ``completed`` (or whose image is ``available``) goes on
to termination; pending, errored and missing backups keep it and are reported and
journaled; one failed backup does not end the wait for the others; the plan's own
backups are adopted rather than made twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.unit.apply_stubs import (
    PLAN_ID,
    client,
    described,
    executor,
    facts,
    plan_of,
)

from awsops.decommission.executor import Executor, Outcome, TargetWork
from awsops.decommission.journal import Event, read_events, replay

A, B, C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"
SNAP = {A: "snap-0aaaaaaaaaaaaaaa1", B: "snap-0bbbbbbbbbbbbbbb2", C: "snap-0ccccccccccccccc3"}
IMAGE = {A: "ami-0aaaaaaaaaaaaaaa1", B: "ami-0bbbbbbbbbbbbbbb2", C: "ami-0ccccccccccccccc3"}


def root(iid: str) -> str:
    return f"vol-{iid[-4:]}root"


def _case(tmp_path: Path, *ids: str, backup: str = "snapshots") -> tuple[Executor, TargetWork, Any]:
    plan = plan_of(*(facts(described(i)) for i in ids))
    ex = executor(
        plan, tmp_path / "journal.jsonl", backup=backup, snapshot_delay=0, snapshot_max_attempts=1
    )
    ec2 = client("ec2")
    tp = plan.targets[0]
    return ex, TargetWork(tp, ec2, act=list(tp.chosen)), ec2


def _events(tmp_path: Path) -> list[tuple[str, str | None]]:
    return [
        (e["event"], e.get("instance_id"))
        for e in read_events(tmp_path / "journal.jsonl")
        if e["event"] != Event.APPLY_STARTED
    ]


def _snapshots(**states: str) -> dict[str, Any]:
    return {
        "Snapshots": [
            {"SnapshotId": sid, "VolumeId": f"vol-{sid[-4:]}root", "State": state}
            for sid, state in states.items()
        ]
    }


def _by_filter(*ids: str) -> dict[str, Any]:
    return {"Filters": [{"Name": "snapshot-id", "Values": list(ids)}]}


def _results(work: TargetWork) -> dict[str, tuple[str, str | None, str]]:
    return {r.instance_id: (r.outcome, r.code, r.reason) for r in work.results}


# --- snapshots -----------------------------------------------------------------------------


def test_only_instances_whose_snapshots_completed_go_on_to_termination(tmp_path: Path) -> None:
    """A's snapshot completed, B's failed, C's is still pending when the wait's budget
    runs out: B's failure does not end the wait for C, and only A goes on."""
    ex, work, ec2 = _case(tmp_path, A, B, C)
    ids = [SNAP[A], SNAP[B], SNAP[C]]
    polled = {SNAP[A]: "completed", SNAP[B]: "error", SNAP[C]: "pending"}
    with Stubber(ec2) as stub:
        stub.add_response("describe_snapshots", _snapshots(**polled), {"SnapshotIds": ids})
        stub.add_response("describe_snapshots", _snapshots(**polled), _by_filter(*ids))
        stub.add_response(
            "describe_snapshots", _snapshots(**{SNAP[C]: "pending"}), {"SnapshotIds": [SNAP[C]]}
        )
        stub.add_response("describe_snapshots", _snapshots(**polled), _by_filter(*ids))
        ready = ex.backups.wait(work, {i: {root(i): SNAP[i]} for i in (A, B, C)})
        stub.assert_no_pending_responses()
    assert [(f.instance_id, snaps) for f, snaps in ready] == [(A, {root(A): SNAP[A]})]
    bad_b = {SNAP[B]: "error"}
    bad_c = {SNAP[C]: "pending"}
    assert _results(work) == {
        B: (Outcome.FAILED, "SnapshotFailed", f"backup not complete, not terminated: {bad_b}"),
        C: (Outcome.FAILED, "SnapshotIncomplete", f"backup not complete, not terminated: {bad_c}"),
    }
    skip = {"seq", "ts", "plan_id"}
    assert [
        {k: v for k, v in e.items() if k not in skip}
        for e in read_events(tmp_path / "journal.jsonl")
    ] == [
        {
            "event": Event.SNAPSHOT_COMPLETED,
            "instance_id": A,
            "volume_id": root(A),
            "snapshot_id": SNAP[A],
        },
        {
            "event": Event.SNAPSHOT_FAILED,
            "instance_id": B,
            "volume_id": root(B),
            "snapshot_id": SNAP[B],
        },
        {
            "event": Event.FAILED,
            "instance_id": B,
            "code": "SnapshotFailed",
            "reason": f"backup not complete: {bad_b}",
        },
        {
            "event": Event.FAILED,
            "instance_id": C,
            "code": "SnapshotIncomplete",
            "reason": f"backup not complete: {bad_c}",
        },
    ]
    assert [r.snapshots for r in work.results] == [{root(B): SNAP[B]}, {root(C): SNAP[C]}]
    state = replay(tmp_path / "journal.jsonl")
    assert state.of(A).completed == {root(A)} and state.of(A).snapshots == {root(A): SNAP[A]}
    assert not state.of(B).completed and not state.of(B).snapshots
    assert ex.run_state.state.of(A).completed == {root(A)}
    assert not ex.run_state.state.of(C).completed


def test_a_snapshot_that_is_not_found_keeps_its_instance(tmp_path: Path) -> None:
    ex, work, ec2 = _case(tmp_path, A)
    with Stubber(ec2) as stub:
        stub.add_response("describe_snapshots", _snapshots(), {"SnapshotIds": [SNAP[A]]})
        stub.add_response("describe_snapshots", _snapshots(), _by_filter(SNAP[A]))
        assert ex.backups.wait(work, {A: {root(A): SNAP[A]}}) == []
        stub.assert_no_pending_responses()
    missing = {SNAP[A]: "missing"}
    assert _results(work) == {
        A: (Outcome.FAILED, "SnapshotIncomplete", f"backup not complete, not terminated: {missing}")
    }


def test_snapshots_the_journal_saw_complete_are_not_asked_about_again(tmp_path: Path) -> None:
    ex, work, ec2 = _case(tmp_path, A)
    rec = ex.run_state.state.of(A)
    rec.snapshots[root(A)] = SNAP[A]
    rec.completed.add(root(A))
    with Stubber(ec2):  # no call at all
        ready = ex.backups.wait(work, {A: {root(A): SNAP[A]}})
    assert [(f.instance_id, s) for f, s in ready] == [(A, {root(A): SNAP[A]})]
    assert _events(tmp_path) == []  # already journaled by the run that saw it


def test_a_stopping_run_reports_pending_snapshots_not_done(tmp_path: Path) -> None:
    """Stopped while A's and B's snapshots are pending and C's failed: A and B are not
    done (the next run waits for them), C failed."""
    ex, work, ec2 = _case(tmp_path, A, B, C)
    ex.run_state.cancel.cancel("SIGINT")
    ids = [SNAP[A], SNAP[B], SNAP[C]]
    polled = {SNAP[A]: "pending", SNAP[B]: "pending", SNAP[C]: "error"}
    with Stubber(ec2) as stub:
        stub.add_response("describe_snapshots", _snapshots(**polled), _by_filter(*ids))
        assert ex.backups.wait(work, {i: {root(i): SNAP[i]} for i in (A, B, C)}) == []
        stub.assert_no_pending_responses()
    assert [(r.instance_id, r.outcome, r.code) for r in work.results] == [
        (A, Outcome.NOT_DONE, None),
        (B, Outcome.NOT_DONE, None),
        (C, Outcome.FAILED, "SnapshotFailed"),
    ]
    result = work.results[0]
    assert result.snapshots == {root(A): SNAP[A]}
    assert result.reason == f"stopped while its backups were not complete: { {SNAP[A]: 'pending'} }"
    assert _events(tmp_path) == [(Event.SNAPSHOT_FAILED, C), (Event.FAILED, C)]


def test_a_failed_snapshot_and_a_completed_one_end_the_wait(tmp_path: Path) -> None:
    ex, work, ec2 = _case(tmp_path, A, B)
    ids = [SNAP[A], SNAP[B]]
    polled = {SNAP[A]: "completed", SNAP[B]: "error"}
    with Stubber(ec2) as stub:
        stub.add_response("describe_snapshots", _snapshots(**polled), {"SnapshotIds": ids})
        stub.add_response("describe_snapshots", _snapshots(**polled), _by_filter(*ids))
        stub.add_response("describe_snapshots", _snapshots(**polled), _by_filter(*ids))
        ready = ex.backups.wait(work, {i: {root(i): SNAP[i]} for i in (A, B)})
        stub.assert_no_pending_responses()
    assert [f.instance_id for f, _ in ready] == [A]


def _tagged(volume: str) -> dict[str, Any]:
    return {
        "OwnerIds": ["self"],
        "Filters": [
            {"Name": "tag:awsops:plan-id", "Values": [PLAN_ID]},
            {"Name": "tag:awsops:volume-id", "Values": [volume]},
        ],
    }


def _images(**states: str) -> dict[str, Any]:
    return {
        "Images": [
            {
                "ImageId": image,
                "State": state,
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": f"snap-of-{image}"}}
                ],
            }
            for image, state in states.items()
        ]
    }


def test_only_instances_whose_image_is_available_go_on_to_termination(tmp_path: Path) -> None:
    """A's image is available (its snapshots are then tagged), B's failed, C's is still
    pending when the wait's budget runs out: only A goes on."""
    ex, work, ec2 = _case(tmp_path, A, B, C, backup="image")
    ids = [IMAGE[A], IMAGE[B], IMAGE[C]]
    polled = {IMAGE[A]: "available", IMAGE[B]: "failed", IMAGE[C]: "pending"}
    image_filter = {"Filters": [{"Name": "image-id", "Values": ids}]}
    with Stubber(ec2) as stub:
        stub.add_response("describe_images", _images(**polled), {"ImageIds": ids})
        stub.add_response("describe_images", _images(**polled), image_filter)
        stub.add_response(
            "describe_images", _images(**{IMAGE[C]: "pending"}), {"ImageIds": [IMAGE[C]]}
        )
        stub.add_response("describe_images", _images(**polled), image_filter)
        stub.add_response(
            "create_tags",
            {},
            {
                "Resources": [f"snap-of-{IMAGE[A]}"],
                "Tags": [
                    {"Key": "awsops:plan-id", "Value": PLAN_ID},
                    {"Key": "awsops:instance-id", "Value": A},
                    {"Key": "awsops:date", "Value": "2026-06-01"},
                ],
            },
        )
        ready = ex.images.wait(work, IMAGE)
        stub.assert_no_pending_responses()
    assert [(f.instance_id, image) for f, image in ready] == [(A, IMAGE[A])]
    assert _results(work) == {
        B: (
            Outcome.FAILED,
            "ImageFailed",
            f"backup not complete, not terminated: image {IMAGE[B]} failed",
        ),
        C: (
            Outcome.FAILED,
            "ImageIncomplete",
            f"backup not complete, not terminated: image {IMAGE[C]} pending",
        ),
    }
    assert _events(tmp_path) == [
        (Event.IMAGE_AVAILABLE, A),
        (Event.IMAGE_FAILED, B),
        (Event.FAILED, B),
        (Event.FAILED, C),
    ]
    state = replay(tmp_path / "journal.jsonl")
    assert state.of(A).image_available and state.of(A).image_id == IMAGE[A]
    assert state.of(B).image_id is None and not state.of(B).image_available
    assert ex.run_state.state.of(A).image_available
    assert not ex.run_state.state.of(C).image_available


@pytest.mark.parametrize("state", ["pending", "failed"])
def test_a_stopping_run_keeps_an_instance_whose_image_is_not_available(
    tmp_path: Path, state: str
) -> None:
    ex, work, ec2 = _case(tmp_path, A, backup="image")
    ex.run_state.cancel.cancel("SIGTERM")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_images",
            _images(**{IMAGE[A]: state}),
            {"Filters": [{"Name": "image-id", "Values": [IMAGE[A]]}]},
        )
        assert ex.images.wait(work, {A: IMAGE[A]}) == []
        stub.assert_no_pending_responses()
    (result,) = work.results
    if state == "pending":
        assert (result.outcome, result.reason) == (
            Outcome.NOT_DONE,
            f"stopped while its image {IMAGE[A]} was pending",
        )
    else:
        assert (result.outcome, result.code) == (Outcome.FAILED, "ImageFailed")
