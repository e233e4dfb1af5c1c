"""``awsops decommission plan|apply|run`` end to end against the sandbox server, on the
demo fleet (every instance tagged ``awsops:demo=<category>``).

With ``--older-than 30d`` the demo categories stopped-45d and stopped-200d are chosen;
every other stopped instance is kept for a reason the review names."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import assert_one_line_error, invoke, run_cli, run_on_terminal

from awsops.decommission.journal import journal_path_for, read_events
from awsops.decommission.planfile import load_plan, write_plan
from awsops.paginate import iter_items
from awsops.sandbox.seed import DEMO_TAG, seed_demo

REGION = "us-east-1"
CHOSEN = {"stopped-45d", "stopped-200d"}
KEPT = {
    "stopped-3d": "stopped-too-recently",
    "stopped-20d": "stopped-too-recently",
    "launched-400d-stopped-1d": "stopped-too-recently",
    "stopped-bare-reason": "stop-time-unknown",
    "stopped-empty-reason": "stop-time-unknown",
    "termination-protected": "termination-protection",
    "tag-protected": "protection-tag",
    "tag-donotdelete": "protection-tag",
    "asg-member": "auto-scaling-group",
}
FAST = ["--backup", "snapshots", "--snapshot-delay", "0", "--terminate-delay", "0"]


# --- helpers ------------------------------------------------------------------------------


def _seed(aws: Any) -> None:
    seed_demo(aws.session(), aws.settings, aws.server_url, [REGION], 24, with_buckets=False)


_EC2: dict[str, Any] = {}


def _ec2(aws: Any) -> Any:
    """One EC2 client per server (building a client loads the EC2 model: slow)."""
    if aws.endpoint not in _EC2:
        _EC2[aws.endpoint] = aws.client("ec2", REGION)
    return _EC2[aws.endpoint]


def _instances(aws: Any) -> dict[str, dict[str, Any]]:
    ec2 = _ec2(aws)
    return {
        i["InstanceId"]: i
        for i in iter_items(ec2, "describe_instances", "Reservations[].Instances[]")
    }


def _fleet(aws: Any) -> dict[str, tuple[str, str]]:
    """Instance id -> (demo category, state)."""
    return {
        iid: (
            {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get(DEMO_TAG, "?"),
            i["State"]["Name"],
        )
        for iid, i in _instances(aws).items()
    }


def _snapshots(aws: Any, volume_ids: list[str]) -> list[dict[str, Any]]:
    """Snapshots of the fleet's volumes (moto also holds ~1300 snapshots behind its AMIs)."""
    ec2 = _ec2(aws)
    return list(
        iter_items(
            ec2,
            "describe_snapshots",
            "Snapshots[]",
            {"OwnerIds": ["self"], "Filters": [{"Name": "volume-id", "Values": volume_ids}]},
        )
    )


def _volumes(aws: Any) -> dict[str, dict[str, Any]]:
    ec2 = _ec2(aws)
    return {v["VolumeId"]: v for v in iter_items(ec2, "describe_volumes", "Volumes[]")}


def _world(aws: Any) -> tuple[dict[str, tuple[str, str]], int, dict[str, str]]:
    """Everything an apply could change: instance states, snapshots, volume states."""
    volumes = _volumes(aws)
    return (
        _fleet(aws),
        len(_snapshots(aws, sorted(volumes))),
        {vid: v["State"] for vid, v in volumes.items()},
    )


def _make_plan(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], older_than: str = "30d"
) -> Path:
    """A plan of the seeded fleet, written by the CLI in-process."""
    path = tmp_path / "plan.json"
    r = invoke(
        [
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            older_than,
            "--regions",
            REGION,
            "-o",
            str(path),
        ],
        capsys,
    )
    assert r.code == 0, r.stderr
    return path


def _planned_ids(plan_path: Path) -> set[str]:
    return {f.instance_id for _, f in load_plan(plan_path).chosen}


def _journal(plan_path: Path) -> Path:
    """The journal of the plan in ``plan_path`` (in the awsops home, by plan id)."""
    return journal_path_for(load_plan(plan_path, allow_expired=True).plan_id)


# --- plan ---------------------------------------------------------------------------------


