"""What a faithful restore needs, read before an instance is terminated: read-only.

From DescribeInstances (already made by verification): type, subnet, private IPs,
security groups, IAM instance profile, key name, tags, placement and tenancy, CPU,
metadata and hibernation options, EBS optimisation, ENA, boot mode, product codes and
the block device mapping. From DescribeInstanceAttribute: user data, termination and
stop protection, shutdown behaviour, source/destination check. From DescribeAddresses:
the Elastic IPs associated with it (never released). From DescribeVolumes: each
volume's type, size, IOPS, throughput and KMS key.

The capture is journaled (the journal is private, 0600: user data can hold secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from awsops.decommission import inspect
from awsops.errors import translate

ATTRIBUTES = (
    ("userData", "UserData", "user_data"),
    ("disableApiTermination", "DisableApiTermination", "disable_api_termination"),
    ("disableApiStop", "DisableApiStop", "disable_api_stop"),
    ("instanceInitiatedShutdownBehavior", "InstanceInitiatedShutdownBehavior", "shutdown_behavior"),
    ("sourceDestCheck", "SourceDestCheck", "source_dest_check"),
)


def _attribute(ec2: Any, region: str, instance_id: str, name: str, key: str) -> Any:
    try:
        resp = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=name)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation="DescribeInstanceAttribute", region=region) from exc
    value = resp.get(key)
    return value.get("Value") if isinstance(value, Mapping) else value


def elastic_ips(ec2: Any, region: str, instance_id: str) -> list[dict[str, Any]]:
    """The Elastic IPs associated with the instance now."""
    try:
        resp = ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": [instance_id]}])
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation="DescribeAddresses", region=region) from exc
    return [
        {
            "allocation_id": a.get("AllocationId"),
            "public_ip": a.get("PublicIp"),
            "private_ip": a.get("PrivateIpAddress"),
        }
        for a in resp.get("Addresses", [])
    ]


def _volumes(ec2: Any, region: str, inst: Mapping[str, Any]) -> list[dict[str, Any]]:
    mappings = [m for m in inst.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("VolumeId")]
    described = inspect.volume_details(ec2, region, [m["Ebs"]["VolumeId"] for m in mappings])
    out = []
    for m in mappings:
        vid = m["Ebs"]["VolumeId"]
        v = described.get(vid, {})
        out.append(
            {
                "volume_id": vid,
                "device": m.get("DeviceName"),
                "delete_on_termination": bool(m["Ebs"].get("DeleteOnTermination")),
                "volume_type": v.get("VolumeType"),
                "size_gib": v.get("Size"),
                "iops": v.get("Iops"),
                "throughput": v.get("Throughput"),
                "encrypted": v.get("Encrypted"),
                "kms_key_id": v.get("KmsKeyId"),
            }
        )
    return out


def capture(ec2: Any, region: str, inst: Mapping[str, Any]) -> dict[str, Any]:
    """The restore record of one described instance (see the module docstring)."""
    iid = str(inst["InstanceId"])
    enis = inst.get("NetworkInterfaces") or []
    primary = next((e for e in enis if e.get("Attachment", {}).get("DeviceIndex") == 0), None)
    secondary = [
        p["PrivateIpAddress"]
        for p in (primary or {}).get("PrivateIpAddresses", [])
        if not p.get("Primary") and p.get("PrivateIpAddress")
    ]
    record: dict[str, Any] = {
        "instance_id": iid,
        "instance_type": inst.get("InstanceType"),
        "source_image_id": inst.get("ImageId"),
        "subnet_id": inst.get("SubnetId"),
        "vpc_id": inst.get("VpcId"),
        "private_ip": inst.get("PrivateIpAddress"),
        "secondary_private_ips": secondary,
        "security_group_ids": sorted(g["GroupId"] for g in inst.get("SecurityGroups", [])),
        "iam_instance_profile_arn": (inst.get("IamInstanceProfile") or {}).get("Arn"),
        "key_name": inst.get("KeyName"),
        "tags": {t["Key"]: t.get("Value", "") for t in inst.get("Tags", [])},
        "placement": {
            k: v
            for k, v in (inst.get("Placement") or {}).items()
            if k in ("AvailabilityZone", "Tenancy", "GroupName", "HostId", "Affinity") and v
        },
        "cpu_options": inst.get("CpuOptions"),
        "metadata_options": {
            k: v for k, v in (inst.get("MetadataOptions") or {}).items() if k != "State"
        },
        "hibernation": bool((inst.get("HibernationOptions") or {}).get("Configured")),
        "ebs_optimized": inst.get("EbsOptimized"),
        "ena_support": inst.get("EnaSupport"),
        "boot_mode": inst.get("BootMode"),
        "product_codes": inst.get("ProductCodes") or [],
        "root_device_name": inst.get("RootDeviceName"),
        "volumes": _volumes(ec2, str(region), inst),
        "elastic_ips": elastic_ips(ec2, region, iid),
    }
    for name, key, field in ATTRIBUTES:
        record[field] = _attribute(ec2, region, iid, name, key)
    return record
