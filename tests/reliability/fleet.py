"""Seeding and ground truth for the decommission suites, read from moto directly (never
through the fault proxy), and the checks every suite makes on the proxy's ledger."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from awsops.paginate import iter_items
from awsops.sandbox.faults import MutationRecord
from awsops.sandbox.seed import DEMO_TAG, seed_demo
from tests.helpers import invoke
from tests.ledger_checks import SNAPSHOT_CALLS
from tests.reliability.conftest import Proxied

# Demo categories the planner must choose with --older-than 30d; every other one is kept.
CHOSEN_CATEGORIES = frozenset({"stopped-45d", "stopped-200d"})
REGION = "us-east-1"


@dataclass(frozen=True)
class Instance:
    instance_id: str
    category: str
    state: str
    deletable_volumes: tuple[str, ...]
    volumes: tuple[str, ...] = ()  # every EBS volume attached

    @property
    def one_snapshot_call(self) -> bool:
        """Backed up with one CreateSnapshots: every volume is deleted by termination."""
        return bool(self.volumes) and set(self.volumes) == set(self.deletable_volumes)


def seed_fleet(proxied: Proxied, count: int) -> dict[str, Instance]:
    """Seed the demo fleet straight into moto; return every instance by id."""
    from awsops.config import ClientSettings

    seed_demo(
        proxied.aws.session(REGION),
        ClientSettings(endpoint_url=proxied.aws.endpoint, max_attempts=3),
        proxied.aws.server_url,
        [REGION],
        count,
        with_buckets=False,
    )
    return truth(proxied)


def truth(proxied: Proxied) -> dict[str, Instance]:
    """Every instance as moto has it now."""
    out: dict[str, Instance] = {}
    for inst in iter_items(
        proxied.direct("ec2"), "describe_instances", "Reservations[].Instances[]"
    ):
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        vols = tuple(
            m["Ebs"]["VolumeId"]
            for m in inst.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("DeleteOnTermination")
        )
        every = tuple(
            m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m
        )
        out[inst["InstanceId"]] = Instance(
            inst["InstanceId"], tags.get(DEMO_TAG, ""), inst["State"]["Name"], vols, every
        )
    return out


def plan_fleet(plan: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """``awsops --sandbox decommission plan --older-than 30d`` of REGION into ``plan``."""
    argv = ["--sandbox", "decommission", "plan", "--older-than", "30d", "--regions", REGION]
    made = invoke([*argv, "-o", str(plan)], capsys)
    assert made.code == 0, made.stderr
    return plan


def apply_fleet_plan(plan: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> None:
    """``awsops --sandbox decommission apply PLAN --yes``, waiting without delays; it
    must succeed."""
    argv = ["--sandbox", "decommission", "apply", str(plan), "--yes", *extra]
    argv += ["--backup", "snapshots", "--snapshot-delay", "0", "--terminate-delay", "0"]
    argv += ["--output", "json"]
    result = invoke(argv, capsys)
    assert result.code == 0, result.stderr[-2000:]


def expected_choice(fleet: dict[str, Instance]) -> set[str]:
    return {i for i, inst in fleet.items() if inst.category in CHOSEN_CATEGORIES}


def planned_ids(plan_path: Path) -> set[str]:
    plan = json.loads(plan_path.read_text())
    return {f["instance_id"] for t in plan["targets"] for f in t["terminate"]}


@dataclass
class LedgerCheck:
    """What the proxy saw the server do, per instance and volume."""

    effective_terminations: Counter[str]
    resent_terminations: Counter[str]
    snapshots_created: Counter[str]
    first_terminate_at: dict[str, int]
    last_snapshot_at: dict[str, int]
    other_mutations: list[str]


def read_ledger(records: list[MutationRecord]) -> LedgerCheck:
    check = LedgerCheck(Counter(), Counter(), Counter(), {}, {}, [])
    for n, rec in enumerate(records):
        if rec.status >= 300:
            continue
        if rec.action == "ec2:TerminateInstances":
            for iid, previous, _current in rec.changes:
                if previous in ("shutting-down", "terminated"):
                    check.resent_terminations[iid] += 1
                else:
                    check.effective_terminations[iid] += 1
                    check.first_terminate_at.setdefault(iid, n)
        elif rec.action in SNAPSHOT_CALLS:
            for vol, _sid in rec.snapshots:
                check.snapshots_created[vol] += 1
                check.last_snapshot_at[vol] = n
        else:
            check.other_mutations.append(rec.action)
    return check


def assert_decommissioned_exactly(
    proxied: Proxied, before: dict[str, Instance], planned: set[str], records: list[MutationRecord]
) -> LedgerCheck:
    """Every planned instance terminated exactly once after a completed snapshot of each
    of its deletable volumes; nothing unplanned touched. Returns the ledger figures."""
    after = truth(proxied)
    ledger = read_ledger(records)
    for iid, inst in before.items():
        if iid in planned:
            assert after[iid].state == "terminated", (iid, after[iid].state)
            assert ledger.effective_terminations[iid] == 1, (
                iid,
                ledger.effective_terminations[iid],
            )
        else:
            assert after[iid].state == inst.state, (iid, inst.category, after[iid].state)
            assert iid not in ledger.effective_terminations
            assert iid not in ledger.resent_terminations
    assert set(ledger.effective_terminations) == planned
    planned_volumes = {v for iid in planned for v in before[iid].deletable_volumes}
    assert set(ledger.snapshots_created) == planned_volumes
    assert all(n == 1 for n in ledger.snapshots_created.values()), [
        v for v, n in ledger.snapshots_created.items() if n > 1
    ]
    for iid in planned:
        for vol in before[iid].deletable_volumes:
            assert ledger.last_snapshot_at[vol] < ledger.first_terminate_at[iid], (iid, vol)
    snaps = list(
        iter_items(
            proxied.direct("ec2"), "describe_snapshots", "Snapshots[]", {"OwnerIds": ["self"]}
        )
    )
    by_volume: dict[str, list[dict[str, Any]]] = {}
    for snap in snaps:
        by_volume.setdefault(snap["VolumeId"], []).append(snap)
    for vol in planned_volumes:
        assert [s["State"] for s in by_volume.get(vol, [])] == ["completed"], vol
    assert not ledger.other_mutations, ledger.other_mutations
    return ledger
