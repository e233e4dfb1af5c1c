"""``awsops wait``, ``awsops ec2 launch|stop|start|terminate``, ``awsops rds snapshot``.

Each command parses its options, builds a client in :func:`_client`, calls one library
function and renders the result. Waiting shows a live progress line on stderr when it
is a terminal and is quiet otherwise. Exit codes: 0 success, 3 not authorized (with
``--check-permissions``) or refused (termination protection), 4 waiter timed out,
5 waiter reached a failure state.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from botocore import xform_name

from awsops import ec2ops
from awsops import rds as rdsops
from awsops.cli.context import app_context, aws_options, output_options
from awsops.clients import make_client
from awsops.errors import UsageError
from awsops.output import progress_for, write_records
from awsops.waiters import OnAttempt, WaitAttempt, normalize_waiter_name, wait

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


# --- shared pieces -------------------------------------------------------------------


def _client(service: str) -> Any:
    """A client for ``service`` in the command's region, from the one factory."""
    app = app_context()
    factory = app.factory()
    region = app.default_region()  # validated when the factory was built
    return make_client(factory.session(), service, region, factory.settings)


def describe_attempt(attempt: WaitAttempt) -> str:
    """The progress line's text for one attempt: ``attempt 3/40, 45s, last: ...``."""
    observed = attempt.observed
    if isinstance(observed, dict):
        shown = ", ".join(f"{k}={v}" for k, v in observed.items()) or "-"
    elif isinstance(observed, list):
        counts: dict[str, int] = {}
        for value in observed:
            counts[str(value)] = counts.get(str(value), 0) + 1
        shown = ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"
    else:
        shown = str(observed)
    pending = f", {attempt.pending} pending" if attempt.pending else ""
    return (
        f"attempt {attempt.attempt}/{attempt.max_attempts}, {attempt.elapsed:.0f}s, "
        f"last: {shown}{pending}"
    )


@contextmanager
def waiting(title: str) -> Iterator[OnAttempt]:
    """A per-attempt callback that drives a live progress line on a terminal."""
    with progress_for(sys.stderr) as progress:
        if progress is None:

            def quiet(attempt: WaitAttempt) -> None:
                log.debug("%s: %s", title, describe_attempt(attempt))

            yield quiet
            return
        task = progress.add_task(title, total=None, detail="")

        def update(attempt: WaitAttempt) -> None:
            progress.update(
                task,
                total=attempt.max_attempts,
                completed=attempt.attempt,
                detail=describe_attempt(attempt),
            )

        yield update


