"""The decision rules to the letter: every decision carries the instance it is about and
its exact detail (what a reviewer reads in the plan), exclusion by tag matches the value
asked for (``*``: any value, only when the tag is there), and ages are counted in days
of 86,400 seconds however long ago the stop or however far off the mark."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from tests.unit.test_rules import ACCOUNT, CRITERIA, NOW, facts

from awsops.decommission.marktags import KEEP_TAG, KEEP_UNTIL_TAG, MARK_TAG
from awsops.decommission.model import InstanceFacts, PlanCriteria, SkipReason
from awsops.decommission.rules import decide, excluded_by_config

MARKED = dataclasses.replace(CRITERIA, marked=True)


@pytest.mark.parametrize(
    ("f", "criteria", "reason", "detail"),
    [
        (
            facts(),
            dataclasses.replace(CRITERIA, exclude_instance_ids=("i-0000000000000001",)),
            SkipReason.EXCLUDED,
            "instance id listed in exclude_instance_ids",
        ),
        (
            facts(tags={"Name": "x", KEEP_TAG: "until-q3"}),
            CRITERIA,
            SkipReason.OPTED_OUT,
            f"tag {KEEP_TAG}=until-q3",
        ),
        (
            facts(tags={"Name": "x", KEEP_UNTIL_TAG: "2026-07-01"}),
            CRITERIA,
            SkipReason.OPTED_OUT,
            f"tag {KEEP_UNTIL_TAG}=2026-07-01 (kept until 2026-07-02T00:00:00Z)",
        ),
        (
            facts(termination_protection=None),
            CRITERIA,
            SkipReason.TERMINATION_PROTECTION,
            "termination protection could not be checked",
        ),
        (
            facts(stop_time=None, stop_source="unknown"),
            CRITERIA,
            SkipReason.STOP_TIME_UNKNOWN,
            "no date in StateTransitionReason (try --cloudtrail)",
        ),
        (
            facts(stop_time=None, stop_source="unknown"),
            dataclasses.replace(CRITERIA, cloudtrail=True),
            SkipReason.STOP_TIME_UNKNOWN,
            "no date in StateTransitionReason and none found in CloudTrail",
        ),
        (facts(), MARKED, SkipReason.NOT_MARKED, f"no {MARK_TAG} tag"),
        (
            facts(tags={"Name": "x", MARK_TAG: "soon"}),
            MARKED,
            SkipReason.NOT_MARKED,
            f"{MARK_TAG}='soon' is not a date",
        ),
        (
            facts(tags={"Name": "x", MARK_TAG: "2038-11-16"}),
            MARKED,
            SkipReason.MARK_NOT_DUE,
            # the end of that day: 4,551.5 days of 86,400 s (of 86,401 s: 4551.4)
            "due 2038-11-17T00:00:00Z (in 4551.5 days)",
        ),
    ],
    ids=[
        "excluded-id",
        "keep",
        "keep-until",
        "protection-unknown",
        "stop-unknown",
        "stop-unknown-cloudtrail",
        "not-marked",
        "mark-not-a-date",
        "mark-not-due",
    ],
)
def test_each_decision_names_its_instance_and_says_exactly_why(
    f: InstanceFacts, criteria: PlanCriteria, reason: str, detail: str
) -> None:
    d = decide(f, ACCOUNT, criteria, NOW)
    assert (d.facts, d.terminate, d.reason, d.detail) == (f, False, reason, detail)


def test_a_chosen_instance_is_named_with_its_age_in_days() -> None:
    f = facts(stop_time=NOW - dt.timedelta(days=4_549, hours=12))
    d = decide(f, ACCOUNT, CRITERIA, NOW)
    assert (d.facts, d.terminate, d.reason) == (f, True, None)
    assert d.detail == "stopped 4549.5 days ago (state-transition-reason)"
    due = facts(tags={"Name": "x", MARK_TAG: "2026-05-31"})
    d = decide(due, ACCOUNT, MARKED, NOW)
    assert (d.facts, d.terminate, d.detail) == (
        due,
        True,
        "stopped 45.0 days ago (state-transition-reason)",
    )


@pytest.mark.parametrize(
    ("tags", "exclude", "excluded"),
    [
        ({"env": "prod"}, {"env": "prod"}, True),
        ({"env": "dev"}, {"env": "prod"}, False),
        ({}, {"env": "prod"}, False),
        ({"env": "dev"}, {"env": "*"}, True),
        ({"env": ""}, {"env": "*"}, True),
        ({}, {"env": "*"}, False),
        ({"team": "a"}, {"env": "*"}, False),
    ],
)
def test_exclude_tags_match_the_value_asked_for_and_star_only_a_tag_that_is_there(
    tags: dict[str, str], exclude: dict[str, str], excluded: bool
) -> None:
    criteria = dataclasses.replace(CRITERIA, exclude_tags=exclude)
    why = excluded_by_config(facts(tags=tags), criteria)
    assert (why is not None) == excluded, why
    d = decide(facts(tags=tags), ACCOUNT, criteria, NOW)
    assert d.terminate is not excluded
