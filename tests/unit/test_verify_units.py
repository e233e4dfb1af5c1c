"""Re-verification at apply (``verify_target``) against exact EC2 and Auto Scaling
answers (botocore Stubber): the account the credentials reach, drift since the plan,
instances an earlier run terminated, and the rules decided again, live, under both the
plan's criteria and apply's own policy. ``expected_params`` pins down every call."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest
from tests.unit.apply_stubs import (
    ACCOUNT,
    CRITERIA,
    NOW,
    REGION,
    Factory,
    Stubs,
    described,
    facts,
    plan_of,
    stubbed_target,
)

from awsops.config import Target
from awsops.decommission import verify
from awsops.decommission.journal import InstanceRecord, JournalState
from awsops.decommission.model import InstanceFacts, PlanCriteria
from awsops.decommission.outcomes import Outcome, TargetWork
from awsops.errors import PlanError

A, B, C, D, E = (f"i-0{c * 15}{n}" for n, c in enumerate("abcde", 1))


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch, factory: Factory) -> Iterator[Stubs]:
    yield from stubbed_target(monkeypatch, factory)


def _run(
    stubs: Stubs,
    *planned: InstanceFacts,
    factory: Factory | None = None,
    journal: JournalState | None = None,
    criteria: PlanCriteria = CRITERIA,
    policy: PlanCriteria = CRITERIA,
    count_stopped: bool = False,
) -> TargetWork:
    tp = plan_of(*planned).targets[0]
    args = (tp, factory or stubs.factory, journal or JournalState(), criteria, policy, NOW)
    if count_stopped:
        return verify.verify_target(*args, count_stopped=True)  # type: ignore[arg-type]
    return verify.verify_target(*args)  # type: ignore[arg-type]


def _reasons(work: TargetWork) -> dict[str, tuple[str, str]]:
    return {r.instance_id: (r.outcome, r.reason) for r in work.results}


# --- the account ---------------------------------------------------------------------------


def test_credentials_that_reach_another_account_are_refused_before_any_ec2_call(
    stubs: Stubs,
) -> None:
    inst = described(A)
    other = Factory(account="999999999999")
    with pytest.raises(PlanError) as refused:
        _run(stubs, facts(inst), factory=other)
    assert refused.value.one_line() == (
        f"credentials for {ACCOUNT}/{REGION} reach account 999999999999, but the plan "
        f"was made for {ACCOUNT}"
    )
    assert other.targets == [Target(region=REGION, account_id=ACCOUNT)]


def test_the_plan_entry_is_reached_as_it_was_planned() -> None:
    tp = dataclasses.replace(
        plan_of(facts(described(A))).targets[0],
        role_arn="arn:aws:iam::123456789012:role/ops",
        external_id="ext-1",
        name="prod",
        profile="ops",
    )
    assert verify.target_of(tp) == Target(
        region=REGION,
        account_id=ACCOUNT,
        role_arn="arn:aws:iam::123456789012:role/ops",
        external_id="ext-1",
        name="prod",
        profile="ops",
    )


# --- unchanged instances, decided again ---------------------------------------------------


def test_an_unchanged_instance_that_still_passes_every_rule_is_acted_on(stubs: Stubs) -> None:
    inst = described(A)
    stubs.describe(inst, ids=(A,))
    stubs.enrich(inst)
    work = _run(stubs, facts(inst))
    assert work.results == [] and work.resumed == []
    (acted,) = work.act
    assert acted.instance_id == A and acted.termination_protection is False
    assert {v.volume_id: v.size_gib for v in acted.volumes} == {
        f"vol-{A[-4:]}root": 8,
        f"vol-{A[-4:]}data": 8,
    }
    assert work.described == {A: inst}
    assert work.ec2 is stubs.ec2 and work.ec2_once is stubs.ec2
    # the second EC2 client never retries on its own (for calls that are not idempotent)
    assert [s.max_attempts if s else None for s in stubs.settings] == [None, 1, None]
    assert work.live_stopped is None


def test_protection_turned_on_since_the_plan_keeps_the_instance(stubs: Stubs) -> None:
    inst = described(A)
    stubs.describe(inst, ids=(A,))
    stubs.enrich(inst, protected=[A])
    work = _run(stubs, facts(inst))
    assert work.act == []
    assert _reasons(work) == {
        A: (Outcome.SKIPPED, "now termination-protection: DisableApiTermination is true")
    }


def test_an_auto_scaling_group_joined_since_the_plan_keeps_the_instance(stubs: Stubs) -> None:
    inst = described(A)
    stubs.describe(inst, ids=(A,))
    stubs.enrich(inst, groups={A: "web"})
    work = _run(stubs, facts(inst))
    assert work.act == []
    assert _reasons(work) == {A: (Outcome.SKIPPED, "now auto-scaling-group: group web")}


@pytest.mark.parametrize(
    ("criteria", "policy"),
    [
        (CRITERIA, dataclasses.replace(CRITERIA, older_than_days=90)),
        (dataclasses.replace(CRITERIA, older_than_days=90), CRITERIA),
    ],
    ids=["apply-policy", "plan-criteria"],
)
def test_both_the_plan_criteria_and_apply_policy_must_choose_the_instance(
    stubs: Stubs, criteria: PlanCriteria, policy: PlanCriteria
) -> None:
    inst = described(A)
    stubs.describe(inst, ids=(A,))
    stubs.enrich(inst)
    work = _run(stubs, facts(inst), criteria=criteria, policy=policy)
    assert work.act == []
    assert _reasons(work) == {
        A: (Outcome.SKIPPED, "now stopped-too-recently: stopped 60.0 days ago (< 90)")
    }


def test_live_stopped_instances_are_counted_only_when_asked(stubs: Stubs) -> None:
    inst = described(A)
    stubs.describe(inst, ids=(A,))
    stubs.enrich(inst)
    stubs.stopped(inst, described(B), described(C))
    work = _run(stubs, facts(inst), count_stopped=True)
    assert work.live_stopped == 3 and [f.instance_id for f in work.act] == [A]


# --- drift and earlier runs ---------------------------------------------------------------


def _journal(**records: InstanceRecord) -> JournalState:
    return JournalState(instances=dict(records))


def test_instances_an_earlier_run_terminated_are_resumed_and_others_gone_are_drift(
    stubs: Stubs,
) -> None:
    """A and B were sent to TerminateInstances by an earlier run (A is still shutting
    down, B is gone from describe), E was seen terminated; C and D went the same way
    without this plan: drift, never acted on."""
    planned = [facts(described(i)) for i in (A, B, C, D, E)]
    stubs.describe(
        described(A, "shutting-down"),
        described(C, "terminated"),
        described(E, "terminated"),
        ids=(A, B, C, D, E),
    )
    journal = _journal(
        **{
            A: InstanceRecord(terminate_requested=True),
            B: InstanceRecord(terminate_requested=True),
            E: InstanceRecord(terminated=True),
        }
    )
    work = _run(stubs, *planned, journal=journal)
    assert work.resumed == [A, B, E]
    assert work.act == []
    assert _reasons(work) == {
        C: (Outcome.SKIPPED, "drift: terminated by someone else since the plan"),
        D: (Outcome.SKIPPED, "drift: instance no longer exists"),
    }


def test_an_instance_that_changed_since_the_plan_is_skipped_saying_what_changed(
    stubs: Stubs,
) -> None:
    started = described(A, "running", reason="")
    tagged = described(B, tags={"Name": f"name-{B}", "owner": "data"})
    kept = described(C, volumes=((f"vol-{C[-4:]}root", "/dev/xvda", False),))
    restarted = described(D, reason="User initiated (2026-04-20 12:00:00 GMT)")
    stubs.describe(started, tagged, kept, restarted, ids=(A, B, C, D))
    planned = [facts(described(i)) for i in (A, B, C, D)]
    work = _run(stubs, *planned)
    assert work.act == [] and work.resumed == []
    assert _reasons(work) == {
        A: (
            Outcome.SKIPPED,
            "drift: state stopped -> running; stop time changed (restarted and stopped again?)",
        ),
        B: (Outcome.SKIPPED, "drift: tags changed: owner"),
        C: (Outcome.SKIPPED, "drift: attached volumes or DeleteOnTermination changed"),
        D: (Outcome.SKIPPED, "drift: stop time changed (restarted and stopped again?)"),
    }
    assert set(work.described) == {A, B, C, D}


def test_a_stop_dated_by_cloudtrail_stands_while_the_instance_was_not_stopped_again(
    stubs: Stubs,
) -> None:
    """The stop time of A and B came from CloudTrail (their StateTransitionReason has no
    date): A's reason is unchanged, so its planned stop time is the one decided on; B's
    changed (a new stop), so it is drift."""
    stop = NOW - dt.timedelta(days=45)
    same = described(A, reason="Client.UserInitiatedShutdown")
    again = described(B, reason="Server.ScheduledStop")
    planned = [
        facts(
            described(i, reason="Client.UserInitiatedShutdown"),
            stop_time=stop,
            stop_source="cloudtrail",
        )
        for i in (A, B)
    ]
    stubs.describe(same, again, ids=(A, B))
    stubs.enrich(same)
    work = _run(stubs, *planned)
    assert [(f.instance_id, f.stop_time, f.stop_source) for f in work.act] == [
        (A, stop, "cloudtrail")
    ]
    assert _reasons(work) == {
        B: (Outcome.SKIPPED, "drift: stopped again since the plan (StateTransitionReason changed)")
    }
