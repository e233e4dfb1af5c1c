"""What ``decommission mark`` and ``notify`` report, as rows, a summary line and JSON.
No AWS calls."""

from __future__ import annotations

from collections import Counter
from typing import Any

from awsops.clock import iso_utc
from awsops.decommission.marking import MarkAction, MarkReport
from awsops.decommission.notify import NotifyReport

MARK_DROP_ORDER = ("detail", "name", "account_id", "region")
NOTIFY_DROP_ORDER = ("error", "to", "kind")

_WOULD = {
    MarkAction.MARKED: "would mark",
    MarkAction.REMARKED: "would re-mark",
    MarkAction.UNMARKED: "would unmark",
    MarkAction.KEPT: "kept",
}


def mark_rows(report: MarkReport) -> list[dict[str, Any]]:
    """One row per instance whose mark changed (kept marks are in the JSON only)."""
    rows = []
    for c in report.changes:
        if c.action == MarkAction.KEPT:
            continue
        action = _WOULD[c.action] if report.dry_run else c.action
        if not report.dry_run and not c.done:
            action += " (not done)"
        when = c.terminate_after or None
        rows.append(
            {
                "instance_id": c.instance_id,
                "name": c.name,
                "account_id": c.account_id,
                "region": c.region,
                "action": action,
                "terminate_after": iso_utc(when) if when else c.previous or "",
                "reason": c.reason or "",
                "detail": c.detail,
            }
        )
    return rows


def mark_summary(report: MarkReport) -> str:
    counts = report.counts()
    if report.dry_run:
        parts = ", ".join(f"{_WOULD[k]} {v}" for k, v in counts.items()) or "nothing to mark"
        return f"dry run, nothing changed: {parts}"
    parts = ", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing marked"
    days = report.grace.total_seconds() / 86400.0
    return f"{parts} (grace {days:g} days, from {iso_utc(report.now)})"


def mark_json(report: MarkReport) -> dict[str, Any]:
    return {
        "now": iso_utc(report.now),
        "grace_days": report.grace.total_seconds() / 86400.0,
        "dry_run": report.dry_run,
        "counts": report.counts(),
        "changes": [c.to_json() for c in report.changes],
        "errors": report.errors,
    }


def notify_rows(report: NotifyReport) -> list[dict[str, Any]]:
    """One row per notice sent (or, in a dry run, owed) per channel, and one per owner
    no channel can reach."""
    rows: list[dict[str, Any]] = []
    if report.dry_run:
        for channel, n in report.owed:
            rows.append(_row(channel, n.owner.label, n.kind, len(n.instances), "would send"))
    for d in report.deliveries:
        status = "sent" if d.ok else "failed"
        rows.append(
            _row(d.channel, d.notice.owner.label, d.notice.kind, len(d.notice.instances), status)
            | {"to": d.to or "", "error": d.error or ""}
        )
    for n in report.undeliverable:
        rows.append(
            _row("-", n.owner.label, n.kind, len(n.instances), "undeliverable")
            | {"error": "no configured channel can reach this owner"}
        )
    return rows


def _row(channel: str, owner: str, kind: str, count: int, status: str) -> dict[str, Any]:
    return {
        "channel": channel,
        "owner": owner,
        "kind": kind,
        "instances": count,
        "status": status,
        "to": "",
        "error": "",
    }


def notify_summary(report: NotifyReport) -> str:
    owners = len({i.owner.label for i in report.instances})
    head = f"{len(report.instances)} marked instance(s) of {owners} owner(s)"
    if report.dry_run:
        return f"dry run, nothing sent: {head}; {len(report.owed)} notice(s) owed"
    sent = Counter(d.channel for d in report.deliveries if d.ok)
    nothing = "none" if report.failed else "nothing owed"
    parts = ", ".join(f"{k} {v}" for k, v in sorted(sent.items())) or nothing
    tail = ""
    if report.failed or report.undeliverable:
        tail = (
            f"; {len(report.failed)} failed, {len(report.undeliverable)} undeliverable "
            "(owed again on the next run)"
        )
    return f"{head}; sent: {parts}{tail}"


def notify_json(report: NotifyReport) -> dict[str, Any]:
    return {
        "now": iso_utc(report.now),
        "dry_run": report.dry_run,
        "channels": list(report.channels),
        "instances": [i.to_json(report.now) for i in report.instances],
        "deliveries": [d.to_json() for d in report.deliveries],
        "owed": [{"channel": c, **n.to_json()} for c, n in report.owed] if report.dry_run else [],
        "undeliverable": [n.to_json() for n in report.undeliverable],
        "errors": list(report.target_errors),
    }
