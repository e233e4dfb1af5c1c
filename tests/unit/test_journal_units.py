"""The journal to the letter: what :func:`replay` makes of every event (and of lines
that are not events), records written whole however the kernel splits the write, and
the exact words of each refusal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from awsops.decommission.journal import (
    Event,
    InstanceRecord,
    Journal,
    JournalError,
    plan_dir,
    read_events,
    replay,
)
from awsops.errors import PlanError, UsageError

A, B, C = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"


def _write(path: Path, *events: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def _e(seq: int, event: str, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "plan_id": "plan-a", "event": event, **data}


def test_replay_folds_every_event_into_what_is_known_to_be_done(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "j.jsonl",
        _e(1, Event.APPLY_STARTED, run=1),
        _e(2, Event.SNAPSHOT_REQUESTED, instance_id=A, volume_id="vol-a1"),
        _e(3, Event.SNAPSHOT_CREATED, instance_id=A, volume_id="vol-a1", snapshot_id="snap-a1"),
        _e(4, Event.SNAPSHOT_CREATED, instance_id=A, volume_id="vol-a2", snapshot_id="snap-a2"),
        _e(5, Event.SNAPSHOT_COMPLETED, instance_id=A, volume_id="vol-a1", snapshot_id="snap-a1"),
        _e(6, Event.SNAPSHOT_COMPLETED, instance_id=A, volume_id="vol-a2", snapshot_id="snap-a2"),
        _e(7, Event.SNAPSHOT_FAILED, instance_id=A, volume_id="vol-a2", snapshot_id="snap-a2"),
        _e(8, Event.RESTORE_CAPTURED, instance_id=B, capture={"root_device_name": "/dev/xvda"}),
        _e(9, Event.IMAGE_CREATED, instance_id=B, image_id="ami-b"),
        _e(10, Event.IMAGE_CREATED, instance_id=C, image_id="ami-c"),
        _e(11, Event.IMAGE_AVAILABLE, instance_id=C, image_id="ami-c"),
        _e(12, Event.IMAGE_FAILED, instance_id=C, image_id="ami-c"),
        _e(13, Event.TERMINATE_REQUESTED, instance_ids=[A, B]),
        _e(14, Event.TERMINATE_REQUESTED),
        _e(15, Event.TERMINATE_ACCEPTED, instance_id=A),
        _e(16, Event.TERMINATED, instance_id=A),
        # what is said of an instance, never what was done to it
        _e(17, Event.SKIPPED, instance_id=C, reason="already terminated"),
        _e(18, Event.FAILED, instance_id=C, code="X", reason="y"),
        _e(19, Event.SNAPSHOT_CREATED, instance_id=B, volume_id="vol-b1", snapshot_id="snap-b1"),
        _e(20, Event.APPLY_FINISHED),
    )
    state = replay(path)
    assert (state.plan_id, state.runs, state.events, state.torn_lines) == ("plan-a", 1, 20, 0)
    assert state.instances == {
        A: InstanceRecord(
            snapshots={"vol-a1": "snap-a1"},
            completed={"vol-a1"},
            snapshot_requested={"vol-a1"},
            terminate_requested=True,
            terminate_accepted=True,
            terminated=True,
        ),
        B: InstanceRecord(
            snapshots={"vol-b1": "snap-b1"},
            terminate_requested=True,
            image_id="ami-b",
            capture={"root_device_name": "/dev/xvda"},
        ),
        C: InstanceRecord(image_id=None, image_available=False),
    }


def test_lines_that_are_not_events_are_counted_or_passed_over(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                json.dumps(_e(1, Event.APPLY_STARTED)).encode(),
                b'{"seq": 2, "event": "terminate-requ',  # torn
                b'{"seq": 2, "note": "no event"}',  # not an event
                b"[1, 2]",
                b"",
                b'{"event": "terminate-requested", "instance_ids": ["' + A.encode() + b'"]}',
                b'{"seq": 3, "event": "terminated", "instance_id": "\xff\xfe"}',  # not UTF-8
                b"garbage",  # torn
                json.dumps(_e(4, Event.TERMINATE_ACCEPTED, instance_id=B)).encode(),
            ]
        )
        + b"\n"
    )
    events = list(read_events(path))
    assert [e["event"] for e in events] == [
        Event.APPLY_STARTED,
        "__torn__",
        Event.TERMINATE_REQUESTED,
        Event.TERMINATED,
        "__torn__",
        Event.TERMINATE_ACCEPTED,
    ]
    state = replay(path)
    assert (state.torn_lines, state.events, state.runs) == (2, 4, 1)
    assert state.of(A).terminate_requested and state.of(B).terminate_accepted
    assert state.of("\ufffd\ufffd").terminated  # the undecodable id, read with replacements


def test_a_journal_without_numbered_events_has_seen_none(tmp_path: Path) -> None:
    path = _write(tmp_path / "j.jsonl", {"event": Event.APPLY_STARTED})
    assert replay(path).events == 0 and replay(path).runs == 1
    assert list(read_events(tmp_path / "none.jsonl")) == []


def test_records_are_sorted_utc_json_lines_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path, "plan-a") as journal:
        first = journal.record(Event.TERMINATE_REQUESTED, instance_ids=[A])
        journal.record(Event.TERMINATED, instance_id=A)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == json.dumps(first, sort_keys=True)
    assert list(json.loads(lines[0])) == ["event", "instance_ids", "plan_id", "seq", "ts"]
    assert [json.loads(x)["seq"] for x in lines] == [1, 2]
    assert first["ts"].endswith("+00:00")


def test_a_record_is_written_whole_however_the_write_is_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    real_write = os.write
    monkeypatch.setattr(
        "awsops.decommission.journal.os.write", lambda fd, data: real_write(fd, bytes(data[:7]))
    )
    with Journal(path, "plan-a") as journal:
        entry = journal.record(Event.TERMINATED, instance_id=A)
    assert path.read_text(encoding="utf-8") == json.dumps(entry, sort_keys=True) + "\n"


def test_the_refusals_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as bad:
        plan_dir("../x")
    assert bad.value.one_line() == "malformed plan id '../x'"
    path = tmp_path / "j.jsonl"
    with Journal(path, "plan-a"), pytest.raises(UsageError) as locked:
        Journal(path, "plan-a").open()
    assert locked.value.one_line() == (
        f"another apply of plan plan-a is running (its journal {path} is locked): wait for "
        "it to finish, then run apply again to resume"
    )


def test_a_journal_that_cannot_be_written_says_why(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", "plan-a")
    journal.open()
    real = journal._fd
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    try:
        journal._fd = full
        with pytest.raises(JournalError) as info:
            journal.record(Event.APPLY_STARTED, run=1)
    finally:
        journal._fd = real
        os.close(full)
        journal.close()
    assert info.value.one_line() == f"cannot write journal {journal.path}: No space left on device"
    victim = tmp_path / "victim"
    victim.write_text("")
    (tmp_path / "link.jsonl").symlink_to(victim)
    with pytest.raises(JournalError) as info:
        Journal(tmp_path / "link.jsonl", "plan-a").open()
    assert info.value.one_line() == (
        f"cannot open journal {tmp_path / 'link.jsonl'}: Too many levels of symbolic links; "
        "nothing was changed"
    )


def test_a_plan_has_a_journal_once_something_was_written_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from awsops.decommission.journal import has_journal, journal_path_for

    monkeypatch.setenv("AWSOPS_HOME", str(tmp_path))
    plan_id = "plan-20260601T120000Z-0000unit"
    assert not has_journal(plan_id) and not has_journal("../elsewhere")
    path = journal_path_for(plan_id)
    path.parent.mkdir(parents=True)
    path.write_text("")
    assert not has_journal(plan_id)  # opened, nothing recorded
    path.write_text("\n")  # one byte: a fresh line after a torn record
    assert has_journal(plan_id)


def test_a_journal_whose_fresh_line_cannot_be_written_is_not_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"seq": 1, "event": "terminate-requ')  # torn by a crash

    def full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("awsops.decommission.journal.os.write", full)
    with pytest.raises(JournalError) as info:
        Journal(path, "plan-a").open()
    assert info.value.one_line() == (
        f"cannot write journal {path}: No space left on device; nothing was changed"
    )
    monkeypatch.undo()
    with Journal(path, "plan-a") as journal:  # the lock was released
        journal.record(Event.APPLY_STARTED)
