"""Apply a plan: re-verify -> DryRun permission check -> confirm -> snapshot -> wait ->
terminate in batches -> wait, journaling every step so a re-run resumes safely.

Invariants kept here (and tested by property):
- an instance is terminated only if it still matches the plan, still passes every rule,
  and every one of its DeleteOnTermination volumes has a *completed* snapshot;
- no snapshot is created twice for a volume (snapshots are tagged with the plan id and
  adopted on resume), and TerminateInstances is never sent for an instance that is
  already shutting down or terminated;
- after any TerminateInstances error the batch is described again before deciding what
  happened (EC2 may have terminated part of it), then retried one instance at a time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from awsops.config import Target
from awsops.decommission import inspect
from awsops.decommission.journal import Event, Journal, JournalState, replay
from awsops.decommission.model import InstanceFacts, Plan, TargetPlan, Volume
from awsops.decommission.outcomes import (
    ApplyOptions,
    ApplyPreview,
    ApplyReport,
    InstanceResult,
    Outcome,
    TargetWork,
)
from awsops.decommission.verify import (
    TERMINATING,
    check_blast_radius,
    check_permissions,
    target_of,
    verify_target,
)
from awsops.errors import (
    AwsError,
    AwsopsError,
    AwsTimeoutError,
    EndpointUnreachableError,
    NotFoundError,
    OtherAwsError,
    PlanError,
    SafetyError,
    ThrottledError,
    translate,
)
from awsops.fanout import run_targets
from awsops.paginate import iter_items
from awsops.session import SessionFactory
from awsops.waiters import WaiterFailedError, WaiterTimeoutError, chunked, wait_many

__all__ = [
    "ApplyOptions",
    "ApplyPreview",
    "ApplyReport",
    "Executor",
    "InstanceResult",
    "Outcome",
    "TargetWork",
    "apply_plan",
]

OnEvent = Callable[[Mapping[str, Any]], None]
Confirm = Callable[[ApplyPreview], bool]
MIN_CREATE_ATTEMPTS = 6
SETTLE_LOOKS = 3  # looks for a snapshot after a lost CreateSnapshot answer
SETTLE_DELAY = 1.0  # seconds before the first look; doubled before each next one
TAG_PLAN = "awsops:plan-id"
TAG_INSTANCE = "awsops:instance-id"
TAG_VOLUME = "awsops:volume-id"


class Executor:
    """Runs one plan. Create one per apply; not reusable."""

    def __init__(
        self,
        plan: Plan,
        factory: SessionFactory,
        options: ApplyOptions,
        journal_path: Path | None,
        on_event: OnEvent | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.plan = plan
        self.factory = factory
        self.options = options
        self.criteria = options.criteria(plan.criteria)
        self.journal_path = journal_path
        self.on_event = on_event
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.journal: Journal | None = None
        self.state = JournalState()
        self._sleep: Callable[[float], Any] = threading.Event().wait
        self._jitter: Callable[[], float] = random.random

    # -- journal -------------------------------------------------------------------
    def _record(self, event: str, **data: Any) -> None:
        if self.journal is None:  # dry run: nothing is written
            return
        entry = self.journal.record(event, **data)
        if self.on_event:
            self.on_event(entry)

    # -- phase A: read-only (see awsops.decommission.verify) -------------------------
    def check_blast_radius(self) -> None:
        check_blast_radius(self.plan, self.options)

    def verify(self, tp: TargetPlan) -> TargetWork:
        return verify_target(tp, self.factory, self.state, self.criteria, self._now())

    def check_permissions(self, work: TargetWork) -> None:
        check_permissions(work)

    # -- phase C: changes ----------------------------------------------------------
    def _adopt_snapshots(
        self, work: TargetWork, volume_id: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Snapshots this plan already created (by tag), keyed by volume id; only those
        of ``volume_id`` if it is given."""
        filters = [{"Name": f"tag:{TAG_PLAN}", "Values": [self.plan.plan_id]}]
        if volume_id is not None:
            filters.append({"Name": f"tag:{TAG_VOLUME}", "Values": [volume_id]})
        found: dict[str, dict[str, Any]] = {}
        for snap in iter_items(
            work.ec2,
            "describe_snapshots",
            "Snapshots[]",
            {"OwnerIds": ["self"], "Filters": filters},
            region=work.plan.region,
        ):
            if snap.get("State") != "error":
                found[snap["VolumeId"]] = snap
        return found

    def _snapshot(
        self, work: TargetWork, facts: InstanceFacts, adopted: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, str] | None:
        """Snapshot ids of the instance's deletable volumes (created or reused), or None
        if one could not be created (the instance is then reported failed)."""
        rec = self.state.of(facts.instance_id)
        ids: dict[str, str] = {}
        for vol in facts.deletable_volumes:
            if vol.volume_id in rec.completed:
                ids[vol.volume_id] = rec.snapshots[vol.volume_id]
                continue
            if vol.volume_id in adopted:
                sid = adopted[vol.volume_id]["SnapshotId"]
                if rec.snapshots.get(vol.volume_id) != sid:
                    self._record(
                        Event.SNAPSHOT_CREATED,
                        instance_id=facts.instance_id,
                        volume_id=vol.volume_id,
                        snapshot_id=sid,
                        adopted=True,
                    )
                ids[vol.volume_id] = sid
                continue
            self._record(
                Event.SNAPSHOT_REQUESTED, instance_id=facts.instance_id, volume_id=vol.volume_id
            )
            try:
                sid = self._create_snapshot(work, facts, vol)
            except AwsopsError as err:
                self._fail(work, facts, err, f"snapshot of {vol.volume_id} failed")
                return None
            rec.snapshots[vol.volume_id] = sid
            self._record(
                Event.SNAPSHOT_CREATED,
                instance_id=facts.instance_id,
                volume_id=vol.volume_id,
                snapshot_id=sid,
            )
            ids[vol.volume_id] = sid
        return ids

    def _create_snapshot(self, work: TargetWork, facts: InstanceFacts, vol: Volume) -> str:
        """CreateSnapshot exactly once per volume, although EC2 has no idempotency token.

        The call goes through a client without automatic retries. A throttled call was
        refused before EC2 acted on it, so it is simply sent again after a full-jitter
        backoff. After a 5xx or a lost connection the call may have succeeded: the
        snapshots tagged with this plan and volume are looked for first (allowing for
        EC2's eventual consistency), and only if there is none is the call sent again.
        At most ``max_attempts`` sends: the client settings' retry budget, never fewer
        than ``MIN_CREATE_ATTEMPTS``.
        """
        tags = [
            {"Key": TAG_PLAN, "Value": self.plan.plan_id},
            {"Key": TAG_INSTANCE, "Value": facts.instance_id},
            {"Key": TAG_VOLUME, "Value": vol.volume_id},
            {"Key": "awsops:date", "Value": self._now().strftime("%Y-%m-%d")},
            {"Key": "Name", "Value": f"awsops-backup-{facts.instance_id}-{vol.device}"},
        ]
        client = work.ec2_once or work.ec2
        attempts = max(MIN_CREATE_ATTEMPTS, self.factory.settings.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                resp = client.create_snapshot(
                    VolumeId=vol.volume_id,
                    Description=f"awsops backup of {vol.volume_id} ({vol.device}) of "
                    f"{facts.instance_id} before decommission, {self.plan.plan_id}",
                    TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
                )
                return str(resp["SnapshotId"])
            except (ClientError, BotoCoreError, ResponseParserError) as exc:
                err = translate(exc, operation="CreateSnapshot", region=work.plan.region)
                cause = exc
                if not _maybe_transient(err):
                    raise err from exc
            if isinstance(err, ThrottledError):  # refused, not acted on: nothing to look for
                if attempt == attempts:
                    raise err from cause
                self._sleep(self._jitter() * min(0.25 * 2**attempt, 8.0))
                continue
            existing = self._look_for_snapshot(work, vol.volume_id)
            if existing is not None:
                return existing
            if attempt == attempts:
                raise err from cause
        raise AssertionError("unreachable")  # pragma: no cover

    def _look_for_snapshot(self, work: TargetWork, volume_id: str) -> str | None:
        """After a CreateSnapshot whose answer was lost: this plan's snapshot of the
        volume, if the call made one. EC2's describe calls are eventually consistent, so
        a new snapshot may show only after a few seconds: look ``SETTLE_LOOKS`` times,
        waiting ``SETTLE_DELAY`` seconds, then twice that, and so on, before each look."""
        for n in range(SETTLE_LOOKS):
            self._sleep(SETTLE_DELAY * 2**n)
            found = self._adopt_snapshots(work, volume_id).get(volume_id)
            if found is not None:
                return str(found["SnapshotId"])
        return None

    def _fail(
        self, work: TargetWork, facts: InstanceFacts | str, err: AwsopsError, reason: str
    ) -> None:
        code = err.code if isinstance(err, AwsError) else type(err).__name__
        iid = facts if isinstance(facts, str) else facts.instance_id
        self._record(Event.FAILED, instance_id=iid, code=code, reason=reason)
        work.result(facts, Outcome.FAILED, f"{reason}: {err.one_line()}", code)

    def _wait_snapshots(
        self, work: TargetWork, pending: Mapping[str, dict[str, str]]
    ) -> list[tuple[InstanceFacts, dict[str, str]]]:
        """Wait for the snapshots, then keep the instances whose snapshots all completed."""
        rec_completed = {
            sid
            for iid, snaps in pending.items()
            for vid, sid in snaps.items()
            if vid in self.state.of(iid).completed
        }
        to_wait = sorted({sid for s in pending.values() for sid in s.values()} - rec_completed)
        if to_wait:
            # On timeout or failure the describe below tells each snapshot's state.
            with contextlib.suppress(WaiterTimeoutError, WaiterFailedError, NotFoundError):
                wait_many(
                    work.ec2,
                    "snapshot_completed",
                    "SnapshotIds",
                    to_wait,
                    delay=self.options.snapshot_delay,
                    max_attempts=self.options.snapshot_max_attempts,
                )
        states: dict[str, str] = {sid: "completed" for sid in rec_completed}
        for batch in chunked(to_wait, inspect.FILTER_BATCH):
            for snap in iter_items(
                work.ec2,
                "describe_snapshots",
                "Snapshots[]",
                {"Filters": [{"Name": "snapshot-id", "Values": batch}]},
                region=work.plan.region,
            ):
                states[snap["SnapshotId"]] = snap.get("State", "unknown")
        ready = []
        by_id = {f.instance_id: f for f in work.act}
        for iid, snaps in pending.items():
            facts = by_id[iid]
            bad = {
                sid: states.get(sid, "missing")
                for sid in snaps.values()
                if states.get(sid) != "completed"
            }
            for vid, sid in snaps.items():
                if states.get(sid) == "completed" and vid not in self.state.of(iid).completed:
                    self.state.of(iid).completed.add(vid)
                    self._record(
                        Event.SNAPSHOT_COMPLETED, instance_id=iid, volume_id=vid, snapshot_id=sid
                    )
            if bad:
                failed_any = any(s == "error" for s in bad.values())
                for vid, sid in snaps.items():
                    if sid in bad and bad[sid] == "error":
                        self._record(
                            Event.SNAPSHOT_FAILED, instance_id=iid, volume_id=vid, snapshot_id=sid
                        )
                code = "SnapshotFailed" if failed_any else "SnapshotIncomplete"
                self._record(
                    Event.FAILED, instance_id=iid, code=code, reason=f"backup not complete: {bad}"
                )
                work.result(
                    facts,
                    Outcome.FAILED,
                    f"backup not complete, not terminated: {bad}",
                    code,
                    snaps,
                )
                continue
            ready.append((facts, snaps))
        return ready

    def _terminate(
        self, work: TargetWork, ids: Sequence[str]
    ) -> tuple[list[str], dict[str, AwsopsError]]:
        """TerminateInstances for ``ids``; returns (accepted, failed with error)."""
        accepted: list[str] = []
        failed: dict[str, AwsopsError] = {}
        self._record(Event.TERMINATE_REQUESTED, instance_ids=list(ids))
        for i in ids:
            self.state.of(i).terminate_requested = True
        try:
            resp = work.ec2.terminate_instances(InstanceIds=list(ids))
        except (ClientError, BotoCoreError) as exc:
            err = translate(
                exc,
                operation="TerminateInstances",
                region=work.plan.region,
                account_id=work.plan.account_id,
            )
            # EC2 may have terminated part of the batch: look before deciding.
            now = inspect.describe_by_ids(work.ec2, work.plan.region, ids)
            rest = []
            for i in ids:
                if now.get(i, {}).get("State", {}).get("Name") in TERMINATING:
                    accepted.append(i)
                else:
                    rest.append(i)
            if len(ids) == 1:
                if rest:
                    failed[ids[0]] = err
            else:
                for i in rest:  # one at a time: one bad instance never blocks the others
                    ok, bad = self._terminate(work, [i])
                    accepted += ok
                    failed.update(bad)
        else:
            listed = {t["InstanceId"] for t in resp.get("TerminatingInstances", [])}
            accepted += [i for i in ids if i in listed]
            missing = [i for i in ids if i not in listed]
            if missing:  # not expected from EC2: look rather than assume
                now = inspect.describe_by_ids(work.ec2, work.plan.region, missing)
                for i in missing:
                    if now.get(i, {}).get("State", {}).get("Name") in TERMINATING:
                        accepted.append(i)
                    else:
                        failed[i] = OtherAwsError(
                            "TerminateInstances did not list the instance as terminating",
                            code="NotTerminating",
                            operation="TerminateInstances",
                            region=work.plan.region,
                        )
        for i in accepted:
            if not self.state.of(i).terminate_accepted:
                self.state.of(i).terminate_accepted = True
                self._record(Event.TERMINATE_ACCEPTED, instance_id=i)
        return accepted, failed

    def _wait_terminated(
        self, work: TargetWork, ids: Sequence[str], snaps: Mapping[str, Mapping[str, str]]
    ) -> None:
        if not ids:
            return
        with contextlib.suppress(
            WaiterTimeoutError, WaiterFailedError, NotFoundError
        ):  # described below
            wait_many(
                work.ec2,
                "instance_terminated",
                "InstanceIds",
                list(ids),
                delay=self.options.terminate_delay,
                max_attempts=self.options.terminate_max_attempts,
            )
        now = inspect.describe_by_ids(work.ec2, work.plan.region, ids)
        for i in ids:
            state = now.get(i, {}).get("State", {}).get("Name", "gone")
            if state in ("terminated", "gone"):
                if not self.state.of(i).terminated:
                    self.state.of(i).terminated = True
                    self._record(Event.TERMINATED, instance_id=i)
                work.result(i, Outcome.TERMINATED, "", None, snaps.get(i))
            else:
                self._record(
                    Event.FAILED, instance_id=i, code="WaiterTimeout", reason=f"still {state}"
                )
                work.result(
                    i,
                    Outcome.FAILED,
                    f"termination accepted but still {state}",
                    "WaiterTimeout",
                    snaps.get(i),
                )

    def execute(self, work: TargetWork) -> None:
        """Back up, terminate in batches, wait: for one verified target."""
        adopted = self._adopt_snapshots(work) if work.act else {}
        pending: dict[str, dict[str, str]] = {}
        for facts in work.act:
            snaps = self._snapshot(work, facts, adopted)
            if snaps is not None:
                pending[facts.instance_id] = snaps
        ready = self._wait_snapshots(work, pending)
        snaps_by_id = {f.instance_id: s for f, s in ready}
        accepted: list[str] = []
        for batch in chunked([f.instance_id for f, _ in ready], self.options.batch_size):
            ok, failed = self._terminate(work, batch)
            accepted += ok
            for iid, err in failed.items():
                self._fail(work, iid, err, "terminate failed")
        resumed_snaps = {i: self.state.of(i).snapshots for i in work.resumed}
        self._wait_terminated(work, [*work.resumed, *accepted], {**resumed_snaps, **snaps_by_id})

    # -- the whole run -------------------------------------------------------------
    def run(self, confirm: Confirm | None = None) -> ApplyReport:
        """Verify and check every target, confirm, then act (unless dry run)."""
        self.check_blast_radius()
        report = ApplyReport(self.plan.plan_id, self.options.dry_run, self.journal_path)
        if self.options.dry_run or self.journal_path is None:
            if self.journal_path is not None:
                self.state = replay(self.journal_path)
            return self._run_phases(report, confirm)
        journal = Journal(self.journal_path, self.plan.plan_id)
        self.state = journal.open()
        self.journal = journal
        try:
            return self._run_phases(report, confirm)
        finally:
            self.journal = None
            journal.close()

    def _run_phases(self, report: ApplyReport, confirm: Confirm | None) -> ApplyReport:
        targets = [tp for tp in self.plan.targets if tp.chosen and not tp.error]
        by_target = {target_of(tp): tp for tp in targets}
        works: list[TargetWork] = []
        for res in run_targets(
            lambda t: self.verify(by_target[t]), list(by_target), self.options.concurrency
        ):
            if res.error is not None:
                if isinstance(res.error, (PlanError, SafetyError)):
                    raise res.error
                report.target_errors.append(f"{res.target.label}: {res.error.one_line()}")
            else:
                assert res.value is not None
                works.append(res.value)
        for work in works:
            self.check_permissions(work)
        preview = ApplyPreview(
            plan_id=self.plan.plan_id,
            to_terminate=[(w.plan, f) for w in works for f in w.act],
            skipped=[r for w in works for r in w.results],
            snapshots=sum(len(f.deletable_volumes) for w in works for f in w.act),
            already_done=sum(len(w.resumed) for w in works),
        )
        if self.options.dry_run:
            for w in works:
                for f in w.act:
                    w.result(
                        f,
                        Outcome.WOULD_TERMINATE,
                        f"{len(f.deletable_volumes)} volume(s) to back up first",
                    )
                for i in w.resumed:
                    w.result(i, Outcome.TERMINATED, "terminated by an earlier run")
            report.results = [r for w in works for r in w.results]
            return report
        if (
            confirm is not None
            and (preview.to_terminate or preview.already_done)
            and not confirm(preview)
        ):
            raise SafetyError("not confirmed: nothing was changed")
        self._record(
            Event.APPLY_STARTED, run=self.state.runs + 1, to_terminate=len(preview.to_terminate)
        )
        for w in works:
            for r in w.results:
                self._record(Event.SKIPPED, instance_id=r.instance_id, reason=r.reason)
        for done in run_targets(
            lambda t: self.execute(_work_for(works, t)),
            [target_of(w.plan) for w in works],
            self.options.concurrency,
        ):
            if done.error is not None:
                if isinstance(done.error, SafetyError):
                    raise done.error
                report.target_errors.append(f"{done.target.label}: {done.error.one_line()}")
        report.results = [r for w in works for r in w.results]
        self._record(
            Event.APPLY_FINISHED,
            terminated=report.count(Outcome.TERMINATED),
            skipped=report.count(Outcome.SKIPPED),
            failed=report.count(Outcome.FAILED),
        )
        return report


def _maybe_transient(err: AwsopsError) -> bool:
    """An error after which the call may or may not have happened, and may be retried."""
    if isinstance(err, (ThrottledError, EndpointUnreachableError, AwsTimeoutError)):
        return True
    return isinstance(err, AwsError) and (err.http_status or 0) >= 500


def _work_for(works: Iterable[TargetWork], target: Target) -> TargetWork:
    for w in works:
        if (w.plan.account_id, w.plan.region) == (target.account_id, target.region):
            return w
    raise KeyError(target.label)


def apply_plan(
    plan: Plan,
    factory: SessionFactory,
    options: ApplyOptions,
    journal_path: Path | None,
    confirm: Confirm | None = None,
    on_event: OnEvent | None = None,
) -> ApplyReport:
    """Apply ``plan``; see :class:`Executor` for the guarantees."""
    return Executor(plan, factory, options, journal_path, on_event).run(confirm)
