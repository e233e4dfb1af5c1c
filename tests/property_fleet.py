"""Generated decommission worlds for the property test: two accounts (the second reached
by AssumeRole, as a targets file says), two regions, instances of every kind the rules
care about, drift between plan and apply, apply-time policy that differs from the
plan's, backups that stay pending or fail, and faults at the proxy.

The test's oracle is :func:`expected`: a model of the rules written here from the
README, not awsops' code, applied to what the world *is* (the specs and the drift done
to moto), never to what awsops says it saw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from awsops.clients import make_client
from awsops.config import ClientSettings, Target, load_targets_file
from awsops.decommission.model import PlanCriteria
from awsops.paginate import iter_items
from awsops.sandbox.manager import control
from awsops.sandbox.seed import ec2_reason
from awsops.session import SessionFactory

ACCOUNT_A = "123456789012"  # moto's default account: the static test credentials
ACCOUNT_B = "111111111111"  # reached by AssumeRole (moto maps the role's keys to it)
ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/ops"
ACCOUNTS = (ACCOUNT_A, ACCOUNT_B)
REGIONS = ("us-east-1", "eu-west-1")
TARGETS = tuple((a, r) for a in ACCOUNTS for r in REGIONS)
IMAGE = "ami-12c6146b"
DEFAULT_PROTECT = ("awsops:protect", "DoNotDelete")
ASG_TAG = "aws:autoscaling:groupName"

# Drift done to moto after the plan, before apply.
DRIFTS = (
    "started",  # running now
    "restarted",  # started and stopped again: a new stop time
    "tagged",  # a new tag
    "protect-tagged",  # a protection tag added
    "volume",  # DeleteOnTermination of the data volume flipped
    "terminated",  # terminated by someone else
    "api-protected",  # DisableApiTermination turned on (no described fact changes)
    "asg-attached",  # attached to an Auto Scaling group
)
# Drift that changes what DescribeInstances shows (state, stop reason, tags, volumes).
DESCRIBED_DRIFT = frozenset(DRIFTS) - {"api-protected"}

BACKUPS = {
    # mode: (server snapshot delay s, apply poll delay s, apply polls)
    "instant": (0.001, 0.05, 40),  # a fate so the witness covers it; done at once
    "pending": (0.3, 0.1, 60),  # pending while apply waits, well within its budget
    "stuck": (60.0, 0.05, 8),  # pending past apply's budget: never terminated
}


@dataclass(frozen=True)
class InstanceSpec:
    target: int  # index into TARGETS
    stopped_days: int | None  # None: running
    reason: str  # stop reason format: gmt, utc (parsed), bare, empty (unknown)
    protect_tag: str | None
    api_protected: bool
    asg: str | None  # Auto Scaling member: "tagged" (moto's tag), "untagged" (API only)
    team: str | None  # a "team" tag, for exclude_tags
    root_dot: bool  # DeleteOnTermination of the root volume
    data_dot: bool  # ... and of the data volume
    excluded_in_plan: bool  # its id in the plan's exclude_instance_ids
    excluded_at_apply: bool  # its id in apply's exclude_instance_ids
    drift: str | None

    @property
    def account(self) -> str:
        return TARGETS[self.target][0]

    @property
    def region(self) -> str:
        return TARGETS[self.target][1]


@dataclass(frozen=True)
class Rules:
    """Plan criteria or apply policy, with exclusions as flags on the specs."""

    older_than_days: float
    protect_tags: tuple[str, ...] = DEFAULT_PROTECT
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    exclude_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class World:
    instances: tuple[InstanceSpec, ...]
    plan: Rules
    apply: Rules
    backups: str  # a key of BACKUPS
    snapshot_error: float  # share of snapshots the server fails
    faults: str  # the proxy's fault spec ("" for none)
    seed: int
    batch_size: int
    switched_credentials: bool  # apply's base credentials now reach account B

    def describe(self) -> str:
        lines = [
            f"plan {self.plan}",
            f"apply {self.apply}",
            f"backups {self.backups} error {self.snapshot_error} faults {self.faults!r} "
            f"batch {self.batch_size} switched {self.switched_credentials}",
        ]
        lines += [f"  [{n}] {s}" for n, s in enumerate(self.instances)]
        return "\n".join(lines)


# --- strategies ----------------------------------------------------------------------
# Most instances are eligible or one step away from it (one rule that keeps them, one
# change since the plan): that is where a missed check shows. The first choice of each
# list is the simplest, which derandomized generation tries first.

KINDS: dict[str, dict[str, Any]] = {
    "eligible": {},
    "running": {"stopped_days": None},
    "stopped-3d": {"stopped_days": 3},
    "stopped-20d": {"stopped_days": 20},
    "stopped-35d": {"stopped_days": 35},  # old enough for a 30-day plan, not a 40-day floor
    "bare-reason": {"reason": "bare"},  # "User initiated": no date
    "empty-reason": {"reason": "empty"},
    "protect-tag": {"protect_tag": "awsops:protect"},
    "protect-tag-lower": {"protect_tag": "donotdelete"},
    "keep-tag": {"protect_tag": "Keep"},  # protected only by an apply policy naming it
    "api-protected": {"api_protected": True},
    "asg-tagged": {"asg": "tagged"},
    "asg-untagged": {"asg": "untagged"},  # only DescribeAutoScalingInstances knows
    "excluded-in-plan": {"excluded_in_plan": True},
    "excluded-at-apply": {"excluded_at_apply": True},
}
_kinds = st.sampled_from(["eligible"] * 12 + [k for k in KINDS if k != "eligible"])
_drifts = st.sampled_from([None] * 14 + list(DRIFTS))
_account_lists = st.sampled_from(
    [((), ())] * 7 + [((), (ACCOUNT_B,)), ((ACCOUNT_A,), ()), ((), (ACCOUNT_A,))]
)


@st.composite
def instance_specs(draw: st.DrawFn) -> InstanceSpec:
    base: dict[str, Any] = {
        "target": draw(st.integers(0, len(TARGETS) - 1)),
        "stopped_days": draw(st.sampled_from([45, 200])),
        "reason": draw(st.sampled_from(["gmt", "utc"])),
        "protect_tag": None,
        "api_protected": False,
        "asg": None,
        "team": draw(st.sampled_from([None, "a", "b"])),
        "root_dot": draw(st.sampled_from([True, True, True, False])),
        "data_dot": draw(st.booleans()),
        "excluded_in_plan": False,
        "excluded_at_apply": False,
        "drift": draw(_drifts),
    }
    base.update(KINDS[draw(_kinds)])
    return InstanceSpec(**base)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    allow, deny = draw(_account_lists)
    plan = Rules(
        older_than_days=draw(st.sampled_from([30, 7])),
        allow=allow,
        deny=deny,
        exclude_tags=draw(st.sampled_from([{}, {}, {}, {}, {"team": "b"}])),
    )
    allow2, deny2 = draw(_account_lists)
    apply = Rules(
        older_than_days=draw(st.sampled_from([1, 1, 40])),
        protect_tags=draw(st.sampled_from([DEFAULT_PROTECT, (*DEFAULT_PROTECT, "Keep")])),
        allow=allow2,
        deny=deny2,
        exclude_tags=draw(st.sampled_from([{}, {}, {}, {}, {"team": "a"}, {"team": "*"}])),
    )
    rate = draw(st.sampled_from([0.0, 0.0, 0.04]))
    seed = draw(st.integers(0, 2**16))
    faults = f"throttle={rate},error5xx={rate},reset={rate},seed={seed}" if rate else ""
    return World(
        instances=tuple(draw(st.lists(instance_specs(), min_size=2, max_size=5))),
        plan=plan,
        apply=apply,
        backups=draw(st.sampled_from(["instant", "pending", "instant", "pending", "stuck"])),
        snapshot_error=draw(st.sampled_from([0.0, 0.0, 0.4])),
        faults=faults,
        seed=seed,
        batch_size=draw(st.integers(1, 3)),
        switched_credentials=draw(st.sampled_from([False] * 7 + [True])),
    )


# Worlds every run tries first (hypothesis's explicit examples), one per way a broken
# safety check would show, whatever the generated examples happen to reach.


def spec(target: int = 0, **changes: Any) -> InstanceSpec:
    """An eligible instance (stopped 200 days, dated reason, one volume to back up)."""
    base: dict[str, Any] = {
        "target": target,
        "stopped_days": 200,
        "reason": "gmt",
        "protect_tag": None,
        "api_protected": False,
        "asg": None,
        "team": None,
        "root_dot": True,
        "data_dot": False,
        "excluded_in_plan": False,
        "excluded_at_apply": False,
        "drift": None,
    }
    return InstanceSpec(**{**base, **changes})


def world(*instances: InstanceSpec, **changes: Any) -> World:
    base: dict[str, Any] = {
        "instances": instances,
        "plan": Rules(older_than_days=30),
        "apply": Rules(older_than_days=1),
        "backups": "instant",
        "snapshot_error": 0.0,
        "faults": "",
        "seed": 1,
        "batch_size": 2,
        "switched_credentials": False,
    }
    return World(**{**base, **changes})


_DESCRIBED = [d for d in DRIFTS if d in DESCRIBED_DRIFT]  # in a fixed order
EXAMPLES = (
    # Backups still pending when apply stops waiting: nothing with a volume terminated.
    world(spec(0), spec(0, data_dot=True), spec(2, root_dot=False), backups="stuck"),
    # Backups that fail (every snapshot ends in error), after a pending while.
    world(spec(1), spec(3, data_dot=True), backups="pending", snapshot_error=1.0),
    # What only apply's own re-check stops: protection through the API since the plan,
    # apply's policy (exclusions, an account denied, a protection tag), and two controls.
    world(
        spec(0, drift="api-protected"),
        spec(0, excluded_at_apply=True),
        spec(1, protect_tag="Keep"),
        spec(1, team="a"),
        spec(2),
        spec(0),
        apply=Rules(
            older_than_days=1,
            protect_tags=(*DEFAULT_PROTECT, "Keep"),
            deny=(ACCOUNT_B,),
            exclude_tags={"team": "a"},
        ),
    ),
    # Drift that DescribeInstances shows, one of each kind, and a control.
    world(*(spec(n % len(TARGETS), drift=d) for n, d in enumerate(_DESCRIBED)), spec(3)),
    # Base credentials that now reach the other account: apply must change nothing.
    world(spec(0), spec(1), spec(2), spec(3), switched_credentials=True),
    # Faults at the proxy while snapshots are pending.
    world(
        spec(0, data_dot=True),
        spec(2, data_dot=True),
        spec(3),
        backups="pending",
        faults="throttle=0.1,error5xx=0.1,reset=0.1,seed=3",
        batch_size=1,
    ),
)


# --- the oracle ----------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What an instance is at one moment, in the terms the rules use."""

    state: str
    stopped_days: float | None  # None: no stop time in its StateTransitionReason
    tags: Mapping[str, str]
    api_protected: bool
    asg_member: bool


