"""Backups as images (the default): one CreateImage per instance, made at most once and
waited for until ``available``, so the instance can be brought back with
``decommission restore``.

- ``NoReboot=True`` on the stopped instance; the image keeps the block device mapping
  and the billing product codes (RHEL, SLES and Windows images need them; an image
  registered from bare snapshots loses them).
- Volumes that survive termination (DeleteOnTermination false, other than the root)
  stay out of the image (``NoDevice``).
- The image is tagged with the plan id, the instance id and the date; once it is
  available, its snapshots get the same tags.
- Right before CreateImage the plan's image of the instance is looked for by tag and
  adopted if found (not failed), as for snapshots; after a lost answer the look-up
  comes before any resend (:func:`awsops.decommission.createonce.send_once`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from awsops.decommission.applyrun import ApplyRun
from awsops.decommission.createonce import (
    TAG_INSTANCE,
    TAG_PLAN,
    StoppedError,
    backup_tags,
    fail,
    send_once,
    wait_each,
)
from awsops.decommission.journal import Event
from awsops.decommission.model import InstanceFacts
from awsops.decommission.outcomes import Outcome, TargetWork
from awsops.errors import AwsopsError, translate
from awsops.paginate import iter_items
from awsops.waiters import (
    chunked,
)

GONE = ("failed", "deregistered", "error", "invalid")
IMAGE_BATCH = 100


def image_name(plan_id: str, instance_id: str) -> str:
    return f"awsops-{instance_id}-{plan_id}"


def no_device_mappings(facts: InstanceFacts, root_device: str | None) -> list[dict[str, str]]:
    """Volumes that outlive the instance stay out of its image (not the root)."""
    return [
        {"DeviceName": v.device, "NoDevice": ""}
        for v in facts.volumes
        if not v.delete_on_termination and v.device and v.device != root_device
    ]


class ImageBackups:
    """Creates, adopts and waits for the images of one run."""

    def __init__(self, run: ApplyRun) -> None:
        self.run = run

    def images(self, work: TargetWork, instance_id: str) -> list[dict[str, Any]]:
        """This plan's images of the instance (by tag), in every state."""
        return list(
            iter_items(
                work.ec2,
                "describe_images",
                "Images[]",
                {
                    "Owners": ["self"],
                    "Filters": [
                        {"Name": f"tag:{TAG_PLAN}", "Values": [self.run.plan.plan_id]},
                        {"Name": f"tag:{TAG_INSTANCE}", "Values": [instance_id]},
                    ],
                },
                region=work.plan.region,
            )
        )

    def back_up(
        self, work: TargetWork, facts: InstanceFacts, root_device: str | None
    ) -> str | None:
        """The instance's image id (found or created), or None if it could not be made
        or the run is stopping (the instance is then reported)."""
        run, iid = self.run, facts.instance_id
        rec = run.state.of(iid)
        if rec.image_id and rec.image_available:
            return rec.image_id
        if run.stopping:
            work.result(facts, Outcome.NOT_DONE, "stopped before its image was made")
            return None
        known = self.images(work, iid)
        found = next((str(x["ImageId"]) for x in known if x.get("State") not in GONE), None)
        if found is not None:
            if rec.image_id != found:
                rec.image_id = found
                run.record(Event.IMAGE_CREATED, instance_id=iid, image_id=found, adopted=True)
            return found
        run.record(Event.IMAGE_REQUESTED, instance_id=iid)
        client = work.ec2_once or work.ec2
        tags = [*backup_tags(run, iid), {"Key": "Name", "Value": f"awsops-backup-{iid}"}]

        def send() -> str:
            resp = client.create_image(
                InstanceId=iid,
                Name=image_name(run.plan.plan_id, iid),
                Description=f"awsops backup of {iid} before decommission, {run.plan.plan_id}",
                NoReboot=True,
                BlockDeviceMappings=no_device_mappings(facts, root_device),
                TagSpecifications=[{"ResourceType": "image", "Tags": tags}],
            )
            return str(resp["ImageId"])

        def look() -> str | None:
            # After a lost answer, a new image is this call's whatever its state: one
            # that already failed is adopted (its state keeps the instance), not made twice.
            old = {x["ImageId"] for x in known}
            new = [x for x in self.images(work, iid) if x["ImageId"] not in old]
            new.sort(key=lambda x: x.get("State") in GONE)
            return str(new[0]["ImageId"]) if new else None

        try:
            image_id = send_once(run, work, "CreateImage", f"the image of {iid}", send, look)
        except StoppedError as err:
            work.result(facts, Outcome.NOT_DONE, str(err))
            return None
        except AwsopsError as err:
            fail(run, work, facts, err, f"image of {iid} failed")
            return None
        rec.image_id = image_id
        run.record(Event.IMAGE_CREATED, instance_id=iid, image_id=image_id)
        return image_id

    def _described(self, work: TargetWork, image_ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for batch in chunked(image_ids, IMAGE_BATCH):
            for image in iter_items(
                work.ec2,
                "describe_images",
                "Images[]",
                {"Filters": [{"Name": "image-id", "Values": batch}]},
                region=work.plan.region,
            ):
                out[image["ImageId"]] = image
        return out

    def _tag_snapshots(self, work: TargetWork, iid: str, snapshot_ids: list[str]) -> str:
        """Tag the image's snapshots like the image; '' or why it could not be done."""
        if not snapshot_ids:
            return ""
        if self.run.stopping:
            return "snapshots of the image not tagged: the run stopped"
        try:
            work.ec2.create_tags(Resources=snapshot_ids, Tags=backup_tags(self.run, iid))
        except (ClientError, BotoCoreError) as exc:
            err = translate(exc, operation="CreateTags", region=work.plan.region)
            return f"snapshots of the image not tagged: {err.one_line()}"
        return ""

    def wait(self, work: TargetWork, pending: Mapping[str, str]) -> list[tuple[InstanceFacts, str]]:
        """Wait for the images, then keep the instances whose image is available (the
        others are reported: failed, or not done if the run is stopping)."""
        run = self.run
        known = {iid for iid in pending if run.state.of(iid).image_available}
        to_wait = sorted({pending[i] for i in pending if i not in known})
        described: dict[str, dict[str, Any]] = {}

        def states(ids: list[str]) -> dict[str, str]:
            described.update(self._described(work, ids))
            return {i: str(described[i].get("State")) for i in ids if i in described}

        wait_each(run, work, "image_available", "ImageIds", to_wait, states, ("available", *GONE))
        by_id = {f.instance_id: f for f in work.act}
        ready = []
        for iid, image_id in pending.items():
            facts = by_id[iid]
            if iid in known:
                ready.append((facts, image_id))
                continue
            image = described.get(image_id, {})
            state = image.get("State", "missing")
            if state == "available":
                snaps = [
                    m["Ebs"]["SnapshotId"]
                    for m in image.get("BlockDeviceMappings", [])
                    if m.get("Ebs", {}).get("SnapshotId")
                ]
                run.state.of(iid).image_available = True
                run.record(
                    Event.IMAGE_AVAILABLE, instance_id=iid, image_id=image_id, snapshot_ids=snaps
                )
                note = self._tag_snapshots(work, iid, snaps)
                if note:
                    run.record(Event.SKIPPED, instance_id=iid, reason=note)
                ready.append((facts, image_id))
                continue
            if state in GONE:
                run.state.of(iid).image_id = None
                run.record(Event.IMAGE_FAILED, instance_id=iid, image_id=image_id, state=state)
            if run.stopping and state not in GONE:
                work.result(
                    facts, Outcome.NOT_DONE, f"stopped while its image {image_id} was {state}"
                )
                continue
            code = "ImageFailed" if state in GONE else "ImageIncomplete"
            run.record(Event.FAILED, instance_id=iid, code=code, reason=f"image {image_id} {state}")
            work.result(
                facts,
                Outcome.FAILED,
                f"backup not complete, not terminated: image {image_id} {state}",
                code,
                image=image_id,
            )
        return ready
