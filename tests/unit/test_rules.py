"""The pure decision rules: one test per skip reason, precedence, and a property over
random facts that "terminate" is only ever decided when every rule holds."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from awsops.decommission.model import InstanceFacts, PlanCriteria, SkipReason, Volume
from awsops.decommission.rules import (
    ASG_TAG,
    account_allowed,
    decide,
    eligible_before_attributes,
    protection_tag,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
CRITERIA = PlanCriteria(older_than_days=30, protect_tags=("awsops:protect", "DoNotDelete"))


def facts(**overrides: Any) -> InstanceFacts:
    """A stopped instance that every rule accepts, with ``overrides``."""
    base = InstanceFacts(
        instance_id="i-0000000000000001",
        state="stopped",
        stop_time=NOW - dt.timedelta(days=45),
        stop_source="state-transition-reason",
        launch_time=NOW - dt.timedelta(days=400),
        tags={"Name": "web-1", "team": "a"},
        volumes=(Volume("vol-1", "/dev/xvda", True, 8, "gp3"),),
        availability_zone="us-east-1a",
        instance_type="t3.micro",
        termination_protection=False,
        asg_name=None,
    )
    return dataclasses.replace(base, **overrides)


def test_baseline_is_chosen() -> None:
    d = decide(facts(), ACCOUNT, CRITERIA, NOW)
    assert d.terminate is True and d.reason is None
    assert "45.0 days" in d.detail and "state-transition-reason" in d.detail
    assert eligible_before_attributes(facts(), ACCOUNT, CRITERIA, NOW) is None


@pytest.mark.parametrize(
    ("f", "criteria", "reason", "detail"),
    [
        (
            facts(),
            dataclasses.replace(CRITERIA, account_denylist=(ACCOUNT,)),
            SkipReason.ACCOUNT_EXCLUDED,
            "account_denylist",
        ),
        (
            facts(),
            dataclasses.replace(CRITERIA, account_allowlist=("999999999999",)),
            SkipReason.ACCOUNT_EXCLUDED,
            "not in account_allowlist",
        ),
        (
            facts(),
            dataclasses.replace(CRITERIA, exclude_instance_ids=("i-0000000000000001",)),
            SkipReason.EXCLUDED,
            "exclude_instance_ids",
        ),
        (
            facts(),
            dataclasses.replace(CRITERIA, exclude_tags={"team": "a"}),
            SkipReason.EXCLUDED,
            "team=a",
        ),
        (
            facts(),
            dataclasses.replace(CRITERIA, exclude_tags={"team": "*"}),
            SkipReason.EXCLUDED,
            "exclude_tags",
        ),
        (
            facts(tags={"Name": "x", "awsops:protect": "true"}),
            CRITERIA,
            SkipReason.PROTECT_TAG,
            "awsops:protect",
        ),
        (
            facts(termination_protection=True),
            CRITERIA,
            SkipReason.TERMINATION_PROTECTION,
            "DisableApiTermination",
        ),
        (facts(asg_name="web-asg"), CRITERIA, SkipReason.AUTO_SCALING, "web-asg"),
        (facts(tags={ASG_TAG: "tagged-asg"}), CRITERIA, SkipReason.AUTO_SCALING, "tagged-asg"),
        (facts(state="running"), CRITERIA, SkipReason.NOT_STOPPED, "running"),
        (facts(state="stopping"), CRITERIA, SkipReason.NOT_STOPPED, "stopping"),
        (
            facts(stop_time=None, stop_source="unknown"),
            CRITERIA,
            SkipReason.STOP_TIME_UNKNOWN,
            "--cloudtrail",
        ),
        (
            facts(stop_time=None, stop_source="unknown"),
            dataclasses.replace(CRITERIA, cloudtrail=True),
            SkipReason.STOP_TIME_UNKNOWN,
            "CloudTrail",
        ),
        (
            facts(stop_time=NOW - dt.timedelta(days=3)),
            CRITERIA,
            SkipReason.TOO_RECENT,
            "3.0 days",
        ),
    ],
)
def test_each_skip_reason(
    f: InstanceFacts, criteria: PlanCriteria, reason: str, detail: str
) -> None:
    d = decide(f, ACCOUNT, criteria, NOW)
    assert d.terminate is False
    assert d.reason == reason
    assert detail in d.detail
    assert d.facts is f


def test_every_skip_reason_is_covered() -> None:
    seen = {
        decide(f, ACCOUNT, c, NOW).reason
        for f, c in [
            (facts(), dataclasses.replace(CRITERIA, account_denylist=(ACCOUNT,))),
            (facts(), dataclasses.replace(CRITERIA, exclude_instance_ids=(facts().instance_id,))),
            (facts(tags={"DoNotDelete": "1"}), CRITERIA),
            (facts(termination_protection=True), CRITERIA),
            (facts(asg_name="g"), CRITERIA),
            (facts(state="pending"), CRITERIA),
            (facts(stop_time=None), CRITERIA),
            (facts(stop_time=NOW), CRITERIA),
            (facts(tags={"awsops:keep": "TICKET-1"}), CRITERIA),
            (facts(), dataclasses.replace(CRITERIA, marked=True)),
            (
                facts(tags={"awsops:terminate-after": "2026-06-02T00:00:00Z"}),
                dataclasses.replace(CRITERIA, marked=True),
            ),
        ]
    }
    # owner-not-notified is the planner's, from the notices log (tests/integration)
    assert seen | {SkipReason.NOT_NOTIFIED} == set(SkipReason.ALL)


def test_protection_tag_keys_compare_case_insensitively() -> None:
    for key in ("donotdelete", "DONOTDELETE", "DoNotDelete", "AWSOPS:PROTECT"):
        f = facts(tags={key: ""})
        assert protection_tag(f, CRITERIA.protect_tags) == key
        d = decide(f, ACCOUNT, CRITERIA, NOW)
        assert d.reason == SkipReason.PROTECT_TAG and key in d.detail
    # a tag *value* that names a protect tag protects nothing
    assert protection_tag(facts(tags={"note": "DoNotDelete"}), CRITERIA.protect_tags) is None


def test_threshold_boundary() -> None:
    exactly = facts(stop_time=NOW - dt.timedelta(days=30))
    just_under = facts(stop_time=NOW - dt.timedelta(days=30) + dt.timedelta(seconds=1))
    assert decide(exactly, ACCOUNT, CRITERIA, NOW).terminate is True
    assert decide(just_under, ACCOUNT, CRITERIA, NOW).reason == SkipReason.TOO_RECENT


def test_fractional_threshold_in_hours() -> None:
    criteria = dataclasses.replace(CRITERIA, older_than_days=36 / 24)
    assert decide(facts(stop_time=NOW - dt.timedelta(hours=37)), ACCOUNT, criteria, NOW).terminate
    d = decide(facts(stop_time=NOW - dt.timedelta(hours=35)), ACCOUNT, criteria, NOW)
    assert d.reason == SkipReason.TOO_RECENT


# --- precedence ---------------------------------------------------------------------------


def test_protect_tag_beats_too_recent() -> None:
    f = facts(tags={"awsops:protect": "yes"}, stop_time=NOW - dt.timedelta(days=1))
    assert decide(f, ACCOUNT, CRITERIA, NOW).reason == SkipReason.PROTECT_TAG


def test_precedence_order() -> None:
    everything_wrong = facts(
        tags={"awsops:protect": "yes", "team": "a", ASG_TAG: "g"},
        asg_name="g",
        state="running",
        stop_time=None,
        termination_protection=True,
    )
    criteria = dataclasses.replace(
        CRITERIA, account_denylist=(ACCOUNT,), exclude_tags={"team": "a"}
    )
    expected = [
        SkipReason.ACCOUNT_EXCLUDED,
        SkipReason.EXCLUDED,
        SkipReason.PROTECT_TAG,
        SkipReason.AUTO_SCALING,
        SkipReason.NOT_STOPPED,
        SkipReason.STOP_TIME_UNKNOWN,
        SkipReason.TERMINATION_PROTECTION,
    ]
    f, c = everything_wrong, criteria
    fixes = [
        lambda f, c: (f, dataclasses.replace(c, account_denylist=())),
        lambda f, c: (f, dataclasses.replace(c, exclude_tags={})),
        lambda f, c: (dataclasses.replace(f, tags={ASG_TAG: "g"}), c),
        lambda f, c: (dataclasses.replace(f, tags={}, asg_name=None), c),
        lambda f, c: (dataclasses.replace(f, state="stopped"), c),
        lambda f, c: (dataclasses.replace(f, stop_time=NOW - dt.timedelta(days=99)), c),
        lambda f, c: (dataclasses.replace(f, termination_protection=False), c),
    ]
    for want, fix in zip(expected, fixes, strict=True):
        assert decide(f, ACCOUNT, c, NOW).reason == want
        f, c = fix(f, c)
    assert decide(f, ACCOUNT, c, NOW).terminate is True


def test_denylist_beats_allowlist() -> None:
    c = dataclasses.replace(CRITERIA, account_allowlist=(ACCOUNT,), account_denylist=(ACCOUNT,))
    assert "account_denylist" in (account_allowed(ACCOUNT, c) or "")
    assert account_allowed(ACCOUNT, dataclasses.replace(c, account_denylist=())) is None


def test_launched_long_ago_but_stopped_yesterday_is_not_chosen() -> None:
    f = facts(
        launch_time=NOW - dt.timedelta(days=400),
        stop_time=NOW - dt.timedelta(days=1),
    )
    d = decide(f, ACCOUNT, CRITERIA, NOW)
    assert d.terminate is False and d.reason == SkipReason.TOO_RECENT


def test_launched_long_ago_with_unknown_stop_time_is_not_chosen() -> None:
    f = facts(launch_time=NOW - dt.timedelta(days=4000), stop_time=None, stop_source="unknown")
    d = decide(f, ACCOUNT, CRITERIA, NOW)
    assert d.terminate is False and d.reason == SkipReason.STOP_TIME_UNKNOWN


def test_unknown_termination_protection_is_never_chosen() -> None:
    f = facts(termination_protection=None)
    assert eligible_before_attributes(f, ACCOUNT, CRITERIA, NOW) is None  # still a candidate
    d = decide(f, ACCOUNT, CRITERIA, NOW)
    assert d.terminate is False
    assert d.reason == SkipReason.TERMINATION_PROTECTION
    assert "could not be checked" in d.detail


# --- property -----------------------------------------------------------------------------

_ACCOUNTS = ["111111111111", "222222222222", "333333333333"]
_IDS = ["i-a", "i-b", "i-c"]
_TAG_KEYS = [
    "Name",
    "team",
    "awsops:protect",
    "AWSOPS:PROTECT",
    "DoNotDelete",
    "donotdelete",
    ASG_TAG,
]

_tags = st.dictionaries(
    st.sampled_from(_TAG_KEYS), st.sampled_from(["", "a", "yes", "*"]), max_size=3
)
_when = st.datetimes(
    min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 12, 31), timezones=st.just(UTC)
)


def _mostly(good: Any, bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, so that chosen instances are common."""
    return st.one_of(st.just(good), st.just(good), st.just(good), bad)


