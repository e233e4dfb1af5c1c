"""Images made at most once, against exact EC2 answers (botocore Stubber): the journal's
available image is kept, the plan's own image is adopted unless it failed, a refused or
stopped CreateImage is reported and journaled, after a lost answer the new image is told
apart from older ones and adopted whatever its state (a failed one then keeps the
instance), and tagging the image's snapshots is best effort."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.unit.apply_stubs import (
    Strict,
    backup_tags,
    client,
    create_image,
    described,
    executor,
    facts,
    images_of,
    plan_of,
)

from awsops.decommission.executor import Executor, Outcome, TargetWork
from awsops.decommission.images import no_device_mappings
from awsops.decommission.journal import Event, read_events

A, B = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"
OLD, NEW, OTHER = "ami-0000000000000old", "ami-0000000000000new", "ami-00000000000other"
LOOKUP = images_of(A)


def _case(tmp_path: Path, **options: Any) -> tuple[Executor, TargetWork, Any, Any]:
    plan = plan_of(facts(described(A)))
    options = {"backup": "image", "snapshot_delay": 0, "snapshot_max_attempts": 1, **options}
    ex = executor(plan, tmp_path / "journal.jsonl", **options)
    ex.run_state.sleep = lambda seconds: None
    ex.run_state.jitter = lambda: 1.0
    ec2, once = client("ec2"), client("ec2")
    tp = plan.targets[0]
    return ex, TargetWork(tp, ec2, ec2_once=once, act=list(tp.chosen)), ec2, once


def _images(**states: str) -> dict[str, Any]:
    return {"Images": [{"ImageId": i, "State": s} for i, s in states.items()]}


def _by_id(*ids: str) -> dict[str, Any]:
    """The parameters of the DescribeImages of ``ids`` after the wait."""
    return {"Filters": [{"Name": "image-id", "Values": list(ids)}]}


def _events(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    skip = {"seq", "ts", "plan_id", "event"}
    return [
        (e["event"], {k: v for k, v in e.items() if k not in skip})
        for e in read_events(tmp_path / "journal.jsonl")
    ]


def test_an_image_the_journal_saw_available_is_kept_without_a_call(tmp_path: Path) -> None:
    ex, work, ec2, once = _case(tmp_path)
    rec = ex.run_state.state.of(A)
    rec.image_id = OLD  # made, but not seen available: looked up again
    with Strict(ec2) as lookups:
        lookups.add_response("describe_images", _images(**{OLD: "pending"}), LOOKUP)
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") == OLD
    assert _events(tmp_path) == []  # already journaled
    rec.image_available = True
    with Strict(ec2), Strict(once):
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") == OLD
    with Strict(ec2) as stub:  # and not waited for
        assert ex.images.wait(work, {A: OLD}) == [(work.act[0], OLD)]
        stub.assert_no_pending_responses()


def test_the_plans_image_is_adopted_unless_it_failed(tmp_path: Path) -> None:
    ex, work, ec2, _ = _case(tmp_path)
    with Strict(ec2) as lookups:
        lookups.add_response(
            "describe_images", _images(**{OLD: "failed", OTHER: "pending"}), LOOKUP
        )
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") == OTHER
    assert ex.run_state.state.of(A).image_id == OTHER
    assert _events(tmp_path) == [
        (Event.IMAGE_CREATED, {"instance_id": A, "image_id": OTHER, "adopted": True})
    ]


def test_a_stopping_run_makes_no_image(tmp_path: Path) -> None:
    ex, work, ec2, once = _case(tmp_path)
    ex.run_state.cancel.cancel("SIGINT")
    with Strict(ec2), Strict(once):
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") is None
    assert [(r.instance_id, r.outcome, r.reason) for r in work.results] == [
        (A, Outcome.NOT_DONE, "stopped before its image was made")
    ]


def test_a_refused_create_image_fails_the_instance(tmp_path: Path) -> None:
    ex, work, ec2, once = _case(tmp_path)
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_images", _images(), LOOKUP)
        creates.add_client_error(
            "create_image", "InvalidParameterValue", "bad", 400, expected_params=create_image(A)
        )
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") is None
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    (result,) = work.results
    assert (result.instance_id, result.outcome, result.code) == (
        A,
        Outcome.FAILED,
        "InvalidParameterValue",
    )
    assert result.reason == (
        f"image of {A} failed: InvalidParameterValue: bad (operation=CreateImage, "
        "region=us-east-1, account=123456789012)"
    )
    assert _events(tmp_path) == [
        (Event.IMAGE_REQUESTED, {"instance_id": A}),
        (
            Event.FAILED,
            {"instance_id": A, "code": "InvalidParameterValue", "reason": f"image of {A} failed"},
        ),
    ]


def test_a_run_that_stops_between_two_sends_sends_no_more(tmp_path: Path) -> None:
    """Throttled (refused before EC2 acted: nothing to look for); the run stops during
    the backoff: not done, and CreateImage is not sent again."""
    ex, work, ec2, once = _case(tmp_path)
    ex.run_state.sleep = lambda seconds: ex.run_state.cancel.cancel("SIGINT")
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_images", _images(), LOOKUP)
        creates.add_client_error(
            "create_image",
            "RequestLimitExceeded",
            "slow down",
            503,
            expected_params=create_image(A),
        )
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") is None
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    assert [(r.outcome, r.reason) for r in work.results] == [
        (
            Outcome.NOT_DONE,
            f"stopped while creating the image of {A}; the next run adopts it if it was made",
        )
    ]


@pytest.mark.parametrize(
    "found",
    [{OLD: "failed", OTHER: "failed", NEW: "pending"}, {OLD: "failed", NEW: "failed"}],
    ids=["a-usable-new-one", "only-failed-ones"],
)
def test_after_a_lost_answer_the_new_image_is_adopted_not_an_older_one(
    tmp_path: Path, found: dict[str, str]
) -> None:
    """OLD (failed) was there before the call; after a 5xx the look-up finds OLD and what
    is new: a usable new image before a failed one, and a failed new one rather than a
    second CreateImage."""
    ex, work, ec2, once = _case(tmp_path)
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_images", _images(**{OLD: "failed"}), LOOKUP)
        creates.add_client_error(
            "create_image", "InternalError", "oops", 500, expected_params=create_image(A)
        )
        lookups.add_response("describe_images", _images(**found), LOOKUP)
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") == NEW
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    assert _events(tmp_path) == [
        (Event.IMAGE_REQUESTED, {"instance_id": A}),
        (Event.IMAGE_CREATED, {"instance_id": A, "image_id": NEW}),
    ]
    assert ex.run_state.state.of(A).image_id == NEW


def test_a_failed_image_adopted_after_a_lost_answer_keeps_the_instance(tmp_path: Path) -> None:
    """CreateImage's answer is lost and the image it made has already failed: adopted
    (no second CreateImage), then the wait finds it failed, so the instance does not go
    on to termination and the image is forgotten for the next run."""
    ex, work, ec2, once = _case(tmp_path)
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_images", _images(), LOOKUP)
        creates.add_client_error(
            "create_image", "InternalError", "oops", 500, expected_params=create_image(A)
        )
        lookups.add_response("describe_images", _images(**{NEW: "failed"}), LOOKUP)
        image = ex.images.back_up(work, work.act[0], "/dev/xvda")
        assert image == NEW
        lookups.add_response("describe_images", _images(**{NEW: "failed"}), {"ImageIds": [NEW]})
        lookups.add_response("describe_images", _images(**{NEW: "failed"}), _by_id(NEW))
        lookups.add_response("describe_images", _images(**{NEW: "failed"}), _by_id(NEW))
        assert ex.images.wait(work, {A: image}) == []
        lookups.assert_no_pending_responses()
        creates.assert_no_pending_responses()
    assert [(r.outcome, r.code, r.reason, r.image) for r in work.results] == [
        (
            Outcome.FAILED,
            "ImageFailed",
            f"backup not complete, not terminated: image {NEW} failed",
            NEW,
        )
    ]
    assert ex.run_state.state.of(A).image_id is None
    assert [e for e, _ in _events(tmp_path)] == [
        Event.IMAGE_REQUESTED,
        Event.IMAGE_CREATED,
        Event.IMAGE_FAILED,
        Event.FAILED,
    ]


def test_after_a_lost_answer_that_made_nothing_create_image_is_sent_again(tmp_path: Path) -> None:
    ex, work, ec2, once = _case(tmp_path)
    with Strict(ec2) as lookups, Strict(once) as creates:
        lookups.add_response("describe_images", _images(), LOOKUP)
        creates.add_client_error(
            "create_image", "InternalError", "oops", 500, expected_params=create_image(A)
        )
        for _ in range(3):  # EC2's describes settle: looked at three times
            lookups.add_response("describe_images", _images(), LOOKUP)
        creates.add_response("create_image", {"ImageId": NEW}, create_image(A))
        assert ex.images.back_up(work, work.act[0], "/dev/xvda") == NEW
        creates.assert_no_pending_responses()
        lookups.assert_no_pending_responses()


def test_an_image_that_is_not_found_keeps_its_instance(tmp_path: Path) -> None:
    ex, work, ec2, _ = _case(tmp_path)
    with Strict(ec2) as stub:
        stub.add_response("describe_images", _images(), {"ImageIds": [NEW]})
        stub.add_response("describe_images", _images(), _by_id(NEW))
        assert ex.images.wait(work, {A: NEW}) == []
        stub.assert_no_pending_responses()
    assert [(r.outcome, r.code, r.reason, r.image) for r in work.results] == [
        (
            Outcome.FAILED,
            "ImageIncomplete",
            f"backup not complete, not terminated: image {NEW} missing",
            NEW,
        )
    ]
    assert _events(tmp_path) == [
        (
            Event.FAILED,
            {"instance_id": A, "code": "ImageIncomplete", "reason": f"image {NEW} missing"},
        )
    ]


def test_snapshots_of_the_image_are_tagged_as_best_effort(tmp_path: Path) -> None:
    """The tags are refused: the image still counts, and the journal says why."""
    ex, work, ec2, _ = _case(tmp_path)
    image = {
        "ImageId": NEW,
        "State": "available",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-1"}},
            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
        ],
    }
    with Strict(ec2) as stub:
        stub.add_response("describe_images", {"Images": [image]}, {"ImageIds": [NEW]})
        stub.add_response("describe_images", {"Images": [image]}, _by_id(NEW))
        stub.add_client_error(
            "create_tags",
            "UnauthorizedOperation",
            "no",
            403,
            expected_params={"Resources": ["snap-1"], "Tags": backup_tags(A)},
        )
        assert ex.images.wait(work, {A: NEW}) == [(work.act[0], NEW)]
        stub.assert_no_pending_responses()
    assert _events(tmp_path)[-1] == (
        Event.SKIPPED,
        {
            "instance_id": A,
            "reason": "snapshots of the image not tagged: UnauthorizedOperation: no "
            "(operation=CreateTags, region=us-east-1)",
        },
    )
    assert ex.images._tag_snapshots(work, A, []) == ""
    ex.run_state.cancel.cancel("SIGINT")
    assert ex.images._tag_snapshots(work, A, ["snap-1"]) == (
        "snapshots of the image not tagged: the run stopped"
    )


def test_only_volumes_that_outlive_the_instance_are_left_out_of_its_image() -> None:
    inst = described(
        A,
        volumes=(
            ("vol-1", "/dev/xvda", False),  # the root: always in the image
            ("vol-2", "/dev/sdf", False),
            ("vol-3", "/dev/sdg", True),
            ("vol-4", "", False),
        ),
    )
    assert no_device_mappings(facts(inst), "/dev/xvda") == [
        {"DeviceName": "/dev/sdf", "NoDevice": ""}
    ]


def _case2(tmp_path: Path) -> tuple[Executor, TargetWork, Any]:
    """A and B, image backups, the wait's budget one poll."""
    plan = plan_of(facts(described(A)), facts(described(B)))
    ex = executor(
        plan, tmp_path / "journal.jsonl", backup="image", snapshot_delay=0, snapshot_max_attempts=1
    )
    ec2 = client("ec2")
    return ex, TargetWork(plan.targets[0], ec2, act=list(plan.targets[0].chosen)), ec2


