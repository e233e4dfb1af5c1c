"""Executor steps against exact EC2 response shapes (botocore Stubber on a real client):
batch termination as AWS does it (per-AZ refusal terminates nothing) and as moto does it
(earlier ids of a refused batch terminated anyway), the DryRun permission probes, and the
blast-radius refusal that happens before any call. moto cannot show the AWS behaviour, so
it is tested here; ``expected_params`` pins down every call that is made."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from awsops.config import ClientSettings
from awsops.decommission.executor import (
    ApplyOptions,
    Executor,
    Outcome,
    TargetWork,
)
from awsops.decommission.journal import Event, Journal, read_events, replay
from awsops.decommission.model import (
    InstanceFacts,
    Plan,
    PlanCriteria,
    PlanLimits,
    TargetPlan,
    Volume,
)
from awsops.decommission.verify import check_blast_radius, check_permissions
from awsops.errors import OperationNotPermittedError, SafetyError
from awsops.paginate import CallCounter
from awsops.session import SessionFactory

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
A, B, C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


def _facts(iid: str, deletable: bool = True) -> InstanceFacts:
    return InstanceFacts(
        instance_id=iid,
        state="stopped",
        stop_time=NOW - dt.timedelta(days=60),
        stop_source="state-transition-reason",
        launch_time=NOW - dt.timedelta(days=90),
        tags={"Name": f"name-{iid[-1]}"},
        volumes=(
            Volume(f"vol-{iid[-1]}root", "/dev/xvda", deletable, 8, "gp3"),
            Volume(f"vol-{iid[-1]}data", "/dev/sdf", False, 20, "gp2"),
        ),
        availability_zone="us-east-1a",
        instance_type="t3.micro",
        termination_protection=False,
    )


def _plan(*ids: str, examined: int | None = None, deletable: bool = True) -> Plan:
    tp = TargetPlan(
        account_id=ACCOUNT,
        region="us-east-1",
        examined=len(ids) if examined is None else examined,
        chosen=tuple(_facts(i, deletable) for i in ids),
    )
    return Plan(
        plan_id="plan-20260601T120000Z-0000unit",
        created_at=NOW,
        expires_at=NOW + dt.timedelta(hours=24),
        criteria=PlanCriteria(older_than_days=30, protect_tags=("awsops:protect",)),
        targets=(tp,),
    )


@functools.cache
def _factory() -> SessionFactory:
    return SessionFactory(region="us-east-1", static_credentials=("testing", "testing"))


@functools.cache
def _session() -> boto3.Session:
    # one session: its loader caches the EC2 model, so each fresh client is cheap
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def _ec2() -> Any:
    """A fresh client (Stubber and event hooks are per client)."""
    return _session().client("ec2", region_name="us-east-1")


def _executor(plan: Plan, **options: Any) -> Executor:
    """An executor whose journal is open (in a fresh directory), as during a run."""
    path = Path(tempfile.mkdtemp(prefix="awsops-unit-")) / "journal.jsonl"
    options.setdefault("backup", "snapshots")
    ex = Executor(plan, _factory(), ApplyOptions(**options), journal_path=path, now=lambda: NOW)
    journal = Journal(path, plan.plan_id)
    ex.run_state.state = journal.open()
    ex.run_state.journal = journal
    return ex


def _work(plan: Plan, ec2: Any) -> TargetWork:
    tp = plan.targets[0]
    return TargetWork(tp, ec2, act=list(tp.chosen))


def _terminating(*ids: str) -> dict[str, Any]:
    return {
        "TerminatingInstances": [
            {
                "InstanceId": i,
                "CurrentState": {"Code": 32, "Name": "shutting-down"},
                "PreviousState": {"Code": 80, "Name": "stopped"},
            }
            for i in ids
        ]
    }


_CODES = {"stopped": 80, "shutting-down": 32, "terminated": 48, "running": 16}


def _described(**states: str) -> dict[str, Any]:
    return {
        "Reservations": [
            {
                "ReservationId": "r-1",
                "OwnerId": ACCOUNT,
                "Instances": [
                    {"InstanceId": i, "State": {"Code": _CODES[s], "Name": s}}
                    for i, s in states.items()
                ],
            }
        ]
    }


def _describe_params(*ids: str) -> dict[str, Any]:
    return {"Filters": [{"Name": "instance-id", "Values": list(ids)}], "MaxResults": 1000}


def _not_permitted(stub: Stubber, *ids: str) -> None:
    stub.add_client_error(
        "terminate_instances",
        service_error_code="OperationNotPermitted",
        service_message=(
            f"The instance '{ids[-1]}' may not be terminated. Modify its "
            "'disableApiTermination' instance attribute and try again."
        ),
        http_status_code=400,
        expected_params={"InstanceIds": list(ids)},
    )


# --- (a) AWS: a refused batch terminates nothing ------------------------------------------


def test_refused_batch_is_described_then_retried_one_by_one_aws_behaviour() -> None:
    plan = _plan(A, B, C)
    ec2 = _ec2()
    ex = _executor(plan)
    work = _work(plan, ec2)
    with Stubber(ec2) as stub:
        _not_permitted(stub, A, B, C)  # B is protected: AWS refuses the whole batch
        stub.add_response(
            "describe_instances",
            _described(**{A: "stopped", B: "stopped", C: "stopped"}),
            _describe_params(A, B, C),
        )
        stub.add_response("terminate_instances", _terminating(A), {"InstanceIds": [A]})
        _not_permitted(stub, B)
        stub.add_response("describe_instances", _described(**{B: "stopped"}), _describe_params(B))
        stub.add_response("terminate_instances", _terminating(C), {"InstanceIds": [C]})
        accepted, failed = ex.terminations.terminate(work, [A, B, C])
        stub.assert_no_pending_responses()
    assert accepted == [A, C]
    assert list(failed) == [B]
    err = failed[B]
    assert isinstance(err, OperationNotPermittedError)
    assert err.code == "OperationNotPermitted"
    assert err.operation == "TerminateInstances" and err.account_id == ACCOUNT
    for i in (A, B, C):
        assert ex.run_state.state.of(i).terminate_requested
    assert (
        ex.run_state.state.of(A).terminate_accepted and ex.run_state.state.of(C).terminate_accepted
    )
    assert not ex.run_state.state.of(B).terminate_accepted


def test_refused_batch_is_journaled_intent_then_outcome(tmp_path: Path) -> None:
    plan = _plan(A, B, C)
    ec2 = _ec2()
    ex = _executor(plan)
    journal = Journal(tmp_path / "plan.journal.jsonl", plan.plan_id)
    ex.run_state.state = journal.open()
    ex.run_state.journal = journal
    try:
        with Stubber(ec2) as stub:
            _not_permitted(stub, A, B, C)
            stub.add_response(
                "describe_instances",
                _described(**{A: "stopped", B: "stopped", C: "stopped"}),
                _describe_params(A, B, C),
            )
            stub.add_response("terminate_instances", _terminating(A), {"InstanceIds": [A]})
            _not_permitted(stub, B)
            stub.add_response(
                "describe_instances", _described(**{B: "stopped"}), _describe_params(B)
            )
            stub.add_response("terminate_instances", _terminating(C), {"InstanceIds": [C]})
            ex.terminations.terminate(_work(plan, ec2), [A, B, C])
            stub.assert_no_pending_responses()
    finally:
        journal.close()
    events = [
        (e["event"], e.get("instance_ids") or e.get("instance_id"))
        for e in read_events(journal.path)
    ]
    assert events == [
        (Event.TERMINATE_REQUESTED, [A, B, C]),
        (Event.TERMINATE_REQUESTED, [A]),
        (Event.TERMINATE_ACCEPTED, A),
        (Event.TERMINATE_REQUESTED, [B]),
        (Event.TERMINATE_REQUESTED, [C]),
        (Event.TERMINATE_ACCEPTED, C),
    ]
    state = replay(journal.path)
    assert state.instances[A].terminate_accepted and state.instances[C].terminate_accepted
    assert state.instances[B].terminate_requested and not state.instances[B].terminate_accepted


def test_execute_reports_the_protected_instance_failed_and_the_others_terminated() -> None:
    """The whole per-target step for instances with nothing to back up."""
    plan = _plan(A, B, C, deletable=False)
    ec2 = _ec2()
    ex = _executor(plan, terminate_delay=0, terminate_max_attempts=2)
    work = _work(plan, ec2)
    with Stubber(ec2) as stub:
        # right before the batch: still stopped? (nothing to back up, so no look-up first)
        stub.add_response(
            "describe_instances",
            _described(**{A: "stopped", B: "stopped", C: "stopped"}),
            _describe_params(A, B, C),
        )
        _not_permitted(stub, A, B, C)
        stub.add_response(
            "describe_instances",
            _described(**{A: "stopped", B: "stopped", C: "stopped"}),
            _describe_params(A, B, C),
        )
        stub.add_response("terminate_instances", _terminating(A), {"InstanceIds": [A]})
        _not_permitted(stub, B)
        stub.add_response("describe_instances", _described(**{B: "stopped"}), _describe_params(B))
        stub.add_response("terminate_instances", _terminating(C), {"InstanceIds": [C]})
        # the waiter, then the final look
        stub.add_response(
            "describe_instances",
            _described(**{A: "terminated", C: "terminated"}),
            {"InstanceIds": [A, C]},
        )
        stub.add_response(
            "describe_instances",
            _described(**{A: "terminated", C: "terminated"}),
            _describe_params(A, C),
        )
        ex.execute(work)
        stub.assert_no_pending_responses()
    by_id = {r.instance_id: r for r in work.results}
    assert by_id[A].outcome == by_id[C].outcome == Outcome.TERMINATED
    assert by_id[B].outcome == Outcome.FAILED
    assert by_id[B].code == "OperationNotPermitted"
    assert "terminate failed" in by_id[B].reason and "\n" not in by_id[B].reason
    assert by_id[A].name == "name-1"


# --- (b) moto: earlier ids of a refused batch were terminated anyway ---------------------


def test_partially_applied_batch_is_accepted_without_a_second_call() -> None:
    plan = _plan(A, B, C)
    ec2 = _ec2()
    ex = _executor(plan)
    work = _work(plan, ec2)
    with Stubber(ec2) as stub:
        _not_permitted(stub, A, B, C)
        stub.add_response(
            "describe_instances",
            _described(**{A: "shutting-down", B: "stopped", C: "stopped"}),
            _describe_params(A, B, C),
        )
        # no TerminateInstances for A: the next expected call names B alone
        _not_permitted(stub, B)
        stub.add_response("describe_instances", _described(**{B: "stopped"}), _describe_params(B))
        stub.add_response("terminate_instances", _terminating(C), {"InstanceIds": [C]})
        accepted, failed = ex.terminations.terminate(work, [A, B, C])
        stub.assert_no_pending_responses()
    assert sorted(accepted) == [A, C]
    assert list(failed) == [B] and failed[B].code == "OperationNotPermitted"
    assert ex.run_state.state.of(A).terminate_accepted


def test_single_refusal_that_did_terminate_is_accepted() -> None:
    plan = _plan(A)
    ec2 = _ec2()
    ex = _executor(plan)
    with Stubber(ec2) as stub:
        stub.add_client_error(
            "terminate_instances",
            service_error_code="InternalError",
            http_status_code=500,
            expected_params={"InstanceIds": [A]},
        )
        stub.add_response(
            "describe_instances", _described(**{A: "terminated"}), _describe_params(A)
        )
        accepted, failed = ex.terminations.terminate(_work(plan, ec2), [A])
        stub.assert_no_pending_responses()
    assert accepted == [A] and failed == {}


def test_batch_that_succeeds_is_one_call() -> None:
    plan = _plan(A, B, C)
    ec2 = _ec2()
    ex = _executor(plan)
    with Stubber(ec2) as stub:
        stub.add_response("terminate_instances", _terminating(A, B, C), {"InstanceIds": [A, B, C]})
        accepted, failed = ex.terminations.terminate(_work(plan, ec2), [A, B, C])
        stub.assert_no_pending_responses()
    assert accepted == [A, B, C] and failed == {}


# --- (c) DryRun permission probes ---------------------------------------------------------


def _dry_run_ok(stub: Stubber, method: str, params: dict[str, Any]) -> None:
    stub.add_client_error(
        method,
        service_error_code="DryRunOperation",
        service_message="Request would have succeeded, but DryRun flag is set.",
        http_status_code=412,
        expected_params=params,
    )


def _counted_ec2() -> tuple[Any, CallCounter]:
    ec2 = _ec2()
    counter = CallCounter()
    counter.attach(ec2)
    return ec2, counter


def test_check_permissions_passes_on_dry_run_operation() -> None:
    plan = _plan(A, B)
    ec2, counter = _counted_ec2()
    with Stubber(ec2) as stub:
        _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
        _dry_run_ok(stub, "create_snapshot", {"VolumeId": "vol-1root", "DryRun": True})
        check_permissions(_work(plan, ec2))
        stub.assert_no_pending_responses()
    assert dict(counter.calls) == {"TerminateInstances": 1, "CreateSnapshot": 1}


def test_check_permissions_without_deletable_volumes_probes_terminate_only() -> None:
    plan = _plan(A, deletable=False)
    ec2, counter = _counted_ec2()
    with Stubber(ec2) as stub:
        _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
        check_permissions(_work(plan, ec2))
        stub.assert_no_pending_responses()
    assert dict(counter.calls) == {"TerminateInstances": 1}


def test_check_permissions_refuses_when_terminate_is_unauthorized() -> None:
    plan = _plan(A, B)
    ec2, counter = _counted_ec2()
    with Stubber(ec2) as stub:
        stub.add_client_error(
            "terminate_instances",
            service_error_code="UnauthorizedOperation",
            service_message="You are not authorized to perform this operation.",
            http_status_code=403,
            expected_params={"InstanceIds": [A], "DryRun": True},
        )
        with pytest.raises(SafetyError) as info:
            check_permissions(_work(plan, ec2))
        stub.assert_no_pending_responses()
    text = info.value.one_line()
    assert "ec2:TerminateInstances" in text and "UnauthorizedOperation" in text
    assert f"{ACCOUNT}/us-east-1" in text and "nothing was changed" in text
    assert info.value.exit_code == 3
    assert dict(counter.calls) == {"TerminateInstances": 1}  # CreateSnapshot never probed


def test_check_permissions_refuses_when_snapshot_is_unauthorized() -> None:
    plan = _plan(A)
    ec2, counter = _counted_ec2()
    with Stubber(ec2) as stub:
        _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
        stub.add_client_error(
            "create_snapshot",
            service_error_code="UnauthorizedOperation",
            http_status_code=403,
            expected_params={"VolumeId": "vol-1root", "DryRun": True},
        )
        with pytest.raises(SafetyError, match="ec2:CreateSnapshot"):
            check_permissions(_work(plan, ec2))
        stub.assert_no_pending_responses()
    assert dict(counter.calls) == {"TerminateInstances": 1, "CreateSnapshot": 1}


def test_check_permissions_refuses_a_dry_run_that_was_not_dry() -> None:
    """An endpoint that ignores DryRun and answers success must stop the apply."""
    plan = _plan(A)
    ec2 = _ec2()
    with Stubber(ec2) as stub:
        stub.add_response(
            "terminate_instances", _terminating(A), {"InstanceIds": [A], "DryRun": True}
        )
        with pytest.raises(SafetyError, match="did not answer DryRunOperation"):
            check_permissions(_work(plan, ec2))
        stub.assert_no_pending_responses()


def test_check_permissions_with_nothing_to_do_calls_nothing() -> None:
    plan = _plan(A)
    ec2, counter = _counted_ec2()
    with Stubber(ec2):
        check_permissions(TargetWork(plan.targets[0], ec2, act=[]))
    assert counter.total_calls == 0


# --- (d) blast radius ---------------------------------------------------------------------


class NoCalls:
    """A session factory that fails the test if the executor touches it."""

    settings = ClientSettings()

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the executor used the factory ({name}) before refusing")


def _run_refused(plan: Plan, **options: Any) -> SafetyError:
    ex = Executor(plan, NoCalls(), ApplyOptions(dry_run=True, **options), journal_path=None)  # type: ignore[arg-type]
    with pytest.raises(SafetyError) as info:
        ex.run(confirm=lambda _p: pytest.fail("asked to confirm"))
    return info.value


def test_max_instances_refuses_before_any_call(tmp_path: Path) -> None:
    err = _run_refused(_plan(A, B, C), max_instances=2)
    assert "3 instances" in err.one_line() and "cap of 2" in err.one_line()
    assert err.exit_code == 3


def test_plan_caps_apply_without_any_option() -> None:
    """Caps set at plan time are enforced at apply even with no option or config."""
    plan = dataclasses.replace(_plan(A, B, C), limits=PlanLimits(max_instances=2))
    err = _run_refused(plan, max_instances=None)
    assert "cap of 2" in err.one_line()
    # an apply option can lower the plan's cap, never raise it
    assert "cap of 1" in _run_refused(plan, max_instances=1).one_line()
    assert "cap of 2" in _run_refused(plan, max_instances=50).one_line()


def test_blast_radius_refusal_writes_no_journal(tmp_path: Path) -> None:
    journal = tmp_path / "plan.journal.jsonl"
    ex = Executor(_plan(A, B), NoCalls(), ApplyOptions(max_instances=1), journal)  # type: ignore[arg-type]
    with pytest.raises(SafetyError):
        ex.run()
    assert not journal.exists()


def _verified(plan: Plan, live_stopped: int) -> list[TargetWork]:
    tp = plan.targets[0]
    return [TargetWork(tp, None, act=list(tp.chosen), live_stopped=live_stopped)]


def test_max_percent_counts_the_stopped_instances_live_at_apply() -> None:
    """Seen: `examined = 10**9` in the plan got it past --max-percent 10. The share is
    taken of the stopped instances counted at apply, never of the plan's count."""
    plan = _plan(A, B, C, examined=10**9)
    with pytest.raises(SafetyError) as info:
        check_blast_radius(plan, ApplyOptions(max_percent=50), _verified(plan, live_stopped=4))
    text = info.value.one_line()
    assert "3 of the 4 stopped" in text and "cap of 50%" in text and ACCOUNT in text
    check_blast_radius(plan, ApplyOptions(max_percent=75), _verified(plan, live_stopped=4))


