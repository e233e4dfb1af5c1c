"""The decision for one instance: terminate, or a skip reason. Pure: no I/O, no clock.

The checks run in a fixed order and the first that applies wins, so each skipped
instance carries the most fundamental reason it must stay. An instance is chosen only
if every check passes, including the two facts that cost an API call
(termination protection and Auto Scaling membership): when either is unknown the
instance is skipped, never chosen.
"""

from __future__ import annotations

import datetime as dt

from awsops.clock import iso_utc
from awsops.decommission.marktags import MARK_TAG, opt_out, read_mark
from awsops.decommission.model import Decision, InstanceFacts, PlanCriteria, SkipReason

ASG_TAG = "aws:autoscaling:groupName"


def protection_tag(facts: InstanceFacts, protect_tags: tuple[str, ...]) -> str | None:
    """The first protection tag key present on the instance (any value; keys compare
    case-insensitively because people write DoNotDelete and donotdelete alike)."""
    keys = {k.lower(): k for k in facts.tags}
    for tag in protect_tags:
        if tag.lower() in keys:
            return keys[tag.lower()]
    return None


def excluded_by_config(facts: InstanceFacts, criteria: PlanCriteria) -> str | None:
    if facts.instance_id in criteria.exclude_instance_ids:
        return "instance id listed in exclude_instance_ids"
    for key, value in criteria.exclude_tags.items():
        if facts.tags.get(key) == value or (value == "*" and key in facts.tags):
            return f"tag {key}={facts.tags.get(key)} matches exclude_tags"
    return None


def account_allowed(account_id: str, criteria: PlanCriteria) -> str | None:
    """None if the account may be acted on, else why not."""
    if account_id in criteria.account_denylist:
        return f"account {account_id} is in account_denylist"
    if criteria.account_allowlist and account_id not in criteria.account_allowlist:
        return f"account {account_id} is not in account_allowlist"
    return None


def eligible_before_attributes(
    facts: InstanceFacts, account_id: str, criteria: PlanCriteria, now: dt.datetime
) -> Decision | None:
    """Every check that needs no extra API call. Returns the skip, or None if the
    instance is still a candidate (then termination protection and ASG are checked)."""
    why = account_allowed(account_id, criteria)
    if why:
        return Decision(facts, False, SkipReason.ACCOUNT_EXCLUDED, why)
    why = excluded_by_config(facts, criteria)
    if why:
        return Decision(facts, False, SkipReason.EXCLUDED, why)
    tag = protection_tag(facts, criteria.protect_tags)
    if tag:
        return Decision(facts, False, SkipReason.PROTECT_TAG, f"tag {tag}")
    why = opt_out(facts.tags, now)
    if why:
        return Decision(facts, False, SkipReason.OPTED_OUT, why)
    if facts.asg_name or ASG_TAG in facts.tags:
        name = facts.asg_name or facts.tags.get(ASG_TAG)
        return Decision(facts, False, SkipReason.AUTO_SCALING, f"group {name}")
    if facts.state != "stopped":
        return Decision(facts, False, SkipReason.NOT_STOPPED, f"state {facts.state}")
    if facts.stop_time is None:
        return Decision(
            facts,
            False,
            SkipReason.STOP_TIME_UNKNOWN,
            "no date in StateTransitionReason"
            + (" and none found in CloudTrail" if criteria.cloudtrail else " (try --cloudtrail)"),
        )
    age = (now - facts.stop_time).total_seconds() / 86400.0
    if age < criteria.older_than_days:
        return Decision(
            facts,
            False,
            SkipReason.TOO_RECENT,
            f"stopped {age:.1f} days ago (< {criteria.older_than_days:g})",
        )
    return mark_not_due(facts, now) if criteria.marked else None


def mark_not_due(facts: InstanceFacts, now: dt.datetime) -> Decision | None:
    """For plans of marked instances only: the skip of an instance whose mark is
    missing, unreadable or not yet due; None if it is due."""
    mark = read_mark(facts.tags)
    if mark is None:
        return Decision(facts, False, SkipReason.NOT_MARKED, f"no {MARK_TAG} tag")
    if mark.at is None:
        return Decision(
            facts, False, SkipReason.NOT_MARKED, f"{MARK_TAG}={mark.value!r} is not a date"
        )
    if now < mark.at:
        days = (mark.at - now).total_seconds() / 86400.0
        return Decision(
            facts,
            False,
            SkipReason.MARK_NOT_DUE,
            f"due {iso_utc(mark.at)} (in {days:.1f} days)",
        )
    return None


def decide(
    facts: InstanceFacts, account_id: str, criteria: PlanCriteria, now: dt.datetime
) -> Decision:
    """The full decision. Unknown termination protection is a skip, never a choice."""
    early = eligible_before_attributes(facts, account_id, criteria, now)
    if early is not None:
        return early
    if facts.termination_protection is None:
        return Decision(
            facts,
            False,
            SkipReason.TERMINATION_PROTECTION,
            "termination protection could not be checked",
        )
    if facts.termination_protection:
        return Decision(
            facts, False, SkipReason.TERMINATION_PROTECTION, "DisableApiTermination is true"
        )
    # eligible_before_attributes skipped an instance whose stop time is unknown
    assert facts.stop_time is not None
    age = (now - facts.stop_time).total_seconds() / 86400.0
    return Decision(facts, True, None, f"stopped {age:.1f} days ago ({facts.stop_source})")