def seen_at_plan(spec: InstanceSpec) -> Seen:
    tags = _tags(spec)
    if spec.asg == "tagged":
        tags[ASG_TAG] = "grp"
    known = spec.stopped_days is not None and spec.reason in ("gmt", "utc")
    return Seen(
        state="running" if spec.stopped_days is None else "stopped",
        stopped_days=spec.stopped_days if known else None,
        tags=tags,
        api_protected=spec.api_protected,
        asg_member=spec.asg is not None,
    )


def seen_at_apply(spec: InstanceSpec) -> Seen:
    seen = seen_at_plan(spec)
    drift = spec.drift
    if spec.stopped_days is None and drift in ("started", "restarted"):
        return seen  # already running: starting it changes nothing the plan relied on
    tags = dict(seen.tags)
    if drift == "tagged":
        tags["touched"] = "yes"
    elif drift == "protect-tagged":
        tags["DoNotDelete"] = "yes"
    elif drift == "asg-attached":
        tags[ASG_TAG] = "drift-grp"
    return Seen(
        state={"started": "running", "terminated": "terminated"}.get(drift or "", seen.state),
        stopped_days=0.0 if drift == "restarted" else seen.stopped_days,
        tags=tags,
        api_protected=seen.api_protected or drift == "api-protected",
        asg_member=seen.asg_member or drift == "asg-attached",
    )


