"""The decommission plan as plain, frozen data, and its versioned JSON form.

A plan file is JSON with ``schema_version``, an expiry and a SHA-256 checksum over its
canonical form, so a stale, truncated or edited plan is refused before anything runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awsops.errors import PlanError

SCHEMA_VERSION = 1
PLAN_KIND = "awsops.decommission.plan"


class SkipReason:
    """Why a stopped instance was not chosen (string constants, stable in plan files)."""

    ACCOUNT_EXCLUDED = "account-excluded"
    EXCLUDED = "excluded-by-config"
    PROTECT_TAG = "protection-tag"
    TERMINATION_PROTECTION = "termination-protection"
    AUTO_SCALING = "auto-scaling-group"
    NOT_STOPPED = "not-stopped"
    STOP_TIME_UNKNOWN = "stop-time-unknown"
    TOO_RECENT = "stopped-too-recently"

    ALL = (
        ACCOUNT_EXCLUDED,
        EXCLUDED,
        PROTECT_TAG,
        TERMINATION_PROTECTION,
        AUTO_SCALING,
        NOT_STOPPED,
        STOP_TIME_UNKNOWN,
        TOO_RECENT,
    )


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat() if value else None


def _time(value: Any, what: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PlanError(f"plan field {what} is not a timestamp")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise PlanError(f"plan field {what} is not a timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise PlanError(f"plan field {what} has no time zone")
    return parsed


@dataclass(frozen=True)
class Volume:
    """An EBS volume attached to an instance, as the plan saw it."""

    volume_id: str
    device: str
    delete_on_termination: bool
    size_gib: int | None = None
    volume_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "volume_id": self.volume_id,
            "device": self.device,
            "delete_on_termination": self.delete_on_termination,
            "size_gib": self.size_gib,
            "volume_type": self.volume_type,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Volume:
        return cls(
            volume_id=str(d["volume_id"]),
            device=str(d["device"]),
            delete_on_termination=bool(d["delete_on_termination"]),
            size_gib=d.get("size_gib"),
            volume_type=d.get("volume_type"),
        )


@dataclass(frozen=True)
class InstanceFacts:
    """What the planner observed of one instance: the basis of its decision, and what
    apply compares against reality before acting."""

    instance_id: str
    state: str
    stop_time: dt.datetime | None
    stop_source: str
    launch_time: dt.datetime | None
    tags: Mapping[str, str]
    volumes: tuple[Volume, ...]
    availability_zone: str | None = None
    instance_type: str | None = None
    termination_protection: bool | None = None  # None: not checked
    asg_name: str | None = None

    @property
    def name(self) -> str:
        return self.tags.get("Name", "")

    @property
    def deletable_volumes(self) -> tuple[Volume, ...]:
        """Volumes that termination would delete: they are backed up first."""
        return tuple(v for v in self.volumes if v.delete_on_termination)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "state": self.state,
            "stop_time": _iso(self.stop_time),
            "stop_source": self.stop_source,
            "launch_time": _iso(self.launch_time),
            "tags": dict(sorted(self.tags.items())),
            "volumes": [v.to_json() for v in self.volumes],
            "availability_zone": self.availability_zone,
            "instance_type": self.instance_type,
            "termination_protection": self.termination_protection,
            "asg_name": self.asg_name,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> InstanceFacts:
        return cls(
            instance_id=str(d["instance_id"]),
            state=str(d["state"]),
            stop_time=_time(d.get("stop_time"), "stop_time"),
            stop_source=str(d.get("stop_source", "unknown")),
            launch_time=_time(d.get("launch_time"), "launch_time"),
            tags={str(k): str(v) for k, v in dict(d.get("tags") or {}).items()},
            volumes=tuple(Volume.from_json(v) for v in d.get("volumes") or ()),
            availability_zone=d.get("availability_zone"),
            instance_type=d.get("instance_type"),
            termination_protection=d.get("termination_protection"),
            asg_name=d.get("asg_name"),
        )


@dataclass(frozen=True)
class Decision:
    """The planner's verdict on one stopped instance."""

    facts: InstanceFacts
    terminate: bool
    reason: str | None = None  # a SkipReason when not terminating
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out = self.facts.to_json()
        if not self.terminate:
            out["skip_reason"] = self.reason
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class TargetPlan:
    """The plan for one (account, region)."""

    account_id: str
    region: str
    role_arn: str | None = None
    external_id: str | None = None
    name: str | None = None
    examined: int = 0
    chosen: tuple[InstanceFacts, ...] = ()
    skipped: tuple[Decision, ...] = ()
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name or self.account_id}/{self.region}"

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "region": self.region,
            "role_arn": self.role_arn,
            "external_id": self.external_id,
            "name": self.name,
            "examined": self.examined,
            "terminate": [f.to_json() for f in self.chosen],
            "skip": [d.to_json() for d in self.skipped],
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TargetPlan:
        skipped = []
        for s in d.get("skip") or ():
            reason = s.get("skip_reason")
            if reason not in SkipReason.ALL:
                raise PlanError(f"plan has an unknown skip reason {reason!r}")
            skipped.append(Decision(InstanceFacts.from_json(s), False, reason, s.get("detail", "")))
        return cls(
            account_id=str(d["account_id"]),
            region=str(d["region"]),
            role_arn=d.get("role_arn"),
            external_id=d.get("external_id"),
            name=d.get("name"),
            examined=int(d.get("examined", 0)),
            chosen=tuple(InstanceFacts.from_json(f) for f in d.get("terminate") or ()),
            skipped=tuple(skipped),
            error=d.get("error"),
        )


