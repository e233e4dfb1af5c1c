"""What an inventory run is asked for and what it reports: plain data, no AWS calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from awsops.config import Target
from awsops.errors import UsageError
from awsops.inventory.filters import Filter, build_params
from awsops.inventory.specs import KindSpec, get_kind
from awsops.paginate import compile_query


@dataclass(frozen=True)
class InventoryRequest:
    """What to list: a kind, its request parameters and how to cut the results.

    Build it with :meth:`build`, which validates everything before any API call.
    ``page_size`` None means the API's maximum for the kind.
    """

    kind: KindSpec
    params: Mapping[str, Any] = field(default_factory=dict)
    page_query: str | None = None  # JMESPath on each raw API page (--page-query)
    page_size: int | None = None
    max_items: int | None = None
    with_attributes: bool = False

    @classmethod
    def build(
        cls,
        kind: str | KindSpec,
        filters: Sequence[Filter] = (),
        *,
        page_query: str | None = None,
        page_size: int | None = None,
        max_items: int | None = None,
        with_attributes: bool = False,
    ) -> InventoryRequest:
        """A validated request; raises one-line UsageErrors for bad input."""
        spec = get_kind(kind) if isinstance(kind, str) else kind
        params = build_params(spec, filters)
        compile_query(page_query)
        if page_size is not None and page_size < 1:
            raise UsageError("--page-size must be at least 1")
        if max_items is not None and max_items < 1:
            raise UsageError("--max-items must be at least 1")
        if with_attributes and not spec.attributes:
            raise UsageError(f"{spec.name} has no per-item attributes to fetch")
        if with_attributes and page_query:
            raise UsageError("--with-attributes applies to records, not to --page-query results")
        return cls(spec, params, page_query, page_size, max_items, with_attributes)

    @property
    def effective_page_size(self) -> int | None:
        return self.page_size or self.kind.max_page_size


@dataclass(frozen=True)
class Progress:
    """A snapshot of a run for progress displays."""

    targets_total: int
    targets_done: int
    pages: int
    items: int
    errors: int


@dataclass(frozen=True)
class InventorySummary:
    """What a finished run did."""

    items: int
    pages: int
    api_calls: int
    targets: int
    errors: int
    seconds: float

    def line(self) -> str:
        """One human line, e.g. ``12 items, 3 pages, 5 API calls, 2 targets, 0 errors, 0.4s``."""
        return (
            f"{self.items} items, {self.pages} pages, {self.api_calls} API calls, "
            f"{self.targets} targets, {self.errors} errors, {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class TargetCount:
    """What one target produced (records handed to the queue, pages read)."""

    items: int
    pages: int
    stopped: bool = False


def scope_targets(spec: KindSpec, targets: Sequence[Target]) -> list[Target]:
    """``targets`` as the kind needs them: account-scoped kinds keep one per account."""
    if spec.scope == "regional":
        return list(targets)
    seen: set[tuple[str | None, str | None, str | None]] = set()
    out = []
    for t in targets:
        key = (t.account_id, t.role_arn, t.profile)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out