def wait_options(delay_default: float | None, attempts_default: int | None) -> Callable[[F], F]:
    """``--delay`` and ``--max-attempts`` (the waiter's own defaults when ``None``)."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--max-attempts",
            "max_attempts",
            type=click.IntRange(min=1),
            default=attempts_default,
            show_default=attempts_default is not None,
            help="Polls before giving up (exit 4). Default: the waiter's.",
        )(fn)
        fn = click.option(
            "--delay",
            type=click.FloatRange(min=0),
            default=delay_default,
            show_default=delay_default is not None,
            help="Seconds between polls. Default: the waiter's.",
        )(fn)
        return fn

    return decorate


def _render(records: Sequence[Mapping[str, Any]], fmt: str | None, query: str | None) -> None:
    write_records(records, fmt, query)


# --- awsops wait ---------------------------------------------------------------------


def option_names(input_shape: Any) -> dict[str, str]:
    """``--instance-ids`` style option names -> member names of an input shape."""
    members = input_shape.members if input_shape is not None else {}
    return {xform_name(m).replace("_", "-"): m for m in members}


def _shorthand_structure(shape: Any, text: str) -> dict[str, Any]:
    """``Name=tag:env,Values=a,b`` -> ``{"Name": "tag:env", "Values": ["a", "b"]}``.

    A part without ``=`` continues the previous list member's values.
    """
    out: dict[str, Any] = {}
    current: str | None = None
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key in shape.members:
            current = key
            member = shape.members[key]
            out[key] = (
                [_scalar(member.member, value)]
                if member.type_name == "list"
                else (_scalar(member, value))
            )
        elif current is not None and isinstance(out[current], list):
            out[current].append(_scalar(shape.members[current].member, part))
        else:
            valid = ", ".join(shape.members)
            raise UsageError(f"cannot parse {text!r}: expected Key=Value,... with keys {valid}")
    return out


def _scalar(shape: Any, text: str) -> Any:
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
    except ValueError:
        raise UsageError(f"expected a number, got {text!r}") from None
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise UsageError(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    if kind == "structure":
        return _json_or(text, lambda: _shorthand_structure(shape, text))
    if kind in ("map", "list"):
        return _json_or(text, lambda: _fail(f"expected JSON for a {kind}, got {text!r}"))
    return text


def _fail(message: str) -> Any:
    raise UsageError(message)


def _json_or(text: str, fallback: Any) -> Any:
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"invalid JSON {text!r}: {exc.msg}") from None
    return fallback()


def parse_waiter_params(operation_model: Any, tokens: Sequence[str]) -> dict[str, Any]:
    """Turn ``--instance-ids i-1 i-2 --filters Name=x,Values=a,b`` into API parameters.

    Option names are the operation's input members in dashed form (``InstanceIds`` ->
    ``--instance-ids``; ``--name=value`` works too). A list member takes every value up
    to the next option and may be repeated; a scalar takes exactly one (a boolean
    none: it is then true); structures take ``Key=Value,...`` shorthand or JSON.
    An unknown option is a :class:`UsageError` listing the valid ones.
    """
    shape = operation_model.input_shape
    names = option_names(shape)
    grouped: list[tuple[str, str, list[str]]] = []
    for token in tokens:
        if token.startswith("--"):
            name, sep, inline = token[2:].partition("=")
            member = names.get(name) or (name if shape and name in shape.members else None)
            if member is None:
                valid = " ".join(f"--{n}" for n in names) or "(none)"
                raise UsageError(
                    f"unknown parameter --{name} for {operation_model.name}; valid: {valid}"
                )
            grouped.append((name, member, [inline] if sep else []))
        elif not grouped:
            raise UsageError(f"unexpected value {token!r}: give parameters as --name value")
        else:
            grouped[-1][2].append(token)
    params: dict[str, Any] = {}
    for name, member, values in grouped:
        member_shape = shape.members[member]
        if member_shape.type_name == "list":
            if not values:
                raise UsageError(f"--{name} needs at least one value")
            params.setdefault(member, []).extend(_scalar(member_shape.member, v) for v in values)
        elif member_shape.type_name == "boolean" and not values:
            params[member] = True
        elif len(values) != 1:
            raise UsageError(f"--{name} takes exactly one value, got {len(values)}")
        else:
            params[member] = _scalar(member_shape, values[0])
    missing = [m for m in getattr(shape, "required_members", []) if m not in params]
    if missing:
        need = ", ".join(f"--{xform_name(m).replace('_', '-')}" for m in missing)
        raise UsageError(f"{operation_model.name} needs {need}")
    return params


@click.command(
    "wait",
    context_settings={"ignore_unknown_options": True},
    short_help="Wait for any resource state (any botocore waiter).",
)
@click.argument("service")
@click.argument("waiter", required=False)
@click.argument("params", nargs=-1, type=click.UNPROCESSED)
@wait_options(None, None)
@aws_options
def wait_cmd(
    service: str,
    waiter: str | None,
    params: tuple[str, ...],
    delay: float | None,
    max_attempts: int | None,
) -> None:
    """Wait until SERVICE's WAITER succeeds, e.g.

    \b
      awsops wait ec2 instance-running --instance-ids i-1 i-2
      awsops wait rds db-snapshot-available --db-snapshot-identifier snap-1
      awsops wait ec2 instance-stopped --filters Name=tag:env,Values=dev

    Parameters are the waiter operation's, in dashed form. Without WAITER, lists the
    service's waiters. Exit 0 on success, 4 on timeout, 5 on a failure state.
    """
    client = _client(service)
    if waiter is None:
        for name in client.waiter_names:
            click.echo(name.replace("_", "-"))
        return
    name = normalize_waiter_name(waiter)
    if name not in client.waiter_names:
        known = ", ".join(n.replace("_", "-") for n in client.waiter_names) or "none"
        raise UsageError(f"unknown {service} waiter {waiter!r}; known: {known}")
    operation = client.meta.service_model.operation_model(client.get_waiter(name).config.operation)
    api_params = parse_waiter_params(operation, params)
    seen: list[WaitAttempt] = []
    title = f"{service} {name.replace('_', '-')}"
    with waiting(title) as progress:

        def on_attempt(attempt: WaitAttempt) -> None:
            seen.append(attempt)
            progress(attempt)

        wait(
            client,
            name,
            api_params,
            delay=delay,
            max_attempts=max_attempts,
            on_attempt=on_attempt,
        )
    last = seen[-1]
    click.echo(
        f"{title}: success after {last.attempt} attempt(s) ({last.elapsed:.1f}s) "
        f"for {last.resources}"
    )


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
    max_attempts: int | None,
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
    client = _client("ec2")
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
            max_attempts=max_attempts,
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
        max_attempts: int | None,
        output_format: str | None,
        query: str | None,
    ) -> None:
        ids = ec2ops.normalize_ids((*instance_ids, *more_ids))
        client = _client("ec2")
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
                max_attempts=max_attempts,
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
    max_attempts: int,
    output_format: str | None,
    query: str | None,
) -> None:
    """Create a manual DB snapshot."""
    tag_map = ec2ops.parse_tags(tags)
    client = _client("rds")
    with waiting(f"rds snapshot {db_snapshot_identifier}") as progress:
        snap = rdsops.create_db_snapshot(
            client,
            db_instance_identifier,
            db_snapshot_identifier,
            tags=tag_map,
            wait=do_wait,
            delay=delay,
            max_attempts=max_attempts,
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
    max_attempts: int,
    output_format: str | None,
    query: str | None,
) -> None:
    """Wait until a DB snapshot is available (exit 4 on timeout, 5 if it failed)."""
    client = _client("rds")
    with waiting(f"rds snapshot {db_snapshot_identifier}") as progress:
        snap = rdsops.wait_db_snapshot(
            client,
            db_snapshot_identifier,
            delay=delay,
            max_attempts=max_attempts,
            on_attempt=progress,
        )
    _render([snap.record()], output_format, query)


COMMANDS = [wait_cmd, ec2, rds]
