"""The read-only half of apply: blast radius, re-verification against reality, and
EC2's server-side DryRun permission check. Nothing here changes anything in AWS."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from awsops import ec2ops
from awsops.clients import TargetClients
from awsops.config import Target
from awsops.decommission import inspect
from awsops.decommission.backup import one_call
from awsops.decommission.journal import JournalState
from awsops.decommission.model import (
    EndpointKind,
    InstanceFacts,
    Plan,
    PlanCriteria,
    PlanEndpoint,
    TargetPlan,
)
from awsops.decommission.outcomes import ApplyOptions, BackupMode, Outcome, TargetWork
from awsops.decommission.rules import decide
from awsops.decommission.terminate import TERMINATING
from awsops.errors import PlanError, SafetyError
from awsops.session import SessionFactory


def target_of(tp: TargetPlan) -> Target:
    """The target a plan entry was made for, reached the same way (profile, role,
    external id) and in the same region."""
    return Target(
        region=tp.region,
        account_id=tp.account_id,
        role_arn=tp.role_arn,
        external_id=tp.external_id,
        name=tp.name,
        profile=tp.profile,
    )


def check_endpoint(plan: Plan, current: PlanEndpoint, hint: str) -> None:
    """Refuse to apply a plan where it was not made (sandbox vs AWS vs another endpoint);
    ``hint`` is the command that would apply it where it was made."""
    same = plan.endpoint.kind == current.kind and (
        plan.endpoint.kind != EndpointKind.CUSTOM or plan.endpoint.url == current.url
    )
    if not same:
        raise PlanError(
            f"plan {plan.plan_id} was made against {plan.endpoint.describe()}, not "
            f"{current.describe()}: apply it there with: {hint}"
        )


def check_plan_age(plan: Plan, options: ApplyOptions, now: dt.datetime) -> None:
    """Refuse a plan older than apply's own limit (the config's ``plan_ttl_hours``)."""
    limit = options.max_plan_age_hours
    if limit is not None and now - plan.created_at > dt.timedelta(hours=limit):
        age = (now - plan.created_at).total_seconds() / 3600.0
        raise PlanError(
            f"plan {plan.plan_id} was made {age:.1f} h ago, more than plan_ttl_hours "
            f"{limit:g}: make a new plan"
        )


def check_blast_radius(
    plan: Plan, options: ApplyOptions, works: Sequence[TargetWork] | None = None
) -> None:
    """Refuse a plan that exceeds the caps (the lower of the plan's and apply's).

    Without ``works`` (before any API call) only the planned count is checked; with them
    (after verification) the instances to terminate now, and per target the share of
    the stopped instances *live at apply* (a plan's own counts are not trusted)."""
    max_instances, max_percent = options.limits(plan)
    total = len(plan.chosen) if works is None else sum(len(w.act) + len(w.resumed) for w in works)
    if max_instances is not None and total > max_instances:
        raise SafetyError(
            f"plan terminates {total} instances, more than the cap of {max_instances} "
            "(--max-instances, max_instances in the config or the plan's limits)"
        )
    if max_percent is None or works is None:
        return
    for w in works:
        n = len(w.act) + len(w.resumed)
        stopped = (w.live_stopped or 0) + len(w.resumed)
        if n and 100.0 * n / max(stopped, 1) > max_percent:
            raise SafetyError(
                f"plan terminates {n} of the {stopped} stopped instances in "
                f"{w.plan.label}, more than the cap of {max_percent:g}% (--max-percent, "
                "max_percent in the config or the plan's limits)"
            )


def _volume_key(facts: InstanceFacts) -> list[tuple[str, str, bool]]:
    return sorted((v.volume_id, v.device, v.delete_on_termination) for v in facts.volumes)


def differences(planned: InstanceFacts, now: InstanceFacts) -> list[str]:
    """What changed between plan and reality, in words (empty: still matches).

    A stop time that came from CloudTrail is not in StateTransitionReason, so for those
    instances a restart shows as a changed StateTransitionReason (a new stop writes a
    new one), not as a different parsed time."""
    diffs = []
    if now.state != planned.state:
        diffs.append(f"state {planned.state} -> {now.state}")
    if planned.stop_source == "cloudtrail":
        if (now.state_reason or "") != (planned.state_reason or ""):
            diffs.append("stopped again since the plan (StateTransitionReason changed)")
    elif now.stop_time != planned.stop_time:
        diffs.append("stop time changed (restarted and stopped again?)")
    if dict(now.tags) != dict(planned.tags):
        changed = {k for k, _ in set(now.tags.items()) ^ set(planned.tags.items())}
        diffs.append("tags changed: " + ", ".join(sorted(changed)))
    if _volume_key(now) != _volume_key(planned):
        diffs.append("attached volumes or DeleteOnTermination changed")
    return diffs


def verify_target(
    tp: TargetPlan,
    factory: SessionFactory,
    journal: JournalState,
    criteria: PlanCriteria,
    policy: PlanCriteria,
    now: dt.datetime,
    count_stopped: bool = False,
) -> TargetWork:
    """Describe every planned instance again; keep those that still match the plan and
    pass every rule of both the plan's ``criteria`` and apply's own ``policy``.
    Instances an earlier run already terminated are ``resumed``. With
    ``count_stopped``, also count the target's stopped instances now."""
    session = factory.for_target(target_of(tp))
    account = factory.account_id(session)
    if account != tp.account_id:
        raise PlanError(
            f"credentials for {tp.label} reach account {account}, but the plan was made "
            f"for {tp.account_id}"
        )
    # ec2 and ec2_once go on to the executor with the work; the Auto Scaling client is
    # needed only here and is closed before returning.
    clients = TargetClients(session, tp.region, factory.settings)
    ec2 = clients.get("ec2")
    once = clients.get("ec2", dataclasses.replace(factory.settings, max_attempts=1))
    work = TargetWork(tp, ec2, ec2_once=once)
    current = inspect.describe_by_ids(ec2, tp.region, [f.instance_id for f in tp.chosen])
    matching: list[tuple[InstanceFacts, InstanceFacts]] = []
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
        work.described[planned.instance_id] = inst
        diffs = differences(planned, now_facts)
        if diffs:
            work.result(planned, Outcome.SKIPPED, "drift: " + "; ".join(diffs))
            continue
        if planned.stop_source == "cloudtrail":  # same stop as planned: its time stands
            now_facts = dataclasses.replace(
                now_facts, stop_time=planned.stop_time, stop_source=planned.stop_source
            )
        matching.append((planned, now_facts))
    if matching:
        with TargetClients(session, tp.region, factory.settings) as asg_clients:
            enriched = inspect.enrich(
                ec2, asg_clients.get("autoscaling"), tp.region, [f for _, f in matching]
            )
        for facts in enriched:
            decision = decide(facts, tp.account_id, criteria, now)
            if decision.terminate:
                decision = decide(facts, tp.account_id, policy, now)
            if decision.terminate:
                work.act.append(facts)
            else:
                work.result(facts, Outcome.SKIPPED, f"now {decision.reason}: {decision.detail}")
    if count_stopped:
        work.live_stopped = sum(1 for _ in inspect.iter_stopped(ec2, tp.region))
    return work


def check_permissions(work: TargetWork, backup: str = BackupMode.SNAPSHOTS) -> None:
    """EC2's server-side ``DryRun=True`` for TerminateInstances and each backup call the
    target needs (CreateImage; or CreateSnapshot and/or CreateSnapshots, see
    :func:`awsops.decommission.backup.one_call`); a refusal is a SafetyError before
    anything changed."""
    if not work.act:
        return
    first = work.act[0].instance_id
    probes: list[tuple[str, dict[str, Any]]] = [("terminate_instances", {"InstanceIds": [first]})]
    if backup == BackupMode.IMAGE:
        probes.append(
            (
                "create_image",
                {"InstanceId": first, "Name": f"awsops-probe-{first}", "NoReboot": True},
            )
        )
    elif backup == BackupMode.SNAPSHOTS:
        whole = [f for f in work.act if one_call(f, f.deletable_volumes)]
        per_volume = (f for f in work.act if not one_call(f, f.deletable_volumes))
        volume = next((v for f in per_volume for v in f.deletable_volumes), None)
        if volume is not None:
            probes.append(("create_snapshot", {"VolumeId": volume.volume_id}))
        if whole:
            spec = {"InstanceId": whole[0].instance_id, "ExcludeBootVolume": False}
            probes.append(("create_snapshots", {"InstanceSpecification": spec}))
    for method, params in probes:
        check = ec2ops.check_permissions(work.ec2, method, params)
        if not check.allowed:
            raise SafetyError(
                f"not authorized to ec2:{check.operation} in {work.plan.account_id}/"
                f"{work.plan.region} ({check.code}); nothing was changed"
            )
