"""Where notices go: a Slack-compatible webhook, an SNS topic, a report file (JSON and
markdown), and email (:mod:`awsops.decommission.smtp`).

Every channel takes one run's notices at once and answers one :class:`Delivery` per
notice; a failure is an answer (with its error), never an exception, so one broken
channel cannot keep the others from delivering. Errors never include the webhook URL
or any credential.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from awsops.clock import iso_utc
from awsops.decommission import notices
from awsops.decommission.notices import Notice
from awsops.decommission.owners import Owner
from awsops.errors import UsageError
from awsops.home import private_dir, write_private
from awsops.markconfig import ReportSettings, SnsSettings, WebhookSettings

SNS_SUBJECT_MAX = 100


@dataclass(frozen=True)
class Delivery:
    """The answer of a channel for one notice."""

    channel: str
    notice: Notice
    to: str | None
    ok: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "owner": self.notice.owner.label,
            "notice_id": self.notice.notice_id,
            "kind": self.notice.kind,
            "to": self.to,
            "ok": self.ok,
            "error": self.error,
            "instances": len(self.notice.instances),
        }


class Channel(Protocol):
    name: str

    def address(self, owner: Owner) -> str | None:
        """Where this channel sends ``owner``'s notices; None if it cannot reach them."""

    def deliver(self, items: Sequence[tuple[Notice, str]]) -> list[Delivery]:
        """Send each (notice, address); one answer per item, in order."""


def _failed_all(name: str, items: Sequence[tuple[Notice, str]], error: str) -> list[Delivery]:
    return [Delivery(name, n, to, False, error) for n, to in items]


class WebhookChannel:
    """POST ``{"text": ...}`` (Slack's incoming-webhook shape) once per notice."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.settings = settings
        self.url = settings.url or (env.get(settings.url_env) if settings.url_env else None)

    def address(self, owner: Owner) -> str | None:
        return "webhook"

    def deliver(self, items: Sequence[tuple[Notice, str]]) -> list[Delivery]:
        if not self.url:
            return _failed_all(
                self.name, items, f"environment variable {self.settings.url_env} is not set"
            )
        return [self._post(n, to) for n, to in items]

    def _post(self, notice: Notice, to: str) -> Delivery:
        body = json.dumps({"text": notices.slack_text(notice)}).encode()
        assert self.url is not None
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as resp:
                status = int(resp.status)
        except urllib.error.HTTPError as exc:
            return Delivery(self.name, notice, to, False, f"the webhook answered HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Delivery(self.name, notice, to, False, f"the webhook is unreachable: {reason}")
        if not 200 <= status < 300:
            return Delivery(self.name, notice, to, False, f"the webhook answered HTTP {status}")
        return Delivery(self.name, notice, to, True)


class SnsChannel:
    """Publish each notice to one topic (plain text; attributes ``owner`` and
    ``kind`` for subscription filter policies)."""

    name = "sns"

    def __init__(self, settings: SnsSettings, client: Any) -> None:
        self.settings = settings
        self.client = client

    def address(self, owner: Owner) -> str | None:
        return self.settings.topic_arn

    def deliver(self, items: Sequence[tuple[Notice, str]]) -> list[Delivery]:
        out = []
        for notice, to in items:
            subject = notice.subject()
            if len(subject) > SNS_SUBJECT_MAX:
                subject = subject[: SNS_SUBJECT_MAX - 3] + "..."
            try:
                self.client.publish(
                    TopicArn=self.settings.topic_arn,
                    Subject=subject,
                    Message=notices.text(notice),
                    MessageAttributes={
                        "owner": {"DataType": "String", "StringValue": notice.owner.label},
                        "kind": {"DataType": "String", "StringValue": notice.kind},
                    },
                )
            except (ClientError, BotoCoreError) as exc:
                out.append(Delivery(self.name, notice, to, False, f"SNS Publish failed: {exc}"))
                continue
            out.append(Delivery(self.name, notice, to, True))
        return out


class ReportChannel:
    """All of one run's notices in ``notices-<time>.json`` and ``.md`` (0600) in the
    configured directory, for whatever else should carry them (a ticket, a wiki)."""

    name = "report"

    def __init__(self, settings: ReportSettings, now: dt.datetime) -> None:
        self.directory = Path(settings.directory)
        self.now = now

    def address(self, owner: Owner) -> str | None:
        return str(self.directory)

    def deliver(self, items: Sequence[tuple[Notice, str]]) -> list[Delivery]:
        if not items:
            return []
        batch = [n for n, _ in items]
        stamp = self.now.strftime("%Y%m%dT%H%M%SZ")
        try:
            private_dir(self.directory)
            base, n = self.directory / f"notices-{stamp}", 1
            while base.with_suffix(".json").exists():
                n += 1
                base = self.directory / f"notices-{stamp}-{n}"
            data = {"at": iso_utc(self.now), "notices": [x.to_json() for x in batch]}
            write_private(base.with_suffix(".json"), json.dumps(data, indent=2).encode(), "report")
            md = notices.report_markdown(batch, self.now)
            write_private(base.with_suffix(".md"), md.encode(), "report")
        except UsageError as exc:
            return _failed_all(self.name, items, str(exc))
        return [Delivery(self.name, n, str(base.with_suffix(".json")), True) for n in batch]
