"""Thirty days of the daily cycle against the sandbox, on an injected clock.

Day 0 is 14 days before the real clock, so that day 14 is now: on that day
``plan --marked`` and ``apply`` run as they would from a scheduler, as the CLI in a
subprocess on the real clock. Every other step calls the library with the day's time.
What changed is read from moto and from the fault proxy's ledger; what was told, from
the SMTP server, the webhook server and an SQS queue subscribed to the SNS topic.

The fleet (all stopped long enough on day 0 unless said otherwise):

- alice-1, alice-2 (``Owner``): marked on day 0, final notice on day 11, terminated
  with image backups on day 14;
- bob-1 (``owner``): opts out with ``awsops:keep`` on day 4, unmarked then;
- carol-1 (``CreatedBy``): started again on day 5, unmarked then;
- nobody-1 (no owner tag): the fallback contact's, terminated on day 14;
- dave-1 (``Contact``): stopped later, qualifies on day 10, due on day 24, final
  notice on day 21; never planned here;
- guarded-1 (``DoNotDelete``): never marked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import run_cli
from tests.integration.marks_world import REGION, World, make_world, seed_instance
from tests.integration.notice_servers import drain

from awsops.config import Target
from awsops.decommission.marking import MarkRequest, mark_instances
from awsops.decommission.marktags import mark_value
from awsops.decommission.model import PlanCriteria, SkipReason
from awsops.decommission.noticelog import NoticeLog
from awsops.decommission.notify import notify_owners
from awsops.decommission.planner import build_plan
from awsops.markconfig import MarkSettings, NotifySettings, ReportSettings
from awsops.sandbox.faults import FaultProxy

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
CHECKED_DAYS = (0, 4, 5, 10, 13, 21, 30)


@pytest.fixture
def world(
    aws: Any, sandbox_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    with FaultProxy(aws.endpoint) as proxy:
        yield from make_world(aws, sandbox_home, tmp_path, monkeypatch, proxy)


def _cli(world: World, *args: str) -> Any:
    return run_cli(["--sandbox", "decommission", *args, "--config", str(world.config)])


def _emails(world: World) -> Counter[tuple[str, str]]:
    """(recipient, kind) of every email received."""
    return Counter(
        (to, m.message["X-Awsops-Notice"].split()[1])
        for m in world.smtp.mails
        for to in m.recipients
    )


def test_thirty_days_of_marks_notices_and_one_decommission(world: World) -> None:
    day0 = dt.datetime.now(UTC).replace(microsecond=0) - 14 * DAY
    old = day0 - 40 * DAY
    world.seed("alice-1", old, Owner="alice@example.com")
    world.seed("alice-2", old, Owner="alice@example.com")
    world.seed("bob-1", old, owner="bob@example.com")
    world.seed("carol-1", old, CreatedBy="carol@example.com")
    world.seed("nobody-1", old)
    world.seed("dave-1", day0 - 20 * DAY - dt.timedelta(hours=1), Contact="dave@example.com")
    world.seed("guarded-1", old, Owner="alice@example.com", DoNotDelete="yes")
    ec2 = world.aws.client("ec2", REGION)
    due = mark_value(day0 + 14 * DAY)
    dave_due = mark_value(day0 + 24 * DAY)
    marked_plan = dataclasses.replace(world.criteria, marked=True)
    seen_dates: dict[str, str] = {}
    unmarked: dict[int, dict[str, str]] = {}
    finals: dict[int, set[str]] = {}

    for day in range(31):
        now = day0 + day * DAY
        if day == 4:
            ec2.create_tags(
                Resources=[world.ids["bob-1"]], Tags=[{"Key": "awsops:keep", "Value": "TICKET-7"}]
            )
        if day == 5:
            ec2.start_instances(InstanceIds=[world.ids["carol-1"]])
        mark = world.mark(now)
        assert not mark.errors, mark.errors
        unmarked[day] = {c.name: str(c.reason) for c in mark.changes if c.action == "unmarked"}
        notify = world.notify(now)
        assert notify.ok, (day, notify.failed, notify.undeliverable)
        finals[day] = {d.notice.owner.label for d in notify.deliveries if d.notice.kind == "final"}
        if day in CHECKED_DAYS:  # a mark, once written, never moves (the ledger says so too)
            for name, value in world.marks().items():
                assert seen_dates.setdefault(name, value) == value, (day, name)
        if day in (0, 10, 13):
            # a minute before day 14 is still too early
            for at in (now, now + DAY - dt.timedelta(minutes=1)) if day == 13 else (now,):
                plan = build_plan(world.factory, [Target(REGION)], marked_plan, now=at)
                assert plan.chosen == [], (at, [f.instance_id for _, f in plan.chosen])
        if day == 14:
            _decommission_day(world, due)

    assert seen_dates == {
        "alice-1": due,
        "alice-2": due,
        "bob-1": due,
        "carol-1": due,
        "nobody-1": due,
        "dave-1": dave_due,
    }
    assert unmarked[4] == {"bob-1": SkipReason.OPTED_OUT}
    assert unmarked[5] == {"carol-1": SkipReason.NOT_STOPPED}
    assert not any(unmarked[d] for d in range(31) if d not in (4, 5))
    assert {d: f for d, f in finals.items() if f} == {
        11: {"alice@example.com", "ops@example.com"},
        21: {"dave@example.com"},
    }
    after = world.instances()
    assert world.marks() == {"dave-1": dave_due}, after
    assert {n for n, i in after.items() if i["state"] == "terminated"} == {
        "alice-1",
        "alice-2",
        "nobody-1",
    }
    assert after["carol-1"]["state"] == "running"
    assert after["bob-1"]["state"] == after["guarded-1"]["state"] == "stopped"

    # the ledger: each mark written once, two unmarks, nothing else ever tagged
    assert world.tag_calls("CreateTags") == [
        (due, {"alice-1", "alice-2", "bob-1", "carol-1", "nobody-1"}),
        (dave_due, {"dave-1"}),
    ]
    assert world.tag_calls("DeleteTags") == [(due, {"bob-1"}), (due, {"carol-1"})]

    # one notice per owner per channel on marking, one final notice each
    assert _emails(world) == Counter(
        {
            ("alice@example.com", "marked"): 1,
            ("alice@example.com", "final"): 1,
            ("bob@example.com", "marked"): 1,
            ("carol@example.com", "marked"): 1,
            ("ops@example.com", "marked"): 1,
            ("ops@example.com", "final"): 1,
            ("dave@example.com", "marked"): 1,
            ("dave@example.com", "final"): 1,
        }
    )
    assert world.smtp.logins and set(world.smtp.logins) == {"awsops-notices"}
    (alice_first,) = [
        m for m in world.smtp.to("alice@example.com") if "final" not in m.message["Subject"].lower()
    ]
    assert world.ids["alice-1"] in alice_first.body and world.ids["alice-2"] in alice_first.body
    assert world.ids["guarded-1"] not in alice_first.body
    assert due in alice_first.body and "awsops:keep" in alice_first.body
    assert len(world.hook.posts) == 8
    assert len(world.hook.mentioning("alice@example.com")) == 2
    sns = drain(world.sqs, world.queue)
    assert Counter(m["MessageAttributes"]["owner"]["Value"] for m in sns) == Counter(
        {"alice@example.com": 2, "ops@example.com": 2, "dave@example.com": 2}
        | {"bob@example.com": 1, "carol@example.com": 1}
    )
    reports = sorted(p.name for p in (world.config.parent / "reports").glob("*.json"))
    assert [r[len("notices-") : len("notices-") + 8] for r in reports] == [
        (day0 + d * DAY).strftime("%Y%m%d") for d in (0, 10, 11, 21)
    ]


def _decommission_day(world: World, due: str) -> None:
    """Day 14, on the real clock: plan --marked proposes exactly what is due and still
    qualifies; apply backs each up (an image) and terminates it. Then the whole cycle
    again, the same day, changes nothing."""
    plan_path = world.home / "plan-1.json"
    r = _cli(
        world, "plan", "--marked", "--older-than", "30d", "--regions", REGION, "-o", str(plan_path)
    )
    assert r.code == 0, r.stderr
    plan = json.loads(plan_path.read_text())
    (target,) = plan["targets"]
    assert plan["criteria"]["marked"] is True
    assert world.names(f["instance_id"] for f in target["terminate"]) == {
        "alice-1",
        "alice-2",
        "nobody-1",
    }
    assert {world.names([s["instance_id"]]).pop(): s["skip_reason"] for s in target["skip"]} == {
        "dave-1": SkipReason.MARK_NOT_DUE
    }
    before = len(world.ledger())
    r = _cli(world, "apply", str(plan_path), "--yes", "--terminate-delay", "0", "--output", "jsonl")
    assert r.code == 0, r.stderr
    outcomes = {json.loads(line)["instance_id"]: json.loads(line) for line in r.stdout.splitlines()}
    assert {i: o["outcome"] for i, o in outcomes.items()} == {
        world.ids[n]: "terminated" for n in ("alice-1", "alice-2", "nobody-1")
    }
    applied = world.ledger()[before:]
    images = [rec for rec in applied if rec.action == "ec2:CreateImage"]
    assert sorted(world.names([rec.params["InstanceId"]]).pop() for rec in images) == [
        "alice-1",
        "alice-2",
        "nobody-1",
    ]
    terminated = {
        i for rec in applied if rec.action == "ec2:TerminateInstances" for i, *_ in rec.changes
    }
    assert world.names(terminated) == {"alice-1", "alice-2", "nobody-1"}
    # the same day again: nothing left to plan, nothing to mark, nobody to tell
    again = world.home / "plan-2.json"
    r = _cli(
        world, "plan", "--marked", "--older-than", "30d", "--regions", REGION, "-o", str(again)
    )
    assert r.code == 0, r.stderr
    assert json.loads(again.read_text())["targets"][0]["terminate"] == []
    quiet_from = len(world.ledger())
    r = _cli(world, "apply", str(again), "--yes")
    assert r.code == 0, r.stderr
    now = dt.datetime.now(UTC)
    assert [c.action for c in world.mark(now).changes] == ["kept"]  # dave-1
    assert world.notify(now).deliveries == ()
    assert world.ledger()[quiet_from:] == []


def test_a_notice_the_smtp_server_refused_is_sent_on_the_next_run(world: World) -> None:
    """Through the CLI on the real clock: the mail server is down for the first run
    (exit 1, the failure named, the other channels deliver), up for the next (the mail
    goes out, nothing else is sent again), and a third run sends nothing."""
    old = dt.datetime.now(UTC) - 60 * DAY
    world.seed("alice-1", old, Owner="alice@example.com")
    world.seed("alice-2", old, Owner="alice@example.com")
    r = _cli(world, "mark", "--older-than", "30d", "--regions", REGION)
    assert r.code == 0, r.stderr
    world.smtp.stop()
    r = _cli(world, "notify", "--regions", REGION)
    assert r.code == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "smtp to alice@example.com" in errors[0], r.stderr
    assert "Connection refused" in errors[0] and "s3cret" not in r.stderr
    assert len(world.hook.posts) == 1 and world.smtp.mails == []
    world.smtp.start()
    r = _cli(world, "notify", "--regions", REGION, "--output", "json")
    assert r.code == 0, r.stderr
    sent = json.loads(r.stdout)["deliveries"]
    assert [(d["channel"], d["owner"], d["ok"]) for d in sent] == [
        ("smtp", "alice@example.com", True)
    ]
    (mail,) = world.smtp.to("alice@example.com")
    assert world.ids["alice-1"] in mail.body and world.ids["alice-2"] in mail.body
    r = _cli(world, "notify", "--regions", REGION, "--output", "json")
    assert r.code == 0 and json.loads(r.stdout)["deliveries"] == [], r.stderr
    assert len(world.smtp.mails) == 1 and len(world.hook.posts) == 1
    assert len(drain(world.sqs, world.queue)) == 1
    log = [json.loads(x) for x in (world.home / "notices" / "log.jsonl").read_text().splitlines()]
    assert [(x["channel"], x["status"]) for x in log] == [
        ("smtp", "failed"),
        ("webhook", "delivered"),
        ("sns", "delivered"),
        ("report", "delivered"),
        ("smtp", "delivered"),
    ]


def test_a_due_mark_is_planned_only_once_a_notice_about_it_went_out(
    aws: Any, sandbox_home: Path, tmp_path: Path
) -> None:
    now = dt.datetime.now(UTC)
    iid = seed_instance(aws, "web-1", now - 60 * DAY, Owner="team-web")
    factory, target = aws.factory(), [Target(REGION)]
    criteria = PlanCriteria(older_than_days=30, protect_tags=("DoNotDelete",))
    mark_instances(factory, target, MarkRequest(criteria, 14 * DAY), now=now)
    marked = dataclasses.replace(criteria, marked=True)
    log = NoticeLog()

    def plan() -> Any:
        return build_plan(
            factory, target, marked, now=now + 15 * DAY, notified=log.notified().__contains__
        )

    (skip,) = plan().targets[0].skipped
    assert (skip.facts.instance_id, skip.reason) == (iid, SkipReason.NOT_NOTIFIED)
    settings = MarkSettings(notify=NotifySettings(report=ReportSettings(str(tmp_path / "r"))))
    assert notify_owners(factory, target, settings, now=now).ok
    assert [f.instance_id for _, f in plan().chosen] == [iid]
    # without the requirement, the notices log is not consulted
    assert [
        f.instance_id for _, f in build_plan(factory, target, marked, now=now + 15 * DAY).chosen
    ] == [iid]
