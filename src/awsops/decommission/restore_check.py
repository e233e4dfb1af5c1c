"""Before a restore changes anything: does everything a faithful restore needs still
exist and is it usable? Read-only.

Blocking (the instance is not restored): the image is gone or not available; the
subnet, a security group, the instance profile, the key pair or a KMS key of its
volumes is gone or unusable. Differences (restored anyway, and reported): the private
IP is taken now, an Elastic IP was released or is associated elsewhere, a surviving
data volume is gone or attached elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from awsops.errors import AwsError, NotFoundError, translate


@dataclass
class RestoreCheck:
    """What stands in the way of restoring one instance, and what will differ."""

    instance_id: str
    image_id: str | None
    blocking: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    private_ip: str | None = None  # to ask for again, if still free
    elastic_ips: list[str] = field(default_factory=list)  # allocation ids to associate
    # of those, the ones still shown on the terminated instance (taken back from it)
    take_back: set[str] = field(default_factory=set)
    volumes: list[dict[str, Any]] = field(default_factory=list)  # surviving, to attach

    @property
    def ok(self) -> bool:
        return not self.blocking


def _exists(call: Callable[[], Any], operation: str, region: str) -> bool:
    """True if the describe call finds the resource; False if AWS says it does not exist."""
    try:
        call()
    except (ClientError, BotoCoreError) as exc:
        err = translate(exc, operation=operation, region=region)
        if isinstance(err, NotFoundError) or (
            isinstance(err, AwsError) and "NotFound" in (err.code or "")
        ):
            return False
        raise err from exc
    return True


def check_restore(
    ec2: Any,
    iam: Any,
    kms: Any,
    region: str,
    capture: Mapping[str, Any],
    image_id: str | None,
) -> RestoreCheck:
    """The pre-flight of one instance's restore (see the module docstring)."""
    iid = str(capture["instance_id"])
    check = RestoreCheck(iid, image_id)
    if not image_id:
        check.blocking.append("no backup image was made for it (--backup image)")
    else:
        images = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])
        state = next((i.get("State") for i in images.get("Images", [])), None)
        if state != "available":
            check.blocking.append(f"image {image_id} is {state or 'gone'}")
    subnet = capture.get("subnet_id")
    if subnet and not ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [subnet]}]).get(
        "Subnets"
    ):
        check.blocking.append(f"subnet {subnet} is gone")
    groups = list(capture.get("security_group_ids") or [])
    if groups:
        found = {
            g["GroupId"]
            for g in ec2.describe_security_groups(
                Filters=[{"Name": "group-id", "Values": groups}]
            ).get("SecurityGroups", [])
        }
        check.blocking += [f"security group {g} is gone" for g in groups if g not in found]
    profile = capture.get("iam_instance_profile_arn")
    if profile:
        name = str(profile).rsplit("/", 1)[-1]
        if not _exists(
            lambda: iam.get_instance_profile(InstanceProfileName=name), "GetInstanceProfile", region
        ):
            check.blocking.append(f"instance profile {name} is gone")
    key = capture.get("key_name")
    if key and not ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [key]}]).get(
        "KeyPairs"
    ):
        check.blocking.append(f"key pair {key} is gone")
    for vol in capture.get("volumes") or []:
        key_id = vol.get("kms_key_id")
        if key_id and vol.get("encrypted"):
            try:
                meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
            except (ClientError, BotoCoreError) as exc:
                err = translate(exc, operation="DescribeKey", region=region)
                code = err.code if isinstance(err, AwsError) else type(err).__name__
                check.blocking.append(f"KMS key {key_id} is not usable: {code}")
                continue
            if meta.get("KeyState") != "Enabled":
                check.blocking.append(f"KMS key {key_id} is {meta.get('KeyState')}")
    _check_network(ec2, capture, check)
    _check_surviving_volumes(ec2, capture, check)
    return check


def _check_network(ec2: Any, capture: Mapping[str, Any], check: RestoreCheck) -> None:
    # An address still shown on the terminated instance itself is free to take back
    # (EC2 disassociates on termination; some emulators leave the association).
    ip, subnet = capture.get("private_ip"), capture.get("subnet_id")
    if ip and subnet:
        taken = ec2.describe_network_interfaces(
            Filters=[
                {"Name": "subnet-id", "Values": [subnet]},
                {"Name": "addresses.private-ip-address", "Values": [ip]},
            ]
        ).get("NetworkInterfaces")
        if taken:
            check.differences.append(f"private IP {ip} is taken now: another one is given")
        else:
            check.private_ip = ip
    wanted = [
        e["allocation_id"] for e in capture.get("elastic_ips") or [] if e.get("allocation_id")
    ]
    if wanted:
        found = {
            a["AllocationId"]: a
            for a in ec2.describe_addresses(
                Filters=[{"Name": "allocation-id", "Values": wanted}]
            ).get("Addresses", [])
        }
        for alloc in wanted:
            address = found.get(alloc)
            if address is None:
                check.differences.append(f"Elastic IP {alloc} was released: not associated")
            elif address.get("AssociationId") and address.get("InstanceId") != check.instance_id:
                check.differences.append(
                    f"Elastic IP {alloc} ({address.get('PublicIp')}) is associated elsewhere now"
                )
            else:
                check.elastic_ips.append(alloc)
                if address.get("AssociationId"):
                    check.take_back.add(alloc)


def _check_surviving_volumes(ec2: Any, capture: Mapping[str, Any], check: RestoreCheck) -> None:
    kept = [v for v in capture.get("volumes") or [] if not v.get("delete_on_termination")]
    if not kept:
        return
    found = {
        v["VolumeId"]: v
        for v in ec2.describe_volumes(
            Filters=[{"Name": "volume-id", "Values": [v["volume_id"] for v in kept]}]
        ).get("Volumes", [])
    }
    for vol in kept:
        now = found.get(vol["volume_id"])
        if now is None:
            check.differences.append(f"volume {vol['volume_id']} ({vol['device']}) is gone")
        elif now.get("State") != "available":
            check.differences.append(
                f"volume {vol['volume_id']} ({vol['device']}) is {now.get('State')}: not attached"
            )
        else:
            check.volumes.append(vol)
