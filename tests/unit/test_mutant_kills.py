"""Apply's safety behaviour that the unit tier did not pin down before (found untested by
mutation testing), against exact EC2 answers (botocore Stubber, :class:`Strict`: a call
that was not stubbed fails the test even if the code caught the refusal): a declined
confirmation, how a throttled or lost TerminateInstances is resent (and when not), an
answer that does not list the instance, a stop between single resends; in the images
module a stopping run with two pending images and a journaled image that has since
failed; in the snapshots module which of a volume's snapshots wins, and the reason given
when CreateSnapshots misses a volume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.apply_stubs import (
    Factory,
    Strict,
    Stubs,
    backup_tags,
    by_ids,
    client,
    create_image,
    described,
    executor,
    facts,
    images_of,
    kept,
    plan_of,
    snapshots_of,
    states,
    stubbed_target,
    terminating,
)
from tests.unit.test_apply_units import _journal, _run, _verified

from awsops.decommission.backup import by_volume
from awsops.decommission.executor import Executor, Outcome, TargetWork
from awsops.decommission.journal import Event, read_events
from awsops.errors import OtherAwsError, SafetyError, ThrottledError

A, B = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"
OLD, NEW = "ami-0000000000000old", "ami-0000000000000new"
ATTEMPTS = 10  # max(MIN_CREATE_ATTEMPTS, the client settings' retry budget)


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    yield from stubbed_target(monkeypatch, Factory())


def _case(
    tmp_path: Path, *instances: dict[str, Any], **options: Any
) -> tuple[Executor, TargetWork, Any, Any, list[float]]:
    """An executor whose pauses are recorded (full jitter taken as its whole range),
    the target's work, its look-up client and its client without automatic retries."""
    plan = plan_of(*(facts(i) for i in instances))
    fast = {"terminate_delay": 0, "terminate_max_attempts": 1, "snapshot_delay": 0}
    ex = executor(
        plan, tmp_path / "journal.jsonl", **{"snapshot_max_attempts": 1, **fast, **options}
    )
    slept: list[float] = []
    ex.run_state.sleep = slept.append
    ex.run_state.jitter = lambda: 1.0
    ec2, once = client("ec2"), client("ec2")
    tp = plan.targets[0]
    return ex, TargetWork(tp, ec2, ec2_once=once, act=list(tp.chosen)), ec2, once, slept


def _events(ex: Executor) -> list[str]:
    assert ex.journal_path is not None
    return [e["event"] for e in read_events(ex.journal_path)]


def _throttle(stub: Strict, *ids: str) -> None:
    stub.add_client_error(
        "terminate_instances",
        "RequestLimitExceeded",
        "Request limit exceeded.",
        503,
        expected_params={"InstanceIds": list(ids)},
    )


def _lost(stub: Strict, *ids: str) -> None:
    stub.add_client_error(
        "terminate_instances",
        "InternalError",
        "oops",
        500,
        expected_params={"InstanceIds": list(ids)},
    )


# --- confirmation -------------------------------------------------------------------------


def test_a_declined_confirmation_changes_nothing_and_says_so(stubs: Stubs, tmp_path: Path) -> None:
    """The operator is shown the preview and answers no: the run raises before any
    backup or TerminateInstances (none is stubbed: the Strict stubber would fail on
    one) and journals nothing."""
    plan = _verified(stubs, "snapshots")
    shown: list[Any] = []

    def decline(preview: Any) -> bool:
        shown.append(preview)
        return False

    path = tmp_path / "journal.jsonl"
    with pytest.raises(SafetyError, match=r"^not confirmed: nothing was changed$"):
        _run(plan, stubs, path, decline, backup="snapshots", max_percent=None)
    (preview,) = shown
    assert [f.instance_id for _, f in preview.to_terminate] == [A]
    assert preview.snapshots == 1
    assert _journal(path) == []


# --- TerminateInstances: throttles, lost answers, stops -------------------------------------


