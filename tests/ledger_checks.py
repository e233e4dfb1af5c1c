"""The safety invariants of ``decommission apply``, judged from AWS's side only.

Three witnesses, none of them awsops' own output or files:

- the fault proxy's ledger of mutating calls that reached the server
  (``proxy.stats.mutation_list()``): what was asked, when (``at``), what the server
  answered (state changes, created ids), whether the caller heard it;
- the snapshot states the proxy served to the caller, with the time each was first
  served (``proxy.stats.served_states()``);
- the sandbox server's backup witness (``aws.backups()``): for every snapshot given a
  fate, its creation time, the time it becomes final and its final state.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from awsops.sandbox.faults import MutationRecord

TERMINATING = ("shutting-down", "terminated")
TERMINATE = "ec2:TerminateInstances"
CREATE_SNAPSHOT = "ec2:CreateSnapshot"
CREATE_SNAPSHOTS = "ec2:CreateSnapshots"  # every volume of an instance in one call
SNAPSHOT_CALLS = (CREATE_SNAPSHOT, CREATE_SNAPSHOTS)
_INSTANCE_PARAM = re.compile(r"InstanceId\.(\d+)")


def named_instances(rec: MutationRecord) -> list[str]:
    """The instance ids a call names (``InstanceId.N``), in the call's order."""
    numbered = [
        (int(m.group(1)), v) for k, v in rec.params.items() if (m := _INSTANCE_PARAM.fullmatch(k))
    ]
    return [v for _, v in sorted(numbered)]


def changes_only(records: Iterable[MutationRecord]) -> list[MutationRecord]:
    """Calls that could change something: not EC2 DryRun probes (refused calls kept)."""
    return [r for r in records if not r.dry_run]


@dataclass
class Ledger:
    """What the server was asked and did, per instance and volume.

    - ``asked``: every TerminateInstances that reached the server naming the instance,
      whatever its answer (a refused call was still sent);
    - ``effective``: the call that began terminating it (previous state not
      shutting-down/terminated);
    - ``resent``: calls naming it once it was already shutting down or terminated, by
      the server's answer or because an earlier call had begun terminating it;
    - ``snapshots``: snapshot ids the server created per volume (answers lost included),
      by CreateSnapshot or CreateSnapshots (``snapshot_calls``: the calls that made a
      snapshot of the volume);
    - ``other``: any other mutating action.
    """

    records: list[MutationRecord]
    asked: dict[str, list[MutationRecord]] = field(default_factory=dict)
    effective: dict[str, MutationRecord] = field(default_factory=dict)
    resent: Counter[str] = field(default_factory=Counter)
    snapshots: dict[str, list[str]] = field(default_factory=dict)
    snapshot_calls: dict[str, list[MutationRecord]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, records: Sequence[MutationRecord]) -> Ledger:
        led = cls(changes_only(records))
        for rec in sorted(led.records, key=lambda r: r.at):
            if rec.action == TERMINATE:
                previous = {iid: prev for iid, prev, _cur in rec.changes}
                for iid in named_instances(rec):
                    led.asked.setdefault(iid, []).append(rec)
                    if iid in led.effective or previous.get(iid) in TERMINATING:
                        led.resent[iid] += 1
                    elif rec.status < 300 and iid in previous:
                        led.effective[iid] = rec
            elif rec.action in SNAPSHOT_CALLS:
                if rec.status >= 300:
                    continue
                for vol, sid in rec.snapshots:
                    led.snapshot_calls.setdefault(vol, []).append(rec)
                    led.snapshots.setdefault(vol, []).append(sid)
            else:
                led.other.append(rec.action)
        return led

    @property
    def created_ids(self) -> list[str]:
        return [s for ids in self.snapshots.values() for s in ids]

    def duplicate_snapshots(self) -> dict[str, int]:
        """Volumes the server made more than one snapshot of, with how many."""
        return {v: len(c) for v, c in self.snapshot_calls.items() if len(c) > 1}


@dataclass(frozen=True)
class Fate:
    """A snapshot as the sandbox server's witness has it."""

    snapshot_id: str
    created_at: float
    final_at: float
    final_state: str


def witness(backups: Mapping[str, Any]) -> dict[str, Fate]:
    """The server's backup witness (``aws.backups()``), by snapshot id."""
    return {
        s["id"]: Fate(s["id"], float(s["created_at"]), float(s["final_at"]), s["final_state"])
        for s in backups.get("snapshots", [])
    }


def first_served(served: Mapping[str, Sequence[tuple[str, float]]], sid: str, state: str) -> float:
    """When the proxy first served ``state`` for ``sid`` to a caller (inf: never)."""
    return next((t for s, t in served.get(sid, ()) if s == state), float("inf"))


def backup_violations(
    led: Ledger,
    volumes_of: Mapping[str, Sequence[str]],
    served: Mapping[str, Sequence[tuple[str, float]]],
    fates: Mapping[str, Fate],
) -> list[str]:
    """For each instance the server began terminating: each of its DeleteOnTermination
    volumes (``volumes_of``) must have a snapshot that the server's witness says was
    ``completed`` before the TerminateInstances call was sent, and that the proxy served
    to the caller as ``completed`` before that call. Returns what is wrong, in words."""
    wrong = []
    for iid, rec in sorted(led.effective.items()):
        for vol in volumes_of.get(iid, ()):
            snaps = led.snapshots.get(vol, [])
            if not snaps:
                wrong.append(f"{iid} terminated with no snapshot of {vol}")
                continue
            good = [
                s
                for s in snaps
                if s in fates
                and fates[s].final_state == "completed"
                and fates[s].final_at <= rec.at
                and first_served(served, s, "completed") <= rec.at
            ]
            if not good:
                seen = {
                    s: (
                        fates[s].final_state if s in fates else "no fate",
                        round(fates[s].final_at - rec.at, 3) if s in fates else None,
                        served.get(s),
                    )
                    for s in snaps
                }
                wrong.append(f"{iid} terminated before a completed snapshot of {vol}: {seen}")
    return wrong


def torn_lines(text: str) -> list[str]:
    """Lines of a JSON-lines file that are not one whole JSON object."""
    import json

    bad = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            ok = isinstance(json.loads(line), dict)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            bad.append(line)
    return bad
