"""``awsops ec2 launch|stop|start|terminate``, ``awsops rds snapshot``.

Each command parses its options, builds a client with :func:`client_for`, calls one library
function and renders the result. Waiting shows a live progress line on stderr when it
is a terminal and is quiet otherwise. Exit codes: 0 success, 3 not authorized (with
``--check-permissions``) or refused (termination protection), 4 waiter timed out,
5 waiter reached a failure state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from awsops import ec2ops
from awsops import rds as rdsops
from awsops.cli.context import aws_options, output_options
from awsops.cli.waiting import client_for, wait_options, waiting
from awsops.output import write_records

# --- shared pieces -------------------------------------------------------------------


def _render(records: Sequence[Mapping[str, Any]], fmt: str | None, query: str | None) -> None:
    write_records(records, fmt, query)


# --- awsops wait ---------------------------------------------------------------------


# --- awsops ec2 ----------------------------------------------------------------------


@click.group("ec2")
def ec2() -> None:
    """EC2 instance lifecycle: launch, stop, start, terminate (optionally waiting)."""


@ec2.command("launch")
@click.option("--image-id", required=True, help="AMI id (ami-...).")
@click.option("--instance-type", default="t3.micro", show_default=True)
@click.option("--count", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag (repeatable).")
@click.option("--subnet-id", default=None)
@click.option("--key-name", default=None)
@click.option("--security-group-id", "security_group_ids", multiple=True, help="Repeatable.")
@click.option("--wait", "do_wait", is_flag=True, help="Wait until every instance runs.")
@click.option("--wait-status-ok", is_flag=True, help="Then wait for status checks to pass.")
@click.option(
    "--check-permissions",
    is_flag=True,
    help="Only ask EC2 (DryRun) whether the launch would be authorized.",
)
@wait_options(None, None)
@output_options
@aws_options
def launch_cmd(
    image_id: str,
    instance_type: str,
    count: int,
    tags: tuple[str, ...],
    subnet_id: str | None,
    key_name: str | None,
    security_group_ids: tuple[str, ...],
    do_wait: bool,
    wait_status_ok: bool,
    check_permissions: bool,
    delay: float | None,
    polls: int | None,
    output_format: str | None,
    query: str | None,
) -> None:
    """Launch COUNT instances (all or none); print their ids and AZs."""
    spec = ec2ops.LaunchSpec(
        image_id=image_id,
        instance_type=instance_type,
        count=count,
        tags=ec2ops.parse_tags(tags),
        subnet_id=subnet_id,
        key_name=key_name,
        security_group_ids=tuple(security_group_ids),
    )
    client = client_for("ec2")
    if check_permissions:
        _report_check(ec2ops.check_permissions(client, "run_instances", spec.request()))
        return
    with waiting("ec2 launch") as progress:
        launched = ec2ops.launch(
            client,
            spec,
            wait=do_wait,
            wait_status_ok=wait_status_ok,
            delay=delay,
            max_attempts=polls,
            on_attempt=progress,
        )
    _render([i.record() for i in launched], output_format, query)


def _report_check(check: ec2ops.PermissionCheck) -> None:
    """Print the DryRun verdict; exit 3 when not authorized."""
    if check.allowed:
        click.echo(f"{check.operation}: would succeed (DryRun, nothing changed)")
        return
    click.echo(f"{check.operation}: not authorized (DryRun, nothing changed): {check.message}")
    click.get_current_context().exit(3)


def _state_command(action: ec2ops.Action, doc: str) -> click.Command:
    @click.option(
        "--instance-ids",
        "instance_ids",
        multiple=True,
        metavar="ID",
        help="Instance ids (space- or comma-separated; repeatable).",
    )
    @click.argument("more_ids", nargs=-1, metavar="[ID]...")
    @click.option("--wait", "do_wait", is_flag=True, help="Wait for the end state.")
    @click.option(
        "--check-permissions",
        is_flag=True,
        help="Only ask EC2 (DryRun) whether this would be authorized; nothing changes.",
    )
    @wait_options(None, None)
    @output_options
    @aws_options
    def command(
        instance_ids: tuple[str, ...],
        more_ids: tuple[str, ...],
        do_wait: bool,
        check_permissions: bool,
        delay: float | None,
        polls: int | None,
        output_format: str | None,
        query: str | None,
    ) -> None:
        ids = ec2ops.normalize_ids((*instance_ids, *more_ids))
        client = client_for("ec2")
        if check_permissions:
            check = ec2ops.check_permissions(
                client, ec2ops.ACTIONS[action].method, {"InstanceIds": ids}
            )
            if action == "terminate" and check.allowed:
                ec2ops.refuse_protected(client, ids)
            _report_check(check)
            return
        with waiting(f"ec2 {action}") as progress:
            changes = ec2ops.change_state(
                client,
                action,
                ids,
                wait=do_wait,
                delay=delay,
                max_attempts=polls,
                on_attempt=progress,
            )
        _render([c.record() for c in changes], output_format, query)

    command.__doc__ = doc
    return click.command(action)(command)


_STATE_COMMANDS: tuple[tuple[ec2ops.Action, str], ...] = (
    ("stop", "Stop instances; with --wait, until they are stopped."),
    ("start", "Start instances; with --wait, until they are running."),
    (
        "terminate",
        "Terminate instances; with --wait, until they are terminated. Refuses (exit 3) "
        "if any has termination protection, before touching any.",
    ),
)
for _action, _doc in _STATE_COMMANDS:
    ec2.add_command(_state_command(_action, _doc))


# --- awsops rds ----------------------------------------------------------------------


@click.group("rds")
def rds() -> None:
    """RDS operations."""


@rds.group("snapshot")
def snapshot() -> None:
    """DB snapshots: create one, wait for one."""


@snapshot.command("create")
@click.option("--db-instance-identifier", required=True)
@click.option("--db-snapshot-identifier", required=True)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag (repeatable).")
@click.option("--wait", "do_wait", is_flag=True, help="Wait until the snapshot is available.")
@wait_options(30.0, 120)
@output_options
@aws_options
def snapshot_create_cmd(
    db_instance_identifier: str,
    db_snapshot_identifier: str,
    tags: tuple[str, ...],
    do_wait: bool,
    delay: float,
    polls: int,
    output_format: str | None,
    query: str | None,
) -> None:
    """Create a manual DB snapshot."""
    tag_map = ec2ops.parse_tags(tags)
    client = client_for("rds")
    with waiting(f"rds snapshot {db_snapshot_identifier}") as progress:
        snap = rdsops.create_db_snapshot(
            client,
            db_instance_identifier,
            db_snapshot_identifier,
            tags=tag_map,
            wait=do_wait,
            delay=delay,
            max_attempts=polls,
            on_attempt=progress,
        )
    _render([snap.record()], output_format, query)


@snapshot.command("wait")
@click.argument("db_snapshot_identifier")
@wait_options(30.0, 120)
@output_options
@aws_options
def snapshot_wait_cmd(
    db_snapshot_identifier: str,
    delay: float,
    polls: int,
    output_format: str | None,
    query: str | None,
) -> None:
    """Wait until a DB snapshot is available (exit 4 on timeout, 5 if it failed)."""
    client = client_for("rds")
    with waiting(f"rds snapshot {db_snapshot_identifier}") as progress:
        snap = rdsops.wait_db_snapshot(
            client,
            db_snapshot_identifier,
            delay=delay,
            max_attempts=polls,
            on_attempt=progress,
        )
    _render([snap.record()], output_format, query)


COMMANDS = [ec2, rds]