def test_a_batch_throttled_while_the_run_stops_is_not_resent(tmp_path: Path) -> None:
    """The run stops while the batch's TerminateInstances is in flight, and EC2 answers
    with a throttle: the batch is not sent again (one TerminateInstances); it is
    described, and both instances are reported not done."""
    ex, work, ec2, once, slept = _case(tmp_path, kept(A), kept(B))
    once.meta.events.register(
        "after-call.ec2.TerminateInstances", lambda **_: ex.run_state.cancel.cancel("SIGINT")
    )
    with Strict(ec2) as looks, Strict(once) as sends:
        _throttle(sends, A, B)
        looks.add_response(
            "describe_instances", states(**{A: "stopped", B: "stopped"}), by_ids(A, B)
        )
        assert ex.terminations.terminate(work, [A, B]) == ([], {})
        sends.assert_no_pending_responses()
        looks.assert_no_pending_responses()
    assert slept == [1.0]  # no backoff: only the pause before the look
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (A, Outcome.NOT_DONE, "stopped before its termination"),
        (B, Outcome.NOT_DONE, "stopped before its termination"),
    ]


def test_a_throttled_batch_is_not_resent_once_the_run_stopped_during_the_backoff(
    tmp_path: Path,
) -> None:
    """The module promises that once the run is stopping no new TerminateInstances is
    sent. The batch is throttled and the run stops during the backoff: the batch must
    not be sent again; it is described, and both instances are reported not done."""
    ex, work, ec2, once, slept = _case(tmp_path, kept(A), kept(B))

    def stop(seconds: float) -> None:
        slept.append(seconds)
        ex.run_state.cancel.cancel("SIGINT")

    ex.run_state.sleep = stop
    with Strict(ec2) as looks, Strict(once) as sends:
        _throttle(sends, A, B)
        looks.add_response(
            "describe_instances", states(**{A: "stopped", B: "stopped"}), by_ids(A, B)
        )
        assert ex.terminations.terminate(work, [A, B]) == ([], {})
        sends.assert_no_pending_responses()
        looks.assert_no_pending_responses()
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (A, Outcome.NOT_DONE, "stopped before its termination"),
        (B, Outcome.NOT_DONE, "stopped before its termination"),
    ]


def test_a_batch_throttled_every_time_is_sent_the_retry_budget_then_fails(
    tmp_path: Path,
) -> None:
    """The batch is sent exactly ATTEMPTS times with a capped backoff; then it is
    described (B was terminated meanwhile, by another run) and A, still stopped, is
    sent alone, throttled ATTEMPTS times too, and fails with the throttle."""
    ex, work, ec2, once, slept = _case(tmp_path, kept(A), kept(B))
    assert ex.run_state.max_attempts == ATTEMPTS
    with Strict(ec2) as looks, Strict(once) as sends:
        for _ in range(ATTEMPTS):
            _throttle(sends, A, B)
        looks.add_response(
            "describe_instances", states(**{A: "stopped", B: "terminated"}), by_ids(A, B)
        )
        for _ in range(ATTEMPTS):
            _throttle(sends, A)
        accepted, failed = ex.terminations.terminate(work, [A, B])
        sends.assert_no_pending_responses()
        looks.assert_no_pending_responses()
    assert accepted == [B] and list(failed) == [A]
    err = failed[A]
    assert isinstance(err, ThrottledError)
    assert (err.code, err.operation) == ("RequestLimitExceeded", "TerminateInstances")
    backoff = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    assert slept == [*backoff, 1.0, *backoff]
    assert not ex.run_state.state.of(A).terminate_accepted


@pytest.mark.parametrize("answer", [{}, {"TerminatingInstances": []}], ids=["no-list", "empty"])
@pytest.mark.parametrize("now", ["stopped", "shutting-down"])
def test_a_single_send_whose_answer_does_not_list_the_instance_looks_at_it(
    tmp_path: Path, answer: dict[str, Any], now: str
) -> None:
    """After a failed batch A is sent alone; the answer does not list it (no list at all:
    EC2 omits empty ones). A describe decides: still stopped is a failure
    (NotTerminating, never reported as accepted); shutting down is accepted."""
    ex, work, ec2, once, _ = _case(tmp_path, kept(A), kept(B))
    with Strict(ec2) as looks, Strict(once) as sends:
        _lost(sends, A, B)
        looks.add_response(
            "describe_instances", states(**{A: "stopped", B: "terminated"}), by_ids(A, B)
        )
        sends.add_response("terminate_instances", answer, {"InstanceIds": [A]})
        looks.add_response("describe_instances", states(**{A: now}), by_ids(A))
        accepted, failed = ex.terminations.terminate(work, [A, B])
        sends.assert_no_pending_responses()
        looks.assert_no_pending_responses()
    if now == "stopped":
        assert accepted == [B] and list(failed) == [A]
        err = failed[A]
        assert isinstance(err, OtherAwsError) and err.code == "NotTerminating"
        assert not ex.run_state.state.of(A).terminate_accepted
    else:
        assert (accepted, failed) == ([B, A], {})
        assert ex.run_state.state.of(A).terminate_accepted


