"""The decommission plan as plain, frozen data and its JSON form (no files, no I/O).

:mod:`awsops.decommission.planfile` writes and reads plan files (checksum, signature,
expiry); this module only maps each piece of a plan to and from JSON-able values.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from awsops.errors import PlanError

SCHEMA_VERSION = 2
PLAN_KIND = "awsops.decommission.plan"
MAX_LIFETIME = dt.timedelta(days=7)


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
    OPTED_OUT = "opted-out"  # awsops:keep, or awsops:keep-until a later time
    NOT_MARKED = "not-marked"  # plan --marked: no readable awsops:terminate-after
    MARK_NOT_DUE = "mark-not-due"  # plan --marked: its awsops:terminate-after is later
    NOT_NOTIFIED = "owner-not-notified"  # plan --marked: no notice of this mark went out

    ALL = (
        ACCOUNT_EXCLUDED,
        EXCLUDED,
        PROTECT_TAG,
        TERMINATION_PROTECTION,
        AUTO_SCALING,
        NOT_STOPPED,
        STOP_TIME_UNKNOWN,
        TOO_RECENT,
        OPTED_OUT,
        NOT_MARKED,
        MARK_NOT_DUE,
        NOT_NOTIFIED,
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
    state_reason: str | None = None  # StateTransitionReason as described

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
            "state_reason": self.state_reason,
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
            state_reason=d.get("state_reason"),
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
    profile: str | None = None
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
            "profile": self.profile,
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
            profile=d.get("profile"),
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
    marked: bool = False  # only instances whose awsops:terminate-after is due

    def to_json(self) -> dict[str, Any]:
        return {
            "older_than_days": self.older_than_days,
            "protect_tags": list(self.protect_tags),
            "account_allowlist": list(self.account_allowlist),
            "account_denylist": list(self.account_denylist),
            "exclude_instance_ids": list(self.exclude_instance_ids),
            "exclude_tags": dict(self.exclude_tags),
            "cloudtrail": self.cloudtrail,
            "marked": self.marked,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PlanCriteria:
        days = float(d["older_than_days"])
        if not math.isfinite(days) or days <= 0:
            raise PlanError(f"plan criteria older_than_days {days!r} is not a positive number")
        return cls(
            older_than_days=days,
            protect_tags=tuple(d.get("protect_tags") or ()),
            account_allowlist=tuple(d.get("account_allowlist") or ()),
            account_denylist=tuple(d.get("account_denylist") or ()),
            exclude_instance_ids=tuple(d.get("exclude_instance_ids") or ()),
            exclude_tags=dict(d.get("exclude_tags") or {}),
            cloudtrail=bool(d.get("cloudtrail", False)),
            marked=bool(d.get("marked", False)),
        )


@dataclass(frozen=True)
class PlanLimits:
    """Blast-radius caps set when planning (flags or config); apply enforces them
    together with its own, whichever is lower."""

    max_instances: int | None = None
    max_percent: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"max_instances": self.max_instances, "max_percent": self.max_percent}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> PlanLimits:
        d = d or {}
        mi, mp = d.get("max_instances"), d.get("max_percent")
        if mi is not None and (type(mi) is not int or mi < 0):
            raise PlanError(f"plan limit max_instances {mi!r} is not a count")
        if mp is not None:
            mp = float(mp)
            if not (math.isfinite(mp) and 0 < mp <= 100):
                raise PlanError(f"plan limit max_percent {mp!r} is not in (0, 100]")
        return cls(max_instances=mi, max_percent=mp)


class EndpointKind:
    AWS = "aws"
    SANDBOX = "sandbox"
    CUSTOM = "endpoint-url"
    ALL = (AWS, SANDBOX, CUSTOM)


@dataclass(frozen=True)
class PlanEndpoint:
    """Where the plan was made: real AWS, the local sandbox, or an ``--endpoint-url``.
    A plan is applied only where it was made."""

    kind: str = EndpointKind.AWS
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> PlanEndpoint:
        d = d or {}
        kind = d.get("kind", EndpointKind.AWS)
        if kind not in EndpointKind.ALL:
            raise PlanError(f"plan endpoint kind {kind!r} is unknown")
        url = d.get("url")
        return cls(kind=kind, url=str(url) if url else None)

    def describe(self) -> str:
        if self.kind == EndpointKind.SANDBOX:
            return "the local sandbox"
        if self.kind == EndpointKind.CUSTOM:
            return f"endpoint {self.url}"
        return "AWS"


@dataclass(frozen=True)
class Plan:
    """A reviewable decommission plan."""

    plan_id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    criteria: PlanCriteria
    targets: tuple[TargetPlan, ...]
    summary: Mapping[str, Any] = field(default_factory=dict)
    limits: PlanLimits = field(default_factory=PlanLimits)
    endpoint: PlanEndpoint = field(default_factory=PlanEndpoint)

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
            "endpoint": self.endpoint.to_json(),
            "criteria": self.criteria.to_json(),
            "limits": self.limits.to_json(),
            "targets": [t.to_json() for t in self.targets],
            "summary": dict(self.summary),
        }

    @classmethod
    def from_body(cls, raw: Mapping[str, Any], source: str) -> Plan:
        """The plan of a decoded body whose kind, version and signature were checked."""
        created = _time(raw.get("created_at"), "created_at")
        expires = _time(raw.get("expires_at"), "expires_at")
        if created is None or expires is None:
            raise PlanError(f"{source} lacks created_at/expires_at")
        if expires - created > MAX_LIFETIME:
            raise PlanError(
                f"{source} would stay valid for {expires - created}, more than the "
                f"{MAX_LIFETIME.days} days a plan may live: make a new plan"
            )
        targets = raw["targets"]
        if not isinstance(targets, list):
            raise PlanError(f"{source}: targets is not a list")
        return cls(
            plan_id=str(raw["plan_id"]),
            created_at=created,
            expires_at=expires,
            criteria=PlanCriteria.from_json(raw["criteria"]),
            targets=tuple(TargetPlan.from_json(t) for t in targets),
            summary=dict(raw.get("summary") or {}),
            limits=PlanLimits.from_json(raw.get("limits")),
            endpoint=PlanEndpoint.from_json(raw.get("endpoint")),
        )
