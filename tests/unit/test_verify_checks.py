"""apply's read-only refusals, to the letter: the oldest plan accepted, the caps counted
on what verification found (not on what the plan says), the DryRun probes of each
backup mode, and drift in words."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.unit.apply_stubs import (
    ACCOUNT,
    CRITERIA,
    NOW,
    REGION,
    Factory,
    Stubs,
    by_ids,
    client,
    described,
    facts,
    plan_of,
    stubbed_target,
)

from awsops.decommission import verify
from awsops.decommission.model import InstanceFacts, PlanCriteria
from awsops.decommission.outcomes import ApplyOptions, TargetWork
from awsops.errors import AwsError, PlanError, SafetyError

A, B, C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


# --- plan age ------------------------------------------------------------------------------


def test_a_plan_older_than_apply_accepts_is_refused_and_one_at_the_limit_is_not() -> None:
    plan = plan_of(facts(described(A)))
    limit = ApplyOptions(max_plan_age_hours=24)
    verify.check_plan_age(plan, ApplyOptions(), NOW + dt.timedelta(days=400))  # no limit
    verify.check_plan_age(plan, limit, NOW + dt.timedelta(hours=24))
    with pytest.raises(PlanError) as refused:
        verify.check_plan_age(plan, limit, NOW + dt.timedelta(hours=24, minutes=6))
    assert refused.value.one_line() == (
        f"plan {plan.plan_id} was made 24.1 h ago, more than plan_ttl_hours 24: make a new plan"
    )
    with pytest.raises(PlanError, match=r"was made 1000\.0 h ago"):  # hours of 3,600 s
        verify.check_plan_age(plan, limit, NOW + dt.timedelta(hours=1000))


def test_a_plan_is_applied_only_where_it_was_made() -> None:
    from awsops.decommission.model import EndpointKind, PlanEndpoint

    aws, sandbox = PlanEndpoint(EndpointKind.AWS), PlanEndpoint(EndpointKind.SANDBOX)
    here = PlanEndpoint(EndpointKind.CUSTOM, "http://127.0.0.1:5000")
    there = PlanEndpoint(EndpointKind.CUSTOM, "http://127.0.0.1:5001")
    for made, now in ((aws, aws), (sandbox, sandbox), (here, here)):
        verify.check_endpoint(dataclasses.replace(plan_of(), endpoint=made), now, "hint")
    for made, now in ((aws, sandbox), (sandbox, aws), (here, there), (here, aws)):
        plan = dataclasses.replace(plan_of(), endpoint=made)
        with pytest.raises(PlanError) as refused:
            verify.check_endpoint(plan, now, "awsops apply --sandbox plan.json")
        assert refused.value.one_line() == (
            f"plan {plan.plan_id} was made against {made.describe()}, not {now.describe()}: "
            "apply it there with: awsops apply --sandbox plan.json"
        )


# --- caps ----------------------------------------------------------------------------------


def _work(*acting: str, resumed: tuple[str, ...] = (), live: int | None = None) -> TargetWork:
    plan = plan_of(*(facts(described(i)) for i in (A, B, C)))
    chosen = {f.instance_id: f for f in plan.targets[0].chosen}
    return TargetWork(
        plan.targets[0],
        None,
        act=[chosen[i] for i in acting],
        resumed=list(resumed),
        live_stopped=live,
    )


def test_the_instance_cap_counts_what_verification_left_to_do() -> None:
    """The plan chose three; verification left one to act on: a cap of two holds."""
    plan = plan_of(*(facts(described(i)) for i in (A, B, C)))
    options = ApplyOptions(max_instances=2, max_percent=None)
    with pytest.raises(SafetyError) as refused:
        verify.check_blast_radius(plan, options)
    assert refused.value.one_line() == (
        "plan terminates 3 instances, more than the cap of 2 (--max-instances, "
        "max_instances in the config or the plan's limits)"
    )
    verify.check_blast_radius(plan, options, [_work(A)])


@pytest.mark.parametrize(
    ("work", "cap", "refusal"),
    [
        # one of one stopped instance: 100%
        (_work(A, live=1), 60, "1 of the 1 stopped"),
        # an earlier run's termination counts among the stopped, even with none counted
        (_work(resumed=(B,), live=None), 60, "1 of the 1 stopped"),
        (_work(A, resumed=(B,), live=2), 60, "2 of the 3 stopped"),
        (_work(A, live=2), 50, None),
    ],
)
def test_the_percent_cap_counts_live_stopped_instances_and_earlier_terminations(
    work: TargetWork, cap: float, refusal: str | None
) -> None:
    plan = plan_of(*(facts(described(i)) for i in (A, B, C)))
    options = ApplyOptions(max_percent=cap)
    if refusal is None:
        verify.check_blast_radius(plan, options, [work])
        return
    with pytest.raises(SafetyError) as refused:
        verify.check_blast_radius(plan, options, [work])
    assert refused.value.one_line() == (
        f"plan terminates {refusal} instances in {ACCOUNT}/{REGION}, more than the cap of "
        f"{cap:g}% (--max-percent, max_percent in the config or the plan's limits)"
    )


# --- DryRun probes -------------------------------------------------------------------------


def _dry_run_ok(stub: Stubber, method: str, params: dict[str, Any]) -> None:
    stub.add_client_error(
        method,
        service_error_code="DryRunOperation",
        service_message="Request would have succeeded, but DryRun flag is set.",
        http_status_code=412,
        expected_params=params,
    )


def test_image_backups_probe_create_image_of_the_first_instance() -> None:
    plan = plan_of(facts(described(A)), facts(described(B)))
    ec2 = client("ec2")
    work = TargetWork(plan.targets[0], ec2, act=list(plan.targets[0].chosen))
    with Stubber(ec2) as stub:
        _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
        _dry_run_ok(
            stub,
            "create_image",
            {"InstanceId": A, "Name": f"awsops-probe-{A}", "NoReboot": True, "DryRun": True},
        )
        verify.check_permissions(work, "image")
        stub.assert_no_pending_responses()
    with Stubber(ec2) as stub:  # no backup: TerminateInstances only
        _dry_run_ok(stub, "terminate_instances", {"InstanceIds": [A], "DryRun": True})
        verify.check_permissions(work, "none")
        stub.assert_no_pending_responses()


# --- drift in words ------------------------------------------------------------------------


def test_a_cloudtrail_dated_stop_without_any_reason_is_not_drift() -> None:
    planned = facts(
        described(A, reason=""), state_reason=None, stop_time=NOW, stop_source="cloudtrail"
    )
    assert verify.differences(planned, dataclasses.replace(planned, stop_time=None)) == []
    stopped_again = dataclasses.replace(planned, state_reason="Server.ScheduledStop")
    assert verify.differences(planned, stopped_again) == [
        "stopped again since the plan (StateTransitionReason changed)"
    ]
    assert verify.differences(stopped_again, planned) == [
        "stopped again since the plan (StateTransitionReason changed)"
    ]


def test_every_changed_tag_is_named() -> None:
    planned = facts(described(A, tags={"Name": "a", "team": "x"}))
    now = facts(described(A, tags={"Name": "b", "owner": "y", "team": "x"}))
    assert verify.differences(planned, now) == ["tags changed: Name, owner"]


# --- verification: the account's own lists, errors named with their region -----------------


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    yield from stubbed_target(monkeypatch, Factory())


@pytest.mark.parametrize("where", ["criteria", "policy"])
def test_an_account_denied_by_the_plan_or_by_apply_is_never_acted_on(
    stubs: Stubs, where: str
) -> None:
    inst = described(A)
    stubs.describe(inst, ids=(A,))
    stubs.enrich(inst)
    denied = dataclasses.replace(CRITERIA, account_denylist=(ACCOUNT,))
    lists: dict[str, PlanCriteria] = {"criteria": CRITERIA, "policy": CRITERIA, where: denied}
    tp = plan_of(facts(inst)).targets[0]
    work = verify.verify_target(
        tp,
        stubs.factory,
        verify.JournalState(),
        lists["criteria"],
        lists["policy"],
        NOW,  # type: ignore[arg-type]
    )
    assert work.act == []
    assert [r.reason for r in work.results] == [
        f"now account-excluded: account {ACCOUNT} is in account_denylist"
    ]


def _fails(stub: Stubber, method: str, params: dict[str, Any]) -> None:
    stub.add_client_error(method, "InternalError", "oops", 500, expected_params=params)


@pytest.mark.parametrize("step", ["describe", "auto-scaling", "count"])
def test_a_failed_look_up_names_the_region(stubs: Stubs, step: str) -> None:
    inst = described(A)
    planned: list[InstanceFacts] = [facts(inst)]
    if step == "describe":
        _fails(stubs.ec2_stub, "describe_instances", by_ids(A))
    else:
        stubs.describe(inst, ids=(A,))
        stubs.ec2_stub.add_response(
            "describe_instance_attribute",
            {"InstanceId": A, "DisableApiTermination": {"Value": False}},
            {"InstanceId": A, "Attribute": "disableApiTermination"},
        )
    if step == "auto-scaling":
        _fails(stubs.asg_stub, "describe_auto_scaling_instances", {"InstanceIds": [A]})
    if step == "count":
        stubs.asg_stub.add_response(
            "describe_auto_scaling_instances", {"AutoScalingInstances": []}, {"InstanceIds": [A]}
        )
        vids = [m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]]
        stubs.ec2_stub.add_response(
            "describe_volumes",
            {"Volumes": []},
            {"Filters": [{"Name": "volume-id", "Values": vids}]},
        )
        _fails(
            stubs.ec2_stub,
            "describe_instances",
            {
                "Filters": [{"Name": "instance-state-name", "Values": ["stopped"]}],
                "MaxResults": 1000,
            },
        )
    tp = plan_of(*planned).targets[0]
    with pytest.raises(AwsError) as failed:
        verify.verify_target(
            tp,
            stubs.factory,
            verify.JournalState(),
            CRITERIA,
            CRITERIA,
            NOW,
            count_stopped=True,  # type: ignore[arg-type]
        )
    assert (failed.value.code, failed.value.region) == ("InternalError", REGION)