@pytest.mark.parametrize(
    ("options", "live"),
    [
        ({"max_instances": 3, "max_percent": None}, 3),
        ({"max_percent": 75.0}, 4),
        ({"max_percent": 100.0}, 3),
        ({"max_instances": 3, "max_percent": 75.0}, 4),
        ({"max_percent": None}, 3),
    ],
)
def test_blast_radius_limits_are_inclusive(options: dict[str, Any], live: int) -> None:
    plan = _plan(A, B, C)
    check_blast_radius(plan, ApplyOptions(**options), _verified(plan, live_stopped=live))


# --- CreateSnapshot without an idempotency token -----------------------------------------


def _snapshot_params(volume_id: str) -> dict[str, Any]:
    from botocore.stub import ANY

    return {"VolumeId": volume_id, "Description": ANY, "TagSpecifications": ANY}


def _tag_lookup(volume_id: str) -> dict[str, Any]:
    return {
        "OwnerIds": ["self"],
        "Filters": [
            {"Name": "tag:awsops:plan-id", "Values": ["plan-20260601T120000Z-0000unit"]},
            {"Name": "tag:awsops:volume-id", "Values": [volume_id]},
        ],
    }


def _found(snapshot_id: str, volume_id: str) -> dict[str, Any]:
    """A DescribeSnapshots answer holding one pending snapshot of the volume."""
    return {"Snapshots": [{"SnapshotId": snapshot_id, "VolumeId": volume_id, "State": "pending"}]}


