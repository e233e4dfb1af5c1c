"""The read-only half of apply: blast radius, re-verification against reality, and
EC2's server-side DryRun permission check. Nothing here changes anything in AWS."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from awsops import ec2ops
from awsops.clients import make_client
from awsops.config import Target
from awsops.decommission import inspect
from awsops.decommission.journal import JournalState
from awsops.decommission.model import InstanceFacts, Plan, PlanCriteria, TargetPlan
from awsops.decommission.outcomes import ApplyOptions, Outcome, TargetWork
from awsops.decommission.rules import decide
from awsops.errors import PlanError, SafetyError
from awsops.session import SessionFactory

TERMINATING = ("shutting-down", "terminated")


def target_of(tp: TargetPlan) -> Target:
    """The target a plan entry was made for (same account, role and region)."""
    return Target(
        region=tp.region,
        account_id=tp.account_id,
        role_arn=tp.role_arn,
        external_id=tp.external_id,
        name=tp.name,
    )


def check_blast_radius(plan: Plan, options: ApplyOptions) -> None:
    """Refuse, before any API call, a plan that exceeds the limits."""
    total = len(plan.chosen)
    if options.max_instances is not None and total > options.max_instances:
        raise SafetyError(
            f"plan terminates {total} instances, more than --max-instances {options.max_instances}"
        )
    if options.max_percent is not None:
        for tp in plan.targets:
            if tp.examined and 100.0 * len(tp.chosen) / tp.examined > options.max_percent:
                raise SafetyError(
                    f"plan terminates {len(tp.chosen)} of {tp.examined} stopped instances "
                    f"in {tp.label}, more than --max-percent {options.max_percent:g}"
                )


def _volume_key(facts: InstanceFacts) -> list[tuple[str, str, bool]]:
    return sorted((v.volume_id, v.device, v.delete_on_termination) for v in facts.volumes)


def differences(planned: InstanceFacts, now: InstanceFacts) -> list[str]:
    """What changed between plan and reality, in words (empty: still matches)."""
    diffs = []
    if now.state != planned.state:
        diffs.append(f"state {planned.state} -> {now.state}")
    if planned.stop_source != "cloudtrail" and now.stop_time != planned.stop_time:
        diffs.append("stop time changed (restarted and stopped again?)")
    if planned.stop_source == "cloudtrail" and now.stop_time is not None:
        diffs.append("stopped again since the plan")
    if dict(now.tags) != dict(planned.tags):
        changed = sorted(set(now.tags.items()) ^ set(planned.tags.items()))
        diffs.append("tags changed: " + ", ".join(k for k, _ in changed))
    if _volume_key(now) != _volume_key(planned):
        diffs.append("attached volumes or DeleteOnTermination changed")
    return diffs


def verify_target(
    tp: TargetPlan,
    factory: SessionFactory,
    journal: JournalState,
    criteria: PlanCriteria,
    now: dt.datetime,
) -> TargetWork:
    """Describe every planned instance again; keep those that still match the plan and
    still pass every rule. Instances an earlier run already terminated are ``resumed``."""
    session = factory.for_target(target_of(tp))
    account = factory.account_id(session)
    if account != tp.account_id:
        raise PlanError(
            f"credentials for {tp.label} reach account {account}, but the plan was made "
            f"for {tp.account_id}"
        )
    ec2 = make_client(session, "ec2", tp.region, factory.settings)
    once = make_client(
        session, "ec2", tp.region, dataclasses.replace(factory.settings, max_attempts=1)
    )
    work = TargetWork(tp, ec2, ec2_once=once)
    current = inspect.describe_by_ids(ec2, tp.region, [f.instance_id for f in tp.chosen])
    matching: list[InstanceFacts] = []
    for planned in tp.chosen:
        rec = journal.instances.get(planned.instance_id)
        requested = rec is not None and (rec.terminate_requested or rec.terminated)
        inst = current.get(planned.instance_id)
        if inst is None:
            if requested:  # terminated by an earlier run and already gone from describe
                work.resumed.append(planned.instance_id)
            else:
                work.result(planned, Outcome.SKIPPED, "drift: instance no longer exists")
            continue
        state = inst["State"]["Name"]
        if state in TERMINATING:
            if requested:
                work.resumed.append(planned.instance_id)
            else:
                work.result(
                    planned, Outcome.SKIPPED, f"drift: {state} by someone else since the plan"
                )
            continue
        now_facts = inspect.facts_from_instance(inst)
        if planned.stop_source == "cloudtrail" and now_facts.stop_time is None:
            now_facts = dataclasses.replace(
                now_facts, stop_time=planned.stop_time, stop_source=planned.stop_source
            )
        diffs = differences(planned, now_facts)
        if diffs:
            work.result(planned, Outcome.SKIPPED, "drift: " + "; ".join(diffs))
            continue
        matching.append(now_facts)
    if matching:
        asg = make_client(session, "autoscaling", tp.region, factory.settings)
        for facts in inspect.enrich(ec2, asg, tp.region, matching):
            decision = decide(facts, tp.account_id, criteria, now)
            if decision.terminate:
                work.act.append(facts)
            else:
                work.result(facts, Outcome.SKIPPED, f"now {decision.reason}: {decision.detail}")
    return work


def check_permissions(work: TargetWork) -> None:
    """EC2's server-side ``DryRun=True`` for TerminateInstances and CreateSnapshot;
    a refusal is a SafetyError before anything changed."""
    if not work.act:
        return
    probes: list[tuple[str, dict[str, Any]]] = [
        ("terminate_instances", {"InstanceIds": [work.act[0].instance_id]})
    ]
    volume = next((v for f in work.act for v in f.deletable_volumes), None)
    if volume is not None:
        probes.append(("create_snapshot", {"VolumeId": volume.volume_id}))
    for method, params in probes:
        check = ec2ops.check_permissions(work.ec2, method, params)
        if not check.allowed:
            raise SafetyError(
                f"not authorized to ec2:{check.operation} in {work.plan.account_id}/"
                f"{work.plan.region} ({check.code}); nothing was changed"
            )
