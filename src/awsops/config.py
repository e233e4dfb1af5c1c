"""Plain, frozen settings: client behaviour, targets (account, region, role) and files."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from awsops.errors import UsageError
from awsops.markconfig import MarkSettings, parse_mark_settings

PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f")
ROLE_ARN_RE = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-[bef]):iam::(\d{12}):role/[\w+=,.@/-]{1,512}$"
)
ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")

DEFAULT_PROTECT_TAGS = ("awsops:protect", "DoNotDelete")
DEFAULT_MAX_PERCENT = 50.0
MIN_OLDER_THAN_DAYS = 1.0  # below this, --allow-short is required
MAX_PLAN_TTL_HOURS = 168.0  # a plan lives seven days at most

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class ClientSettings:
    """How clients talk to AWS. ``endpoint_url`` overrides every service (sandbox, tests)."""

    retry_mode: str = "adaptive"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    endpoint_url: str | None = None
    max_pool_connections: int = 20

    def __post_init__(self) -> None:
        if self.retry_mode not in ("adaptive", "standard", "legacy"):
            raise UsageError(f"unknown retry mode {self.retry_mode!r}")
        if self.max_attempts < 1:
            raise UsageError("max attempts must be at least 1")

    @classmethod
    def from_env(cls, endpoint_url: str | None = None, **overrides: Any) -> ClientSettings:
        """Settings with the endpoint from the argument or ``AWS_ENDPOINT_URL``."""
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        return cls(endpoint_url=endpoint, **overrides)

    def with_endpoint(self, endpoint_url: str | None) -> ClientSettings:
        return replace(self, endpoint_url=endpoint_url)


@dataclass(frozen=True)
class Target:
    """One place to act on: an account (optionally reached by a role) and a region."""

    region: str
    account_id: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    name: str | None = None
    profile: str | None = None

    @property
    def label(self) -> str:
        who = self.name or self.account_id or self.profile or "default"
        return f"{who}/{self.region}"


@dataclass(frozen=True)
class AccountSpec:
    """One account entry of a targets file."""

    account_id: str
    role_arn: str | None
    regions: tuple[str, ...]
    external_id: str | None = None
    name: str | None = None
    profile: str | None = None

    def targets(self) -> list[Target]:
        return [
            Target(
                region=r,
                account_id=self.account_id,
                role_arn=self.role_arn,
                external_id=self.external_id,
                name=self.name,
                profile=self.profile,
            )
            for r in self.regions
        ]


def validate_role_arn(arn: str) -> str:
    """Return the account id of a well-formed IAM role ARN, or raise UsageError."""
    m = ROLE_ARN_RE.match(arn)
    if not m:
        raise UsageError(
            f"malformed role ARN {arn!r}: expected arn:<partition>:iam::<12-digit account>:"
            f"role/<name>, partition one of {', '.join(PARTITIONS)}"
        )
    return m.group(2)


def role_partition(arn: str) -> str:
    """The partition of a well-formed role ARN (``aws``, ``aws-cn``, ``aws-us-gov``...)."""
    validate_role_arn(arn)
    return arn.split(":", 2)[1]


def region_partition(region: str) -> str:
    """The partition a region name belongs to, from its prefix."""
    for prefix, partition in (
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
        ("us-isof-", "aws-iso-f"),
    ):
        if region.startswith(prefix):
            return partition
    return "aws"


def parse_region_list(value: str | Sequence[str] | None) -> list[str]:
    """Split ``"a,b"`` or a list into region names (``all`` is kept as-is for the caller)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def _expect(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise UsageError(f"{path}: {msg}")


def load_targets_file(path: str | Path, default_regions: Sequence[str] = ()) -> list[AccountSpec]:
    """Read a targets YAML file::

        accounts:
          - account_id: "111111111111"
            role_arn: arn:aws:iam::111111111111:role/ops
            external_id: optional
            name: prod
            regions: [us-east-1, eu-west-1]

    Every error is a one-line :class:`UsageError` naming the file and the entry.
    """
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"targets file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read targets file {p}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{p}: not valid YAML{where}") from None
    if isinstance(raw, list):
        raw = {"accounts": raw}
    _expect(isinstance(raw, Mapping), p, "expected a mapping with an 'accounts' list")
    assert isinstance(raw, Mapping)
    accounts = raw.get("accounts")
    _expect(isinstance(accounts, list) and bool(accounts), p, "'accounts' must be a non-empty list")
    assert isinstance(accounts, list)
    top_regions = raw.get("regions", list(default_regions))
    specs: list[AccountSpec] = []
    seen: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(accounts, 1):
        where = f"accounts[{i}]"
        _expect(isinstance(entry, Mapping), p, f"{where} must be a mapping")
        assert isinstance(entry, Mapping)
        unknown = set(entry) - {
            "account_id",
            "role_arn",
            "external_id",
            "name",
            "regions",
            "profile",
        }
        _expect(not unknown, p, f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        account = str(entry.get("account_id", "")).strip()
        role = entry.get("role_arn")
        if not account and isinstance(role, str):
            account = validate_role_arn(role)
        _expect(bool(ACCOUNT_RE.match(account)), p, f"{where}: account_id must be 12 digits")
        if role is not None:
            _expect(isinstance(role, str), p, f"{where}: role_arn must be a string")
            try:
                role_account = validate_role_arn(str(role))
            except UsageError as exc:
                raise UsageError(f"{p}: {where}: {exc}") from None
            _expect(role_account == account, p, f"{where}: role_arn is not in account {account}")
        regions = entry.get("regions", top_regions)
        if isinstance(regions, str):
            regions = parse_region_list(regions)
        _expect(
            isinstance(regions, list)
            and bool(regions)
            and all(isinstance(r, str) for r in regions),
            p,
            f"{where}: regions must be a non-empty list of region names",
        )
        for r in regions:
            _expect(
                bool(REGION_RE.match(r)) or (r == "all" and len(regions) == 1),
                p,
                f"{where}: {r!r} is not a region name",
            )
            if role is not None and r != "all":
                _expect(
                    region_partition(r) == role_partition(str(role)),
                    p,
                    f"{where}: region {r} is in partition {region_partition(r)}, but the role "
                    f"is in {role_partition(str(role))}",
                )
        ext = entry.get("external_id")
        _expect(ext is None or isinstance(ext, str), p, f"{where}: external_id must be a string")
        name = entry.get("name")
        for r in regions:
            first = seen.setdefault((account, r), where)
            _expect(
                first == where,
                p,
                f"{first} and {where} both cover account {account} in {r}: "
                "list each (account, region) once",
            )
        profile = entry.get("profile")
        _expect(
            profile is None or isinstance(profile, str), p, f"{where}: profile must be a string"
        )
        specs.append(
            AccountSpec(
                account_id=account,
                role_arn=str(role) if role else None,
                regions=tuple(regions),
                external_id=ext,
                name=str(name) if name is not None else None,
                profile=profile,
            )
        )
    return specs


def ensure_unique(targets: Sequence[Target]) -> None:
    """Refuse the same (account, region) twice (e.g. after ``regions: all`` expanded)."""
    seen: dict[tuple[str | None, str], Target] = {}
    for t in targets:
        first = seen.setdefault((t.account_id, t.region), t)
        if first is not t:
            raise UsageError(
                f"account {t.account_id or 'default'} in {t.region} is listed twice "
                f"({first.label} and {t.label}): list each (account, region) once"
            )


@dataclass(frozen=True)
class DecommissionSettings:
    """Settings of the decommission job, from an optional YAML config file. Plan and
    apply read the same file; apply enforces every key as a floor under the plan."""

    protect_tags: tuple[str, ...] = DEFAULT_PROTECT_TAGS
    account_allowlist: tuple[str, ...] = ()
    account_denylist: tuple[str, ...] = ()
    exclude_instance_ids: tuple[str, ...] = ()
    exclude_tags: Mapping[str, str] = field(default_factory=dict)
    min_older_than_days: float = MIN_OLDER_THAN_DAYS
    plan_ttl_hours: float = 24.0
    backup: str = "image"
    backup_retention_days: int = 90
    batch_size: int = 50
    max_instances: int | None = None
    max_percent: float | None = DEFAULT_MAX_PERCENT
    snapshot_delay: int = 15
    snapshot_max_attempts: int = 240
    terminate_delay: int = 15
    terminate_max_attempts: int = 80
    marks: MarkSettings = field(default_factory=MarkSettings)  # mark, notify, plan --marked


_LIST_KEYS = ("protect_tags", "account_allowlist", "account_denylist", "exclude_instance_ids")
_INT_KEYS = (
    "batch_size",
    "backup_retention_days",
    "snapshot_delay",
    "snapshot_max_attempts",
    "terminate_delay",
    "terminate_max_attempts",
    "max_instances",
)
_NUMBER_LIMITS: Mapping[str, float] = {
    "plan_ttl_hours": MAX_PLAN_TTL_HOURS,
    "max_percent": 100.0,
    "min_older_than_days": 36500.0,
}


def load_decommission_settings(path: str | Path | None) -> DecommissionSettings:
    """Read the decommission config file (YAML); ``None`` gives the defaults. Every
    problem is a one-line UsageError naming the file and the key."""
    if path is None:
        return DecommissionSettings()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UsageError(f"config file not found: {p}") from None
    except IsADirectoryError:
        raise UsageError(f"config file {p} is a directory") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise UsageError(f"{p}: not valid YAML") from None
    except RecursionError:
        raise UsageError(f"{p}: nested too deeply") from None
    _expect(isinstance(raw, Mapping), p, "expected a mapping")
    known = {f for f in DecommissionSettings.__dataclass_fields__}
    unknown = set(raw) - known
    _expect(
        not unknown,
        p,
        f"unknown key(s) {', '.join(sorted(map(str, unknown)))} "
        f"(known: {', '.join(sorted(known))})",
    )
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _LIST_KEYS:
            _expect(
                isinstance(value, list) and all(isinstance(v, (str, int)) for v in value),
                p,
                f"{key} must be a list of strings",
            )
            kwargs[key] = tuple(str(v) for v in value)
        elif key == "backup":
            _expect(
                value in ("image", "snapshots"),
                p,
                "backup must be image or snapshots (none only on the command line)",
            )
            kwargs[key] = value
        elif key == "marks":
            kwargs[key] = parse_mark_settings(value, p)
        elif key == "exclude_tags":
            _expect(isinstance(value, Mapping), p, f"{key} must be a mapping of tag key to value")
            kwargs[key] = {str(k): str(v) for k, v in value.items()}
        elif key in _INT_KEYS:
            _expect(
                type(value) is int and 0 < value <= 10**6,
                p,
                f"{key} must be a positive integer",
            )
            kwargs[key] = value
        else:
            top = _NUMBER_LIMITS[key]
            _expect(
                type(value) in (int, float) and math.isfinite(value) and 0 < value <= top,
                p,
                f"{key} must be a number greater than 0 and at most {top:g}",
            )
            kwargs[key] = float(value)
    for acct in (*kwargs.get("account_allowlist", ()), *kwargs.get("account_denylist", ())):
        _expect(bool(ACCOUNT_RE.match(acct)), p, f"{acct!r} is not a 12-digit account id")
    return DecommissionSettings(**kwargs)
