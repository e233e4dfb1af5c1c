"""Run one function over many targets on a bounded thread pool.

A failing target never aborts the others: each yields a :class:`TargetResult` holding
either its value or its error. Results arrive as targets finish.

:func:`map_concurrent` is the same idea inside one target: per-item calls (one
DescribeInstanceAttribute per instance) on a few threads, their pace set by the rate
limiter of the client they use rather than by one sequential loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from awsops.config import Target
from awsops.errors import AwsopsError, translate

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
# Targets at once. Each waits on the network and on its own EC2 buckets (per account and
# region), not on CPU: 16 at once plan an organisation in one round where 8 took two.
DEFAULT_CONCURRENCY = 16
DEFAULT_ITEM_CONCURRENCY = 4  # per target; the rate limiter sets the pace


@dataclass(frozen=True)
class TargetResult(Generic[T]):
    """The outcome of one target: ``value`` on success, ``error`` otherwise."""

    target: Target
    value: T | None = None
    error: AwsopsError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_targets(
    fn: Callable[[Target], T],
    targets: Sequence[Target],
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Generator[TargetResult[T], None, None]:
    """Call ``fn(target)`` for each target with at most ``concurrency`` in flight.

    Exceptions become per-target errors (translated to awsops errors); a
    ``KeyboardInterrupt`` cancels what has not started and propagates.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if not targets:
        return
    if concurrency == 1 or len(targets) == 1:
        for t in targets:
            yield _call(fn, t)
        return
    with ThreadPoolExecutor(max_workers=min(concurrency, len(targets))) as pool:
        pending: dict[Future[TargetResult[T]], Target] = {
            pool.submit(_call, fn, t): t for t in targets
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    pending.pop(fut)
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def _call(fn: Callable[[Target], T], target: Target) -> TargetResult[T]:
    try:
        return TargetResult(target, value=fn(target))
    except AwsopsError as exc:
        log.info("target %s failed: %s", target.label, exc.one_line())
        return TargetResult(target, error=exc)
    except Exception as exc:
        err = translate(exc, region=target.region, account_id=target.account_id)
        log.info("target %s failed: %s", target.label, err.one_line())
        return TargetResult(target, error=err)


def map_concurrent(
    fn: Callable[[T], R], items: Sequence[T], concurrency: int = DEFAULT_ITEM_CONCURRENCY
) -> list[R]:
    """``[fn(item) for item in items]`` on up to ``concurrency`` threads, results in the
    order of ``items``. The first error (in that order) is raised once the calls already
    running have finished; the calls not yet started are dropped."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if concurrency == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(
        max_workers=min(concurrency, len(items)), thread_name_prefix="awsops-item"
    )
    try:
        futures = [pool.submit(fn, item) for item in items]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
