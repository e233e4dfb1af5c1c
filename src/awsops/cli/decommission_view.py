"""``awsops decommission show|report``: a saved plan, and what applying it did, as a
table, markdown, one self-contained HTML file or JSON. Files only: no AWS call."""

from __future__ import annotations

import click

from awsops.decommission.documents import (
    report_html,
    report_markdown,
    review_html,
    review_markdown,
)
from awsops.decommission.history import history
from awsops.decommission.journal import journal_path_for, read_events
from awsops.decommission.planfile import load_plan
from awsops.decommission.render import render_review
from awsops.decommission.review import review
from awsops.output import make_console, to_json
from awsops.tables import Column, render_table

_DOC_FORMATS = click.Choice(["table", "markdown", "html", "json"])


@click.command("show")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--output", "output_format", type=_DOC_FORMATS, default="table", show_default=True)
def show_cmd(plan_file: str, output_format: str) -> None:
    """Show a saved plan: every instance to terminate with its evidence, every instance
    kept with its reason, by account and region, with totals. markdown and html (one
    self-contained file) are for a change ticket. Reads the file only: no AWS call."""
    plan = load_plan(plan_file, allow_expired=True)
    data = review(plan)
    if output_format == "json":
        click.echo(to_json(data, indent=2))
    elif output_format == "markdown":
        click.echo(review_markdown(data), nl=False)
    elif output_format == "html":
        click.echo(review_html(data), nl=False)
    else:
        render_review(data, make_console())


@click.command("report")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--output", "output_format", type=_DOC_FORMATS, default="table", show_default=True)
def report_cmd(plan_file: str, output_format: str) -> None:
    """What applying a plan did, from its journal: each instance's outcome, when, its
    snapshots, and why it was skipped or failed. Reads files only: no AWS call."""
    plan = load_plan(plan_file, allow_expired=True)
    past = history(plan, read_events(journal_path_for(plan.plan_id)))
    rows = [h.row() for h in past.instances]
    summary = [
        f"plan {plan.plan_id}: {past.runs} apply run(s); "
        + ", ".join(f"{k} {v}" for k, v in past.counts().items()),
        f"journal {journal_path_for(plan.plan_id)}",
    ]
    if output_format == "json":
        click.echo(
            to_json({"plan_id": plan.plan_id, "runs": past.runs, "instances": rows}, indent=2)
        )
        return
    head = ("instance", "name", "outcome", "at", "snapshots", "reason")
    table = (
        head,
        [
            (
                r["instance_id"],
                r["name"],
                r["outcome"],
                r["at"] or "",
                ", ".join(f"{s['snapshot_id']} ({s['volume_id']})" for s in r["snapshots"]),
                r["reason"],
            )
            for r in rows
        ],
    )
    title = f"Decommission report {plan.plan_id}"
    if output_format == "markdown":
        click.echo(report_markdown(title, table, summary), nl=False)
    elif output_format == "html":
        click.echo(report_html(title, table, summary), nl=False)
    else:
        console = make_console()
        render_table(
            console,
            (
                Column("instance", key=True),
                Column("name", drop=2),
                Column("outcome", key=True),
                Column("at", key=True, drop=1),
                Column("snapshots"),
                Column("reason", drop=3),
            ),
            table[1],
            title=title,
        )
        for line in summary:
            click.echo(line)
