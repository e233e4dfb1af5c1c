"""Connection resets during ``decommission apply``: EC2 did the work, the caller did not
hear it. TerminateInstances is safe to repeat (the executor describes after errors);
CreateSnapshot is not idempotent, so after a cut answer the executor looks for the
snapshot (by tag) before sending the call again: one snapshot per volume."""

from __future__ import annotations

from pathlib import Path

import pytest

from awsops.sandbox.faults import CallInfo
from tests.reliability.conftest import FIGURES, Proxied, record_proxy
from tests.reliability.fleet import (
    apply_fleet_plan,
    assert_decommissioned_exactly,
    plan_fleet,
    planned_ids,
    read_ledger,
    seed_fleet,
)


def _plan_and_apply(
    proxied: Proxied, tmp_path: Path, capsys: pytest.CaptureFixture[str], faults: str
) -> tuple[set[str], int]:
    plan = plan_fleet(tmp_path / "plan.json", capsys)
    proxied.proxy.set_spec(faults)
    apply_fleet_plan(plan, capsys, "--batch-size", "3")
    return planned_ids(plan), proxied.proxy.stats.faults["reset"]


def test_resets_on_terminate_end_with_each_instance_terminated_once(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = seed_fleet(proxied, 48)
    planned, resets = _plan_and_apply(
        proxied, tmp_path, capsys, "reset=0.5,only=TerminateInstances,seed=31"
    )
    assert resets > 0
    assert_decommissioned_exactly(proxied, before, planned, proxied.proxy.stats.mutation_list())
    record_proxy(proxied.proxy, items_checked=len(before))
    FIGURES["resets: TerminateInstances answers cut"] += resets


def test_resets_on_create_snapshot_leave_one_snapshot_per_volume(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = seed_fleet(proxied, 48)
    planned, resets = _plan_and_apply(
        proxied, tmp_path, capsys, "reset=0.5,only=CreateSnapshot,seed=32"
    )
    assert resets > 0
    ledger = read_ledger(proxied.proxy.stats.mutation_list())
    FIGURES["resets: CreateSnapshot answers cut"] += resets
    FIGURES["resets: extra snapshots from retried CreateSnapshot"] += sum(
        n - 1 for n in ledger.snapshots_created.values()
    )
    # Every deletable volume of every planned instance: one completed snapshot, made
    # before its instance was terminated; nothing else touched.
    assert_decommissioned_exactly(proxied, before, planned, proxied.proxy.stats.mutation_list())
    record_proxy(proxied.proxy, items_checked=len(before))


def test_5xx_on_create_snapshot_is_sent_again_after_looking(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The proxy answers these 5xx without forwarding: no snapshot was made, the executor
    # finds none (three looks, 7 s) and sends the call again.
    before = seed_fleet(proxied, 24)
    plan = plan_fleet(tmp_path / "plan.json", capsys)
    lookups: list[str] = []

    def count_lookups(info: CallInfo, status: int, body: bytes) -> None:
        if info.action == "DescribeSnapshots" and "tag:awsops:volume-id" in info.params.values():
            lookups.append(
                next(
                    v
                    for k, v in info.params.items()
                    if k.endswith(".Value.1") and v.startswith("vol-")
                )
            )

    proxied.proxy.taps.append(count_lookups)
    proxied.proxy.set_spec("error5xx=0.4,only=CreateSnapshot,seed=34")
    apply_fleet_plan(plan, capsys)
    errors = proxied.proxy.stats.faults["500"] + proxied.proxy.stats.faults["503"]
    assert errors > 0
    # One look right before each first send, then three after each 5xx (none finds
    # anything: the proxy answered without forwarding).
    volumes = {v for i in planned_ids(plan) for v in before[i].deletable_volumes}
    assert len(lookups) == len(volumes) + 3 * errors, (len(lookups), len(volumes), errors)
    assert set(lookups) == volumes
    assert_decommissioned_exactly(
        proxied, before, planned_ids(plan), proxied.proxy.stats.mutation_list()
    )
    record_proxy(proxied.proxy, items_checked=len(before))
    FIGURES["5xx: CreateSnapshot calls refused, then sent again"] += errors
