"""The one place where CLI options become library objects."""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
import click

from awsops.config import (
    ClientSettings,
    Target,
    ensure_unique,
    load_targets_file,
    parse_region_list,
)
from awsops.errors import UsageError
from awsops.session import SessionFactory

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    """Options shared by every command; builds the session factory once."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    sandbox: bool = False
    debug: bool = False
    max_attempts: int | None = None
    given: frozenset[str] = frozenset()  # options given on the command line
    _factory: SessionFactory | None = field(default=None, repr=False)

    def merge(self, _from_env: tuple[str, ...] = (), **values: Any) -> None:
        """Leaf-command options override the group's. Keys in ``_from_env`` came from the
        environment, not the command line (hints do not repeat them as flags)."""
        for key, value in values.items():
            if value not in (None, False):
                setattr(self, key, value)
                self._factory = None
                if key not in _from_env:
                    self.given = self.given | {key}

    def settings(self) -> ClientSettings:
        extra: dict[str, Any] = {}
        if self.max_attempts:
            extra["max_attempts"] = self.max_attempts
        if self.sandbox:
            from awsops.sandbox import manager

            return ClientSettings(endpoint_url=manager.require().endpoint, **extra)
        return ClientSettings.from_env(self.endpoint_url, **extra)

    def factory(self) -> SessionFactory:
        if self._factory is None:
            settings = self.settings()
            if self.sandbox:
                from awsops.sandbox import manager

                self._factory = SessionFactory(
                    region=self.region or os.environ.get("AWS_REGION") or manager.SANDBOX_REGION,
                    settings=settings,
                    static_credentials=(manager.SANDBOX_ACCESS_KEY, manager.SANDBOX_SECRET_KEY),
                )
            else:
                self._factory = SessionFactory(
                    profile=self.profile, region=self.region, settings=settings
                )
        return self._factory

    def command(self, *args: str) -> str:
        """The awsops command line for ``args`` with the global options in use, quoted
        for a POSIX shell: every hint awsops prints can be pasted as it is."""
        parts = ["awsops"]
        if self.sandbox:
            parts.append("--sandbox")
        for key, flag in (
            ("profile", "--profile"),
            ("region", "--region"),
            ("endpoint_url", "--endpoint-url"),
            ("max_attempts", "--max-attempts"),
        ):
            value = getattr(self, key)
            if value and key in self.given:
                parts += [flag, str(value)]
        return " ".join(shlex.quote(p) for p in [*parts, *args])

    def default_region(self) -> str:
        region = self.factory().region
        if not region:
            raise UsageError("no region given: pass --region or set AWS_REGION")
        return region

    def targets(self, regions: str | None = None, targets_file: str | None = None) -> list[Target]:
        """Targets from ``--targets`` (accounts × regions) or ``--regions`` (or the default).

        ``all`` expands to the account's enabled regions (one DescribeRegions call).
        """
        factory = self.factory()
        wanted = parse_region_list(regions)
        if targets_file:
            specs = load_targets_file(targets_file, default_regions=wanted)
            out = []
            for spec in specs:
                if spec.regions == ("all",):
                    # The account's own enabled regions, seen through its role.
                    probe = Target(
                        region=self.default_region(),
                        account_id=spec.account_id,
                        role_arn=spec.role_arn,
                        external_id=spec.external_id,
                        name=spec.name,
                        profile=spec.profile,
                    )
                    spec = dataclasses.replace(
                        spec, regions=tuple(enabled_regions(factory, factory.for_target(probe)))
                    )
                for t in spec.targets():
                    factory.validate_region(t.region)
                    out.append(t)
            ensure_unique(out)
            return out
        if not wanted:
            wanted = [self.default_region()]
        if wanted == ["all"]:
            wanted = enabled_regions(factory)
        return [Target(region=factory.validate_region(r), profile=self.profile) for r in wanted]


def enabled_regions(factory: SessionFactory, session: boto3.Session | None = None) -> list[str]:
    """The regions enabled for the account of ``session`` (one DescribeRegions call)."""
    from awsops.clients import make_client
    from awsops.errors import aws_errors

    session = session or factory.session()
    ec2 = make_client(session, "ec2", settings=factory.settings)
    with aws_errors(operation="DescribeRegions", region=factory.region):
        resp = ec2.describe_regions(
            Filters=[{"Name": "opt-in-status", "Values": ["opt-in-not-required", "opted-in"]}]
        )
    return sorted(r["RegionName"] for r in resp["Regions"])


def aws_options(fn: F) -> F:
    """Add --profile/--region/--endpoint-url/--sandbox/--debug to a command."""
    options = [
        click.option("--profile", default=None, help="Named profile (or AWS_PROFILE)."),
        click.option("--region", default=None, help="Region (or AWS_REGION / AWS_DEFAULT_REGION)."),
        click.option(
            "--endpoint-url",
            default=None,
            help="Endpoint override for every service (or AWS_ENDPOINT_URL).",
        ),
        click.option(
            "--sandbox",
            is_flag=True,
            default=False,
            help="Use the running local sandbox with dummy credentials.",
        ),
        click.option(
            "--debug",
            is_flag=True,
            default=False,
            help="Debug logging on stderr (credentials are redacted).",
        ),
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app = click.get_current_context().ensure_object(AppContext)
        app.merge(
            **{k: kwargs.pop(k) for k in ("profile", "region", "endpoint_url", "sandbox", "debug")}
        )
        if app.debug:
            from awsops.logs import setup_logging

            setup_logging(debug=True)
        return fn(*args, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def output_options(fn: F) -> F:
    """Add --output and --query to a command that renders records."""
    fn = click.option("--query", default=None, help="JMESPath expression applied to the results.")(
        fn
    )
    fn = click.option(
        "--output",
        "output_format",
        type=click.Choice(["table", "json", "jsonl", "csv"]),
        default=None,
        help="Output format: table on a terminal, jsonl when piped.",
    )(fn)
    return fn


def app_context() -> AppContext:
    return click.get_current_context().ensure_object(AppContext)
