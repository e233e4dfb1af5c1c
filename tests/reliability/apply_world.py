"""A multi-region demo fleet seeded straight into moto, ``awsops decommission`` run as a
subprocess against it through the fault proxy, and the checks made on the proxy's
ledger and on moto's own state: the witnesses that are not awsops' own output.

Only the CLI (a subprocess), the sandbox seeding and the proxy are used here, so these
tests read what awsops did from AWS's side."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awsops.config import ClientSettings
from awsops.paginate import iter_items
from awsops.sandbox.faults import MutationRecord
from awsops.sandbox.seed import DEMO_TAG, seed_demo
from tests.ledger_checks import SNAPSHOT_CALLS
from tests.reliability.conftest import Proxied

CHOSEN_CATEGORIES = frozenset({"stopped-45d", "stopped-200d"})
TERMINATING = ("shutting-down", "terminated")


@dataclass(frozen=True)
class Instance:
    instance_id: str
    region: str
    category: str
    state: str
    deletable_volumes: tuple[str, ...]
    volumes: tuple[str, ...] = ()  # every EBS volume attached

    @property
    def one_snapshot_call(self) -> bool:
        """Backed up with one CreateSnapshots: every volume is deleted by termination."""
        return bool(self.volumes) and set(self.volumes) == set(self.deletable_volumes)


def seed(proxied: Proxied, regions: Sequence[str], per_region: int) -> dict[str, Instance]:
    """The demo fleet in ``regions``, seeded straight into moto (not through the proxy)."""
    seed_demo(
        proxied.aws.session(regions[0]),
        ClientSettings(endpoint_url=proxied.aws.endpoint, max_attempts=3),
        proxied.aws.server_url,
        list(regions),
        per_region,
        with_buckets=False,
    )
    return truth(proxied, regions)


def truth(proxied: Proxied, regions: Iterable[str]) -> dict[str, Instance]:
    """Every instance of ``regions`` as moto has it now."""
    out: dict[str, Instance] = {}
    for region in regions:
        ec2 = proxied.direct("ec2", region)
        for inst in iter_items(ec2, "describe_instances", "Reservations[].Instances[]"):
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
                inst["InstanceId"],
                region,
                tags.get(DEMO_TAG, ""),
                inst["State"]["Name"],
                vols,
                every,
            )
    return out


def snapshots(proxied: Proxied, regions: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Snapshots awsops made (by its plan-id tag), by volume id, as moto has them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for region in regions:
        for snap in iter_items(
            proxied.direct("ec2", region),
            "describe_snapshots",
            "Snapshots[]",
            {"OwnerIds": ["self"], "Filters": [{"Name": "tag-key", "Values": ["awsops:plan-id"]}]},
        ):
            out.setdefault(snap["VolumeId"], []).append(snap)
    return out


def expected_choice(fleet: Mapping[str, Instance]) -> set[str]:
    return {i for i, inst in fleet.items() if inst.category in CHOSEN_CATEGORIES}


# --- the CLI ----------------------------------------------------------------------------


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "awsops", *args]


def run(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300) -> Any:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start(args: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )


def make_plan(path: Path, regions: Sequence[str], *extra: str) -> dict[str, Any]:
    """``awsops --sandbox decommission plan --older-than 30d`` into ``path``; the plan."""
    r = run(
        cli(
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            ",".join(regions),
            "-o",
            str(path),
            *extra,
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(json.loads(path.read_text()))


def planned(plan: Mapping[str, Any]) -> set[str]:
    return {f["instance_id"] for t in plan["targets"] for f in t["terminate"]}


def apply_args(plan: Path, *extra: str, backup: str = "snapshots") -> list[str]:
    return cli(
        "--sandbox",
        "decommission",
        "apply",
        str(plan),
        "--yes",
        "--backup",
        backup,
        "--snapshot-delay",
        "0",
        "--terminate-delay",
        "0",
        "--output",
        "jsonl",
        *extra,
    )


def rows(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def journal_events(home: Path, plan_id: str) -> list[dict[str, Any]]:
    """The journal of ``plan_id`` under the awsops home ``home`` (complete lines)."""
    path = home / "plans" / plan_id / "journal.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append({"event": "__torn__", "line": line})
    return out


# --- the ledger ---------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the proxy saw the server do (DryRun probes and refusals left out)."""

    records: list[MutationRecord]
    effective_terminations: Counter[str] = field(default_factory=Counter)
    resent_terminations: Counter[str] = field(default_factory=Counter)
    snapshots_created: Counter[str] = field(default_factory=Counter)
    created_ids: list[str] = field(default_factory=list)
    first_terminate_at: dict[str, int] = field(default_factory=dict)
    last_snapshot_at: dict[str, int] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, records: list[MutationRecord]) -> Ledger:
        led = cls(list(records))
        for n, rec in enumerate(records):
            if rec.status >= 300:
                continue
            if rec.action == "ec2:TerminateInstances":
                for iid, previous, _current in rec.changes:
                    if previous in TERMINATING:
                        led.resent_terminations[iid] += 1
                    else:
                        led.effective_terminations[iid] += 1
                        led.first_terminate_at.setdefault(iid, n)
            elif rec.action in SNAPSHOT_CALLS:
                for vol, sid in rec.snapshots:
                    led.snapshots_created[vol] += 1
                    led.last_snapshot_at[vol] = n
                    led.created_ids.append(sid)
            else:
                led.other.append(rec.action)
        return led


def changes(records: Sequence[MutationRecord]) -> list[MutationRecord]:
    """Mutating calls that reached the server and changed something (not DryRun)."""
    return [r for r in records if r.status < 300]


def assert_exactly_decommissioned(
    proxied: Proxied,
    regions: Sequence[str],
    before: Mapping[str, Instance],
    chosen: set[str],
    records: list[MutationRecord],
) -> Ledger:
    """From moto and the ledger: every chosen instance terminated exactly once (never
    re-sent), after one completed snapshot of each of its deletable volumes; nothing else
    touched."""
    after = truth(proxied, regions)
    led = Ledger.read(records)
    for iid, inst in before.items():
        if iid in chosen:
            assert after[iid].state in TERMINATING, (iid, after[iid].state)
            assert led.effective_terminations[iid] == 1, (iid, led.effective_terminations[iid])
        else:
            assert after[iid].state == inst.state, (iid, inst.category, after[iid].state)
            assert iid not in led.effective_terminations
    assert not led.resent_terminations, dict(led.resent_terminations)
    volumes = {v for iid in chosen for v in before[iid].deletable_volumes}
    assert set(led.snapshots_created) == volumes
    assert all(n == 1 for n in led.snapshots_created.values()), led.snapshots_created
    for iid in chosen:
        for vol in before[iid].deletable_volumes:
            assert led.last_snapshot_at[vol] < led.first_terminate_at[iid], (iid, vol)
    snaps = snapshots(proxied, regions)
    for vol in volumes:
        assert [s["State"] for s in snaps.get(vol, [])] == ["completed"], vol
    assert not led.other, led.other
    return led


def assert_journal_saw_every_change(events: list[dict[str, Any]], led: Ledger) -> None:
    """The journal is never blind: every snapshot the server made is journaled as
    created, every instance it began terminating as requested; no torn line."""
    assert not [e for e in events if e["event"] == "__torn__"]
    created = {e["snapshot_id"] for e in events if e["event"] == "snapshot-created"}
    requested = {
        i for e in events if e["event"] == "terminate-requested" for i in e["instance_ids"]
    }
    assert set(led.created_ids) <= created, set(led.created_ids) - created
    assert set(led.effective_terminations) <= requested, set(led.effective_terminations) - requested


def send(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
