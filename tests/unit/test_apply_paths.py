"""The other paths of a whole apply, against exact EC2 answers (botocore Stubber):
batches, a batch emptied by the last look, a refused termination, a target whose work
failed, no backup at all, a capture that could not be read, the caps checked on live
counts, the oldest plan accepted, a dry run that resumes, a stop after image backups,
and ``apply_plan`` handing everything on."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.unit.apply_stubs import (
    NOW,
    PLAN_ID,
    Factory,
    Stubs,
    by_ids,
    described,
    facts,
    images_of,
    kept,
    plan_of,
    reservations,
    stubbed_target,
    terminating,
)
from tests.unit.test_apply_units import FAST, IMAGE, _dry_run_ok, _journal, _run, _verified

from awsops.decommission import capture
from awsops.decommission.executor import Executor
from awsops.decommission.journal import Event, Journal
from awsops.decommission.outcomes import ApplyOptions, Outcome
from awsops.errors import AwsError, PlanError, SafetyError

A, B = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    yield from stubbed_target(monkeypatch, Factory())


def _two(stubs: Stubs) -> Any:
    """Verification of A and B (nothing to back up) and the TerminateInstances probe."""
    insts = [kept(A), kept(B)]
    stubs.describe(*insts, ids=[A, B])
    stubs.enrich(*insts)
    _dry_run_ok(stubs.ec2_stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
    return plan_of(*(facts(i) for i in insts))


def test_batches_of_one_each_looked_at_before_they_are_sent(stubs: Stubs, tmp_path: Path) -> None:
    """A is already shutting down at its last look (its batch is empty: nothing sent);
    B's batch still goes; both are waited for; the report counts them."""
    plan = _two(stubs)
    stub = stubs.ec2_stub
    stub.add_response(
        "describe_instances",
        reservations(kept(A) | {"State": {"Code": 32, "Name": "shutting-down"}}),
        by_ids(A),
    )
    stub.add_response("describe_instances", reservations(kept(B)), by_ids(B))
    stub.add_response("terminate_instances", terminating(B), {"InstanceIds": [B]})
    gone = reservations(described(B, "terminated"))
    stub.add_response("describe_instances", gone, {"InstanceIds": [B]})
    stub.add_response("describe_instances", gone, by_ids(B))
    report, _ = _run(
        plan, stubs, tmp_path / "j.jsonl", backup="none", batch_size=1, max_percent=None, **FAST
    )
    assert [(r.instance_id, r.outcome) for r in report.results] == [
        (A, Outcome.SKIPPED),
        (B, Outcome.TERMINATED),
    ]


def test_every_accepted_batch_is_waited_for(stubs: Stubs, tmp_path: Path) -> None:
    plan = _two(stubs)
    stub = stubs.ec2_stub
    for iid in (A, B):
        stub.add_response("describe_instances", reservations(kept(iid)), by_ids(iid))
        stub.add_response("terminate_instances", terminating(iid), {"InstanceIds": [iid]})
    gone = reservations(described(A, "terminated"), described(B, "terminated"))
    stub.add_response("describe_instances", gone, {"InstanceIds": [A, B]})
    stub.add_response("describe_instances", gone, by_ids(A, B))
    report, _ = _run(
        plan, stubs, tmp_path / "j.jsonl", backup="none", batch_size=1, max_percent=None, **FAST
    )
    assert [(r.instance_id, r.outcome) for r in report.results] == [
        (A, Outcome.TERMINATED),
        (B, Outcome.TERMINATED),
    ]


def test_a_refused_termination_fails_that_instance_and_is_counted(
    stubs: Stubs, tmp_path: Path
) -> None:
    """B was protected since its last look: EC2 refuses the batch (terminating none of
    it), which is described again; each instance is then sent alone, once. B's refusal
    is final: it is neither described nor sent again."""
    plan = _two(stubs)
    stub = stubs.ec2_stub
    stub.add_response("describe_instances", reservations(kept(A), kept(B)), by_ids(A, B))
    refused = ("terminate_instances", "OperationNotPermitted", "protected", 400)
    stub.add_client_error(*refused, expected_params={"InstanceIds": [A, B]})
    stub.add_response("describe_instances", reservations(kept(A), kept(B)), by_ids(A, B))
    stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
    stub.add_client_error(*refused, expected_params={"InstanceIds": [B]})
    gone = reservations(described(A, "terminated"))
    stub.add_response("describe_instances", gone, {"InstanceIds": [A]})
    stub.add_response("describe_instances", gone, by_ids(A))
    path = tmp_path / "j.jsonl"
    report, _ = _run(plan, stubs, path, backup="none", max_percent=None, **FAST)
    failed = report.results[0]
    assert (failed.instance_id, failed.outcome, failed.code) == (
        B,
        Outcome.FAILED,
        "OperationNotPermitted",
    )
    assert failed.reason == (
        "terminate failed: OperationNotPermitted: protected (operation=TerminateInstances, "
        "region=us-east-1, account=123456789012)"
    )
    assert [e for e in _journal(path) if e[0] != Event.APPLY_STARTED] == [
        (Event.TERMINATE_REQUESTED, {"instance_ids": [A, B]}),
        (Event.TERMINATE_REQUESTED, {"instance_ids": [A]}),
        (Event.TERMINATE_ACCEPTED, {"instance_id": A}),
        (Event.TERMINATE_REQUESTED, {"instance_ids": [B]}),
        (
            Event.FAILED,
            {"instance_id": B, "code": "OperationNotPermitted", "reason": "terminate failed"},
        ),
        (Event.TERMINATED, {"instance_id": A}),
        (
            Event.APPLY_FINISHED,
            {"terminated": 1, "skipped": 0, "failed": 1, "not_done": 0, "cancelled": None},
        ),
    ]


