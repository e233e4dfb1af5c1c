"""Snapshots made at most once, against exact EC2 answers (botocore Stubber): every
deletable volume of an instance is backed up (those the journal saw complete are kept,
the plan's own are adopted, the rest made, per volume once part of the instance is
backed up), a refused or stopped create call is reported and journaled as such, and
after a lost answer the new snapshot is told apart from the plan's older ones and
adopted whatever its state, which then keeps the instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.unit.apply_stubs import (
    PLAN_ID,
    Strict,
    backup_tags,
    client,
    described,
    executor,
    facts,
    plan_of,
    snapshots_of,
)

from awsops.decommission import createonce
from awsops.decommission.executor import Executor, Outcome, TargetWork
from awsops.decommission.journal import Event, read_events
from awsops.errors import AwsError, PlanError

A = "i-0aaaaaaaaaaaaaaa1"
V1, V2 = "vol-0aaa1", "vol-0aaa2"
DEVICE = {V1: "/dev/xvda", V2: "/dev/sdf"}
OLD, NEW, OTHER = "snap-0000000000000old", "snap-0000000000000new", "snap-00000000000other"
CREATE_ALL = {
    "InstanceSpecification": {"InstanceId": A, "ExcludeBootVolume": False},
    "Description": f"awsops backup of {A} before decommission, {PLAN_ID}",
    "TagSpecifications": [
        {"ResourceType": "snapshot", "Tags": backup_tags(A, ("Name", f"awsops-backup-{A}"))}
    ],
}


def _case(
    tmp_path: Path, data_deletable: bool = True, **options: Any
) -> tuple[Executor, TargetWork, Any, Any]:
    """A with a deletable root volume V1 and a data volume V2 (deleted by termination
    if ``data_deletable``); ``ec2`` for look-ups, ``once`` for the create calls."""
    inst = described(A, volumes=((V1, DEVICE[V1], True), (V2, DEVICE[V2], data_deletable)))
    plan = plan_of(facts(inst))
    ex = executor(plan, tmp_path / "journal.jsonl", **options)
    ex.run_state.sleep = lambda seconds: None
    ex.run_state.jitter = lambda: 1.0
    ec2, once = client("ec2"), client("ec2")
    tp = plan.targets[0]
    return ex, TargetWork(tp, ec2, ec2_once=once, act=list(tp.chosen)), ec2, once


def _create(volume: str) -> dict[str, Any]:
    """The CreateSnapshot of one of A's volumes."""
    device = DEVICE[volume]
    return {
        "VolumeId": volume,
        "Description": f"awsops backup of {volume} ({device}) of {A} before decommission, "
        f"{PLAN_ID}",
        "TagSpecifications": [
            {
                "ResourceType": "snapshot",
                "Tags": backup_tags(
                    A, ("awsops:volume-id", volume), ("Name", f"awsops-backup-{A}-{device}")
                ),
            }
        ],
    }


def _found(*snaps: tuple[str, str, str]) -> dict[str, Any]:
    """A DescribeSnapshots answer: (snapshot id, volume id, state) each."""
    return {"Snapshots": [{"SnapshotId": s, "VolumeId": v, "State": st} for s, v, st in snaps]}


def _events(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    skip = {"seq", "ts", "plan_id", "event"}
    return [
        (e["event"], {k: v for k, v in e.items() if k not in skip})
        for e in read_events(tmp_path / "journal.jsonl")
    ]


def test_the_volume_left_after_one_the_journal_saw_complete_gets_its_own_snapshot(
    tmp_path: Path,
) -> None:
    """V1's snapshot completed in an earlier run: V2 alone is looked up and made, with a
    CreateSnapshot (a CreateSnapshots would snapshot V1 a second time)."""
    ex, work, ec2, once = _case(tmp_path)
    rec = ex.run_state.state.of(A)
    rec.snapshots[V1] = OLD
    rec.completed.add(V1)
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_snapshots", _found(), snapshots_of(A, V2))
        creates.add_response("create_snapshot", {"SnapshotId": NEW}, _create(V2))
        assert ex.backups.back_up(work, work.act[0]) == {V1: OLD, V2: NEW}
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    assert rec.snapshots == {V1: OLD, V2: NEW}
    assert _events(tmp_path) == [
        (Event.SNAPSHOT_REQUESTED, {"instance_id": A, "volume_id": V2}),
        (Event.SNAPSHOT_CREATED, {"instance_id": A, "volume_id": V2, "snapshot_id": NEW}),
    ]


def test_the_plans_snapshots_of_every_volume_are_adopted_in_one_look_up(tmp_path: Path) -> None:
    """One look-up for both volumes finds this plan's snapshots (V1's pending): both are
    adopted, nothing is made, and V2's, already journaled, is not journaled again."""
    ex, work, ec2, once = _case(tmp_path)
    rec = ex.run_state.state.of(A)
    rec.snapshots[V2] = OTHER
    with Strict(ec2) as lookups, Strict(once):
        lookups.add_response(
            "describe_snapshots",
            _found((OLD, V1, "pending"), (OTHER, V2, "completed")),
            snapshots_of(A, V1, V2),
        )
        assert ex.backups.back_up(work, work.act[0]) == {V1: OLD, V2: OTHER}
        lookups.assert_no_pending_responses()
    assert rec.snapshots == {V1: OLD, V2: OTHER}
    assert _events(tmp_path) == [
        (
            Event.SNAPSHOT_CREATED,
            {"instance_id": A, "volume_id": V1, "snapshot_id": OLD, "adopted": True},
        ),
    ]


def test_a_stopping_run_makes_no_backup(tmp_path: Path) -> None:
    ex, work, ec2, once = _case(tmp_path)
    ex.run_state.cancel.cancel("SIGINT")
    with Strict(ec2), Strict(once):
        assert ex.backups.back_up(work, work.act[0]) is None
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (A, Outcome.NOT_DONE, "stopped before its backup was made")
    ]
    assert _events(tmp_path) == []