def test_a_lost_single_send_with_the_instance_still_stopped_is_sent_once_more(
    tmp_path: Path,
) -> None:
    """A batch of one gets a 500 and A is still stopped: it is sent alone; that answer
    is lost too (503), and the three looks that follow still show it stopped, so it is
    sent once more (three TerminateInstances in all) and accepted."""
    ex, work, ec2, once, slept = _case(tmp_path, kept(A))
    with Strict(ec2) as looks, Strict(once) as sends:
        _lost(sends, A)
        looks.add_response("describe_instances", states(**{A: "stopped"}), by_ids(A))
        sends.add_client_error(
            "terminate_instances", "Unavailable", "busy", 503, {"InstanceIds": [A]}
        )
        for _ in range(3):
            looks.add_response("describe_instances", states(**{A: "stopped"}), by_ids(A))
        sends.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
        assert ex.terminations.terminate(work, [A]) == ([A], {})
        sends.assert_no_pending_responses()
        looks.assert_no_pending_responses()
    assert slept == [1.0, 1.0, 2.0, 4.0]
    assert ex.run_state.state.of(A).terminate_accepted


def test_a_batch_of_one_with_a_transient_error_is_sent_alone_once_more(tmp_path: Path) -> None:
    """A 500 may or may not have terminated the one instance: it is described, and still
    stopped it is sent alone once more (two TerminateInstances) and accepted."""
    ex, work, ec2, once, slept = _case(tmp_path, kept(A))
    with Strict(ec2) as looks, Strict(once) as sends:
        _lost(sends, A)
        looks.add_response("describe_instances", states(**{A: "stopped"}), by_ids(A))
        sends.add_response("terminate_instances", terminating(A), {"InstanceIds": [A]})
        assert ex.terminations.terminate(work, [A]) == ([A], {})
        sends.assert_no_pending_responses()
        looks.assert_no_pending_responses()
    assert slept == [1.0]
    assert _events(ex) == [
        Event.TERMINATE_REQUESTED,
        Event.TERMINATE_REQUESTED,
        Event.TERMINATE_ACCEPTED,
    ]


def test_a_stop_between_single_resends_reports_the_instance_not_done(tmp_path: Path) -> None:
    """A's single send is lost (500) and the run stops while it is looked for (still
    stopped): it is not sent a third time, and is reported not done with why."""
    ex, work, ec2, once, slept = _case(tmp_path, kept(A))

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:  # the first pause inside the single send's look-ups
            ex.run_state.cancel.cancel("SIGTERM")

    ex.run_state.sleep = sleep
    with Strict(ec2) as looks, Strict(once) as sends:
        _lost(sends, A)
        looks.add_response("describe_instances", states(**{A: "stopped"}), by_ids(A))
        _lost(sends, A)
        for _ in range(3):
            looks.add_response("describe_instances", states(**{A: "stopped"}), by_ids(A))
        assert ex.terminations.terminate(work, [A]) == ([], {})
        sends.assert_no_pending_responses()
        looks.assert_no_pending_responses()
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (
            A,
            Outcome.NOT_DONE,
            f"stopped while creating the termination of {A}; the next run adopts it if it was made",
        )
    ]
    assert not ex.run_state.state.of(A).terminate_accepted


# --- images ---------------------------------------------------------------------------------


def test_a_stopping_run_reports_each_pending_image_not_done(tmp_path: Path) -> None:
    """Two images still pending when the run stops: both instances are reported not done
    (the first does not end the report), and neither goes on to termination."""
    ex, work, ec2, _, _ = _case(tmp_path, described(A), described(B), backup="image")
    ex.run_state.cancel.cancel("SIGINT")
    with Strict(ec2) as stub:
        pending = {"Images": [{"ImageId": i, "State": "pending"} for i in (NEW, OLD)]}
        stub.add_response(
            "describe_images", pending, {"Filters": [{"Name": "image-id", "Values": [NEW, OLD]}]}
        )
        assert ex.images.wait(work, {A: OLD, B: NEW}) == []
        stub.assert_no_pending_responses()
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (A, Outcome.NOT_DONE, f"stopped while its image {OLD} was pending"),
        (B, Outcome.NOT_DONE, f"stopped while its image {NEW} was pending"),
    ]


