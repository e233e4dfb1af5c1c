"""The demo fleet over several regions, for the storm suite and ``benchmarks/storm.py``:
seeding, the plan of every region, and ``fleet.py``'s decommission checks made region by
region (moto read directly in each region, never through the fault proxy)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from awsops.sandbox.faults import MutationRecord
from awsops.sandbox.seed import seed_demo
from tests.helpers import run_cli
from tests.reliability.conftest import Proxied
from tests.reliability.fleet import (
    Instance,
    LedgerCheck,
    assert_decommissioned_exactly,
    read_ledger,
    truth,
)

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2")
# Instances the planner reads termination protection for: the long-stopped ones without a
# protection tag, outside Auto Scaling (the chosen ones and the API-protected ones).
ATTRIBUTE_CANDIDATES = frozenset({"stopped-45d", "stopped-200d", "termination-protected"})

Fleets = dict[str, dict[str, Instance]]  # region -> instance id -> instance


def seed_regions(proxied: Proxied, regions: Sequence[str], per_region: int) -> Fleets:
    """Seed the demo fleet straight into moto, ``per_region`` instances in each region;
    return every instance by region and id."""
    from awsops.config import ClientSettings

    seed_demo(
        proxied.aws.session(regions[0]),
        ClientSettings(endpoint_url=proxied.aws.endpoint, max_attempts=3),
        proxied.aws.server_url,
        list(regions),
        per_region,
        with_buckets=False,
    )
    return truth_by_region(proxied, regions)


def truth_by_region(proxied: Proxied, regions: Sequence[str]) -> Fleets:
    """Every instance of each region as moto has it now."""
    return {r: truth(dataclasses.replace(proxied, region=r)) for r in regions}


def plan_regions(plan: Path, regions: Sequence[str]) -> Path:
    """``awsops --sandbox decommission plan --older-than 30d`` of ``regions`` into
    ``plan``, in a subprocess (so that a module-scoped fixture can make it)."""
    argv = ["--sandbox", "decommission", "plan", "--older-than", "30d"]
    made = run_cli([*argv, "--regions", ",".join(regions), "-o", str(plan)])
    assert made.code == 0, made.stderr[-2000:]
    return plan


def every_instance(fleets: Mapping[str, Mapping[str, Instance]]) -> dict[str, Instance]:
    return {iid: inst for fleet in fleets.values() for iid, inst in fleet.items()}


def _subjects(record: MutationRecord) -> set[str]:
    """The instance and volume ids a mutating call named or changed."""
    named = {v for k, v in record.params.items() if k.startswith("InstanceId") or k == "VolumeId"}
    return named | {iid for iid, _, _ in record.changes}


def records_of_region(
    records: Sequence[MutationRecord], fleets: Mapping[str, Mapping[str, Instance]], region: str
) -> list[MutationRecord]:
    """The ledger as one region's checks must see it: the calls about that region's
    instances and volumes, and every call about nothing of any region's fleet (which
    then fails the checks of every region), in the order the server answered them."""
    owner: dict[str, str] = {}
    for r, fleet in fleets.items():
        for iid, inst in fleet.items():
            owner[iid] = r
            owner.update(dict.fromkeys(inst.deletable_volumes, r))
    out = []
    for rec in records:
        regions = {owner[s] for s in _subjects(rec) if s in owner}
        if region in regions or not regions:
            out.append(rec)
    return out


def assert_decommissioned_in_regions(
    proxied: Proxied,
    before: Mapping[str, dict[str, Instance]],
    planned: set[str],
    records: Sequence[MutationRecord],
) -> LedgerCheck:
    """``fleet.assert_decommissioned_exactly`` in each region, on that region's part of
    the ledger: every planned instance terminated exactly once, after a completed snapshot
    of each of its deletable volumes; nothing unplanned touched, in any region. Returns
    the figures of the whole ledger."""
    for region, fleet in before.items():
        assert_decommissioned_exactly(
            dataclasses.replace(proxied, region=region),
            fleet,
            planned & set(fleet),
            records_of_region(records, before, region),
        )
    return read_ledger(list(records))


# --- what the proxy must have counted -------------------------------------------------


def plan_calls(fleets: Mapping[str, Mapping[str, Instance]]) -> dict[str, int]:
    """Calls that must reach EC2, exactly, to plan ``fleets``: termination protection is
    read once per candidate (EC2 has no batch form of DescribeInstanceAttribute)."""
    every = every_instance(fleets)
    candidates = sum(1 for inst in every.values() if inst.category in ATTRIBUTE_CANDIDATES)
    return {"ec2:DescribeInstanceAttribute": candidates}


def apply_calls(
    fleets: Mapping[str, Mapping[str, Instance]], planned: set[str], batch_size: int
) -> dict[str, int]:
    """Calls that must reach EC2, exactly, to apply the plan of ``planned``: protection
    is read again once per planned instance; one CreateSnapshot per deletable volume and
    one TerminateInstances per batch, plus one DryRun probe of each per region with work.
    More would mean a mutation was repeated."""
    every = every_instance(fleets)
    per_region = [len(planned & set(fleet)) for fleet in fleets.values()]
    probes = sum(1 for n in per_region if n)
    return {
        "ec2:DescribeInstanceAttribute": len(planned),
        "ec2:CreateSnapshot": sum(len(every[i].deletable_volumes) for i in planned) + probes,
        "ec2:TerminateInstances": sum(-(-n // batch_size) for n in per_region) + probes,
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
