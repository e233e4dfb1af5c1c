"""Backups as snapshots (``--backup snapshots``): a snapshot of each volume that
termination would delete, made at most once, and waited for until ``completed``.

- One CreateSnapshots per instance when every EBS volume attached to it is one that
  termination would delete: ``InstanceSpecification`` with the boot volume included, so
  EC2 snapshots all of them (crash-consistent) in one request. One CreateSnapshot per
  deletable volume otherwise: when a volume survives termination, or when an earlier
  run already has a snapshot of some of the volumes. (``ExcludeDataVolumeIds`` could
  leave surviving data volumes out of a CreateSnapshots, but moto ignores it, so the
  sandbox could not show that no snapshot of a surviving volume is made: it is not
  used. The request shapes are pinned with botocore's Stubber.)
- Every snapshot gets the plan, instance and date tags and a Name; one made by
  CreateSnapshot also gets ``awsops:volume-id`` (CreateSnapshots tags all its snapshots
  alike; the snapshot's own ``VolumeId`` names the volume). ``CopyTagsFromSource`` is
  not used: a volume's tags would clash with these (a volume ``Name``, or the
  ``awsops:*`` tags of a volume restored from an earlier backup), and which one wins
  is not documented; the look-ups and prune-backups rely on these tags being ours.
- Right before creating, this plan's snapshots of the instance are looked up (one
  DescribeSnapshots: plan and instance tags, the volumes' ids) and a volume's snapshot
  that is not errored is adopted: a resumed run, or a concurrent run of the same plan
  on another host, never makes a second one.
- Each create call is sent once (:func:`~awsops.decommission.createonce.send_once`).
  After a lost answer, a snapshot of this plan, instance and volume that was not there
  before the call is the call's, whatever its state: one that already failed is
  adopted (its state keeps the instance), not made a second time.
- The journal has a SNAPSHOT_REQUESTED before the call and a SNAPSHOT_CREATED after it
  for each volume, whichever call made it.
- An instance goes on to termination only when every one of its snapshots is
  ``completed``; errored, pending (after the waiter's budget) or missing ones keep it.
- Once the run is stopping, no new create call is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from awsops.decommission import inspect
from awsops.decommission.applyrun import ApplyRun
from awsops.decommission.createonce import (
    TAG_INSTANCE,
    TAG_PLAN,
    TAG_VOLUME,
    StoppedError,
    backup_tags,
    fail,
    send_once,
    settle,
    wait_each,
)
from awsops.decommission.journal import Event, JournalError
from awsops.decommission.model import InstanceFacts, Volume
from awsops.decommission.outcomes import Outcome, TargetWork
from awsops.errors import AwsopsError
from awsops.paginate import iter_items
from awsops.waiters import chunked


class IncompleteBackupError(AwsopsError):
    """CreateSnapshots made no snapshot of a volume the plan has (detached since?)."""


def one_call(facts: InstanceFacts, todo: Iterable[Volume]) -> bool:
    """Whether ``todo``, the deletable volumes left to back up, is best made with one
    CreateSnapshots: it is every EBS volume attached to the instance (so termination
    deletes them all, and none has a snapshot yet)."""
    vols = {v.volume_id for v in facts.volumes}
    return bool(vols) and {v.volume_id for v in todo} == vols


def by_volume(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Snapshot id per volume id, a usable snapshot before an errored one."""
    out: dict[str, str] = {}
    for snap in sorted(snapshots, key=lambda x: x.get("State") == "error", reverse=True):
        out[str(snap["VolumeId"])] = str(snap["SnapshotId"])
    return out