@pytest.mark.parametrize("whole", [True, False], ids=["CreateSnapshots", "CreateSnapshot"])
def test_a_refused_create_call_fails_the_instance_at_once(tmp_path: Path, whole: bool) -> None:
    """A 400 is not transient: no look-up after it, and the call is not sent again."""
    ex, work, ec2, once = _case(tmp_path, data_deletable=whole)
    volumes = (V1, V2) if whole else (V1,)
    method, params = ("create_snapshots", CREATE_ALL) if whole else ("create_snapshot", _create(V1))
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_snapshots", _found(), snapshots_of(A, *volumes))
        creates.add_client_error(method, "IncorrectState", "busy", 400, expected_params=params)
        assert ex.backups.back_up(work, work.act[0]) is None
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    what = f"snapshots of {A}" if whole else f"snapshot of {V1}"
    operation = "CreateSnapshots" if whole else "CreateSnapshot"
    (result,) = work.results
    assert (result.outcome, result.code, result.reason) == (
        Outcome.FAILED,
        "IncorrectState",
        f"{what} failed: IncorrectState: busy (operation={operation}, region=us-east-1, "
        "account=123456789012)",
    )
    call = {"call": "CreateSnapshots"} if whole else {}
    assert _events(tmp_path) == [
        *((Event.SNAPSHOT_REQUESTED, {"instance_id": A, "volume_id": v, **call}) for v in volumes),
        (Event.FAILED, {"instance_id": A, "code": "IncorrectState", "reason": f"{what} failed"}),
    ]


def test_a_run_that_stops_between_two_sends_sends_no_more(tmp_path: Path) -> None:
    """CreateSnapshots is throttled (refused before EC2 acted: nothing to look for); the
    run stops during the backoff: the backup is reported not done (the next run adopts
    it if it was made after all)."""
    ex, work, ec2, once = _case(tmp_path)
    ex.run_state.sleep = lambda seconds: ex.run_state.cancel.cancel("SIGINT")
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_snapshots", _found(), snapshots_of(A, V1, V2))
        creates.add_client_error(
            "create_snapshots", "RequestLimitExceeded", "slow down", 503, expected_params=CREATE_ALL
        )
        assert ex.backups.back_up(work, work.act[0]) is None
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    assert [(r.outcome, r.reason) for r in work.results] == [
        (
            Outcome.NOT_DONE,
            f"stopped while creating the snapshots of {A}; the next run adopts it if it was made",
        )
    ]
    assert [e for e, _ in _events(tmp_path)] == [Event.SNAPSHOT_REQUESTED] * 2


def test_the_first_send_goes_out_even_if_the_run_is_stopping(tmp_path: Path) -> None:
    """Whether to start is the caller's decision; send_once only never sends again."""
    ex, work, _, once = _case(tmp_path)
    ex.run_state.cancel.cancel("SIGINT")
    with Strict(once) as creates:
        creates.add_response("create_snapshot", {"SnapshotId": NEW}, _create(V1))
        assert ex.backups.create(work, work.act[0], work.act[0].volumes[0], set()) == NEW
        creates.assert_no_pending_responses()


