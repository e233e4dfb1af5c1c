"""Each notice channel against a real receiver on loopback: email over STARTTLS with
AUTH (aiosmtpd, a self-signed certificate trusted through ca_file), a webhook, SNS in
moto (read back through a subscribed SQS queue) and the report files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from tests.integration.notice_servers import (
    SmtpCapture,
    WebhookCapture,
    drain,
    self_signed,
    sns_to_sqs,
)

from awsops.decommission.channels import ReportChannel, SnsChannel, WebhookChannel
from awsops.decommission.notices import MarkedInstance, Notice, owed_notices
from awsops.decommission.owners import Owner
from awsops.decommission.smtp import SmtpChannel
from awsops.markconfig import ReportSettings, SmtpSettings, SnsSettings, WebhookSettings

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def notices() -> list[Notice]:
    due = NOW + dt.timedelta(days=14)
    fleet = [
        MarkedInstance(
            "123456789012", "us-east-1", f"i-{n}", f"web-{n}", due, Owner(o, "tag:Owner")
        )
        for n, o in enumerate(["alice@example.com", "alice@example.com", "bob@example.com"])
    ]
    return owed_notices(fleet, {}, NOW, 3)


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Any:
    box = SmtpCapture(cert=self_signed(tmp_path), login=("awsops", "s3cret-pw")).start()
    yield box
    box.stop()


def channel(box: SmtpCapture, **env: str) -> SmtpChannel:
    assert box.cert is not None
    settings = SmtpSettings(
        "127.0.0.1", "awsops@example.com", port=box.port, ca_file=str(box.cert[0]), timeout=5
    )
    return SmtpChannel(settings, env)


def test_email_over_starttls_with_auth(tls_smtp: SmtpCapture) -> None:
    ch = channel(tls_smtp, AWSOPS_SMTP_USERNAME="awsops", AWSOPS_SMTP_PASSWORD="s3cret-pw")
    answers = ch.deliver([(n, str(ch.address(n.owner))) for n in notices()])
    assert [a.ok for a in answers] == [True, True], answers
    assert tls_smtp.logins == ["awsops"]
    (alice,) = tls_smtp.to("alice@example.com")
    assert alice.sender == "awsops@example.com"
    assert alice.message["Subject"].startswith("2 stopped EC2 instance(s)")
    assert "i-0" in alice.body and "i-1" in alice.body and "awsops:keep" in alice.body
    assert len(tls_smtp.to("bob@example.com")) == 1


def test_email_refused_on_bad_credentials_or_an_untrusted_certificate(
    tls_smtp: SmtpCapture,
) -> None:
    bad = channel(tls_smtp, AWSOPS_SMTP_USERNAME="awsops", AWSOPS_SMTP_PASSWORD="wrong")
    answers = bad.deliver([(n, "x@example.com") for n in notices()])
    assert not any(a.ok for a in answers) and "535" in (answers[0].error or "")
    assert "wrong" not in (answers[0].error or "")
    untrusted = SmtpChannel(
        SmtpSettings("127.0.0.1", "awsops@example.com", port=tls_smtp.port, timeout=5), {}
    )
    answers = untrusted.deliver([(notices()[0], "x@example.com")])
    assert not answers[0].ok and "CERTIFICATE_VERIFY_FAILED" in (answers[0].error or "")
    assert tls_smtp.mails == []


def test_email_is_not_sent_in_clear_to_a_server_without_starttls() -> None:
    box = SmtpCapture().start()
    try:
        ch = SmtpChannel(SmtpSettings("127.0.0.1", "a@example.com", port=box.port, timeout=5), {})
        answers = ch.deliver([(notices()[0], "x@example.com")])
        assert not answers[0].ok and "does not offer STARTTLS" in (answers[0].error or "")
        assert box.mails == []
    finally:
        box.stop()


def test_webhook_posts_slack_text_and_reports_failures_without_the_url() -> None:
    hook = WebhookCapture()
    try:
        ch = WebhookChannel(WebhookSettings(url_env="HOOK"), {"HOOK": hook.url})
        answers = ch.deliver([(n, "webhook") for n in notices()])
        assert [a.ok for a in answers] == [True, True]
        assert len(hook.mentioning("alice@example.com")) == 1
        assert hook.posts[0]["text"].startswith("*2 stopped EC2 instance(s)")
        hook.status = 500
        (failed,) = ch.deliver([(notices()[0], "webhook")])
        assert not failed.ok and failed.error == "the webhook answered HTTP 500"
        unset = WebhookChannel(WebhookSettings(url_env="HOOK"), {})
        assert "HOOK is not set" in (unset.deliver([(notices()[0], "w")])[0].error or "")
    finally:
        hook.close()
    (gone,) = ch.deliver([(notices()[0], "webhook")])
    assert not gone.ok and "unreachable" in (gone.error or "")
    assert "secret-token" not in (gone.error or "")


def test_sns_publishes_one_message_per_notice(aws: Any) -> None:
    topic, sqs, queue = sns_to_sqs(aws)
    ch = SnsChannel(SnsSettings(topic), aws.client("sns"))
    answers = ch.deliver([(n, topic) for n in notices()])
    assert [a.ok for a in answers] == [True, True]
    got = drain(sqs, queue)
    assert sorted(m["MessageAttributes"]["owner"]["Value"] for m in got) == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert all(m["Subject"].startswith(("1 stopped", "2 stopped")) for m in got)
    assert all("awsops:keep-until=YYYY-MM-DD" in m["Message"] for m in got)


def test_report_files_hold_every_notice_of_the_run(tmp_path: Path) -> None:
    ch = ReportChannel(ReportSettings(str(tmp_path / "reports")), NOW)
    answers = ch.deliver([(n, "r") for n in notices()])
    assert [a.ok for a in answers] == [True, True]
    again = ch.deliver([(notices()[0], "r")])  # a second run in the same second
    files = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert files == [
        "notices-20260601T090000Z-2.json",
        "notices-20260601T090000Z-2.md",
        "notices-20260601T090000Z.json",
        "notices-20260601T090000Z.md",
    ]
    assert again[0].to and again[0].to.endswith("-2.json")
    data = json.loads((tmp_path / "reports" / files[2]).read_text())
    assert [n["owner"] for n in data["notices"]] == ["alice@example.com", "bob@example.com"]
    md = (tmp_path / "reports" / files[3]).read_text()
    assert md.count("## ") == 2 and "| i-2 | web-2 |" in md
    assert oct((tmp_path / "reports" / files[2]).stat().st_mode & 0o777) == "0o600"
