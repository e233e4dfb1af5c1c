"""Inventory pure logic: filter parsing, the kind registry, record shapes, and the
collector's per-target error handling against botocore's Stubber (exact error shapes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
import jmespath
import pytest
from botocore.stub import Stubber

from awsops.config import ClientSettings, Target
from awsops.errors import AccessDeniedError, UsageError
from awsops.inventory import KINDS, InventoryRequest, InventoryRun, get_kind
from awsops.inventory.filters import Filter, build_params, parse_filter, parse_filters, parse_tag
from awsops.inventory.records import ShapeContext, annotate, shape_instance, table_view
from awsops.session import SessionFactory

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


# --- filters -------------------------------------------------------------------------


def test_shorthand_filter_with_many_values() -> None:
    assert parse_filter("Name=instance-state-name,Values=stopped,running") == [
        Filter("instance-state-name", ("stopped", "running"))
    ]


def test_several_filters_in_one_argument_and_json_form() -> None:
    assert parse_filter("Name=a,Values=1 Name=b,Values=2,3") == [
        Filter("a", ("1",)),
        Filter("b", ("2", "3")),
    ]
    assert parse_filter('[{"Name": "tag:env", "Values": ["prod"]}]') == [
        Filter("tag:env", ("prod",))
    ]


@pytest.mark.parametrize(
    "bad", ["", "instance-state-name=stopped", "Name=x", "Name=x,Values=", "[1]", "[{"]
)
def test_malformed_filters_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_filter(bad)
    assert "\n" not in info.value.one_line()


def test_tag_arguments() -> None:
    assert parse_tag("env=prod") == Filter("tag:env", ("prod",))
    assert parse_tag("owner") == Filter("tag-key", ("owner",))
    with pytest.raises(UsageError):
        parse_tag("=x")
    assert parse_filters(["Name=a,Values=1"], ["k=v"]) == [
        Filter("a", ("1",)),
        Filter("tag:k", ("v",)),
    ]


def test_build_params_for_ec2_kinds() -> None:
    spec = get_kind("ebs-snapshots")
    params = build_params(spec, [Filter("status", ("completed",)), Filter("tag:env", ("a",))])
    assert params == {
        "OwnerIds": ["self"],
        "Filters": [
            {"Name": "status", "Values": ["completed"]},
            {"Name": "tag:env", "Values": ["a"]},
        ],
    }
    # the declaration's own list is never shared with a request
    params["OwnerIds"].append("x")
    assert spec.base_params["OwnerIds"] == ["self"]


def test_unknown_filter_lists_valid_names() -> None:
    with pytest.raises(UsageError) as info:
        build_params(get_kind("ec2-instances"), [Filter("colour", ("red",))])
    msg = info.value.one_line()
    assert "colour" in msg and "instance-state-name" in msg and "tag:<key>" in msg


def test_parameter_filters_and_required_ones() -> None:
    s3 = get_kind("s3-objects")
    assert build_params(s3, [Filter("bucket", ("b",)), Filter("prefix", ("logs/",))]) == {
        "Bucket": "b",
        "Prefix": "logs/",
    }
    with pytest.raises(UsageError, match="needs filter 'bucket'"):
        build_params(s3, [Filter("prefix", ("logs/",))])
    with pytest.raises(UsageError, match="exactly one value"):
        build_params(s3, [Filter("bucket", ("a", "b"))])
    with pytest.raises(UsageError, match="no tag filters"):
        build_params(get_kind("rds-snapshots"), [Filter("tag:env", ("a",))])


def test_request_validation_happens_before_any_call() -> None:
    with pytest.raises(UsageError, match="JMESPath"):
        InventoryRequest.build("ec2-instances", page_query="Reservations[")
    with pytest.raises(UsageError, match="no per-item attributes"):
        InventoryRequest.build("iam-users", with_attributes=True)
    with pytest.raises(UsageError, match="unknown inventory kind"):
        InventoryRequest.build("lambdas")
    req = InventoryRequest.build("ec2-instances")
    assert req.effective_page_size == 1000
    assert InventoryRequest.build("ec2-instances", page_size=5).effective_page_size == 5


# --- the registry is consistent with botocore's service models --------------------------


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_matches_its_service_model(name: str) -> None:
    spec = KINDS[name]
    client = boto3.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    ).client(spec.service)  # type: ignore[call-overload]
    assert client.can_paginate(spec.operation)
    op = client.meta.service_model.operation_model(
        client.meta.method_to_api_mapping[spec.operation]
    )
    members = op.input_shape.members
    for key in spec.base_params:
        assert key in members
    for decl in spec.filters:
        assert (decl.param or "Filters") in members, decl
    limit_key = client.get_paginator(spec.operation)._pagination_cfg["limit_key"]
    limit_shape = members[limit_key]
    assert spec.max_page_size is not None
    top = limit_shape.metadata.get("max")
    assert top is None or spec.max_page_size <= top
    jmespath.compile(spec.items_path)
    for f in spec.fields:
        jmespath.compile(f.path)
    assert spec.table and set(spec.table) <= set(spec.record_keys)
    for attr in spec.attributes:
        assert attr.operation in dir(client)


# --- records -------------------------------------------------------------------------


def _instance(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "InstanceId": "i-1",
        "InstanceType": "t3.micro",
        "State": {"Name": "stopped"},
        "StateTransitionReason": "User initiated (2026-05-01 12:00:00 GMT)",
        "LaunchTime": dt.datetime(2026, 1, 1, 6, 0, tzinfo=dt.timezone.utc),
        "Placement": {"AvailabilityZone": "eu-west-1b"},
        "Tags": [{"Key": "Name", "Value": "web"}, {"Key": "env", "Value": "prod"}],
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-1", "DeleteOnTermination": True}},
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeId": "vol-2", "DeleteOnTermination": False}},
        ],
    }
    base.update(over)
    return base


def test_stopped_instance_record() -> None:
    rec = shape_instance(_instance(), ShapeContext(NOW))
    assert rec["name"] == "web" and rec["state"] == "stopped"
    assert rec["stop_time"] == "2026-05-01T12:00:00+00:00"
    assert rec["stop_time_source"] == "state-transition-reason"
    assert rec["stopped_days"] == 31
    assert rec["launch_time"] == "2026-01-01T06:00:00+00:00" and rec["age_days"] == 151
    assert rec["availability_zone"] == "eu-west-1b" and rec["instance_type"] == "t3.micro"
    assert rec["volumes"] == [
        {"volume_id": "vol-1", "device": "/dev/xvda", "delete_on_termination": True},
        {"volume_id": "vol-2", "device": "/dev/sdf", "delete_on_termination": False},
    ]
    assert table_view(rec)["volumes"] == "vol-1:delete vol-2:keep"


def test_stop_time_unknown_is_never_guessed_from_launch_time() -> None:
    rec = shape_instance(_instance(StateTransitionReason=""), ShapeContext(NOW))
    assert rec["stop_time"] is None and rec["stop_time_source"] == "unknown"
    assert rec["stopped_days"] is None and rec["age_days"] == 151


def test_running_instance_has_no_stop_time() -> None:
    rec = shape_instance(
        _instance(State={"Name": "running"}, StateTransitionReason=""), ShapeContext(NOW)
    )
    assert rec["stop_time"] is None and rec["stop_time_source"] is None


def test_annotate_query_results() -> None:
    assert annotate({"Key": "a", "T": NOW}, "1", "r") == {
        "account_id": "1",
        "region": "r",
        "Key": "a",
        "T": NOW.isoformat(),
    }
    assert annotate("i-1", "1", "r") == "i-1"


# --- the collector against stubbed clients ---------------------------------------------


def _stubbed_ec2(region: str) -> tuple[Any, Stubber]:
    client = boto3.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name=region
    ).client("ec2")
    return client, Stubber(client)


def _factory() -> SessionFactory:
    return SessionFactory(
        region="us-east-1",
        settings=ClientSettings(endpoint_url="http://127.0.0.1:9"),
        static_credentials=("x", "x"),
    )


def _page(ids: list[str], token: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {
        "Reservations": [
            {
                "ReservationId": f"r-{i}",
                "Instances": [{"InstanceId": i, "State": {"Name": "running"}}],
            }
            for i in ids
        ]
    }
    if token:
        page["NextToken"] = token
    return page


def test_access_denied_target_is_reported_and_others_complete() -> None:
    ok_client, ok_stub = _stubbed_ec2("us-east-1")
    ok_stub.add_response("describe_instances", _page(["i-1", "i-2"], "t1"))
    ok_stub.add_response("describe_instances", _page(["i-3"]))
    bad_client, bad_stub = _stubbed_ec2("eu-west-1")
    bad_stub.add_client_error(
        "describe_instances",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation.",
        http_status_code=403,
        response_meta={"RequestId": "req-42"},
    )
    clients = {"us-east-1": ok_client, "eu-west-1": bad_client}
    targets = [
        Target("us-east-1", account_id="111111111111"),
        Target("eu-west-1", account_id="222222222222"),
    ]
    with ok_stub, bad_stub:
        run = InventoryRun(
            _factory(),
            targets,
            InventoryRequest.build("ec2-instances"),
            concurrency=2,
            client_for=lambda t, svc: clients[t.region],
        )
        records = list(run)
    assert sorted(r["instance_id"] for r in records) == ["i-1", "i-2", "i-3"]
    assert {(r["account_id"], r["region"]) for r in records} == {("111111111111", "us-east-1")}
    [failed] = run.failures
    assert failed.target.region == "eu-west-1"
    err = failed.error
    assert isinstance(err, AccessDeniedError)
    assert err.code == "UnauthorizedOperation" and err.request_id == "req-42"
    assert err.operation == "DescribeInstances" and err.region == "eu-west-1"
    s = run.summary  # API calls are counted in the integration tests: Stubber answers first
    assert (s.items, s.pages, s.targets, s.errors) == (3, 2, 2, 1)


def test_max_items_stops_early_and_closing_the_iterator_does_not_hang() -> None:
    client, stub = _stubbed_ec2("us-east-1")
    stub.add_response("describe_instances", _page(["i-1", "i-2", "i-3"], "t1"))
    stub.add_response("describe_instances", _page(["i-4"]))
    with stub:
        run = InventoryRun(
            _factory(),
            [Target("us-east-1", account_id="111111111111")],
            InventoryRequest.build("ec2-instances", max_items=2),
            client_for=lambda t, svc: client,
        )
        assert [r["instance_id"] for r in run] == ["i-1", "i-2"]
    # the worker may read the next page before the consumer says stop, never more
    assert run.summary.items == 2 and run.summary.pages <= 2 and not run.failures

    client2, stub2 = _stubbed_ec2("us-east-1")
    stub2.add_response("describe_instances", _page([f"i-{n}" for n in range(50)]))
    with stub2:
        run2 = InventoryRun(
            _factory(),
            [Target("us-east-1", account_id="111111111111")],
            InventoryRequest.build("ec2-instances"),
            queue_size=2,
            client_for=lambda t, svc: client2,
        )
        it = iter(run2)
        assert next(it)["instance_id"] == "i-0"
        it.close()  # type: ignore[attr-defined]
    assert run2.summary.items == 1
