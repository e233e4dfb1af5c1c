"""The mark and opt-out tags, and the rules that read them: dates are UTC whatever the
host's zone, a date alone is the end of that day, an unreadable opt-out still keeps."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time

import pytest

from awsops.clock import as_utc, iso_utc
from awsops.decommission.marktags import (
    MARK_TAG,
    MAX_TAG_VALUE,
    check_tag,
    mark_value,
    opt_out,
    parse_instant,
    read_mark,
)
from awsops.decommission.model import InstanceFacts, PlanCriteria, SkipReason, Volume
from awsops.decommission.rules import decide

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
CRITERIA = PlanCriteria(older_than_days=30, protect_tags=("awsops:protect",))


def facts(**tags: str) -> InstanceFacts:
    return InstanceFacts(
        instance_id="i-0000000000000001",
        state="stopped",
        stop_time=NOW - dt.timedelta(days=45),
        stop_source="state-transition-reason",
        launch_time=None,
        tags={"Name": "web", **tags},
        volumes=(Volume("vol-1", "/dev/xvda", True, 8, "gp3"),),
        termination_protection=False,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-06-15T09:00:00Z", dt.datetime(2026, 6, 15, 9, tzinfo=UTC)),
        ("2026-06-15T09:00Z", dt.datetime(2026, 6, 15, 9, tzinfo=UTC)),
        ("2026-06-15 09:00:00", dt.datetime(2026, 6, 15, 9, tzinfo=UTC)),  # no zone: UTC
        ("2026-06-15T11:00:00+02:00", dt.datetime(2026, 6, 15, 9, tzinfo=UTC)),
        ("2026-06-15T11:00:00+0200", dt.datetime(2026, 6, 15, 9, tzinfo=UTC)),
        ("2026-06-15T09:00:00.250Z", dt.datetime(2026, 6, 15, 9, 0, 0, 250000, tzinfo=UTC)),
        (" 2026-06-15 ", dt.datetime(2026, 6, 16, tzinfo=UTC)),  # the end of that day
        ("2026-02-30", None),
        ("9999-12-31", None),  # its end overflows
        ("2026/06/15", None),
        ("terminate@2026/12/01", None),
        ("", None),
        ("tomorrow", None),
    ],
)
def test_parse_instant(value: str, expected: dt.datetime | None) -> None:
    got = parse_instant(value)
    assert got == expected
    if got is not None:
        assert got.tzinfo is not None and got.utcoffset() == dt.timedelta(0)


def test_dates_do_not_depend_on_the_hosts_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    values = ["2026-06-15", "2026-06-15 09:00", "2026-06-15T09:00:00Z"]
    before = [parse_instant(v) for v in values]
    for zone in ("Pacific/Kiritimati", "America/Adak"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        assert [parse_instant(v) for v in values] == before
    monkeypatch.delenv("TZ")
    time.tzset()
    assert "TZ" not in os.environ


def test_mark_value_is_utc_whole_seconds_and_reads_back() -> None:
    at = dt.datetime(2026, 6, 15, 11, 0, 0, 999999, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    value = mark_value(at)
    assert value == "2026-06-15T09:00:00Z"
    mark = read_mark({MARK_TAG: value})
    assert mark is not None and mark.at == dt.datetime(2026, 6, 15, 9, tzinfo=UTC)
    assert not mark.due(mark.at - dt.timedelta(seconds=1)) and mark.due(mark.at)


def test_unreadable_mark_is_never_due() -> None:
    mark = read_mark({MARK_TAG: "Resource does not meet policy: terminate@2026/12/01"})
    assert mark is not None and not mark.readable
    assert not mark.due(dt.datetime(2100, 1, 1, tzinfo=UTC))
    assert read_mark({"Name": "x"}) is None


def test_naive_times_are_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        as_utc(dt.datetime(2026, 6, 1, 12))
    with pytest.raises(ValueError):
        iso_utc(dt.datetime(2026, 6, 1, 12))


def test_tag_limits() -> None:
    check_tag(MARK_TAG, "x" * MAX_TAG_VALUE)
    with pytest.raises(ValueError, match="256"):
        check_tag(MARK_TAG, "x" * (MAX_TAG_VALUE + 1))
    with pytest.raises(ValueError, match="128"):
        check_tag("k" * 129, "v")


@pytest.mark.parametrize(
    ("tags", "kept"),
    [
        ({"awsops:keep": "TICKET-7"}, "TICKET-7"),
        ({"awsops:keep": ""}, "awsops:keep"),
        ({"AWSOPS:Keep": "yes"}, "AWSOPS:Keep=yes"),
        ({"awsops:keep-until": "2026-06-01"}, "kept until 2026-06-02T00:00:00Z"),  # all day
        ({"awsops:keep-until": "2026-06-01T12:00:01Z"}, "kept until"),
        ({"awsops:keep-until": "next quarter"}, "is not a date"),
        ({"awsops:keep-until": "2026-05-31"}, None),  # over: no longer an opt-out
        ({"awsops:keep-until": "2026-06-01T12:00:00Z"}, None),
        ({"keep": "yes"}, None),
    ],
)
def test_opt_out(tags: dict[str, str], kept: str | None) -> None:
    why = opt_out(tags, NOW)
    if kept is None:
        assert why is None
    else:
        assert why is not None and kept in why


def test_opt_out_is_a_skip_reason_of_every_plan_and_of_apply() -> None:
    d = decide(facts(**{"awsops:keep": "TICKET-7"}), "123456789012", CRITERIA, NOW)
    assert (d.terminate, d.reason) == (False, SkipReason.OPTED_OUT)
    # protection is the more fundamental reason when both apply
    both = facts(**{"awsops:keep": "x", "awsops:protect": "1"})
    assert decide(both, "123456789012", CRITERIA, NOW).reason == SkipReason.PROTECT_TAG
    expired = facts(**{"awsops:keep-until": "2026-05-01"})
    assert decide(expired, "123456789012", CRITERIA, NOW).terminate


@pytest.mark.parametrize(
    ("tags", "reason", "detail"),
    [
        ({}, SkipReason.NOT_MARKED, "no awsops:terminate-after"),
        ({MARK_TAG: "soon"}, SkipReason.NOT_MARKED, "is not a date"),
        ({MARK_TAG: "2026-06-01T12:00:01Z"}, SkipReason.MARK_NOT_DUE, "in 0.0 days"),
        ({MARK_TAG: "2026-06-01"}, SkipReason.MARK_NOT_DUE, "due 2026-06-02T00:00:00Z"),
        ({MARK_TAG: "2026-06-01T12:00:00Z"}, None, ""),
        ({MARK_TAG: "2026-05-01T00:00:00Z"}, None, ""),
    ],
)
def test_marked_plans_choose_only_due_marks(
    tags: dict[str, str], reason: str | None, detail: str
) -> None:
    marked = dataclasses.replace(CRITERIA, marked=True)
    d = decide(facts(**tags), "123456789012", marked, NOW)
    assert d.reason == reason and d.terminate == (reason is None)
    assert detail in d.detail
    # and the ordinary rules still come first: a due mark does not override them
    young = dataclasses.replace(facts(**tags), stop_time=NOW - dt.timedelta(days=3))
    assert decide(young, "123456789012", marked, NOW).reason == SkipReason.TOO_RECENT


def test_marked_criteria_round_trip_through_the_plan_file_form() -> None:
    marked = dataclasses.replace(CRITERIA, marked=True)
    assert PlanCriteria.from_json(marked.to_json()) == marked
    old = {k: v for k, v in CRITERIA.to_json().items() if k != "marked"}
    assert PlanCriteria.from_json(old).marked is False