@pytest.mark.parametrize(
    "found",
    [
        ((OLD, V1, "error"), (OTHER, V1, "error"), (NEW, V1, "pending")),
        ((OLD, V1, "error"), (NEW, V1, "error")),
    ],
    ids=["a-usable-new-one", "only-failed-ones"],
)
def test_after_a_lost_answer_the_new_snapshot_is_adopted_not_an_older_one(
    tmp_path: Path, found: tuple[tuple[str, str, str], ...]
) -> None:
    """The plan's OLD snapshot (in error) was there before the call; after a 5xx the
    look-up finds OLD and what is new: a usable new one before a failed one, and a
    failed new one rather than a second CreateSnapshot."""
    ex, work, ec2, once = _case(tmp_path)
    vol = work.act[0].volumes[0]
    with Strict(ec2) as lookups, Strict(once) as creates:
        creates.add_client_error(
            "create_snapshot", "InternalError", "oops", 500, expected_params=_create(V1)
        )
        lookups.add_response("describe_snapshots", _found(*found), snapshots_of(A, V1))
        assert ex.backups.create(work, work.act[0], vol, {OLD}) == NEW
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()


def test_a_create_that_gives_up_names_the_call_and_keeps_its_cause(tmp_path: Path) -> None:
    ex, work, ec2, once = _case(tmp_path)
    vol = work.act[0].volumes[0]
    with Strict(ec2) as lookups, Strict(once) as creates:
        for _ in range(max(createonce.MIN_CREATE_ATTEMPTS, ex.run_state.max_attempts)):
            creates.add_client_error("create_snapshot", "InternalError", "oops", 500)
            for _ in range(createonce.SETTLE_LOOKS):
                lookups.add_response("describe_snapshots", _found(), snapshots_of(A, V1))
        with pytest.raises(AwsError) as failed:
            ex.backups.create(work, work.act[0], vol, set())
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    err = failed.value
    assert (err.code, err.operation, err.region) == ("InternalError", "CreateSnapshot", "us-east-1")
    assert err.__cause__ is not None and "InternalError" in str(err.__cause__)


def test_a_failure_is_journaled_and_reported_by_instance_id(tmp_path: Path) -> None:
    ex, work, _, _ = _case(tmp_path)
    createonce.fail(ex.run_state, work, A, PlanError("not an AWS error"), "capture failed")
    createonce.fail(ex.run_state, work, work.act[0], AwsError("refused", code="Nope"), "terminate")
    assert [(r.instance_id, r.outcome, r.code, r.reason) for r in work.results] == [
        (A, Outcome.FAILED, "PlanError", "capture failed: not an AWS error"),
        (A, Outcome.FAILED, "Nope", "terminate: Nope: refused"),
    ]
    assert _events(tmp_path) == [
        (Event.FAILED, {"instance_id": A, "code": "PlanError", "reason": "capture failed"}),
        (Event.FAILED, {"instance_id": A, "code": "Nope", "reason": "terminate"}),
    ]


def test_the_wait_uses_the_runs_delay_and_budget_and_stops_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex, work, _, _ = _case(tmp_path, snapshot_delay=7.5, snapshot_max_attempts=9)
    calls: list[dict[str, Any]] = []

    def waited(client: Any, waiter: str, param: str, ids: list[str], **kw: Any) -> None:
        calls.append({"waiter": waiter, "param": param, "ids": ids, **kw})

    monkeypatch.setattr(createonce, "wait_many", waited)
    states = createonce.wait_each(
        ex.run_state, work, "snapshot_completed", "SnapshotIds", [NEW], lambda ids: {NEW: "x"}, ()
    )
    assert states == {NEW: "x"}
    assert calls == [
        {
            "waiter": "snapshot_completed",
            "param": "SnapshotIds",
            "ids": [NEW],
            "delay": 7.5,
            "max_attempts": 9,
            "stop": ex.run_state.cancel.event,
        }
    ]


def test_a_snapshot_described_without_a_state_keeps_its_instance(tmp_path: Path) -> None:
    ex, work, ec2, _ = _case(tmp_path, snapshot_delay=0, snapshot_max_attempts=1)
    with Strict(ec2) as stub:
        stub.add_response(
            "describe_snapshots",
            {"Snapshots": [{"SnapshotId": NEW, "State": "completed"}]},
            {"SnapshotIds": [NEW]},
        )
        stub.add_response(
            "describe_snapshots",
            {"Snapshots": [{"SnapshotId": NEW}]},
            {"Filters": [{"Name": "snapshot-id", "Values": [NEW]}]},
        )
        assert ex.backups.wait(work, {A: {V1: NEW}}) == []
        stub.assert_no_pending_responses()
    assert [r.reason for r in work.results] == [
        f"backup not complete, not terminated: { {NEW: 'unknown'} }"
    ]