def test_a_target_whose_work_failed_is_named_and_its_instances_not_reached(
    stubs: Stubs, tmp_path: Path
) -> None:
    plan = _two(stubs)
    stubs.ec2_stub.add_client_error("describe_instances", "InternalError", "oops", 500)
    report, _ = _run(plan, stubs, tmp_path / "j.jsonl", backup="none", max_percent=None, **FAST)
    assert report.target_errors == [
        f"{plan.targets[0].label}: InternalError: oops (operation=DescribeInstances, region=us-east-1)"
    ]
    assert [(r.instance_id, r.outcome, r.reason) for r in report.results] == [
        (A, Outcome.NOT_DONE, "not reached: the run stopped"),
        (B, Outcome.NOT_DONE, "not reached: the run stopped"),
    ]


def test_a_target_that_could_not_be_verified_is_named_and_left_alone(
    stubs: Stubs, tmp_path: Path
) -> None:
    """The target planned with an error is not verified at all; the other one could not
    be: nothing is done, and the report says where and why."""
    plan = plan_of(facts(kept(A)))
    failed_target = dataclasses.replace(plan.targets[0], region="eu-west-1", error="x")
    plan = dataclasses.replace(plan, targets=(plan.targets[0], failed_target))
    stubs.ec2_stub.add_client_error("describe_instances", "InternalError", "oops", 500)
    report, _ = _run(plan, stubs, tmp_path / "j.jsonl", backup="none", max_percent=None)
    assert report.target_errors == [
        f"{plan.targets[0].label}: InternalError: oops (operation=DescribeInstances, region=us-east-1)"
    ]
    assert report.results == []