class SnapshotBackups:
    """Creates, adopts and waits for the snapshots of one run."""

    def __init__(self, run: ApplyRun) -> None:
        self.run = run

    def snapshots(
        self, work: TargetWork, instance_id: str, volume_ids: Iterable[str]
    ) -> list[dict[str, Any]]:
        """This plan's snapshots of the instance's ``volume_ids``, in every state (by the
        plan and instance tags and the snapshot's volume id)."""
        filters = [
            {"Name": f"tag:{TAG_PLAN}", "Values": [self.run.plan.plan_id]},
            {"Name": f"tag:{TAG_INSTANCE}", "Values": [instance_id]},
            {"Name": "volume-id", "Values": sorted(volume_ids)},
        ]
        return list(
            iter_items(
                work.ec2,
                "describe_snapshots",
                "Snapshots[]",
                {"OwnerIds": ["self"], "Filters": filters},
                region=work.plan.region,
            )
        )

    def _created(self, facts: InstanceFacts, volume_id: str, sid: str, **extra: Any) -> str:
        rec = self.run.state.of(facts.instance_id)
        if rec.snapshots.get(volume_id) != sid or not extra.get("adopted"):
            rec.snapshots[volume_id] = sid
            self.run.record(
                Event.SNAPSHOT_CREATED,
                instance_id=facts.instance_id,
                volume_id=volume_id,
                snapshot_id=sid,
                **extra,
            )
        return sid

    def back_up(self, work: TargetWork, facts: InstanceFacts) -> dict[str, str] | None:
        """Snapshot ids of the instance's deletable volumes (found or created), or None
        if one could not be made or the run is stopping (the instance is reported)."""
        run, iid = self.run, facts.instance_id
        rec = run.state.of(iid)
        ids = {
            v.volume_id: rec.snapshots[v.volume_id]
            for v in facts.deletable_volumes
            if v.volume_id in rec.completed
        }
        left = [v for v in facts.deletable_volumes if v.volume_id not in ids]
        if not left:
            return ids
        if run.stopping:
            work.result(facts, Outcome.NOT_DONE, "stopped before its backup was made")
            return None
        known = self.snapshots(work, iid, [v.volume_id for v in left])
        usable = by_volume(x for x in known if x.get("State") != "error")
        todo = []
        for vol in left:
            if vol.volume_id in usable:
                ids[vol.volume_id] = self._created(
                    facts, vol.volume_id, usable[vol.volume_id], adopted=True
                )
            else:
                todo.append(vol)
        before = {str(x["SnapshotId"]) for x in known}
        what = f"snapshots of {iid}"
        try:
            if one_call(facts, todo):
                ids.update(self._create_all(work, facts, todo, before))
                return ids
            for vol in todo:
                if run.stopping:
                    work.result(facts, Outcome.NOT_DONE, "stopped before its backup was made")
                    return None
                what = f"snapshot of {vol.volume_id}"
                run.record(Event.SNAPSHOT_REQUESTED, instance_id=iid, volume_id=vol.volume_id)
                sid = self.create(work, facts, vol, before)
                ids[vol.volume_id] = self._created(facts, vol.volume_id, sid)
        except StoppedError as err:
            work.result(facts, Outcome.NOT_DONE, str(err))
            return None
        except JournalError:
            raise  # the run stops (ApplyRun.record); the target reports it, not this instance
        except AwsopsError as err:
            fail(run, work, facts, err, f"{what} failed")
            return None
        return ids

    def _create_all(
        self, work: TargetWork, facts: InstanceFacts, todo: list[Volume], before: set[str]
    ) -> dict[str, str]:
        """Journal, make and journal the snapshots of every volume with one call;
        IncompleteBackupError if a volume of the plan got none (those it got are
        journaled first)."""
        iid = facts.instance_id
        for vol in todo:
            self.run.record(
                Event.SNAPSHOT_REQUESTED,
                instance_id=iid,
                volume_id=vol.volume_id,
                call="CreateSnapshots",
            )
        made = self.create_all(work, facts, before)
        ids = {
            vol.volume_id: self._created(facts, vol.volume_id, made[vol.volume_id])
            for vol in todo
            if vol.volume_id in made
        }
        missing = sorted(v.volume_id for v in todo if v.volume_id not in ids)
        if missing:
            raise IncompleteBackupError(
                f"CreateSnapshots of {iid} made no snapshot of {', '.join(missing)} "
                "(detached since the plan?)"
            )
        return ids

    def create_all(
        self, work: TargetWork, facts: InstanceFacts, before: set[str]
    ) -> dict[str, str]:
        """One CreateSnapshots of every volume attached to the instance, exactly once (see
        :func:`send_once`); snapshot id per volume id. After a lost answer, the
        snapshots of this plan, instance and volumes that were not among ``before``
        (those there before the call) are this call's, whatever their state. A volume
        of the plan missing from the answer (or from what the look-up found) is looked
        for again, as EC2's describe calls are eventually consistent."""
        run, iid = self.run, facts.instance_id
        tags = [*backup_tags(run, iid), {"Key": "Name", "Value": f"awsops-backup-{iid}"}]
        client = work.ec2_once or work.ec2
        volume_ids = [v.volume_id for v in facts.volumes]

        def send() -> dict[str, str]:
            resp = client.create_snapshots(
                InstanceSpecification={"InstanceId": iid, "ExcludeBootVolume": False},
                Description=f"awsops backup of {iid} before decommission, {run.plan.plan_id}",
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
            )
            return by_volume(resp.get("Snapshots") or [])

        def look() -> dict[str, str] | None:
            new = [
                x
                for x in self.snapshots(work, iid, volume_ids)
                if x["SnapshotId"] not in before and x["SnapshotId"] not in made.values()
            ]
            return by_volume(new) or None

        made: dict[str, str] = {}
        made.update(send_once(run, work, "CreateSnapshots", f"the snapshots of {iid}", send, look))
        if any(v not in made for v in volume_ids):
            made.update(settle(run, look) or {})
        return made

    def create(self, work: TargetWork, facts: InstanceFacts, vol: Volume, before: set[str]) -> str:
        """CreateSnapshot exactly once for one volume (see :func:`send_once`). After a
        lost answer, a snapshot of this plan, instance and volume that was not among
        ``before`` (those there before the call) is this call's, whatever its state:
        one that had already failed is adopted, and its state keeps the instance,
        rather than sending a second CreateSnapshot."""
        run, iid = self.run, facts.instance_id
        tags = [
            *backup_tags(run, iid),
            {"Key": TAG_VOLUME, "Value": vol.volume_id},
            {"Key": "Name", "Value": f"awsops-backup-{iid}-{vol.device}"},
        ]
        client = work.ec2_once or work.ec2

        def send() -> str:
            resp = client.create_snapshot(
                VolumeId=vol.volume_id,
                Description=f"awsops backup of {vol.volume_id} ({vol.device}) of "
                f"{iid} before decommission, {run.plan.plan_id}",
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
            )
            return str(resp["SnapshotId"])

        def look() -> str | None:
            new = [
                x
                for x in self.snapshots(work, iid, [vol.volume_id])
                if x["SnapshotId"] not in before
            ]
            return by_volume(new).get(vol.volume_id)

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
