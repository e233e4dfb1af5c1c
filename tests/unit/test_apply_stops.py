"""A whole apply that stops, against exact EC2 answers (botocore Stubber): on a signal
before its changes, once its backups are complete, once its images are made, and when
its journal cannot be written; every instance gets a result saying how far it got."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY
from tests.unit.apply_stubs import (
    NOW,
    Factory,
    Stubs,
    create_image,
    create_snapshot,
    described,
    facts,
    images_of,
    plan_of,
    snapshots_of,
    stubbed_target,
)
from tests.unit.test_apply_units import (
    FAST,
    IMAGE,
    _dry_run_ok,
    _journal,
    _run,
    _verified,
)

from awsops.cancel import CancelToken
from awsops.decommission import capture
from awsops.decommission.executor import ApplyPreview, Executor, apply_plan
from awsops.decommission.journal import Event, Journal
from awsops.decommission.outcomes import ApplyOptions, Outcome

A, B = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"
SNAPS = {A: "snap-0aaaaaaaaaaaaaaa1", B: "snap-0bbbbbbbbbbbbbbb2"}


def root(iid: str) -> str:
    return f"vol-{iid[-4:]}root"


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    yield from stubbed_target(monkeypatch, Factory())


def _two(stubs: Stubs, backups: bool) -> Any:
    """Verification of A and B and the permission probes; with ``backups``, a snapshot
    of each one's root volume made and completed."""
    insts = [described(A), described(B)]
    stubs.describe(*insts, ids=[A, B])
    stubs.enrich(*insts)
    stub = stubs.ec2_stub
    _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
    _dry_run_ok(stub, "create_snapshot", {"VolumeId": root(A), "DryRun": True})
    if backups:
        for iid in (A, B):
            stub.add_response("describe_snapshots", {"Snapshots": []}, snapshots_of(iid, root(iid)))
            stub.add_response("create_snapshot", {"SnapshotId": SNAPS[iid]}, create_snapshot(iid))
        done = {
            "Snapshots": [
                {"SnapshotId": SNAPS[i], "VolumeId": root(i), "State": "completed"} for i in (A, B)
            ]
        }
        ids = [SNAPS[A], SNAPS[B]]
        stub.add_response("describe_snapshots", done, {"SnapshotIds": ids})
        stub.add_response(
            "describe_snapshots", done, {"Filters": [{"Name": "snapshot-id", "Values": ids}]}
        )
    return plan_of(*(facts(i) for i in insts))


def _stopping_at(event: str, reason: str) -> tuple[list[Executor], Any]:
    """An on_event that stops the run (``reason``) at ``event``, and where to put the
    executor it stops."""
    holder: list[Executor] = []

    def on_event(entry: Mapping[str, Any]) -> None:
        if entry["event"] == event:
            holder[0].run_state.cancel.cancel(reason)

    return holder, on_event


def test_a_run_stopped_before_its_changes_reports_each_instance_not_done(
    stubs: Stubs, tmp_path: Path
) -> None:
    plan = _two(stubs, backups=False)
    path = tmp_path / "journal.jsonl"
    holder, stop = _stopping_at(Event.APPLY_STARTED, "SIGINT")
    ex = Executor(
        plan,
        stubs.factory,  # type: ignore[arg-type]
        ApplyOptions(backup="snapshots", max_percent=None),
        path,
        stop,
        now=lambda: NOW,
    )
    holder.append(ex)
    report = ex.run()
    assert report.cancelled == "SIGINT" and not report.ok
    assert [(r.instance_id, r.outcome, r.reason) for r in report.results] == [
        (A, Outcome.NOT_DONE, "stopped before its backup was made"),
        (B, Outcome.NOT_DONE, "stopped before its backup was made"),
    ]
    assert _journal(path)[-1] == (
        Event.APPLY_FINISHED,
        {"terminated": 0, "skipped": 0, "failed": 0, "not_done": 2, "cancelled": "SIGINT"},
    )


def test_a_run_stopped_once_backups_completed_sends_no_termination(
    stubs: Stubs, tmp_path: Path
) -> None:
    """Stopped as A's snapshot is seen completed: B's is still journaled as completed
    (the wait was over), and neither batch (one instance each) is sent."""
    plan = _two(stubs, backups=True)
    holder, stop = _stopping_at(Event.SNAPSHOT_COMPLETED, "SIGTERM")
    ex = Executor(
        plan,
        stubs.factory,  # type: ignore[arg-type]
        ApplyOptions(backup="snapshots", max_percent=None, batch_size=1, **FAST),
        tmp_path / "journal.jsonl",
        stop,
        now=lambda: NOW,
    )
    holder.append(ex)
    report = ex.run()
    assert [(r.instance_id, r.outcome, r.reason, r.snapshots) for r in report.results] == [
        (
            iid,
            Outcome.NOT_DONE,
            "stopped before its termination (backups complete)",
            {root(iid): SNAPS[iid]},
        )
        for iid in (A, B)
    ]
    assert report.cancelled == "SIGTERM"


