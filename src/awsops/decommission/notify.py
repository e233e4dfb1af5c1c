"""Tell owners about their marked instances: the second step of the daily cycle.

Reads the marks from AWS (the tags are the truth, not a local copy), resolves each
owner (:mod:`~awsops.decommission.owners`), works out per channel what each owner is
owed (:mod:`~awsops.decommission.notices`) from the notices log, sends it, and logs
each answer as soon as it comes. A notice that fails is reported and owed again next
run; one no channel can reach (e.g. email only, and the owner is no address) is
reported as undeliverable every run until someone fixes the owner tag or adds a
channel or a ``fallback_owner``. Never dropped, never sent twice by a channel that
delivered it.

Only stopped instances with a readable mark and no opt-out are listed: run ``mark``
first, so that what no longer qualifies has lost its mark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from awsops.clients import TargetClients, make_client
from awsops.clock import as_utc, iso_utc, system_clock
from awsops.config import Target
from awsops.decommission import inspect, markscan, pricing
from awsops.decommission.channels import (
    Channel,
    Delivery,
    ReportChannel,
    SnsChannel,
    WebhookChannel,
)
from awsops.decommission.marktags import opt_out, read_mark
from awsops.decommission.noticelog import DELIVERED, FAILED, UNDELIVERABLE, NoticeLog
from awsops.decommission.notices import MarkedInstance, Notice, owed_notices
from awsops.decommission.owners import CloudTrailOwnerLookup, OwnerCache, OwnerResolver
from awsops.decommission.planner import AccountMismatchError
from awsops.decommission.runlock import run_lock
from awsops.decommission.smtp import SmtpChannel
from awsops.errors import UsageError
from awsops.fanout import DEFAULT_CONCURRENCY, run_targets
from awsops.markconfig import MarkSettings, NotifySettings
from awsops.session import SessionFactory


@dataclass(frozen=True)
class NotifyReport:
    now: dt.datetime
    dry_run: bool
    instances: tuple[MarkedInstance, ...] = ()
    deliveries: tuple[Delivery, ...] = ()
    owed: tuple[tuple[str, Notice], ...] = ()  # (channel, notice): in a dry run, unsent
    undeliverable: tuple[Notice, ...] = ()  # no configured channel reaches the owner
    target_errors: tuple[str, ...] = ()
    channels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.ok]

    @property
    def ok(self) -> bool:
        return not (self.failed or self.undeliverable or self.target_errors)


def build_channels(
    settings: NotifySettings,
    factory: SessionFactory,
    now: dt.datetime,
    environ: Mapping[str, str] | None = None,
) -> list[Channel]:
    """The configured channels, email first."""
    out: list[Channel] = []
    if settings.smtp is not None:
        out.append(SmtpChannel(settings.smtp, environ))
    if settings.webhook is not None:
        out.append(WebhookChannel(settings.webhook, environ))
    if settings.sns is not None:
        region = settings.sns.region
        client = make_client(factory.session(region), "sns", region, factory.settings)
        out.append(SnsChannel(settings.sns, client))
    if settings.report is not None:
        out.append(ReportChannel(settings.report, now))
    return out


class MarkedScanner:
    """The marked instances of one target, with owners and savings."""

    def __init__(
        self, factory: SessionFactory, settings: MarkSettings, resolver: OwnerResolver
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.resolver = resolver

    def __call__(self, target: Target) -> list[MarkedInstance]:
        now = self.resolver.now
        session = self.factory.for_target(target)
        account = self.factory.account_id(session)
        if target.account_id and target.account_id != account:
            raise AccountMismatchError(
                f"target {target.label} is labelled account {target.account_id}, but its "
                f"credentials reach account {account}: fix the targets file"
            )
        region = target.region
        with TargetClients(session, region, self.factory.settings) as clients:
            ec2 = clients.get("ec2")
            marked = []
            for inst in markscan.iter_marked(ec2, region, ("stopped",)):
                facts = inspect.facts_from_instance(inst)
                mark = read_mark(facts.tags)
                if mark is not None and mark.at is not None and not opt_out(facts.tags, now):
                    marked.append((facts, mark.at))
            deletable = [v for f, _ in marked for v in f.deletable_volumes]
            sizes = inspect.volume_details(ec2, region, (v.volume_id for v in deletable))
            lookup = None
            if self.settings.owner_from_cloudtrail:
                lookup = CloudTrailOwnerLookup(clients.get("cloudtrail"), now=now)
            table = pricing.price_table()
            out = []
            for facts, at in marked:
                key = f"{account}/{region}/{facts.instance_id}"
                owner = self.resolver.resolve(facts.tags, key, lookup)
                vols = [
                    dataclasses.replace(
                        v,
                        size_gib=sizes.get(v.volume_id, {}).get("Size"),
                        volume_type=sizes.get(v.volume_id, {}).get("VolumeType"),
                    )
                    for v in facts.deletable_volumes
                ]
                cost = pricing.estimate(vols, table).monthly_volume_cost
                out.append(
                    MarkedInstance(
                        account,
                        region,
                        facts.instance_id,
                        facts.name,
                        at,
                        owner,
                        cost,
                        table.currency,
                    )
                )
        return out


def _record(d: Delivery, now: dt.datetime) -> dict[str, object]:
    return {
        "run_at": iso_utc(now),
        "channel": d.channel,
        "owner": d.notice.owner.label,
        "notice_id": d.notice.notice_id,
        "kind": d.notice.kind,
        "status": DELIVERED if d.ok else FAILED,
        "to": d.to,
        "error": d.error,
        "delivers": [list(x) for x in d.notice.delivers],
    }


def notify_owners(
    factory: SessionFactory,
    targets: Sequence[Target],
    settings: MarkSettings,
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    channels: Sequence[Channel] | None = None,
    log: NoticeLog | None = None,
    owner_cache: OwnerCache | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> NotifyReport:
    """Send what each owner is owed on each channel (see the module docstring). In a
    dry run nothing is sent or logged; the report lists what would be. One run at a
    time on this host."""
    now = as_utc(now or system_clock(), "now")
    if channels is None:
        channels = build_channels(settings.notify, factory, now)
    if not channels:
        raise UsageError(
            "no notice channel is configured: add marks.notify (smtp, webhook, sns or "
            "report) to the decommission config"
        )
    log = log or NoticeLog()
    with run_lock("notify", "decommission notify"):
        cache = owner_cache or (OwnerCache() if settings.owner_from_cloudtrail else None)
        resolver = OwnerResolver(settings, cache, now)
        instances: list[MarkedInstance] = []
        errors: list[str] = []
        for res in run_targets(MarkedScanner(factory, settings, resolver), targets, concurrency):
            if isinstance(res.error, AccountMismatchError):
                raise res.error
            if res.error is not None:
                errors.append(f"{res.target.label}: {res.error.one_line()}")
            instances += res.value or []
        if cache is not None and not dry_run:
            cache.save()
        deliveries: list[Delivery] = []
        owed_all: list[tuple[str, Notice]] = []
        for ch in channels:
            owed = owed_notices(instances, log.delivered(ch.name), now, settings.final_notice_days)
            items = [(n, to) for n in owed if (to := ch.address(n.owner)) is not None]
            owed_all += [(ch.name, n) for n, _ in items]
            if dry_run:
                continue
            for d in ch.deliver(items):
                log.append(_record(d, now))
                deliveries.append(d)
        unreachable = _unreachable(instances, channels, now, settings.final_notice_days)
        if not dry_run:
            for n in unreachable:
                log.append(
                    {
                        "run_at": iso_utc(now),
                        "channel": None,
                        "owner": n.owner.label,
                        "notice_id": n.notice_id,
                        "kind": n.kind,
                        "status": UNDELIVERABLE,
                        "error": "no configured channel can reach this owner",
                    }
                )
    return NotifyReport(
        now,
        dry_run,
        tuple(instances),
        tuple(deliveries),
        tuple(owed_all),
        tuple(unreachable),
        tuple(errors),
        tuple(ch.name for ch in channels),
    )


def _unreachable(
    instances: Sequence[MarkedInstance],
    channels: Sequence[Channel],
    now: dt.datetime,
    final_days: int,
) -> list[Notice]:
    """The owners no channel can address at all, as the notice they are owed."""
    return [
        n
        for n in owed_notices(instances, {}, now, final_days)
        if all(ch.address(n.owner) is None for ch in channels)
    ]
