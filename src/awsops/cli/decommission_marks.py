"""``awsops decommission mark|notify``: the daily mark-and-notify cycle, thin over
:mod:`awsops.decommission.marking` and :mod:`awsops.decommission.notify`."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any

import click

from awsops.cli.context import app_context, aws_options
from awsops.cli.decommission_options import (
    PLAN_OPTIONS,
    SCOPE_OPTIONS,
    criteria_from,
    load_settings,
    parse_older_than,
    with_options,
)
from awsops.decommission.marking import MarkRequest, mark_instances
from awsops.decommission.markrender import (
    MARK_DROP_ORDER,
    NOTIFY_DROP_ORDER,
    mark_json,
    mark_rows,
    mark_summary,
    notify_json,
    notify_rows,
    notify_summary,
)
from awsops.decommission.notify import notify_owners
from awsops.output import RecordWriter, to_json

_OUTPUT = click.option(
    "--output",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
_DRY_RUN = click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")


def _render(
    output_format: str,
    data: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    drop_order: Sequence[str],
    summary: str,
) -> None:
    """JSON on stdout, or the table on stdout and the summary line on stderr."""
    if output_format == "json":
        click.echo(to_json(data, indent=2))
        return
    with RecordWriter("table", sys.stdout, drop_order=drop_order) as w:
        w.write_all(rows)
    click.echo(summary, err=True)


def _errors(errors: Sequence[str]) -> None:
    for e in errors:
        click.echo(f"error: {e}", err=True)
    if errors:
        raise SystemExit(1)


@click.command("mark")
@with_options(PLAN_OPTIONS)
@click.option(
    "--grace",
    default=None,
    help="How long owners have before a marked instance may be planned: 14d, 2w "
    "(default: marks.grace_days in the config, else 14 days).",
)
@_DRY_RUN
@_OUTPUT
@aws_options
def mark_cmd(
    older_than: str,
    regions: str | None,
    targets_file: str | None,
    config_file: str | None,
    cloudtrail: bool,
    concurrency: int,
    allow_short: bool,
    grace: str | None,
    dry_run: bool,
    output_format: str,
) -> None:
    """Tag each instance that qualifies today (the rules of `plan`) with
    awsops:terminate-after=<now + grace>; leave existing marks where they are; unmark
    what no longer qualifies (started, protected, excluded, opted out with awsops:keep
    or awsops:keep-until) and say why. Changes tags only; --dry-run changes nothing."""
    settings = load_settings(config_file)
    criteria = criteria_from(older_than, settings, cloudtrail, allow_short)
    days = (
        parse_older_than(grace, allow_short, flag="--grace")
        if grace is not None
        else settings.marks.grace_days
    )
    app = app_context()
    report = mark_instances(
        app.factory(),
        app.targets(regions, targets_file),
        MarkRequest(criteria, dt.timedelta(days=days)),
        dry_run=dry_run,
        concurrency=concurrency,
    )
    _render(
        output_format, mark_json(report), mark_rows(report), MARK_DROP_ORDER, mark_summary(report)
    )
    _errors(report.errors)


@click.command("notify")
@with_options(SCOPE_OPTIONS)
@_DRY_RUN
@_OUTPUT
@aws_options
def notify_cmd(
    regions: str | None,
    targets_file: str | None,
    config_file: str | None,
    dry_run: bool,
    output_format: str,
) -> None:
    """Send each owner one notice per channel listing their marked instances (date,
    saving, how to opt out) when they are owed one: on marking, and a final notice
    marks.final_notice_days before. Channels come from marks.notify in the config.
    What fails is reported (exit 1) and sent on the next run; nothing is sent twice."""
    settings = load_settings(config_file)
    app = app_context()
    report = notify_owners(
        app.factory(),
        app.targets(regions, targets_file),
        settings.marks,
        dry_run=dry_run,
    )
    _render(
        output_format,
        notify_json(report),
        notify_rows(report),
        NOTIFY_DROP_ORDER,
        notify_summary(report),
    )
    failures = [f"{d.channel} to {d.notice.owner.label}: {d.error}" for d in report.failed] + [
        f"no configured channel can reach owner {n.owner.label}" for n in report.undeliverable
    ]
    _errors([*report.target_errors, *failures])
