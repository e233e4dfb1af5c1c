"""What owners are told, and when. Pure: no I/O; the clock is an argument.

Each marked instance owes its owner two notices: ``marked`` (as soon as it is marked)
and ``final`` (once its date is ``final_notice_days`` calendar days away or less, in
UTC: a daily run a few minutes early still sends it on the right day). A notice is
owed per channel; the notices log records what each channel delivered.

One run sends each owner at most one notice per channel, listing *all* their marked
instances (date, days left, saving) and how to opt out, whenever at least one of those
instances is owed a notice on that channel. The notice is ``final`` if any of what it
delivers is a final notice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from awsops.clock import as_utc, iso_utc
from awsops.decommission.marktags import KEEP_TAG, KEEP_UNTIL_TAG, mark_key
from awsops.decommission.owners import Owner


class NoticeKind:
    MARKED = "marked"
    FINAL = "final"


@dataclass(frozen=True)
class MarkedInstance:
    """A marked, stopped instance as a notice lists it."""

    account_id: str
    region: str
    instance_id: str
    name: str
    terminate_after: dt.datetime
    owner: Owner
    monthly_saving: float | None = None  # EBS cost of the volumes termination deletes
    currency: str = "USD"

    @property
    def key(self) -> str:
        return mark_key(self.account_id, self.region, self.instance_id, self.terminate_after)

    def days_left(self, now: dt.datetime) -> int:
        """Calendar days (UTC) from ``now`` to the mark's date; 0 on the day, negative
        once overdue."""
        return (self.terminate_after.date() - as_utc(now).date()).days

    def owed(self, now: dt.datetime, final_days: int) -> tuple[str, ...]:
        final = self.days_left(now) <= final_days
        return (NoticeKind.MARKED, NoticeKind.FINAL) if final else (NoticeKind.MARKED,)

    def to_json(self, now: dt.datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "account_id": self.account_id,
            "region": self.region,
            "instance_id": self.instance_id,
            "name": self.name,
            "terminate_after": iso_utc(self.terminate_after),
            "owner": self.owner.contact,
            "owner_source": self.owner.source,
            "monthly_saving": self.monthly_saving,
            "currency": self.currency,
        }
        if now is not None:
            out["days_left"] = self.days_left(now)
        return out


@dataclass(frozen=True)
class Notice:
    """One notice to one owner: all their marked instances, and the (instance key,
    kind) pairs it delivers."""

    owner: Owner
    instances: tuple[MarkedInstance, ...]
    delivers: tuple[tuple[str, str], ...]
    now: dt.datetime

    @property
    def kind(self) -> str:
        final = any(k == NoticeKind.FINAL for _, k in self.delivers)
        return NoticeKind.FINAL if final else NoticeKind.MARKED

    @property
    def notice_id(self) -> str:
        digest = hashlib.sha256(repr((self.owner.label, sorted(self.delivers))).encode())
        return f"notice-{self.now.strftime('%Y%m%d')}-{digest.hexdigest()[:12]}"

    @property
    def final_keys(self) -> set[str]:
        return {key for key, k in self.delivers if k == NoticeKind.FINAL}

    def subject(self) -> str:
        n = len(self.instances)
        first = min(i.terminate_after for i in self.instances).date().isoformat()
        head = "Final notice: " if self.kind == NoticeKind.FINAL else ""
        return f"{head}{n} stopped EC2 instance(s) will be terminated from {first} (UTC)"

    def to_json(self) -> dict[str, Any]:
        return {
            "notice_id": self.notice_id,
            "kind": self.kind,
            "owner": self.owner.contact,
            "owner_source": self.owner.source,
            "subject": self.subject(),
            "instances": [i.to_json(self.now) for i in self.instances],
            "delivers": [{"key": key, "kind": k} for key, k in self.delivers],
            "opt_out": {KEEP_TAG: "any value, e.g. a reason", KEEP_UNTIL_TAG: "YYYY-MM-DD"},
        }


def owed_notices(
    instances: Iterable[MarkedInstance],
    delivered: Mapping[str, set[tuple[str, str]]],
    now: dt.datetime,
    final_days: int,
) -> list[Notice]:
    """The notices one channel owes: for each owner with at least one (instance key,
    kind) it has not delivered to them (``delivered``: owner label -> pairs sent)."""
    by_owner: dict[str, list[MarkedInstance]] = {}
    for inst in instances:
        by_owner.setdefault(inst.owner.label, []).append(inst)
    notices = []
    for label, mine in sorted(by_owner.items()):
        mine.sort(key=lambda i: (i.terminate_after, i.account_id, i.region, i.instance_id))
        sent = delivered.get(label, set())
        owed = tuple(
            (i.key, kind)
            for i in mine
            for kind in i.owed(now, final_days)
            if (i.key, kind) not in sent
        )
        if owed:
            notices.append(Notice(mine[0].owner, tuple(mine), owed, now))
    return notices


def _money(inst: MarkedInstance) -> str:
    if inst.monthly_saving is None:
        return "?"
    return f"{inst.monthly_saving:.2f} {inst.currency}/month"


def _rows(notice: Notice) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for i in notice.instances:
        left = i.days_left(notice.now)
        when = f"in {left} day(s)" if left > 0 else ("today" if left == 0 else "overdue")
        final = " (final notice)" if i.key in notice.final_keys else ""
        rows.append(
            (
                i.instance_id,
                i.name or "-",
                f"{i.account_id} {i.region}",
                f"{iso_utc(i.terminate_after)}{final}",
                when,
                _money(i),
            )
        )
    return rows


HEAD = ("instance", "name", "account, region", "terminate after", "when", "saving")


def _opt_out(example: MarkedInstance) -> tuple[str, list[str], str, str]:
    """(lead, the two tags with what they do, another way, an example command)."""
    return (
        "To keep an instance, tag it before its date:",
        [
            f"{KEEP_TAG}=<reason or ticket>    keeps it until the tag is removed",
            f"{KEEP_UNTIL_TAG}=YYYY-MM-DD      keeps it through that day (UTC)",
        ],
        "Starting the instance keeps it too. For example:",
        f"aws ec2 create-tags --region {example.region} --resources {example.instance_id} "
        f"--tags Key={KEEP_TAG},Value=TICKET-123",
    )


def _intro(notice: Notice) -> str:
    return (
        f"Owner: {notice.owner.label} ({notice.owner.source}). These stopped EC2 instances "
        "are marked for termination. On or after each date they are backed up (an image) "
        "and terminated, unless they no longer qualify by then."
    )


def text(notice: Notice) -> str:
    """Plain text (email, SNS)."""
    lines = [notice.subject(), "", _intro(notice), ""]
    lines += ["  ".join(r).rstrip() for r in _table(notice)]
    lead, tags, other, example = _opt_out(notice.instances[0])
    return "\n".join([*lines, "", lead, *(f"  {t}" for t in tags), other, f"  {example}", ""])


def _table(notice: Notice) -> list[tuple[str, ...]]:
    rows = [HEAD, *_rows(notice)]
    widths = [max(len(r[n]) for r in rows) for n in range(len(HEAD))]
    return [tuple(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]


def _md_cell(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(notice: Notice) -> str:
    """Markdown (the report file)."""
    lines = [f"## {_md_cell(notice.subject())}", "", _md_cell(_intro(notice)), ""]
    lines += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in _rows(notice)]
    lead, tags, other, example = _opt_out(notice.instances[0])
    tail = [lead, "", *(f"    {t}" for t in tags), "", other, "", f"    {example}", ""]
    return "\n".join([*lines, "", *tail])


def slack_text(notice: Notice) -> str:
    """Slack's mrkdwn, with &, < and > escaped (names are tags anyone may write)."""
    body = text(notice)
    escaped = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    subject, _, rest = escaped.partition("\n")
    return f"*{subject}*\n```{rest.strip()}```"


def report_markdown(notices: Sequence[Notice], now: dt.datetime) -> str:
    head = f"# Decommission notices, {iso_utc(now)}\n\n{len(notices)} notice(s)\n\n"
    return head + "\n".join(markdown(n) for n in notices)
