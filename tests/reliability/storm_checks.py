"""What the proxy must count when a demo fleet over several regions is planned and
applied (``apply_world.py`` seeds it and judges the outcome): the storm suite's and
``benchmarks/storm.py``'s exact call counts and bounds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.reliability.apply_world import Instance

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2")
# Instances the planner reads termination protection for: the long-stopped ones without a
# protection tag, outside Auto Scaling (the chosen ones and the API-protected ones).
ATTRIBUTE_CANDIDATES = frozenset({"stopped-45d", "stopped-200d", "termination-protected"})


def plan_calls(fleet: Mapping[str, Instance]) -> dict[str, int]:
    """Calls that must reach EC2, exactly, to plan ``fleet``: termination protection is
    read once per candidate (EC2 has no batch form of DescribeInstanceAttribute)."""
    candidates = sum(1 for inst in fleet.values() if inst.category in ATTRIBUTE_CANDIDATES)
    return {"ec2:DescribeInstanceAttribute": candidates}


def apply_calls(fleet: Mapping[str, Instance], chosen: set[str], batch_size: int) -> dict[str, int]:
    """Calls that must reach EC2, exactly, to apply the plan of ``chosen``: protection is
    read again once per planned instance; one CreateSnapshots per instance whose volumes
    are all deleted by termination, one CreateSnapshot per deletable volume of the
    others, and one TerminateInstances per batch, plus one DryRun probe of each per
    region that needs it. More would mean a mutation was repeated."""
    per_region: dict[str, int] = {}
    whole: dict[str, int] = {}
    single: dict[str, int] = {}
    for iid in chosen:
        inst = fleet[iid]
        per_region[inst.region] = per_region.get(inst.region, 0) + 1
        if inst.one_snapshot_call:
            whole[inst.region] = whole.get(inst.region, 0) + 1
        elif inst.deletable_volumes:
            single[inst.region] = single.get(inst.region, 0) + len(inst.deletable_volumes)
    return {
        "ec2:DescribeInstanceAttribute": len(chosen),
        "ec2:CreateSnapshot": sum(single.values()) + len(single),
        "ec2:CreateSnapshots": sum(whole.values()) + len(whole),
        "ec2:TerminateInstances": sum(-(-n // batch_size) for n in per_region.values())
        + len(per_region),
    }


def throttled(snap: Mapping[str, Any], action: str) -> int:
    """Calls of ``action`` (``service:Action``) that a token bucket or the random
    throttle refused, from the proxy's counters."""
    faults = snap["faults_by_action"].get(action, {})
    return int(faults.get("bucket", 0) + faults.get("throttle", 0))


def bounded(snap: Mapping[str, Any]) -> bool:
    """Each call that got through was throttled a few times at most: calls sent are
    within 3 per call answered (plus 10)."""
    return bool(snap["total_calls"] <= 3 * sum(snap["forwarded"].values()) + 10)
