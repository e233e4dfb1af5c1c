"""Throttling storm: inventory and decommission of a fleet over four regions while EC2
throttles as it really does, with request token buckets per account, region and action
(scaled down so that they bite moto), plus a modest random throttle. Every item comes
back once, exactly the right instances are terminated (each after its backups
completed), each mutating call reaches EC2 once, and the number of calls stays bounded;
the mutating calls themselves are throttled, and the test checks that they were.

The fleet (240 instances, times ``AWSOPS_RELIABILITY_SCALE``) is seeded straight into
moto once for the module; awsops then talks to it only through the fault proxy. The
plan is made once and read by the plan and apply cases. The 2,000-instance storm under a
steady 30% random throttle is ``benchmarks/storm.py``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from awsops.sandbox.faults import FaultProxy
from tests.helpers import invoke
from tests.reliability.apply_world import (
    Instance,
    assert_exactly_decommissioned,
    expected_choice,
    make_plan,
    planned,
    seed,
    truth,
)
from tests.reliability.conftest import FIGURES, Proxied, record_proxy, scaled
from tests.reliability.fleet import apply_fleet_plan
from tests.reliability.storm_checks import REGIONS, apply_calls, bounded, plan_calls, throttled

PER_REGION = scaled(60, minimum=24)
# EC2's buckets at 10% of their size and refill, per region and action (the proxy's
# classes): DescribeInstanceAttribute 10 calls then 2/s, CreateSnapshot 5 then 0.5/s,
# CreateSnapshots and TerminateInstances 20 then 0.5/s; and 5% of the calls that pass
# them throttled at random. Each region plans 15 of its 60 instances: with batches of
# one it sends 16 TerminateInstances (DryRun included), which their bucket lets through,
# so the refusals TerminateInstances meets are the random ones. With a seed, each action
# draws from its own stream, so they do not depend on how threads interleave: with seed
# 30 the first 64 TerminateInstances meet 3, the 68 CreateSnapshot(s) 7, the plan's 60
# DescribeInstanceAttribute 5 (a seed that gave none for TerminateInstances in some
# interleavings made this suite fail about one run in twenty).
STORM = "bucket=ec2,bucket_scale=0.1,throttle=0.05,seed=30"
BATCH = 1


def storm(proxy: FaultProxy) -> FaultProxy:
    """Zero the proxy's counters and let the storm begin."""
    proxy.stats.reset()
    proxy.set_spec(STORM)
    return proxy


@pytest.fixture(scope="module")
def fleet(module_proxied: Proxied) -> dict[str, Instance]:
    before = seed(module_proxied, REGIONS, PER_REGION)
    assert len(before) == PER_REGION * len(REGIONS)
    return before


@dataclass(frozen=True)
class Planned:
    path: Path
    ids: set[str]
    stats: dict[str, Any]
    mutations: int


@pytest.fixture(scope="module")
def storm_plan(
    fleet: dict[str, Instance],
    module_proxied: Proxied,
    module_proxy_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Planned:
    """``decommission plan`` of every region under the storm, made once."""
    proxy = storm(module_proxied.proxy)
    started = time.monotonic()
    path = tmp_path_factory.mktemp("storm") / "plan.json"
    chosen = planned(make_plan(path, REGIONS))
    FIGURES["storm: plan seconds"] += round(time.monotonic() - started)
    record_proxy(proxy)
    return Planned(path, chosen, proxy.stats.snapshot(), len(proxy.stats.mutation_list()))


def test_inventory_of_every_region_under_the_storm(
    fleet: dict[str, Instance],
    module_proxied: Proxied,
    module_proxy_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = storm(module_proxied.proxy)
    started = time.monotonic()
    result = invoke(
        [
            "--sandbox",
            "inventory",
            "ec2-instances",
            "--regions",
            ",".join(REGIONS),
            "--page-size",
            "2",
            "--output",
            "jsonl",
        ],
        capsys,
    )
    assert result.code == 0, result.stderr
    ids = [json.loads(line)["instance_id"] for line in result.stdout.splitlines() if line]
    assert len(ids) == len(set(ids)) == len(fleet) and set(ids) == set(fleet)
    snap = proxy.stats.snapshot()
    assert throttled(snap, "ec2:DescribeInstances") > 0, snap["faults_by_action"]
    assert bounded(snap), snap
    record_proxy(proxy, items_checked=len(ids))
    FIGURES["storm: inventory seconds"] += round(time.monotonic() - started)
    FIGURES["storm: fleet listed"] += len(ids)


def test_plan_under_the_storm_chooses_exactly_and_changes_nothing(
    fleet: dict[str, Instance], storm_plan: Planned
) -> None:
    assert storm_plan.ids == expected_choice(fleet)
    assert {fleet[i].region for i in storm_plan.ids} == set(REGIONS)
    assert storm_plan.mutations == 0  # read-only: no mutating call reached EC2
    snap = storm_plan.stats
    for action, n in plan_calls(fleet).items():
        assert snap["forwarded"].get(action, 0) == n, action
    # The per-candidate reads outrun their buckets in every region.
    assert throttled(snap, "ec2:DescribeInstanceAttribute") >= len(REGIONS), snap["faults"]
    assert bounded(snap), snap
    FIGURES["storm: fleet planned"] += len(fleet)


def test_apply_under_the_storm_terminates_exactly_the_plan_once_after_backups(
    fleet: dict[str, Instance],
    storm_plan: Planned,
    module_proxied: Proxied,
    module_proxy_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = storm(module_proxied.proxy)
    chosen = storm_plan.ids
    started = time.monotonic()
    apply_fleet_plan(storm_plan.path, capsys, "--batch-size", str(BATCH))
    ledger = assert_exactly_decommissioned(
        module_proxied, REGIONS, fleet, chosen, proxy.stats.mutation_list()
    )
    after = truth(module_proxied, REGIONS)
    assert {after[i].state for i in chosen} == {"terminated"}  # and done, not shutting down

    snap = proxy.stats.snapshot()
    assert bounded(snap), snap
    # Exact where it matters: no mutation was repeated (see apply_calls).
    for action, n in apply_calls(fleet, chosen, BATCH).items():
        assert snap["forwarded"].get(action, 0) == n, action
    # ... although EC2 refused the mutating calls again and again.
    snapshot_throttles = throttled(snap, "ec2:CreateSnapshot") + throttled(
        snap, "ec2:CreateSnapshots"
    )
    terminate_throttles = throttled(snap, "ec2:TerminateInstances")
    assert snapshot_throttles >= len(REGIONS), snap["faults_by_action"]
    assert terminate_throttles >= 1, snap["faults_by_action"]
    record_proxy(proxy, items_checked=len(fleet))
    FIGURES["storm: instances terminated"] += len(chosen)
    FIGURES["storm: snapshots checked"] += len(ledger.snapshots_created)
    FIGURES["storm: CreateSnapshot(s) calls throttled"] += snapshot_throttles
    FIGURES["storm: TerminateInstances calls throttled"] += terminate_throttles
    FIGURES["storm: apply seconds"] += round(time.monotonic() - started)
