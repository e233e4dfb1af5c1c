"""``awsops wait SERVICE WAITER --params...``: any botocore waiter from the command line."""

from __future__ import annotations

import click

from awsops.cli.context import aws_options
from awsops.cli.waiting import client_for, suggest, wait_options, waiting
from awsops.errors import UsageError
from awsops.waiters import WaitAttempt, normalize_waiter_name, wait
from awsops.waitparams import option_names, parse_waiter_params


@click.command(
    "wait",
    context_settings={"ignore_unknown_options": True},
    short_help="Wait for any resource state (any botocore waiter).",
)
@click.argument("service")
@click.argument("waiter", required=False)
@click.argument("params", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--all",
    "all_resources",
    is_flag=True,
    help="Wait on every resource the call returns when no id or filter is given.",
)
@wait_options(None, None)
@aws_options
def wait_cmd(
    service: str,
    waiter: str | None,
    params: tuple[str, ...],
    all_resources: bool,
    delay: float | None,
    polls: int | None,
) -> None:
    """Wait until SERVICE's WAITER succeeds, e.g.

    \b
      awsops wait ec2 instance-running --instance-ids i-1 i-2
      awsops wait rds db-snapshot-available --db-snapshot-identifier snap-1
      awsops wait ec2 instance-stopped --filters Name=tag:env,Values=dev

    Parameters are the waiter operation's, in dashed form. Without WAITER, lists the
    service's waiters. Without any id or filter, waits on nothing unless --all is given.
    Exit 0 on success, 2 on bad input, 4 on timeout, 5 on a failure state.
    """
    client = client_for(service)
    if waiter is None:
        for name in client.waiter_names:
            click.echo(name.replace("_", "-"))
        return
    name = normalize_waiter_name(waiter)
    if name not in client.waiter_names:
        dashed = [n.replace("_", "-") for n in client.waiter_names]
        hint = suggest(waiter, dashed) or f"; known: {', '.join(dashed) or 'none'}"
        raise UsageError(f"unknown {service} waiter {waiter!r}{hint}")
    operation = client.meta.service_model.operation_model(client.get_waiter(name).config.operation)
    api_params = parse_waiter_params(operation, params)
    if not api_params and not all_resources:
        members = option_names(operation.input_shape)
        raise UsageError(
            f"{service} {waiter} without ids or filters would wait on every resource: give "
            f"{' or '.join(f'--{m}' for m in list(members)[:2]) or 'its parameters'}, "
            "or --all if you mean every one"
        )
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
            max_attempts=polls,
            on_attempt=on_attempt,
        )
    last = seen[-1]
    click.echo(
        f"{title}: success after {last.attempt} attempt(s) ({last.elapsed:.1f}s) "
        f"for {last.resources}"
    )


COMMANDS = [wait_cmd]
