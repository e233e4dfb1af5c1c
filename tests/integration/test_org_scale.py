"""Organisation scale against the moto server, counted by the fault proxy in between:
one AssumeRole per account however many regions (plan, inventory and apply's
verification), every EC2 call through the shared rate limiter, per-instance calls made
concurrently and the limiter slowing down when EC2's buckets refuse.

moto maps assumed-role credentials to the role's account, so 111111111111 and
222222222222 are two accounts with their own instances here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from awsops import ratelimit
from awsops.clients import make_client
from awsops.config import ClientSettings, Target
from awsops.decommission.journal import JournalState
from awsops.decommission.model import PlanCriteria, SkipReason
from awsops.decommission.planner import build_plan
from awsops.decommission.verify import verify_target
from awsops.fanout import map_concurrent
from awsops.inventory import InventoryRequest, InventoryRun
from awsops.sandbox.faults import FaultProxy
from awsops.session import AssumeRoleSpec, SessionFactory

AMI = "ami-12c6146b"
ACCOUNTS = ("111111111111", "222222222222")
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
LATER = dt.timedelta(days=10)  # plan "now": every instance stopped today is old by then


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/ops"


def targets() -> list[Target]:
    return [
        Target(region=r, account_id=a, role_arn=role(a), name=f"acct-{a[0]}")
        for a in ACCOUNTS
        for r in REGIONS
    ]


@pytest.fixture
def proxy(aws: Any) -> Iterator[FaultProxy]:
    with FaultProxy(aws.endpoint) as p:
        yield p


@pytest.fixture
def limiter() -> Iterator[ratelimit.RateLimiter]:
    """A fresh process limiter for the test (the previous one comes back after)."""
    fresh = ratelimit.RateLimiter()
    old = ratelimit.set_default_limiter(fresh)
    yield fresh
    ratelimit.set_default_limiter(old)


def factory_through(proxy: FaultProxy) -> SessionFactory:
    return SessionFactory(
        region="us-east-1",
        settings=ClientSettings(endpoint_url=proxy.url),
        static_credentials=("testing", "testing"),
    )


def seed(aws: Any) -> dict[tuple[str, str], dict[str, str]]:
    """Per account and region: two stopped instances (one termination-protected) and a
    running one, seeded straight into moto."""
    made: dict[tuple[str, str], dict[str, str]] = {}
    factory = aws.factory()
    for account in ACCOUNTS:
        for region in REGIONS:
            session = factory.assume(AssumeRoleSpec(role(account)), region)
            ec2 = make_client(session, "ec2", region, aws.settings)
            ids = [
                i["InstanceId"]
                for i in ec2.run_instances(ImageId=AMI, MinCount=3, MaxCount=3)["Instances"]
            ]
            ec2.stop_instances(InstanceIds=ids[:2])
            ec2.modify_instance_attribute(InstanceId=ids[1], DisableApiTermination={"Value": True})
            made[(account, region)] = {"old": ids[0], "protected": ids[1], "running": ids[2]}
    return made


def calls(proxy: FaultProxy, name: str) -> int:
    return int(proxy.stats.snapshot()["calls"].get(name, 0))


def ec2_calls(proxy: FaultProxy) -> int:
    return sum(n for k, n in proxy.stats.snapshot()["calls"].items() if k.startswith("ec2:"))


def test_one_assume_role_per_account_for_plan_inventory_and_verify(
    aws: Any, proxy: FaultProxy, limiter: ratelimit.RateLimiter
) -> None:
    made = seed(aws)
    criteria = PlanCriteria(older_than_days=1, protect_tags=("awsops:protect",))
    now = dt.datetime.now(dt.timezone.utc) + LATER
    factory = factory_through(proxy)
    metered_before = limiter.stats().requests

    plan = build_plan(factory, targets(), criteria, now=now, concurrency=4)
    assert calls(proxy, "sts:AssumeRole") == len(ACCOUNTS)
    chosen = {(t.account_id, t.region): [f.instance_id for f in t.chosen] for t in plan.targets}
    assert chosen == {key: [ids["old"]] for key, ids in made.items()}
    kept = {d.facts.instance_id: d.reason for t in plan.targets for d in t.skipped}
    assert kept == {ids["protected"]: SkipReason.TERMINATION_PROTECTION for ids in made.values()}
    # protection read once per candidate (two per target), every EC2 call metered
    assert calls(proxy, "ec2:DescribeInstanceAttribute") == 2 * len(made)
    assert limiter.stats().requests - metered_before == ec2_calls(proxy) > 0

    proxy.stats.reset()
    run = InventoryRun(factory_through(proxy), targets(), InventoryRequest.build("ec2-instances"))
    records = list(run)
    assert not run.failures and len(records) == 3 * len(made)
    assert {(r["account_id"], r["region"]) for r in records} == set(made)
    assert calls(proxy, "sts:AssumeRole") == len(ACCOUNTS)

    proxy.stats.reset()
    verifier = factory_through(proxy)
    for tp in plan.targets:
        work = verify_target(tp, verifier, JournalState(), criteria, criteria, now)
        assert [f.instance_id for f in work.act] == chosen[(tp.account_id, tp.region)]
    assert calls(proxy, "sts:AssumeRole") == len(ACCOUNTS)


def test_the_limiter_slows_down_when_ec2_buckets_refuse(
    aws: Any, proxy: FaultProxy, limiter: ratelimit.RateLimiter
) -> None:
    """The proxy's EC2 buckets at 10% of their documented size (10 burst, 2/s) refuse
    the limiter's first burst (50 at its default share); the limiter cuts its rate, and
    the calls still succeed (botocore retries the refused ones)."""
    session = aws.factory().assume(AssumeRoleSpec(role(ACCOUNTS[0])), REGIONS[0])
    direct = make_client(session, "ec2", REGIONS[0], aws.settings)
    iid = direct.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    proxy.set_spec("bucket=ec2,bucket_scale=0.1")
    factory = factory_through(proxy)
    ec2 = make_client(
        factory.assume(AssumeRoleSpec(role(ACCOUNTS[0]))), "ec2", REGIONS[0], factory.settings
    )
    answers = map_concurrent(
        lambda _: ec2.describe_instance_attribute(
            InstanceId=iid, Attribute="disableApiTermination"
        ),
        range(16),
        4,
    )
    assert len(answers) == 16
    stats = limiter.stats()
    assert stats.throttled >= 1 and stats.slowdowns >= 1
    bucket = limiter._buckets[(ACCOUNTS[0], REGIONS[0], "DescribeInstanceAttribute")]
    assert bucket.factor < 1.0
