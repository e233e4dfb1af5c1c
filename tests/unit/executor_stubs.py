"""What the executor's unit tests share: a plan of stopped instances in one target,
botocore clients to put a Stubber on, and an executor whose journal is open."""

from __future__ import annotations

import datetime as dt
import functools
import tempfile
from pathlib import Path
from typing import Any

import boto3

from awsops.decommission.executor import ApplyOptions, Executor, TargetWork
from awsops.decommission.journal import Journal
from awsops.decommission.model import InstanceFacts, Plan, PlanCriteria, TargetPlan, Volume
from awsops.session import SessionFactory

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
A, B, C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


def _facts(iid: str, deletable: bool = True, data_deletable: bool = False) -> InstanceFacts:
    """A stopped instance with a root volume (deleted by termination if ``deletable``)
    and a data volume (if ``data_deletable``)."""
    return InstanceFacts(
        instance_id=iid,
        state="stopped",
        stop_time=NOW - dt.timedelta(days=60),
        stop_source="state-transition-reason",
        launch_time=NOW - dt.timedelta(days=90),
        tags={"Name": f"name-{iid[-1]}"},
        volumes=(
            Volume(f"vol-{iid[-1]}root", "/dev/xvda", deletable, 8, "gp3"),
            Volume(f"vol-{iid[-1]}data", "/dev/sdf", data_deletable, 20, "gp2"),
        ),
        availability_zone="us-east-1a",
        instance_type="t3.micro",
        termination_protection=False,
    )


def _plan(
    *ids: str, examined: int | None = None, deletable: bool = True, data_deletable: bool = False
) -> Plan:
    tp = TargetPlan(
        account_id=ACCOUNT,
        region="us-east-1",
        examined=len(ids) if examined is None else examined,
        chosen=tuple(_facts(i, deletable, data_deletable) for i in ids),
    )
    return Plan(
        plan_id="plan-20260601T120000Z-0000unit",
        created_at=NOW,
        expires_at=NOW + dt.timedelta(hours=24),
        criteria=PlanCriteria(older_than_days=30, protect_tags=("awsops:protect",)),
        targets=(tp,),
    )


@functools.cache
def _factory() -> SessionFactory:
    return SessionFactory(region="us-east-1", static_credentials=("testing", "testing"))


@functools.cache
def _session() -> boto3.Session:
    # one session: its loader caches the EC2 model, so each fresh client is cheap
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def _ec2() -> Any:
    """A fresh client (Stubber and event hooks are per client)."""
    return _session().client("ec2", region_name="us-east-1")


def _executor(plan: Plan, **options: Any) -> Executor:
    """An executor whose journal is open (in a fresh directory), as during a run."""
    path = Path(tempfile.mkdtemp(prefix="awsops-unit-")) / "journal.jsonl"
    options.setdefault("backup", "snapshots")
    ex = Executor(plan, _factory(), ApplyOptions(**options), journal_path=path, now=lambda: NOW)
    journal = Journal(path, plan.plan_id)
    ex.run_state.state = journal.open()
    ex.run_state.journal = journal
    return ex


def _work(plan: Plan, ec2: Any) -> TargetWork:
    tp = plan.targets[0]
    return TargetWork(tp, ec2, act=list(tp.chosen))
