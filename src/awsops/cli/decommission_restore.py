"""``awsops decommission restore`` and ``prune-backups``: the way back, and the clean-up
of what awsops itself made."""

from __future__ import annotations

import sys

import click

from awsops.cancel import CancelToken, cancel_on_signals
from awsops.cli.context import app_context, aws_options
from awsops.decommission.journal import journal_path_for
from awsops.decommission.planfile import load_plan
from awsops.decommission.restore import Restorer
from awsops.errors import UsageError
from awsops.output import write_records


@click.command("restore")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--instance-ids", multiple=True, help="Instances of the plan to restore.")
@click.option("--all", "restore_all", is_flag=True, help="Every instance the plan terminated.")
@click.option("--dry-run", is_flag=True, help="Only check what a restore needs; change nothing.")
@click.option(
    "--delay",
    type=click.FloatRange(0),
    default=15.0,
    show_default=True,
    help="Seconds between instance_running polls.",
)
@click.option("--polls", type=click.IntRange(1), default=40, show_default=True)
@click.option(
    "--output", "output_format", type=click.Choice(["table", "json", "jsonl", "csv"]), default=None
)
@aws_options
def restore_cmd(
    plan_file: str,
    instance_ids: tuple[str, ...],
    restore_all: bool,
    dry_run: bool,
    delay: float,
    polls: int,
    output_format: str | None,
) -> None:
    """Bring back instances a plan terminated, from the images apply made: checks that
    the image, subnet, security groups, instance profile, key pair and KMS keys still
    exist and says what will differ, then RunInstances with the captured settings and
    tags (plus awsops:restored-from), attaches the surviving data volumes, associates
    the Elastic IPs still free, and waits for running. Journaled and resumable: an
    interrupted restore never launches twice."""
    plan = load_plan(plan_file, allow_expired=True)
    ids = [f.instance_id for _, f in plan.chosen] if restore_all else list(instance_ids)
    if not ids or (restore_all and instance_ids):
        raise UsageError("give --instance-ids i-... (repeatable) or --all")
    app = app_context()
    token = CancelToken()
    restorer = Restorer(
        plan,
        app.factory(),
        journal_path_for(plan.plan_id),
        dry_run=dry_run,
        running_delay=delay,
        running_polls=polls,
        cancel=token,
    )
    with cancel_on_signals(token, notify=lambda m: click.echo(m, err=True)):
        results = restorer.restore(ids)
    write_records(
        [{**r.to_json(), "differences": "; ".join(r.differences)} for r in results],
        output_format,
        stream=sys.stdout,
        columns=["instance_id", "outcome", "new_instance_id", "reason", "differences"],
    )
    bad = [r for r in results if r.outcome in ("refused", "failed", "not-done")]
    if token.cancelled:
        again = app.command("decommission", "restore", plan_file, *_ids_args(ids))
        click.echo(f"error: {token.reason}; resume with: {again}", err=True)
        raise SystemExit(130)
    if bad:
        click.echo(
            f"error: {len(bad)} of {len(results)} instance(s) not restored: "
            + "; ".join(f"{r.instance_id}: {r.reason}" for r in bad),
            err=True,
        )
        raise SystemExit(1)


def _ids_args(ids: list[str]) -> list[str]:
    out: list[str] = []
    for i in ids:
        out += ["--instance-ids", i]
    return out
