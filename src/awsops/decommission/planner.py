"""Read-only planning: targets -> :class:`Plan`.

For each (account, region): every page of stopped instances (server-side filter), the
stop time of each (StateTransitionReason, optionally CloudTrail), the cheap checks,
then for the remaining candidates termination protection, Auto Scaling membership and
volume sizes, and the final decision. Nothing here changes anything in AWS.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from awsops.clients import TargetClients
from awsops.config import Target
from awsops.decommission import inspect, markscan, pricing
from awsops.decommission.marktags import mark_key, read_mark
from awsops.decommission.model import (
    MAX_LIFETIME,
    Decision,
    InstanceFacts,
    Plan,
    PlanCriteria,
    PlanEndpoint,
    PlanLimits,
    SkipReason,
    TargetPlan,
)
from awsops.decommission.rules import decide, eligible_before_attributes
from awsops.decommission.stoptime import CloudTrailStopLookup
from awsops.errors import SafetyError, UsageError
from awsops.fanout import DEFAULT_CONCURRENCY, run_targets
from awsops.markconfig import Window
from awsops.session import SessionFactory


class AccountMismatchError(UsageError):
    """A target is labelled with an account its credentials do not reach."""


LookupFactory = Callable[[TargetClients, str], CloudTrailStopLookup]
Notified = Callable[[str], bool]  # a mark's key -> was a notice about it delivered?


class TargetPlanner:
    """Plans one target. Thread-safe to call for different targets concurrently."""

    def __init__(
        self,
        factory: SessionFactory,
        criteria: PlanCriteria,
        now: dt.datetime,
        page_size: int = inspect.PAGE_SIZE,
        lookup_factory: LookupFactory | None = None,
        notified: Notified | None = None,
    ) -> None:
        self.factory = factory
        self.criteria = criteria
        self.now = now
        self.notified = notified
        self.page_size = page_size
        self.lookup_factory = lookup_factory or (
            lambda clients, region: CloudTrailStopLookup(clients.get("cloudtrail"))
        )
        self._accounts: dict[tuple[str | None, str | None, str | None], str] = {}
        self._accounts_lock = threading.Lock()
        self._account_locks: dict[tuple[str | None, str | None, str | None], threading.Lock] = {}

    def real_account(self, target: Target, session: Any) -> str:
        """The account the target's credentials reach (one GetCallerIdentity per way of
        reaching an account, shared by its regions, even when they start together);
        refuses a target labelled with another account."""
        key = (target.profile, target.role_arn, target.external_id)
        with self._accounts_lock:
            lock = self._account_locks.setdefault(key, threading.Lock())
        with lock:
            known = self._accounts.get(key)
            if known is None:
                known = self._accounts[key] = self.factory.account_id(session)
        if target.account_id and target.account_id != known:
            raise AccountMismatchError(
                f"target {target.label} is labelled account {target.account_id}, but its "
                f"credentials reach account {known}: fix the targets file"
            )
        return known

    def __call__(self, target: Target) -> TargetPlan:
        """Plan one target; its clients are closed when it is done."""
        session = self.factory.for_target(target)
        account = self.real_account(target, session)
        with TargetClients(session, target.region, self.factory.settings) as clients:
            return self.plan_with(target, account, clients)

    def plan_with(self, target: Target, account: str, clients: TargetClients) -> TargetPlan:
        """Plan one target whose account is known, with the caller's clients."""
        region = target.region
        ec2 = clients.get("ec2")
        lookup: CloudTrailStopLookup | None = None
        skipped: list[Decision] = []
        candidates: list[InstanceFacts] = []
        examined = 0
        if self.criteria.marked:  # only marked instances can be due
            listing = markscan.iter_marked(ec2, region, ("stopped",), self.page_size)
        else:
            listing = inspect.iter_stopped(ec2, region, self.page_size)
        for inst in listing:
            examined += 1
            facts = inspect.facts_from_instance(inst)
            early = eligible_before_attributes(facts, account, self.criteria, self.now)
            if (
                early is not None
                and early.reason == SkipReason.STOP_TIME_UNKNOWN
                and self.criteria.cloudtrail
            ):
                lookup = lookup or self.lookup_factory(clients, region)
                facts = dataclasses.replace(facts, **_stop_fields(lookup.lookup(facts.instance_id)))
                early = eligible_before_attributes(facts, account, self.criteria, self.now)
            if early is not None:
                skipped.append(early)
            else:
                candidates.append(facts)
        chosen: list[InstanceFacts] = []
        if candidates:
            for facts in inspect.enrich(ec2, clients.get("autoscaling"), region, candidates):
                decision = decide(facts, account, self.criteria, self.now)
                if decision.terminate and self.criteria.marked:
                    decision = self._told(decision, account, region)
                if decision.terminate:
                    chosen.append(facts)
                else:
                    skipped.append(decision)
        return TargetPlan(
            account_id=account,
            region=region,
            role_arn=target.role_arn,
            external_id=target.external_id,
            name=target.name,
            profile=target.profile,
            examined=examined,
            chosen=tuple(sorted(chosen, key=lambda f: f.instance_id)),
            skipped=tuple(sorted(skipped, key=lambda d: d.facts.instance_id)),
        )

    def _told(self, decision: Decision, account: str, region: str) -> Decision:
        """A due mark is acted on only once its owner was told (``notified``)."""
        mark = read_mark(decision.facts.tags)
        if self.notified is None or mark is None or mark.at is None:
            return decision
        key = mark_key(account, region, decision.facts.instance_id, mark.at)
        if self.notified(key):
            return decision
        return Decision(
            decision.facts,
            False,
            SkipReason.NOT_NOTIFIED,
            "no notice of this mark was delivered (decommission notify)",
        )


