"""The waiting API against the moto server: success, timeout, failure state, batching.

moto makes every state change at once, so a timeout is provoked with a waiter that
cannot succeed (``instance_stopped`` on a running instance) and a tiny delay, and a
failure state with ``instance_running`` on a terminated instance (its acceptors say
failure on ``terminated``).
"""

from __future__ import annotations

from typing import Any

import pytest

from awsops.paginate import CallCounter
from awsops.waiters import WaitAttempt, WaiterFailedError, WaiterTimeoutError, wait
from awsops.waitmany import wait_many


def _run(ec2: Any, count: int = 1) -> list[str]:
    r = ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count)
    return [i["InstanceId"] for i in r["Instances"]]


def test_wait_success_reports_one_attempt(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    ids = _run(ec2, 2)
    seen: list[WaitAttempt] = []
    response = wait(ec2, "instance-running", {"InstanceIds": ids}, on_attempt=seen.append)
    assert sorted(i["InstanceId"] for r in response["Reservations"] for i in r["Instances"]) == (
        sorted(ids)
    )
    assert len(seen) == 1
    assert (seen[0].attempt, seen[0].max_attempts, seen[0].state) == (1, 40, "success")
    assert seen[0].observed == ["running", "running"]


def test_wait_timeout_when_the_state_cannot_come(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    ids = _run(ec2)
    seen: list[WaitAttempt] = []
    with pytest.raises(WaiterTimeoutError) as info:
        wait(
            ec2,
            "instance_stopped",
            {"InstanceIds": ids},
            delay=0.01,
            max_attempts=3,
            on_attempt=seen.append,
        )
    assert [a.attempt for a in seen] == [1, 2, 3]
    assert all(a.state == "retry" and a.observed == ["running"] for a in seen)
    err = info.value
    assert err.exit_code == 4 and err.attempts == 3 and err.observed == ["running"]
    assert ids[0] in str(err) and "instance_stopped" in str(err)


def test_wait_failure_state_on_terminated_instance(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    ids = _run(ec2)
    ec2.terminate_instances(InstanceIds=ids)
    with pytest.raises(WaiterFailedError) as info:
        wait(ec2, "instance_running", {"InstanceIds": ids}, delay=0.01, max_attempts=5)
    assert info.value.exit_code == 5 and info.value.observed == ["terminated"]
    assert info.value.attempts == 1


def test_many_instances_cost_one_call_per_batch_per_poll(aws) -> None:  # type: ignore[no-untyped-def]
    """250 instances in batches of 50: 5 describe calls per poll, never one per instance.

    (The same holds for 500 in batches of 100; 250 keeps moto's launch time down.)
    """
    ec2 = aws.client("ec2")
    ids = _run(ec2, 250)
    counter = CallCounter()
    counter.attach(ec2)
    summary = wait_many(ec2, "instance_running", "InstanceIds", ids, batch_size=50, delay=0.01)
    assert (summary.batches, summary.rounds, summary.calls) == (5, 1, 5)
    assert counter.calls["DescribeInstances"] == 5

    counter.calls.clear()
    with pytest.raises(WaiterTimeoutError) as info:
        wait_many(
            ec2, "instance_stopped", "InstanceIds", ids, batch_size=50, delay=0, max_attempts=2
        )
    assert counter.calls["DescribeInstances"] == 10  # 5 batches x 2 rounds
    assert len(info.value.pending) == 250 and info.value.observed == {"running": 250}
