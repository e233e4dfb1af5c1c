"""Builders for the Stubber tests of apply's steps (re-verification, backups): instances
as DescribeInstances shows them, the plan made of them, real botocore clients to stub,
and an executor whose journal is open, as during a run."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import StubResponseError
from botocore.stub import Stubber

from awsops import ec2ops
from awsops.config import ClientSettings, Target
from awsops.decommission import inspect, verify
from awsops.decommission.executor import ApplyOptions, Executor
from awsops.decommission.journal import Journal
from awsops.decommission.model import InstanceFacts, Plan, PlanCriteria, TargetPlan
from awsops.session import SessionFactory

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
REGION = "us-east-1"
PLAN_ID = "plan-20260601T120000Z-0000unit"
CRITERIA = PlanCriteria(older_than_days=30, protect_tags=("awsops:protect",))
STOPPED_REASON = "User initiated (2026-04-02 12:00:00 GMT)"  # 60 days before NOW
CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopped": 80}


def described(
    iid: str,
    state: str = "stopped",
    *,
    tags: Mapping[str, str] | None = None,
    volumes: Sequence[tuple[str, str, bool]] | None = None,
    reason: str = STOPPED_REASON,
) -> dict[str, Any]:
    """One instance as DescribeInstances answers it; ``volumes`` are (volume id,
    device, DeleteOnTermination), by default a deletable root and a kept data volume."""
    if volumes is None:
        volumes = (
            (f"vol-{iid[-4:]}root", "/dev/xvda", True),
            (f"vol-{iid[-4:]}data", "/dev/sdf", False),
        )
    return {
        "InstanceId": iid,
        "InstanceType": "t3.micro",
        "State": {"Code": CODES[state], "Name": state},
        "StateTransitionReason": reason,
        "LaunchTime": NOW - dt.timedelta(days=90),
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "Tags": [{"Key": k, "Value": v} for k, v in (tags or {"Name": f"name-{iid}"}).items()],
        "BlockDeviceMappings": [
            {"DeviceName": dev, "Ebs": {"VolumeId": vid, "DeleteOnTermination": dot}}
            for vid, dev, dot in volumes
        ],
    }


def facts(inst: Mapping[str, Any], **changes: Any) -> InstanceFacts:
    """The facts a plan records for a described instance (protection checked: off)."""
    base = inspect.facts_from_instance(inst)
    return InstanceFacts(**{**vars(base), "termination_protection": False, **changes})


def plan_of(*chosen: InstanceFacts, criteria: PlanCriteria = CRITERIA, **target: Any) -> Plan:
    tp = TargetPlan(
        account_id=ACCOUNT, region=REGION, examined=len(chosen), chosen=chosen, **target
    )
    return Plan(
        plan_id=PLAN_ID,
        created_at=NOW,
        expires_at=NOW + dt.timedelta(hours=24),
        criteria=criteria,
        targets=(tp,),
    )


def reservations(*instances: Mapping[str, Any]) -> dict[str, Any]:
    """A DescribeInstances answer holding ``instances``."""
    return {
        "Reservations": [{"ReservationId": "r-1", "OwnerId": ACCOUNT, "Instances": list(instances)}]
        if instances
        else []
    }


def by_ids(*ids: str) -> dict[str, Any]:
    """The parameters of a DescribeInstances by id (the instance-id filter)."""
    return {"Filters": [{"Name": "instance-id", "Values": list(ids)}], "MaxResults": 1000}


def kept(iid: str) -> dict[str, Any]:
    """An instance with nothing to back up (its only volume outlives it)."""
    return described(iid, volumes=((f"vol-{iid[-4:]}root", "/dev/xvda", False),))


STATE_CODES = {"stopped": 80, "shutting-down": 32, "terminated": 48, "running": 16, "pending": 0}


def states(**by_id: str | None) -> dict[str, Any]:
    """A DescribeInstances answer giving each instance only its state (None: an
    instance described without one)."""
    return {
        "Reservations": [
            {
                "ReservationId": "r-1",
                "Instances": [
                    {
                        "InstanceId": i,
                        **({"State": {"Code": STATE_CODES[s], "Name": s}} if s else {}),
                    }
                    for i, s in by_id.items()
                ],
            }
        ]
    }


def terminating(*ids: str) -> dict[str, Any]:
    """A TerminateInstances answer listing ``ids`` as shutting down."""
    return {
        "TerminatingInstances": [
            {
                "InstanceId": i,
                "CurrentState": {"Code": 32, "Name": "shutting-down"},
                "PreviousState": {"Code": 80, "Name": "stopped"},
            }
            for i in ids
        ]
    }


def snapshots_of(iid: str, *volume_ids: str) -> dict[str, Any]:
    """The parameters of the look-up of this plan's snapshots of ``iid``'s volumes."""
    return {
        "OwnerIds": ["self"],
        "Filters": [
            {"Name": "tag:awsops:plan-id", "Values": [PLAN_ID]},
            {"Name": "tag:awsops:instance-id", "Values": [iid]},
            {"Name": "volume-id", "Values": sorted(volume_ids)},
        ],
    }


def images_of(iid: str) -> dict[str, Any]:
    """The parameters of the look-up of this plan's images of ``iid``."""
    return {
        "Owners": ["self"],
        "Filters": [
            {"Name": "tag:awsops:plan-id", "Values": [PLAN_ID]},
            {"Name": "tag:awsops:instance-id", "Values": [iid]},
        ],
    }


