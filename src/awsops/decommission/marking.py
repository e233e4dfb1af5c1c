"""Mark what qualifies, unmark what no longer does: the first step of the daily cycle.

Each target is planned exactly as ``decommission plan`` plans it (same rules, same
evidence, opt-outs included); then

- a qualifying instance without a mark gets ``awsops:terminate-after=<now + grace>``;
- a qualifying instance with a mark keeps it untouched: a mark never moves, however
  often this runs (an unreadable value, which awsops never writes, is replaced);
- a marked instance that no longer qualifies (started, protected, excluded, opted out,
  stopped again more recently...) loses its mark, and the report says why.

Tags are written in batches, one value per CreateTags call; a mark is deleted only if
it still has the value that was read (DeleteTags with the value), so a mark written in
between is never removed by mistake. Nothing else is changed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from awsops import ec2ops
from awsops.clients import TargetClients
from awsops.clock import as_utc, iso_utc, system_clock
from awsops.config import Target
from awsops.decommission import inspect, markscan
from awsops.decommission.marktags import MARK_TAG, mark_value, read_mark
from awsops.decommission.model import InstanceFacts, PlanCriteria, SkipReason, TargetPlan
from awsops.decommission.planner import AccountMismatchError, LookupFactory, TargetPlanner
from awsops.decommission.runlock import run_lock
from awsops.errors import AwsopsError, UsageError, aws_errors
from awsops.fanout import DEFAULT_CONCURRENCY, run_targets
from awsops.session import SessionFactory
from awsops.waiters import chunked

TAG_BATCH = 200  # instances per CreateTags/DeleteTags call


class MarkAction:
    MARKED = "marked"  # a new mark
    KEPT = "kept"  # marked before, still qualifies: the mark stays as it is
    REMARKED = "re-marked"  # the old value was no date: replaced by a new mark
    UNMARKED = "unmarked"  # no longer qualifies: the mark is removed


@dataclass(frozen=True)
class MarkRequest:
    """What qualifies (the plan's criteria) and how long owners have to react."""

    criteria: PlanCriteria
    grace: dt.timedelta

    def __post_init__(self) -> None:
        if self.grace <= dt.timedelta(0):
            raise UsageError("the grace period must be longer than zero")
        if self.criteria.marked:
            raise UsageError("marking decides on instances whether or not they are marked")


@dataclass(frozen=True)
class MarkChange:
    """What one run did (or, in a dry run, would do) to one instance's mark."""

    account_id: str
    region: str
    instance_id: str
    name: str
    action: str
    terminate_after: dt.datetime | None  # the mark after the run; None once unmarked
    previous: str | None = None  # the tag's value before the run
    reason: str | None = None  # for an unmark: the SkipReason
    detail: str = ""
    done: bool = False  # the tag change reached EC2 (always True for KEPT)

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "region": self.region,
            "instance_id": self.instance_id,
            "name": self.name,
            "action": self.action,
            "terminate_after": iso_utc(self.terminate_after) if self.terminate_after else None,
            "previous": self.previous,
            "reason": self.reason,
            "detail": self.detail,
            "done": self.done,
        }


@dataclass(frozen=True)
class TargetMarks:
    account_id: str
    region: str
    name: str | None = None
    examined: int = 0
    changes: tuple[MarkChange, ...] = ()
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name or self.account_id}/{self.region}"


@dataclass(frozen=True)
class MarkReport:
    now: dt.datetime
    grace: dt.timedelta
    dry_run: bool
    targets: tuple[TargetMarks, ...]

    @property
    def changes(self) -> list[MarkChange]:
        return [c for t in self.targets for c in t.changes]

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(c.action for c in self.changes).items()))

    @property
    def errors(self) -> list[str]:
        return [f"{t.label}: {t.error}" for t in self.targets if t.error]


def changes_for(
    tp: TargetPlan, others: Sequence[InstanceFacts], now: dt.datetime, grace: dt.timedelta
) -> list[MarkChange]:
    """The mark changes of one planned target (pure). ``others`` are its marked
    instances that are not stopped (the plan does not list them)."""
    new_at = as_utc(now).replace(microsecond=0) + grace

    def change(f: InstanceFacts, action: str, at: dt.datetime | None, **kw: Any) -> MarkChange:
        kept = action == MarkAction.KEPT
        return MarkChange(
            tp.account_id, tp.region, f.instance_id, f.name, action, at, done=kept, **kw
        )

    out: list[MarkChange] = []
    for f in tp.chosen:
        mark = read_mark(f.tags)
        if mark is None:
            out.append(change(f, MarkAction.MARKED, new_at))
        elif mark.at is None:
            out.append(
                change(
                    f,
                    MarkAction.REMARKED,
                    new_at,
                    previous=mark.value,
                    detail=f"{MARK_TAG}={mark.value!r} was no date",
                )
            )
        else:
            out.append(change(f, MarkAction.KEPT, mark.at, previous=mark.value))
    for d in tp.skipped:
        mark = read_mark(d.facts.tags)
        if mark is not None:
            out.append(
                change(
                    d.facts,
                    MarkAction.UNMARKED,
                    None,
                    previous=mark.value,
                    reason=d.reason,
                    detail=d.detail,
                )
            )
    for f in others:
        mark = read_mark(f.tags)
        if mark is not None:
            out.append(
                change(
                    f,
                    MarkAction.UNMARKED,
                    None,
                    previous=mark.value,
                    reason=SkipReason.NOT_STOPPED,
                    detail=f"state {f.state}",
                )
            )
    return sorted(out, key=lambda c: c.instance_id)


