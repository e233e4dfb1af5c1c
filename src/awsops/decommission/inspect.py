"""Read-only EC2 look-ups shared by the planner and the executor.

Both describe the same facts the same way, so "does reality still match the plan?" is a
comparison of two values built by one function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from awsops import ec2ops
from awsops.decommission.model import InstanceFacts, Volume
from awsops.decommission.stoptime import StopTime, from_instance
from awsops.paginate import iter_items
from awsops.waiters import chunked

FILTER_BATCH = 200  # EC2 accepts at most 200 values per filter
ASG_BATCH = 50  # DescribeAutoScalingInstances takes at most 50 ids
PAGE_SIZE = 1000  # DescribeInstances MaxResults maximum


def facts_from_instance(inst: Mapping[str, Any], stop: StopTime | None = None) -> InstanceFacts:
    """Facts of a described instance (stop time from its StateTransitionReason unless
    ``stop`` is given, e.g. from CloudTrail)."""
    stop = stop or from_instance(inst)
    volumes = tuple(
        Volume(
            volume_id=m["Ebs"]["VolumeId"],
            device=m.get("DeviceName", ""),
            delete_on_termination=bool(m["Ebs"].get("DeleteOnTermination", False)),
        )
        for m in inst.get("BlockDeviceMappings", [])
        if "Ebs" in m and m["Ebs"].get("VolumeId")
    )
    launch = inst.get("LaunchTime")
    return InstanceFacts(
        instance_id=inst["InstanceId"],
        state=inst.get("State", {}).get("Name", "unknown"),
        stop_time=stop.at,
        stop_source=stop.source,
        launch_time=launch if launch is not None else None,
        tags={t["Key"]: t.get("Value", "") for t in inst.get("Tags", [])},
        volumes=volumes,
        availability_zone=inst.get("Placement", {}).get("AvailabilityZone"),
        instance_type=inst.get("InstanceType"),
        state_reason=inst.get("StateTransitionReason"),
    )


def iter_stopped(ec2: Any, region: str, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
    """Every stopped instance of the region, all pages, filtered server-side."""
    yield from iter_items(
        ec2,
        "describe_instances",
        "Reservations[].Instances[]",
        {"Filters": [{"Name": "instance-state-name", "Values": ["stopped"]}]},
        page_size=page_size,
        region=region,
    )


def describe_by_ids(ec2: Any, region: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Describe instances by id, batched through the ``instance-id`` filter: an id that no
    longer exists is simply absent (no NotFound failing the whole batch)."""
    found: dict[str, dict[str, Any]] = {}
    for batch in chunked(dict.fromkeys(ids), FILTER_BATCH):
        for inst in iter_items(
            ec2,
            "describe_instances",
            "Reservations[].Instances[]",
            {"Filters": [{"Name": "instance-id", "Values": batch}]},
            page_size=PAGE_SIZE,
            region=region,
        ):
            found[inst["InstanceId"]] = inst
    return found


def asg_membership(autoscaling: Any, region: str, ids: Sequence[str]) -> dict[str, str]:
    """Instance id -> Auto Scaling group name, for members among ``ids``."""
    out: dict[str, str] = {}
    for batch in chunked(ids, ASG_BATCH):
        for item in iter_items(
            autoscaling,
            "describe_auto_scaling_instances",
            "AutoScalingInstances[]",
            {"InstanceIds": batch},
            region=region,
        ):
            out[item["InstanceId"]] = item["AutoScalingGroupName"]
    return out


def volume_details(ec2: Any, region: str, volume_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Volume id -> described volume (size, type), batched through the volume-id filter."""
    out: dict[str, dict[str, Any]] = {}
    for batch in chunked(dict.fromkeys(volume_ids), FILTER_BATCH):
        for vol in iter_items(
            ec2,
            "describe_volumes",
            "Volumes[]",
            {"Filters": [{"Name": "volume-id", "Values": batch}]},
            region=region,
        ):
            out[vol["VolumeId"]] = vol
    return out


def enrich(
    ec2: Any, autoscaling: Any, region: str, candidates: Sequence[InstanceFacts]
) -> list[InstanceFacts]:
    """Add termination protection, ASG membership and volume sizes to candidates.

    The three look-ups are independent, so Auto Scaling membership and volume sizes (a
    few batched calls each) are read on their own threads while termination protection
    (one call per instance, paced by the rate limiter) is read on this one."""
    ids = [f.instance_id for f in candidates]
    volume_ids = [v.volume_id for f in candidates for v in f.volumes]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="awsops-lookup") as pool:
        asg_future = pool.submit(asg_membership, autoscaling, region, ids)
        vols_future = pool.submit(volume_details, ec2, region, volume_ids)
        protected = set(ec2ops.protected_instances(ec2, ids))
        asg, vols = asg_future.result(), vols_future.result()
    out = []
    for f in candidates:
        volumes = tuple(
            dataclasses.replace(
                v,
                size_gib=vols.get(v.volume_id, {}).get("Size"),
                volume_type=vols.get(v.volume_id, {}).get("VolumeType"),
            )
            for v in f.volumes
        )
        out.append(
            dataclasses.replace(
                f,
                termination_protection=f.instance_id in protected,
                asg_name=asg.get(f.instance_id),
                volumes=volumes,
            )
        )
    return out
