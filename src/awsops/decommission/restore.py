"""``decommission restore``: bring back instances a plan terminated, from their images.

For each instance: what the apply journal captured and the image it made ->
pre-flight (:mod:`~awsops.decommission.restore_check`, read-only; a blocking problem
means that instance is left alone) -> RunInstances from the image with the captured
settings and tags plus ``awsops:restored-from=<old id>`` -> the surviving data volumes
attached again and the Elastic IPs that are still allocated and free associated again
-> wait for ``running``.

Every step is journaled in the plan's restore journal (``restore.jsonl`` beside its
apply journal, locked). A restore never launches twice: right before RunInstances the
instance restored from the old one is looked for by tag, RunInstances carries a
ClientToken derived from the plan and the instance, and it goes through a client
without automatic retries (:func:`~awsops.decommission.createonce.send_once`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from awsops.cancel import CancelToken
from awsops.clients import make_client
from awsops.decommission.applyrun import ApplyRun
from awsops.decommission.createonce import StoppedError, send_once
from awsops.decommission.journal import Journal, JournalState, read_events, replay
from awsops.decommission.model import Plan, TargetPlan
from awsops.decommission.outcomes import ApplyOptions, TargetWork
from awsops.decommission.restore_check import RestoreCheck, check_restore
from awsops.decommission.verify import target_of
from awsops.errors import AwsopsError, UsageError, translate
from awsops.paginate import iter_items
from awsops.session import SessionFactory
from awsops.waitmany import wait_many

TAG_RESTORED_FROM = "awsops:restored-from"
METADATA_KEYS = ("HttpTokens", "HttpPutResponseHopLimit", "HttpEndpoint", "InstanceMetadataTags")


class RestoreEvent:
    REQUESTED = "restore-requested"
    LAUNCHED = "restore-launched"
    ATTACHED = "restore-volume-attached"
    ASSOCIATED = "restore-address-associated"
    RUNNING = "restore-running"
    FAILED = "restore-failed"


@dataclass
class RestoreResult:
    instance_id: str
    outcome: str  # restored | would-restore | refused | failed | not-done
    new_instance_id: str | None = None
    reason: str = ""
    differences: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "outcome": self.outcome,
            "new_instance_id": self.new_instance_id,
            "reason": self.reason,
            "differences": list(self.differences),
        }


def restore_journal_path(apply_journal: Path) -> Path:
    return apply_journal.with_name("restore.jsonl")


def client_token(plan_id: str, instance_id: str) -> str:
    """The same token for the same plan and instance, at most 64 characters."""
    digest = hashlib.sha256(f"{plan_id}/{instance_id}".encode()).hexdigest()[:40]
    return f"awsops-{digest}"


def run_parameters(
    capture: Mapping[str, Any], image_id: str, check: RestoreCheck, plan_id: str
) -> dict[str, Any]:
    """RunInstances parameters that bring the instance back as it was."""
    tags = {k: v for k, v in (capture.get("tags") or {}).items() if not k.startswith("aws:")}
    tags[TAG_RESTORED_FROM] = str(capture["instance_id"])
    tags["awsops:plan-id"] = plan_id
    params: dict[str, Any] = {
        "ImageId": image_id,
        "MinCount": 1,
        "MaxCount": 1,
        "InstanceType": capture.get("instance_type"),
        "ClientToken": client_token(plan_id, str(capture["instance_id"])),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    }
    if capture.get("subnet_id"):
        params["SubnetId"] = capture["subnet_id"]
    if check.private_ip:
        params["PrivateIpAddress"] = check.private_ip
    if capture.get("security_group_ids"):
        params["SecurityGroupIds"] = list(capture["security_group_ids"])
    if capture.get("iam_instance_profile_arn"):
        params["IamInstanceProfile"] = {"Arn": capture["iam_instance_profile_arn"]}
    if capture.get("key_name"):
        params["KeyName"] = capture["key_name"]
    if capture.get("user_data"):
        params["UserData"] = base64.b64decode(capture["user_data"]).decode("utf-8", "replace")
    placement = dict(capture.get("placement") or {})
    if placement:
        params["Placement"] = placement
    metadata = {
        k: v for k, v in (capture.get("metadata_options") or {}).items() if k in METADATA_KEYS
    }
    if metadata:
        params["MetadataOptions"] = metadata
    if capture.get("ebs_optimized") is not None:
        params["EbsOptimized"] = bool(capture["ebs_optimized"])
    if capture.get("hibernation"):
        params["HibernationOptions"] = {"Configured": True}
    for key, name in (
        ("disable_api_termination", "DisableApiTermination"),
        ("disable_api_stop", "DisableApiStop"),
    ):
        if capture.get(key) is not None:
            params[name] = bool(capture[key])
    if capture.get("shutdown_behavior"):
        params["InstanceInitiatedShutdownBehavior"] = capture["shutdown_behavior"]
    params["BlockDeviceMappings"] = [
        _volume_mapping(v)
        for v in capture.get("volumes") or []
        if v.get("delete_on_termination") and v.get("device")
    ]
    return {k: v for k, v in params.items() if v not in (None, [], {})}


def _volume_mapping(vol: Mapping[str, Any]) -> dict[str, Any]:
    """The captured type, size, IOPS and throughput of a volume the image restores
    (IOPS only where the type takes them, throughput only for gp3)."""
    kind = vol.get("volume_type")
    ebs: dict[str, Any] = {"DeleteOnTermination": True}
    if vol.get("size_gib") is not None:
        ebs["VolumeSize"] = vol["size_gib"]
    if kind:
        ebs["VolumeType"] = kind
    if vol.get("iops") is not None and kind in ("io1", "io2", "gp3"):
        ebs["Iops"] = vol["iops"]
    if vol.get("throughput") is not None and kind == "gp3":
        ebs["Throughput"] = vol["throughput"]
    return {"DeviceName": vol["device"], "Ebs": ebs}


class Restorer:
    """Restores instances of one plan (see the module docstring). One per run."""

    def __init__(
        self,
        plan: Plan,
        factory: SessionFactory,
        apply_journal: Path,
        dry_run: bool = False,
        running_delay: float = 15.0,
        running_polls: int = 40,
        cancel: CancelToken | None = None,
    ) -> None:
        self.plan = plan
        self.factory = factory
        self.apply_state: JournalState = replay(apply_journal)
        self.path = restore_journal_path(apply_journal)
        self.dry_run = dry_run
        self.running_delay = running_delay
        self.running_polls = running_polls
        options = ApplyOptions(dry_run=dry_run)
        self.run = ApplyRun(plan, options, factory.settings.max_attempts, cancel)
        self.where = {f.instance_id: tp for tp, f in plan.chosen}

    def restore(self, instance_ids: Sequence[str]) -> list[RestoreResult]:
        unknown = [i for i in instance_ids if i not in self.where]
        if unknown:
            raise UsageError(f"not in plan {self.plan.plan_id}: {', '.join(unknown)}")
        if self.dry_run:
            return [self._one(i, None) for i in instance_ids]
        journal = Journal(self.path, self.plan.plan_id)
        journal.open()
        self.run.journal = journal
        self.run.cancel.arm()
        done = _launched(self.path)
        try:
            return [self._one(i, done.get(i)) for i in instance_ids]
        finally:
            journal.close()

    def _clients(self, tp: TargetPlan) -> tuple[Any, Any, Any, Any]:
        session = self.factory.for_target(target_of(tp))
        settings = self.factory.settings
        import dataclasses

        ec2 = make_client(session, "ec2", tp.region, settings)
        once = make_client(session, "ec2", tp.region, dataclasses.replace(settings, max_attempts=1))
        iam = make_client(session, "iam", tp.region, settings)
        kms = make_client(session, "kms", tp.region, settings)
        return ec2, once, iam, kms

    def _one(self, iid: str, launched: str | None) -> RestoreResult:
        rec = self.apply_state.instances.get(iid)
        if rec is None or rec.capture is None:
            return RestoreResult(
                iid, "refused", reason="its apply captured nothing to restore from (--backup image)"
            )
        if self.run.stopping:
            return RestoreResult(iid, "not-done", reason=self.run.cancel.reason or "stopped")
        tp = self.where[iid]
        ec2, once, iam, kms = self._clients(tp)
        try:
            check = check_restore(
                ec2, iam, kms, tp.region, rec.capture, rec.image_id if rec.image_available else None
            )
            if not launched and self._still_there(ec2, tp.region, iid):
                check.blocking.append("the instance still exists: there is nothing to restore")
        except (ClientError, BotoCoreError) as exc:
            err = translate(exc, region=tp.region)
            return RestoreResult(iid, "failed", reason=f"pre-flight: {err.one_line()}")
        except AwsopsError as err:
            return RestoreResult(iid, "failed", reason=f"pre-flight: {err.one_line()}")
        result = RestoreResult(iid, "refused", launched, differences=list(check.differences))
        if not check.ok and not launched:
            result.reason = "; ".join(check.blocking)
            return result
        assert rec.image_id is not None
        params = run_parameters(rec.capture, rec.image_id, check, self.plan.plan_id)
        if self.dry_run:
            result.outcome, result.reason = "would-restore", f"from {rec.image_id}"
            return result
        try:
            new = launched or self._launch(TargetWork(tp, ec2, ec2_once=once), iid, params)
            self._finish(ec2, tp.region, iid, new, check)
        except StoppedError as err:
            result.outcome, result.reason = "not-done", str(err)
            return result
        except AwsopsError as err:
            self.run.record(RestoreEvent.FAILED, instance_id=iid, reason=err.one_line())
            result.outcome, result.reason = "failed", err.one_line()
            return result
        result.outcome, result.new_instance_id = "restored", new
        return result

    def _still_there(self, ec2: Any, region: str, iid: str) -> bool:
        for inst in iter_items(
            ec2,
            "describe_instances",
            "Reservations[].Instances[]",
            {"Filters": [{"Name": "instance-id", "Values": [iid]}]},
            region=region,
        ):
            return inst["State"]["Name"] not in ("terminated", "shutting-down")
        return False

    def _find_restored(self, ec2: Any, region: str, iid: str) -> str | None:
        for inst in iter_items(
            ec2,
            "describe_instances",
            "Reservations[].Instances[]",
            {
                "Filters": [
                    {"Name": f"tag:{TAG_RESTORED_FROM}", "Values": [iid]},
                    {"Name": "tag:awsops:plan-id", "Values": [self.plan.plan_id]},
                    {
                        "Name": "instance-state-name",
                        "Values": ["pending", "running", "stopping", "stopped"],
                    },
                ]
            },
            region=region,
        ):
            return str(inst["InstanceId"])
        return None

    def _launch(self, work: TargetWork, iid: str, params: Mapping[str, Any]) -> str:
        region = work.plan.region
        found = self._find_restored(work.ec2, region, iid)
        if found:
            self.run.record(
                RestoreEvent.LAUNCHED, instance_id=iid, new_instance_id=found, adopted=True
            )
            return found
        if self.run.stopping:
            raise StoppedError("stopped before RunInstances")
        self.run.record(RestoreEvent.REQUESTED, instance_id=iid, image_id=params["ImageId"])

        def send() -> str:
            resp = work.ec2_once.run_instances(**params)
            return str(resp["Instances"][0]["InstanceId"])

        new = send_once(
            self.run,
            work,
            "RunInstances",
            f"the restore of {iid}",
            send,
            lambda: self._find_restored(work.ec2, region, iid),
        )
        self.run.record(RestoreEvent.LAUNCHED, instance_id=iid, new_instance_id=new)
        return new

    def _finish(self, ec2: Any, region: str, iid: str, new: str, check: RestoreCheck) -> None:
        """Wait for running, then attach the surviving volumes and associate the
        Elastic IPs (each journaled; an address or volume taken meanwhile is noted)."""
        wait_many(
            ec2,
            "instance_running",
            "InstanceIds",
            [new],
            delay=self.running_delay,
            max_attempts=self.running_polls,
            stop=self.run.cancel.event,
        )
        self.run.record(RestoreEvent.RUNNING, instance_id=iid, new_instance_id=new)
        for vol in check.volumes:
            if self.run.stopping:
                raise StoppedError("stopped before attaching the data volumes")
            with _aws("AttachVolume", region):
                ec2.attach_volume(VolumeId=vol["volume_id"], InstanceId=new, Device=vol["device"])
            self.run.record(RestoreEvent.ATTACHED, instance_id=iid, volume_id=vol["volume_id"])
        for alloc in check.elastic_ips:
            if self.run.stopping:
                raise StoppedError("stopped before associating the Elastic IPs")
            with _aws("AssociateAddress", region):
                ec2.associate_address(
                    AllocationId=alloc,
                    InstanceId=new,
                    AllowReassociation=alloc in check.take_back,  # never from another one
                )
            self.run.record(RestoreEvent.ASSOCIATED, instance_id=iid, allocation_id=alloc)


@contextlib.contextmanager
def _aws(operation: str, region: str) -> Any:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation=operation, region=region) from exc


def _launched(path: Path) -> dict[str, str]:
    """Old instance id -> the instance an earlier restore run launched for it."""
    out: dict[str, str] = {}
    for e in read_events(path):
        if e.get("event") == RestoreEvent.LAUNCHED and e.get("instance_id"):
            out[str(e["instance_id"])] = str(e["new_instance_id"])
    return out
