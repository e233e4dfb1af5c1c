"""Backups before termination: one snapshot of each volume that termination would
delete, made at most once, and waited for until ``completed``.

- Right before each CreateSnapshot the plan's snapshot of that volume is looked for by
  tag and adopted if found (not errored): a resumed run or a concurrent run of the same
  plan on another host never leads to a second one. After a lost answer, the look-up
  adopts a new snapshot whatever its state, so an already failed one is not made twice.
- CreateSnapshot is not idempotent, so it goes through a client without automatic
  retries: a throttle was refused before EC2 acted, so it is resent after a backoff;
  after a 5xx or a lost answer the tag look-up comes first.
- An instance goes on to termination only when every one of its snapshots is
  ``completed``; errored, pending (after the waiter's budget) or missing ones keep it.
- Once the run is stopping, no new CreateSnapshot is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from awsops.decommission import inspect
from awsops.decommission.applyrun import ApplyRun
from awsops.decommission.journal import Event
from awsops.decommission.model import InstanceFacts, Volume
from awsops.decommission.outcomes import Outcome, TargetWork
from awsops.decommission.sendonce import StoppedError, send_once
from awsops.errors import (
    AwsError,
    AwsopsError,
    NotFoundError,
)
from awsops.paginate import iter_items
from awsops.waiters import WaitCancelledError, WaiterFailedError, WaiterTimeoutError, chunked
from awsops.waitmany import wait_many

TAG_PLAN = "awsops:plan-id"
TAG_INSTANCE = "awsops:instance-id"
TAG_VOLUME = "awsops:volume-id"
TAG_DATE = "awsops:date"


def fail(
    run: ApplyRun, work: TargetWork, facts: InstanceFacts | str, err: AwsopsError, why: str
) -> None:
    """Journal and report an instance that could not be handled."""
    code = err.code if isinstance(err, AwsError) else type(err).__name__
    iid = facts if isinstance(facts, str) else facts.instance_id
    run.record(Event.FAILED, instance_id=iid, code=code, reason=why)
    work.result(facts, Outcome.FAILED, f"{why}: {err.one_line()}", code)


def backup_tags(run: ApplyRun, instance_id: str) -> list[dict[str, str]]:
    """The tags of every backup awsops makes (prune-backups selects by them)."""
    return [
        {"Key": TAG_PLAN, "Value": run.plan.plan_id},
        {"Key": TAG_INSTANCE, "Value": instance_id},
        {"Key": TAG_DATE, "Value": run.now().strftime("%Y-%m-%d")},
    ]


def wait_each(
    run: ApplyRun,
    work: TargetWork,
    waiter: str,
    id_param: str,
    ids: list[str],
    states_of: Callable[[list[str]], dict[str, str]],
    final: tuple[str, ...],
) -> dict[str, str]:
    """Wait until every one of ``ids`` is in a ``final`` state, then return each one's
    state. One backup failing does not end the wait for the others (the waiter stops at
    the first failure, so the failed ones are set aside and the wait goes on). It ends
    at the waiter's budget (timeout) or when the run stops; the states are described
    in every case."""
    left = list(ids)
    for _ in range(len(ids)):  # each round sets aside at least one failed id
        if not left:
            break
        try:
            wait_many(
                work.ec2,
                waiter,
                id_param,
                left,
                delay=run.options.snapshot_delay,
                max_attempts=run.options.snapshot_max_attempts,
                stop=run.cancel.event,
            )
            break
        except WaiterFailedError:
            now = states_of(left)
            left = [i for i in left if now.get(i) not in final]
        except (WaiterTimeoutError, NotFoundError, WaitCancelledError):
            break
    return states_of(list(ids)) if ids else {}


class SnapshotBackups:
    """Creates, adopts and waits for the snapshots of one run."""

    def __init__(self, run: ApplyRun) -> None:
        self.run = run

    def snapshots(self, work: TargetWork, volume_id: str | None = None) -> list[dict[str, Any]]:
        """This plan's snapshots in every state (by tag); only those of ``volume_id``
        if it is given."""
        filters = [{"Name": f"tag:{TAG_PLAN}", "Values": [self.run.plan.plan_id]}]
        if volume_id is not None:
            filters.append({"Name": f"tag:{TAG_VOLUME}", "Values": [volume_id]})
        return list(
            iter_items(
                work.ec2,
                "describe_snapshots",
                "Snapshots[]",
                {"OwnerIds": ["self"], "Filters": filters},
                region=work.plan.region,
            )
        )

    def find(self, work: TargetWork, volume_id: str | None = None) -> dict[str, dict[str, Any]]:
        """This plan's snapshots that are not errored (by tag), keyed by volume id;
        only those of ``volume_id`` if it is given."""
        return {
            snap["VolumeId"]: snap
            for snap in self.snapshots(work, volume_id)
            if snap.get("State") != "error"
        }

    def back_up(self, work: TargetWork, facts: InstanceFacts) -> dict[str, str] | None:
        """Snapshot ids of the instance's deletable volumes (found or created), or None
        if one could not be made or the run is stopping (the instance is reported)."""
        rec = self.run.state.of(facts.instance_id)
        ids: dict[str, str] = {}
        for vol in facts.deletable_volumes:
            if vol.volume_id in rec.completed:
                ids[vol.volume_id] = rec.snapshots[vol.volume_id]
                continue
            if self.run.stopping:
                work.result(facts, Outcome.NOT_DONE, "stopped before its backup was made")
                return None
            known = self.snapshots(work, vol.volume_id)
            found = next((x for x in known if x.get("State") != "error"), None)
            if found is not None:
                sid = str(found["SnapshotId"])
                if rec.snapshots.get(vol.volume_id) != sid:
                    rec.snapshots[vol.volume_id] = sid
                    self.run.record(
                        Event.SNAPSHOT_CREATED,
                        instance_id=facts.instance_id,
                        volume_id=vol.volume_id,
                        snapshot_id=sid,
                        adopted=True,
                    )
                ids[vol.volume_id] = sid
                continue
            self.run.record(
                Event.SNAPSHOT_REQUESTED, instance_id=facts.instance_id, volume_id=vol.volume_id
            )
            try:
                sid = self.create(work, facts, vol, {str(x["SnapshotId"]) for x in known})
            except StoppedError as err:
                work.result(facts, Outcome.NOT_DONE, str(err))
                return None
            except AwsopsError as err:
                fail(self.run, work, facts, err, f"snapshot of {vol.volume_id} failed")
                return None
            rec.snapshots[vol.volume_id] = sid
            self.run.record(
                Event.SNAPSHOT_CREATED,
                instance_id=facts.instance_id,
                volume_id=vol.volume_id,
                snapshot_id=sid,
            )
            ids[vol.volume_id] = sid
        return ids

    def create(self, work: TargetWork, facts: InstanceFacts, vol: Volume, known: set[str]) -> str:
        """CreateSnapshot exactly once per volume (see :func:`send_once`). After a lost
        answer, a snapshot of this plan and volume that was not among ``known`` (those
        there before the call) is this call's, whatever its state: one that had already
        failed is adopted, and its state keeps the instance, rather than sending a
        second CreateSnapshot."""
        run = self.run
        tags = [
            *backup_tags(run, facts.instance_id),
            {"Key": TAG_VOLUME, "Value": vol.volume_id},
            {"Key": "Name", "Value": f"awsops-backup-{facts.instance_id}-{vol.device}"},
        ]
        client = work.ec2_once or work.ec2

        def send() -> str:
            resp = client.create_snapshot(
                VolumeId=vol.volume_id,
                Description=f"awsops backup of {vol.volume_id} ({vol.device}) of "
                f"{facts.instance_id} before decommission, {run.plan.plan_id}",
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
            )
            return str(resp["SnapshotId"])

        def look() -> str | None:
            new = [x for x in self.snapshots(work, vol.volume_id) if x["SnapshotId"] not in known]
            new.sort(key=lambda x: x.get("State") == "error")  # a usable one first
            return str(new[0]["SnapshotId"]) if new else None

        return send_once(
            run, work, "CreateSnapshot", f"the snapshot of {vol.volume_id}", send, look
        )

    def states(self, work: TargetWork, snapshot_ids: list[str]) -> dict[str, str]:
        """The current state of each snapshot (absent: not found)."""
        states: dict[str, str] = {}
        for batch in chunked(snapshot_ids, inspect.FILTER_BATCH):
            for snap in iter_items(
                work.ec2,
                "describe_snapshots",
                "Snapshots[]",
                {"Filters": [{"Name": "snapshot-id", "Values": batch}]},
                region=work.plan.region,
            ):
                states[snap["SnapshotId"]] = snap.get("State", "unknown")
        return states

    def wait(
        self, work: TargetWork, pending: Mapping[str, dict[str, str]]
    ) -> list[tuple[InstanceFacts, dict[str, str]]]:
        """Wait for the snapshots, then keep the instances whose snapshots all completed
        (the others are reported: failed, or not done if the run is stopping)."""
        run = self.run
        known = {
            sid
            for iid, snaps in pending.items()
            for vid, sid in snaps.items()
            if vid in run.state.of(iid).completed
        }
        to_wait = sorted({sid for s in pending.values() for sid in s.values()} - known)
        states = {sid: "completed" for sid in known}
        states.update(
            wait_each(
                run,
                work,
                "snapshot_completed",
                "SnapshotIds",
                to_wait,
                lambda ids: self.states(work, ids),
                final=("completed", "error"),
            )
        )
        ready = []
        by_id = {f.instance_id: f for f in work.act}
        for iid, snaps in pending.items():
            facts = by_id[iid]
            rec = run.state.of(iid)
            for vid, sid in snaps.items():
                if states.get(sid) == "completed" and vid not in rec.completed:
                    rec.completed.add(vid)
                    run.record(
                        Event.SNAPSHOT_COMPLETED, instance_id=iid, volume_id=vid, snapshot_id=sid
                    )
            bad = {
                sid: states.get(sid, "missing")
                for sid in snaps.values()
                if states.get(sid) != "completed"
            }
            if not bad:
                ready.append((facts, snaps))
                continue
            for vid, sid in snaps.items():
                if bad.get(sid) == "error":
                    run.record(
                        Event.SNAPSHOT_FAILED, instance_id=iid, volume_id=vid, snapshot_id=sid
                    )
            if run.stopping and "error" not in bad.values():
                work.result(
                    facts,
                    Outcome.NOT_DONE,
                    f"stopped while its backups were not complete: {bad}",
                    None,
                    snaps,
                )
                continue
            code = "SnapshotFailed" if "error" in bad.values() else "SnapshotIncomplete"
            run.record(
                Event.FAILED, instance_id=iid, code=code, reason=f"backup not complete: {bad}"
            )
            work.result(
                facts, Outcome.FAILED, f"backup not complete, not terminated: {bad}", code, snaps
            )
        return ready
