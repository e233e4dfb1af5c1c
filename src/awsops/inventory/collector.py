"""One generic, streaming collector for every inventory kind.

Each target (account, region) is listed on a bounded thread pool
(:func:`awsops.fanout.run_targets`); workers shape each item into a record and push it
into a bounded queue that the caller's thread drains by iterating an
:class:`InventoryRun`. Nothing holds more than a page per worker plus the queue, so
memory stays flat however large the fleet is. A failing target never stops the
others: its error is kept in :attr:`InventoryRun.failures`.

Usage::

    request = InventoryRequest.build("ec2-instances", parse_filters(["Name=instance-state-name,Values=stopped"]))
    run = InventoryRun(factory, targets, request)
    for record in run:          # records arrive as workers produce them
        write(record)
    print(run.summary.line())   # items, pages, API calls, targets, errors, seconds
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from awsops.clients import TargetClients
from awsops.config import Target
from awsops.errors import NotFoundError, UsageError, aws_errors
from awsops.fanout import (
    DEFAULT_CONCURRENCY,
    DEFAULT_ITEM_CONCURRENCY,
    TargetResult,
    map_concurrent,
    run_targets,
)
from awsops.inventory.records import ACCOUNT_KEY, REGION_KEY, ShapeContext, annotate, plain
from awsops.inventory.request import (
    InventoryRequest,
    InventorySummary,
    Progress,
    TargetCount,
    scope_targets,
)
from awsops.paginate import CallCounter, compile_query, iter_pages
from awsops.session import SessionFactory

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000
PROGRESS_INTERVAL = 0.1
ClientFor = Callable[[Target, str], Any]
ServiceClient = Callable[[str], Any]

__all__ = [
    "InventoryRequest",
    "InventoryRun",
    "InventorySummary",
    "Progress",
    "TargetCount",
    "collect",
    "scope_targets",
]


class _Abandoned(Exception):
    """The consumer went away: workers and the driver stop without a trace."""


class InventoryRun:
    """Iterate to receive records as they are listed; then read the outcome.

    A run can be iterated once. After iteration ends (exhausted, ``max_items`` reached
    or the iterator closed), :attr:`summary`, :attr:`results` and :attr:`failures` are
    final. Records of different targets interleave; with ``max_items`` and more than
    one worker, which records arrive first is not defined.
    """

    def __init__(
        self,
        factory: SessionFactory,
        targets: Sequence[Target],
        request: InventoryRequest,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_progress: Callable[[Progress], None] | None = None,
        now: dt.datetime | None = None,
        client_for: ClientFor | None = None,
    ) -> None:
        if concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        self.factory = factory
        self.request = request
        self.spec = request.kind
        self.targets = scope_targets(self.spec, targets)
        self.concurrency = concurrency
        self.counter = CallCounter()
        self.results: list[TargetResult[TargetCount]] = []
        self._client_for = client_for
        self._on_progress = on_progress
        self._ctx = ShapeContext(now or dt.datetime.now(dt.timezone.utc))
        self._query = compile_query(request.page_query)
        self._items_expr = compile_query(self.spec.items_path)
        self._fields = [(f.name, compile_query(f.path)) for f in self.spec.fields]
        self._param_values = {f.name: request.params.get(f.path) for f in self.spec.param_fields}
        self._attr_exprs = [(a, compile_query(a.path)) for a in self.spec.attributes]
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._abandoned = threading.Event()
        self._lock = threading.Lock()
        self._accounts: dict[str, str] = {}
        self._accounts_lock = threading.Lock()
        self._pages = 0
        self._items = 0
        self._started = False
        self._driver_error: BaseException | None = None
        self._seconds = 0.0
        self._last_tick = 0.0

    # --- outcome -------------------------------------------------------------------

    @property
    def failures(self) -> list[TargetResult[TargetCount]]:
        """The targets that failed, each with its awsops error."""
        return [r for r in self.results if not r.ok]

    @property
    def summary(self) -> InventorySummary:
        return InventorySummary(
            items=self._items,
            pages=self._pages,
            api_calls=self.counter.total_calls,
            targets=len(self.targets),
            errors=len(self.failures),
            seconds=self._seconds,
        )

    def progress(self) -> Progress:
        return Progress(
            targets_total=len(self.targets),
            targets_done=len(self.results),
            pages=self._pages,
            items=self._items,
            errors=len(self.failures),
        )

    # --- the consumer side (caller's thread) ----------------------------------------

    def __iter__(self) -> Iterator[Any]:
        if self._started:
            raise RuntimeError("an InventoryRun can be iterated only once")
        self._started = True
        start = time.monotonic()
        driver = threading.Thread(target=self._drive, name="awsops-inventory", daemon=True)
        driver.start()
        finished = False
        limit = self.request.max_items
        try:
            while True:
                try:
                    msg = self._queue.get(timeout=PROGRESS_INTERVAL)
                except queue.Empty:
                    self._tick()
                    continue
                if msg is None:
                    finished = True
                    break
                tag, payload = msg
                if tag == "result":
                    self.results.append(payload)
                elif limit is None or self._items < limit:
                    self._items += 1
                    yield payload
                    if limit is not None and self._items >= limit:
                        self._stop.set()  # keep draining: the workers end quickly
                self._tick()
        finally:
            self._stop.set()
            if not finished:
                self._abandoned.set()
            driver.join(timeout=None if finished else 5.0)
            self._seconds = time.monotonic() - start
            self._tick(force=True)
        if self._driver_error is not None:
            raise self._driver_error

    def _tick(self, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_tick >= PROGRESS_INTERVAL:
            self._last_tick = now
            self._on_progress(self.progress())

    # --- the producer side (driver and worker threads) -------------------------------

    def _drive(self) -> None:
        try:
            for result in run_targets(self._collect, self.targets, self.concurrency):
                self._hand_over(("result", result))
        except _Abandoned:
            return
        except BaseException as exc:  # a bug must surface in the consumer, not vanish
            self._driver_error = exc
        try:
            self._hand_over(None)
        except _Abandoned:
            return

    def _hand_over(self, msg: Any) -> None:
        """Put ``msg`` on the queue, waiting for room unless the consumer is gone."""
        while True:
            try:
                self._queue.put(msg, timeout=PROGRESS_INTERVAL)
                return
            except queue.Full:
                if self._abandoned.is_set():
                    raise _Abandoned from None

    def _emit(self, record: Any) -> bool:
        """Queue one record; False once the run should stop producing."""
        while not self._stop.is_set():
            try:
                self._queue.put(("record", record), timeout=PROGRESS_INTERVAL)
                return True
            except queue.Full:
                continue
        return False

    def _account_of(self, target: Target, client_of: ServiceClient) -> str:
        """The target's account id: from the target, else GetCallerIdentity once per
        set of base credentials (profile)."""
        if target.account_id:
            return target.account_id
        key = target.profile or ""
        with self._accounts_lock:
            known = self._accounts.get(key)
            if known is not None:
                return known
            sts: Any = self.counter.attach(client_of("sts"))
            with aws_errors(operation="GetCallerIdentity", region=target.region):
                account = str(sts.get_caller_identity()["Account"])
            self._accounts[key] = account
            return account

    def _collect(self, target: Target) -> TargetCount:
        """List one target, queueing its records. Runs in a worker thread.

        The target's clients come from its credentials' session (shared by the regions
        of an account, with one AssumeRole) and are closed when the target is done;
        injected clients (``client_for``) are the caller's to close."""
        if self._stop.is_set():
            return TargetCount(0, 0, stopped=True)
        inject = self._client_for
        if inject is not None:
            return self._list(target, lambda service: inject(target, service))
        session = self.factory.for_target(target)
        with TargetClients(session, target.region, self.factory.settings) as clients:
            return self._list(target, clients.get)

    def _list(self, target: Target, client_of: ServiceClient) -> TargetCount:
        spec = self.spec
        client = self.counter.attach(client_of(spec.service))
        account = self._account_of(target, client_of)
        region = spec.region_label or target.region
        items = pages = 0
        for page in iter_pages(
            client,
            spec.operation,
            self.request.params,
            page_size=self.request.effective_page_size,
            region=target.region,
        ):
            pages += 1
            with self._lock:
                self._pages += 1
            for record in self._records(client, page, account, region, target):
                if not self._emit(record):
                    return TargetCount(items, pages, stopped=True)
                items += 1
            if self._stop.is_set():
                return TargetCount(items, pages, stopped=True)
        return TargetCount(items, pages)

    def _values(self, page: Mapping[str, Any]) -> list[Any]:
        """The page's items, or the --page-query results flattened (None dropped)."""
        found = (self._query or self._items_expr).search(page)
        if found is None:
            return []
        values = found if isinstance(found, list) else [found]
        return [v for v in values if v is not None]

    def _records(
        self, client: Any, page: Mapping[str, Any], account: str, region: str, target: Target
    ) -> Iterator[Any]:
        """The page's records, in page order. Per-item attribute calls run a few at a
        time (their pace is the client's rate limiter's), a small batch before each hand
        over, so a run that stops early (``max_items``) makes few calls it did not need."""
        values = self._values(page)
        if self._query is not None:
            for value in values:
                yield annotate(value, account, region)
            return
        if not self.request.with_attributes:
            for value in values:
                yield self._record(client, value, account, region, target)
            return
        step = DEFAULT_ITEM_CONCURRENCY
        for start in range(0, len(values), step):
            if self._stop.is_set():
                return
            yield from map_concurrent(
                lambda value: self._record(client, value, account, region, target),
                values[start : start + step],
            )

    def _record(
        self, client: Any, item: Mapping[str, Any], account: str, region: str, target: Target
    ) -> dict[str, Any]:
        spec = self.spec
        record: dict[str, Any] = {ACCOUNT_KEY: account, REGION_KEY: region}
        record.update(self._param_values)
        if spec.shaper is not None:
            record.update(spec.shaper(item, self._ctx))
        else:
            record.update((name, plain(expr.search(item))) for name, expr in self._fields)
        if self.request.with_attributes:
            for decl, expr in self._attr_exprs:
                record[decl.name] = self._attribute(client, decl, expr, item, target)
        return record

    def _attribute(
        self, client: Any, decl: Any, expr: Any, item: Mapping[str, Any], target: Target
    ) -> Any:
        """One per-item attribute call; None if the item vanished in between."""
        method = getattr(client, decl.operation)
        op = client.meta.method_to_api_mapping.get(decl.operation, decl.operation)
        try:
            with aws_errors(operation=op, region=target.region, account_id=target.account_id):
                resp = method(**{decl.id_param: item[self.spec.id_key]}, **decl.params)
        except NotFoundError:
            return None
        return plain(expr.search(resp))


def collect(
    factory: SessionFactory,
    targets: Sequence[Target],
    request: InventoryRequest,
    **options: Any,
) -> InventoryRun:
    """An :class:`InventoryRun` (nothing is called until it is iterated)."""
    return InventoryRun(factory, targets, request, **options)