@st.composite
def _facts(draw: st.DrawFn, now: dt.datetime) -> InstanceFacts:
    age = st.timedeltas(min_value=dt.timedelta(days=-2), max_value=dt.timedelta(days=800))
    return InstanceFacts(
        instance_id=draw(st.sampled_from(_IDS)),
        state=draw(_mostly("stopped", st.sampled_from(["running", "stopping", "terminated"]))),
        stop_time=draw(
            st.one_of(age, age, age, st.none()).map(lambda a: None if a is None else now - a)
        ),
        stop_source="state-transition-reason",
        launch_time=draw(st.none() | _when),
        tags=draw(_mostly({"Name": "x"}, _tags)),
        volumes=(),
        termination_protection=draw(_mostly(False, st.sampled_from([None, True]))),
        asg_name=draw(_mostly(None, st.just("asg-1"))),
    )


def _some(values: list[str]) -> st.SearchStrategy[tuple[str, ...]]:
    return _mostly((), st.lists(st.sampled_from(values), max_size=2).map(tuple))


@st.composite
def _criteria(draw: st.DrawFn) -> PlanCriteria:
    return PlanCriteria(
        older_than_days=draw(st.floats(min_value=0.01, max_value=500)),
        protect_tags=tuple(
            draw(st.lists(st.sampled_from(["awsops:protect", "DoNotDelete", "Keep"]), max_size=3))
        ),
        account_allowlist=draw(_some(_ACCOUNTS)),
        account_denylist=draw(_some(_ACCOUNTS)),
        exclude_instance_ids=draw(_some(_IDS)),
        exclude_tags=draw(
            _mostly(
                {},
                st.dictionaries(
                    st.sampled_from(["team", "Name"]), st.sampled_from(["a", "x", "*"]), max_size=1
                ),
            )
        ),
        cloudtrail=draw(st.booleans()),
    )


