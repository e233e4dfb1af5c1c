"""Snapshot backups against exact EC2 request and answer shapes (botocore Stubber on a
real client): one CreateSnapshots per instance whose volumes termination all deletes,
one CreateSnapshot per deletable volume otherwise, and neither call sent twice.

moto ignores ``ExcludeDataVolumeIds`` and ``CopyTagsFromSource`` and makes every
snapshot at once, so what EC2 is sent, and what happens after a lost answer, is pinned
down here with ``expected_params``; the integration tests count the calls against moto.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from tests.unit.executor_stubs import (
    NOW,
    A,
    _ec2,
    _executor,
    _factory,
    _plan,
    _work,
)

from awsops.decommission.executor import Executor, Outcome, TargetWork
from awsops.decommission.journal import Event, read_events
from awsops.decommission.model import InstanceFacts, Volume
from awsops.decommission.verify import check_permissions
from awsops.paginate import CallCounter

PLAN_ID = "plan-20260601T120000Z-0000unit"
ROOT, DATA = "vol-1root", "vol-1data"


def _tags(iid: str, *extra: tuple[str, str]) -> list[dict[str, str]]:
    return [
        {"Key": "awsops:plan-id", "Value": PLAN_ID},
        {"Key": "awsops:instance-id", "Value": iid},
        {"Key": "awsops:date", "Value": NOW.strftime("%Y-%m-%d")},
        *({"Key": k, "Value": v} for k, v in extra),
    ]


def _snapshot_params(volume_id: str) -> dict[str, Any]:
    return {"VolumeId": volume_id, "Description": ANY, "TagSpecifications": ANY}


def _lookup(*volume_ids: str) -> dict[str, Any]:
    """The look-up of this plan's snapshots of instance A's ``volume_ids``."""
    return {
        "OwnerIds": ["self"],
        "Filters": [
            {"Name": "tag:awsops:plan-id", "Values": [PLAN_ID]},
            {"Name": "tag:awsops:instance-id", "Values": [A]},
            {"Name": "volume-id", "Values": sorted(volume_ids)},
        ],
    }


def _found(snapshot_id: str, volume_id: str, state: str = "pending") -> dict[str, Any]:
    """A DescribeSnapshots answer holding one snapshot of the volume."""
    return {"Snapshots": [_snap(snapshot_id, volume_id, state)]}


def _snap(snapshot_id: str, volume_id: str, state: str = "pending") -> dict[str, Any]:
    return {"SnapshotId": snapshot_id, "VolumeId": volume_id, "State": state}


@dataclass
class SnapshotCase:
    """An executor whose sleeps are recorded, instance A and its first volume, and the
    two clients: ``ec2`` for look-ups, ``once`` (no automatic retries) for the create
    calls."""

    ex: Executor
    work: TargetWork
    facts: InstanceFacts
    vol: Volume
    ec2: Any
    once: Any
    slept: list[float]

    def create(self) -> str:
        return self.ex.backups.create(self.work, self.facts, self.vol, set())

    def back_up(self) -> dict[str, str] | None:
        return self.ex.backups.back_up(self.work, self.facts)

    def events(self, *names: str) -> list[dict[str, Any]]:
        path = self.ex.journal_path
        assert path is not None
        return [
            {k: v for k, v in e.items() if k not in ("seq", "ts", "plan_id")}
            for e in read_events(path)
            if e["event"] in names
        ]


def _snapshot_case(data_deletable: bool = False) -> SnapshotCase:
    plan = _plan(A, data_deletable=data_deletable)
    tp = plan.targets[0]
    ec2, once = _ec2(), _ec2()
    ex = _executor(plan)
    slept: list[float] = []
    ex.run_state.sleep = slept.append
    ex.run_state.jitter = lambda: 1.0
    work = TargetWork(tp, ec2, ec2_once=once, act=list(tp.chosen))
    facts = tp.chosen[0]
    return SnapshotCase(ex, work, facts, facts.volumes[0], ec2, once, slept)


# --- one CreateSnapshots per instance whose volumes termination all deletes ------------

CREATE_SNAPSHOTS = {
    "InstanceSpecification": {"InstanceId": A, "ExcludeBootVolume": False},
    "Description": f"awsops backup of {A} before decommission, {PLAN_ID}",
    "TagSpecifications": [
        {"ResourceType": "snapshot", "Tags": _tags(A, ("Name", f"awsops-backup-{A}"))}
    ],
}


def _made(*pairs: tuple[str, str]) -> dict[str, Any]:
    """A CreateSnapshots answer: one snapshot per (volume, snapshot)."""
    return {"Snapshots": [{**_snap(s, v), "OwnerId": "123456789012"} for v, s in pairs]}


def test_an_instance_whose_volumes_are_all_deleted_gets_one_create_snapshots() -> None:
    """The exact request: the instance with its boot volume, this plan's tags on every
    snapshot, no ExcludeDataVolumeIds (moto ignores it) and no CopyTagsFromSource (a
    volume's tags could clash with ours). One journal entry per volume before and after."""
    case = _snapshot_case(data_deletable=True)
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        lookups.add_response("describe_snapshots", {"Snapshots": []}, _lookup(ROOT, DATA))
        creates.add_response(
            "create_snapshots", _made((ROOT, "snap-0r"), (DATA, "snap-0d")), CREATE_SNAPSHOTS
        )
        assert case.back_up() == {ROOT: "snap-0r", DATA: "snap-0d"}
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    assert case.events(Event.SNAPSHOT_REQUESTED, Event.SNAPSHOT_CREATED) == [
        {"event": "snapshot-requested", "instance_id": A, "volume_id": v, "call": "CreateSnapshots"}
        for v in (ROOT, DATA)
    ] + [
        {"event": "snapshot-created", "instance_id": A, "volume_id": v, "snapshot_id": s}
        for v, s in ((ROOT, "snap-0r"), (DATA, "snap-0d"))
    ]


def test_a_volume_that_survives_termination_means_one_create_snapshot_per_volume() -> None:
    """The data volume is kept by termination (DeleteOnTermination false): CreateSnapshots
    would snapshot it too, so the root volume gets its own CreateSnapshot, and nothing
    else is sent (the Stubber refuses any other call)."""
    case = _snapshot_case(data_deletable=False)
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        lookups.add_response("describe_snapshots", {"Snapshots": []}, _lookup(ROOT))
        creates.add_response(
            "create_snapshot",
            {"SnapshotId": "snap-0r", "VolumeId": ROOT, "State": "pending"},
            {
                "VolumeId": ROOT,
                "Description": f"awsops backup of {ROOT} (/dev/xvda) of {A} before "
                f"decommission, {PLAN_ID}",
                "TagSpecifications": [
                    {
                        "ResourceType": "snapshot",
                        "Tags": _tags(
                            A,
                            ("awsops:volume-id", ROOT),
                            ("Name", f"awsops-backup-{A}-/dev/xvda"),
                        ),
                    }
                ],
            },
        )
        assert case.back_up() == {ROOT: "snap-0r"}
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()


def test_a_resumed_backup_adopts_what_is_there_and_snapshots_the_rest_per_volume() -> None:
    """An earlier run's snapshot of the root volume is found (pending) and adopted: the
    data volume alone is left, so it gets a CreateSnapshot, not a second CreateSnapshots
    (which would snapshot the root volume again)."""
    case = _snapshot_case(data_deletable=True)
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        lookups.add_response(
            "describe_snapshots",
            {"Snapshots": [_snap("snap-0old", DATA, "error"), _snap("snap-0r", ROOT)]},
            _lookup(ROOT, DATA),
        )
        creates.add_response("create_snapshot", {"SnapshotId": "snap-0d"}, _snapshot_params(DATA))
        assert case.back_up() == {ROOT: "snap-0r", DATA: "snap-0d"}
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    created = case.events(Event.SNAPSHOT_CREATED)
    assert [(e["volume_id"], e["snapshot_id"], e.get("adopted")) for e in created] == [
        (ROOT, "snap-0r", True),
        (DATA, "snap-0d", None),
    ]


def test_errored_snapshots_of_every_volume_lead_to_one_create_snapshots_again() -> None:
    case = _snapshot_case(data_deletable=True)
    old = [_snap("snap-0old1", ROOT, "error"), _snap("snap-0old2", DATA, "error")]
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        lookups.add_response("describe_snapshots", {"Snapshots": old}, _lookup(ROOT, DATA))
        creates.add_response(
            "create_snapshots", _made((ROOT, "snap-0r"), (DATA, "snap-0d")), CREATE_SNAPSHOTS
        )
        assert case.back_up() == {ROOT: "snap-0r", DATA: "snap-0d"}
        creates.assert_no_pending_responses()


@pytest.mark.parametrize("found", [("pending", "pending"), ("error", "completed")])
def test_a_lost_create_snapshots_answer_adopts_the_new_snapshots_whatever_their_state(
    found: Sequence[str],
) -> None:
    """A 5xx: the call may have been carried out. The look-up (plan and instance tags,
    the volumes' ids) finds two snapshots that were not there before the call: they are
    this call's, adopted even if one already failed, and nothing is sent again."""
    case = _snapshot_case(data_deletable=True)
    before = [_snap("snap-0old", ROOT, "error")]
    new = [_snap("snap-0r", ROOT, found[0]), _snap("snap-0d", DATA, found[1])]
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        lookups.add_response("describe_snapshots", {"Snapshots": before}, _lookup(ROOT, DATA))
        creates.add_client_error("create_snapshots", "InternalError", "oops", 500)
        # the new ones first: an older errored one, listed last, must not be taken
        lookups.add_response("describe_snapshots", {"Snapshots": new + before}, _lookup(ROOT, DATA))
        assert case.back_up() == {ROOT: "snap-0r", DATA: "snap-0d"}
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    assert case.slept == [1.0]


def test_a_lost_create_snapshots_answer_with_nothing_found_is_sent_again() -> None:
    case = _snapshot_case(data_deletable=True)
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        for _ in range(4):  # before the call, then three looks after the 503
            lookups.add_response("describe_snapshots", {"Snapshots": []}, _lookup(ROOT, DATA))
        creates.add_client_error("create_snapshots", "Unavailable", "try again", 503)
        creates.add_response(
            "create_snapshots", _made((ROOT, "snap-0r"), (DATA, "snap-0d")), CREATE_SNAPSHOTS
        )
        assert case.back_up() == {ROOT: "snap-0r", DATA: "snap-0d"}
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    assert case.slept == [1.0, 2.0, 4.0]


def test_create_snapshots_that_misses_a_volume_fails_the_instance() -> None:
    """The answer has no snapshot of the data volume (detached since the plan) and the
    look-ups find none: the instance is kept, reported failed, and the snapshot that
    was made is journaled."""
    case = _snapshot_case(data_deletable=True)
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        lookups.add_response("describe_snapshots", {"Snapshots": []}, _lookup(ROOT, DATA))
        creates.add_response("create_snapshots", _made((ROOT, "snap-0r")), CREATE_SNAPSHOTS)
        made = [_snap("snap-0r", ROOT)]
        for _ in range(3):
            lookups.add_response("describe_snapshots", {"Snapshots": made}, _lookup(ROOT, DATA))
        assert case.back_up() is None
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    (result,) = case.work.results
    assert result.outcome == Outcome.FAILED and "made no snapshot of vol-1data" in result.reason
    assert [e["snapshot_id"] for e in case.events(Event.SNAPSHOT_CREATED)] == ["snap-0r"]


def test_a_stopping_run_sends_no_create_snapshots() -> None:
    case = _snapshot_case(data_deletable=True)
    case.ex.run_state.cancel.cancel("test")
    with Stubber(case.ec2), Stubber(case.once):
        assert case.back_up() is None
    (result,) = case.work.results
    assert result.outcome == Outcome.NOT_DONE


def test_check_permissions_probes_create_snapshots_for_a_whole_instance() -> None:
    plan = _plan(A, data_deletable=True)
    ec2 = _ec2()
    counter = CallCounter()
    counter.attach(ec2)
    with Stubber(ec2) as stub:
        for method, params in (
            ("terminate_instances", {"InstanceIds": [A]}),
            (
                "create_snapshots",
                {"InstanceSpecification": {"InstanceId": A, "ExcludeBootVolume": False}},
            ),
        ):
            stub.add_client_error(
                method, "DryRunOperation", "would succeed", 412, {**params, "DryRun": True}
            )
        check_permissions(_work(plan, ec2))
        stub.assert_no_pending_responses()
    assert dict(counter.calls) == {"TerminateInstances": 1, "CreateSnapshots": 1}


# --- CreateSnapshot and CreateSnapshots without an idempotency token -------------------


def test_throttled_create_snapshot_is_resent_without_a_look_up() -> None:
    case = _snapshot_case()
    vol = case.vol
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        for _ in range(2):
            creates.add_client_error(
                "create_snapshot",
                "RequestLimitExceeded",
                "Request limit exceeded.",
                503,
                expected_params=_snapshot_params(vol.volume_id),
            )
        creates.add_response(
            "create_snapshot",
            {"SnapshotId": "snap-0123456789abcdef0"},
            _snapshot_params(vol.volume_id),
        )
        assert case.create() == "snap-0123456789abcdef0"
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()  # no DescribeSnapshots was made
    assert case.slept == [0.5, 1.0]


def test_create_snapshot_after_a_5xx_looks_first_and_adopts_what_it_finds() -> None:
    case = _snapshot_case()
    vol = case.vol
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        creates.add_client_error(
            "create_snapshot", "InternalError", "An internal error has occurred", 500
        )
        lookups.add_response(
            "describe_snapshots",
            _found("snap-0aaaaaaaaaaaaaaa0", vol.volume_id),
            _lookup(vol.volume_id),
        )
        assert case.create() == "snap-0aaaaaaaaaaaaaaa0"
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    assert case.slept == [1.0]


def test_create_snapshot_after_a_5xx_looks_while_describe_settles_then_resends() -> None:
    case = _snapshot_case()
    vol = case.vol
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        creates.add_client_error("create_snapshot", "Unavailable", "try again", 503)
        for _ in range(3):  # EC2 describes are eventually consistent: look three times
            lookups.add_response("describe_snapshots", {"Snapshots": []}, _lookup(vol.volume_id))
        creates.add_response("create_snapshot", {"SnapshotId": "snap-0bbbbbbbbbbbbbbb0"})
        assert case.create() == "snap-0bbbbbbbbbbbbbbb0"
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    assert case.slept == [1.0, 2.0, 4.0]


def test_create_snapshot_looks_once_more_before_giving_up_after_a_5xx() -> None:
    from awsops.errors import AwsError

    case = _snapshot_case()
    vol = case.vol
    budget = _factory().settings.max_attempts
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        for n in range(budget):
            creates.add_client_error("create_snapshot", "InternalError", "oops", 500)
            for _ in range(3 if n < budget - 1 else 1):
                answer = (
                    _found("snap-0ccccccccccccccc0", vol.volume_id)
                    if n == budget - 1
                    else {"Snapshots": []}
                )
                lookups.add_response("describe_snapshots", answer, _lookup(vol.volume_id))
        # the last send's answer was lost too, but it did make the snapshot: adopted
        assert case.create() == "snap-0ccccccccccccccc0"
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()
    with Stubber(case.ec2) as lookups, Stubber(case.once) as creates:
        for _ in range(budget):
            creates.add_client_error("create_snapshot", "InternalError", "oops", 500)
            for _ in range(3):
                lookups.add_response("describe_snapshots", {"Snapshots": []})
        with pytest.raises(AwsError) as failed:
            case.create()
        assert failed.value.code == "InternalError"
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()


def test_create_snapshot_gives_up_after_the_retry_budget() -> None:
    from awsops.errors import ThrottledError

    case = _snapshot_case()
    budget = _factory().settings.max_attempts
    with Stubber(case.once) as creates:
        for _ in range(budget):
            creates.add_client_error("create_snapshot", "RequestLimitExceeded", "slow down", 503)
        with pytest.raises(ThrottledError):
            case.create()
        creates.assert_no_pending_responses()
    assert len(case.slept) == budget - 1 and max(case.slept) == 8.0