def _tag_calls(changes: Sequence[MarkChange]) -> dict[tuple[str, str], list[MarkChange]]:
    """(method, tag value) -> the changes one call per batch makes."""
    calls: dict[tuple[str, str], list[MarkChange]] = {}
    for c in changes:
        if c.action in (MarkAction.MARKED, MarkAction.REMARKED) and c.terminate_after:
            calls.setdefault(("create_tags", mark_value(c.terminate_after)), []).append(c)
        elif c.action == MarkAction.UNMARKED and c.previous is not None:
            calls.setdefault(("delete_tags", c.previous), []).append(c)
    return calls


def write_marks(
    ec2: Any, region: str, changes: Sequence[MarkChange]
) -> tuple[list[MarkChange], str | None]:
    """Make the tag changes; each change comes back ``done`` once EC2 accepted it. The
    first refused call stops the writing (its error is returned); the rest stay not
    done, and the next run makes them."""
    done: dict[str, MarkChange] = {}
    error: str | None = None
    for (method, value), group in _tag_calls(changes).items():
        by_id = {c.instance_id: c for c in group}
        for batch in chunked(list(by_id), TAG_BATCH):
            if error is not None:
                break
            operation = ec2.meta.method_to_api_mapping[method]
            try:
                with aws_errors(operation=operation, region=region):
                    getattr(ec2, method)(Resources=batch, Tags=[{"Key": MARK_TAG, "Value": value}])
            except AwsopsError as exc:
                error = exc.one_line()
                break
            done.update({i: dataclasses.replace(by_id[i], done=True) for i in batch})
    return [done.get(c.instance_id, c) for c in changes], error


def check_tagging(ec2: Any, changes: Sequence[MarkChange]) -> str | None:
    """For a dry run: EC2's ``DryRun`` answer for the calls a real run would make;
    None if they would succeed, else why not."""
    for (method, value), group in _tag_calls(changes).items():
        params = {"Resources": [group[0].instance_id], "Tags": [{"Key": MARK_TAG, "Value": value}]}
        check = ec2ops.check_permissions(ec2, method, params)
        if not check.allowed:
            return f"not authorized to ec2:{check.operation} ({check.code})"
    return None


class TargetMarker:
    """Marks one target. Thread-safe to call for different targets concurrently."""

    def __init__(
        self,
        factory: SessionFactory,
        request: MarkRequest,
        now: dt.datetime,
        dry_run: bool,
        lookup_factory: LookupFactory | None = None,
    ) -> None:
        self.factory = factory
        self.request = request
        self.now = now
        self.dry_run = dry_run
        self.planner = TargetPlanner(factory, request.criteria, now, lookup_factory=lookup_factory)

    def __call__(self, target: Target) -> TargetMarks:
        session = self.factory.for_target(target)
        account = self.planner.real_account(target, session)
        with TargetClients(session, target.region, self.factory.settings) as clients:
            tp = self.planner.plan_with(target, account, clients)
            if tp.error:
                return TargetMarks(account, target.region, target.name, error=tp.error)
            ec2 = clients.get("ec2")
            moving = ("pending", "running", "stopping")
            others = [
                inspect.facts_from_instance(i)
                for i in markscan.iter_marked(ec2, target.region, moving)
            ]
            changes = changes_for(tp, others, self.now, self.request.grace)
            if self.dry_run:
                error = check_tagging(ec2, changes)
            else:
                changes, error = write_marks(ec2, target.region, changes)
        return TargetMarks(
            account,
            target.region,
            target.name,
            examined=tp.examined + len(others),
            changes=tuple(changes),
            error=error,
        )


def mark_instances(
    factory: SessionFactory,
    targets: Sequence[Target],
    request: MarkRequest,
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    lookup_factory: LookupFactory | None = None,
) -> MarkReport:
    """Mark and unmark in every target (concurrently); a failing target is reported
    with its error and the others complete. One run at a time on this host."""
    now = as_utc(now or system_clock(), "now")
    marker = TargetMarker(factory, request, now, dry_run, lookup_factory)
    results: dict[Target, TargetMarks] = {}
    with run_lock("mark", "decommission mark"):
        for res in run_targets(marker, targets, concurrency):
            t = res.target
            if isinstance(res.error, AccountMismatchError):
                raise res.error
            if res.ok and res.value is not None:
                results[t] = res.value
            else:
                error = res.error.one_line() if res.error else "failed"
                results[t] = TargetMarks(t.account_id or "unknown", t.region, t.name, error=error)
    return MarkReport(now, request.grace, dry_run, tuple(results[t] for t in targets))
