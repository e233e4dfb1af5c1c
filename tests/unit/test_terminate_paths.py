"""Termination and its wait, branch by branch, against exact EC2 answers (botocore
Stubber): the last look before a batch (gone, drifted, unreadable), an answer that does
not list every instance, a stop between single retries, and how the wait ends
(terminated, gone, timed out, failed, cancelled, still shutting down when stopped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.unit.apply_stubs import (
    ACCOUNT,
    by_ids,
    client,
    executor,
    facts,
    kept,
    plan_of,
    states,
    terminating,
)

from awsops.decommission import terminate
from awsops.decommission.executor import Executor, Outcome, TargetWork
from awsops.decommission.journal import Event, read_events
from awsops.errors import OtherAwsError

A, B, C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


def _case(tmp_path: Path, **options: Any) -> tuple[Executor, TargetWork, Any]:
    plan = plan_of(*(facts(kept(i)) for i in (A, B, C)))
    options = {"terminate_delay": 0, "terminate_max_attempts": 1, **options}
    ex = executor(plan, tmp_path / "journal.jsonl", **options)
    ec2 = client("ec2")
    tp = plan.targets[0]
    return ex, TargetWork(tp, ec2, act=list(tp.chosen)), ec2


def _events(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    skip = {"seq", "ts", "plan_id", "event"}
    return [
        (e["event"], {k: v for k, v in e.items() if k not in skip})
        for e in read_events(tmp_path / "journal.jsonl")
    ]


def test_the_last_look_drops_gone_drifted_and_unreadable_instances(tmp_path: Path) -> None:
    ex, work, ec2 = _case(tmp_path)
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", states(**{B: "running", C: None}), by_ids(A, B, C))
        assert ex.terminations.still_stopped(work, [A, B, C]) == []
    assert terminate._state({A: {"State": {"Code": 80}}}, A) == "unknown"
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (
            A,
            Outcome.SKIPPED,
            "already gone before TerminateInstances (another run of this plan, or someone else)",
        ),
        (B, Outcome.SKIPPED, "drift: running since it was verified"),
        (C, Outcome.SKIPPED, "drift: unknown since it was verified"),
    ]
    assert _events(tmp_path) == [
        (Event.SKIPPED, {"instance_id": A, "reason": "already gone"}),
        (Event.SKIPPED, {"instance_id": B, "reason": "now running"}),
        (Event.SKIPPED, {"instance_id": C, "reason": "now unknown"}),
    ]


def test_an_instance_the_answer_does_not_list_is_looked_at(tmp_path: Path) -> None:
    """EC2 listed only A: B is terminating after all (accepted), C is not (failed)."""
    ex, work, ec2 = _case(tmp_path)
    with Stubber(ec2) as stub:
        stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A, B, C]})
        stub.add_response(
            "describe_instances", states(**{B: "shutting-down", C: "stopped"}), by_ids(B, C)
        )
        accepted, failed = ex.terminations.terminate(work, [A, B, C])
        stub.assert_no_pending_responses()
    assert accepted == [A, B]
    err = failed[C]
    assert isinstance(err, OtherAwsError) and list(failed) == [C]
    assert (err.code, err.operation, err.region) == (
        "NotTerminating",
        "TerminateInstances",
        "us-east-1",
    )
    assert err.one_line().startswith(
        "NotTerminating: TerminateInstances did not list the instance as terminating"
    )
    with Stubber(ec2) as stub:  # an answer with no list at all
        stub.add_response("terminate_instances", {}, {"InstanceIds": [C]})
        stub.add_response("describe_instances", states(**{C: "shutting-down"}), by_ids(C))
        assert ex.terminations.terminate(work, [C]) == ([C], {})


def test_a_refusal_names_the_call_the_region_and_the_account(tmp_path: Path) -> None:
    ex, work, ec2 = _case(tmp_path)
    with Stubber(ec2) as stub:
        stub.add_client_error("terminate_instances", "OperationNotPermitted", "no", 400)
        stub.add_response("describe_instances", states(**{A: "stopped"}), by_ids(A))
        _, failed = ex.terminations.terminate(work, [A])
    err = failed[A]
    assert (err.operation, err.region, err.account_id) == (
        "TerminateInstances",
        "us-east-1",
        ACCOUNT,
    )


def test_a_run_that_stops_during_single_retries_sends_no_more(tmp_path: Path) -> None:
    ex, work, ec2 = _case(tmp_path)
    ex.run_state.cancel.cancel("SIGINT")
    with Stubber(ec2) as stub:
        stub.add_client_error("terminate_instances", "InternalError", "oops", 500)
        stub.add_response(
            "describe_instances", states(**{A: "stopped", B: "stopped"}), by_ids(A, B)
        )
        assert ex.terminations.terminate(work, [A, B]) == ([], {})
        stub.assert_no_pending_responses()
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (A, Outcome.NOT_DONE, "stopped before its termination"),
        (B, Outcome.NOT_DONE, "stopped before its termination"),
    ]


def test_how_each_wait_ends_is_reported(tmp_path: Path) -> None:
    """A terminated (journaled once: the journal saw B already), B gone, C still
    shutting down when the waiter's budget ran out."""
    ex, work, ec2 = _case(tmp_path)
    ex.run_state.state.of(B).terminated = True
    snaps = {A: {"vol-a": "snap-a"}, B: {"vol-b": "snap-b"}, C: {"vol-c": "snap-c"}}
    with Stubber(ec2) as stub:
        waiting = states(**{A: "terminated", C: "shutting-down"})
        stub.add_response("describe_instances", waiting, {"InstanceIds": [A, B, C]})
        stub.add_response("describe_instances", waiting, by_ids(A, B, C))
        ex.terminations.wait_terminated(work, [A, B, C], snaps, {A: "ami-a", B: "ami-b"})
        stub.assert_no_pending_responses()
    assert [
        (r.instance_id, r.outcome, r.reason, r.code, r.snapshots, r.image) for r in work.results
    ] == [
        (A, Outcome.TERMINATED, "", None, snaps[A], "ami-a"),
        (B, Outcome.TERMINATED, "", None, snaps[B], "ami-b"),
        (
            C,
            Outcome.FAILED,
            "termination accepted but still shutting-down",
            "WaiterTimeout",
            snaps[C],
            None,
        ),
    ]
    assert _events(tmp_path) == [
        (Event.TERMINATED, {"instance_id": A}),
        (
            Event.FAILED,
            {"instance_id": C, "code": "WaiterTimeout", "reason": "still shutting-down"},
        ),
    ]
    assert ex.run_state.state.of(A).terminated