def backup_tags(iid: str, *extra: tuple[str, str], day: Any = None) -> list[dict[str, Any]]:
    """The tags of a backup of ``iid`` made on ``day`` (NOW's by default), then ``extra``
    (key, value) pairs."""
    return [
        {"Key": "awsops:plan-id", "Value": PLAN_ID},
        {"Key": "awsops:instance-id", "Value": iid},
        {"Key": "awsops:date", "Value": day or NOW.strftime("%Y-%m-%d")},
        *({"Key": k, "Value": v} for k, v in extra),
    ]


def create_snapshot(iid: str) -> dict[str, Any]:
    """The CreateSnapshot of the root volume of ``iid`` as :func:`described` has it by
    default (its data volume outlives it)."""
    vol = f"vol-{iid[-4:]}root"
    return {
        "VolumeId": vol,
        "Description": f"awsops backup of {vol} (/dev/xvda) of {iid} before decommission, "
        f"{PLAN_ID}",
        "TagSpecifications": [
            {
                "ResourceType": "snapshot",
                "Tags": backup_tags(
                    iid, ("awsops:volume-id", vol), ("Name", f"awsops-backup-{iid}-/dev/xvda")
                ),
            }
        ],
    }


def create_image(iid: str, day: Any = None) -> dict[str, Any]:
    """The CreateImage of ``iid`` as :func:`described` has it by default: its kept data
    volume (/dev/sdf) left out."""
    return {
        "InstanceId": iid,
        "Name": f"awsops-{iid}-{PLAN_ID}",
        "Description": f"awsops backup of {iid} before decommission, {PLAN_ID}",
        "NoReboot": True,
        "BlockDeviceMappings": [{"DeviceName": "/dev/sdf", "NoDevice": ""}],
        "TagSpecifications": [
            {
                "ResourceType": "image",
                "Tags": backup_tags(iid, ("Name", f"awsops-backup-{iid}"), day=day),
            }
        ],
    }


class Strict(Stubber):
    """A Stubber that also fails the test on leaving its block if it refused a call (not
    stubbed, out of order, other parameters): the code under test may catch that
    refusal, a BotoCoreError, as it catches any failed call, and carry on."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.refused: list[str] = []

    def _refusing(self, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except StubResponseError as exc:
            self.refused.append(str(exc))
            raise

    def _assert_expected_params(self, *args: Any, **kwargs: Any) -> Any:
        return self._refusing(super()._assert_expected_params, *args, **kwargs)

    def _get_response_handler(self, *args: Any, **kwargs: Any) -> Any:
        return self._refusing(super()._get_response_handler, *args, **kwargs)

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        if exc[0] is None:
            assert not self.refused, "calls the Stubber refused: " + "; ".join(self.refused)


@functools.cache
def _session() -> boto3.Session:
    # one session: its loader caches the service models, so each fresh client is cheap
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


def client(service: str) -> Any:
    """A fresh client (Stubber and event hooks are per client)."""
    return _session().client(service, region_name=REGION)  # type: ignore[call-overload]


@functools.cache
def factory() -> SessionFactory:
    return SessionFactory(region=REGION, static_credentials=("testing", "testing"))


def executor(plan: Plan, journal: Path, **options: Any) -> Executor:
    """An executor whose journal (at ``journal``) is open, as during a run."""
    options.setdefault("backup", "snapshots")
    ex = Executor(plan, factory(), ApplyOptions(**options), journal_path=journal, now=lambda: NOW)
    opened = Journal(journal, plan.plan_id)
    ex.run_state.state = opened.open()
    ex.run_state.journal = opened
    return ex


# --- a target reached through stubbed clients ---------------------------------------------


class _Later:
    """A look-up run when its result is asked for, on the asking thread."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def result(self) -> Any:
        return self.fn(*self.args)


