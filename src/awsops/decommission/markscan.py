"""Read-only look-ups of marked instances (those carrying ``awsops:terminate-after``).

Filtered server-side by tag key and state, every page: a region's marked instances cost
one paged DescribeInstances, however many unmarked instances it holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from awsops.decommission.inspect import PAGE_SIZE
from awsops.decommission.marktags import MARK_TAG
from awsops.paginate import iter_items

LIVE_STATES = ("pending", "running", "stopping", "stopped")


def iter_marked(
    ec2: Any,
    region: str,
    states: Sequence[str] = LIVE_STATES,
    page_size: int = PAGE_SIZE,
) -> Iterator[dict[str, Any]]:
    """Every instance of the region with a mark, in one of ``states``."""
    yield from iter_items(
        ec2,
        "describe_instances",
        "Reservations[].Instances[]",
        {
            "Filters": [
                {"Name": "tag-key", "Values": [MARK_TAG]},
                {"Name": "instance-state-name", "Values": list(states)},
            ]
        },
        page_size=page_size,
        region=region,
    )
