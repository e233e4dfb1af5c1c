"""The ``marks:`` section of the decommission config: grace period, owners, notices and
the window in which ``plan --marked`` may propose terminations.

Plain frozen data, validated when the file is read: an unknown key, a wrong type or a
value out of range is a one-line error naming the file and the key, before any call.
Secrets never live here: the SMTP credentials (and, if you like, the webhook URL) are
read from environment variables whose names the file gives.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from awsops.clock import UTC, as_utc
from awsops.errors import UsageError

DEFAULT_OWNER_TAGS = ("Owner", "owner", "CreatedBy", "Contact")
DEFAULT_GRACE_DAYS = 14.0
DEFAULT_FINAL_NOTICE_DAYS = 3
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TLS_MODES = ("starttls", "ssl", "none")
SNS_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:[\w-]{1,256}$")
MARKS_KEYS = (
    "grace_days",
    "final_notice_days",
    "owner_tags",
    "owner_from_cloudtrail",
    "fallback_owner",
    "window",
    "notify",
    "require_notice",
)
SMTP_KEYS = (
    "host",
    "port",
    "from",
    "tls",
    "username_env",
    "password_env",
    "default_domain",
    "ca_file",
    "timeout",
)
_HOURS_RE = re.compile(r"^(\d{1,2})(?::(\d{2}))?-(\d{1,2})(?::(\d{2}))?$", re.ASCII)


@dataclass(frozen=True)
class Window:
    """When terminations may be proposed: some days of the week, a span of local hours
    (``22-06`` runs past midnight: it belongs to the day it starts), in a time zone."""

    days: frozenset[int]  # 0 is Monday
    start_minute: int
    end_minute: int  # 1440 is 24:00
    tz: str = "UTC"

    @property
    def zone(self) -> dt.tzinfo:
        return UTC if self.tz == "UTC" else zoneinfo.ZoneInfo(self.tz)

    def _wraps(self) -> bool:
        return self.end_minute <= self.start_minute

    def contains(self, now: dt.datetime) -> bool:
        local = as_utc(now).astimezone(self.zone)
        minute, day = local.hour * 60 + local.minute, local.weekday()
        if not self._wraps():
            return day in self.days and self.start_minute <= minute < self.end_minute
        return (day in self.days and minute >= self.start_minute) or (
            (day - 1) % 7 in self.days and minute < self.end_minute
        )

    def _at(self, day: dt.date, minute: int) -> dt.datetime:
        midnight = dt.datetime.combine(day, dt.time(), self.zone)
        return (midnight + dt.timedelta(minutes=minute)).astimezone(UTC)

    def closes(self, now: dt.datetime) -> dt.datetime:
        """When the window open at ``now`` closes (UTC); ``now`` must be inside it."""
        local = as_utc(now).astimezone(self.zone)
        day = local.date()
        if self._wraps() and local.hour * 60 + local.minute >= self.start_minute:
            day += dt.timedelta(days=1)
        return self._at(day, self.end_minute)

    def next_opening(self, now: dt.datetime) -> dt.datetime:
        """The first opening after ``now`` (UTC)."""
        local = as_utc(now).astimezone(self.zone)
        for n in range(8):
            day = local.date() + dt.timedelta(days=n)
            at = self._at(day, self.start_minute)
            if day.weekday() in self.days and at > now:
                return at
        raise ValueError("a window opens at least once a week")  # days is never empty

    def describe(self) -> str:
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days))
        hours = f"{_clock(self.start_minute)}-{_clock(self.end_minute)}"
        return f"{days} {hours} {self.tz}"


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True)
class SmtpSettings:
    """Email: one connection per run, STARTTLS by default, credentials from the
    environment (both variables set: AUTH; neither: none)."""

    host: str
    sender: str
    port: int = 587
    tls: str = "starttls"  # starttls | ssl (implicit TLS, port 465) | none (a local relay)
    username_env: str = "AWSOPS_SMTP_USERNAME"
    password_env: str = "AWSOPS_SMTP_PASSWORD"
    default_domain: str | None = None  # owners that are user names: name@default_domain
    ca_file: str | None = None  # a private CA for the server's certificate
    timeout: float = 30.0


@dataclass(frozen=True)
class WebhookSettings:
    """A Slack-compatible incoming webhook (``{"text": ...}``)."""

    url: str | None = None
    url_env: str | None = None  # the URL is a secret: prefer an environment variable
    timeout: float = 10.0


@dataclass(frozen=True)
class SnsSettings:
    topic_arn: str

    @property
    def region(self) -> str:
        m = SNS_ARN_RE.match(self.topic_arn)
        assert m is not None  # checked when read
        return m.group(1)


@dataclass(frozen=True)
class ReportSettings:
    """Each run's notices as one JSON and one markdown file in ``directory``."""

    directory: str


@dataclass(frozen=True)
class NotifySettings:
    smtp: SmtpSettings | None = None
    webhook: WebhookSettings | None = None
    sns: SnsSettings | None = None
    report: ReportSettings | None = None

    @property
    def configured(self) -> tuple[str, ...]:
        return tuple(n for n in ("smtp", "webhook", "sns", "report") if getattr(self, n))


@dataclass(frozen=True)
class MarkSettings:
    grace_days: float = DEFAULT_GRACE_DAYS
    final_notice_days: int = DEFAULT_FINAL_NOTICE_DAYS
    owner_tags: tuple[str, ...] = DEFAULT_OWNER_TAGS
    owner_from_cloudtrail: bool = False
    fallback_owner: str | None = None
    window: Window | None = None
    notify: NotifySettings = field(default_factory=NotifySettings)
    require_notice: bool = True  # plan --marked acts only on marks a notice went out about


