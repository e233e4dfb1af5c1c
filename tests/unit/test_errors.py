"""Each AWS error category, from exact error shapes (botocore Stubber)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import Stubber

from awsops import errors
from awsops.errors import aws_errors, translate


def _ec2() -> object:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "ec2", region_name="us-east-1"
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("InvalidInstanceID.NotFound", 400, errors.NotFoundError),
        ("InvalidVolume.NotFound", 400, errors.NotFoundError),
        ("UnauthorizedOperation", 403, errors.AccessDeniedError),
        ("AuthFailure", 401, errors.AccessDeniedError),
        ("RequestLimitExceeded", 503, errors.ThrottledError),
        ("Throttling", 400, errors.ThrottledError),
        ("InvalidParameterValue", 400, errors.InvalidParameterError),
        ("InvalidInstanceID.Malformed", 400, errors.InvalidParameterError),
        ("OperationNotPermitted", 400, errors.OperationNotPermittedError),
        ("DryRunOperation", 412, errors.DryRunSucceeded),
        ("ExpiredToken", 400, errors.CredentialsError),
        ("InsufficientInstanceCapacity", 500, errors.OtherAwsError),
    ],
)
def test_client_error_categories_keep_code_request_id_operation_region(
    code: str, status: int, expected: type[errors.AwsError]
) -> None:
    ec2 = _ec2()
    with Stubber(ec2) as stub:  # type: ignore[arg-type]
        stub.add_client_error(
            "terminate_instances",
            service_error_code=code,
            service_message=f"msg {code}",
            http_status_code=status,
            response_meta={"RequestId": "req-123"},
        )
        with (
            pytest.raises(expected) as info,
            aws_errors(region="us-east-1", account_id="111111111111"),
        ):
            ec2.terminate_instances(InstanceIds=["i-0123456789abcdef0"])  # type: ignore[attr-defined]
    err = info.value
    assert err.code == code
    assert err.request_id == "req-123"
    assert err.operation == "TerminateInstances"
    assert err.region == "us-east-1"
    assert err.account_id == "111111111111"
    assert err.http_status == status
    assert isinstance(err.__cause__, Exception)
    line = err.one_line()
    assert "\n" not in line and code in line and "req-123" in line


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            errors.EndpointUnreachableError,
        ),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), errors.AwsTimeoutError),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), errors.AwsTimeoutError),
        (NoCredentialsError(), errors.CredentialsError),
    ],
)
def test_botocore_errors_map_to_transport_categories(
    exc: Exception, expected: type[errors.AwsError]
) -> None:
    err = translate(exc, operation="DescribeInstances", region="eu-west-1")
    assert isinstance(err, expected)
    assert err.operation == "DescribeInstances" and err.region == "eu-west-1"
    assert err.code == type(exc).__name__


def test_unknown_code_patterns() -> None:
    assert errors.category_for("NoSuchLifecycleConfiguration") is errors.NotFoundError
    assert errors.category_for("DBSnapshotNotFound") is errors.NotFoundError
    assert errors.category_for("SomethingThrottled") is errors.ThrottledError
    assert errors.category_for(None) is errors.OtherAwsError


def test_our_errors_pass_through_translate_unchanged() -> None:
    e = errors.UsageError("bad")
    assert translate(e) is e
