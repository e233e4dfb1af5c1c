"""Pure pieces of the mark-and-notify cycle: what a mark run changes, who owns an
instance, what each owner is owed and when, the notices log, and the email channel's
rules (with a fake SMTP connection; the real exchange is in the integration tests)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from awsops.decommission.channels import Delivery
from awsops.decommission.marking import MarkAction, changes_for
from awsops.decommission.model import Decision, InstanceFacts, SkipReason, TargetPlan
from awsops.decommission.noticelog import NoticeLog
from awsops.decommission.notices import MarkedInstance, NoticeKind, owed_notices, slack_text
from awsops.decommission.notices import markdown as notice_markdown
from awsops.decommission.notices import text as notice_text
from awsops.decommission.owners import (
    CloudTrailOwnerLookup,
    Owner,
    OwnerCache,
    OwnerResolver,
    caller_of,
)
from awsops.decommission.smtp import SmtpChannel
from awsops.decommission.stoptime import RateLimiter
from awsops.markconfig import MarkSettings, SmtpSettings

UTC = dt.timezone.utc
DAY0 = dt.datetime(2026, 6, 1, 9, 30, 0, tzinfo=UTC)
ACCOUNT = "123456789012"


def facts(iid: str, state: str = "stopped", **tags: str) -> InstanceFacts:
    return InstanceFacts(iid, state, DAY0 - dt.timedelta(days=40), "x", None, tags, ())


def test_a_mark_run_marks_keeps_replaces_and_unmarks() -> None:
    tp = TargetPlan(
        ACCOUNT,
        "us-east-1",
        chosen=(
            facts("i-new"),
            facts("i-kept", **{"awsops:terminate-after": "2026-05-20T00:00:00Z"}),
            facts("i-bad", **{"awsops:terminate-after": "terminate@2026/12/01"}),
        ),
        skipped=(
            Decision(
                facts("i-keep", **{"awsops:terminate-after": "2026-06-10T00:00:00Z"}),
                False,
                SkipReason.OPTED_OUT,
                "tag awsops:keep=T-1",
            ),
            Decision(facts("i-never"), False, SkipReason.PROTECT_TAG, "tag DoNotDelete"),
        ),
    )
    running = facts("i-run", "running", **{"awsops:terminate-after": "2026-06-10T00:00:00Z"})
    got = {c.instance_id: c for c in changes_for(tp, [running], DAY0, dt.timedelta(days=14))}
    assert set(got) == {"i-new", "i-kept", "i-bad", "i-keep", "i-run"}
    due = dt.datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
    assert (got["i-new"].action, got["i-new"].terminate_after) == (MarkAction.MARKED, due)
    assert got["i-kept"].action == MarkAction.KEPT and got["i-kept"].done
    assert got["i-kept"].terminate_after == dt.datetime(2026, 5, 20, tzinfo=UTC)  # never moved
    assert (got["i-bad"].action, got["i-bad"].terminate_after) == (MarkAction.REMARKED, due)
    assert (got["i-keep"].action, got["i-keep"].reason) == (
        MarkAction.UNMARKED,
        SkipReason.OPTED_OUT,
    )
    assert got["i-keep"].previous == "2026-06-10T00:00:00Z"
    assert (got["i-run"].reason, got["i-run"].detail) == (SkipReason.NOT_STOPPED, "state running")
    assert not any(c.done for c in got.values() if c.action != MarkAction.KEPT)


def marked(
    iid: str, owner: str | None, due: dt.datetime, source: str = "tag:Owner"
) -> MarkedInstance:
    return MarkedInstance(ACCOUNT, "us-east-1", iid, f"name-{iid}", due, Owner(owner, source), 1.5)


def test_each_owner_is_owed_one_notice_then_a_final_one_three_days_before() -> None:
    due = DAY0 + dt.timedelta(days=14)
    fleet = [
        marked("i-a1", "alice@example.com", due),
        marked("i-a2", "alice@example.com", due + dt.timedelta(days=10)),
        marked("i-b1", "bob@example.com", due),
    ]
    first = owed_notices(fleet, {}, DAY0, 3)
    assert [(n.owner.label, n.kind, len(n.instances)) for n in first] == [
        ("alice@example.com", NoticeKind.MARKED, 2),
        ("bob@example.com", NoticeKind.MARKED, 1),
    ]
    sent = {n.owner.label: set(n.delivers) for n in first}
    for day in range(1, 11):
        assert owed_notices(fleet, sent, DAY0 + dt.timedelta(days=day), 3) == [], day
    # day 11, even a few minutes before the time of day the marks were made
    day11 = DAY0 + dt.timedelta(days=11) - dt.timedelta(minutes=5)
    final = owed_notices(fleet, sent, day11, 3)
    assert [(n.owner.label, n.kind) for n in final] == [
        ("alice@example.com", NoticeKind.FINAL),
        ("bob@example.com", NoticeKind.FINAL),
    ]
    alice = final[0]
    assert len(alice.instances) == 2  # all of her marked instances, one of them final
    assert alice.final_keys == {fleet[0].key}
    assert alice.delivers == ((fleet[0].key, NoticeKind.FINAL),)


def test_a_short_grace_gets_one_notice_that_is_already_final() -> None:
    soon = marked("i-1", "alice@example.com", DAY0 + dt.timedelta(days=2))
    (notice,) = owed_notices([soon], {}, DAY0, 3)
    assert notice.kind == NoticeKind.FINAL
    assert set(notice.delivers) == {(soon.key, NoticeKind.MARKED), (soon.key, NoticeKind.FINAL)}


def test_a_new_mark_after_an_unmark_is_owed_new_notices() -> None:
    first = marked("i-1", "alice@example.com", DAY0 + dt.timedelta(days=14))
    (n,) = owed_notices([first], {}, DAY0, 3)
    again = marked("i-1", "alice@example.com", DAY0 + dt.timedelta(days=40))
    assert owed_notices([again], {"alice@example.com": set(n.delivers)}, DAY0, 3) != []


def test_notice_text_says_dates_savings_and_how_to_opt_out() -> None:
    inst = MarkedInstance(
        ACCOUNT,
        "eu-west-1",
        "i-0abc",
        "db | <!channel> & co",
        DAY0 + dt.timedelta(days=14),
        Owner("alice@example.com", "tag:Owner"),
        12.345,
    )
    (notice,) = owed_notices([inst], {}, DAY0, 3)
    body = notice_text(notice)
    for needle in (
        "2026-06-15T09:30:00Z",
        "in 14 day(s)",
        "12.35 USD/month",
        "awsops:keep=<reason or ticket>",
        "awsops:keep-until=YYYY-MM-DD",
        "--region eu-west-1 --resources i-0abc --tags Key=awsops:keep,Value=TICKET-123",
    ):
        assert needle in body
    assert "db \\| <!channel>" in notice_markdown(notice)
    slack = slack_text(notice)
    assert "<!channel>" not in slack and "&lt;!channel&gt; &amp; co" in slack
    assert notice.subject().startswith(
        "1 stopped EC2 instance(s) will be terminated from 2026-06-15"
    )


def test_the_log_counts_only_deliveries(tmp_path: Path) -> None:
    log = NoticeLog(tmp_path / "log.jsonl")
    inst = marked("i-1", "alice@example.com", DAY0 + dt.timedelta(days=14))
    (notice,) = owed_notices([inst], {}, DAY0, 3)
    for ok, channel in ((False, "smtp"), (True, "webhook")):
        d = Delivery(channel, notice, "x", ok, None if ok else "down")
        log.append(
            {
                "channel": channel,
                "owner": "alice@example.com",
                "status": "delivered" if ok else "failed",
                "delivers": [list(x) for x in notice.delivers],
                "error": d.error,
            }
        )
    with open(log.path, "a") as fh:
        fh.write('{"channel": "smtp", "status": "deliv')  # torn by a crash
    assert log.delivered("smtp") == {}
    assert log.delivered("webhook") == {"alice@example.com": set(notice.delivers)}
    assert oct(log.path.stat().st_mode & 0o777) == "0o600"


def test_owners_from_tags_in_the_configured_order_then_the_fallback() -> None:
    resolver = OwnerResolver(MarkSettings(fallback_owner="ops@example.com"), None, DAY0)
    get = resolver.resolve
    assert get({"owner": "b", "Owner": "a"}, "k", None) == Owner("a", "tag:Owner")
    assert get({"Owner": "  ", "CreatedBy": "c"}, "k", None) == Owner("c", "tag:CreatedBy")
    assert get({"Contact": "d"}, "k", None) == Owner("d", "tag:Contact")
    assert get({"Team": "x"}, "k", None) == Owner("ops@example.com", "fallback")
    nobody = OwnerResolver(MarkSettings(), None, DAY0).resolve({}, "k", None)
    assert nobody == Owner(None, "unknown") and nobody.label == "(owner unknown)"


def _trail() -> Any:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client("cloudtrail", region_name="us-east-1")


def _event(name: str, username: str | None, error: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::123456789012:assumed-role/Dev/carol@example.com",
        }
    }
    if error:
        detail["errorCode"] = error
    event: dict[str, Any] = {
        "EventName": name,
        "EventTime": DAY0,
        "CloudTrailEvent": json.dumps(detail),
    }
    if username:
        event["Username"] = username
    return event


def test_the_launcher_from_cloudtrail_is_looked_up_once_and_remembered(tmp_path: Path) -> None:
    client = _trail()
    lookup = CloudTrailOwnerLookup(client, RateLimiter(1000.0), now=DAY0)
    base = {
        "LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": "i-1"}],
        "StartTime": DAY0 - dt.timedelta(days=90),
        "EndTime": DAY0,
        "MaxResults": 50,
    }
    cache = OwnerCache(tmp_path / "owners.json")
    settings = MarkSettings(owner_from_cloudtrail=True, fallback_owner="ops@example.com")
    resolver = OwnerResolver(settings, cache, DAY0)
    with Stubber(client) as stub:
        page1 = [_event("StopInstances", "x"), _event("RunInstances", "mallory", "Denied")]
        stub.add_response("lookup_events", {"Events": page1, "NextToken": "t"}, base)
        page2 = [_event("RunInstances", None)]  # no Username: the identity's ARN
        stub.add_response("lookup_events", {"Events": page2}, {**base, "NextToken": "t"})
        owner = resolver.resolve({}, f"{ACCOUNT}/us-east-1/i-1", lookup)
        stub.assert_no_pending_responses()
    assert owner == Owner(
        "arn:aws:sts::123456789012:assumed-role/Dev/carol@example.com", "cloudtrail"
    )
    cache.save()
    again = OwnerResolver(settings, OwnerCache(tmp_path / "owners.json"), DAY0)
    with Stubber(client) as stub:  # no response queued: a call would fail the test
        assert again.resolve({}, f"{ACCOUNT}/us-east-1/i-1", lookup) == owner


def test_a_cloudtrail_error_falls_back_for_this_run_only(tmp_path: Path) -> None:
    client = _trail()
    lookup = CloudTrailOwnerLookup(client, RateLimiter(1000.0), now=DAY0)
    cache = OwnerCache(tmp_path / "owners.json")
    settings = MarkSettings(owner_from_cloudtrail=True, fallback_owner="ops@example.com")
    with Stubber(client) as stub:
        stub.add_client_error("lookup_events", "ThrottlingException", http_status_code=400)
        owner = OwnerResolver(settings, cache, DAY0).resolve({}, "a/r/i-1", lookup)
    assert owner == Owner("ops@example.com", "fallback")
    assert cache.get("a/r/i-1") == (False, None)
    assert caller_of({"Username": " dave "}) == "dave"


class FakeSmtp:
    def __init__(self, starttls: bool = True, fail_at: int | None = None) -> None:
        self.offers_starttls = starttls
        self.fail_at = fail_at
        self.calls: list[str] = []
        self.sent: list[Any] = []

    def ehlo(self) -> None:
        self.calls.append("ehlo")

    def has_extn(self, name: str) -> bool:
        return self.offers_starttls

    def starttls(self, context: Any = None) -> None:
        self.calls.append("starttls")

    def login(self, user: str, password: str) -> None:
        self.calls.append(f"login {user}")

    def send_message(self, msg: Any) -> None:
        import smtplib

        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise smtplib.SMTPServerDisconnected("gone")
        self.sent.append(msg)

    def quit(self) -> None:
        self.calls.append("quit")

    def close(self) -> None:
        self.calls.append("close")


def smtp(fake: FakeSmtp, tls: str = "starttls", **env: str) -> SmtpChannel:
    settings = SmtpSettings(
        "smtp.example.com", "awsops@example.com", tls=tls, default_domain="corp.example"
    )
    return SmtpChannel(settings, env, connect=lambda s: fake)


def two_notices() -> list[Any]:
    fleet = [
        marked("i-1", "alice@example.com", DAY0 + dt.timedelta(days=14)),
        marked("i-2", "bob", DAY0 + dt.timedelta(days=14)),
    ]
    return owed_notices(fleet, {}, DAY0, 3)


def test_email_goes_over_starttls_with_credentials_from_the_environment() -> None:
    fake = FakeSmtp()
    channel = smtp(fake, AWSOPS_SMTP_USERNAME="u", AWSOPS_SMTP_PASSWORD="p")
    items = [(n, channel.address(n.owner)) for n in two_notices()]
    assert [to for _, to in items] == ["alice@example.com", "bob@corp.example"]
    answers = channel.deliver([(n, str(to)) for n, to in items])
    assert [a.ok for a in answers] == [True, True]
    assert fake.calls[:4] == ["ehlo", "starttls", "ehlo", "login u"]
    assert fake.sent[0]["To"] == "alice@example.com" and "X-Awsops-Notice" in fake.sent[0]
    assert channel.address(Owner("team platform", "tag:Owner")) is None
    assert channel.address(Owner(None, "unknown")) is None


@pytest.mark.parametrize(
    ("fake", "tls", "env", "needle"),
    [
        (FakeSmtp(starttls=False), "starttls", {}, "does not offer STARTTLS"),
        (
            FakeSmtp(),
            "none",
            {"AWSOPS_SMTP_USERNAME": "u", "AWSOPS_SMTP_PASSWORD": "s3cret-pw"},
            "without TLS",
        ),
        (FakeSmtp(), "starttls", {"AWSOPS_SMTP_USERNAME": "u"}, "set both"),
    ],
)
def test_email_refusals_fail_every_notice_of_the_run(
    fake: FakeSmtp, tls: str, env: dict[str, str], needle: str
) -> None:
    channel = smtp(fake, tls, **env)
    answers = channel.deliver([(n, "x@example.com") for n in two_notices()])
    assert [a.ok for a in answers] == [False, False]
    assert all(needle in (a.error or "") for a in answers)
    assert fake.sent == [] and "s3cret-pw" not in (answers[0].error or "")


def test_a_dropped_connection_fails_the_rest_of_the_run() -> None:
    fake = FakeSmtp(fail_at=0)
    answers = smtp(fake).deliver([(n, "x@example.com") for n in two_notices()])
    assert [a.ok for a in answers] == [False, False]
    assert "gone" in (answers[1].error or "")
