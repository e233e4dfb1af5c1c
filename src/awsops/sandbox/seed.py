"""Seed a realistic demo fleet into the sandbox through the AWS API, then backdate it.

Every instance carries the tag ``awsops:demo`` naming its category, so a reader (or a
test) can tell why the decommission planner chose or skipped it. Stop times are
written in real EC2's format, ``User initiated (YYYY-MM-DD HH:MM:SS GMT)``, through the
sandbox server's control API, because moto stamps the current time. The same call
seeds each stopped instance's CloudTrail ``StopInstances`` event at its stop time, so
``plan --cloudtrail`` finds the stop time of the categories whose reason has no date
(CloudTrail keeps 90 days: those categories stopped 60 days ago).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from awsops.clients import make_client
from awsops.config import ClientSettings
from awsops.errors import UsageError
from awsops.sandbox.manager import control
from awsops.waiters import chunked

if TYPE_CHECKING:
    import boto3

DEMO_TAG = "awsops:demo"
DEMO_IMAGE = "ami-12c6146b"
DEFAULT_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
MAX_PER_REGION = 10_000
RUN_BATCH = 500
EC2_TIME_FORMAT = "%Y-%m-%d %H:%M:%S GMT"


@dataclass(frozen=True)
class Category:
    """One kind of demo instance and how it is made."""

    name: str
    weight: float
    stopped_days: float | None = None  # None: left running
    reason: str | None = None  # explicit StateTransitionReason (no date)
    launch_days: float | None = None
    tags: tuple[tuple[str, str], ...] = ()
    api_protected: bool = False
    in_asg: bool = False


CATEGORIES: tuple[Category, ...] = (
    Category("running", 0.30),
    Category("stopped-3d", 0.08, stopped_days=3),
    Category("stopped-20d", 0.08, stopped_days=20),
    Category("stopped-45d", 0.12, stopped_days=45),
    Category("stopped-200d", 0.14, stopped_days=200),
    Category("stopped-bare-reason", 0.04, stopped_days=60, reason="User initiated"),
    Category("stopped-empty-reason", 0.04, stopped_days=60, reason=""),
    Category("launched-400d-stopped-1d", 0.06, stopped_days=1, launch_days=400),
    Category("termination-protected", 0.04, stopped_days=200, api_protected=True),
    Category("tag-protected", 0.04, stopped_days=200, tags=(("awsops:protect", "true"),)),
    Category("tag-donotdelete", 0.03, stopped_days=200, tags=(("DoNotDelete", "yes"),)),
    Category("asg-member", 0.03, stopped_days=200, in_asg=True),
)


def allocate(total: int, categories: Sequence[Category] = CATEGORIES) -> dict[str, int]:
    """Split ``total`` over the categories by weight; every category gets at least one
    instance when ``total`` allows it. The counts add up to ``total`` exactly."""
    if total <= 0:
        return {c.name: 0 for c in categories}
    counts = {c.name: 0 for c in categories}
    # Round-robin the first instances so small fleets still show every case.
    for c in categories[:total]:
        counts[c.name] = 1
    rest = total - sum(counts.values())
    weight_sum = sum(c.weight for c in categories)
    shares = {c.name: rest * c.weight / weight_sum for c in categories}
    for name, share in shares.items():
        counts[name] += int(share)
    leftover = total - sum(counts.values())
    by_fraction = sorted(shares, key=lambda n: shares[n] - int(shares[n]), reverse=True)
    for name in by_fraction[:leftover]:
        counts[name] += 1
    return counts


@dataclass
class SeedReport:
    """What was created: instances per category per region, buckets and objects."""

    account_id: str
    instances: dict[str, Counter[str]] = field(default_factory=dict)
    volumes: int = 0
    buckets: list[str] = field(default_factory=list)
    objects: int = 0

    @property
    def total_instances(self) -> int:
        return sum(sum(c.values()) for c in self.instances.values())


def ec2_reason(when: dt.datetime) -> str:
    """A stop reason in real EC2's format."""
    return f"User initiated ({when.astimezone(dt.timezone.utc).strftime(EC2_TIME_FORMAT)})"


def _mappings(delete_data_volume: bool, size: int) -> list[dict[str, Any]]:
    return [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"VolumeSize": 8, "VolumeType": "gp3", "DeleteOnTermination": True},
        },
        {
            "DeviceName": "/dev/sdf",
            "Ebs": {
                "VolumeSize": size,
                "VolumeType": "gp2",
                "DeleteOnTermination": delete_data_volume,
            },
        },
    ]


def _run(ec2: Any, count: int, cat: Category, half: int, tags: dict[str, str]) -> list[str]:
    ids: list[str] = []
    remaining = count
    while remaining > 0:
        n = min(RUN_BATCH, remaining)
        resp = ec2.run_instances(
            ImageId=DEMO_IMAGE,
            InstanceType="t3.micro" if half else "m5.large",
            MinCount=n,
            MaxCount=n,
            DisableApiTermination=cat.api_protected,
            BlockDeviceMappings=_mappings(delete_data_volume=bool(half), size=20 + 30 * half),
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )
        batch = [i["InstanceId"] for i in resp["Instances"]]
        if cat.api_protected:  # moto ignores DisableApiTermination on RunInstances
            for iid in batch:
                ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": True})
        ids.extend(batch)
        remaining -= n
    return ids


