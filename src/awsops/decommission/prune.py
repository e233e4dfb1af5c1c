"""``prune-backups``: deregister the images and delete the snapshots that awsops made
(tagged ``awsops:plan-id`` and ``awsops:date``) once they are older than a retention
period, and nothing else; and check for (or add) a Recycle Bin rule that keeps them
recoverable for a while after that.

Only resources owned by the account and carrying both tags, with a well-formed date, are
ever candidates; an image's snapshots go with the image (and stay while it stays).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from awsops.decommission.createonce import TAG_DATE, TAG_INSTANCE, TAG_PLAN
from awsops.errors import translate
from awsops.paginate import iter_items

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RBIN_TYPES = ("EBS_SNAPSHOT", "EC2_IMAGE")


@dataclass
class Backup:
    kind: str  # image | snapshot
    backup_id: str
    region: str
    plan_id: str
    instance_id: str
    made_on: str
    snapshots: list[str] = field(default_factory=list)  # an image's own snapshots
    outcome: str = "would-delete"
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "backup_id": self.backup_id,
            "region": self.region,
            "plan_id": self.plan_id,
            "instance_id": self.instance_id,
            "made_on": self.made_on,
            "snapshots": list(self.snapshots),
            "outcome": self.outcome,
            "reason": self.reason,
        }


def _ours(tags: Sequence[dict[str, str]]) -> dict[str, str] | None:
    values = {t["Key"]: t.get("Value", "") for t in tags}
    if values.get(TAG_PLAN, "").startswith("plan-") and DATE_RE.match(values.get(TAG_DATE, "")):
        return values
    return None


def find_backups(ec2: Any, region: str, older_than_days: float, now: dt.datetime) -> list[Backup]:
    """awsops' images and snapshots in ``region`` made more than ``older_than_days``
    days before ``now`` (by their ``awsops:date`` tag)."""
    cutoff = (now - dt.timedelta(days=older_than_days)).date()
    found: list[Backup] = []
    image_snapshots: set[str] = set()
    ours = [{"Name": "tag-key", "Values": [TAG_PLAN]}]
    for image in iter_items(
        ec2, "describe_images", "Images[]", {"Owners": ["self"], "Filters": ours}, region=region
    ):
        snaps = [
            m["Ebs"]["SnapshotId"]
            for m in image.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("SnapshotId")
        ]
        image_snapshots.update(snaps)
        tags = _ours(image.get("Tags", []))
        if tags and dt.date.fromisoformat(tags[TAG_DATE]) < cutoff:
            found.append(
                Backup(
                    "image",
                    image["ImageId"],
                    region,
                    tags[TAG_PLAN],
                    tags.get(TAG_INSTANCE, ""),
                    tags[TAG_DATE],
                    snaps,
                )
            )
    for snap in iter_items(
        ec2,
        "describe_snapshots",
        "Snapshots[]",
        {"OwnerIds": ["self"], "Filters": ours},
        region=region,
    ):
        if snap["SnapshotId"] in image_snapshots:
            continue  # goes (or stays) with its image
        tags = _ours(snap.get("Tags", []))
        if tags and dt.date.fromisoformat(tags[TAG_DATE]) < cutoff:
            found.append(
                Backup(
                    "snapshot",
                    snap["SnapshotId"],
                    region,
                    tags[TAG_PLAN],
                    tags.get(TAG_INSTANCE, ""),
                    tags[TAG_DATE],
                )
            )
    return found


def delete_backups(
    ec2: Any, backups: Sequence[Backup], stopping: Callable[[], bool] = lambda: False
) -> None:
    """Deregister each image (then delete its snapshots) and delete each snapshot; the
    outcome of each is set on it. Stops starting new deletions once ``stopping()``."""
    for b in backups:
        if stopping():
            b.outcome, b.reason = "not-done", "stopped"
            continue
        try:
            if b.kind == "image":
                ec2.deregister_image(ImageId=b.backup_id)
                for sid in b.snapshots:
                    ec2.delete_snapshot(SnapshotId=sid)
            else:
                ec2.delete_snapshot(SnapshotId=b.backup_id)
        except (ClientError, BotoCoreError) as exc:
            err = translate(exc, region=b.region)
            b.outcome, b.reason = "failed", err.one_line()
            continue
        b.outcome = "deleted"


@dataclass(frozen=True)
class RetentionRule:
    resource_type: str
    identifier: str | None  # None: there is no rule for awsops' backups
    days: int | None


def recycle_bin_rules(rbin: Any, region: str) -> list[RetentionRule]:
    """The Recycle Bin rule that covers awsops' backups (by tag), per resource type."""
    out = []
    for kind in RBIN_TYPES:
        try:
            rules = rbin.list_rules(
                ResourceType=kind, ResourceTags=[{"ResourceTagKey": TAG_PLAN}]
            ).get("Rules", [])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="ListRules", region=region) from exc
        rule = rules[0] if rules else None
        period = (rule or {}).get("RetentionPeriod", {})
        out.append(
            RetentionRule(kind, (rule or {}).get("Identifier"), period.get("RetentionPeriodValue"))
        )
    return out


def create_recycle_bin_rule(rbin: Any, region: str, kind: str, days: int) -> str:
    """A Recycle Bin rule keeping deleted awsops backups of ``kind`` for ``days``."""
    try:
        resp = rbin.create_rule(
            ResourceType=kind,
            RetentionPeriod={"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
            ResourceTags=[{"ResourceTagKey": TAG_PLAN}],
            Description="awsops decommission backups: recoverable after prune-backups",
            Tags=[{"Key": "awsops:managed", "Value": "true"}],
        )
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation="CreateRule", region=region) from exc
    return str(resp["Identifier"])
