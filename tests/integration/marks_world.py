"""A small fleet for the mark-and-notify cycle, seeded straight into moto, the receivers
of its notices on loopback, and a fault proxy (without faults) whose ledger tells what
awsops changed: the world the lifecycle tests judge from outside."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.notice_servers import SmtpCapture, WebhookCapture, self_signed, sns_to_sqs

from awsops.config import ClientSettings, DecommissionSettings, Target, load_decommission_settings
from awsops.decommission.marking import MarkReport, MarkRequest, mark_instances
from awsops.decommission.marktags import MARK_TAG
from awsops.decommission.model import PlanCriteria
from awsops.decommission.notify import NotifyReport, notify_owners
from awsops.sandbox.faults import FaultProxy, MutationRecord
from awsops.sandbox.manager import control
from awsops.sandbox.seed import DEMO_IMAGE, ec2_reason
from awsops.session import SessionFactory

REGION = "us-east-1"
SMTP_LOGIN = ("awsops-notices", "s3cret-smtp-pw")
HOOK_ENV = "AWSOPS_TEST_WEBHOOK_URL"


@dataclass
class World:
    aws: Any
    proxy: FaultProxy
    home: Path
    config: Path
    smtp: SmtpCapture
    hook: WebhookCapture
    sqs: Any
    queue: str
    ids: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def factory(self) -> SessionFactory:
        settings = ClientSettings(endpoint_url=self.proxy.url, max_attempts=3)
        return SessionFactory(
            region=REGION, settings=settings, static_credentials=("testing", "testing")
        )

    @property
    def settings(self) -> DecommissionSettings:
        return load_decommission_settings(self.config)

    @property
    def criteria(self) -> PlanCriteria:
        s = self.settings
        return PlanCriteria(older_than_days=30, protect_tags=s.protect_tags)

    def mark(self, now: dt.datetime, grace_days: float = 14) -> MarkReport:
        request = MarkRequest(self.criteria, dt.timedelta(days=grace_days))
        return mark_instances(self.factory, [Target(REGION)], request, now=now)

    def notify(self, now: dt.datetime) -> NotifyReport:
        return notify_owners(self.factory, [Target(REGION)], self.settings.marks, now=now)

    # --- seeding and the truth, straight to moto ----------------------------------------

    def seed(self, name: str, stopped_at: dt.datetime | None, **tags: str) -> str:
        iid = seed_instance(self.aws, name, stopped_at, **tags)
        self.ids[name] = iid
        return iid

    def instances(self) -> dict[str, dict[str, Any]]:
        """name -> {state, tags} as moto has them now."""
        ec2 = self.aws.client("ec2", REGION)
        out = {}
        for r in ec2.describe_instances()["Reservations"]:
            for i in r["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                out[tags.get("Name", i["InstanceId"])] = {"state": i["State"]["Name"], "tags": tags}
        return out

    def marks(self) -> dict[str, str]:
        """name -> mark of the instances that are not terminated."""
        return {
            n: i["tags"][MARK_TAG]
            for n, i in self.instances().items()
            if MARK_TAG in i["tags"] and i["state"] != "terminated"
        }

    def names(self, ids: Any) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[i] for i in ids}

    # --- the ledger ------------------------------------------------------------------

    def ledger(self) -> list[MutationRecord]:
        return [r for r in self.proxy.stats.mutation_list() if r.status < 300 and not r.dry_run]

    def tag_calls(self, action: str) -> list[tuple[str, set[str]]]:
        """(value, instance names) of each CreateTags/DeleteTags of the mark tag."""
        out = []
        for r in self.ledger():
            if r.action != f"ec2:{action}" or r.params.get("Tag.1.Key") != MARK_TAG:
                continue
            ids = {v for k, v in r.params.items() if k.startswith("ResourceId.")}
            out.append((r.params.get("Tag.1.Value", ""), self.names(ids)))
        return out


def seed_instance(aws: Any, name: str, stopped_at: dt.datetime | None, **tags: str) -> str:
    """One instance named ``name`` with ``tags`` (a 20 GiB root volume), stopped and
    backdated to ``stopped_at`` unless that is None; straight into moto."""
    ec2 = aws.client("ec2", REGION)
    resp = ec2.run_instances(
        ImageId=DEMO_IMAGE,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        BlockDeviceMappings=[
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {"VolumeSize": 20, "VolumeType": "gp3", "DeleteOnTermination": True},
            }
        ],
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": k, "Value": v} for k, v in {"Name": name, **tags}.items()],
            }
        ],
    )
    iid = str(resp["Instances"][0]["InstanceId"])
    if stopped_at is not None:
        ec2.stop_instances(InstanceIds=[iid])
        control(
            aws.server_url,
            "backdate",
            {
                "region": REGION,
                "instances": [
                    {
                        "id": iid,
                        "reason": ec2_reason(stopped_at),
                        "launch_time": (stopped_at - dt.timedelta(days=100)).isoformat(),
                    }
                ],
            },
        )
    return iid


def make_world(
    aws: Any, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy
) -> Iterator[World]:
    """The world in ``home`` (the ``sandbox_home`` fixture's awsops home)."""
    send_sandbox_through(home, proxy)
    smtp = SmtpCapture(cert=self_signed(tmp_path), login=SMTP_LOGIN).start()
    hook = WebhookCapture()
    topic, sqs, queue = sns_to_sqs(aws, REGION)
    monkeypatch.setenv("AWSOPS_SMTP_USERNAME", SMTP_LOGIN[0])
    monkeypatch.setenv("AWSOPS_SMTP_PASSWORD", SMTP_LOGIN[1])
    monkeypatch.setenv(HOOK_ENV, hook.url)
    assert smtp.cert is not None
    config = tmp_path / "decommission.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "max_percent": 80,
                "marks": {
                    "fallback_owner": "ops@example.com",
                    "notify": {
                        "smtp": {
                            "host": "127.0.0.1",
                            "port": smtp.port,
                            "from": "awsops@example.com",
                            "ca_file": str(smtp.cert[0]),
                            "timeout": 5,
                        },
                        "webhook": {"url_env": HOOK_ENV},
                        "sns": {"topic_arn": topic},
                        "report": {"dir": str(tmp_path / "reports")},
                    },
                },
            }
        )
    )
    try:
        yield World(aws, proxy, home, config, smtp, hook, sqs, queue)
    finally:
        smtp.stop()
        hook.close()


def send_sandbox_through(home: Path, proxy: FaultProxy) -> None:
    """Make ``awsops --sandbox`` in a subprocess go through ``proxy`` (the sandbox record
    that the ``sandbox_home`` fixture wrote, with the proxy's port added)."""
    record = home / "sandbox.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "proxy_port": proxy.port}))
