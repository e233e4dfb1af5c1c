"""The review of a plan as plain data: every instance to terminate with its evidence
(stop time and source, volumes and sizes, saving), every instance kept with its reason,
grouped by account and region, with totals. The renderers (table, markdown, html, json)
all read this one structure, with the same snake_case field names."""

from __future__ import annotations

from collections import Counter
from typing import Any

from awsops.decommission import pricing
from awsops.decommission.model import InstanceFacts, Plan, TargetPlan


def _day(facts: InstanceFacts) -> str | None:
    return facts.stop_time.strftime("%Y-%m-%d") if facts.stop_time else None


def _volumes(facts: InstanceFacts) -> list[dict[str, Any]]:
    return [
        {"volume_id": v.volume_id, "size_gib": v.size_gib, "volume_type": v.volume_type}
        for v in facts.deletable_volumes
    ]


def _terminate_row(
    tp: TargetPlan, facts: InstanceFacts, table: pricing.PriceTable
) -> dict[str, Any]:
    est = pricing.estimate(facts.deletable_volumes, table)
    return {
        "account_id": tp.account_id,
        "region": tp.region,
        "instance_id": facts.instance_id,
        "name": facts.name,
        "stopped_at": _day(facts),
        "stop_source": facts.stop_source,
        "instance_type": facts.instance_type,
        "volumes_deleted": _volumes(facts),
        "monthly_saving": round(est.monthly_volume_cost, 2),
    }


def _keep_row(tp: TargetPlan, d: Any) -> dict[str, Any]:
    return {
        "account_id": tp.account_id,
        "region": tp.region,
        "instance_id": d.facts.instance_id,
        "name": d.facts.name,
        "stopped_at": _day(d.facts),
        "reason": d.reason,
        "detail": d.detail,
    }


def review(plan: Plan) -> dict[str, Any]:
    """The plan's review (see the module docstring)."""
    table = pricing.price_table()
    targets = []
    for tp in plan.targets:
        targets.append(
            {
                "account_id": tp.account_id,
                "name": tp.name,
                "region": tp.region,
                "error": tp.error,
                "examined": tp.examined,
                "terminate": [_terminate_row(tp, f, table) for f in tp.chosen],
                "keep": [_keep_row(tp, d) for d in tp.skipped],
            }
        )
    deleted = [v for _, f in plan.chosen for v in f.deletable_volumes]
    retention = int(
        plan.summary.get("estimate", {}).get("backup_retention_days")
        or pricing.DEFAULT_RETENTION_DAYS
    )
    est = pricing.estimate(deleted, table, retention)
    kept = Counter(d.reason or "?" for tp in plan.targets for d in tp.skipped)
    return {
        "plan_id": plan.plan_id,
        "created_at": plan.created_at.isoformat(),
        "expires_at": plan.expires_at.isoformat(),
        "endpoint": plan.endpoint.describe(),
        "older_than_days": plan.criteria.older_than_days,
        "limits": plan.limits.to_json(),
        "targets": targets,
        "totals": {
            "targets": len(plan.targets),
            "targets_failed": sum(1 for tp in plan.targets if tp.error),
            "examined": sum(tp.examined for tp in plan.targets),
            "terminate": len(plan.chosen),
            "keep": sum(kept.values()),
            "keep_by_reason": dict(sorted(kept.items())),
            **est.to_json(table),
        },
    }
