"""The ``marks:`` section of the decommission config, and the window's arithmetic
(local hours in a zone with summer time, windows past midnight)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from awsops.config import load_decommission_settings
from awsops.errors import UsageError
from awsops.markconfig import DEFAULT_OWNER_TAGS, MarkSettings, Window

UTC = dt.timezone.utc


def load(tmp_path: Path, marks: Any) -> MarkSettings:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"marks": marks}))
    return load_decommission_settings(path).marks


def test_defaults_without_a_marks_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("max_percent: 20\n")
    marks = load_decommission_settings(path).marks
    assert marks == MarkSettings()
    assert marks.grace_days == 14 and marks.final_notice_days == 3
    assert marks.owner_tags == DEFAULT_OWNER_TAGS == ("Owner", "owner", "CreatedBy", "Contact")
    assert marks.notify.configured == () and marks.window is None


def test_a_full_section(tmp_path: Path) -> None:
    marks = load(
        tmp_path,
        {
            "grace_days": 21,
            "final_notice_days": 5,
            "owner_tags": ["team-email"],
            "owner_from_cloudtrail": True,
            "fallback_owner": "cloud@example.com",
            "window": {"days": "mon-fri", "hours": "09-17", "tz": "Europe/Berlin"},
            "notify": {
                "smtp": {"host": "smtp.example.com", "from": "awsops@example.com"},
                "webhook": {"url_env": "HOOK"},
                "sns": {"topic_arn": "arn:aws:sns:eu-west-1:123456789012:decom"},
                "report": {"dir": "/var/lib/awsops/notices"},
            },
        },
    )
    assert (marks.grace_days, marks.final_notice_days) == (21.0, 5)
    assert marks.owner_tags == ("team-email",) and marks.owner_from_cloudtrail
    assert marks.window == Window(frozenset(range(5)), 9 * 60, 17 * 60, "Europe/Berlin")
    smtp = marks.notify.smtp
    assert smtp is not None and (smtp.port, smtp.tls) == (587, "starttls")
    assert smtp.username_env == "AWSOPS_SMTP_USERNAME"
    assert marks.notify.sns is not None and marks.notify.sns.region == "eu-west-1"
    assert marks.notify.configured == ("smtp", "webhook", "sns", "report")


@pytest.mark.parametrize(
    ("marks", "needle"),
    [
        ({"grace": 14}, "marks unknown key(s) grace"),
        ({"grace_days": 0}, "marks.grace_days must be a number greater than 0"),
        ({"final_notice_days": 2.5}, "marks.final_notice_days must be a whole number"),
        ({"owner_tags": "Owner"}, "marks.owner_tags must be a list"),
        ({"owner_from_cloudtrail": "yes"}, "must be true or false"),
        ({"window": {"days": "weekdays"}}, "marks.window.days 'weekdays'"),
        ({"window": {"hours": "9-9"}}, "marks.window.hours"),
        ({"window": {"hours": "09-25"}}, "marks.window.hours"),
        ({"window": {"tz": "Mars/Olympus"}}, "marks.window.tz 'Mars/Olympus'"),
        ({"window": {"tz": "../../etc/passwd"}}, "marks.window.tz"),
        ({"notify": {"email": {}}}, "marks.notify unknown key(s) email"),
        ({"notify": {"smtp": {"host": "h"}}}, "marks.notify.smtp.from is required"),
        ({"notify": {"smtp": {"host": "h", "from": "f", "tls": "yes"}}}, "tls must be one of"),
        ({"notify": {"smtp": {"host": "h", "from": "f", "port": 0}}}, "smtp.port"),
        ({"notify": {"smtp": {"host": "h", "from": "f", "password": "x"}}}, "unknown key"),
        ({"notify": {"webhook": {}}}, "needs one of url or url_env"),
        ({"notify": {"webhook": {"url": "a", "url_env": "B"}}}, "needs one of url"),
        ({"notify": {"webhook": {"url": "ftp://x"}}}, "must be an http(s) URL"),
        ({"notify": {"sns": {"topic_arn": "decom"}}}, "is not an SNS topic ARN"),
        ({"notify": {"report": {}}}, "marks.notify.report.dir is required"),
        ("yes", "marks must be a mapping"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(
    tmp_path: Path, marks: Any, needle: str
) -> None:
    with pytest.raises(UsageError) as err:
        load(tmp_path, marks)
    assert needle in str(err.value) and str(tmp_path / "c.yaml") in str(err.value)
    assert "\n" not in str(err.value)


def window(days: str = "mon-fri", hours: str = "09-17", tz: str = "Europe/Berlin") -> Window:
    from awsops.markconfig import _Section, _window

    sec = _Section(
        {"days": days, "hours": hours, "tz": tz}, Path("c.yaml"), "w", ("days", "hours", "tz")
    )
    return _window(sec)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def test_business_hours_in_berlin_across_summer_time() -> None:
    w = window()
    # Monday 2026-03-30 (summer time, UTC+2): 09:00 Berlin is 07:00 UTC
    assert not w.contains(at("2026-03-30T06:59:00+00:00"))
    assert w.contains(at("2026-03-30T07:00:00+00:00"))
    assert w.closes(at("2026-03-30T10:00:00+00:00")) == at("2026-03-30T15:00:00+00:00")
    # Monday 2026-01-05 (winter time, UTC+1)
    assert w.contains(at("2026-01-05T08:00:00+00:00"))
    assert not w.contains(at("2026-01-05T16:00:00+00:00"))
    # Saturday: closed; it opens again on Monday at 09:00 Berlin
    sat = at("2026-01-10T10:00:00+00:00")
    assert not w.contains(sat)
    assert w.next_opening(sat) == at("2026-01-12T08:00:00+00:00")
    assert w.describe() == "mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin"


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    w = window("fri", "22-06", "UTC")
    assert w.contains(at("2026-01-09T23:00:00+00:00"))  # Friday night
    assert w.contains(at("2026-01-10T05:59:00+00:00"))  # Saturday morning, still Friday's
    assert not w.contains(at("2026-01-10T06:00:00+00:00"))
    assert not w.contains(at("2026-01-10T23:00:00+00:00"))  # Saturday night
    assert not w.contains(at("2026-01-09T05:00:00+00:00"))  # Friday morning is Thursday's
    assert w.closes(at("2026-01-09T23:00:00+00:00")) == at("2026-01-10T06:00:00+00:00")
    assert w.closes(at("2026-01-10T01:00:00+00:00")) == at("2026-01-10T06:00:00+00:00")


def test_day_lists_and_ranges_that_wrap() -> None:
    assert window("fri-mon").days == frozenset({4, 5, 6, 0})
    assert window("sat, sun").days == frozenset({5, 6})
    assert window("mon-sun", "00-24").contains(at("2026-01-10T12:00:00+00:00"))
