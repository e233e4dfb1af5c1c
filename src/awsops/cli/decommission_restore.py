"""``awsops decommission restore`` and ``prune-backups``: the way back, and the clean-up
of what awsops itself made."""

from __future__ import annotations

import datetime as dt
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


@click.command("prune-backups")
@click.option("--older-than", required=True, help="Backups made longer ago than: 90d, 12w.")
@click.option("--regions", default=None, help="Comma-separated regions, or 'all'.")
@click.option(
    "--targets",
    "targets_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML file of accounts (role ARN, ExternalId, profile, regions, name).",
)
@click.option("--delete", is_flag=True, help="Delete them. Without it, only list (dry run).")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted (the default).")
@click.option(
    "--recycle-bin-days",
    type=click.IntRange(1, 365),
    default=None,
    help="Check for a Recycle Bin rule keeping deleted awsops backups this many days.",
)
@click.option("--create", is_flag=True, help="With --recycle-bin-days: add the rule if missing.")
@click.option(
    "--output", "output_format", type=click.Choice(["table", "json", "jsonl", "csv"]), default=None
)
@aws_options
def prune_cmd(
    older_than: str,
    regions: str | None,
    targets_file: str | None,
    delete: bool,
    dry_run: bool,
    recycle_bin_days: int | None,
    create: bool,
    output_format: str | None,
) -> None:
    """Deregister the images and delete the snapshots awsops made (by its tags) that are
    older than --older-than; dry run unless --delete. Never touches anything else."""
    from awsops.cli.decommission_options import parse_older_than
    from awsops.clients import make_client
    from awsops.decommission.prune import (
        create_recycle_bin_rule,
        delete_backups,
        find_backups,
        recycle_bin_rules,
    )

    if delete and dry_run:
        raise UsageError("--delete and --dry-run contradict each other")
    if create and recycle_bin_days is None:
        raise UsageError("--create needs --recycle-bin-days")
    days = parse_older_than(older_than, allow_short=True)
    app = app_context()
    factory = app.factory()
    now = dt.datetime.now(dt.timezone.utc)
    token = CancelToken()
    found = []
    notes = []
    with cancel_on_signals(token, notify=lambda m: click.echo(m, err=True)):
        token.arm()
        for target in app.targets(regions, targets_file):
            session = factory.for_target(target)
            ec2 = make_client(session, "ec2", target.region, factory.settings)
            backups = find_backups(ec2, target.region, days, now)
            if delete:
                delete_backups(ec2, backups, lambda: token.cancelled)
            found += backups
            if recycle_bin_days is not None:
                rbin = make_client(session, "rbin", target.region, factory.settings)
                for rule in recycle_bin_rules(rbin, target.region):
                    if rule.identifier is None and create and delete:
                        rid = create_recycle_bin_rule(
                            rbin, target.region, rule.resource_type, recycle_bin_days
                        )
                        notes.append(
                            f"{target.label}: created Recycle Bin rule {rid} for {rule.resource_type}"
                        )
                    elif rule.identifier is None:
                        notes.append(
                            f"{target.label}: no Recycle Bin rule keeps deleted awsops "
                            f"{rule.resource_type} (add one with --create --delete)"
                        )
                    else:
                        notes.append(
                            f"{target.label}: Recycle Bin rule {rule.identifier} keeps "
                            f"{rule.resource_type} {rule.days} days"
                        )
    write_records(
        [b.to_json() for b in found],
        output_format,
        stream=sys.stdout,
        columns=["kind", "backup_id", "region", "made_on", "instance_id", "outcome", "reason"],
    )
    for note in notes:
        click.echo(note, err=True)
    mode = "deleted" if delete else "dry run, nothing deleted"
    click.echo(f"prune-backups ({mode}): {len(found)} backup(s) older than {older_than}", err=True)
    if any(b.outcome == "failed" for b in found):
        raise SystemExit(1)
    if token.cancelled:
        raise SystemExit(130)