def _tags(spec: InstanceSpec) -> dict[str, str]:
    tags = {"Name": "prop"}
    if spec.protect_tag:
        tags[spec.protect_tag] = "yes"
    if spec.team:
        tags["team"] = spec.team
    return tags


def chooses(seen: Seen, account: str, rules: Rules, excluded: bool) -> bool:
    """The README's rules: account allowed, not excluded (id or tag), no protection tag
    (any case), not in an Auto Scaling group, stopped, stop time known and old enough,
    no termination protection."""
    if account in rules.deny or (rules.allow and account not in rules.allow):
        return False
    if excluded:
        return False
    for key, value in rules.exclude_tags.items():
        if key in seen.tags and (value == "*" or seen.tags[key] == value):
            return False
    lowered = {k.lower() for k in seen.tags}
    if any(t.lower() in lowered for t in rules.protect_tags):
        return False
    if seen.asg_member or ASG_TAG in seen.tags:
        return False
    if seen.state != "stopped" or seen.stopped_days is None:
        return False
    return seen.stopped_days >= rules.older_than_days and not seen.api_protected


def planned(spec: InstanceSpec, world: World) -> bool:
    return chooses(seen_at_plan(spec), spec.account, world.plan, spec.excluded_in_plan)


def eligible_at_apply(spec: InstanceSpec, world: World) -> bool:
    """Planned, unchanged as far as DescribeInstances shows, and still chosen by both the
    plan's rules and apply's own policy, on what the instance is at apply time."""
    if not planned(spec, world) or spec.drift in DESCRIBED_DRIFT:
        return False
    now = seen_at_apply(spec)
    return chooses(now, spec.account, world.plan, spec.excluded_in_plan) and chooses(
        now, spec.account, world.apply, spec.excluded_at_apply
    )