class InOrder:
    """Stands in for the thread pool of ``inspect.enrich``: a Stubber answers one
    client's calls in the order they come, so the look-ups run one after the other
    (termination protection, then Auto Scaling, then the volumes), as
    :meth:`Stubs.enrich` expects them."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> InOrder:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Later:
        return _Later(fn, args)


SESSION = object()  # what the factory hands out for the target


@dataclass
class Factory:
    """Stands in for the SessionFactory: the account its credentials reach."""

    account: str = ACCOUNT
    settings: ClientSettings = field(default_factory=ClientSettings)
    targets: list[Target] = field(default_factory=list)

    def for_target(self, target: Target) -> object:
        self.targets.append(target)
        return SESSION

    def account_id(self, session: object) -> str:
        assert session is SESSION
        return self.account


@dataclass
class Stubs:
    """The target's EC2 and Auto Scaling clients, their stubbers, and the settings each
    client was asked for (None: the factory's)."""

    ec2: Any
    asg: Any
    ec2_stub: Stubber
    asg_stub: Stubber
    factory: Factory
    settings: list[ClientSettings | None] = field(default_factory=list)

    def describe(self, *instances: Mapping[str, Any], ids: Sequence[str]) -> None:
        self.ec2_stub.add_response("describe_instances", reservations(*instances), by_ids(*ids))

    def enrich(
        self,
        *instances: Mapping[str, Any],
        protected: Sequence[str] = (),
        groups: Mapping[str, str] | None = None,
    ) -> None:
        """The look-ups of the candidates: termination protection (one call each),
        Auto Scaling groups, volume sizes."""
        ids = [i["InstanceId"] for i in instances]
        for iid in ids:
            self.ec2_stub.add_response(
                "describe_instance_attribute",
                {"InstanceId": iid, "DisableApiTermination": {"Value": iid in protected}},
                {"InstanceId": iid, "Attribute": "disableApiTermination"},
            )
        members = [
            {
                "InstanceId": iid,
                "AutoScalingGroupName": group,
                "AvailabilityZone": "us-east-1a",
                "LifecycleState": "InService",
                "HealthStatus": "HEALTHY",
                "ProtectedFromScaleIn": False,
            }
            for iid, group in (groups or {}).items()
        ]
        self.asg_stub.add_response(
            "describe_auto_scaling_instances",
            {"AutoScalingInstances": members},
            {"InstanceIds": ids},
        )
        vids = [m["Ebs"]["VolumeId"] for i in instances for m in i["BlockDeviceMappings"]]
        self.ec2_stub.add_response(
            "describe_volumes",
            {"Volumes": [{"VolumeId": v, "Size": 8, "VolumeType": "gp3"} for v in vids]},
            {"Filters": [{"Name": "volume-id", "Values": vids}]},
        )

    def stopped(self, *instances: Mapping[str, Any]) -> None:
        """The count of the region's stopped instances (for --max-percent)."""
        self.ec2_stub.add_response(
            "describe_instances",
            reservations(*instances),
            {
                "Filters": [{"Name": "instance-state-name", "Values": ["stopped"]}],
                "MaxResults": 1000,
            },
        )


def stubbed_target(monkeypatch: pytest.MonkeyPatch, factory: Factory) -> Iterator[Stubs]:
    """Every client of the target is one of two stubbed ones (whatever the settings
    asked for); nothing may be called that was not stubbed (even if the code caught the
    refusal), and everything stubbed must be. Termination protection is looked up one
    instance at a time, and the look-ups of ``inspect.enrich`` one after the other (the
    Stubber answers in order)."""
    ec2, asg = client("ec2"), client("autoscaling")
    with Strict(ec2) as ec2_stub, Strict(asg) as asg_stub:
        made = Stubs(ec2, asg, ec2_stub, asg_stub, factory)

        class Clients:
            def __init__(self, session: object, region: str, settings: ClientSettings) -> None:
                assert session is SESSION and region == REGION
                assert settings is factory.settings

            def get(self, service: str, settings: ClientSettings | None = None) -> Any:
                made.settings.append(settings)
                return {"ec2": ec2, "autoscaling": asg}[service]

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

        monkeypatch.setattr(verify, "TargetClients", Clients)
        monkeypatch.setattr(inspect, "ThreadPoolExecutor", InOrder)
        monkeypatch.setattr(ec2ops, "map_concurrent", lambda fn, items, _n: [fn(i) for i in items])
        yield made
        ec2_stub.assert_no_pending_responses()
        asg_stub.assert_no_pending_responses()
