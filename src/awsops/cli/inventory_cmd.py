"""``awsops inventory KIND``: every page, region and account, streamed to the output."""

from __future__ import annotations

import sys
from typing import Any

import click

from awsops.cli.context import app_context, aws_options, output_options
from awsops.fanout import DEFAULT_CONCURRENCY
from awsops.inventory.collector import InventoryRequest, InventoryRun, Progress
from awsops.inventory.filters import Filter, parse_filters
from awsops.inventory.records import table_view
from awsops.inventory.specs import KINDS
from awsops.output import default_format, progress_for, write_records
from awsops.paginate import compile_query


def _kinds_help() -> str:
    width = max(len(k) for k in KINDS)
    lines = [f"  {name.ljust(width)}  {spec.description}" for name, spec in KINDS.items()]
    return "\n".join(lines)


HELP = f"""List every item of KIND in every target (account x region), streamed.

\b
Kinds:
{_kinds_help()}

Records carry account_id and region. Output is a table on a terminal and JSON lines
when piped; a summary line (items, pages, API calls, targets, errors, seconds) goes to
stderr. A failing target does not stop the others: it is reported at the end as
`error: <target>: ...` and the exit code is 1.

\b
Examples:
  awsops inventory ec2-instances --regions all --filters Name=instance-state-name,Values=stopped
  awsops inventory ec2-instances --targets accounts.yaml --tag env=prod --output csv
  awsops inventory s3-objects --bucket logs --query '[?size > `10485760`].key'
"""


@click.command("inventory", help=HELP)
@click.argument("kind", type=click.Choice(list(KINDS)), metavar="KIND")
@click.option(
    "--regions",
    default=None,
    help="Comma-separated regions, or 'all' for every region enabled for the account "
    "(default: --region).",
)
@click.option(
    "--targets",
    "targets_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML file of accounts (account_id, role_arn, external_id, name, regions); "
    "a role is assumed per account.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Targets listed at the same time.",
)
@click.option(
    "--filters",
    "filter_args",
    multiple=True,
    help="Server-side filter, AWS CLI shorthand: Name=instance-state-name,Values=stopped "
    "(repeatable).",
)
@click.option(
    "--tag",
    "tag_args",
    multiple=True,
    help="Server-side tag filter Key=Value (or Key: has the tag). Repeatable.",
)
@click.option("--bucket", default=None, help="s3-objects: the bucket to list.")
@click.option("--prefix", default=None, help="s3-objects: only keys under this prefix.")
@click.option(
    "--page-size",
    type=click.IntRange(1, None),
    default=None,
    help="Items per API call (default: the API's maximum, e.g. 1000 for DescribeInstances).",
)
@click.option(
    "--max-items",
    type=click.IntRange(1, None),
    default=None,
    help="Stop after this many records in total.",
)
@click.option(
    "--with-attributes",
    is_flag=True,
    help="ec2-instances: add termination_protection. Costs one extra API call per "
    "instance (DescribeInstanceAttribute).",
)
@click.option(
    "--page-query",
    default=None,
    help="JMESPath applied to each raw API page (its AWS field names), results "
    "flattened across pages; streams. --query applies to the records shown.",
)
@output_options
@aws_options
def inventory(
    kind: str,
    regions: str | None,
    targets_file: str | None,
    concurrency: int,
    filter_args: tuple[str, ...],
    tag_args: tuple[str, ...],
    bucket: str | None,
    prefix: str | None,
    page_size: int | None,
    max_items: int | None,
    with_attributes: bool,
    page_query: str | None,
    output_format: str | None,
    query: str | None,
) -> None:
    filters = parse_filters(filter_args, tag_args)
    filters += [Filter(n, (v,)) for n, v in (("bucket", bucket), ("prefix", prefix)) if v]
    request = InventoryRequest.build(
        kind,
        filters,
        page_query=page_query,
        page_size=page_size,
        max_items=max_items,
        with_attributes=with_attributes,
    )
    fmt = default_format(output_format, sys.stdout)
    app = app_context()
    targets = app.targets(regions, targets_file)
    factory = app.factory()
    if query is not None:
        compile_query(query)  # a bad expression is refused before any API call
    columns = request.kind.table if fmt == "table" and not (query or page_query) else None

    with progress_for(sys.stderr) as bar:
        on_progress = _progress_callback(bar, kind) if bar is not None else None
        run = InventoryRun(
            factory, targets, request, concurrency=concurrency, on_progress=on_progress
        )
        records = run if fmt != "table" or query else map(table_view, run)
        write_records(records, fmt, query, sys.stdout, columns=columns, title=kind)

    click.echo(f"inventory {kind}: {run.summary.line()}", err=True)
    for failed in run.failures:
        assert failed.error is not None
        click.echo(f"error: {failed.target.label}: {failed.error.one_line()}", err=True)
    if run.failures:
        click.get_current_context().exit(1)


def _progress_callback(bar: Any, kind: str) -> Any:
    task: list[Any] = []

    def update(p: Progress) -> None:
        if not task:
            task.append(bar.add_task(kind, total=p.targets_total, detail=""))
        detail = f"targets, {p.pages} pages, {p.items} items" + (
            f", {p.errors} errors" if p.errors else ""
        )
        bar.update(task[0], completed=p.targets_done, detail=detail)

    return update


COMMANDS = [inventory]
