"""Options of ``awsops decommission`` and how they become library objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from awsops.cli.context import AppContext
from awsops.config import MIN_OLDER_THAN_DAYS, DecommissionSettings
from awsops.decommission.journal import has_journal
from awsops.decommission.model import EndpointKind, PlanCriteria, PlanEndpoint, PlanLimits
from awsops.decommission.outcomes import ApplyOptions, BackupMode
from awsops.decommission.planfile import peek_plan_id
from awsops.errors import UsageError
from awsops.fanout import DEFAULT_CONCURRENCY
from awsops.home import check_writable_dir

F = TypeVar("F", bound=Callable[..., Any])
_DURATION = re.compile(r"\s*([0-9]{1,6}(?:\.[0-9]{1,6})?)\s*([dhw]?)\s*", re.ASCII)
MAX_OLDER_THAN_DAYS = 36500.0
OUTPUT_FORMAT_NAMES = ("table", "json", "jsonl", "csv", "markdown", "html", "yaml", "text")


def parse_older_than(value: str, allow_short: bool = False, flag: str = "--older-than") -> float:
    """``30d``, ``36h``, ``2w`` or a bare number of days (ASCII digits) -> days.

    Under one day is refused unless ``allow_short``: a typo such as ``30h`` for ``30d``
    would otherwise choose every instance stopped since yesterday."""
    m = _DURATION.fullmatch(value or "")
    if not m:
        raise UsageError(f"{flag} {value!r}: use a duration like 30d, 36h or 2w")
    n = float(m.group(1))
    days = {"": n, "d": n, "h": n / 24.0, "w": n * 7.0}[m.group(2)]
    if days <= 0:
        raise UsageError(f"{flag} must be more than zero")
    if days > MAX_OLDER_THAN_DAYS:
        raise UsageError(f"{flag} {value}: more than {MAX_OLDER_THAN_DAYS:g} days")
    if days < MIN_OLDER_THAN_DAYS and not allow_short:
        raise UsageError(
            f"{flag} {value} is under one day: pass --allow-short if you really mean it"
        )
    return days


def criteria_from(
    older_than: str, settings: DecommissionSettings, cloudtrail: bool, allow_short: bool
) -> PlanCriteria:
    days = parse_older_than(older_than, allow_short)
    if days < settings.min_older_than_days and not allow_short:
        raise UsageError(
            f"--older-than {older_than} is under the config's min_older_than_days "
            f"{settings.min_older_than_days:g}"
        )
    return PlanCriteria(
        older_than_days=days,
        protect_tags=settings.protect_tags,
        account_allowlist=settings.account_allowlist,
        account_denylist=settings.account_denylist,
        exclude_instance_ids=settings.exclude_instance_ids,
        exclude_tags=dict(settings.exclude_tags),
        cloudtrail=cloudtrail,
    )


def plan_limits(settings: DecommissionSettings, kw: dict[str, Any]) -> PlanLimits:
    """The caps recorded in a plan: flags first, then the config."""
    return PlanLimits(
        max_instances=_first(kw.pop("max_instances", None), settings.max_instances),
        max_percent=_first(kw.pop("max_percent", None), settings.max_percent),
    )


def apply_options(
    settings: DecommissionSettings, dry_run: bool, allow_short: bool, kw: dict[str, Any]
) -> ApplyOptions:
    """Apply's own policy and settings: command-line options first, then the config."""
    backup = kw.pop("backup") or settings.backup
    if backup == BackupMode.NONE and not kw.pop("accept_data_loss"):
        raise UsageError(
            "--backup none terminates without any backup: the data on volumes termination "
            "deletes is lost for good; add --accept-data-loss if that is what you want"
        )
    kw.pop("accept_data_loss", None)
    return ApplyOptions(
        dry_run=dry_run,
        backup=backup,
        protect_tags=settings.protect_tags,
        account_allowlist=settings.account_allowlist,
        account_denylist=settings.account_denylist,
        exclude_instance_ids=settings.exclude_instance_ids,
        exclude_tags=dict(settings.exclude_tags),
        min_older_than_days=0.0 if allow_short else settings.min_older_than_days,
        max_plan_age_hours=settings.plan_ttl_hours,
        batch_size=_first(kw.pop("batch_size"), settings.batch_size),
        max_instances=_first(kw.pop("max_instances"), settings.max_instances),
        max_percent=_first(kw.pop("max_percent"), settings.max_percent),
        snapshot_delay=_first(kw.pop("snapshot_delay"), settings.snapshot_delay),
        snapshot_max_attempts=_first(
            kw.pop("snapshot_max_attempts"), settings.snapshot_max_attempts
        ),
        terminate_delay=_first(kw.pop("terminate_delay"), settings.terminate_delay),
        terminate_max_attempts=_first(
            kw.pop("terminate_max_attempts"), settings.terminate_max_attempts
        ),
    )


def _first(a: Any, b: Any) -> Any:
    return a if a is not None else b


def endpoint_of(app: AppContext) -> PlanEndpoint:
    """Where commands of ``app`` go: the sandbox, an endpoint override, or AWS."""
    if app.sandbox:
        return PlanEndpoint(EndpointKind.SANDBOX, app.settings().endpoint_url)
    url = app.settings().endpoint_url
    return PlanEndpoint(EndpointKind.CUSTOM, url) if url else PlanEndpoint()


def command_at(app: AppContext, endpoint: PlanEndpoint, *args: str) -> str:
    """The command line for ``args`` against ``endpoint`` with ``app``'s other options."""
    import dataclasses

    custom = endpoint.kind == EndpointKind.CUSTOM
    there = dataclasses.replace(
        app,
        sandbox=endpoint.kind == EndpointKind.SANDBOX,
        endpoint_url=endpoint.url if custom else None,
        given=app.given | {"endpoint_url"} if custom else app.given,
        _factory=None,
    )
    return there.command(*args)