def test_a_journal_that_fails_at_the_end_of_the_run_is_reported(
    stubs: Stubs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped (SIGINT) as it starts, and then the last record cannot be written: the
    report says both, nothing but the start is journaled, and the run does not raise."""
    plan = _two(stubs, backups=False)
    _fail_journal_at(monkeypatch, Event.APPLY_FINISHED)
    holder, stop = _stopping_at(Event.APPLY_STARTED, "SIGINT")
    ex = Executor(
        plan,
        stubs.factory,  # type: ignore[arg-type]
        ApplyOptions(backup="snapshots", max_percent=None),
        tmp_path / "j.jsonl",
        stop,
        now=lambda: NOW,
    )
    holder.append(ex)
    report = ex.run()
    assert (
        report.journal_error
        == f"cannot write journal {tmp_path / 'j.jsonl'}: No space left on device"
    )
    assert report.cancelled == "SIGINT"
    assert [e for e, _ in _journal(tmp_path / "j.jsonl")] == [Event.APPLY_STARTED]


def _fail_journal_at(monkeypatch: pytest.MonkeyPatch, failing: str, once: bool = False) -> None:
    """The journal's disk is full from the time ``failing`` is recorded (a full disk
    stays full: every later record fails too), or, ``once``, for that record only (space
    freed right after)."""
    real = Journal.record
    full_since: list[str] = []

    def full_disk(self: Journal, event: str, **data: Any) -> dict[str, Any]:
        if (event != failing and not full_since) or (once and full_since):
            return real(self, event, **data)
        full_since.append(event)
        fd, full = self._fd, os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
        try:
            self._fd = full
            return real(self, event, **data)
        finally:
            self._fd = fd
            os.close(full)

    monkeypatch.setattr(Journal, "record", full_disk)


def test_a_run_stopped_once_images_were_made_reports_them(
    stubs: Stubs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _verified(stubs, "image")
    monkeypatch.setattr(
        capture, "capture", lambda ec2, region, inst: {"root_device_name": "/dev/xvda"}
    )
    stub = stubs.ec2_stub
    stub.add_response("describe_images", {"Images": []}, images_of(A))
    # apply_plan runs on the real clock: the date tag is today's
    stub.add_response("create_image", {"ImageId": IMAGE}, create_image(A, day=ANY))
    image = {"ImageId": IMAGE, "State": "available", "BlockDeviceMappings": []}
    stub.add_response("describe_images", {"Images": [image]}, {"ImageIds": [IMAGE]})
    stub.add_response(
        "describe_images",
        {"Images": [image]},
        {"Filters": [{"Name": "image-id", "Values": [IMAGE]}]},
    )
    token = CancelToken()

    def stop(entry: Mapping[str, Any]) -> None:
        if entry["event"] == Event.IMAGE_AVAILABLE:
            token.cancel("SIGTERM")

    previews: list[ApplyPreview] = []
    report = apply_plan(
        plan,
        stubs.factory,  # type: ignore[arg-type]
        ApplyOptions(backup="image", max_percent=None, **FAST),
        tmp_path / "j.jsonl",
        lambda p: previews.append(p) or True,
        stop,
        token,
    )
    assert [(p.snapshots, p.images) for p in previews] == [(0, 1)]
    assert [(r.instance_id, r.outcome, r.reason, r.image) for r in report.results] == [
        (A, Outcome.NOT_DONE, "stopped before its termination (backups complete)", IMAGE)
    ]
    assert report.cancelled == "SIGTERM" and report.journal == tmp_path / "j.jsonl"


@pytest.mark.parametrize("once", [False, True], ids=["stays-full", "freed-after"])
def test_a_journal_that_fails_mid_run_is_reported_not_a_cancellation(
    stubs: Stubs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, once: bool
) -> None:
    """The disk fills up as the snapshot is about to be asked for: CreateSnapshot is
    not sent (the Stubber would refuse it), and the instance is reported not reached;
    the failed write is the run's, not the instance's, so nothing is journaled as the
    instance's failure even when space comes back at once."""
    plan = _verified(stubs, "snapshots")
    stubs.ec2_stub.add_response("describe_snapshots", {"Snapshots": []}, snapshots_of(A, root(A)))
    _fail_journal_at(monkeypatch, Event.SNAPSHOT_REQUESTED, once=once)
    report, _ = _run(plan, stubs, tmp_path / "j.jsonl", backup="snapshots", max_percent=None)
    assert (
        report.journal_error
        == f"cannot write journal {tmp_path / 'j.jsonl'}: No space left on device"
    )
    assert report.cancelled is None and report.target_errors == [] and not report.ok
    assert [(r.instance_id, r.outcome, r.reason) for r in report.results] == [
        (A, Outcome.NOT_DONE, "not reached: the journal could not be written")
    ]
    assert [e for e, _ in _journal(tmp_path / "j.jsonl")] == [Event.APPLY_STARTED]


def test_a_step_with_no_journal_open_is_refused_and_stops_the_run() -> None:
    from awsops.decommission.applyrun import ApplyRun
    from awsops.decommission.journal import JournalError

    run = ApplyRun(plan_of(facts(described(A))), ApplyOptions(), 3)
    assert run.journal is None and run.sleep == run.cancel.wait and run.jitter() < 1.0
    with pytest.raises(JournalError, match=r"^no journal is open: terminated was not recorded$"):
        run.record(Event.TERMINATED, instance_id=A)
    with pytest.raises(JournalError):
        run.record(Event.FAILED, instance_id=A)
    assert run.journal_error == "no journal is open: terminated was not recorded"  # the first
    assert run.stopping and run.cancel.reason == "the journal could not be written"