@pytest.mark.parametrize("state", ["failed", "deregistered"])
def test_a_journaled_image_not_seen_available_that_failed_since_is_made_again(
    tmp_path: Path, state: str
) -> None:
    """A resumed run's journal has an image of A never seen available; it has failed (or
    was deregistered) since: the plan's images are looked up and a new one is made."""
    ex, work, ec2, once, _ = _case(tmp_path, described(A), backup="image")
    ex.run_state.state.of(A).image_id = OLD
    with Strict(ec2) as looks, Strict(once) as creates:
        looks.add_response(
            "describe_images", {"Images": [{"ImageId": OLD, "State": state}]}, images_of(A)
        )
        creates.add_response("create_image", {"ImageId": NEW}, create_image(A))
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") == NEW
        looks.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    assert ex.run_state.state.of(A).image_id == NEW
    assert _events(ex) == [Event.IMAGE_REQUESTED, Event.IMAGE_CREATED]


# --- snapshots ------------------------------------------------------------------------------


@pytest.mark.parametrize("errored_first", [True, False])
def test_a_volumes_usable_snapshot_wins_over_its_errored_one(errored_first: bool) -> None:
    """Whatever order EC2 lists them in, the snapshot of a volume that is not errored is
    the one taken for it."""
    bad = {"SnapshotId": "snap-0bad", "VolumeId": "vol-1", "State": "error"}
    good = {"SnapshotId": "snap-0good", "VolumeId": "vol-1", "State": "pending"}
    other = {"SnapshotId": "snap-0other", "VolumeId": "vol-2", "State": "completed"}
    listed = [bad, other, good] if errored_first else [good, other, bad]
    assert by_volume(listed) == {"vol-1": "snap-0good", "vol-2": "snap-0other"}


@pytest.mark.parametrize("made", [("root",), ()])
def test_create_snapshots_that_misses_volumes_names_them_in_the_reason(
    tmp_path: Path, made: tuple[str, ...]
) -> None:
    """Both of A's volumes are deleted by termination (one CreateSnapshots); the answer
    (and three looks after it) lacks the data volume, or both: A fails with a reason
    naming the call, the instance and each missing volume (sorted)."""
    vols = {n: f"vol-{A[-4:]}{n}" for n in ("root", "data")}
    inst = described(
        A, volumes=((vols["root"], "/dev/xvda", True), (vols["data"], "/dev/sdf", True))
    )
    ex, work, ec2, once, _ = _case(tmp_path, inst)
    look = snapshots_of(A, *vols.values())
    answer = [{"SnapshotId": f"snap-0{n}", "VolumeId": vols[n], "State": "pending"} for n in made]
    with Strict(ec2) as looks, Strict(once) as creates:
        looks.add_response("describe_snapshots", {"Snapshots": []}, look)
        creates.add_response(
            "create_snapshots",
            {"Snapshots": answer},
            {
                "InstanceSpecification": {"InstanceId": A, "ExcludeBootVolume": False},
                "Description": f"awsops backup of {A} before decommission, {ex.plan.plan_id}",
                "TagSpecifications": [
                    {
                        "ResourceType": "snapshot",
                        "Tags": backup_tags(A, ("Name", f"awsops-backup-{A}")),
                    }
                ],
            },
        )
        for _ in range(3):
            looks.add_response("describe_snapshots", {"Snapshots": answer}, look)
        assert ex.backups.back_up(work, work.act[0]) is None
        looks.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    missing = ", ".join(sorted(v for n, v in vols.items() if n not in made))
    assert [(r.outcome, r.code, r.reason) for r in work.results] == [
        (
            Outcome.FAILED,
            "IncompleteBackupError",
            f"snapshots of {A} failed: CreateSnapshots of {A} made no snapshot of {missing} "
            "(detached since the plan?)",
        )
    ]
