"""Apply a plan: re-verify -> caps -> DryRun permission check -> confirm -> back up ->
wait -> terminate in batches -> wait, journaling every step so a re-run resumes safely.

Invariants kept here and in :mod:`~awsops.decommission.backup` and
:mod:`~awsops.decommission.terminate` (and tested against the sandbox's own record):
- an instance is terminated only if it still matches the plan, still passes every rule
  of the plan *and* of apply's own policy, and every one of its DeleteOnTermination
  volumes has a *completed* snapshot;
- no snapshot is created twice for a volume and TerminateInstances is never sent for an
  instance that is already shutting down or terminated, across resumed, concurrent and
  copied runs of one plan (one journal and one lock per plan id, tag and state
  look-ups right before each change);
- once the run is cancelled (SIGINT/SIGTERM, or a journal that cannot be written), no
  new change starts; the calls in flight finish and are journaled; the workers are
  joined before the journal is closed, and the report says what was not done.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path

from awsops.cancel import CancelToken
from awsops.config import Target
from awsops.decommission import capture
from awsops.decommission.applyrun import ApplyRun, OnEvent
from awsops.decommission.backup import SnapshotBackups
from awsops.decommission.createonce import fail
from awsops.decommission.images import ImageBackups
from awsops.decommission.journal import Event, Journal, JournalError, replay
from awsops.decommission.model import InstanceFacts, Plan, TargetPlan
from awsops.decommission.outcomes import (
    ApplyOptions,
    ApplyPreview,
    ApplyReport,
    BackupMode,
    InstanceResult,
    Outcome,
    TargetWork,
)
from awsops.decommission.terminate import Terminations
from awsops.decommission.verify import (
    check_blast_radius,
    check_permissions,
    check_plan_age,
    target_of,
    verify_target,
)
from awsops.errors import AwsopsError, PlanError, SafetyError
from awsops.fanout import run_targets
from awsops.session import SessionFactory
from awsops.waiters import chunked

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

Confirm = Callable[[ApplyPreview], bool]


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
        cancel: CancelToken | None = None,
    ) -> None:
        if journal_path is None and not options.dry_run:
            raise ValueError("a real apply needs a journal path")
        self.plan = plan
        self.factory = factory
        self.options = options
        self.journal_path = journal_path
        self.run_state = ApplyRun(
            plan, options, factory.settings.max_attempts, cancel, on_event, now
        )
        self.backups = SnapshotBackups(self.run_state)
        self.images = ImageBackups(self.run_state)
        self.terminations = Terminations(self.run_state)

    # -- phase A: read-only (see awsops.decommission.verify) -------------------------
    def verify(self, tp: TargetPlan) -> TargetWork:
        count = self.options.limits(self.plan)[1] is not None
        return verify_target(
            tp,
            self.factory,
            self.run_state.state,
            self.plan.criteria,
            self.options.policy(self.plan.criteria),
            self.run_state.now(),
            count_stopped=count,
        )

    # -- phase C: changes ----------------------------------------------------------
    def capture(self, work: TargetWork, facts: InstanceFacts) -> bool:
        """Journal what a restore needs, once per instance, before any change to it;
        False (the instance is reported failed) if it cannot be read."""
        run = self.run_state
        rec = run.state.of(facts.instance_id)
        if rec.capture is not None:
            return True
        try:
            data = capture.capture(work.ec2, work.plan.region, work.described[facts.instance_id])
        except AwsopsError as err:
            fail(run, work, facts, err, "what a restore needs could not be read")
            return False
        rec.capture = data
        run.record(Event.RESTORE_CAPTURED, instance_id=facts.instance_id, capture=data)
        return True

    def back_up(self, work: TargetWork) -> list[tuple[InstanceFacts, dict[str, str], str | None]]:
        """Back up every instance to act on by the run's backup mode; the instances
        whose backups are complete, with their snapshot ids and image id."""
        run, mode = self.run_state, self.options.backup
        images: dict[str, str] = {}
        snapshots: dict[str, dict[str, str]] = {}
        bare: list[InstanceFacts] = []
        for facts in work.act:
            if run.stopping:
                work.result(facts, Outcome.NOT_DONE, "stopped before its backup was made")
                continue
            if mode == BackupMode.IMAGE:
                if not self.capture(work, facts):  # a restore starts from the image
                    continue
                root = (run.state.of(facts.instance_id).capture or {}).get("root_device_name")
                image = self.images.back_up(work, facts, root)
                if image is not None:
                    images[facts.instance_id] = image
            elif mode == BackupMode.SNAPSHOTS:
                snaps = self.backups.back_up(work, facts)
                if snaps is not None:
                    snapshots[facts.instance_id] = snaps
            else:
                bare.append(facts)
        if mode == BackupMode.IMAGE:
            return [(f, {}, image) for f, image in self.images.wait(work, images)]
        if mode == BackupMode.SNAPSHOTS:
            return [(f, snaps, None) for f, snaps in self.backups.wait(work, snapshots)]
        return [(f, {}, None) for f in bare]

    def execute(self, work: TargetWork) -> None:
        """Capture, back up, terminate in batches, wait: for one verified target."""
        run = self.run_state
        ready = self.back_up(work)
        snaps_by_id = {f.instance_id: s for f, s, _ in ready}
        images = {f.instance_id: i for f, _, i in ready if i}
        accepted: list[str] = []
        for batch in chunked([f.instance_id for f, _, _ in ready], self.options.batch_size):
            if not run.stopping:
                batch = self.terminations.still_stopped(work, batch)
            if run.stopping:
                for iid in batch:
                    work.result(
                        iid,
                        Outcome.NOT_DONE,
                        "stopped before its termination (backups complete)",
                        None,
                        snaps_by_id.get(iid),
                        images.get(iid),
                    )
                continue
            if not batch:
                continue
            ok, failed = self.terminations.terminate(work, batch)
            accepted += ok
            for iid, err in failed.items():
                fail(run, work, iid, err, "terminate failed")
        resumed_snaps = {i: run.state.of(i).snapshots for i in work.resumed}
        for i in work.resumed:
            image = run.state.of(i).image_id
            if image:
                images[i] = image
        self.terminations.wait_terminated(
            work, [*work.resumed, *accepted], {**resumed_snaps, **snaps_by_id}, images
        )

    # -- the whole run -------------------------------------------------------------
    def run(self, confirm: Confirm | None = None) -> ApplyReport:
        """Verify and check every target, confirm, then act (unless dry run)."""
        run = self.run_state
        check_plan_age(self.plan, self.options, run.now())
        check_blast_radius(self.plan, self.options)
        report = ApplyReport(self.plan.plan_id, self.options.dry_run, self.journal_path)
        if self.options.dry_run:
            if self.journal_path is not None:
                run.state = replay(self.journal_path)
            return self._run_phases(report, confirm)
        assert self.journal_path is not None
        journal = Journal(self.journal_path, self.plan.plan_id)
        run.state = journal.open()
        run.journal = journal
        try:
            return self._run_phases(report, confirm)
        finally:
            # Every worker has been joined by now (see _run_phases): a record that
            # still came after this raises instead of being lost.
            journal.close()

    def _verify_all(self, report: ApplyReport) -> list[TargetWork]:
        targets = [tp for tp in self.plan.targets if tp.chosen and not tp.error]
        by_target = {target_of(tp): tp for tp in targets}
        works: list[TargetWork] = []
        fatal: AwsopsError | None = None
        with contextlib.closing(
            run_targets(
                lambda t: self.verify(by_target[t]), list(by_target), self.options.concurrency
            )
        ) as results:
            for res in results:
                if res.error is not None:
                    if isinstance(res.error, (PlanError, SafetyError)):
                        fatal = fatal or res.error
                    report.target_errors.append(f"{res.target.label}: {res.error.one_line()}")
                else:
                    assert res.value is not None
                    works.append(res.value)
        if fatal is not None:
            raise fatal
        return works

    def _run_phases(self, report: ApplyReport, confirm: Confirm | None) -> ApplyReport:
        run = self.run_state
        works = self._verify_all(report)
        for work in works:
            check_permissions(work, self.options.backup)
        check_blast_radius(self.plan, self.options, works)
        preview = ApplyPreview(
            plan_id=self.plan.plan_id,
            to_terminate=[(w.plan, f) for w in works for f in w.act],
            skipped=[r for w in works for r in w.results],
            snapshots=sum(len(f.deletable_volumes) for w in works for f in w.act)
            if self.options.backup == BackupMode.SNAPSHOTS
            else 0,
            images=sum(len(w.act) for w in works) if self.options.backup == BackupMode.IMAGE else 0,
            already_done=sum(len(w.resumed) for w in works),
        )
        if self.options.dry_run:
            for w in works:
                for f in w.act:
                    w.result(f, Outcome.WOULD_TERMINATE, _backup_note(self.options.backup, f))
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
        run.cancel.arm()
        run.record(
            Event.APPLY_STARTED,
            run=run.state.runs + 1,
            to_terminate=len(preview.to_terminate),
            snapshots=preview.snapshots,
            images=preview.images,
            already_done=preview.already_done,
        )
        for w in works:
            for r in w.results:
                run.record(Event.SKIPPED, instance_id=r.instance_id, reason=r.reason)
        with contextlib.closing(
            run_targets(
                lambda t: self.execute(_work_for(works, t)),
                [target_of(w.plan) for w in works],
                self.options.concurrency,
            )
        ) as done_iter:
            for done in done_iter:
                if done.error is not None and not isinstance(done.error, JournalError):
                    report.target_errors.append(f"{done.target.label}: {done.error.one_line()}")
        # Workers joined: from here on nothing else changes.
        _report_not_done(works, run.cancel.reason or "the run stopped")
        report.results = [r for w in works for r in w.results]
        report.journal_error = run.journal_error
        report.cancelled = run.cancel.reason if run.journal_error is None else None
        if run.journal_error is None:
            with contextlib.suppress(JournalError):  # kept in report.journal_error
                run.record(
                    Event.APPLY_FINISHED,
                    terminated=report.count(Outcome.TERMINATED),
                    skipped=report.count(Outcome.SKIPPED),
                    failed=report.count(Outcome.FAILED),
                    not_done=report.count(Outcome.NOT_DONE),
                    cancelled=report.cancelled,
                )
            report.journal_error = run.journal_error
        return report


def _backup_note(mode: str, facts: InstanceFacts) -> str:
    if mode == BackupMode.IMAGE:
        return "an image to make first"
    if mode == BackupMode.SNAPSHOTS:
        return f"{len(facts.deletable_volumes)} volume(s) to back up first"
    return "no backup (--backup none)"


def _report_not_done(works: Iterable[TargetWork], why: str) -> None:
    """Every instance a stopped run did not reach gets a result saying so."""
    for w in works:
        seen = {r.instance_id for r in w.results}
        for iid in [*(f.instance_id for f in w.act), *w.resumed]:
            if iid not in seen:
                w.result(iid, Outcome.NOT_DONE, f"not reached: {why}")


def _work_for(works: Iterable[TargetWork], target: Target) -> TargetWork:
    for w in works:
        if target_of(w.plan) == target:
            return w
    raise KeyError(target.label)


def apply_plan(
    plan: Plan,
    factory: SessionFactory,
    options: ApplyOptions,
    journal_path: Path | None,
    confirm: Confirm | None = None,
    on_event: OnEvent | None = None,
    cancel: CancelToken | None = None,
) -> ApplyReport:
    """Apply ``plan``; see :class:`Executor` for the guarantees."""
    return Executor(plan, factory, options, journal_path, on_event, cancel=cancel).run(confirm)