def test_a_capture_that_cannot_be_read_fails_its_instance_only(
    stubs: Stubs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image backups: A's restore record cannot be read (A fails, nothing is made of
    it); B's can, and uses its root device: the root volume (kept at termination) is not
    left out of the image."""
    insts = [
        kept(A),
        described(B, volumes=(("vol-b1", "/dev/xvda", False), ("vol-b2", "/dev/sdf", False))),
    ]
    stubs.describe(*insts, ids=[A, B])
    stubs.enrich(*insts)
    stub = stubs.ec2_stub
    _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
    image_probe = {"InstanceId": A, "Name": f"awsops-probe-{A}", "NoReboot": True, "DryRun": True}
    _dry_run_ok(stub, "create_image", image_probe)
    plan = plan_of(*(facts(i) for i in insts))

    def read(ec2: Any, region: str, inst: Mapping[str, Any]) -> dict[str, Any]:
        assert (
            ec2 is stubs.ec2
            and region == "us-east-1"
            and inst is insts[0 if inst["InstanceId"] == A else 1]
        )
        if inst["InstanceId"] == A:
            raise AwsError("denied", code="UnauthorizedOperation")
        return {"root_device_name": "/dev/xvda"}

    monkeypatch.setattr(capture, "capture", read)
    stub.add_response("describe_images", {"Images": []}, images_of(B))
    stub.add_response(
        "create_image",
        {"ImageId": IMAGE},
        {
            "InstanceId": B,
            "Name": f"awsops-{B}-{PLAN_ID}",
            "Description": f"awsops backup of {B} before decommission, {PLAN_ID}",
            "NoReboot": True,
            "BlockDeviceMappings": [{"DeviceName": "/dev/sdf", "NoDevice": ""}],
            "TagSpecifications": [
                {
                    "ResourceType": "image",
                    "Tags": [
                        {"Key": "awsops:plan-id", "Value": PLAN_ID},
                        {"Key": "awsops:instance-id", "Value": B},
                        {"Key": "awsops:date", "Value": "2026-06-01"},
                        {"Key": "Name", "Value": f"awsops-backup-{B}"},
                    ],
                }
            ],
        },
    )
    pending = {"Images": [{"ImageId": IMAGE, "State": "pending"}]}
    stub.add_response("describe_images", pending, {"ImageIds": [IMAGE]})
    stub.add_response(
        "describe_images", pending, {"Filters": [{"Name": "image-id", "Values": [IMAGE]}]}
    )
    path = tmp_path / "j.jsonl"
    report, _ = _run(
        plan,
        stubs,
        path,
        backup="image",
        max_percent=None,
        snapshot_delay=0,
        snapshot_max_attempts=1,
    )
    by_id = {r.instance_id: r for r in report.results}
    assert (by_id[A].outcome, by_id[A].code) == (Outcome.FAILED, "UnauthorizedOperation")
    assert by_id[A].reason.startswith("what a restore needs could not be read: ")
    assert (by_id[B].outcome, by_id[B].code) == (Outcome.FAILED, "ImageIncomplete")
    assert (
        Event.FAILED,
        {
            "instance_id": A,
            "code": "UnauthorizedOperation",
            "reason": "what a restore needs could not be read",
        },
    ) in _journal(path)


def test_a_capture_the_journal_holds_is_not_read_again(stubs: Stubs, tmp_path: Path) -> None:
    plan = plan_of(facts(kept(A)))
    path = tmp_path / "j.jsonl"
    with Journal(path, PLAN_ID) as journal:
        journal.record(
            Event.RESTORE_CAPTURED, instance_id=A, capture={"root_device_name": "/dev/xvda"}
        )
    ex = Executor(plan, stubs.factory, ApplyOptions(backup="image"), path, now=lambda: NOW)  # type: ignore[arg-type]
    ex.run_state.state = Journal(path, PLAN_ID).open()
    from awsops.decommission.outcomes import TargetWork

    work = TargetWork(plan.targets[0], stubs.ec2, act=list(plan.targets[0].chosen))
    assert ex.capture(work, work.act[0]) is True
    assert ex.run_state.state.of(A).capture == {"root_device_name": "/dev/xvda"}


def _no_backup_run(stubs: Stubs, tmp_path: Path) -> None:
    """A, nothing to back up, ``--backup none``: verified, terminated, waited for."""
    plan = plan_of(facts(kept(A)))
    stubs.describe(kept(A), ids=[A])
    stubs.enrich(kept(A))
    stub = stubs.ec2_stub
    _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
    stub.add_response("describe_instances", reservations(kept(A)), by_ids(A))
    stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
    gone = reservations(described(A, "terminated"))
    stub.add_response("describe_instances", gone, {"InstanceIds": [A]})
    stub.add_response("describe_instances", gone, by_ids(A))
    report, _ = _run(
        plan, stubs, tmp_path / "j.jsonl", backup="none", max_percent=None, concurrency=1, **FAST
    )
    assert [(r.instance_id, r.outcome, r.snapshots, r.image) for r in report.results] == [
        (A, Outcome.TERMINATED, {}, None)
    ]


def test_no_backup_terminates_without_one(stubs: Stubs, tmp_path: Path) -> None:
    _no_backup_run(stubs, tmp_path)


def test_the_percent_cap_is_checked_on_live_counts_before_confirming(
    stubs: Stubs, tmp_path: Path
) -> None:
    plan = _verified(stubs, "snapshots", stopped=1)
    with pytest.raises(SafetyError, match="1 of the 1 stopped instances"):
        _run(
            plan,
            stubs,
            tmp_path / "j.jsonl",
            lambda p: pytest.fail("asked"),
            backup="snapshots",
            max_percent=50,
        )


def test_a_plan_older_than_apply_accepts_is_refused_before_any_call(
    stubs: Stubs, tmp_path: Path
) -> None:
    plan = plan_of(facts(kept(A)))
    ex = Executor(
        plan,
        stubs.factory,
        ApplyOptions(max_plan_age_hours=1),
        tmp_path / "j.jsonl",  # type: ignore[arg-type]
        now=lambda: NOW + dt.timedelta(hours=2),
    )
    with pytest.raises(PlanError, match=r"made 2\.0 h ago"):
        ex.run()


def test_a_dry_run_reads_the_journal_and_reports_earlier_terminations(
    stubs: Stubs, tmp_path: Path
) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path, PLAN_ID) as journal:
        journal.record(Event.TERMINATE_REQUESTED, instance_ids=[A])
    plan = plan_of(facts(kept(A)))
    stubs.describe(described(A, "terminated"), ids=[A])
    report, _ = _run(plan, stubs, path, dry_run=True, backup="none", max_percent=None)
    assert [(r.instance_id, r.outcome, r.reason) for r in report.results] == [
        (A, Outcome.TERMINATED, "terminated by an earlier run")
    ]


def test_targets_are_verified_and_worked_on_as_many_at_once_as_asked(
    stubs: Stubs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from awsops.decommission import executor

    asked: list[int] = []
    real = executor.run_targets

    def counted(fn: Any, targets: Any, concurrency: int = 99) -> Any:
        asked.append(concurrency)
        return real(fn, targets, concurrency)

    monkeypatch.setattr(executor, "run_targets", counted)
    _no_backup_run(stubs, tmp_path)  # with concurrency=1
    assert asked == [1, 1]
