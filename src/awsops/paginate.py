"""Stream every page of any paginated operation; JMESPath across pages; call counting.

Nothing here holds more than one page: :func:`iter_pages` and :func:`iter_items` are
generators over botocore's paginator (which raises if a next token repeats, so a
loop can never go round forever). :class:`CallCounter` counts logical API calls and
HTTP attempts (retries included) for reports.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jmespath
from botocore.exceptions import BotoCoreError, ClientError
from jmespath.exceptions import JMESPathError

from awsops.errors import UsageError, translate

if TYPE_CHECKING:
    from botocore.client import BaseClient


def compile_query(expression: str | None) -> Any:
    """Compile a JMESPath expression, or raise a one-line UsageError."""
    if expression is None:
        return None
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        msg = " ".join(str(exc).split())
        raise UsageError(f"invalid JMESPath expression {expression!r}: {msg}") from None


@dataclass
class CallCounter:
    """Counts API calls made by clients it is attached to (thread-safe).

    ``calls`` counts logical calls per operation; ``attempts`` counts HTTP requests,
    so ``attempts - calls`` is the number of retries.
    """

    calls: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attach(self, client: BaseClient) -> BaseClient:
        """Register on a client's events; returns the client for chaining."""
        client.meta.events.register("before-call.*.*", self._on_call)
        client.meta.events.register("before-send.*.*", self._on_send)
        return client

    def _on_call(self, model: Any = None, **_: Any) -> None:
        with self._lock:
            self.calls[getattr(model, "name", "?")] += 1

    def _on_send(self, request: Any = None, **kwargs: Any) -> None:
        op = kwargs.get("event_name", "before-send.?.?").rsplit(".", 1)[-1]
        with self._lock:
            self.attempts[op] += 1

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_attempts(self) -> int:
        return sum(self.attempts.values())


@dataclass
class PageStats:
    """What one pagination run cost."""

    pages: int = 0
    items: int = 0


def iter_pages(
    client: BaseClient,
    operation: str,
    params: Mapping[str, Any] | None = None,
    *,
    page_size: int | None = None,
    stats: PageStats | None = None,
    region: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each page of ``operation`` (snake_case name) as botocore parses it.

    Errors are raised as awsops errors naming the operation and region.
    """
    if not client.can_paginate(operation):
        raise UsageError(f"{client.meta.service_model.service_name}:{operation} is not paginated")
    paginator = client.get_paginator(operation)
    config: dict[str, Any] = {}
    if page_size:
        config["PageSize"] = page_size
    op_name = client.meta.method_to_api_mapping.get(operation, operation)
    region = region or client.meta.region_name
    try:
        for page in paginator.paginate(**dict(params or {}), PaginationConfig=config):
            if stats is not None:
                stats.pages += 1
            yield page
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation=op_name, region=region) from exc


def iter_items(
    client: BaseClient,
    operation: str,
    items_path: str,
    params: Mapping[str, Any] | None = None,
    *,
    query: str | None = None,
    page_size: int | None = None,
    stats: PageStats | None = None,
    region: str | None = None,
) -> Iterator[Any]:
    """Yield the items at ``items_path`` (JMESPath) of every page, one at a time.

    ``query`` is a JMESPath expression applied to each page instead of ``items_path``
    (like ``PageIterator.search``): list results are flattened, ``None`` dropped.
    """
    compiled = compile_query(query) if query else compile_query(items_path)
    for page in iter_pages(
        client, operation, params, page_size=page_size, stats=stats, region=region
    ):
        found = compiled.search(page)
        if found is None:
            continue
        values = found if isinstance(found, list) else [found]
        for value in values:
            if value is None:
                continue
            if stats is not None:
                stats.items += 1
            yield value
