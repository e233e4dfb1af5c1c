"""The ``awsops`` entry point: global options, command registry, one-line errors."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from awsops import __version__
from awsops.cli.context import AppContext
from awsops.errors import AwsopsError, translate

COMMAND_MODULES = (
    "awsops.cli.sandbox_cmd",
    "awsops.cli.inventory_cmd",
    "awsops.cli.decommission_cmd",
    "awsops.cli.lifecycle_cmd",
    "awsops.cli.wait_cmd",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="awsops")
@click.option("--profile", default=None, envvar="AWS_PROFILE", help="Named profile.")
@click.option("--region", default=None, help="Default region (or AWS_REGION).")
@click.option("--endpoint-url", default=None, help="Endpoint override (or AWS_ENDPOINT_URL).")
@click.option("--sandbox", is_flag=True, help="Use the running local sandbox.")
@click.option("--debug", is_flag=True, help="Debug logging on stderr (credentials redacted).")
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 30),
    default=None,
    help="Attempts per API call, retries included (adaptive mode).",
)
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """Production-grade AWS operations: inventory every page and region, wait for
    state changes, and decommission long-stopped EC2 instances safely.

    Start with the local sandbox (no AWS account needed):

        awsops sandbox up && awsops sandbox seed --fleet demo
    """
    app = ctx.ensure_object(AppContext)
    given_region = options.pop("region")
    region = given_region or os.environ.get("AWS_REGION") or None
    from_env = () if given_region else ("region",)
    profile_from_env = (
        ("profile",) if options.get("profile") == os.environ.get("AWS_PROFILE") else ()
    )
    app.merge(_from_env=(*from_env, *profile_from_env), region=region, **options)
    if app.debug:
        from awsops.logs import setup_logging

        setup_logging(debug=True)


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; expected failures print one ``error:`` line and exit non-zero."""
    from awsops.logs import setup_logging

    setup_logging(debug="--debug" in (argv if argv is not None else sys.argv))
    try:
        rv = cli.main(args=argv, prog_name="awsops", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except AwsopsError as exc:
        click.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except Exception as exc:
        if "--debug" in (argv if argv is not None else sys.argv):
            raise
        err = translate(exc)
        click.echo(f"error: {err.one_line()}", err=True)
        sys.exit(err.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
