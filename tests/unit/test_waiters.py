"""The waiting API against exact response shapes (botocore Stubber, fake sleep and clock)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from awsops.errors import AccessDeniedError, NotFoundError, UsageError
from awsops.waiters import (
    WaitAttempt,
    WaitCancelledError,
    WaiterFailedError,
    WaiterTimeoutError,
    chunked,
    normalize_waiter_name,
    resource_label,
    wait,
)
from awsops.waitmany import wait_many

# One session for the module: its loader parses each service model once.
_SESSION = boto3.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)


def _client(service: str) -> Any:
    return _SESSION.client(service, region_name="us-east-1")


def _instances(*states: str, token: str | None = None, start: int = 0) -> dict[str, Any]:
    response: dict[str, Any] = {
        "Reservations": [
            {
                "ReservationId": "r-1",
                "Instances": [
                    {"InstanceId": f"i-{start + n}", "State": {"Name": s}}
                    for n, s in enumerate(states)
                ],
            }
        ]
    }
    if token:
        response["NextToken"] = token
    return response


class FakeTime:
    """A clock that only moves when the waiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def ec2() -> Iterator[tuple[Any, Stubber]]:
    client = _client("ec2")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_success_after_retries_reports_every_attempt(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    params = {"InstanceIds": ["i-0", "i-1"]}
    stub.add_response("describe_instances", _instances("pending", "pending"), params)
    stub.add_response("describe_instances", _instances("running", "pending"), params)
    stub.add_response("describe_instances", _instances("running", "running"), params)
    fake = FakeTime()
    seen: list[WaitAttempt] = []
    response = wait(
        client,
        "instance-running",
        params,
        delay=7,
        max_attempts=5,
        on_attempt=seen.append,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert response["Reservations"][0]["Instances"][1]["State"]["Name"] == "running"
    assert fake.sleeps == [7.0, 7.0]
    assert [(a.attempt, a.max_attempts, a.elapsed, a.state) for a in seen] == [
        (1, 5, 0.0, "retry"),
        (2, 5, 7.0, "retry"),
        (3, 5, 14.0, "success"),
    ]
    assert [a.observed for a in seen] == [
        ["pending", "pending"],
        ["running", "pending"],
        ["running", "running"],
    ]
    assert {(a.waiter, a.service, a.resources) for a in seen} == {
        ("instance_running", "ec2", "InstanceIds=i-0,i-1")
    }


def test_timeout_names_waiter_resources_and_last_state(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    params = {"InstanceIds": ["i-0"]}
    for _ in range(3):
        stub.add_response("describe_instances", _instances("running"), params)
    fake = FakeTime()
    with pytest.raises(WaiterTimeoutError) as info:
        wait(
            client,
            "instance_stopped",
            params,
            delay=2,
            max_attempts=3,
            sleep=fake.sleep,
            clock=fake.clock,
        )
    err = info.value
    assert fake.sleeps == [2.0, 2.0]  # no sleep after the last attempt
    assert err.exit_code == 4 and err.code == "WaiterTimeout"
    assert (err.waiter, err.service, err.attempts, err.observed) == (
        "instance_stopped",
        "ec2",
        3,
        ["running"],
    )
    text = err.one_line()
    assert "instance_stopped" in text and "InstanceIds=i-0" in text
    assert "last observed: ['running']" in text and "3 attempt(s)" in text
    assert err.operation == "DescribeInstances" and err.region == "us-east-1"


@pytest.mark.parametrize("bad", ["terminated", "stopping", "shutting-down"])
def test_failure_acceptor_stops_at_once(ec2: tuple[Any, Stubber], bad: str) -> None:
    client, stub = ec2
    params = {"InstanceIds": ["i-0", "i-1"]}
    stub.add_response("describe_instances", _instances("running", bad), params)
    with pytest.raises(WaiterFailedError) as info:
        wait(client, "instance_running", params, delay=0, max_attempts=10, sleep=FakeTime().sleep)
    err = info.value
    assert err.exit_code == 5 and err.observed == ["running", bad]
    assert "failure state" in str(err) and "instance_running" in str(err)
    assert err.last_response is not None and "Reservations" in err.last_response


def test_error_acceptor_retries_then_succeeds(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_client_error(
        "describe_instances", "InvalidInstanceID.NotFound", "not yet", http_status_code=400
    )
    stub.add_response("describe_instances", _instances("running"))
    seen: list[WaitAttempt] = []
    wait(
        client,
        "instance_running",
        {"InstanceIds": ["i-0"]},
        delay=0,
        max_attempts=3,
        on_attempt=seen.append,
        sleep=FakeTime().sleep,
    )
    assert [(a.state, a.observed) for a in seen] == [
        ("retry", "InvalidInstanceID.NotFound"),
        ("success", ["running"]),
    ]


def test_unexpected_error_is_ours_and_not_retried(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_client_error(
        "describe_instances",
        "UnauthorizedOperation",
        "You are not authorized to perform this operation.",
        http_status_code=403,
    )
    with pytest.raises(AccessDeniedError) as info:
        wait(client, "instance_running", {"InstanceIds": ["i-0"]}, max_attempts=5, delay=0)
    err = info.value
    assert err.code == "UnauthorizedOperation" and err.operation == "DescribeInstances"
    assert "instance_running" in str(err) and "InstanceIds=i-0" in str(err)


def test_error_no_acceptor_expects_is_translated(ec2: tuple[Any, Stubber]) -> None:
    """instance_stopped has no error acceptor: a missing instance ends the wait."""
    client, stub = ec2
    stub.add_client_error(
        "describe_instances", "InvalidInstanceID.NotFound", "gone", http_status_code=400
    )
    with pytest.raises(NotFoundError):
        wait(client, "instance_stopped", {"InstanceIds": ["i-0"]}, max_attempts=5, delay=0)


def test_throttling_costs_one_attempt(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_client_error("describe_instances", "RequestLimitExceeded", "slow down", 503)
    stub.add_response("describe_instances", _instances("stopped"))
    seen: list[WaitAttempt] = []
    wait(
        client,
        "instance_stopped",
        {},
        delay=0,
        max_attempts=2,
        on_attempt=seen.append,
        sleep=FakeTime().sleep,
    )
    assert [(a.state, a.observed) for a in seen] == [
        ("retry", "RequestLimitExceeded"),
        ("success", ["stopped"]),
    ]


def test_path_all_needs_at_least_one_resource(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_response("describe_instances", {"Reservations": []})
    stub.add_response("describe_instances", {"Reservations": []})
    with pytest.raises(WaiterTimeoutError) as info:
        wait(client, "instance_running", {}, delay=0, max_attempts=2, sleep=FakeTime().sleep)
    assert info.value.observed == []


def test_path_matcher_with_boolean_expression(ec2: tuple[Any, Stubber]) -> None:
    """instance_exists: `path` matcher on ``length(Reservations[]) > `0``` == true."""
    client, stub = ec2
    stub.add_response("describe_instances", {"Reservations": []})
    stub.add_response("describe_instances", _instances("pending"))
    seen: list[WaitAttempt] = []
    wait(
        client,
        "InstanceExists",
        {},
        delay=0,
        max_attempts=2,
        on_attempt=seen.append,
        sleep=FakeTime().sleep,
    )
    assert [(a.state, a.observed) for a in seen] == [("retry", False), ("success", True)]


def test_every_page_is_judged(ec2: tuple[Any, Stubber]) -> None:
    """pathAll over a paged answer: a pending instance on page two keeps it waiting."""
    client, stub = ec2
    stub.add_response("describe_instances", _instances("running", token="t1"))
    stub.add_response("describe_instances", _instances("pending", start=1), {"NextToken": "t1"})
    stub.add_response("describe_instances", _instances("running", token="t2"))
    stub.add_response("describe_instances", _instances("running", start=1), {"NextToken": "t2"})
    seen: list[WaitAttempt] = []
    response = wait(
        client,
        "instance_running",
        {},
        delay=0,
        max_attempts=2,
        on_attempt=seen.append,
        sleep=FakeTime().sleep,
    )
    assert [a.observed for a in seen] == [["running", "pending"], ["running", "running"]]
    ids = [i["InstanceId"] for r in response["Reservations"] for i in r["Instances"]]
    assert ids == ["i-0", "i-1"]


def test_status_matcher_uses_http_status() -> None:
    s3 = _client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", "404", "Not Found", http_status_code=404)
        stub.add_response("head_bucket", {"ResponseMetadata": {"HTTPStatusCode": 200}})
        seen: list[WaitAttempt] = []
        wait(
            s3,
            "bucket_exists",
            {"Bucket": "b"},
            delay=0,
            max_attempts=2,
            on_attempt=seen.append,
            sleep=FakeTime().sleep,
        )
        assert [a.state for a in seen] == ["retry", "success"]


def test_stop_event_cancels_between_polls(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_response("describe_instances", _instances("pending"))
    stop = threading.Event()

    def set_stop(_: WaitAttempt) -> None:
        stop.set()

    with pytest.raises(WaitCancelledError):
        wait(
            client, "instance_running", {}, delay=30, max_attempts=5, on_attempt=set_stop, stop=stop
        )


def test_unknown_waiter_and_bad_overrides_are_usage_errors() -> None:
    client = _client("ec2")
    with pytest.raises(UsageError, match="instance-running"):
        wait(client, "instance-flying", {})
    with pytest.raises(UsageError, match="max attempts"):
        wait(client, "instance-running", {}, max_attempts=0)
    with pytest.raises(UsageError, match="no parameter 'Ids'"):
        wait_many(client, "instance-running", "Ids", ["i-1"])


def test_wait_many_polls_every_batch_per_round(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    ids = [f"i-{n}" for n in range(250)]
    batches = [ids[:100], ids[100:200], ids[200:]]
    # round 1: batch 0 done, batches 1 and 2 still pending
    stub.add_response(
        "describe_instances", _instances(*["running"] * 100), {"InstanceIds": batches[0]}
    )
    for batch in batches[1:]:
        stub.add_response(
            "describe_instances",
            _instances(*["pending"] * len(batch)),
            {"InstanceIds": batch},
        )
    # round 2: only the pending batches are polled again
    for batch in batches[1:]:
        stub.add_response(
            "describe_instances",
            _instances(*["running"] * len(batch)),
            {"InstanceIds": batch},
        )
    fake = FakeTime()
    seen: list[WaitAttempt] = []
    summary = wait_many(
        client,
        "instance_running",
        "InstanceIds",
        ids + ids[:10],  # duplicates are waited for once
        batch_size=100,
        delay=5,
        max_attempts=4,
        on_attempt=seen.append,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert (summary.resources, summary.batches, summary.rounds, summary.calls) == (250, 3, 2, 5)
    assert fake.sleeps == [5.0]
    assert [(a.attempt, a.pending, a.state) for a in seen] == [(1, 150, "retry"), (2, 0, "success")]
    assert seen[0].observed == {"pending": 150, "running": 100}


def test_wait_many_timeout_lists_pending_ids(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    ids = ["i-0", "i-1", "i-2"]
    stub.add_response(
        "describe_instances", _instances("stopped", "stopped"), {"InstanceIds": ids[:2]}
    )
    for _ in range(2):
        stub.add_response("describe_instances", _instances("running"), {"InstanceIds": ids[2:]})
    with pytest.raises(WaiterTimeoutError) as info:
        wait_many(
            client,
            "instance_stopped",
            "InstanceIds",
            ids,
            batch_size=2,
            delay=0,
            max_attempts=2,
            sleep=FakeTime().sleep,
        )
    assert info.value.pending == ("i-2",)
    assert info.value.observed == {"running": 1}
    assert "1 of 3 InstanceIds (i-2)" in str(info.value)
    assert "instance_stopped" in str(info.value)


def test_wait_many_failure_names_the_batch(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_response(
        "describe_instances", _instances("stopping", "running"), {"InstanceIds": ["i-0", "i-1"]}
    )
    with pytest.raises(WaiterFailedError) as info:
        wait_many(client, "instance_running", "InstanceIds", ["i-0", "i-1"], delay=0)
    assert info.value.pending == ("i-0", "i-1")
    assert "i-0,i-1" in str(info.value)


def test_wait_many_scalar_id_parameter_polls_one_id_per_call() -> None:
    rds = _client("rds")

    def snap(ident: str, status: str) -> dict[str, Any]:
        return {"DBSnapshots": [{"DBSnapshotIdentifier": ident, "Status": status}]}

    with Stubber(rds) as stub:
        stub.add_response(
            "describe_db_snapshots", snap("a", "available"), {"DBSnapshotIdentifier": "a"}
        )
        stub.add_response(
            "describe_db_snapshots", snap("b", "creating"), {"DBSnapshotIdentifier": "b"}
        )
        stub.add_response(
            "describe_db_snapshots", snap("b", "available"), {"DBSnapshotIdentifier": "b"}
        )
        summary = wait_many(
            rds,
            "db-snapshot-available",
            "DBSnapshotIdentifier",
            ["a", "b"],
            delay=0,
            max_attempts=3,
            sleep=FakeTime().sleep,
        )
        stub.assert_no_pending_responses()
    assert (summary.batches, summary.rounds, summary.calls) == (2, 2, 3)


def test_wait_many_with_nothing_to_wait_for_makes_no_call() -> None:
    client = _client("ec2")
    with Stubber(client):
        summary = wait_many(client, "instance_running", "InstanceIds", [])
    assert (summary.resources, summary.calls) == (0, 0)


def test_chunked_and_names() -> None:
    assert list(chunked(["a", "b", "c"], 2)) == [["a", "b"], ["c"]]
    assert list(chunked([], 3)) == []
    with pytest.raises(UsageError):
        list(chunked(["a"], 0))
    assert normalize_waiter_name("instance-running") == "instance_running"
    assert normalize_waiter_name("DBSnapshotAvailable") == "db_snapshot_available"
    assert normalize_waiter_name("db_snapshot_available") == "db_snapshot_available"
    assert (
        resource_label({"InstanceIds": [f"i-{n}" for n in range(7)], "DryRun": False})
        == "InstanceIds=i-0,i-1,i-2,i-3,i-4,+2"
    )
    assert (
        resource_label({"Filters": [{"Name": "tag:env", "Values": ["a", "b"]}]})
        == "Filters=tag:env:a|b"
    )