def refused(world: World) -> bool:
    """Apply must refuse the whole plan: its base credentials now reach account B, and
    the plan has instances to terminate in account A (reached with those credentials)."""
    return world.switched_credentials and any(
        planned(s, world) and s.account == ACCOUNT_A for s in world.instances
    )


# --- seeding and drift, straight into moto -----------------------------------------------


@dataclass
class Sandbox:
    """Clients straight to moto (never through the proxy), per target, for a run of
    examples. Examples share the server without resetting it (a reset makes moto build
    each account's EC2 backend again, a second an example): each example's instances
    are its own, and :func:`clean_up` terminates them before the next example plans."""

    endpoint: str
    server_url: str
    factory: SessionFactory = field(init=False)
    examples: int = 0
    _clients: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _other_key: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self.factory = SessionFactory(
            region=REGIONS[0],
            settings=ClientSettings(endpoint_url=self.endpoint, max_attempts=3),
            static_credentials=("testing", "testing"),
        )

    def client(self, service: str, account: str, region: str) -> Any:
        key = (service, account, region)
        if key not in self._clients:
            session = self.factory.for_target(target_for(account, region))
            self._clients[key] = make_client(session, service, region, self.factory.settings)
        return self._clients[key]

    def other_account_key(self) -> tuple[str, str]:
        """Static credentials of an IAM user of account B (as if someone switched
        profiles): moto maps the key to account B."""
        if self._other_key is None:
            iam = self.client("iam", ACCOUNT_B, REGIONS[0])
            iam.create_user(UserName="switched")
            key = iam.create_access_key(UserName="switched")["AccessKey"]
            self._other_key = (str(key["AccessKeyId"]), str(key["SecretAccessKey"]))
        return self._other_key


def target_for(account: str, region: str) -> Target:
    if account == ACCOUNT_B:
        return Target(region=region, account_id=ACCOUNT_B, role_arn=ROLE_B, name="second")
    return Target(region=region, account_id=ACCOUNT_A, name="main")


def write_targets_file(path: Path) -> list[Target]:
    """The targets file of the two accounts (the second by AssumeRole), read back the way
    the CLI reads it."""
    path.write_text(
        "accounts:\n"
        f'  - account_id: "{ACCOUNT_A}"\n'
        "    name: main\n"
        f"    regions: [{', '.join(REGIONS)}]\n"
        f'  - account_id: "{ACCOUNT_B}"\n'
        f"    role_arn: {ROLE_B}\n"
        "    name: second\n"
        f"    regions: [{', '.join(REGIONS)}]\n"
    )
    return [t for spec in load_targets_file(path) for t in spec.targets()]


def _mappings() -> list[dict[str, Any]]:
    """Every instance starts with a root volume deleted on termination and a data volume
    kept; :func:`seed` flips them as the spec says."""
    return [
        {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}},
        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 10, "DeleteOnTermination": False}},
    ]


@dataclass
class Seeded:
    """One example's instances in moto (``ids`` in the specs' order once all are made;
    ``where`` each one's account and region, as soon as it exists) and its groups."""

    ids: list[str] = field(default_factory=list)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)
    groups: set[tuple[str, str, str]] = field(default_factory=set)  # (account, region, name)

    def by_target(self) -> dict[tuple[str, str], list[str]]:
        out: dict[tuple[str, str], list[str]] = {}
        for iid, target in self.where.items():
            out.setdefault(target, []).append(iid)
        return out


