"""What a plan's journal says happened, instance by instance: read-only, no AWS calls.

For ``awsops decommission report``: every planned instance with its last known outcome
(terminated, terminating, backed up, failed, skipped, not started), when, its snapshots,
and why it was skipped or failed, over every apply run of the plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from awsops.decommission.journal import Event
from awsops.decommission.model import Plan


@dataclass
class InstanceHistory:
    account_id: str
    region: str
    instance_id: str
    name: str
    outcome: str = "not-started"
    at: str | None = None
    reason: str = ""
    snapshots: dict[str, str] = field(default_factory=dict)  # volume id -> snapshot id
    completed: set[str] = field(default_factory=set)

    def row(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "region": self.region,
            "instance_id": self.instance_id,
            "name": self.name,
            "outcome": self.outcome,
            "at": self.at,
            "reason": self.reason,
            "snapshots": [
                {
                    "volume_id": v,
                    "snapshot_id": s,
                    "state": "completed" if v in self.completed else "requested",
                }
                for v, s in sorted(self.snapshots.items())
            ],
        }


_OUTCOME = {
    Event.SNAPSHOT_CREATED: "backing-up",
    Event.SNAPSHOT_COMPLETED: "backed-up",
    Event.TERMINATE_ACCEPTED: "terminating",
    Event.TERMINATED: "terminated",
    Event.SKIPPED: "skipped",
    Event.FAILED: "failed",
}
_FINAL = ("terminated",)


@dataclass
class History:
    plan_id: str
    runs: int
    instances: list[InstanceHistory]
    torn_lines: int

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.instances:
            out[i.outcome] = out.get(i.outcome, 0) + 1
        return dict(sorted(out.items()))


def history(plan: Plan, events: Iterable[Mapping[str, Any]]) -> History:
    """Fold the journal's events over the plan's instances."""
    by_id = {
        f.instance_id: InstanceHistory(tp.account_id, tp.region, f.instance_id, f.name)
        for tp, f in plan.chosen
    }
    runs = torn = 0
    for e in events:
        name = e.get("event")
        if name == "__torn__":
            torn += 1
            continue
        if name == Event.APPLY_STARTED:
            runs += 1
            continue
        ids = e.get("instance_ids") or ([e["instance_id"]] if e.get("instance_id") else [])
        for iid in ids:
            rec = by_id.get(iid)
            if rec is None:
                continue
            _apply_event(rec, str(name), e)
    return History(plan.plan_id, runs, list(by_id.values()), torn)


def _apply_event(rec: InstanceHistory, name: str, e: Mapping[str, Any]) -> None:
    if rec.outcome in _FINAL:
        return
    if name in (Event.SNAPSHOT_CREATED, Event.SNAPSHOT_COMPLETED):
        rec.snapshots[str(e["volume_id"])] = str(e["snapshot_id"])
        if name == Event.SNAPSHOT_COMPLETED:
            rec.completed.add(str(e["volume_id"]))
    elif name == Event.SNAPSHOT_FAILED:
        rec.snapshots.pop(str(e.get("volume_id")), None)
    if name == Event.TERMINATE_REQUESTED:
        rec.outcome, rec.at = "terminate-requested", e.get("ts")
        return
    outcome = _OUTCOME.get(name)
    if outcome is None:
        return
    if outcome == "backing-up" and rec.outcome in ("backed-up", "terminating"):
        return
    rec.outcome, rec.at = outcome, e.get("ts")
    rec.reason = str(e.get("reason", "")) if outcome in ("skipped", "failed") else ""
