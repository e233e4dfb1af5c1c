"""Connection resets during ``decommission apply``: EC2 did the work, the caller did not
hear it. TerminateInstances is safe to repeat (the executor describes after errors);
CreateSnapshot and CreateSnapshots are not idempotent, so after a cut answer the
executor looks for the snapshots (by tag) before sending the call again: one snapshot per
volume."""

from __future__ import annotations

import re
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
        proxied, tmp_path, capsys, "reset=0.5,only=CreateSnapshot+CreateSnapshots,seed=32"
    )
    assert resets > 0
    ledger = read_ledger(proxied.proxy.stats.mutation_list())
    FIGURES["resets: CreateSnapshot(s) answers cut"] += resets
    FIGURES["resets: extra snapshots from retried CreateSnapshot(s)"] += sum(
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
        # This plan's snapshots of one instance: the look-up before its backup, and
        # those after a 5xx.
        names = {v: k for k, v in info.params.items() if re.fullmatch(r"Filter\.\d+\.Name", k)}
        key = names.get("tag:awsops:instance-id")
        if info.action == "DescribeSnapshots" and key:
            lookups.append(info.params[key.replace(".Name", ".Value.1")])

    backed_up = {i for i in planned_ids(plan) if before[i].deletable_volumes}
    probes = {
        "CreateSnapshots" if before[i].one_snapshot_call else "CreateSnapshot" for i in backed_up
    }
    probed: set[str] = set()

    def faults_after_the_probes(info: CallInfo, status: int, body: bytes) -> None:
        # The 5xx only once the DryRun probes are answered: those are retried by
        # botocore, and only a lost create call is followed by looks.
        if info.action in probes and status == 412:
            probed.add(info.action)
            if probed == probes:
                proxied.proxy.set_spec("error5xx=0.4,only=CreateSnapshot+CreateSnapshots,seed=9")

    proxied.proxy.taps += [count_lookups, faults_after_the_probes]
    apply_fleet_plan(plan, capsys)
    assert probes == {"CreateSnapshot", "CreateSnapshots"} == probed
    faulted = proxied.proxy.stats.snapshot()["faults_by_action"]
    # Which calls draw a fault depends on the threads' order (40% each): at least one
    # create call was refused, and nothing else was.
    assert faulted and set(faulted) <= {"ec2:CreateSnapshot", "ec2:CreateSnapshots"}, faulted
    errors = proxied.proxy.stats.faults["500"] + proxied.proxy.stats.faults["503"]
    # One look right before each instance's backup, then three after each 5xx (none
    # finds anything: the proxy answered without forwarding).
    assert len(lookups) == len(backed_up) + 3 * errors, (len(lookups), len(backed_up), errors)
    assert set(lookups) == backed_up
    assert_decommissioned_exactly(
        proxied, before, planned_ids(plan), proxied.proxy.stats.mutation_list()
    )
    record_proxy(proxied.proxy, items_checked=len(before))
    FIGURES["5xx: CreateSnapshot(s) calls refused, then sent again"] += errors
