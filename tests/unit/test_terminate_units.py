"""Termination never sent twice, against exact EC2 answers (botocore Stubber): the
describe right before each TerminateInstances batch drops an instance that another run
(or someone else) already began terminating, and an instance an earlier run terminated
is only waited for and reported, never sent again."""

from __future__ import annotations

from pathlib import Path

from botocore.stub import Stubber
from tests.unit.apply_stubs import (
    by_ids,
    client,
    executor,
    facts,
    kept,
    plan_of,
    states,
    terminating,
)

from awsops.decommission.executor import Outcome, TargetWork
from awsops.decommission.journal import Event, read_events

A, B, C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


def test_an_instance_already_terminating_at_the_last_look_is_not_sent_again(
    tmp_path: Path,
) -> None:
    """A and B were verified stopped; by the time their batch is sent, B is shutting
    down (another run of the plan). C was terminated by an earlier run (resumed)."""
    plan = plan_of(facts(kept(A)), facts(kept(B)), facts(kept(C)))
    ex = executor(plan, tmp_path / "journal.jsonl", terminate_delay=0, terminate_max_attempts=2)
    ec2 = client("ec2")
    tp = plan.targets[0]
    ex.run_state.state.of(C).snapshots = {"vol-0ccc3root": "snap-0ccccccccccccccc3"}
    work = TargetWork(tp, ec2, act=list(tp.chosen[:2]), resumed=[C])
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_instances", states(**{A: "stopped", B: "shutting-down"}), by_ids(A, B)
        )
        stub.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
        stub.add_response(
            "describe_instances",
            states(**{C: "terminated", A: "terminated"}),
            {"InstanceIds": [C, A]},
        )
        stub.add_response(
            "describe_instances", states(**{C: "terminated", A: "terminated"}), by_ids(C, A)
        )
        ex.execute(work)
        stub.assert_no_pending_responses()
    by_id = {r.instance_id: r for r in work.results}
    assert (by_id[B].outcome, by_id[B].reason) == (
        Outcome.SKIPPED,
        "already shutting-down before TerminateInstances (another run of this plan, or "
        "someone else)",
    )
    assert by_id[A].outcome == by_id[C].outcome == Outcome.TERMINATED
    assert by_id[C].snapshots == {"vol-0ccc3root": "snap-0ccccccccccccccc3"}
    events = [
        (e["event"], e.get("instance_id"), e.get("instance_ids"), e.get("reason"))
        for e in read_events(tmp_path / "journal.jsonl")
    ]
    assert events == [
        (Event.SKIPPED, B, None, "already shutting-down"),
        (Event.TERMINATE_REQUESTED, None, [A], None),
        (Event.TERMINATE_ACCEPTED, A, None, None),
        (Event.TERMINATED, C, None, None),
        (Event.TERMINATED, A, None, None),
    ]