def _stop_fields(stop: Any) -> dict[str, Any]:
    return {"stop_time": stop.at, "stop_source": stop.source}


def summarize(
    targets: Sequence[TargetPlan], retention_days: int = pricing.DEFAULT_RETENTION_DAYS
) -> dict[str, Any]:
    """Counts by decision, the volumes termination would delete, and the saving (less
    what the backups cost while they are kept, ``retention_days``)."""
    reasons: Counter[str] = Counter()
    for t in targets:
        reasons.update(d.reason or "?" for d in t.skipped)
    deleted = [v for t in targets for f in t.chosen for v in f.deletable_volumes]
    table = pricing.price_table()
    est = pricing.estimate(deleted, table, retention_days)
    return {
        "examined": sum(t.examined for t in targets),
        "terminate": sum(len(t.chosen) for t in targets),
        "skip": dict(sorted(reasons.items())),
        "target_errors": sum(1 for t in targets if t.error),
        "volumes_deleted": [
            {"volume_id": v.volume_id, "size_gib": v.size_gib, "volume_type": v.volume_type}
            for v in deleted
        ],
        "estimate": est.to_json(table),
    }


def build_plan(
    factory: SessionFactory,
    targets: Sequence[Target],
    criteria: PlanCriteria,
    *,
    now: dt.datetime | None = None,
    ttl_hours: float = 24.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    page_size: int = inspect.PAGE_SIZE,
    lookup_factory: LookupFactory | None = None,
    on_target: Callable[[TargetPlan], None] | None = None,
    limits: PlanLimits | None = None,
    endpoint: PlanEndpoint | None = None,
    backup_retention_days: int = pricing.DEFAULT_RETENTION_DAYS,
    window: Window | None = None,
    notified: Notified | None = None,
) -> Plan:
    """Plan every target (concurrently); a failing target is recorded with its error
    and plans nothing, the others complete. A target labelled with an account its
    credentials do not reach fails the whole plan (:class:`AccountMismatchError`).

    With a ``window``, planning outside it is refused (:class:`SafetyError`, before any
    call) and the plan expires when the window closes, so it cannot be applied after.
    With ``notified``, a marked plan keeps every due mark no notice went out about."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if not 0 < ttl_hours <= MAX_LIFETIME.total_seconds() / 3600:
        raise UsageError(f"plan lifetime {ttl_hours:g} h is not in (0, {MAX_LIFETIME.days * 24}]")
    expires_at = now + dt.timedelta(hours=ttl_hours)
    if window is not None:
        expires_at = min(expires_at, window_close(window, now))
    planner = TargetPlanner(factory, criteria, now, page_size, lookup_factory, notified)
    results: list[tuple[Target, TargetPlan]] = []
    mismatch: AccountMismatchError | None = None
    for res in run_targets(planner, targets, concurrency):
        if isinstance(res.error, AccountMismatchError):
            mismatch = mismatch or res.error
        if res.ok:
            assert res.value is not None
            tp = res.value
        else:
            t = res.target
            assert res.error is not None
            tp = TargetPlan(
                account_id=t.account_id or "unknown",
                region=t.region,
                role_arn=t.role_arn,
                external_id=t.external_id,
                name=t.name,
                profile=t.profile,
                error=res.error.one_line(),
            )
        results.append((res.target, tp))
        if on_target:
            on_target(tp)
    if mismatch is not None:
        raise mismatch
    order = {t: i for i, t in enumerate(targets)}
    results.sort(key=lambda pair: order[pair[0]])
    planned = [tp for _, tp in results]
    return Plan(
        plan_id=f"plan-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}",
        created_at=now,
        expires_at=expires_at,
        criteria=criteria,
        targets=tuple(planned),
        summary=summarize(planned, backup_retention_days),
        limits=limits or PlanLimits(),
        endpoint=endpoint or PlanEndpoint(),
    )


def window_close(window: Window, now: dt.datetime) -> dt.datetime:
    """When the window open at ``now`` closes; a SafetyError if it is not open."""
    if not window.contains(now):
        opens = window.next_opening(now)
        raise SafetyError(
            f"outside the window ({window.describe()}): nothing is proposed before it "
            f"opens again at {opens.isoformat()}"
        )
    return window.closes(now)
