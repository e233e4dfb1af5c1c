"""``awsops decommission plan|apply|run``: a thin layer over awsops.decommission."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from awsops.cli.context import app_context, aws_options
from awsops.config import DecommissionSettings, load_decommission_settings
from awsops.decommission.executor import ApplyOptions, ApplyPreview, ApplyReport, apply_plan
from awsops.decommission.journal import journal_path_for
from awsops.decommission.model import Plan, PlanCriteria, load_plan, write_plan
from awsops.decommission.planner import build_plan
from awsops.errors import SafetyError, UsageError
from awsops.output import RecordWriter, make_console, progress_for, to_json

F = TypeVar("F", bound=Callable[..., Any])
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhw]?)\s*$")


def parse_older_than(value: str) -> float:
    """``30d``, ``36h``, ``2w`` or a bare number of days -> days (float, > 0)."""
    m = _DURATION.match(value or "")
    if not m:
        raise UsageError(f"--older-than {value!r}: use a duration like 30d, 36h or 2w")
    n = float(m.group(1))
    days = {"": n, "d": n, "h": n / 24.0, "w": n * 7.0}[m.group(2)]
    if days <= 0:
        raise UsageError("--older-than must be more than zero")
    return days


def _criteria(older_than: str, settings: DecommissionSettings, cloudtrail: bool) -> PlanCriteria:
    return PlanCriteria(
        older_than_days=parse_older_than(older_than),
        protect_tags=settings.protect_tags,
        account_allowlist=settings.account_allowlist,
        account_denylist=settings.account_denylist,
        exclude_instance_ids=settings.exclude_instance_ids,
        exclude_tags=dict(settings.exclude_tags),
        cloudtrail=cloudtrail,
    )


def render_plan(plan: Plan, console: Console) -> None:
    """The reviewable view of a plan: what goes, why the rest stays, what it saves."""
    table = Table(title=f"plan {plan.plan_id}: instances to terminate", header_style="bold")
    for col in (
        "account",
        "region",
        "instance",
        "name",
        "stopped",
        "source",
        "type",
        "volumes deleted",
    ):
        table.add_column(col)
    for tp, f in plan.chosen:
        deleted = ", ".join(f"{v.volume_id} ({v.size_gib} GiB)" for v in f.deletable_volumes)
        table.add_row(
            tp.account_id,
            tp.region,
            f.instance_id,
            f.name,
            f.stop_time.strftime("%Y-%m-%d") if f.stop_time else "?",
            f.stop_source,
            f.instance_type or "",
            deleted or "-",
        )
    console.print(table)
    s = plan.summary
    skip = Counter(s.get("skip", {}))
    if skip:
        st = Table(title="stopped instances kept", header_style="bold")
        st.add_column("reason")
        st.add_column("instances", justify="right")
        for reason, n in sorted(skip.items()):
            st.add_row(reason, str(n))
        console.print(st)
    est = s.get("estimate", {})
    console.print(
        f"examined {s.get('examined', 0)} stopped instances in {len(plan.targets)} target(s): "
        f"terminate {s.get('terminate', 0)}, keep {sum(skip.values())}; "
        f"EBS volumes deleted: {est.get('deleted_volumes', 0)} "
        f"({est.get('deleted_gib', 0)} GiB, each backed up by a snapshot first)",
        highlight=False,
    )
    console.print(
        f"estimated saving: {est.get('monthly_ebs_saving', 0):.2f} {est.get('currency', 'USD')}"
        f"/month of EBS, less at most {est.get('monthly_backup_snapshot_cost_max', 0):.2f} for "
        f"the backup snapshots (prices: {est.get('prices_region')}, "
        f"{est.get('prices_as_of')})",
        highlight=False,
    )
    failed = sum(1 for tp in plan.targets if tp.error)
    if failed:
        console.print(f"{failed} target(s) could not be planned (see the errors)", highlight=False)
    console.print(f"plan expires at {plan.expires_at.isoformat()}", highlight=False)


def _plan_errors(plan: Plan) -> int:
    """Print one ``error:`` line per target that could not be planned; return how many."""
    failed = [tp for tp in plan.targets if tp.error]
    for tp in failed:
        click.echo(f"error: {tp.label}: {tp.error}", err=True)
    return len(failed)


def _confirm_on_terminal(preview: ApplyPreview) -> bool:
    console = make_console(stderr=True)
    n = len(preview.to_terminate)
    table = Table(title="about to terminate", header_style="bold")
    for col in ("account", "region", "instance", "name", "snapshots first"):
        table.add_column(col)
    for tp, f in preview.to_terminate:
        table.add_row(
            tp.account_id, tp.region, f.instance_id, f.name, str(len(f.deletable_volumes))
        )
    console.print(table)
    if preview.skipped:
        console.print(f"{len(preview.skipped)} planned instance(s) will be skipped (drift)")
    answer = click.prompt(
        f"Type {n} to back up and terminate {n} instance(s)",
        default="",
        show_default=False,
        err=True,
    )
    return answer.strip() == str(n)


def _render_report(report: ApplyReport, output_format: str | None) -> None:
    columns = [
        "account_id",
        "region",
        "instance_id",
        "name",
        "outcome",
        "reason",
        "code",
        "snapshots",
    ]
    with RecordWriter(output_format or "table", sys.stdout, columns) as w:
        for r in report.results:
            w.write(r.to_json())
    counts = Counter(r.outcome for r in report.results)
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to do"
    mode = "dry run, nothing changed: " if report.dry_run else ""
    click.echo(
        f"{mode}{parts}"
        + (f"; journal {report.journal}" if report.journal and not report.dry_run else ""),
        err=True,
    )
    for e in report.target_errors:
        click.echo(f"error: {e}", err=True)


def _progress_events(progress: Any) -> Any:
    if progress is None:
        return None
    tasks: dict[str, Any] = {}

    def on_event(entry: Mapping[str, Any]) -> None:
        name = str(entry.get("event"))
        label = {
            "snapshot-created": "snapshots created",
            "snapshot-completed": "snapshots completed",
            "terminate-accepted": "terminating",
            "terminated": "terminated",
        }.get(name)
        if label is None:
            return
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=None, detail="")
        progress.advance(tasks[label])

    return on_event


def _apply(
    plan: Plan,
    plan_path: Path,
    settings: DecommissionSettings,
    yes: bool,
    dry_run: bool,
    output_format: str | None,
    **limits: Any,
) -> None:
    if not dry_run and not yes and not sys.stdin.isatty():
        raise SafetyError(
            "refusing to apply without a terminal to confirm: review the plan, "
            "then pass --yes (or --dry-run to only check)"
        )
    options = ApplyOptions(
        dry_run=dry_run,
        protect_tags=settings.protect_tags,
        account_allowlist=settings.account_allowlist,
        account_denylist=settings.account_denylist,
        **{k: v for k, v in limits.items() if v is not None},
    )
    factory = app_context().factory()
    confirm = None if yes else _confirm_on_terminal
    with progress_for() as progress:
        report = apply_plan(
            plan, factory, options, journal_path_for(plan_path), confirm, _progress_events(progress)
        )
    _render_report(report, output_format)
    if not report.ok:
        raise SystemExit(1)


@click.group("decommission")
def decommission() -> None:
    """Safely terminate EC2 instances stopped for more than N days: plan (read-only),
    review, apply (re-verify, DryRun check, snapshot, terminate, journal), resume."""


_plan_options = [
    click.option("--older-than", required=True, help="Stopped for longer than: 30d, 36h, 2w."),
    click.option("--regions", default=None, help="Comma-separated regions, or 'all'."),
    click.option(
        "--targets",
        "targets_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="YAML file of accounts (role ARN, ExternalId, regions, name).",
    ),
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Decommission config YAML (protect tags, account allow/deny lists...).",
    ),
    click.option(
        "--cloudtrail",
        is_flag=True,
        help="Look up unknown stop times in CloudTrail (slow: 2 calls/s per region).",
    ),
    click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True),
]

_DEFAULTS = DecommissionSettings()  # the option help states these defaults

_apply_options = [
    click.option("--yes", is_flag=True, help="Do not ask for confirmation."),
    click.option("--dry-run", is_flag=True, help="Verify and check permissions; change nothing."),
    click.option(
        "--batch-size",
        type=click.IntRange(1, 1000),
        default=None,
        help="Instances per TerminateInstances call (default 50).",
    ),
    click.option(
        "--max-instances",
        type=click.IntRange(1),
        default=None,
        help="Refuse a plan that terminates more instances than this.",
    ),
    click.option(
        "--max-percent",
        type=click.FloatRange(0, 100, min_open=True),
        default=None,
        help="Refuse if a target loses more than this % of its stopped instances.",
    ),
    click.option(
        "--snapshot-delay",
        type=click.FloatRange(0),
        default=None,
        help=f"Seconds between snapshot_completed polls (default {_DEFAULTS.snapshot_delay}).",
    ),
    click.option(
        "--snapshot-max-attempts",
        type=click.IntRange(1),
        default=None,
        help="Polls before a backup counts as not complete "
        f"(default {_DEFAULTS.snapshot_max_attempts}).",
    ),
    click.option(
        "--terminate-delay",
        type=click.FloatRange(0),
        default=None,
        help=f"Seconds between instance_terminated polls (default {_DEFAULTS.terminate_delay}).",
    ),
    click.option(
        "--terminate-max-attempts",
        type=click.IntRange(1),
        default=None,
        help="Polls before termination counts as not finished "
        f"(default {_DEFAULTS.terminate_max_attempts}).",
    ),
    click.option(
        "--output",
        "output_format",
        type=click.Choice(["table", "json", "jsonl", "csv"]),
        default=None,
    ),
]


def _with(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


def _limits(settings: DecommissionSettings, kw: dict[str, Any]) -> dict[str, Any]:
    """Apply limits: command-line options first, then the config file."""
    return {
        "batch_size": kw.pop("batch_size") or settings.batch_size,
        "max_instances": kw.pop("max_instances") or settings.max_instances,
        "max_percent": kw.pop("max_percent") or settings.max_percent,
        "snapshot_delay": _first(kw.pop("snapshot_delay"), settings.snapshot_delay),
        "snapshot_max_attempts": kw.pop("snapshot_max_attempts") or settings.snapshot_max_attempts,
        "terminate_delay": _first(kw.pop("terminate_delay"), settings.terminate_delay),
        "terminate_max_attempts": kw.pop("terminate_max_attempts")
        or settings.terminate_max_attempts,
    }


def _first(a: Any, b: Any) -> Any:
    return a if a is not None else b


@decommission.command("plan")
@_with(_plan_options)
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the plan (JSON).",
)
@click.option(
    "--output",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: the review; json: the plan itself on stdout.",
)
@aws_options
def plan_cmd(
    older_than: str,
    regions: str | None,
    targets_file: str | None,
    config_file: str | None,
    cloudtrail: bool,
    concurrency: int,
    out: str,
    output_format: str,
) -> None:
    """Read-only: find stopped instances, decide, write a reviewable plan."""
    settings = load_decommission_settings(config_file)
    criteria = _criteria(older_than, settings, cloudtrail)
    app = app_context()
    targets = app.targets(regions, targets_file)
    plan = build_plan(
        app.factory(), targets, criteria, ttl_hours=settings.plan_ttl_hours, concurrency=concurrency
    )
    path = write_plan(plan, out)
    if output_format == "json":
        click.echo(to_json(plan.to_json(), indent=2))
    else:
        render_plan(plan, make_console())
        click.echo(
            f"plan written to {path}; review it, then: awsops decommission apply {path}", err=True
        )
    if _plan_errors(plan):
        raise SystemExit(1)


@decommission.command("apply")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Decommission config YAML (its protect tags and account lists add to the plan's).",
)
@_with(_apply_options)
@aws_options
def apply_cmd(
    plan_file: str,
    config_file: str | None,
    yes: bool,
    dry_run: bool,
    output_format: str | None,
    **kw: Any,
) -> None:
    """Apply a plan: re-verify, DryRun check, snapshot, terminate, wait. Resumable."""
    settings = load_decommission_settings(config_file)
    plan = load_plan(plan_file)
    _apply(plan, Path(plan_file), settings, yes, dry_run, output_format, **_limits(settings, kw))


@decommission.command("run")
@_with(_plan_options)
@_with(_apply_options)
@aws_options
def run_cmd(
    older_than: str,
    regions: str | None,
    targets_file: str | None,
    config_file: str | None,
    cloudtrail: bool,
    concurrency: int,
    yes: bool,
    dry_run: bool,
    output_format: str | None,
    **kw: Any,
) -> None:
    """Plan and apply in one go (small jobs), with the same safety rails. The plan is
    kept under $AWSOPS_HOME/runs/ with its journal, so an interrupted run can resume
    with `awsops decommission apply`."""
    from awsops.sandbox.manager import home

    settings = load_decommission_settings(config_file)
    criteria = _criteria(older_than, settings, cloudtrail)
    app = app_context()
    plan = build_plan(
        app.factory(),
        app.targets(regions, targets_file),
        criteria,
        ttl_hours=settings.plan_ttl_hours,
        concurrency=concurrency,
    )
    runs = home() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = write_plan(plan, runs / f"{plan.plan_id}.json")
    render_plan(plan, make_console(stderr=True))
    click.echo(f"plan kept at {path}", err=True)
    failed = _plan_errors(plan)
    _apply(plan, path, settings, yes, dry_run, output_format, **_limits(settings, kw))
    if failed:
        raise SystemExit(1)


COMMANDS = [decommission]
