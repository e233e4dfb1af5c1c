"""Records: plain JSON-ready mappings, one per item, each naming its account and region.

Values are JSON-native (datetimes become ISO 8601 strings), so json, jsonl and csv
renderings of a record agree. :func:`shape_instance` is the EC2 instance record,
with the stop time from the shared parser in :mod:`awsops.decommission.stoptime`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from awsops.decommission.stoptime import from_instance

ACCOUNT_KEY = "account_id"
REGION_KEY = "region"

INSTANCE_FIELDS: tuple[str, ...] = (
    "instance_id",
    "name",
    "state",
    "instance_type",
    "availability_zone",
    "launch_time",
    "age_days",
    "stop_time",
    "stop_time_source",
    "stopped_days",
    "private_ip",
    "volumes",
    "tags",
)
INSTANCE_TABLE: tuple[str, ...] = (
    "account_id",
    "region",
    "instance_id",
    "name",
    "state",
    "instance_type",
    "availability_zone",
    "age_days",
    "stop_time",
    "stop_time_source",
    "volumes",
)
STOPPED_STATES = frozenset({"stopped", "stopping"})


@dataclass(frozen=True)
class ShapeContext:
    """What a record shaper may know besides the item: when the run started (aware UTC)."""

    now: dt.datetime


def plain(value: Any) -> Any:
    """``value`` with datetimes as ISO strings and tuples/sets as lists, recursively."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def annotate(value: Any, account_id: str, region: str) -> Any:
    """A query result with ``account_id`` and ``region`` added if it is a mapping.

    Keys the result already has are kept; non-mappings (ids, numbers) pass unchanged.
    """
    if not isinstance(value, Mapping):
        return plain(value)
    out: dict[str, Any] = {ACCOUNT_KEY: account_id, REGION_KEY: region}
    out.update(plain(value))
    return out


def _aware(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _days(since: dt.datetime | None, now: dt.datetime) -> int | None:
    """Whole days from ``since`` to ``now`` (floored; never negative)."""
    if since is None:
        return None
    return max(0, (now - since).days)


def tag_map(item: Mapping[str, Any]) -> dict[str, str]:
    """An item's ``Tags`` list as a dict."""
    return {str(t.get("Key")): str(t.get("Value", "")) for t in item.get("Tags") or []}


def shape_instance(item: Mapping[str, Any], ctx: ShapeContext) -> dict[str, Any]:
    """The record of one described EC2 instance (keys :data:`INSTANCE_FIELDS`).

    The stop time and its source come from ``StateTransitionReason`` only, and only for
    stopped or stopping instances; others have ``None`` for both. ``age_days`` counts
    whole days since ``LaunchTime``. ``volumes`` lists the attached EBS volumes with
    their ``DeleteOnTermination`` flag.
    """
    tags = tag_map(item)
    state = (item.get("State") or {}).get("Name")
    stop_at: dt.datetime | None = None
    stop_source: str | None = None
    if state in STOPPED_STATES:
        stop = from_instance(item)
        stop_at, stop_source = stop.at, stop.source
    launch = _aware(item.get("LaunchTime"))
    volumes = [
        {
            "volume_id": m["Ebs"].get("VolumeId"),
            "device": m.get("DeviceName"),
            "delete_on_termination": m["Ebs"].get("DeleteOnTermination"),
        }
        for m in item.get("BlockDeviceMappings") or []
        if isinstance(m.get("Ebs"), Mapping)
    ]
    return {
        "instance_id": item.get("InstanceId"),
        "name": tags.get("Name"),
        "state": state,
        "instance_type": item.get("InstanceType"),
        "availability_zone": (item.get("Placement") or {}).get("AvailabilityZone"),
        "launch_time": plain(launch),
        "age_days": _days(launch, ctx.now),
        "stop_time": plain(stop_at),
        "stop_time_source": stop_source,
        "stopped_days": _days(stop_at, ctx.now),
        "private_ip": item.get("PrivateIpAddress"),
        "volumes": volumes,
        "tags": tags,
    }


def table_view(record: Any) -> Any:
    """A record as a terminal table shows it: lists of volumes as one short cell.

    ``[{"volume_id": "vol-1", "delete_on_termination": True}]`` -> ``vol-1:delete``
    (``:keep`` when the volume outlives the instance). Other values are unchanged.
    """
    if not isinstance(record, Mapping) or not isinstance(record.get("volumes"), list):
        return record
    shown = []
    for v in record["volumes"]:
        if isinstance(v, Mapping):
            fate = "delete" if v.get("delete_on_termination") else "keep"
            shown.append(f"{v.get('volume_id')}:{fate}")
    return {**record, "volumes": " ".join(shown)}