def _asg_instances(
    session: boto3.Session, settings: ClientSettings, region: str, count: int, ec2: Any
) -> list[str]:
    asg = make_client(session, "autoscaling", region, settings)
    name = f"demo-asg-{region}"
    asg.create_launch_configuration(
        LaunchConfigurationName=f"{name}-lc", ImageId=DEMO_IMAGE, InstanceType="t3.micro"
    )
    azs = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:1]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchConfigurationName=f"{name}-lc",
        MinSize=0,
        MaxSize=count,
        DesiredCapacity=count,
        AvailabilityZones=azs,
    )
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    ids = [i["InstanceId"] for i in groups[0]["Instances"]]
    ec2.create_tags(
        Resources=ids,
        Tags=[
            {"Key": DEMO_TAG, "Value": "asg-member"},
            {"Key": "Name", "Value": "demo-asg-member"},
        ],
    )
    return ids


def seed_region(
    session: boto3.Session,
    settings: ClientSettings,
    control_url: str,
    account_id: str,
    region: str,
    count: int,
    now: dt.datetime,
    on_made: Callable[[int], None] | None = None,
) -> Counter[str]:
    """Create ``count`` demo instances in one region and backdate the stopped ones;
    ``on_made(n)`` is told each time ``n`` more instances exist (for progress)."""
    ec2 = make_client(session, "ec2", region, settings)
    made: Counter[str] = Counter()
    backdates: list[dict[str, Any]] = []
    to_stop: list[str] = []
    counts = allocate(count)
    for cat in CATEGORIES:
        n = counts[cat.name]
        if n == 0:
            continue
        ids: list[str] = []
        if cat.in_asg:
            ids = _asg_instances(session, settings, region, n, ec2)
        else:
            for half, part in ((0, n // 2), (1, n - n // 2)):
                if part:
                    tags = {"Name": f"demo-{cat.name}", DEMO_TAG: cat.name, **dict(cat.tags)}
                    ids += _run(ec2, part, cat, half, tags)
        made[cat.name] += len(ids)
        if on_made is not None:
            on_made(len(ids))
        if cat.stopped_days is None:
            continue
        to_stop += ids
        stopped_at = now - dt.timedelta(days=cat.stopped_days)
        launch_days = cat.launch_days if cat.launch_days is not None else cat.stopped_days + 30
        launched = now - dt.timedelta(days=launch_days)
        reason = cat.reason if cat.reason is not None else ec2_reason(stopped_at)
        backdates += [
            {
                "id": i,
                "reason": reason,
                "launch_time": launched.isoformat(),
                "stop_event_time": stopped_at.isoformat(),
            }
            for i in ids
        ]
    for batch in chunked(to_stop, RUN_BATCH):
        ec2.stop_instances(InstanceIds=batch)
    if backdates:
        control(
            control_url,
            "backdate",
            {"account_id": account_id, "region": region, "instances": backdates},
        )
    return made


OBJECT_LAYOUT: tuple[tuple[str, int, int], ...] = (
    # prefix, size in bytes, how many
    ("logs/2026/", 1_024, 40),
    ("reports/", 150_000, 8),
    ("backups/db/", 2_500_000, 3),
    ("backups/full/", 12_582_912, 2),
)


def seed_buckets(
    session: boto3.Session, settings: ClientSettings, account_id: str, region: str
) -> tuple[list[str], int]:
    """Two buckets with objects of several sizes under prefixes."""
    s3 = make_client(session, "s3", region, settings)
    names = [f"awsops-demo-{account_id}-data", f"awsops-demo-{account_id}-logs"]
    objects = 0
    for idx, name in enumerate(names):
        kwargs: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        layout = OBJECT_LAYOUT if idx == 0 else OBJECT_LAYOUT[:1]
        for prefix, size, count in layout:
            body = b"x" * size
            for i in range(count):
                s3.put_object(Bucket=name, Key=f"{prefix}object-{i:04d}.bin", Body=body)
                objects += 1
    return names, objects


def seed_demo(
    session: boto3.Session,
    settings: ClientSettings,
    control_url: str,
    regions: Sequence[str] = DEFAULT_REGIONS,
    instances_per_region: int = 60,
    now: dt.datetime | None = None,
    with_buckets: bool = True,
    on_region: Callable[[str, Counter[str]], None] | None = None,
    on_made: Callable[[int], None] | None = None,
) -> SeedReport:
    """Seed the demo fleet in every region (buckets in the first region)."""
    if not 0 < instances_per_region <= MAX_PER_REGION:
        raise UsageError(f"--instances must be between 1 and {MAX_PER_REGION}")
    now = now or dt.datetime.now(dt.timezone.utc)
    sts = make_client(session, "sts", regions[0], settings)
    account_id = str(sts.get_caller_identity()["Account"])
    report = SeedReport(account_id=account_id)
    for region in regions:
        made = seed_region(
            session, settings, control_url, account_id, region, instances_per_region, now, on_made
        )
        report.instances[region] = made
        report.volumes += 2 * sum(v for k, v in made.items() if k != "asg-member")
        if on_region:
            on_region(region, made)
    if with_buckets:
        report.buckets, report.objects = seed_buckets(session, settings, account_id, regions[0])
    return report