def test_a_stopped_run_does_not_wait_and_reports_what_was_accepted(tmp_path: Path) -> None:
    ex, work, ec2 = _case(tmp_path)
    ex.run_state.cancel.cancel("SIGTERM")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_instances", states(**{A: "shutting-down", B: "stopped"}), by_ids(A, B)
        )
        ex.terminations.wait_terminated(work, [A, B], {A: {"vol-a": "snap-a"}}, {A: "ami-a"})
    assert [r.image for r in work.results] == ["ami-a", None]
    assert [(r.instance_id, r.outcome, r.reason, r.snapshots) for r in work.results] == [
        (
            A,
            Outcome.TERMINATED,
            "termination accepted, still shutting-down when the run stopped",
            {"vol-a": "snap-a"},
        ),
        (B, Outcome.FAILED, "termination accepted but still stopped", {}),
    ]


@pytest.mark.parametrize("end", ["failure", "not-found", "cancelled"])
def test_a_wait_that_ends_early_still_looks_and_reports(tmp_path: Path, end: str) -> None:
    ex, work, ec2 = _case(tmp_path, terminate_max_attempts=2)
    with Stubber(ec2) as stub:
        if end == "failure":  # the instance is pending again: the waiter gives up
            stub.add_response("describe_instances", states(**{A: "pending"}), {"InstanceIds": [A]})
        elif end == "not-found":
            stub.add_client_error("describe_instances", "InvalidInstanceID.NotFound", "no", 400)
        else:
            stub.add_response(
                "describe_instances", states(**{A: "shutting-down"}), {"InstanceIds": [A]}
            )
            ec2.meta.events.register(
                "after-call.ec2.DescribeInstances",
                lambda **kw: ex.run_state.cancel.cancel("SIGINT"),
            )
        stub.add_response("describe_instances", states(**{A: "terminated"}), by_ids(A))
        ex.terminations.wait_terminated(work, [A], {})
        stub.assert_no_pending_responses()
    assert [(r.instance_id, r.outcome) for r in work.results] == [(A, Outcome.TERMINATED)]


def test_the_wait_uses_the_runs_delay_and_budget_and_stops_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex, work, ec2 = _case(tmp_path, terminate_delay=4.5, terminate_max_attempts=7)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        terminate, "wait_many", lambda *args, **kw: calls.append({"args": args[1:], **kw})
    )
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", states(**{A: "terminated"}), by_ids(A))
        ex.terminations.wait_terminated(work, [A], {})
    assert calls == [
        {
            "args": ("instance_terminated", "InstanceIds", [A]),
            "delay": 4.5,
            "max_attempts": 7,
            "stop": ex.run_state.cancel.event,
        }
    ]