@dataclass(frozen=True)
class PlanCriteria:
    """What the plan was asked for: recorded so apply re-checks the same rules."""

    older_than_days: float
    protect_tags: tuple[str, ...]
    account_allowlist: tuple[str, ...] = ()
    account_denylist: tuple[str, ...] = ()
    exclude_instance_ids: tuple[str, ...] = ()
    exclude_tags: Mapping[str, str] = field(default_factory=dict)
    cloudtrail: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "older_than_days": self.older_than_days,
            "protect_tags": list(self.protect_tags),
            "account_allowlist": list(self.account_allowlist),
            "account_denylist": list(self.account_denylist),
            "exclude_instance_ids": list(self.exclude_instance_ids),
            "exclude_tags": dict(self.exclude_tags),
            "cloudtrail": self.cloudtrail,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PlanCriteria:
        return cls(
            older_than_days=float(d["older_than_days"]),
            protect_tags=tuple(d.get("protect_tags") or ()),
            account_allowlist=tuple(d.get("account_allowlist") or ()),
            account_denylist=tuple(d.get("account_denylist") or ()),
            exclude_instance_ids=tuple(d.get("exclude_instance_ids") or ()),
            exclude_tags=dict(d.get("exclude_tags") or {}),
            cloudtrail=bool(d.get("cloudtrail", False)),
        )


@dataclass(frozen=True)
class Plan:
    """A reviewable decommission plan. ``checksum`` covers everything else."""

    plan_id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    criteria: PlanCriteria
    targets: tuple[TargetPlan, ...]
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def chosen(self) -> list[tuple[TargetPlan, InstanceFacts]]:
        return [(t, f) for t in self.targets for f in t.chosen]

    @property
    def cutoff(self) -> dt.datetime:
        """Instances stopped before this time (at planning) were old enough."""
        return self.created_at - dt.timedelta(days=self.criteria.older_than_days)

    def body(self) -> dict[str, Any]:
        return {
            "kind": PLAN_KIND,
            "schema_version": SCHEMA_VERSION,
            "plan_id": self.plan_id,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "criteria": self.criteria.to_json(),
            "targets": [t.to_json() for t in self.targets],
            "summary": dict(self.summary),
        }

    def to_json(self) -> dict[str, Any]:
        body = self.body()
        return {**body, "checksum": checksum(body)}


def checksum(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON form (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write atomically (temp file, fsync, rename): a crash never leaves half a plan."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    data = json.dumps(plan.to_json(), indent=2, sort_keys=False) + "\n"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    return p


def parse_plan(
    raw: Any, source: str, now: dt.datetime | None = None, allow_expired: bool = False
) -> Plan:
    """Validate a decoded plan: kind, schema version, checksum, expiry, then fields."""
    if not isinstance(raw, Mapping) or raw.get("kind") != PLAN_KIND:
        raise PlanError(f"{source} is not an awsops decommission plan")
    version = raw.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise PlanError(
            f"{source} has plan schema version {version!r}; this awsops reads version "
            f"{SCHEMA_VERSION}: make a new plan"
        )
    body = {k: v for k, v in raw.items() if k != "checksum"}
    if raw.get("checksum") != checksum(body):
        raise PlanError(
            f"{source} checksum mismatch: the plan was modified after it was "
            "written; make a new plan instead of editing it"
        )
    try:
        created = _time(raw.get("created_at"), "created_at")
        expires = _time(raw.get("expires_at"), "expires_at")
        if created is None or expires is None:
            raise PlanError(f"{source} lacks created_at/expires_at")
        plan = Plan(
            plan_id=str(raw["plan_id"]),
            created_at=created,
            expires_at=expires,
            criteria=PlanCriteria.from_json(raw["criteria"]),
            targets=tuple(TargetPlan.from_json(t) for t in raw["targets"]),
            summary=dict(raw.get("summary") or {}),
        )
    except PlanError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanError(f"{source} is malformed: {type(exc).__name__} {exc}") from None
    now = now or dt.datetime.now(dt.timezone.utc)
    if not allow_expired and now >= plan.expires_at:
        raise PlanError(f"{source} expired at {plan.expires_at.isoformat()}: make a new plan")
    return plan


def load_plan(
    path: str | Path, now: dt.datetime | None = None, allow_expired: bool = False
) -> Plan:
    """Read and validate a plan file; every problem is a one-line PlanError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"plan file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read plan file {p}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{p} is not valid JSON (truncated or corrupt at line {exc.lineno})"
        ) from None
    return parse_plan(raw, str(p), now=now, allow_expired=allow_expired)