@st.composite
def _case(draw: st.DrawFn) -> tuple[InstanceFacts, str, PlanCriteria, dt.datetime]:
    now = draw(_when)
    return draw(_facts(now)), draw(st.sampled_from(_ACCOUNTS)), draw(_criteria()), now


_FIND = settings(database=None, phases=[Phase.generate])


def test_the_property_strategies_reach_both_outcomes() -> None:
    """The property below is only meaningful if its inputs are sometimes chosen."""
    chosen = find(_case(), lambda c: decide(*c).terminate, settings=_FIND)
    assert decide(*chosen).terminate
    skipped = find(_case(), lambda c: not decide(*c).terminate, settings=_FIND)
    assert not decide(*skipped).terminate


@settings(max_examples=250, deadline=None)
@given(case=_case())
def test_terminate_implies_every_rule_holds(
    case: tuple[InstanceFacts, str, PlanCriteria, dt.datetime],
) -> None:
    f, account, criteria, now = case
    d = decide(f, account, criteria, now)
    if d.terminate:
        assert d.reason is None
        assert f.state == "stopped"
        assert f.stop_time is not None
        assert (now - f.stop_time) >= dt.timedelta(days=criteria.older_than_days)
        lowered = {k.lower() for k in f.tags}
        assert not any(t.lower() in lowered for t in criteria.protect_tags)
        assert f.termination_protection is False
        assert f.asg_name is None and ASG_TAG not in f.tags
        assert account not in criteria.account_denylist
        assert not criteria.account_allowlist or account in criteria.account_allowlist
        assert f.instance_id not in criteria.exclude_instance_ids
        for key, value in criteria.exclude_tags.items():
            assert key not in f.tags or (value != "*" and f.tags[key] != value)
    else:
        assert d.reason in SkipReason.ALL
        assert d.detail


@settings(max_examples=120, deadline=None)
@given(case=_case())
def test_early_skip_agrees_with_decide(
    case: tuple[InstanceFacts, str, PlanCriteria, dt.datetime],
) -> None:
    f, account, criteria, now = case
    early = eligible_before_attributes(f, account, criteria, now)
    full = decide(f, account, criteria, now)
    if early is not None:
        assert full == early
    else:
        assert full.terminate == (f.termination_protection is False)