def test_an_image_seen_available_before_does_not_end_the_wait_for_others(tmp_path: Path) -> None:
    """A's image was seen available by an earlier run; B's is available now, described
    without any block device mapping."""
    ex, work, ec2 = _case2(tmp_path)
    ex.run_state.state.of(A).image_available = True
    with Strict(ec2) as stub:
        stub.add_response("describe_images", _images(**{NEW: "available"}), {"ImageIds": [NEW]})
        stub.add_response("describe_images", _images(**{NEW: "available"}), _by_id(NEW))
        ready = ex.images.wait(work, {A: OLD, B: NEW})
        stub.assert_no_pending_responses()
    assert [(f.instance_id, image) for f, image in ready] == [(A, OLD), (B, NEW)]
    assert _events(tmp_path) == [
        (Event.IMAGE_AVAILABLE, {"instance_id": B, "image_id": NEW, "snapshot_ids": []})
    ]


def test_a_failed_image_is_forgotten_and_journaled_as_failed(tmp_path: Path) -> None:
    ex, work, ec2 = _case2(tmp_path)
    ex.run_state.state.of(A).image_id = OLD
    with Strict(ec2) as stub:
        gone = _images(**{OLD: "deregistered"})
        # not a state the waiter fails on: polled until its budget (one poll) is spent
        stub.add_response("describe_images", gone, {"ImageIds": [OLD]})
        stub.add_response("describe_images", gone, _by_id(OLD))
        assert ex.images.wait(work, {A: OLD}) == []
        stub.assert_no_pending_responses()
    assert ex.run_state.state.of(A).image_id is None
    assert _events(tmp_path) == [
        (Event.IMAGE_FAILED, {"instance_id": A, "image_id": OLD, "state": "deregistered"}),
        (
            Event.FAILED,
            {"instance_id": A, "code": "ImageFailed", "reason": f"image {OLD} deregistered"},
        ),
    ]
