"""A small EBS price table kept in the package, for the plan's savings estimate.

Prices are list prices of one region on one date (both printed with the estimate):
an estimate to rank and review, not a bill.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from awsops.decommission.model import Volume


@dataclass(frozen=True)
class PriceTable:
    region: str
    as_of: str
    currency: str
    volume_gb_month: Mapping[str, float]
    snapshot_gb_month: float

    def volume_price(self, volume_type: str | None) -> float:
        """Price per GB-month; unknown types are priced as gp2 (the old default)."""
        return self.volume_gb_month.get(volume_type or "gp2", self.volume_gb_month["gp2"])


@lru_cache(maxsize=1)
def price_table() -> PriceTable:
    raw: dict[str, Any] = json.loads(
        resources.files("awsops.data").joinpath("ebs_prices.json").read_text(encoding="utf-8")
    )
    return PriceTable(
        region=raw["region"],
        as_of=raw["as_of"],
        currency=raw["currency"],
        volume_gb_month=dict(raw["volume_gb_month"]),
        snapshot_gb_month=float(raw["snapshot_gb_month"]),
    )


DEFAULT_RETENTION_DAYS = 90  # how long backups are kept before prune-backups
DAYS_PER_MONTH = 30.4375


@dataclass(frozen=True)
class SavingEstimate:
    volumes: int
    gib: int
    monthly_volume_cost: float
    monthly_snapshot_cost_max: float
    unknown_size: int
    retention_days: int = DEFAULT_RETENTION_DAYS

    @property
    def backup_cost_over_retention_max(self) -> float:
        """The most the backups (image snapshots) cost while they are kept."""
        return self.monthly_snapshot_cost_max * self.retention_days / DAYS_PER_MONTH

    @property
    def monthly_net_saving(self) -> float:
        return self.monthly_volume_cost - self.monthly_snapshot_cost_max

    def to_json(self, table: PriceTable) -> dict[str, Any]:
        return {
            "deleted_volumes": self.volumes,
            "deleted_gib": self.gib,
            "monthly_ebs_saving": round(self.monthly_volume_cost, 2),
            "monthly_backup_snapshot_cost_max": round(self.monthly_snapshot_cost_max, 2),
            "monthly_net_saving_min": round(self.monthly_net_saving, 2),
            "backup_retention_days": self.retention_days,
            "backup_cost_over_retention_max": round(self.backup_cost_over_retention_max, 2),
            "volumes_of_unknown_size": self.unknown_size,
            "currency": table.currency,
            "prices_region": table.region,
            "prices_as_of": table.as_of,
        }


def estimate(
    volumes: Iterable[Volume],
    table: PriceTable | None = None,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> SavingEstimate:
    """Monthly EBS cost of the volumes termination deletes, and the most their backups
    (the image's snapshots, or one snapshot per volume) can cost per month and over the
    retention period (snapshots bill used blocks only, so usually much less)."""
    table = table or price_table()
    count = gib = unknown = 0
    cost = snap = 0.0
    for v in volumes:
        count += 1
        if v.size_gib is None:
            unknown += 1
            continue
        gib += v.size_gib
        cost += v.size_gib * table.volume_price(v.volume_type)
        snap += v.size_gib * table.snapshot_gb_month
    return SavingEstimate(count, gib, cost, snap, unknown, retention_days)