class _Section:
    """One mapping of the file: typed reads with one-line errors, unknown keys refused."""

    def __init__(self, raw: Any, path: Path, name: str, known: tuple[str, ...]) -> None:
        self.path, self.name = path, name
        if not isinstance(raw, Mapping):
            self.fail("", "must be a mapping")
        unknown = sorted(map(str, set(raw) - set(known)))
        if unknown:
            self.fail("", f"unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
        self.raw: Mapping[str, Any] = raw

    def fail(self, key: str, msg: str) -> NoReturn:
        where = f"{self.name}.{key}" if key else self.name
        raise UsageError(f"{self.path}: {where} {msg}")

    def text(self, key: str, default: str | None = None, required: bool = False) -> Any:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return default
        if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value):
            self.fail(key, "must be a non-empty string")
        return str(value)

    def number(self, key: str, default: float, top: float, whole: bool = False) -> Any:
        value = self.raw.get(key, default)
        kinds = (int,) if whole else (int, float)
        if type(value) not in kinds or not math.isfinite(value) or not 0 < value <= top:
            what = "a whole number" if whole else "a number"
            self.fail(key, f"must be {what} greater than 0 and at most {top:g}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
        return bool(value)

    def section(self, key: str, known: tuple[str, ...]) -> _Section | None:
        value = self.raw.get(key)
        return None if value is None else _Section(value, self.path, f"{self.name}.{key}", known)


def _days(text: str, sec: _Section) -> frozenset[int]:
    out: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e not in DAY_NAMES for e in ends):
            sec.fail("days", f"{text!r}: use day names like mon-fri or sat,sun")
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        out.update((first + n) % 7 for n in range((last - first) % 7 + 1))
    return frozenset(out)


def _window(sec: _Section) -> Window:
    days = sec.raw.get("days", "mon-sun")
    if isinstance(days, list):
        days = ",".join(map(str, days))
    hours = str(sec.text("hours", "00-24"))
    m = _HOURS_RE.match(hours.replace(" ", ""))
    minutes = [int(m.group(n)) * 60 + int(m.group(n + 1) or 0) for n in (1, 3)] if m else []
    if not m or max(minutes) > 1440 or minutes[0] in (minutes[1], 1440):
        sec.fail("hours", f'{hours!r}: use local hours like "09-17" or "22:30-06:00"')
    tz = str(sec.text("tz", "UTC"))
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        sec.fail("tz", f"{tz!r} is not a time zone name (e.g. Europe/Berlin)")
    return Window(_days(str(days), sec), minutes[0], minutes[1], tz)


def _notify(sec: _Section) -> NotifySettings:
    smtp = sec.section("smtp", SMTP_KEYS)
    webhook = sec.section("webhook", ("url", "url_env", "timeout"))
    sns = sec.section("sns", ("topic_arn",))
    report = sec.section("report", ("dir",))
    out = NotifySettings()
    if smtp is not None:
        tls = smtp.text("tls", "starttls")
        if tls not in TLS_MODES:
            smtp.fail("tls", f"must be one of {', '.join(TLS_MODES)}")
        out = NotifySettings(
            smtp=SmtpSettings(
                host=smtp.text("host", required=True),
                sender=smtp.text("from", required=True),
                port=smtp.number("port", 465 if tls == "ssl" else 587, 65535, whole=True),
                tls=tls,
                username_env=smtp.text("username_env", "AWSOPS_SMTP_USERNAME"),
                password_env=smtp.text("password_env", "AWSOPS_SMTP_PASSWORD"),
                default_domain=smtp.text("default_domain"),
                ca_file=smtp.text("ca_file"),
                timeout=float(smtp.number("timeout", 30.0, 600.0)),
            )
        )
    if webhook is not None:
        url, url_env = webhook.text("url"), webhook.text("url_env")
        if (url is None) == (url_env is None):
            webhook.fail("", "needs one of url or url_env")
        if url is not None and not str(url).startswith(("https://", "http://")):
            webhook.fail("url", "must be an http(s) URL")
        timeout = float(webhook.number("timeout", 10.0, 600.0))
        out = replace(out, webhook=WebhookSettings(url, url_env, timeout))
    if sns is not None:
        arn = sns.text("topic_arn", required=True)
        if not SNS_ARN_RE.match(arn):
            sns.fail("topic_arn", f"{arn!r} is not an SNS topic ARN")
        out = replace(out, sns=SnsSettings(arn))
    if report is not None:
        out = replace(out, report=ReportSettings(report.text("dir", required=True)))
    return out


def parse_mark_settings(raw: Any, path: Path) -> MarkSettings:
    """The ``marks:`` section of the config file at ``path``."""
    sec = _Section(raw, path, "marks", MARKS_KEYS)
    tags = sec.raw.get("owner_tags", list(DEFAULT_OWNER_TAGS))
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        sec.fail("owner_tags", "must be a list of tag keys")
    window = sec.section("window", ("days", "hours", "tz"))
    notify = sec.section("notify", ("smtp", "webhook", "sns", "report"))
    return MarkSettings(
        grace_days=float(sec.number("grace_days", DEFAULT_GRACE_DAYS, 3650.0)),
        final_notice_days=int(
            sec.number("final_notice_days", DEFAULT_FINAL_NOTICE_DAYS, 365, True)
        ),
        owner_tags=tuple(tags),
        owner_from_cloudtrail=sec.flag("owner_from_cloudtrail", False),
        fallback_owner=sec.text("fallback_owner"),
        window=_window(window) if window is not None else None,
        notify=_notify(notify) if notify is not None else NotifySettings(),
        require_notice=sec.flag("require_notice", True),
    )