@dataclass
class SnapshotCase:
    """An executor whose sleeps are recorded, one instance's first volume, and the two
    clients: ``ec2`` for look-ups, ``once`` (no automatic retries) for CreateSnapshot."""

    ex: Executor
    work: TargetWork
    facts: InstanceFacts
    vol: Volume
    ec2: Any
    once: Any
    slept: list[float]

    def create(self) -> str:
        return self.ex.backups.create(self.work, self.facts, self.vol, set())


def _snapshot_case() -> SnapshotCase:
    plan = _plan(A)
    tp = plan.targets[0]
    ec2, once = _ec2(), _ec2()
    ex = _executor(plan)
    slept: list[float] = []
    ex.run_state.sleep = slept.append
    ex.run_state.jitter = lambda: 1.0
    work = TargetWork(tp, ec2, ec2_once=once, act=list(tp.chosen))
    facts = tp.chosen[0]
    return SnapshotCase(ex, work, facts, facts.volumes[0], ec2, once, slept)


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
            _tag_lookup(vol.volume_id),
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
            lookups.add_response(
                "describe_snapshots", {"Snapshots": []}, _tag_lookup(vol.volume_id)
            )
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
                lookups.add_response("describe_snapshots", answer, _tag_lookup(vol.volume_id))
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


def test_max_percent_holds_for_each_target_of_a_plan() -> None:
    """Several targets: each one's share is checked against its own live stopped count;
    the one over the cap is named, whichever comes first."""
    east = TargetPlan(ACCOUNT, "us-east-1", examined=4, chosen=(_facts(A),))
    west = TargetPlan(ACCOUNT, "eu-west-1", examined=4, chosen=(_facts(B), _facts(C)))
    plan = dataclasses.replace(_plan(A), targets=(east, west))
    works = [
        TargetWork(east, None, act=[_facts(A)], live_stopped=4),  # 25%
        TargetWork(west, None, act=[_facts(B), _facts(C)], live_stopped=3),  # 67%
    ]
    check_blast_radius(plan, ApplyOptions(max_percent=70), works)
    with pytest.raises(SafetyError) as info:
        check_blast_radius(plan, ApplyOptions(max_percent=50), works)
    assert "2 of the 3 stopped instances in 123456789012/eu-west-1" in info.value.one_line()
    # an instance an earlier run terminated (C) still counts, in share and in total
    works[1] = TargetWork(west, None, act=[_facts(B)], resumed=[C], live_stopped=2)
    with pytest.raises(SafetyError, match="2 of the 3 stopped"):
        check_blast_radius(plan, ApplyOptions(max_percent=60), works)
    with pytest.raises(SafetyError, match="3 instances, more than the cap of 2"):
        check_blast_radius(plan, ApplyOptions(max_percent=None, max_instances=2), works)
