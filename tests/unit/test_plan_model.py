"""The plan file (round trip, checksum, version, expiry, corruption), the apply journal
(replay, torn lines, locking, plan id) and the savings estimate."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from awsops import home
from awsops.decommission import planfile, pricing
from awsops.decommission.journal import (
    Event,
    Journal,
    JournalError,
    journal_path_for,
    read_events,
    replay,
)
from awsops.decommission.model import (
    SCHEMA_VERSION,
    Decision,
    InstanceFacts,
    Plan,
    PlanCriteria,
    PlanEndpoint,
    PlanLimits,
    SkipReason,
    TargetPlan,
    Volume,
)
from awsops.decommission.planfile import (
    canonical,
    checksum,
    load_plan,
    parse_plan,
    plan_json,
    write_plan,
)
from awsops.decommission.signing import SigningKey, signing_key
from awsops.errors import PlanError, UsageError

UTC = dt.timezone.utc
CREATED = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
BEFORE_EXPIRY = CREATED + dt.timedelta(hours=1)


def _facts(iid: str, days: float, **kw: Any) -> InstanceFacts:
    values: dict[str, Any] = {
        "instance_id": iid,
        "state": "stopped",
        "stop_time": CREATED - dt.timedelta(days=days),
        "stop_source": "state-transition-reason",
        "launch_time": CREATED - dt.timedelta(days=days + 30),
        "tags": {"Name": f"n-{iid}", "team": "blue"},
        "volumes": (
            Volume(f"vol-{iid}-root", "/dev/xvda", True, 8, "gp3"),
            Volume(f"vol-{iid}-data", "/dev/sdf", False, 50, "gp2"),
        ),
        "availability_zone": "us-east-1a",
        "instance_type": "t3.micro",
        "termination_protection": False,
        "asg_name": None,
    }
    values.update(kw)
    return InstanceFacts(**values)


def make_plan(created: dt.datetime = CREATED, ttl: dt.timedelta = dt.timedelta(hours=24)) -> Plan:
    east = TargetPlan(
        account_id="123456789012",
        region="us-east-1",
        examined=5,
        chosen=(_facts("i-0001", 45), _facts("i-0002", 200, instance_type=None)),
        skipped=(
            Decision(
                _facts("i-0003", 1), False, SkipReason.TOO_RECENT, "stopped 1.0 days ago (< 30)"
            ),
            Decision(
                _facts("i-0004", 90, stop_time=None, stop_source="unknown", launch_time=None),
                False,
                SkipReason.STOP_TIME_UNKNOWN,
                "no date in StateTransitionReason (try --cloudtrail)",
            ),
            Decision(
                _facts("i-0005", 200, tags={"DoNotDelete": "yes"}, termination_protection=None),
                False,
                SkipReason.PROTECT_TAG,
                "tag DoNotDelete",
            ),
        ),
    )
    west = TargetPlan(
        account_id="210987654321",
        region="eu-west-1",
        role_arn="arn:aws:iam::210987654321:role/ops",
        external_id="ext-1",
        name="prod",
        error="AccessDenied: no",
    )
    return Plan(
        plan_id="plan-20260601T120000Z-abcdef12",
        created_at=created,
        expires_at=created + ttl,
        criteria=PlanCriteria(
            older_than_days=30.0,
            protect_tags=("awsops:protect", "DoNotDelete"),
            account_allowlist=("123456789012",),
            account_denylist=("999999999999",),
            exclude_instance_ids=("i-9999",),
            exclude_tags={"env": "prod"},
            cloudtrail=True,
        ),
        targets=(east, west),
        summary={"examined": 5, "terminate": 2, "skip": {"protection-tag": 1}},
        limits=PlanLimits(max_instances=10, max_percent=40.0),
        endpoint=PlanEndpoint("endpoint-url", "http://127.0.0.1:5000"),
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    assert isinstance(exc, PlanError)
    assert exc.one_line() == text
    assert exc.exit_code == 2
    return text


# --- round trip ---------------------------------------------------------------------------


def test_plan_round_trip(tmp_path: Path) -> None:
    plan = make_plan()
    path = write_plan(plan, tmp_path / "plan.json")
    assert path == tmp_path / "plan.json"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_plan(path, now=BEFORE_EXPIRY)
    assert loaded == plan
    assert loaded.body() == plan.body()
    assert loaded.limits == PlanLimits(10, 40.0)
    assert loaded.endpoint.url == "http://127.0.0.1:5000"
    assert loaded.chosen == plan.chosen
    assert [f.instance_id for _, f in loaded.chosen] == ["i-0001", "i-0002"]
    assert loaded.targets[0].skipped[1].facts.stop_time is None
    assert loaded.targets[0].skipped[2].facts.termination_protection is None
    assert loaded.targets[1].error == "AccessDenied: no"
    assert loaded.cutoff == CREATED - dt.timedelta(days=30)


def test_plan_file_is_versioned_json_with_checksum(tmp_path: Path) -> None:
    path = write_plan(make_plan(), tmp_path / "plan.json")
    raw = json.loads(path.read_text())
    assert raw["kind"] == "awsops.decommission.plan"
    assert raw["schema_version"] == SCHEMA_VERSION == 2
    body = {k: v for k, v in raw.items() if k not in ("checksum", "signature")}
    assert raw["checksum"] == checksum(body)
    assert raw["signature"] == signing_key().sign(canonical(body))
    assert raw["checksum"].startswith("sha256:") and len(raw["checksum"]) == 7 + 64
    assert raw["created_at"] == "2026-06-01T12:00:00+00:00"
    skipped = raw["targets"][0]["skip"]
    assert [s["skip_reason"] for s in skipped] == [
        "stopped-too-recently",
        "stop-time-unknown",
        "protection-tag",
    ]


def test_a_plan_is_written_in_pieces_as_one_indented_document(tmp_path: Path) -> None:
    """A plan bigger than one written piece: the file is exactly the indented JSON
    document, and it loads."""
    one = make_plan()
    many = tuple(dataclasses.replace(one.targets[0], account_id=f"{n:012d}") for n in range(400))
    plan = dataclasses.replace(one, targets=many)
    path = write_plan(plan, tmp_path / "plan.json")
    expected = json.dumps(plan_json(plan), indent=2) + "\n"
    assert len(expected) > 4 * 65536
    assert path.read_bytes() == expected.encode("utf-8")
    assert load_plan(path, now=BEFORE_EXPIRY) == plan


def test_an_interrupted_write_keeps_the_old_plan_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_plan(make_plan(), tmp_path / "plan.json")
    before = path.read_bytes()
    pieces = 0

    def interrupted(doc: Any, size: int = 65536) -> Any:
        nonlocal pieces
        yield b'{"kind": '
        pieces += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(planfile, "_chunks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_plan(make_plan(), path)
    assert pieces == 1
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    assert path.read_bytes() == before


def test_a_full_disk_while_writing_a_plan_is_one_line_and_keeps_the_old_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_plan(make_plan(), tmp_path / "plan.json")
    before = path.read_bytes()

    fdopen = os.fdopen

    def full_disk(fd: int, mode: str = "r", *args: Any) -> Any:
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            return fdopen(fd, mode, *args)  # the signing key, read as usual
        os.close(fd)
        return open("/dev/full", mode)  # every write to the new plan: ENOSPC

    monkeypatch.setattr(home.os, "fdopen", full_disk)
    with pytest.raises(UsageError) as err:
        write_plan(make_plan(), path)
    assert err.value.one_line() == f"cannot write plan {path}: No space left on device"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    assert path.read_bytes() == before


def test_reformatting_the_file_keeps_it_valid(tmp_path: Path) -> None:
    path = write_plan(make_plan(), tmp_path / "plan.json")
    raw = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(raw.items()))), indent=None))
    assert load_plan(path, now=BEFORE_EXPIRY) == make_plan()


def test_times_in_other_zones_are_written_as_utc(tmp_path: Path) -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    plan = make_plan(created=CREATED.astimezone(plus2))
    path = write_plan(plan, tmp_path / "p.json")
    raw = json.loads(path.read_text())
    assert raw["created_at"].endswith("+00:00")
    assert load_plan(path, now=BEFORE_EXPIRY).created_at == CREATED


# --- refusals -----------------------------------------------------------------------------


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        node: Any = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "plan_id": _set(["plan_id"], "plan-other"),
    "expires_at": _set(["expires_at"], "2099-01-01T00:00:00+00:00"),
    "created_at": _set(["created_at"], "2026-06-01T12:00:01+00:00"),
    "older_than_days": _set(["criteria", "older_than_days"], 1.0),
    "protect_tags": _set(["criteria", "protect_tags"], []),
    "instance_id": _set(["targets", 0, "terminate", 0, "instance_id"], "i-evil"),
    "add an instance": lambda raw: raw["targets"][0]["terminate"].append(
        copy.deepcopy(raw["targets"][0]["skip"][0])
    ),
    "drop a skip": lambda raw: raw["targets"][0]["skip"].pop(),
    "volume": _set(["targets", 0, "terminate", 0, "volumes", 1, "delete_on_termination"], True),
    "tag": _set(["targets", 0, "terminate", 0, "tags", "team"], "red"),
    "account": _set(["targets", 0, "account_id"], "000000000000"),
    "summary": _set(["summary", "terminate"], 3),
    "extra key": _set(["note"], "hello"),
    "checksum": _set(["checksum"], "sha256:" + "0" * 64),
    "no checksum": lambda raw: raw.pop("checksum"),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampering_is_refused(tmp_path: Path, name: str) -> None:
    path = write_plan(make_plan(), tmp_path / "plan.json")
    raw = json.loads(path.read_text())
    TAMPERS[name](raw)
    path.write_text(json.dumps(raw, indent=2))
    with pytest.raises(PlanError) as info:
        load_plan(path, now=BEFORE_EXPIRY)
    text = _one_line(info.value)
    assert "checksum mismatch" in text and str(path) in text


def test_wrong_schema_version_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    raw = plan_json(make_plan())
    for version in (1, 3, 0, "2", None):
        raw["schema_version"] = version
        path.write_text(json.dumps(_resigned(raw)))  # consistent: the version is refused
        with pytest.raises(PlanError) as info:
            load_plan(path, now=BEFORE_EXPIRY)
        text = _one_line(info.value)
        assert f"schema version {version!r}" in text and "version 2" in text


# --- signature -----------------------------------------------------------------------


def test_edited_plan_with_a_recomputed_checksum_is_refused(tmp_path: Path) -> None:
    """Seen: with the checksum recomputed, a lowered older_than_days terminated an
    instance stopped 3 days ago, and expires_at 2099 was accepted."""
    path = write_plan(make_plan(), tmp_path / "plan.json")
    for edit in (
        _set(["criteria", "older_than_days"], 0.0001),
        _set(["expires_at"], "2099-01-01T00:00:00+00:00"),
        _set(["targets", 0, "examined"], 10**9),
        _set(["limits", "max_percent"], 100.0),
    ):
        raw = json.loads(path.read_text())
        edit(raw)
        body = {k: v for k, v in raw.items() if k not in ("checksum", "signature")}
        raw["checksum"] = checksum(body)
        path.with_name("edited.json").write_text(json.dumps(raw))
        with pytest.raises(PlanError) as info:
            load_plan(path.with_name("edited.json"), now=BEFORE_EXPIRY)
        assert "signature mismatch" in _one_line(info.value)


def test_unsigned_plan_is_refused(tmp_path: Path) -> None:
    raw = plan_json(make_plan())
    raw.pop("signature")
    (tmp_path / "p.json").write_text(json.dumps(raw))
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "p.json", now=BEFORE_EXPIRY)
    assert "is not signed" in _one_line(info.value)


def test_plan_signed_with_another_key_is_refused_naming_both(tmp_path: Path) -> None:
    other = SigningKey(b"k" * 32, "elsewhere")
    write_plan(make_plan(), tmp_path / "p.json", key=other)
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "p.json", now=BEFORE_EXPIRY)
    text = _one_line(info.value)
    assert other.key_id in text and signing_key().key_id in text and "AWSOPS_PLAN_KEY" in text


def test_plan_key_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWSOPS_PLAN_KEY", "x" * 40)
    write_plan(make_plan(), tmp_path / "p.json")
    assert load_plan(tmp_path / "p.json", now=BEFORE_EXPIRY) == make_plan()
    monkeypatch.setenv("AWSOPS_PLAN_KEY", "y" * 40)
    with pytest.raises(PlanError, match="another key"):
        load_plan(tmp_path / "p.json", now=BEFORE_EXPIRY)
    monkeypatch.setenv("AWSOPS_PLAN_KEY", "short")
    with pytest.raises(UsageError, match="at least 32"):
        signing_key()


def test_plan_key_file_is_private_and_refused_when_readable_by_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWSOPS_HOME", str(tmp_path / "home"))
    key = signing_key()
    path = tmp_path / "home" / "plan-signing.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
    assert signing_key() == key  # the same key on every use
    path.chmod(0o644)
    with pytest.raises(UsageError, match="readable by others"):
        signing_key()


def test_a_plan_may_live_seven_days_at_most(tmp_path: Path) -> None:
    ok = make_plan(ttl=dt.timedelta(days=7))
    write_plan(ok, tmp_path / "ok.json")
    assert load_plan(tmp_path / "ok.json", now=BEFORE_EXPIRY) == ok
    write_plan(make_plan(ttl=dt.timedelta(days=7, seconds=1)), tmp_path / "long.json")
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "long.json", now=BEFORE_EXPIRY)
    assert "7 days" in _one_line(info.value)


def test_plan_nested_ten_thousand_levels_deep_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 10_000 + "]" * 10_000)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "nested too deeply" in _one_line(info.value)


def test_plan_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "p.json").symlink_to(victim)
    with pytest.raises(UsageError, match="symbolic link"):
        write_plan(make_plan(), tmp_path / "p.json")
    assert victim.read_text() == "keep me"
    # a link planted at the old fixed temporary name is not followed either
    (tmp_path / "q.json.tmp").symlink_to(victim)
    write_plan(make_plan(), tmp_path / "q.json")
    assert victim.read_text() == "keep me" and (tmp_path / "q.json.tmp").is_symlink()


def test_expired_plan_is_refused(tmp_path: Path) -> None:
    plan = make_plan(created=dt.datetime.now(UTC) - dt.timedelta(days=2))
    path = write_plan(plan, tmp_path / "plan.json")
    with pytest.raises(PlanError) as info:
        load_plan(path)  # the real clock
    text = _one_line(info.value)
    assert "expired" in text and plan.expires_at.isoformat() in text
    assert load_plan(path, allow_expired=True) == plan
    # exactly at the expiry instant it is already expired
    with pytest.raises(PlanError, match="expired"):
        load_plan(path, now=plan.expires_at)
    assert load_plan(path, now=plan.expires_at - dt.timedelta(seconds=1)) == plan


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.9, 0.999])
def test_truncated_plan_is_refused(tmp_path: Path, keep: float) -> None:
    path = write_plan(make_plan(), tmp_path / "plan.json")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(PlanError) as info:
        load_plan(path, now=BEFORE_EXPIRY)
    text = _one_line(info.value)
    assert "not valid JSON" in text and str(path) in text


def test_missing_and_unreadable_plan_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "nope.json")
    assert "not found" in _one_line(info.value)
    bad = tmp_path / "latin.json"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PlanError) as info:
        load_plan(bad)
    _one_line(info.value)


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "plan",
        42,
        None,
        {},
        {"kind": "awsops.inventory", "schema_version": 1},
        {"schema_version": 1, "plan_id": "x"},
    ],
)
def test_not_a_plan_is_refused(tmp_path: Path, raw: Any) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "is not an awsops decommission plan" in _one_line(info.value)


def _resigned(raw: dict[str, Any]) -> dict[str, Any]:
    """The plan with its checksum and signature made again (as the key holder could)."""
    body = {k: v for k, v in raw.items() if k not in ("checksum", "signature")}
    return {**body, "checksum": checksum(body), "signature": signing_key().sign(canonical(body))}


def test_unknown_skip_reason_is_refused() -> None:
    raw = plan_json(make_plan())
    raw["targets"][0]["skip"][0]["skip_reason"] = "felt-like-it"
    with pytest.raises(PlanError) as info:
        parse_plan(_resigned(raw), "plan.json", now=BEFORE_EXPIRY)
    assert "unknown skip reason 'felt-like-it'" in _one_line(info.value)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda raw: raw.pop("targets"), "malformed"),
        (lambda raw: raw["targets"][0]["terminate"][0].pop("instance_id"), "malformed"),
        (lambda raw: raw["criteria"].update(older_than_days="soon"), "malformed"),
        (lambda raw: raw.update(expires_at="tomorrow"), "expires_at is not a timestamp"),
        (lambda raw: raw.update(expires_at="2099-01-01T00:00:00"), "expires_at has no time zone"),
        (lambda raw: raw.update(created_at=None), "lacks created_at"),
        (
            lambda raw: raw["targets"][0]["terminate"][0].update(stop_time=12),
            "stop_time is not a timestamp",
        ),
    ],
)
def test_consistent_but_malformed_plans_are_refused(
    edit: Callable[[dict[str, Any]], Any], needle: str
) -> None:
    raw = plan_json(make_plan())
    edit(raw)
    with pytest.raises(PlanError) as info:
        parse_plan(_resigned(raw), "plan.json", now=BEFORE_EXPIRY)
    assert needle in _one_line(info.value)


# --- journal ------------------------------------------------------------------------------


def test_journal_path_is_keyed_by_plan_id_in_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWSOPS_HOME", str(tmp_path))
    pid = "plan-20260601T120000Z-abcdef12"
    assert journal_path_for(pid) == tmp_path / "plans" / pid / "journal.jsonl"
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(PlanError):
            journal_path_for(bad)


def test_journal_is_private(tmp_path: Path) -> None:
    path = tmp_path / "d" / "journal.jsonl"
    with Journal(path, "plan-a") as journal:
        journal.record(Event.APPLY_STARTED, run=1)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_journal_never_follows_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("")
    (tmp_path / "j.jsonl").symlink_to(victim)
    with pytest.raises(JournalError, match="cannot open journal"):
        Journal(tmp_path / "j.jsonl", "plan-a").open()
    assert victim.read_text() == ""


def _record_a_run(journal: Journal) -> None:
    journal.record(Event.APPLY_STARTED, run=1, to_terminate=2)
    journal.record(Event.SNAPSHOT_REQUESTED, instance_id="i-1", volume_id="vol-1")
    journal.record(
        Event.SNAPSHOT_CREATED, instance_id="i-1", volume_id="vol-1", snapshot_id="snap-1"
    )
    journal.record(Event.SNAPSHOT_REQUESTED, instance_id="i-2", volume_id="vol-2")
    journal.record(
        Event.SNAPSHOT_CREATED, instance_id="i-2", volume_id="vol-2", snapshot_id="snap-2"
    )
    journal.record(
        Event.SNAPSHOT_COMPLETED, instance_id="i-1", volume_id="vol-1", snapshot_id="snap-1"
    )
    journal.record(
        Event.SNAPSHOT_FAILED, instance_id="i-2", volume_id="vol-2", snapshot_id="snap-2"
    )
    journal.record(Event.TERMINATE_REQUESTED, instance_ids=["i-1"])
    journal.record(Event.TERMINATE_ACCEPTED, instance_id="i-1")
    journal.record(Event.TERMINATED, instance_id="i-1")
    journal.record(Event.APPLY_FINISHED, terminated=1, skipped=0, failed=1)


def test_journal_record_replay_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "plan.journal.jsonl"
    with Journal(path, "plan-a") as journal:
        entry = journal.record(Event.APPLY_STARTED, run=1, to_terminate=2)
        assert entry["seq"] == 1 and entry["plan_id"] == "plan-a" and entry["run"] == 1
        dt.datetime.fromisoformat(entry["ts"])
    with Journal(path, "plan-a") as journal:
        _record_a_run(journal)
    lines = path.read_text().splitlines()
    assert len(lines) == 12
    assert [json.loads(ln)["seq"] for ln in lines] == list(range(1, 13))  # continues
    state = replay(path)
    assert state.plan_id == "plan-a"
    assert state.runs == 2
    assert state.events == 12
    assert state.torn_lines == 0
    i1, i2 = state.instances["i-1"], state.instances["i-2"]
    assert i1.snapshots == {"vol-1": "snap-1"} and i1.completed == {"vol-1"}
    assert i1.snapshot_requested == {"vol-1"}
    assert i1.terminate_requested and i1.terminate_accepted and i1.terminated
    assert i2.snapshots == {} and i2.completed == set()  # the failed snapshot is forgotten
    assert i2.snapshot_requested == {"vol-2"}
    assert not (i2.terminate_requested or i2.terminate_accepted or i2.terminated)


def test_journal_open_returns_the_replayed_state(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path, "plan-a") as journal:
        _record_a_run(journal)
    journal = Journal(path, "plan-a")
    state = journal.open()
    try:
        assert state.events == 11 and state.instances["i-1"].terminated
        assert journal.record(Event.APPLY_STARTED, run=2)["seq"] == 12
    finally:
        journal.close()


def test_record_on_a_closed_journal_fails(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="closed"):
        Journal(tmp_path / "j.jsonl", "plan-a").record(Event.APPLY_STARTED)
    journal = Journal(tmp_path / "j.jsonl", "plan-a")
    journal.open()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.record(Event.TERMINATED, instance_id="i-1")


def test_journal_write_failure_raises_naming_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", "plan-a")
    journal.open()
    real = journal._fd
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    try:
        journal._fd = full
        with pytest.raises(JournalError) as info:
            journal.record(Event.APPLY_STARTED, run=1)
        assert "j.jsonl" in str(info.value) and "No space left" in str(info.value)
    finally:
        journal._fd = real
        os.close(full)
        journal.close()


def test_a_record_cut_short_by_a_full_disk_leaves_no_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path, "plan-a") as journal:
        journal.record(Event.APPLY_STARTED, run=1)
        real_write = os.write

        def half_then_enospc(fd: int, data: Any) -> int:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("awsops.decommission.journal.os.write", half_then_enospc)
        with pytest.raises(JournalError):
            journal.record(Event.TERMINATE_REQUESTED, instance_ids=["i-1"])
        monkeypatch.undo()
        entry = journal.record(Event.TERMINATE_REQUESTED, instance_ids=["i-2"])
    assert entry["seq"] == 2  # the failed record took no number
    state = replay(path)
    assert state.torn_lines == 0 and state.events == 2
    assert "i-1" not in state.instances and state.instances["i-2"].terminate_requested


def test_torn_last_line_is_ignored_and_next_record_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path, "plan-a") as journal:
        journal.record(Event.APPLY_STARTED, run=1)
        journal.record(Event.TERMINATE_REQUESTED, instance_ids=["i-1", "i-2"])
    with open(path, "a", encoding="utf-8") as fh:  # a crash in the middle of a write
        fh.write('{"event": "terminated", "instance_id": "i-1", "plan_id": "plan-a", "se')
    state = replay(path)
    assert state.torn_lines == 1
    assert state.events == 2
    assert not state.instances["i-1"].terminated
    assert state.instances["i-1"].terminate_requested

    with Journal(path, "plan-a") as journal:
        entry = journal.record(Event.TERMINATE_ACCEPTED, instance_id="i-2")
    assert entry["seq"] == 3
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1]) == entry  # a whole line of its own
    assert lines[2].startswith('{"event": "terminated"') and lines[2].endswith('"se')
    events = list(read_events(path))
    assert [e["event"] for e in events] == [
        "apply-started",
        "terminate-requested",
        "__torn__",
        "terminate-accepted",
    ]
    state = replay(path)
    assert state.instances["i-2"].terminate_accepted
    assert not state.instances["i-1"].terminated


def test_complete_last_record_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path, "plan-a") as journal:
        journal.record(Event.APPLY_STARTED, run=1)
        journal.record(Event.TERMINATE_ACCEPTED, instance_id="i-1")
    path.write_bytes(path.read_bytes()[:-1])  # the crash came between the JSON and its newline
    assert replay(path).instances["i-1"].terminate_accepted  # the record itself is whole
    with Journal(path, "plan-a") as journal:
        journal.record(Event.TERMINATED, instance_id="i-1")
    state = replay(path)
    assert state.torn_lines == 0
    assert state.instances["i-1"].terminate_accepted
    assert state.instances["i-1"].terminated


def test_second_open_of_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    first = Journal(path, "plan-a")
    first.open()
    try:
        first.record(Event.APPLY_STARTED, run=1)
        with pytest.raises(UsageError) as info:
            Journal(path, "plan-a").open()
        text = str(info.value)
        assert "another apply" in text and str(path) in text and "\n" not in text
        assert info.value.exit_code == 2
        first.record(Event.APPLY_FINISHED)  # the first holder is unaffected
    finally:
        first.close()
    second = Journal(path, "plan-a")
    assert second.open().events == 2  # free again once closed
    second.close()


def test_journal_of_another_plan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path, "plan-a") as journal:
        journal.record(Event.APPLY_STARTED, run=1)
    with pytest.raises(PlanError) as info:
        Journal(path, "plan-b").open()
    text = _one_line(info.value)
    assert "plan-a" in text and "plan-b" in text
    # the refusal released the lock and wrote nothing
    assert len(path.read_text().splitlines()) == 1
    with Journal(path, "plan-a") as journal:
        journal.record(Event.APPLY_FINISHED)


# --- pricing -------------------------------------------------------------------------------


def _table_json() -> dict[str, Any]:
    return json.loads(
        resources.files("awsops.data").joinpath("ebs_prices.json").read_text(encoding="utf-8")
    )


def test_estimate_against_the_package_table() -> None:
    prices = _table_json()
    table = pricing.price_table()
    assert table.region == prices["region"] and table.as_of == prices["as_of"]
    volumes = [
        Volume("vol-a", "/dev/xvda", True, 8, "gp3"),
        Volume("vol-b", "/dev/sdf", True, 20, "gp2"),
        Volume("vol-c", "/dev/sdg", True, 100, "io1"),
    ]
    est = pricing.estimate(volumes)
    gb = prices["volume_gb_month"]
    expected_cost = 8 * gb["gp3"] + 20 * gb["gp2"] + 100 * gb["io1"]
    assert est.volumes == 3 and est.gib == 128 and est.unknown_size == 0
    assert est.monthly_volume_cost == pytest.approx(expected_cost)
    assert est.monthly_snapshot_cost_max == pytest.approx(128 * prices["snapshot_gb_month"])
    assert est.monthly_net_saving == pytest.approx(
        expected_cost - 128 * prices["snapshot_gb_month"]
    )
    # the figures for today's table, written out: 0.64 + 2.00 + 12.50
    assert est.monthly_volume_cost == pytest.approx(15.14)
    assert est.monthly_snapshot_cost_max == pytest.approx(6.40)
    assert pricing.estimate(volumes, retention_days=365).backup_cost_over_retention_max == (
        pytest.approx(6.40 * 365 / 30.4375)  # a year, in average months
    )
    out = est.to_json(table)
    assert out == {
        "deleted_volumes": 3,
        "deleted_gib": 128,
        "monthly_ebs_saving": 15.14,
        "monthly_backup_snapshot_cost_max": 6.4,
        "monthly_net_saving_min": 8.74,
        "backup_retention_days": 90,
        "backup_cost_over_retention_max": 18.92,  # 6.40 a month for 90 days
        "volumes_of_unknown_size": 0,
        "currency": "USD",
        "prices_region": prices["region"],
        "prices_as_of": prices["as_of"],
    }


def test_estimate_unknown_type_and_size() -> None:
    prices = _table_json()
    est = pricing.estimate(
        [
            Volume("vol-a", "/dev/xvda", True, 10, None),  # priced as gp2
            Volume("vol-b", "/dev/sdf", True, 10, "gp9-future"),  # priced as gp2
            Volume("vol-c", "/dev/sdg", True, None, "gp3"),  # unknown size: counted, not priced
        ]
    )
    assert est.volumes == 3 and est.gib == 20 and est.unknown_size == 1
    assert est.monthly_volume_cost == pytest.approx(20 * prices["volume_gb_month"]["gp2"])
    assert pricing.estimate([]).to_json(pricing.price_table())["deleted_gib"] == 0
