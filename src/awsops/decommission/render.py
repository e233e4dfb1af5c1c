"""Terminal views of a plan's review, of what apply is about to do and of what it did.
No AWS calls. Tables fit the terminal (:mod:`awsops.tables`): ids and dates whole."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.text import Text

from awsops.decommission.outcomes import ApplyPreview, InstanceResult
from awsops.tables import Column, render_table

TERMINATE_COLUMNS = (
    Column("instance", key=True),
    Column("name", drop=4),
    Column("stopped", key=True),
    Column("source", drop=1),
    Column("type", drop=2),
    Column("volumes deleted"),
    Column("saving/mo", drop=3),
)
KEEP_COLUMNS = (
    Column("instance", key=True),
    Column("name", drop=2),
    Column("reason", key=True),
    Column("detail", drop=1),
)


def volumes_text(volumes: Iterable[Mapping[str, Any]]) -> str:
    return (
        ", ".join(
            f"{v['volume_id']} {v.get('size_gib') if v.get('size_gib') is not None else '?'} GiB"
            for v in volumes
        )
        or "-"
    )


def target_heading(t: Mapping[str, Any]) -> str:
    who = f"{t['account_id']} ({t['name']})" if t.get("name") else str(t["account_id"])
    return f"account {who}, {t['region']}: terminate {len(t['terminate'])}, keep {len(t['keep'])}"


def _line(console: Console, text: str, style: str = "") -> None:
    console.print(Text(text, style=style))


def render_review(review: Mapping[str, Any], console: Console) -> None:
    """The reviewable view of a plan: what goes, why the rest stays, what it saves."""
    _line(console, f"plan {review['plan_id']}", "bold")
    for t in review["targets"]:
        console.print()
        _line(console, target_heading(t), "bold")
        if t.get("error"):
            _line(console, f"could not be planned: {t['error']}")
            continue
        if t["terminate"]:
            render_table(
                console,
                TERMINATE_COLUMNS,
                [
                    (
                        r["instance_id"],
                        r["name"],
                        r["stopped_at"] or "?",
                        r["stop_source"],
                        r["instance_type"] or "",
                        volumes_text(r["volumes_deleted"]),
                        f"{r['monthly_saving']:.2f}",
                    )
                    for r in t["terminate"]
                ],
                title="to terminate",
            )
        if t["keep"]:
            render_table(
                console,
                KEEP_COLUMNS,
                [(r["instance_id"], r["name"], r["reason"], r["detail"]) for r in t["keep"]],
                title="kept",
            )
    console.print()
    for line in totals_lines(review):
        _line(console, line)


def totals_lines(review: Mapping[str, Any]) -> list[str]:
    tot = review["totals"]
    lines = [
        f"examined {tot['examined']} stopped instances in {tot['targets']} target(s): "
        f"terminate {tot['terminate']}, keep {tot['keep']}; "
        f"EBS volumes deleted: {tot['deleted_volumes']} "
        f"({tot['deleted_gib']} GiB, each backed up by a snapshot first)",
        f"estimated saving: {tot['monthly_ebs_saving']:.2f} {tot['currency']}/month of EBS, "
        f"less at most {tot['monthly_backup_snapshot_cost_max']:.2f}/month for the backups "
        f"while they are kept (at most {tot['backup_cost_over_retention_max']:.2f} over "
        f"{tot['backup_retention_days']} days before prune-backups; prices: "
        f"{tot['prices_region']}, {tot['prices_as_of']})",
    ]
    if tot["keep_by_reason"]:
        lines.append("kept: " + ", ".join(f"{k} {v}" for k, v in tot["keep_by_reason"].items()))
    limits = review["limits"]
    caps = [f"{k} {v:g}" for k, v in limits.items() if v is not None]
    if caps:
        lines.append("caps recorded in the plan: " + ", ".join(caps))
    if tot["targets_failed"]:
        lines.append(f"{tot['targets_failed']} target(s) could not be planned (see the errors)")
    lines.append(f"made against {review['endpoint']}; expires at {review['expires_at']}")
    return lines


def render_preview(preview: ApplyPreview, endpoint: str, console: Console) -> None:
    """What apply is about to do, shown before it asks for confirmation."""
    render_table(
        console,
        (
            Column("account", key=True, drop=2),
            Column("region", key=True, drop=1),
            Column("instance", key=True),
            Column("name", drop=3),
            Column("backups first"),
        ),
        [
            (tp.account_id, tp.region, f.instance_id, f.name, len(f.deletable_volumes))
            for tp, f in preview.to_terminate
        ],
        title="about to back up and terminate",
    )
    if preview.skipped:
        render_table(
            console,
            (Column("instance", key=True), Column("reason")),
            [(r.instance_id, r.reason) for r in preview.skipped],
            title=f"{len(preview.skipped)} planned instance(s) skipped",
        )
    _line(console, preview_summary(preview, endpoint), "bold")


def preview_summary(preview: ApplyPreview, endpoint: str) -> str:
    accounts = sorted({tp.account_id for tp, _ in preview.to_terminate})
    where = ", ".join(accounts) if accounts else "no account"
    text = (
        f"{len(preview.to_terminate)} to terminate in {where} ({endpoint}), "
        f"{preview.snapshots} volume(s) backed up first"
    )
    if preview.already_done:
        text += f", {preview.already_done} already terminated by an earlier run"
    if preview.skipped:
        reasons = Counter(r.reason.split(":", 1)[0] for r in preview.skipped)
        text += (
            f", {len(preview.skipped)} skipped ("
            + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
            + ")"
        )
    return text


def result_row(r: InstanceResult) -> dict[str, Any]:
    """One row of the apply report: snake_case fields, snapshots as a list."""
    return {
        "account_id": r.account_id,
        "region": r.region,
        "instance_id": r.instance_id,
        "name": r.name,
        "outcome": r.outcome,
        "reason": r.reason,
        "code": r.code,
        "image": r.image,
        "snapshots": [{"volume_id": v, "snapshot_id": s} for v, s in sorted(r.snapshots.items())],
    }


REPORT_COLUMNS: Sequence[str] = (
    "account_id",
    "region",
    "instance_id",
    "name",
    "outcome",
    "reason",
    "code",
    "image",
    "snapshots",
)


# On a narrow terminal the apply report keeps instance, outcome, reason and snapshots.
REPORT_DROP_ORDER: Sequence[str] = ("code", "name", "account_id", "region")


def summary_line(results: Iterable[InstanceResult], dry_run: bool) -> str:
    counts = Counter(r.outcome for r in results)
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to do"
    return ("dry run, nothing changed: " if dry_run else "") + parts