def seed(box: Sandbox, world: World, now: dt.datetime, seeded: Seeded) -> None:
    """Create the world's instances in moto (one RunInstances per target, then tags,
    volumes, protection, stop, groups and backdated stop reasons), into ``seeded``."""
    box.examples += 1
    ids: list[str | None] = [None] * len(world.instances)
    groups = seeded.groups
    for t, (account, region) in enumerate(TARGETS):
        members = [n for n, s in enumerate(world.instances) if s.target == t]
        if not members:
            continue
        ec2 = box.client("ec2", account, region)
        resp = ec2.run_instances(
            ImageId=IMAGE,
            MinCount=len(members),
            MaxCount=len(members),
            BlockDeviceMappings=_mappings(),
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "prop"}]}
            ],
        )
        made = [i["InstanceId"] for i in resp["Instances"]]
        seeded.where.update((iid, (account, region)) for iid in made)
        backdates = []
        by_tags: dict[tuple[tuple[str, str], ...], list[str]] = {}
        for n, iid in zip(members, made, strict=True):
            ids[n] = iid
            spec = world.instances[n]
            extra = tuple(sorted((k, v) for k, v in _tags(spec).items() if k != "Name"))
            if extra:
                by_tags.setdefault(extra, []).append(iid)
            dot = []
            if not spec.root_dot:
                dot.append({"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": False}})
            if spec.data_dot:
                dot.append({"DeviceName": "/dev/sdf", "Ebs": {"DeleteOnTermination": True}})
            if dot:
                ec2.modify_instance_attribute(InstanceId=iid, BlockDeviceMappings=dot)
            if spec.api_protected:
                ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": True})
            if spec.stopped_days is not None:
                when = now - dt.timedelta(days=spec.stopped_days)
                reason = {
                    "gmt": ec2_reason(when),
                    "utc": ec2_reason(when).replace("GMT", "UTC"),
                    "bare": "User initiated",
                    "empty": "",
                }[spec.reason]
                backdates.append({"id": iid, "reason": reason})
        for tags, tagged in by_tags.items():
            ec2.create_tags(Resources=tagged, Tags=[{"Key": k, "Value": v} for k, v in tags])
        stopped = [ids[n] for n in members if world.instances[n].stopped_days is not None]
        if stopped:
            ec2.stop_instances(InstanceIds=stopped)
        in_asg = [n for n in members if world.instances[n].asg]
        if in_asg:
            group = _group(box, account, region, f"grp-{box.examples}", groups)
            asg = box.client("autoscaling", account, region)
            asg.attach_instances(InstanceIds=[ids[n] for n in in_asg], AutoScalingGroupName=group)
            untagged = [ids[n] for n in in_asg if world.instances[n].asg == "untagged"]
            if untagged:  # only DescribeAutoScalingInstances tells now
                ec2.delete_tags(Resources=untagged, Tags=[{"Key": ASG_TAG}])
        if backdates:
            control(
                box.server_url,
                "backdate",
                {"account_id": account, "region": region, "instances": backdates},
            )
    seeded.ids = [i for i in ids if i]
    assert len(seeded.ids) == len(world.instances)


def _group(
    box: Sandbox, account: str, region: str, name: str, groups: set[tuple[str, str, str]]
) -> str:
    """An Auto Scaling group of no instances of its own, made once per example."""
    if (account, region, name) not in groups:
        asg = box.client("autoscaling", account, region)
        asg.create_launch_configuration(
            LaunchConfigurationName=f"{name}-lc", ImageId=IMAGE, InstanceType="t3.micro"
        )
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchConfigurationName=f"{name}-lc",
            MinSize=0,
            MaxSize=20,
            DesiredCapacity=0,
            AvailabilityZones=[f"{region}a"],
        )
        groups.add((account, region, name))
    return name


