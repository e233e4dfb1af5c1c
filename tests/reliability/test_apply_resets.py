"""Connection resets during ``decommission apply``: EC2 did the work, the caller did not
hear it. TerminateInstances is safe to repeat (the executor describes after errors);
CreateSnapshot is not idempotent, so a retried call leaves a second snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import invoke
from tests.reliability.conftest import FIGURES, Proxied, record_proxy
from tests.reliability.fleet import (
    REGION,
    assert_decommissioned_exactly,
    planned_ids,
    read_ledger,
    seed_fleet,
    truth,
)


def _plan_and_apply(
    proxied: Proxied, tmp_path: Path, capsys: pytest.CaptureFixture[str], faults: str
) -> tuple[set[str], int]:
    plan = tmp_path / "plan.json"
    made = invoke(
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
    assert made.code == 0, made.stderr
    proxied.proxy.set_spec(faults)
    result = invoke(
        [
            "--sandbox",
            "decommission",
            "apply",
            str(plan),
            "--yes",
            "--batch-size",
            "3",
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
    seed_fleet(proxied, 48)
    planned, resets = _plan_and_apply(
        proxied, tmp_path, capsys, "reset=0.5,only=CreateSnapshot,seed=32"
    )
    assert resets > 0
    after = truth(proxied)
    assert all(after[i].state == "terminated" for i in planned)
    ledger = read_ledger(proxied.proxy.stats.mutation_list())
    FIGURES["resets: CreateSnapshot answers cut"] += resets
    FIGURES["resets: extra snapshots from retried CreateSnapshot"] += sum(
        n - 1 for n in ledger.snapshots_created.values()
    )
    assert all(n == 1 for n in ledger.snapshots_created.values())
