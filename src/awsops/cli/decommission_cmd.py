"""``awsops decommission plan|apply|run``: a thin layer over awsops.decommission."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from awsops.cancel import CancelToken, cancel_on_signals
from awsops.cli.context import AppContext, app_context, aws_options
from awsops.cli.decommission_options import (
    ALLOW_SHORT,
    APPLY_OPTIONS,
    CAPS,
    MARKED,
    PLAN_OPTIONS,
    apply_options,
    check_plan_output,
    command_at,
    criteria_from,
    default_plan_path,
    endpoint_of,
    load_settings,
    plan_limits,
    with_options,
)
from awsops.config import DecommissionSettings
from awsops.decommission.executor import ApplyPreview, ApplyReport, apply_plan
from awsops.decommission.journal import journal_path_for
from awsops.decommission.model import Plan
from awsops.decommission.noticelog import NoticeLog
from awsops.decommission.planfile import load_plan, plan_json, write_plan
from awsops.decommission.planner import build_plan
from awsops.decommission.render import (
    REPORT_COLUMNS,
    REPORT_DROP_ORDER,
    render_preview,
    render_review,
    result_row,
    summary_line,
)
from awsops.decommission.review import review
from awsops.decommission.verify import check_endpoint
from awsops.errors import SafetyError
from awsops.home import home, private_dir
from awsops.output import RecordWriter, make_console, progress_for, to_json


def _plan_progress(progress: Any, total: int) -> Any:
    """Targets planned of the total, and the stopped instances examined so far."""
    if progress is None:
        return None
    task = progress.add_task("planning targets", total=total, detail="")
    examined = [0]

    def on_target(tp: Any) -> None:
        examined[0] += tp.examined
        progress.update(task, advance=1, detail=f"{examined[0]} stopped instances examined")

    return on_target


def _plan_errors(plan: Plan) -> int:
    """Print one ``error:`` line per target that could not be planned; return how many."""
    failed = [tp for tp in plan.targets if tp.error]
    for tp in failed:
        click.echo(f"error: {tp.label}: {tp.error}", err=True)
    return len(failed)


def confirm_on_terminal(endpoint: str) -> Callable[[ApplyPreview], bool]:
    """The confirmation: the summary (what, where, how many backups, what is skipped and
    why), then the account (id or name) and the count must be typed."""

    def confirm(preview: ApplyPreview) -> bool:
        render_preview(preview, endpoint, make_console(stderr=True))
        n = len(preview.to_terminate) + preview.already_done
        expected = confirmation_answers(preview)
        answer = click.prompt(
            f"Type {expected[0]} {n} to back up and terminate {n} instance(s)",
            default="",
            show_default=False,
            err=True,
        )
        words = answer.split()
        return len(words) == 2 and words[0] in expected and words[1] == str(n)

    return confirm


def confirmation_answers(preview: ApplyPreview) -> list[str]:
    """What may be typed for the account: its id or its name; ``all`` for several."""
    accounts = {tp.account_id: tp.name for tp, _ in preview.to_terminate}
    if len(accounts) != 1:
        return ["all"]
    ((account, name),) = accounts.items()
    return [account, *([name] if name else [])]


def _render_report(report: ApplyReport, output_format: str | None) -> None:
    with RecordWriter(
        output_format or "table", sys.stdout, REPORT_COLUMNS, drop_order=REPORT_DROP_ORDER
    ) as w:
        for r in report.results:
            row = result_row(r)
            if w.fmt in ("table", "csv"):
                row["snapshots"] = ", ".join(
                    f"{s['snapshot_id']} ({s['volume_id']})" for s in row["snapshots"]
                )
            w.write(row)
    line = summary_line(report.results, report.dry_run)
    if report.journal and not report.dry_run:
        line += f"; journal {report.journal}"
    click.echo(line, err=True)
    for e in report.target_errors:
        click.echo(f"error: {e}", err=True)


APPLY_STEPS = {
    "snapshot-created": "snapshots made",
    "snapshot-completed": "snapshots completed",
    "terminate-accepted": "termination accepted",
    "terminated": "terminated",
}


def _progress_events(progress: Any) -> Any:
    """Progress bars of apply's steps, with the totals the run announces when it
    starts (instances to terminate, volumes to back up)."""
    if progress is None:
        return None
    tasks: dict[str, Any] = {}
    totals: dict[str, int] = {}

    def on_event(entry: Mapping[str, Any]) -> None:
        name = str(entry.get("event"))
        if name == "apply-started":
            instances = int(entry.get("to_terminate", 0)) + int(entry.get("already_done", 0))
            volumes = int(entry.get("snapshots", 0))
            totals.update(
                {
                    "snapshot-created": volumes,
                    "snapshot-completed": volumes,
                    "terminate-accepted": instances,
                    "terminated": instances,
                }
            )
            for step, label in APPLY_STEPS.items():
                tasks[step] = progress.add_task(label, total=totals[step] or None, detail="")
            return
        if name in tasks:
            progress.advance(tasks[name])

    return on_event


def _apply(
    app: AppContext,
    plan: Plan,
    plan_path: Path,
    settings: DecommissionSettings,
    yes: bool,
    dry_run: bool,
    allow_short: bool,
    output_format: str | None,
    kw: dict[str, Any],
) -> None:
    resume = app.command("decommission", "apply", str(plan_path))
    check_endpoint(plan, endpoint_of(app), command_at(app, plan.endpoint, *resume_args(plan_path)))
    if not dry_run and not yes and not sys.stdin.isatty():
        raise SafetyError(
            "refusing to apply without a terminal to confirm: review the plan, "
            "then pass --yes (or --dry-run to only check)"
        )
    options = apply_options(settings, dry_run, allow_short, kw)
    factory = app.factory()
    confirm = None if yes else confirm_on_terminal(plan.endpoint.describe())
    token = CancelToken()
    with (
        cancel_on_signals(token, notify=lambda m: click.echo(m, err=True)),
        progress_for() as progress,
    ):
        report = apply_plan(
            plan,
            factory,
            options,
            journal_path_for(plan.plan_id),
            confirm,
            _progress_events(progress),
            cancel=token,
        )
    _render_report(report, output_format)
    if report.journal_error:
        click.echo(
            f"error: {report.journal_error}; stopped before the next change: make room, "
            f"then resume with: {resume}",
            err=True,
        )
        raise SystemExit(1)
    if report.cancelled:
        click.echo(f"error: {report.cancelled}; resume with: {resume}", err=True)
        raise SystemExit(130)
    if not report.ok:
        click.echo(f"to retry what failed: {resume}", err=True)
        raise SystemExit(1)


def notified_marks(settings: DecommissionSettings) -> Callable[[str], bool] | None:
    """Which marks a notice went out about, from the notices log (None: not required)."""
    if not settings.marks.require_notice:
        return None
    return NoticeLog().notified().__contains__


def resume_args(plan_path: Path) -> tuple[str, ...]:
    return ("decommission", "apply", str(plan_path))


@click.group("decommission")
def decommission() -> None:
    """Safely terminate EC2 instances stopped for more than N days: plan (read-only),
    review, apply (re-verify, DryRun check, snapshot, terminate, journal), resume."""


@decommission.command("plan")
@with_options(PLAN_OPTIONS)
@MARKED
@with_options(CAPS)
@click.option(
    "-o",
    "--out",
    "out",
    default=None,
    help="Where to write the plan (a JSON file path); default "
    "$AWSOPS_HOME/plans/<plan id>/plan.json.",
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
    allow_short: bool,
    marked: bool,
    out: str | None,
    output_format: str,
    **kw: Any,
) -> None:
    """Read-only: find stopped instances, decide, write a reviewable, signed plan."""
    settings = load_settings(config_file)
    criteria = criteria_from(older_than, settings, cloudtrail, allow_short)
    criteria = dataclasses.replace(criteria, marked=marked)
    limits = plan_limits(settings, kw)
    path = check_plan_output(out) if out is not None else None
    if path is None:
        private_dir(home() / "plans")  # the default place can be written: checked first
    app = app_context()
    targets = app.targets(regions, targets_file)
    with progress_for() as progress:
        plan = build_plan(
            app.factory(),
            targets,
            criteria,
            ttl_hours=settings.plan_ttl_hours,
            concurrency=concurrency,
            limits=limits,
            endpoint=endpoint_of(app),
            on_target=_plan_progress(progress, len(targets)),
            backup_retention_days=settings.backup_retention_days,
            window=settings.marks.window if marked else None,
            notified=notified_marks(settings) if marked else None,
        )
    path = path or default_plan_path(plan.plan_id)
    write_plan(plan, path)
    if output_format == "json":
        click.echo(to_json(plan_json(plan), indent=2))
    else:
        render_review(review(plan), make_console())
        click.echo(
            f"plan written to {path}; review it, then: {app.command(*resume_args(path))}",
            err=True,
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
    help="Decommission config YAML: apply's own policy, a floor under the plan's.",
)
@ALLOW_SHORT
@with_options(APPLY_OPTIONS)
@aws_options
def apply_cmd(
    plan_file: str,
    config_file: str | None,
    allow_short: bool,
    yes: bool,
    dry_run: bool,
    output_format: str | None,
    **kw: Any,
) -> None:
    """Apply a plan: re-verify, DryRun check, snapshot, terminate, wait. Resumable."""
    settings = load_settings(config_file)
    plan = load_plan(plan_file)
    _apply(
        app_context(),
        plan,
        Path(plan_file),
        settings,
        yes,
        dry_run,
        allow_short,
        output_format,
        kw,
    )


@decommission.command("run")
@with_options(PLAN_OPTIONS)
@with_options(APPLY_OPTIONS)
@aws_options
def run_cmd(
    older_than: str,
    regions: str | None,
    targets_file: str | None,
    config_file: str | None,
    cloudtrail: bool,
    concurrency: int,
    allow_short: bool,
    yes: bool,
    dry_run: bool,
    output_format: str | None,
    **kw: Any,
) -> None:
    """Plan and apply in one go (small jobs), with the same safety rails. The plan is
    kept under $AWSOPS_HOME/runs/ with its journal, so an interrupted run can resume
    with `awsops decommission apply`."""
    settings = load_settings(config_file)
    criteria = criteria_from(older_than, settings, cloudtrail, allow_short)
    limits = plan_limits(settings, dict(kw))
    app = app_context()
    plan = build_plan(
        app.factory(),
        app.targets(regions, targets_file),
        criteria,
        ttl_hours=settings.plan_ttl_hours,
        concurrency=concurrency,
        limits=limits,
        endpoint=endpoint_of(app),
        backup_retention_days=settings.backup_retention_days,
    )
    runs = private_dir(home() / "runs")
    path = write_plan(plan, runs / f"{plan.plan_id}.json")
    render_review(review(plan), make_console(stderr=True))
    click.echo(f"plan kept at {path}", err=True)
    failed = _plan_errors(plan)
    _apply(app, plan, path, settings, yes, dry_run, allow_short, output_format, kw)
    if failed:
        raise SystemExit(1)


from awsops.cli.decommission_marks import mark_cmd, notify_cmd  # noqa: E402
from awsops.cli.decommission_restore import prune_cmd, restore_cmd  # noqa: E402
from awsops.cli.decommission_view import report_cmd, show_cmd  # noqa: E402

decommission.add_command(show_cmd)
decommission.add_command(report_cmd)
decommission.add_command(restore_cmd)
decommission.add_command(prune_cmd)
decommission.add_command(mark_cmd)
decommission.add_command(notify_cmd)

COMMANDS = [decommission]