def test_plan_writes_the_file_and_prints_the_review(
    aws: Any, sandbox_home: Path, tmp_path: Path
) -> None:
    _seed(aws)
    before = _world(aws)
    fleet = before[0]
    out = tmp_path / "plan.json"
    r = run_cli(
        [
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            REGION,
            "-o",
            str(out),
        ]
    )
    assert r.code == 0, r.stderr
    assert f"plan written to {out}" in r.stderr

    plan = load_plan(out)
    chosen = {f.instance_id for _, f in plan.chosen}
    expected = {iid for iid, (cat, _) in fleet.items() if cat in CHOSEN}
    assert chosen == expected and len(chosen) == 5
    skipped = {d.facts.instance_id: d.reason for tp in plan.targets for d in tp.skipped}
    for iid, (cat, _) in fleet.items():
        if cat in KEPT:
            assert skipped[iid] == KEPT[cat], (cat, skipped.get(iid))
    stopped = sum(1 for _, state in fleet.values() if state == "stopped")
    assert plan.summary["examined"] == stopped == 19
    assert plan.summary["terminate"] == 5

    # the review: count, kept reasons, EBS GiB and saving
    deleted = [v for _, f in plan.chosen for v in f.deletable_volumes]
    gib = sum(v.size_gib or 0 for v in deleted)
    est = plan.summary["estimate"]
    assert est["deleted_gib"] == gib and est["deleted_volumes"] == len(deleted)
    text = " ".join(r.stdout.split())
    assert f"terminate 5, keep {stopped - 5}" in text
    assert f"examined {stopped} stopped instances in 1 target(s)" in text
    assert f"EBS volumes deleted: {len(deleted)} ({gib} GiB" in text
    assert f"estimated saving: {est['monthly_ebs_saving']:.2f} USD/month" in text
    assert est["monthly_ebs_saving"] > 0
    for reason, n in Counter(KEPT[c] for c, _ in fleet.values() if c in KEPT).items():
        assert reason in text
        assert plan.summary["skip"][reason] == n
    for iid in chosen:
        assert iid in r.stdout
    assert "made against the local sandbox; expires at" in text

    assert _world(aws) == before  # planning is read-only


