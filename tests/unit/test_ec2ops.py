"""EC2 lifecycle logic and the CLI's parameter parsing, with exact AWS shapes (Stubber)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from awsops import ec2ops
from awsops.cli.waiting import describe_attempt
from awsops.errors import NotFoundError, SafetyError, UsageError
from awsops.waiters import WaitAttempt
from awsops.waitparams import parse_waiter_params

_SESSION = boto3.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)


@pytest.fixture
def ec2() -> Iterator[tuple[Any, Stubber]]:
    client = _SESSION.client("ec2", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_dry_run_unauthorized_is_not_authorized(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_client_error(
        "terminate_instances",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation. Encoded "
        "authorization failure message: abc123",
        http_status_code=403,
        expected_params={"InstanceIds": ["i-1"], "DryRun": True},
        response_meta={"RequestId": "req-9"},
    )
    check = ec2ops.check_permissions(client, "terminate_instances", {"InstanceIds": ["i-1"]})
    assert (check.operation, check.verdict, check.code) == (
        "TerminateInstances",
        "not-authorized",
        "UnauthorizedOperation",
    )
    assert not check.allowed and "abc123" in check.message and check.request_id == "req-9"


def test_dry_run_operation_is_would_succeed(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_client_error(
        "stop_instances",
        service_error_code="DryRunOperation",
        service_message="Request would have succeeded, but DryRun flag is set.",
        http_status_code=412,
        expected_params={"InstanceIds": ["i-1"], "DryRun": True},
    )
    check = ec2ops.check_permissions(client, "stop_instances", {"InstanceIds": ["i-1"]})
    assert check.allowed and check.verdict == "would-succeed"


def test_dry_run_other_error_is_raised_as_ours(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_client_error("start_instances", "InvalidInstanceID.NotFound", "no such instance", 400)
    with pytest.raises(NotFoundError) as info:
        ec2ops.check_permissions(client, "start_instances", {"InstanceIds": ["i-1"]})
    assert info.value.operation == "StartInstances"


def test_dry_run_needs_an_operation_that_supports_it(ec2: tuple[Any, Stubber]) -> None:
    client, _ = ec2
    with pytest.raises(UsageError, match="does not support DryRun"):
        ec2ops.check_permissions(client, "cancel_export_task", {"ExportTaskId": "e-1"})
    with pytest.raises(UsageError, match="no operation"):
        ec2ops.check_permissions(client, "explode_instances", {})


def test_terminate_checks_every_instance_before_any_call(
    ec2: tuple[Any, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stub = ec2
    # One look-up at a time: the Stubber answers in the order the calls arrive, and
    # concurrent look-ups arrive in any order.
    monkeypatch.setattr(ec2ops, "map_concurrent", lambda fn, items, _n: [fn(i) for i in items])
    for iid, protected in (("i-1", False), ("i-2", True), ("i-3", True)):
        stub.add_response(
            "describe_instance_attribute",
            {"InstanceId": iid, "DisableApiTermination": {"Value": protected}},
            {"InstanceId": iid, "Attribute": "disableApiTermination"},
        )
    # no terminate_instances response is stubbed: calling it would fail the test
    with pytest.raises(SafetyError) as info:
        ec2ops.change_state(client, "terminate", ["i-1", "i-2,i-3"])
    text = str(info.value)
    assert "i-2, i-3" in text and "i-1" not in text and "nothing was terminated" in text


def test_stop_batches_ids_and_reports_states(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    ids = [f"i-{n:04d}" for n in range(ec2ops.BATCH_SIZE + 1)]
    for batch in (ids[: ec2ops.BATCH_SIZE], ids[ec2ops.BATCH_SIZE :]):
        stub.add_response(
            "stop_instances",
            {
                "StoppingInstances": [
                    {
                        "InstanceId": i,
                        "PreviousState": {"Code": 16, "Name": "running"},
                        "CurrentState": {"Code": 64, "Name": "stopping"},
                    }
                    for i in batch
                ]
            },
            {"InstanceIds": batch},
        )
    changes = ec2ops.change_state(client, "stop", ids)
    assert [c.instance_id for c in changes] == ids
    assert {(c.previous_state, c.current_state) for c in changes} == {("running", "stopping")}


def test_launch_request_is_all_or_nothing_with_tags_and_token(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    spec = ec2ops.LaunchSpec("ami-1", "t3.micro", count=2, tags={"Name": "x"})
    expected = {**spec.request(), "ClientToken": ANY}
    assert expected["MinCount"] == expected["MaxCount"] == 2
    assert [t["ResourceType"] for t in expected["TagSpecifications"]] == ["instance", "volume"]
    stub.add_response(
        "run_instances",
        {
            "Instances": [
                {
                    "InstanceId": f"i-{n}",
                    "State": {"Code": 0, "Name": "pending"},
                    "Placement": {"AvailabilityZone": f"us-east-1{'ab'[n]}"},
                    "InstanceType": "t3.micro",
                }
                for n in range(2)
            ]
        },
        expected,
    )
    launched = ec2ops.launch(client, spec)
    assert [(i.instance_id, i.availability_zone, i.state) for i in launched] == [
        ("i-0", "us-east-1a", "pending"),
        ("i-1", "us-east-1b", "pending"),
    ]


def test_inputs_are_validated() -> None:
    assert ec2ops.parse_tags(["Name=web", "note=a=b", "empty="]) == {
        "Name": "web",
        "note": "a=b",
        "empty": "",
    }
    for bad in (["novalue"], ["=x"], ["a=1", "a=2"]):
        with pytest.raises(UsageError):
            ec2ops.parse_tags(bad)
    assert ec2ops.normalize_ids(["i-1,i-2", " i-1 ", "i-3"]) == ["i-1", "i-2", "i-3"]
    with pytest.raises(UsageError, match="no instance ids"):
        ec2ops.normalize_ids([" , "])
    with pytest.raises(UsageError, match="not an instance id"):
        ec2ops.normalize_ids(["vol-1"])
    with pytest.raises(UsageError, match="count"):
        ec2ops.LaunchSpec("ami-1", "t3.micro", count=0)
    with pytest.raises(UsageError, match="ami-"):
        ec2ops.LaunchSpec("img-1", "t3.micro")


def _operation(service: str, name: str) -> Any:
    return _SESSION.client(service, region_name="us-east-1").meta.service_model.operation_model(
        name
    )


def test_parse_waiter_params_from_the_input_shape() -> None:
    op = _operation("ec2", "DescribeInstances")
    params = parse_waiter_params(
        op,
        [
            "--instance-ids",
            "i-1",
            "i-2",
            "--instance-ids=i-3",
            "--filters",
            "Name=tag:env,Values=a,b",
            "--filters",
            '{"Name": "instance-type", "Values": ["t3.micro"]}',
            "--dry-run",
            "--max-results",
            "5",
        ],
    )
    assert params == {
        "InstanceIds": ["i-1", "i-2", "i-3"],
        "Filters": [
            {"Name": "tag:env", "Values": ["a", "b"]},
            {"Name": "instance-type", "Values": ["t3.micro"]},
        ],
        "DryRun": True,
        "MaxResults": 5,
    }
    rds_op = _operation("rds", "DescribeDBSnapshots")
    assert parse_waiter_params(rds_op, ["--db-snapshot-identifier", "snap-1"]) == {
        "DBSnapshotIdentifier": "snap-1"
    }


@pytest.mark.parametrize(
    ("tokens", "needle"),
    [
        (["--instance-idz", "i-1"], "valid: --instance-ids"),
        (["i-1"], "--name value"),
        (["--instance-ids"], "at least one value"),
        (["--max-results", "x"], "expected a number"),
        (["--max-results", "1", "2"], "exactly one value"),
        (["--dry-run", "maybe"], "true or false"),
        (["--filters", "Nope=x"], "cannot parse"),
        (["--filters", "{bad json"], "invalid JSON"),
    ],
)
def test_parse_waiter_params_rejects_bad_input(tokens: list[str], needle: str) -> None:
    with pytest.raises(UsageError, match=needle.replace("-", r"\-")):
        parse_waiter_params(_operation("ec2", "DescribeInstances"), tokens)


def test_parse_waiter_params_requires_required_members() -> None:
    with pytest.raises(UsageError, match="--bucket"):
        parse_waiter_params(_operation("s3", "HeadBucket"), [])


def test_progress_line_text() -> None:
    one = WaitAttempt("instance_running", 3, 40, 45.2, ["running", "pending", "running"], "retry")
    assert describe_attempt(one) == "attempt 3/40, 45s, last: running=2, pending=1"
    many = WaitAttempt(
        "instance_running", 2, 10, 3.0, {"pending": 4, "running": 6}, "retry", pending=4
    )
    assert describe_attempt(many) == "attempt 2/10, 3s, last: pending=4, running=6, 4 pending"
    error = WaitAttempt("instance_running", 1, 10, 0.0, "InvalidInstanceID.NotFound", "retry")
    assert describe_attempt(error).endswith("last: InvalidInstanceID.NotFound")
