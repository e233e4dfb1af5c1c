"""What apply is asked to do and what it reports: plain data, no AWS calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awsops.config import DEFAULT_MAX_PERCENT, DEFAULT_PROTECT_TAGS, MIN_OLDER_THAN_DAYS
from awsops.decommission.model import InstanceFacts, Plan, PlanCriteria, TargetPlan


class Outcome:
    TERMINATED = "terminated"
    WOULD_TERMINATE = "would-terminate"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_DONE = "not-done"  # the run stopped (interrupted) before acting on it


class BackupMode:
    """What is made before an instance is terminated."""

    IMAGE = "image"  # CreateImage: restorable with `decommission restore`
    SNAPSHOTS = "snapshots"  # one snapshot per volume termination deletes
    NONE = "none"  # nothing: only with an explicit acceptance of the data loss
    ALL = (IMAGE, SNAPSHOTS, NONE)


@dataclass(frozen=True)
class ApplyOptions:
    """How to apply, and apply's own policy.

    The policy (minimum age, protection tags, account lists, exclusions, caps, the
    oldest plan accepted) is a floor under every plan: an instance is acted on only if
    both the plan's criteria and this policy choose it, and the lower of the plan's caps
    and these applies. A plan can narrow what apply does, never widen it. Waiter delays
    are seconds between polls.
    """

    dry_run: bool = False
    backup: str = BackupMode.IMAGE
    batch_size: int = 50
    max_instances: int | None = None
    max_percent: float | None = DEFAULT_MAX_PERCENT
    protect_tags: tuple[str, ...] = DEFAULT_PROTECT_TAGS
    account_allowlist: tuple[str, ...] = ()
    account_denylist: tuple[str, ...] = ()
    exclude_instance_ids: tuple[str, ...] = ()
    exclude_tags: Mapping[str, str] = field(default_factory=dict)
    min_older_than_days: float = MIN_OLDER_THAN_DAYS
    max_plan_age_hours: float | None = None
    snapshot_delay: float = 15.0
    snapshot_max_attempts: int = 240
    terminate_delay: float = 15.0
    terminate_max_attempts: int = 80
    concurrency: int = 4

    def policy(self, planned: PlanCriteria) -> PlanCriteria:
        """Apply's own rules as criteria (evaluated in addition to the plan's)."""
        return PlanCriteria(
            older_than_days=self.min_older_than_days,
            protect_tags=self.protect_tags,
            account_allowlist=self.account_allowlist,
            account_denylist=self.account_denylist,
            exclude_instance_ids=self.exclude_instance_ids,
            exclude_tags=dict(self.exclude_tags),
            cloudtrail=planned.cloudtrail,
        )

    def limits(self, plan: Plan) -> tuple[int | None, float | None]:
        """(max instances, max percent): the lower of the plan's caps and these."""
        return (
            _lowest(plan.limits.max_instances, self.max_instances),
            _lowest(plan.limits.max_percent, self.max_percent),
        )


def _lowest(*values: Any) -> Any:
    given = [v for v in values if v is not None]
    return min(given) if given else None


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
    image: str | None = None

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
            "image": self.image,
        }


@dataclass
class ApplyReport:
    plan_id: str
    dry_run: bool
    journal: Path | None
    results: list[InstanceResult] = field(default_factory=list)
    target_errors: list[str] = field(default_factory=list)
    cancelled: str | None = None  # why the run stopped early (a signal)
    journal_error: str | None = None  # the journal could not be written: stopped

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return (
            not self.target_errors
            and self.cancelled is None
            and self.journal_error is None
            and self.count(Outcome.FAILED) == 0
            and self.count(Outcome.NOT_DONE) == 0
        )


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
    live_stopped: int | None = None  # stopped instances in the target now (for caps)
    described: dict[str, Any] = field(default_factory=dict)  # instance id -> as described

    def result(
        self,
        facts: InstanceFacts | str,
        outcome: str,
        reason: str = "",
        code: str | None = None,
        snapshots: Mapping[str, str] | None = None,
        image: str | None = None,
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
            image,
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
    images: int = 0