def test_plan_json_output_is_the_plan(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(aws)
    fleet = _fleet(aws)
    out = tmp_path / "p.json"
    r = invoke(
        [
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "2w",
            "-o",
            str(out),
            "--output",
            "json",
        ],
        capsys,
    )
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(out.read_text())
    plan = load_plan(out)
    assert plan.criteria.older_than_days == 14
    expected = {iid for iid, (cat, _) in fleet.items() if cat in {*CHOSEN, "stopped-20d"}}
    assert {f.instance_id for _, f in plan.chosen} == expected and len(expected) == 7


# --- safety rails -------------------------------------------------------------------------


def test_apply_refusals_change_nothing(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(aws)
    plan_path = _make_plan(aws, tmp_path, capsys)
    before = _world(aws)
    # no --yes and stdin is not a terminal
    r = run_cli(["--sandbox", "decommission", "apply", str(plan_path)])
    assert r.code == 3, r
    assert_one_line_error(r, "without a terminal", "--yes")

    # blast radius: 5 planned instances
    r = run_cli(
        ["--sandbox", "decommission", "apply", "--yes", "--max-instances", "1", str(plan_path)]
    )
    assert r.code == 3, r
    assert_one_line_error(r, "plan terminates 5 instances", "cap of 1")

    r = run_cli(
        ["--sandbox", "decommission", "apply", "--yes", "--max-percent", "10", str(plan_path)]
    )
    assert r.code == 3, r
    assert_one_line_error(r, "5 of the 19 stopped", "cap of 10%")

    assert _world(aws) == before
    assert all(
        state == "stopped"
        for iid, (_, state) in before[0].items()
        if iid in _planned_ids(plan_path)
    )
    assert not list(read_events(_journal(plan_path)))  # nothing was journaled


def test_apply_dry_run_changes_nothing(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(aws)
    plan_path = _make_plan(aws, tmp_path, capsys)
    planned = _planned_ids(plan_path)
    before = _world(aws)

    r = run_cli(
        ["--sandbox", "decommission", "apply", "--dry-run", "--output", "jsonl", str(plan_path)]
    )
    assert r.code == 0, r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    assert {row["instance_id"] for row in rows} == planned
    assert {row["outcome"] for row in rows} == {"would-terminate"}
    assert "dry run, nothing changed: would-terminate 5" in r.stderr

    assert _world(aws) == before
    assert not _journal(plan_path).exists()


# --- apply and resume ---------------------------------------------------------------------


def test_apply_backs_up_terminates_and_resumes_without_repeating(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(aws)
    plan_path = _make_plan(aws, tmp_path, capsys)
    plan = load_plan(plan_path)
    planned = {f.instance_id: f for _, f in plan.chosen}
    fleet_before = _fleet(aws)
    fleet_volumes = sorted(_volumes(aws))
    assert len(planned) == 5 and not _snapshots(aws, fleet_volumes)

    r = run_cli(
        ["--sandbox", "decommission", "apply", "--yes", *FAST, "--output", "jsonl", str(plan_path)]
    )
    assert r.code == 0, r.stderr
    rows = {row["instance_id"]: row for row in map(json.loads, r.stdout.splitlines())}
    assert set(rows) == set(planned)
    assert {row["outcome"] for row in rows.values()} == {"terminated"}

    fleet = _fleet(aws)
    for iid, (cat, state) in fleet.items():
        if iid in planned:
            assert state == "terminated", (iid, cat)
        else:
            assert state == fleet_before[iid][1], (iid, cat)  # everything else untouched

    snaps = _snapshots(aws, fleet_volumes)
    by_volume = {s["VolumeId"]: s for s in snaps}
    volumes = _volumes(aws)
    deletable = 0
    for iid, facts in planned.items():
        for v in facts.volumes:
            if v.delete_on_termination:
                deletable += 1
                snap = by_volume[v.volume_id]
                tags = {t["Key"]: t["Value"] for t in snap.get("Tags", [])}
                assert tags["awsops:plan-id"] == plan.plan_id
                assert tags["awsops:instance-id"] == iid
                # One CreateSnapshots tags every snapshot of the instance alike: the
                # snapshot's VolumeId names the volume; one CreateSnapshot tags it too.
                whole = all(x.delete_on_termination for x in facts.volumes)
                assert tags.get("awsops:volume-id") == (None if whole else v.volume_id)
                assert snap["State"] == "completed"
                assert {
                    "volume_id": v.volume_id,
                    "snapshot_id": snap["SnapshotId"],
                } in rows[iid]["snapshots"]
                assert v.volume_id not in volumes  # deleted with the instance
            else:
                assert volumes[v.volume_id]["State"] == "available"  # survives, detached
                assert v.volume_id not in by_volume  # not backed up: it is kept
    assert deletable == 8 and len(snaps) == deletable

    journal = _journal(plan_path)
    first_events = list(read_events(journal))
    counts = Counter(e["event"] for e in first_events)
    assert counts["snapshot-created"] == deletable
    assert counts["terminated"] == 5 and counts["apply-finished"] == 1

    # the same plan again: nothing is created or terminated twice
    r2 = run_cli(
        ["--sandbox", "decommission", "apply", "--yes", *FAST, "--output", "jsonl", str(plan_path)]
    )
    assert r2.code == 0, r2.stderr
    rows2 = {row["instance_id"]: row for row in map(json.loads, r2.stdout.splitlines())}
    assert set(rows2) == set(planned)
    assert {row["outcome"] for row in rows2.values()} == {"terminated"}
    assert len(_snapshots(aws, fleet_volumes)) == len(snaps)
    new_events = list(read_events(journal))[len(first_events) :]
    names = [e["event"] for e in new_events]
    assert names[0] == "apply-started" and names[-1] == "apply-finished"
    for forbidden in ("snapshot-requested", "snapshot-created", "terminate-requested"):
        assert forbidden not in names
    assert new_events[0]["run"] == 2 and new_events[0]["to_terminate"] == 0


# --- bad plans ----------------------------------------------------------------------------


def test_bad_plan_files_are_refused(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(aws)
    good = _make_plan(aws, tmp_path, capsys)
    before = _world(aws)
    raw = json.loads(good.read_text())

    tampered = tmp_path / "tampered.json"
    edited = json.loads(json.dumps(raw))
    edited["criteria"]["older_than_days"] = 1.0
    tampered.write_text(json.dumps(edited, indent=2))

    expired = tmp_path / "expired.json"
    plan = load_plan(good)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    write_plan(
        dataclasses.replace(plan, created_at=past - dt.timedelta(hours=24), expires_at=past),
        expired,
    )

    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[: len(good.read_text()) // 2])

    for path, needle in (
        (tampered, "checksum mismatch"),
        (expired, "expired"),
        (truncated, "not valid JSON"),
        (tmp_path / "missing.json", "not found"),
    ):
        r = run_cli(["--sandbox", "decommission", "apply", "--yes", *FAST, str(path)])
        assert r.code == 2, (path.name, r)
        assert_one_line_error(r, needle)
        assert not _journal(good).exists()
    assert _world(aws) == before


# --- run, and bad input -------------------------------------------------------------------


def test_run_dry_run(aws: Any, sandbox_home: Path) -> None:
    _seed(aws)
    before = _world(aws)
    expected = {iid for iid, (cat, _) in before[0].items() if cat in CHOSEN}
    r = run_cli(
        [
            "--sandbox",
            "decommission",
            "run",
            "--older-than",
            "30d",
            "--region",
            REGION,
            "--dry-run",
            "--output",
            "jsonl",
        ]
    )
    assert r.code == 0, r.stderr
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    assert {row["instance_id"] for row in rows} == expected
    assert {row["outcome"] for row in rows} == {"would-terminate"}
    assert "dry run, nothing changed" in r.stderr
    kept = list((sandbox_home / "runs").glob("*.json"))
    assert len(kept) == 1 and f"plan kept at {kept[0]}" in r.stderr
    assert _planned_ids(kept[0]) == expected
    assert not _journal(kept[0]).exists()
    assert _world(aws) == before


@pytest.mark.parametrize(
    ("command", "value", "needle"),
    [
        ("plan", "xyz", "--older-than 'xyz'"),
        ("plan", "30x", "use a duration like 30d"),
        ("plan", "0d", "more than zero"),
        ("run", "xyz", "--older-than 'xyz'"),
    ],
)
def test_bad_older_than_is_one_line_error(
    aws: Any, sandbox_home: Path, tmp_path: Path, command: str, value: str, needle: str
) -> None:
    extra = ["-o", str(tmp_path / "p.json")] if command == "plan" else ["--dry-run"]
    r = run_cli(["--sandbox", "decommission", command, "--older-than", value, *extra])
    assert r.code == 2, r
    assert_one_line_error(r, needle)
    assert not (tmp_path / "p.json").exists()


def test_config_is_found_and_named_and_plans_go_to_the_home_by_default(
    aws: Any, sandbox_home: Path, tmp_path: Path
) -> None:
    _seed(aws)
    plan_args = ["--sandbox", "decommission", "plan", "--older-than", "30d", "--regions", REGION]
    (sandbox_home / "config.yaml").write_text("max_instances: 7\n")
    r = run_cli(plan_args, cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert f"config: {sandbox_home / 'config.yaml'} (found" in r.stderr
    m = re.search(r"plan written to (\S+);", r.stderr)
    assert m, r.stderr
    written = Path(m.group(1))
    plan = load_plan(written)
    assert written == sandbox_home / "plans" / plan.plan_id / "plan.json"
    assert plan.limits.max_instances == 7
    assert f"then: awsops --sandbox decommission apply {written}" in r.stderr

    (tmp_path / "awsops.yaml").write_text("max_instances: 3\n")  # ./awsops.yaml comes first
    r = run_cli([*plan_args, "-o", "p.json"], cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert "config: awsops.yaml (found" in r.stderr
    assert load_plan(tmp_path / "p.json").limits.max_instances == 3
    explicit = tmp_path / "other.yaml"
    explicit.write_text("max_instances: 9\n")
    r = run_cli([*plan_args, "-o", "q.json", "--config", str(explicit)], cwd=tmp_path)
    assert r.code == 0 and "(found" not in r.stderr
    assert load_plan(tmp_path / "q.json").limits.max_instances == 9


def test_plan_and_apply_show_progress_with_known_totalsrun_on_terminal(
    aws: Any, sandbox_home: Path, tmp_path: Path
) -> None:
    _seed(aws)
    plan_path = tmp_path / "plan.json"
    drawn = run_on_terminal(
        [
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            REGION,
            "-o",
            str(plan_path),
        ]
    )
    assert "planning targets" in drawn and "19 stopped instances examined" in drawn
    volumes = sum(len(f.deletable_volumes) for _, f in load_plan(plan_path).chosen)
    drawn = run_on_terminal(["--sandbox", "decommission", "apply", str(plan_path), "--yes", *FAST])
    assert f"{volumes}/{volumes}" in drawn and "5/5" in drawn  # totals known up front
    assert "/?" not in drawn


def test_the_confirmation_names_what_and_where_and_asks_for_account_and_count(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seen: the confirmation asked only for the instance count, without the account or
    the endpoint, and said N instances would be skipped without saying which."""
    _seed(aws)
    plan_path = _make_plan(aws, tmp_path, capsys)
    planned = _planned_ids(plan_path)
    drifted = sorted(planned)[0]
    _ec2(aws).create_tags(Resources=[drifted], Tags=[{"Key": "team", "Value": "late"}])
    before = _world(aws)
    apply = ["--sandbox", "decommission", "apply", str(plan_path), *FAST]
    # The count alone is not enough any more: nothing happens.
    drawn = run_on_terminal(apply, answer="4", expect_code=3)
    text = " ".join(drawn.split())
    assert "4 to terminate in 123456789012 (the local sandbox)" in text
    assert "skipped (drift 1)" in text and drifted in drawn and "tags changed: team" in text
    assert "Type 123456789012 4 to back up and terminate 4 instance(s)" in text
    assert "not confirmed: nothing was changed" in text
    assert _world(aws) == before
    # The account and the count: it goes ahead.
    run_on_terminal(apply, answer="123456789012 4")
    fleet = _fleet(aws)
    assert {fleet[i][1] for i in planned - {drifted}} == {"terminated"}
    assert fleet[drifted][1] == "stopped"
