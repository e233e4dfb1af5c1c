"""What apply is asked to do and what it reports: plain data, no AWS calls."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awsops.decommission.model import InstanceFacts, PlanCriteria, TargetPlan


class Outcome:
    TERMINATED = "terminated"
    WOULD_TERMINATE = "would-terminate"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class ApplyOptions:
    """How to apply. Waiter delays are seconds between polls."""

    dry_run: bool = False
    batch_size: int = 50
    max_instances: int | None = None
    max_percent: float | None = None
    protect_tags: tuple[str, ...] = ()
    account_allowlist: tuple[str, ...] = ()
    account_denylist: tuple[str, ...] = ()
    snapshot_delay: float = 15.0
    snapshot_max_attempts: int = 240
    terminate_delay: float = 15.0
    terminate_max_attempts: int = 80
    concurrency: int = 4

    def criteria(self, planned: PlanCriteria) -> PlanCriteria:
        """The plan's rules tightened by apply-time config (never loosened)."""
        allow = planned.account_allowlist
        if self.account_allowlist:
            allow = (
                tuple(a for a in allow if a in self.account_allowlist)
                if allow
                else self.account_allowlist
            ) or ("-none-",)
        return dataclasses.replace(
            planned,
            protect_tags=tuple(dict.fromkeys((*planned.protect_tags, *self.protect_tags))),
            account_allowlist=allow,
            account_denylist=tuple(
                dict.fromkeys((*planned.account_denylist, *self.account_denylist))
            ),
        )


@dataclass(frozen=True)
class InstanceResult:
    account_id: str
    region: str
    instance_id: str
    name: str
    outcome: str
    reason: str = ""
    code: str | None = None
    snapshots: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "region": self.region,
            "instance_id": self.instance_id,
            "name": self.name,
            "outcome": self.outcome,
            "reason": self.reason,
            "code": self.code,
            "snapshots": dict(self.snapshots),
        }


@dataclass
class ApplyReport:
    plan_id: str
    dry_run: bool
    journal: Path | None
    results: list[InstanceResult] = field(default_factory=list)
    target_errors: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not self.target_errors and self.count(Outcome.FAILED) == 0


@dataclass
class TargetWork:
    """One target after verification: what is to be done there."""

    plan: TargetPlan
    ec2: Any
    act: list[InstanceFacts] = field(default_factory=list)  # verified, to back up + terminate
    resumed: list[str] = field(default_factory=list)  # terminated by an earlier run (maybe
    # still shutting down)
    results: list[InstanceResult] = field(default_factory=list)
    ec2_once: Any = None  # a client without automatic retries, for non-idempotent calls

    def result(
        self,
        facts: InstanceFacts | str,
        outcome: str,
        reason: str = "",
        code: str | None = None,
        snapshots: Mapping[str, str] | None = None,
    ) -> InstanceResult:
        iid = facts if isinstance(facts, str) else facts.instance_id
        name = "" if isinstance(facts, str) else facts.name
        if not name:
            name = next((f.name for f in self.plan.chosen if f.instance_id == iid), "")
        res = InstanceResult(
            self.plan.account_id,
            self.plan.region,
            iid,
            name,
            outcome,
            reason,
            code,
            dict(snapshots or {}),
        )
        self.results.append(res)
        return res


@dataclass(frozen=True)
class ApplyPreview:
    """What apply is about to do, shown before confirmation."""

    plan_id: str
    to_terminate: list[tuple[TargetPlan, InstanceFacts]]
    skipped: list[InstanceResult]
    snapshots: int
    already_done: int
