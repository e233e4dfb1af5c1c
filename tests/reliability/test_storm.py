"""Throttling storm: inventory and decommission of a large fleet while 30% of calls are
throttled. Every item comes back once, exactly the right instances are terminated (each
after its backups completed), and the number of calls stays bounded.

The fleet is 2,000 instances (times ``AWSOPS_RELIABILITY_SCALE``); it is seeded straight
into moto, then awsops talks to it only through the fault proxy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import invoke
from tests.reliability.conftest import FIGURES, Proxied, record_proxy, scaled
from tests.reliability.fleet import (
    REGION,
    assert_decommissioned_exactly,
    expected_choice,
    planned_ids,
    seed_fleet,
)

FLEET = scaled(2000, minimum=24)
# Applying costs about 1.5 CreateSnapshot calls per planned instance, and under a steady
# 30% random throttle botocore's adaptive mode slows each client to about one call per
# second (see docs/reliability.md). CI applies a smaller fleet; set
# AWSOPS_RELIABILITY_APPLY_FLEET=2000 to apply the full one by hand.
APPLY_FLEET = int(os.environ.get("AWSOPS_RELIABILITY_APPLY_FLEET") or scaled(120, minimum=24))
# moto pages DescribeInstances by reservation, so the full fleet lists in a few calls;
# this seed throttles the first two of them, and the rest of the stream stays random.
STORM = "throttle=0.3,seed=4"


def _plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    plan = tmp_path / "plan.json"
    result = invoke(
        [
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            REGION,
            "-o",
            str(plan),
        ],
        capsys,
    )
    assert result.code == 0, result.stderr
    return plan


@pytest.mark.slow
def test_inventory_of_full_fleet_under_throttling_storm_and_its_plan(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = seed_fleet(proxied, FLEET)
    assert len(before) == FLEET
    proxy = proxied.proxy
    proxy.set_spec(STORM)

    started = time.monotonic()
    result = invoke(
        [
            "--sandbox",
            "inventory",
            "ec2-instances",
            "--regions",
            REGION,
            "--page-size",
            "5",
            "--output",
            "jsonl",
        ],
        capsys,
    )
    assert result.code == 0, result.stderr
    ids = [json.loads(line)["instance_id"] for line in result.stdout.splitlines() if line]
    assert len(ids) == len(set(ids)) == FLEET and set(ids) == set(before)
    snap = proxy.stats.snapshot()
    assert snap["total_faults"] > 0
    # Bounded: each call that got through was throttled a few times at most.
    assert snap["total_calls"] <= 3 * sum(snap["forwarded"].values()) + 10
    record_proxy(proxy, items_checked=len(ids))
    FIGURES["storm: inventory seconds"] += round(time.monotonic() - started)
    FIGURES["storm: fleet listed"] += FLEET

    # The plan of the full fleet (one DescribeInstanceAttribute per candidate: about
    # 1,200 calls, so without the storm here; test_apply_under_throttling_storm plans
    # under it) is read-only and chooses exactly the long-stopped, unprotected instances.
    proxy.set_spec("")
    proxy.stats.reset()
    plan = _plan(tmp_path, capsys)
    assert planned_ids(plan) == expected_choice(before)
    assert not proxy.stats.mutation_list()
    FIGURES["storm: fleet planned"] += FLEET
    FIGURES["items checked"] += len(before)


@pytest.mark.slow
def test_apply_under_throttling_storm(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = seed_fleet(proxied, APPLY_FLEET)
    proxy = proxied.proxy
    proxy.set_spec(STORM)
    plan = _plan(tmp_path, capsys)
    planned = planned_ids(plan)
    assert planned == expected_choice(before)

    started = time.monotonic()
    result = invoke(
        [
            "--sandbox",
            "decommission",
            "apply",
            str(plan),
            "--yes",
            "--snapshot-delay",
            "0",
            "--terminate-delay",
            "0",
            "--output",
            "json",
        ],
        capsys,
    )
    assert result.code == 0, result.stderr[-2000:]
    ledger = assert_decommissioned_exactly(proxied, before, planned, proxy.stats.mutation_list())

    snap = proxy.stats.snapshot()
    assert snap["faults"]["throttle"] > 0.2 * snap["total_calls"]
    assert snap["total_calls"] <= 3 * sum(snap["forwarded"].values()) + 10
    # Mutating calls that reached EC2: one CreateSnapshot per volume, TerminateInstances
    # per batch of 50, plus the two DryRun probes: no retry ever repeated a mutation.
    forwarded = snap["forwarded"]
    assert forwarded.get("ec2:CreateSnapshot", 0) == len(ledger.snapshots_created) + 1
    assert forwarded.get("ec2:TerminateInstances", 0) == -(-len(planned) // 50) + 1
    record_proxy(proxy, items_checked=len(before))
    FIGURES["storm: instances terminated"] += len(planned)
    FIGURES["storm: snapshots checked"] += len(ledger.snapshots_created)
    FIGURES["storm: apply seconds"] += round(time.monotonic() - started)
