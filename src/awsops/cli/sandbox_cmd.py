"""``awsops sandbox up|down|status|seed``."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.table import Table

from awsops.cli.context import app_context
from awsops.config import parse_region_list
from awsops.errors import UsageError
from awsops.output import progress_for
from awsops.sandbox import manager
from awsops.sandbox.faultspec import split_items


@click.group("sandbox")
def sandbox() -> None:
    """The local AWS sandbox (moto server on 127.0.0.1): no AWS account needed."""


@sandbox.command("up")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port (0: a free one).")
@click.option("--host", default="127.0.0.1", help="Loopback address to listen on.")
@click.option(
    "--faults",
    default=None,
    help="Faults to inject: the server's own (snapshot-delay=30s, snapshot-error=0.1, "
    "image-delay, image-error, credential-ttl=60s, seed=N) and those of a fault proxy put "
    "in front (throttle=0.2,error5xx=0.05,reset=0.02,latency=50ms, ...).",
)
def up(port: int, host: str, faults: str | None) -> None:
    """Start the sandbox in the background (or report the running one)."""
    state = manager.up(port=port, host=host, faults=faults)
    click.echo(f"sandbox running: endpoint {state.endpoint} (pid {state.pid})")
    if state.faults:
        click.echo(f"faults: {state.faults} (server {state.server_url})")


@sandbox.command("down")
def down() -> None:
    """Stop the sandbox (all its state is lost)."""
    result = manager.down()
    for pid in result.left_alone:
        click.echo(
            f"stale sandbox record: pid {pid} is not the sandbox; left it alone "
            "and removed the record"
        )
    if result.stopped:
        click.echo(f"sandbox stopped (pid {', '.join(str(p) for p in result.stopped)})")
    elif not result.left_alone:
        click.echo("sandbox was not running")


@sandbox.command("faults")
@click.argument("spec", required=False)
@click.option("--clear", is_flag=True, help="Set every server fault back to bare moto.")
def faults(spec: str | None, clear: bool) -> None:
    """Show or change the running server's faults, e.g.
    `awsops sandbox faults snapshot-delay=30s,snapshot-error=0.1` (keys not given keep
    their value)."""
    from awsops.sandbox.serverfaults import ServerFaults

    state = manager.require()
    if clear:
        answer = manager.control(state.server_url, "faults", {}, method="DELETE")
    if spec:
        settings = ServerFaults.parse(spec)
        given = {key for key, _ in split_items(spec)}
        payload = {k: v for k, v in settings.to_json().items() if k in given}
        answer = manager.control(state.server_url, "faults", payload)
    if not (spec or clear):
        answer = manager.control(state.server_url, "faults", None, method="GET")
    click.echo(f"server faults: {answer['spec'] or 'none'}")
    for key, value in sorted(answer["counters"].items()):
        click.echo(f"  {key}: {value}")


@sandbox.command("status")
def status() -> None:
    """Say whether the sandbox runs and where; exit 1 if it does not."""
    state = manager.read_state()
    if state is None or not manager.health(state.server_url):
        click.echo("sandbox: not running")
        raise SystemExit(1)
    up_for = time.time() - state.started_at
    click.echo(f"sandbox: running at {state.endpoint} (pid {state.pid}, up {up_for:.0f}s)")
    if state.faults:
        click.echo(f"faults: {state.faults}")


@sandbox.command("seed")
@click.option(
    "--fleet",
    type=click.Choice(["demo"]),
    default="demo",
    show_default=True,
    help="Which fleet to create.",
)
@click.option(
    "--instances",
    type=click.IntRange(1, 10_000),
    default=60,
    show_default=True,
    help="Instances per region.",
)
@click.option(
    "--regions",
    default=",".join(("us-east-1", "eu-west-1", "ap-southeast-2")),
    show_default=True,
    help="Comma-separated regions.",
)
@click.option("--no-buckets", is_flag=True, help="Skip the S3 buckets.")
def seed(fleet: str, instances: int, regions: str, no_buckets: bool) -> None:
    """Create the demo fleet: running and long-stopped instances, protected ones, ASG
    members, EBS volumes and S3 objects, with backdated stop times."""
    from awsops.sandbox.seed import CATEGORIES, seed_demo

    state = manager.require()
    app = app_context()
    app.sandbox = True
    factory = app.factory()
    region_list = [factory.validate_region(r) for r in parse_region_list(regions)]
    if not region_list:
        raise UsageError("--regions is empty")
    err = Console(stderr=True)
    with progress_for() as bar:
        task = (
            bar.add_task("instances seeded", total=instances * len(region_list), detail="")
            if bar is not None
            else None
        )

        def seeded(region: str, made: object) -> None:
            if bar is None:
                err.print(f"seeded {region}", highlight=False)
            else:
                bar.update(task, detail=f"{region} done")

        def made(n: int) -> None:
            if bar is not None:
                bar.advance(task, n)

        report = seed_demo(
            factory.session(region_list[0]),
            factory.settings,
            state.server_url,
            region_list,
            instances,
            with_buckets=not no_buckets,
            on_region=seeded,
            on_made=made,
        )
    table = Table(title=f"demo fleet in account {report.account_id}")
    table.add_column("category")
    for r in region_list:
        table.add_column(r, justify="right")
    for cat in CATEGORIES:
        table.add_row(cat.name, *(str(report.instances[r][cat.name]) for r in region_list))
    Console().print(table)
    click.echo(
        f"{report.total_instances} instances, {report.volumes} volumes, "
        f"{len(report.buckets)} buckets, {report.objects} objects"
    )


COMMANDS = [sandbox]
