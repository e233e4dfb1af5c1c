"""Human views of a plan, of what apply is about to do and of what it did. No AWS calls.

Every value that comes from AWS (names, tags) is escaped (:func:`awsops.output.printable`)
and never read as markup.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from awsops.decommission.model import Plan
from awsops.decommission.outcomes import ApplyPreview, InstanceResult
from awsops.output import safe_cell


def _table(title: str, columns: Iterable[str]) -> Table:
    table = Table(title=title, header_style="bold")
    for col in columns:
        table.add_column(col)
    return table


def render_plan(plan: Plan, console: Console) -> None:
    """The reviewable view of a plan: what goes, why the rest stays, what it saves."""
    table = _table(
        f"plan {plan.plan_id}: instances to terminate",
        ("account", "region", "instance", "name", "stopped", "source", "type", "volumes deleted"),
    )
    for tp, f in plan.chosen:
        deleted = ", ".join(f"{v.volume_id} ({v.size_gib} GiB)" for v in f.deletable_volumes)
        table.add_row(
            *map(
                safe_cell,
                (
                    tp.account_id,
                    tp.region,
                    f.instance_id,
                    f.name,
                    f.stop_time.strftime("%Y-%m-%d") if f.stop_time else "?",
                    f.stop_source,
                    f.instance_type or "",
                    deleted or "-",
                ),
            )
        )
    console.print(table)
    s = plan.summary
    skip = Counter(s.get("skip", {}))
    if skip:
        st = _table("stopped instances kept", ("reason", "instances"))
        for reason, n in sorted(skip.items()):
            st.add_row(safe_cell(reason), safe_cell(n))
        console.print(st)
    est = s.get("estimate", {})
    console.print(
        f"examined {s.get('examined', 0)} stopped instances in {len(plan.targets)} target(s): "
        f"terminate {s.get('terminate', 0)}, keep {sum(skip.values())}; "
        f"EBS volumes deleted: {est.get('deleted_volumes', 0)} "
        f"({est.get('deleted_gib', 0)} GiB, each backed up by a snapshot first)",
        highlight=False,
        markup=False,
    )
    console.print(
        f"estimated saving: {est.get('monthly_ebs_saving', 0):.2f} {est.get('currency', 'USD')}"
        f"/month of EBS, less at most {est.get('monthly_backup_snapshot_cost_max', 0):.2f} for "
        f"the backup snapshots (prices: {est.get('prices_region')}, "
        f"{est.get('prices_as_of')})",
        highlight=False,
        markup=False,
    )
    limits = plan.limits
    caps = [
        f"max_instances {limits.max_instances}" if limits.max_instances is not None else "",
        f"max_percent {limits.max_percent:g}" if limits.max_percent is not None else "",
    ]
    if any(caps):
        console.print(
            "caps recorded in the plan: " + ", ".join(c for c in caps if c),
            highlight=False,
            markup=False,
        )
    failed = sum(1 for tp in plan.targets if tp.error)
    if failed:
        console.print(f"{failed} target(s) could not be planned (see the errors)", highlight=False)
    console.print(
        f"made against {plan.endpoint.describe()}; expires at {plan.expires_at.isoformat()}",
        highlight=False,
        markup=False,
    )


def render_preview(preview: ApplyPreview, console: Console) -> None:
    """What apply is about to do, shown before it asks for confirmation."""
    table = _table(
        "about to terminate", ("account", "region", "instance", "name", "snapshots first")
    )
    for tp, f in preview.to_terminate:
        table.add_row(
            *map(
                safe_cell,
                (tp.account_id, tp.region, f.instance_id, f.name, len(f.deletable_volumes)),
            )
        )
    console.print(table)
    if preview.skipped:
        skipped = _table(
            f"{len(preview.skipped)} planned instance(s) will be skipped",
            ("account", "region", "instance", "reason"),
        )
        for r in preview.skipped:
            skipped.add_row(*map(safe_cell, (r.account_id, r.region, r.instance_id, r.reason)))
        console.print(skipped)


def summary_line(results: Iterable[InstanceResult], dry_run: bool) -> str:
    counts = Counter(r.outcome for r in results)
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to do"
    return ("dry run, nothing changed: " if dry_run else "") + parts
