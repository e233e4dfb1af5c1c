"""``decommission mark``, ``notify`` and ``plan --marked`` from the command line (in
process, against the sandbox): dry run, output, refusals and their exit codes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import assert_one_line_error, invoke
from tests.integration.marks_world import REGION, seed_instance

from awsops.decommission.marktags import MARK_TAG

UTC = dt.timezone.utc
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def tags_of(aws: Any) -> dict[str, dict[str, str]]:
    out = {}
    for r in aws.client("ec2", REGION).describe_instances()["Reservations"]:
        for i in r["Instances"]:
            tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            out[tags["Name"]] = tags
    return out


def config(tmp_path: Path, marks: dict[str, Any]) -> str:
    path = tmp_path / "decommission.yaml"
    path.write_text(yaml.safe_dump({"marks": marks}))
    return str(path)


def sandbox(*args: str) -> list[str]:
    return ["--sandbox", "decommission", *args, "--regions", REGION]


def test_mark_dry_run_then_mark_then_nothing_moves(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = dt.datetime.now(UTC) - dt.timedelta(days=45)
    seed_instance(aws, "web-1", old, Owner="alice@example.com")
    seed_instance(aws, "web-2", old)
    seed_instance(aws, "kept-1", old, **{"awsops:keep-until": "2999-01-01"})
    r = invoke(sandbox("mark", "--older-than", "30d", "--dry-run"), capsys)
    assert r.code == 0, r.stderr
    assert "dry run, nothing changed: would mark 2" in r.stderr
    assert r.stdout.count("would mark") == 2
    assert not any(MARK_TAG in t for t in tags_of(aws).values())

    r = invoke(sandbox("mark", "--older-than", "30d", "--grace", "3w", "--output", "json"), capsys)
    assert r.code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["counts"] == {"marked": 2} and report["grace_days"] == 21
    when = dt.datetime.fromisoformat(report["now"].replace("Z", "+00:00")) + dt.timedelta(days=21)
    expected = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    marks = {n: t.get(MARK_TAG) for n, t in tags_of(aws).items()}
    assert marks == {"web-1": expected, "web-2": expected, "kept-1": None}

    r = invoke(sandbox("mark", "--older-than", "30d", "--grace", "1w", "--output", "json"), capsys)
    assert json.loads(r.stdout)["counts"] == {"kept": 2}
    assert {n: t.get(MARK_TAG) for n, t in tags_of(aws).items()} == marks


@pytest.mark.parametrize(
    ("grace", "needle"),
    [("12h", "--grace 12h is under one day"), ("0d", "--grace must be more than zero")],
)
def test_mark_refuses_a_grace_period_under_a_day(
    aws: Any, sandbox_home: Path, capsys: pytest.CaptureFixture[str], grace: str, needle: str
) -> None:
    r = invoke(sandbox("mark", "--older-than", "30d", "--grace", grace), capsys)
    assert r.code == 2
    assert_one_line_error(r, needle)


def test_plan_marked_refuses_outside_the_window_and_expires_when_it_closes(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    today = dt.datetime.now(UTC).weekday()
    others = ",".join(d for n, d in enumerate(DAYS) if n != today)
    closed = config(tmp_path, {"window": {"days": others, "tz": "UTC"}})
    out = tmp_path / "plan.json"
    args = ["plan", "--marked", "--older-than", "30d", "-o", str(out)]
    r = invoke(sandbox(*args, "--config", closed), capsys)
    assert r.code == 3
    assert_one_line_error(r, "outside the window", "opens again at")
    assert not out.exists()

    open_today = config(tmp_path, {"window": {"days": DAYS[today], "tz": "UTC"}})
    r = invoke(sandbox(*args, "--config", open_today), capsys)
    assert r.code == 0, r.stderr
    plan = json.loads(out.read_text())
    created = dt.datetime.fromisoformat(plan["created_at"])
    midnight = dt.datetime.combine(created.date() + dt.timedelta(days=1), dt.time(), UTC)
    assert dt.datetime.fromisoformat(plan["expires_at"]) == min(
        midnight, created + dt.timedelta(hours=24)
    )
    assert plan["criteria"]["marked"] is True


def test_notify_needs_a_channel(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = invoke(sandbox("notify", "--config", config(tmp_path, {"grace_days": 7})), capsys)
    assert r.code == 2
    assert_one_line_error(r, "no notice channel is configured")


def test_notify_dry_run_sends_and_logs_nothing(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_instance(aws, "web-1", dt.datetime.now(UTC) - dt.timedelta(days=45))
    assert invoke(sandbox("mark", "--older-than", "30d"), capsys).code == 0
    cfg = config(
        tmp_path,
        {"fallback_owner": "ops@example.com", "notify": {"report": {"dir": str(tmp_path / "r")}}},
    )
    r = invoke(sandbox("notify", "--config", cfg, "--dry-run", "--output", "json"), capsys)
    assert r.code == 0, r.stderr
    owed = json.loads(r.stdout)["owed"]
    assert [(o["channel"], o["owner"], o["kind"]) for o in owed] == [
        ("report", "ops@example.com", "marked")
    ]
    assert not (tmp_path / "r").exists()
    assert not (sandbox_home / "notices" / "log.jsonl").exists()
    r = invoke(sandbox("notify", "--config", cfg), capsys)
    assert r.code == 0 and "sent: report 1" in r.stderr, r.stderr
    assert len(list((tmp_path / "r").glob("*.md"))) == 1


def test_a_bad_marks_section_is_refused_before_any_call(
    sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, {"notify": {"smtp": {"host": "mail", "from": "a@b.c", "pass": "x"}}})
    r = invoke(sandbox("notify", "--config", cfg), capsys)
    assert r.code == 2
    assert_one_line_error(r, "marks.notify.smtp unknown key(s) pass")
