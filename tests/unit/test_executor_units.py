"""Executor steps against exact EC2 response shapes (botocore Stubber on a real client):
batch termination as AWS does it (per-AZ refusal terminates nothing) and as moto does it
(earlier ids of a refused batch terminated anyway), the DryRun permission probes, and the
blast-radius refusal that happens before any call. moto cannot show the AWS behaviour, so
it is tested here; ``expected_params`` pins down every call that is made."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.unit.apply_stubs import terminating
from tests.unit.executor_stubs import (
    ACCOUNT,
    A,
    B,
    C,
    _ec2,
    _executor,
    _facts,
    _plan,
    _work,
)

from awsops.config import ClientSettings
from awsops.decommission.executor import (
    ApplyOptions,
    Executor,
    Outcome,
    TargetWork,
)
from awsops.decommission.journal import Event, Journal, read_events, replay
from awsops.decommission.model import (
    Plan,
    PlanLimits,
    TargetPlan,
)
from awsops.decommission.verify import check_blast_radius, check_permissions
from awsops.errors import OperationNotPermittedError, SafetyError
from awsops.paginate import CallCounter

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
        stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
        _not_permitted(stub, B)  # refused: nothing to look for, no describe
        stub.add_response("terminate_instances", terminating(C), {"InstanceIds": [C]})
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
            stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
            _not_permitted(stub, B)  # refused: nothing to look for, no describe
            stub.add_response("terminate_instances", terminating(C), {"InstanceIds": [C]})
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
        stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
        _not_permitted(stub, B)  # refused: nothing to look for, no describe
        stub.add_response("terminate_instances", terminating(C), {"InstanceIds": [C]})
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
        _not_permitted(stub, B)  # refused: nothing to look for, no describe
        stub.add_response("terminate_instances", terminating(C), {"InstanceIds": [C]})
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


def test_a_lost_answer_is_looked_at_before_anything_is_sent_again() -> None:
    """A 500 on the batch (EC2 terminated A, the answer was lost): A is accepted from the
    describe; B, still stopped, is sent alone; its answer is lost too, so it is described
    (now shutting down) and not sent a third time. The batch goes through the client
    without automatic retries: botocore would have resent A."""
    plan = _plan(A, B)
    ec2, once = _ec2(), _ec2()
    ex = _executor(plan)
    slept: list[float] = []
    ex.run_state.sleep = slept.append
    work = TargetWork(plan.targets[0], ec2, ec2_once=once, act=list(plan.targets[0].chosen))
    with Stubber(ec2) as looks, Stubber(once) as sends:
        sends.add_client_error("terminate_instances", "InternalError", "oops", 500)
        looks.add_response(
            "describe_instances",
            _described(**{A: "shutting-down", B: "stopped"}),
            _describe_params(A, B),
        )
        sends.add_client_error(
            "terminate_instances",
            "InternalError",
            "oops",
            500,
            expected_params={"InstanceIds": [B]},
        )
        looks.add_response(
            "describe_instances", _described(**{B: "shutting-down"}), _describe_params(B)
        )
        accepted, failed = ex.terminations.terminate(work, [A, B])
        sends.assert_no_pending_responses()
        looks.assert_no_pending_responses()
    assert sorted(accepted) == [A, B] and failed == {}
    assert slept == [1.0, 1.0]  # a pause before each look


def test_a_refused_single_instance_is_not_sent_again() -> None:
    """A batch of one refused for good (OperationNotPermitted): described once (it may
    have been terminated), still stopped, so it fails; no second TerminateInstances."""
    plan = _plan(A)
    ec2 = _ec2()
    ex = _executor(plan)
    with Stubber(ec2) as stub:
        _not_permitted(stub, A)
        stub.add_response("describe_instances", _described(**{A: "stopped"}), _describe_params(A))
        accepted, failed = ex.terminations.terminate(_work(plan, ec2), [A])
        stub.assert_no_pending_responses()
    assert accepted == [] and list(failed) == [A]
    assert failed[A].code == "OperationNotPermitted"


def test_batch_that_succeeds_is_one_call() -> None:
    plan = _plan(A, B, C)
    ec2 = _ec2()
    ex = _executor(plan)
    with Stubber(ec2) as stub:
        stub.add_response("terminate_instances", terminating(A, B, C), {"InstanceIds": [A, B, C]})
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
            "terminate_instances", terminating(A), {"InstanceIds": [A], "DryRun": True}
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