def drift(box: Sandbox, world: World, seeded: Seeded) -> None:
    """What someone else does between plan and apply."""
    for spec, iid in zip(world.instances, seeded.ids, strict=True):
        if spec.drift is None:
            continue
        ec2 = box.client("ec2", spec.account, spec.region)
        if spec.drift in ("started", "restarted"):
            ec2.start_instances(InstanceIds=[iid])
            if spec.drift == "restarted":
                ec2.stop_instances(InstanceIds=[iid])
        elif spec.drift == "tagged":
            ec2.create_tags(Resources=[iid], Tags=[{"Key": "touched", "Value": "yes"}])
        elif spec.drift == "protect-tagged":
            ec2.create_tags(Resources=[iid], Tags=[{"Key": "DoNotDelete", "Value": "yes"}])
        elif spec.drift == "volume":
            ec2.modify_instance_attribute(
                InstanceId=iid,
                BlockDeviceMappings=[
                    {"DeviceName": "/dev/sdf", "Ebs": {"DeleteOnTermination": not spec.data_dot}}
                ],
            )
        elif spec.drift == "terminated":
            if spec.api_protected:
                ec2.modify_instance_attribute(
                    InstanceId=iid, DisableApiTermination={"Value": False}
                )
            ec2.terminate_instances(InstanceIds=[iid])
        elif spec.drift == "api-protected":
            ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": True})
        elif spec.drift == "asg-attached":
            name = f"drift-{box.examples}"
            group = _group(box, spec.account, spec.region, name, seeded.groups)
            box.client("autoscaling", spec.account, spec.region).attach_instances(
                InstanceIds=[iid], AutoScalingGroupName=group
            )


@dataclass(frozen=True)
class Truth:
    """An instance as moto has it: state and DeleteOnTermination volumes."""

    state: str
    deletable: tuple[str, ...]


def truth(box: Sandbox, seeded: Seeded) -> dict[str, Truth]:
    """The example's instances as moto has them now (read directly)."""
    out: dict[str, Truth] = {}
    for (account, region), ids in seeded.by_target().items():
        ec2 = box.client("ec2", account, region)
        for inst in iter_items(
            ec2,
            "describe_instances",
            "Reservations[].Instances[]",
            {"Filters": [{"Name": "instance-id", "Values": ids}]},
        ):
            vols = tuple(
                m["Ebs"]["VolumeId"]
                for m in inst.get("BlockDeviceMappings", [])
                if m.get("Ebs", {}).get("DeleteOnTermination")
            )
            out[inst["InstanceId"]] = Truth(inst["State"]["Name"], vols)
    assert set(out) == set(seeded.where)
    return out


def clean_up(box: Sandbox, world: World, seeded: Seeded) -> None:
    """Terminate what is left of the example (protection off first, groups deleted),
    so that the next example's plan sees none of it."""
    protected = {
        iid
        for spec, iid in zip(world.instances, seeded.ids, strict=False)
        if spec.api_protected or spec.drift == "api-protected"
    }
    if len(seeded.ids) < len(world.instances):  # seeding stopped half-way
        protected = set(seeded.where)
    for iid in sorted(protected):
        account, region = seeded.where[iid]
        box.client("ec2", account, region).modify_instance_attribute(
            InstanceId=iid, DisableApiTermination={"Value": False}
        )
    for account, region, name in sorted(seeded.groups):
        asg = box.client("autoscaling", account, region)
        asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        asg.delete_launch_configuration(LaunchConfigurationName=f"{name}-lc")
    for (account, region), ids in seeded.by_target().items():
        box.client("ec2", account, region).terminate_instances(InstanceIds=ids)


def plan_criteria(world: World, ids: Sequence[str]) -> PlanCriteria:
    return PlanCriteria(
        older_than_days=world.plan.older_than_days,
        protect_tags=world.plan.protect_tags,
        account_allowlist=world.plan.allow,
        account_denylist=world.plan.deny,
        exclude_instance_ids=tuple(
            iid for s, iid in zip(world.instances, ids, strict=True) if s.excluded_in_plan
        ),
        exclude_tags=dict(world.plan.exclude_tags),
    )


def apply_policy(world: World, ids: Sequence[str]) -> dict[str, Any]:
    """Apply's own policy as :class:`ApplyOptions` fields."""
    return {
        "min_older_than_days": world.apply.older_than_days,
        "protect_tags": world.apply.protect_tags,
        "account_allowlist": world.apply.allow,
        "account_denylist": world.apply.deny,
        "exclude_instance_ids": tuple(
            iid for s, iid in zip(world.instances, ids, strict=True) if s.excluded_at_apply
        ),
        "exclude_tags": dict(world.apply.exclude_tags),
    }
