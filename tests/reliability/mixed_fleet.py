"""A small fleet of long-stopped instances with what a faithful restore must bring back:
one and two deletable volumes, a data volume that survives termination, an Elastic
IP, user data, a security group, a key pair and an instance profile. Seeded straight
into moto (not through the fault proxy) and backdated by the sandbox server."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awsops.sandbox.manager import control
from tests.reliability.apply_world import apply_args, make_plan, run
from tests.reliability.conftest import Proxied

REGION = "us-east-1"
AMI = "ami-12c6146b"


@dataclass(frozen=True)
class Made:
    instances: dict[str, str]  # role in the fleet -> instance id
    subnet_id: str
    group_id: str
    key_name: str
    profile_arn: str
    allocation_id: str
    user_data: str


def seed_mixed_fleet(proxied: Proxied, stopped_days: int = 60) -> Made:
    ec2 = proxied.direct("ec2", REGION)
    iam = proxied.direct("iam", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="us-east-1a")[
        "Subnet"
    ]["SubnetId"]
    group = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
    key = ec2.create_key_pair(KeyName="ops-key")["KeyName"]
    iam.create_role(RoleName="app-role", AssumeRolePolicyDocument="{}")
    profile = iam.create_instance_profile(InstanceProfileName="app-profile")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName="app-profile", RoleName="app-role")
    user_data = "#!/bin/sh\necho restored > /tmp/marker\n"
    shapes: dict[str, list[dict[str, Any]]] = {
        "one-volume": [],
        "two-volumes": [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3"}}],
        "kept-data-volume": [
            {
                "DeviceName": "/dev/sdg",
                "Ebs": {"VolumeSize": 50, "VolumeType": "gp2", "DeleteOnTermination": False},
            }
        ],
        "elastic-ip": [],
    }
    made: dict[str, str] = {}
    for role, extra in shapes.items():
        resp = ec2.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.small" if role != "elastic-ip" else "m5.large",
            SubnetId=subnet,
            SecurityGroupIds=[group],
            KeyName=key,
            IamInstanceProfile={"Arn": profile["Arn"]},
            UserData=user_data,
            BlockDeviceMappings=[
                {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}},
                *extra,
            ],
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "Name", "Value": f"app-{role}"},
                        {"Key": "team", "Value": "blue"},
                    ],
                }
            ],
        )
        made[role] = resp["Instances"][0]["InstanceId"]
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=allocation, InstanceId=made["elastic-ip"])
    ec2.stop_instances(InstanceIds=list(made.values()))
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=stopped_days)
    control(
        proxied.aws.server_url,
        "backdate",
        {
            "region": REGION,
            "instances": [
                {"id": iid, "reason": f"User initiated ({when:%Y-%m-%d %H:%M:%S} GMT)"}
                for iid in made.values()
            ],
        },
    )
    return Made(
        made,
        subnet,
        group,
        key,
        profile["Arn"],
        allocation,
        base64.b64encode(user_data.encode()).decode(),
    )


def plan_all(path: Path) -> dict[str, Any]:
    """A plan of the mixed fleet (every instance in it qualifies: no share cap)."""
    return make_plan(path, [REGION], "--max-percent", "100")


def apply_with_images(path: Path, *extra: str) -> Any:
    """``decommission apply --backup image`` of a mixed-fleet plan."""
    return run(apply_args(path, "--max-percent", "100", *extra, backup="image"))
