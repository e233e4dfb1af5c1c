"""Throttling storm: inventory and decommission of a large fleet while 30% of calls are
throttled. Every item comes back once, exactly the right instances are terminated (each
after its backups completed), and the number of calls stays bounded.

The fleet is 2,000 instances (times ``AWSOPS_RELIABILITY_SCALE``); it is seeded straight
into moto, then awsops talks to it only through the fault proxy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import invoke
from tests.reliability.conftest import FIGURES, Proxied, record_proxy, scale, scaled
from tests.reliability.fleet import (
    REGION,
    apply_fleet_plan,
    assert_decommissioned_exactly,
    expected_choice,
    plan_fleet,
    planned_ids,
    seed_fleet,
)

FLEET = scaled(2000, minimum=24)
# Under a steady random throttle botocore's adaptive mode holds each client near one
# call per second, and planning and applying 2,000 instances costs about 2,000 calls
# (DescribeInstanceAttribute per candidate, at plan and again at apply, and one
# CreateSnapshot per deletable volume): the decommission test takes about half an hour.
STORM_TIMEOUT = 3600 * max(1.0, scale())
# moto pages DescribeInstances by reservation, so the full fleet lists in a few calls;
# this seed throttles the first two of them, and the rest of the stream stays random.
STORM = "throttle=0.3,seed=4"


@pytest.mark.slow
def test_inventory_of_full_fleet_under_throttling_storm(
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


# Instances the planner reads termination protection for: the long-stopped ones without a
# protection tag, outside Auto Scaling (the chosen ones and the API-protected ones).
ATTRIBUTE_CANDIDATES = frozenset({"stopped-45d", "stopped-200d", "termination-protected"})


@pytest.mark.slow
@pytest.mark.timeout(STORM_TIMEOUT)
def test_decommission_of_full_fleet_under_throttling_storm(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = seed_fleet(proxied, FLEET)
    proxy = proxied.proxy
    proxy.set_spec(STORM)

    # Plan: read-only, and exactly the long-stopped, unprotected instances.
    started = time.monotonic()
    plan = plan_fleet(tmp_path / "plan.json", capsys)
    planned = planned_ids(plan)
    assert planned == expected_choice(before)
    assert not proxy.stats.mutation_list()
    snap = proxy.stats.snapshot()
    candidates = sum(1 for inst in before.values() if inst.category in ATTRIBUTE_CANDIDATES)
    assert snap["forwarded"]["ec2:DescribeInstanceAttribute"] == candidates
    assert snap["faults"]["throttle"] > 0.2 * snap["total_calls"]
    assert snap["total_calls"] <= 3 * sum(snap["forwarded"].values()) + 10
    record_proxy(proxy)
    FIGURES["storm: plan seconds"] += round(time.monotonic() - started)
    FIGURES["storm: fleet planned"] += FLEET
    proxy.stats.reset()

    started = time.monotonic()
    apply_fleet_plan(plan, capsys)
    ledger = assert_decommissioned_exactly(proxied, before, planned, proxy.stats.mutation_list())

    snap = proxy.stats.snapshot()
    assert snap["faults"]["throttle"] > 0.2 * snap["total_calls"]
    assert snap["total_calls"] <= 3 * sum(snap["forwarded"].values()) + 10
    forwarded = snap["forwarded"]
    # Bounded and exact where it matters: protection is read again once per planned
    # instance; one CreateSnapshot per deletable volume and one TerminateInstances per
    # batch of 50 reached EC2, plus one DryRun probe of each: no mutation was repeated.
    assert forwarded["ec2:DescribeInstanceAttribute"] == len(planned)
    assert forwarded.get("ec2:CreateSnapshot", 0) == len(ledger.snapshots_created) + 1
    assert forwarded.get("ec2:TerminateInstances", 0) == -(-len(planned) // 50) + 1
    record_proxy(proxy, items_checked=len(before))
    FIGURES["storm: instances terminated"] += len(planned)
    FIGURES["storm: snapshots checked"] += len(ledger.snapshots_created)
    FIGURES["storm: apply seconds"] += round(time.monotonic() - started)