def test_a_look_up_that_fails_names_the_region(tmp_path: Path) -> None:
    ex, work, ec2, _ = _case(tmp_path)
    with Strict(ec2) as stub:
        stub.add_client_error(
            "describe_snapshots", "InternalError", "oops", 500, expected_params=snapshots_of(A, V1)
        )
        stub.add_client_error(
            "describe_snapshots",
            "InternalError",
            "oops",
            500,
            expected_params={"Filters": [{"Name": "snapshot-id", "Values": [NEW]}]},
        )
        with pytest.raises(AwsError) as looked:
            ex.backups.snapshots(work, A, [V1])
        with pytest.raises(AwsError) as described_:
            ex.backups.states(work, [NEW])
    assert looked.value.region == described_.value.region == "us-east-1"


def test_a_failed_snapshot_adopted_after_a_lost_answer_keeps_the_instance(tmp_path: Path) -> None:
    """V2 has this plan's pending snapshot (adopted); V1 has only OLD, failed, so V1
    alone gets a CreateSnapshot. Its answer is lost, and the look-up finds NEW besides
    OLD, failed too: NEW is this call's (what was there before the call tells them
    apart) and is adopted, not made a second time; its state keeps the instance."""
    ex, work, ec2, once = _case(tmp_path, snapshot_delay=0, snapshot_max_attempts=1)
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response(
            "describe_snapshots",
            _found((OLD, V1, "error"), (OTHER, V2, "pending")),
            snapshots_of(A, V1, V2),
        )
        creates.add_client_error(
            "create_snapshot", "InternalError", "oops", 500, expected_params=_create(V1)
        )
        lookups.add_response(
            "describe_snapshots",
            _found((OLD, V1, "error"), (NEW, V1, "error")),
            snapshots_of(A, V1),
        )
        assert ex.backups.back_up(work, work.act[0]) == {V1: NEW, V2: OTHER}
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    polled = _found((NEW, V1, "error"), (OTHER, V2, "completed"))
    by_filter = {"Filters": [{"Name": "snapshot-id", "Values": [NEW, OTHER]}]}
    with Strict(ec2) as stub:
        stub.add_response("describe_snapshots", polled, {"SnapshotIds": [NEW, OTHER]})
        stub.add_response("describe_snapshots", polled, by_filter)
        stub.add_response("describe_snapshots", polled, by_filter)
        assert ex.backups.wait(work, {A: {V1: NEW, V2: OTHER}}) == []
        stub.assert_no_pending_responses()
    (result,) = work.results
    assert (result.outcome, result.code) == (Outcome.FAILED, "SnapshotFailed")
    assert result.snapshots == {V1: NEW, V2: OTHER}
    assert [(e, d.get("volume_id"), d.get("snapshot_id")) for e, d in _events(tmp_path)] == [
        (Event.SNAPSHOT_CREATED, V2, OTHER),
        (Event.SNAPSHOT_REQUESTED, V1, None),
        (Event.SNAPSHOT_CREATED, V1, NEW),
        (Event.SNAPSHOT_COMPLETED, V2, OTHER),
        (Event.SNAPSHOT_FAILED, V1, NEW),
        (Event.FAILED, None, None),
    ]


def test_a_run_that_stops_between_two_volumes_backs_up_no_more(tmp_path: Path) -> None:
    """A keeps a third volume (not deleted by termination), so its two deletable ones
    get a CreateSnapshot each; the run stops once the first is made: the second is not
    asked for, and A is reported not done (its backup is incomplete), never passed on."""
    v3 = "vol-0aaa3"
    inst = described(
        A, volumes=((V1, DEVICE[V1], True), (V2, DEVICE[V2], True), (v3, "/dev/sdg", False))
    )
    plan = plan_of(facts(inst))
    ex = executor(plan, tmp_path / "journal.jsonl")
    ec2, once = client("ec2"), client("ec2")
    tp = plan.targets[0]
    work = TargetWork(tp, ec2, ec2_once=once, act=list(tp.chosen))
    create = ex.backups.create

    def create_then_stop(*args: Any) -> str:
        made = create(*args)
        ex.run_state.cancel.cancel("SIGTERM")
        return made

    ex.backups.create = create_then_stop  # type: ignore[method-assign]
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_snapshots", _found(), snapshots_of(A, V1, V2))
        creates.add_response("create_snapshot", {"SnapshotId": NEW}, _create(V1))
        assert ex.backups.back_up(work, work.act[0]) is None
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (A, Outcome.NOT_DONE, "stopped before its backup was made")
    ]
    assert [e for e, _ in _events(tmp_path)] == [
        Event.SNAPSHOT_REQUESTED,
        Event.SNAPSHOT_CREATED,
    ]