def check_plan_output(out: str) -> Path:
    """Refuse, before any AWS call, a plan path that would lose work or cannot be
    written: a bare format name, an unwritable directory, a symbolic link, a file that
    is not a plan, or a plan that has a journal (applied or being applied)."""
    if out.lower() in OUTPUT_FORMAT_NAMES:
        raise UsageError(
            f"-o/--out takes the plan's file path, not a format: did you mean --output {out}? "
            f"(e.g. -o plan.json --output {out})"
        )
    path = Path(out)
    check_writable_dir(path, "plan")
    if path.exists():
        plan_id = peek_plan_id(path)
        if plan_id is None:
            raise UsageError(f"{path} exists and is not an awsops plan: choose another path")
        if has_journal(plan_id):
            raise UsageError(
                f"{path} holds plan {plan_id}, which has been applied (it has a journal): "
                "it is needed to resume or review that apply; write the new plan to "
                "another path"
            )
    return path


CONFIG_NAME = "awsops.yaml"


def find_config(given: str | None) -> Path | None:
    """The decommission config to use: ``--config``, else ``./awsops.yaml``, else
    ``$AWSOPS_HOME/config.yaml``; None (the defaults) if there is none. A file found
    without ``--config`` is named on stderr, so nobody is surprised by it."""
    if given is not None:
        return Path(given)
    from awsops.home import home

    for candidate in (Path(CONFIG_NAME), home() / "config.yaml"):
        if candidate.is_file():
            click.echo(f"config: {candidate} (found; --config to use another)", err=True)
            return candidate
    return None


def load_settings(given: str | None) -> DecommissionSettings:
    from awsops.config import load_decommission_settings

    return load_decommission_settings(find_config(given))


def default_plan_path(plan_id: str) -> Path:
    """Where a plan goes without ``-o``: beside its journal in the awsops home."""
    from awsops.decommission.journal import plan_dir
    from awsops.home import private_dir

    return private_dir(plan_dir(plan_id)) / "plan.json"


def with_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


_DEFAULTS = DecommissionSettings()  # the option help states these defaults

ALLOW_SHORT = click.option(
    "--allow-short", is_flag=True, help="Allow an --older-than (or a plan's) under one day."
)

MARKED = click.option(
    "--marked",
    is_flag=True,
    help="Only instances whose awsops:terminate-after mark is due and which still "
    "qualify (see `decommission mark`); refused outside the config's marks.window.",
)

CAPS = [
    click.option(
        "--max-instances",
        type=click.IntRange(1),
        default=None,
        help="Refuse to terminate more instances than this in all.",
    ),
    click.option(
        "--max-percent",
        type=click.FloatRange(0, 100, min_open=True),
        default=None,
        help="Refuse if a target loses more than this % of its stopped instances "
        f"(default {_DEFAULTS.max_percent:g}).",
    ),
]

SCOPE_OPTIONS = [
    click.option("--regions", default=None, help="Comma-separated regions, or 'all'."),
    click.option(
        "--targets",
        "targets_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="YAML file of accounts (role ARN, ExternalId, profile, regions, name).",
    ),
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Decommission config YAML (protect tags, account lists, caps...); default "
        "./awsops.yaml, else $AWSOPS_HOME/config.yaml, if there is one.",
    ),
]

PLAN_OPTIONS = [
    click.option("--older-than", required=True, help="Stopped for longer than: 30d, 36h, 2w."),
    *SCOPE_OPTIONS,
    click.option(
        "--cloudtrail",
        is_flag=True,
        help="Look up unknown stop times in CloudTrail (slow: 2 calls/s per region).",
    ),
    click.option(
        "--concurrency", type=click.IntRange(1, 64), default=DEFAULT_CONCURRENCY, show_default=True
    ),
    ALLOW_SHORT,
]

APPLY_OPTIONS = [
    click.option("--yes", is_flag=True, help="Do not ask for confirmation."),
    click.option(
        "--backup",
        type=click.Choice(list(BackupMode.ALL)),
        default=None,
        help="What to make before terminating: image (default; restorable with "
        "`decommission restore`), snapshots (one per volume termination deletes), or none "
        "(needs --accept-data-loss).",
    ),
    click.option(
        "--accept-data-loss",
        is_flag=True,
        help="With --backup none: terminate without any backup, knowingly.",
    ),
    click.option("--dry-run", is_flag=True, help="Verify and check permissions; change nothing."),
    click.option(
        "--batch-size",
        type=click.IntRange(1, 1000),
        default=None,
        help=f"Instances per TerminateInstances call (default {_DEFAULTS.batch_size}).",
    ),
    *CAPS,
    click.option(
        "--snapshot-delay",
        type=click.FloatRange(0),
        default=None,
        help=f"Seconds between snapshot_completed polls (default {_DEFAULTS.snapshot_delay}).",
    ),
    click.option(
        "--snapshot-max-attempts",
        type=click.IntRange(1),
        default=None,
        help="Polls before a backup counts as not complete "
        f"(default {_DEFAULTS.snapshot_max_attempts}).",
    ),
    click.option(
        "--terminate-delay",
        type=click.FloatRange(0),
        default=None,
        help=f"Seconds between instance_terminated polls (default {_DEFAULTS.terminate_delay}).",
    ),
    click.option(
        "--terminate-max-attempts",
        type=click.IntRange(1),
        default=None,
        help="Polls before termination counts as not finished "
        f"(default {_DEFAULTS.terminate_max_attempts}).",
    ),
    click.option(
        "--output",
        "output_format",
        type=click.Choice(["table", "json", "jsonl", "csv"]),
        default=None,
    ),
]
