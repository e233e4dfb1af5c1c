"""One way to wait for any state: botocore's waiter definitions, run by one bounded loop.

:func:`wait` interprets a botocore waiter (its operation and acceptors, pure data)
with a delay/max-attempts override and a callback per attempt, and raises errors of
ours that name the waiter, the resources and the last observed state.
:func:`awsops.waitmany.wait_many` waits for many resources by batching their ids
into few describe calls per poll.

Acceptor semantics follow ``botocore.waiter.Waiter.wait``:

- acceptors are tried in order on each response; the first that matches sets the
  state (``success``, ``failure`` or ``retry``); none matching means retry;
- ``path``/``pathAll``/``pathAny`` never match an error response, ``error`` matches
  an error code (``true``: any error, ``false``: no error), ``status`` the HTTP status;
- an error response that no acceptor matches ends the wait: botocore raises
  ``WaiterError``, we raise the translated AWS error (``NotFoundError``,
  ``AccessDeniedError``...) with the waiter and resources added to its message.

Where we deliberately differ from botocore, each for a stated reason:

- a throttling error that survived the client's own retries costs one attempt
  instead of ending a wait that may have run for an hour;
- when the operation is paginated and the response carries a next token, the
  remaining pages are fetched and merged before the acceptors run, so ``pathAll``
  judges every resource, not the first page (moto pages DescribeInstances by 100
  reservations even when ids are given);
- ``stop`` (a ``threading.Event``) cancels a wait between polls with
  :class:`WaitCancelledError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jmespath
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError, UnknownServiceError
from botocore.exceptions import DataNotFoundError as _DataNotFoundError

from awsops.errors import AwsError, AwsopsError, ThrottledError, UsageError, translate
from awsops.waitresults import (
    OnAttempt,
    WaitAttempt,
    WaitCancelledError,
    WaiterError,
    WaiterFailedError,
    WaiterTimeoutError,
    WaitSummary,
    resource_label,
)

__all__ = [
    "OnAttempt",
    "WaitAttempt",
    "WaitCancelledError",
    "WaitSummary",
    "WaiterError",
    "WaiterFailedError",
    "WaiterTimeoutError",
    "chunked",
    "normalize_waiter_name",
    "resource_label",
    "wait",
    "waiter_names",
]

if TYPE_CHECKING:
    from botocore.client import BaseClient

# A merged observation never follows more pages than this (a runaway paginator).
MAX_PAGES_PER_POLL = 1000


def waiter_names(client: BaseClient) -> list[str]:
    """Waiter names of a client, snake_case (``instance_running``)."""
    return list(client.waiter_names)


def normalize_waiter_name(name: str) -> str:
    """Accept ``instance-running``, ``instance_running`` or ``InstanceRunning``."""
    if "-" in name:
        return name.replace("-", "_").lower()
    return xform_name(name) if name[:1].isupper() else name


@dataclass(frozen=True)
class Observation:
    state: str
    observed: Any
    response: dict[str, Any]


class WaiterRunner:
    """One resolved waiter: its config, operation and the client to poll with."""

    def __init__(self, client: BaseClient, waiter_name: str) -> None:
        self.client = client
        self.name = normalize_waiter_name(waiter_name)
        self.service = client.meta.service_model.service_name
        if self.name not in client.waiter_names:
            known = ", ".join(n.replace("_", "-") for n in client.waiter_names) or "none"
            raise UsageError(f"unknown {self.service} waiter {waiter_name!r}; known: {known}")
        try:
            waiter: Any = client.get_waiter(self.name)
        except (_DataNotFoundError, UnknownServiceError) as exc:
            raise UsageError(str(exc)) from exc
        self.config: Any = waiter.config
        self.operation: str = self.config.operation
        self.method_name = xform_name(self.operation)
        self.region: str | None = client.meta.region_name
        self.paginated = bool(client.can_paginate(self.method_name))

    def settings(self, delay: float | None, max_attempts: int | None) -> tuple[float, int]:
        attempts = int(max_attempts if max_attempts is not None else self.config.max_attempts)
        pause = float(delay if delay is not None else self.config.delay)
        if attempts < 1 or pause < 0:
            raise UsageError("waiter needs max attempts >= 1 and delay >= 0")
        return pause, attempts

    def call(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        """One observation (every page when paginated): (response, API calls made)."""
        if not self.paginated:
            response: dict[str, Any] = getattr(self.client, self.method_name)(**params)
            return response, 1
        pages: Any = self.client.get_paginator(self.method_name).paginate(**params)
        merged: dict[str, Any] | None = None
        calls = 0
        for page in pages:
            calls += 1
            if merged is None:
                merged = page
            else:
                for expression in pages.result_keys:
                    more = expression.search(page)
                    existing = expression.search(merged)
                    if isinstance(more, list) and isinstance(existing, list):
                        existing.extend(more)
            if calls >= MAX_PAGES_PER_POLL:
                break
        return merged or {}, calls

    def observe(self, params: Mapping[str, Any]) -> tuple[Observation, int]:
        """Poll once and classify the response with the waiter's acceptors.

        Raises our translation of an error no acceptor expects (throttling excepted).
        """
        calls = 1
        try:
            response, calls = self.call(params)
        except ClientError as exc:
            response = dict(exc.response)
            error: ClientError | None = exc
        except BotoCoreError as exc:
            raise self._unexpected(exc, params) from exc
        else:
            error = None
        matched = None
        for acceptor in self.config.acceptors:
            if acceptor.matcher_func(response):
                matched = acceptor
                break
        if error is not None and matched is None:
            translated = self._unexpected(error, params)
            if not isinstance(translated, ThrottledError):
                raise translated from error
        state = matched.state if matched is not None else "retry"
        return Observation(state, _observed(self.config.acceptors, matched, response), response), (
            calls
        )

    def _unexpected(self, exc: BaseException, params: Mapping[str, Any]) -> AwsopsError:
        err = translate(exc, operation=self.operation, region=self.region)
        if isinstance(err, AwsError):
            err.message = (
                f"{err.message} [waiting for {self.service} {self.name} on "
                f"{resource_label(params)}]"
            )
        return err


def _observed(acceptors: Sequence[Any], matched: Any, response: Mapping[str, Any]) -> Any:
    """The value the waiter's path acceptors look at (e.g. instance states).

    The matched acceptor's path when it has one, else the first path acceptor's; the
    error code for an error response.
    """
    if "Error" in response:
        return response["Error"].get("Code")
    candidates = [matched, *acceptors] if matched is not None else list(acceptors)
    for acceptor in candidates:
        if acceptor.matcher in ("path", "pathAll", "pathAny") and acceptor.argument:
            try:
                return jmespath.search(acceptor.argument, response)
            except jmespath.exceptions.JMESPathError:
                continue
    return None


class Pacer:
    """Sleeps between polls; honours ``stop``; measures elapsed time."""

    def __init__(
        self,
        sleep: Callable[[float], Any] | None,
        stop: threading.Event | None,
        clock: Callable[[], float] | None,
    ) -> None:
        self._stop = stop
        self._sleep = sleep
        self._clock = clock or time.monotonic
        self._start = self._clock()

    def elapsed(self) -> float:
        return self._clock() - self._start

    def check(self, what: str) -> None:
        if self._stop is not None and self._stop.is_set():
            raise WaitCancelledError(f"stopped while waiting for {what}")

    def pause(self, seconds: float, what: str) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif self._stop is not None:
            self._stop.wait(seconds)
        else:
            time.sleep(seconds)
        self.check(what)


def wait(
    client: BaseClient,
    waiter_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    delay: float | None = None,
    max_attempts: int | None = None,
    on_attempt: OnAttempt | None = None,
    sleep: Callable[[float], Any] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Poll until the waiter's success state; return the last (merged) response.

    At most ``max_attempts`` polls are made (the waiter's default when ``None``), with
    ``delay`` seconds between them (the waiter's default when ``None``) and no sleep
    after the last. ``on_attempt`` is called after every poll. ``sleep`` replaces the
    pause (tests); ``stop`` cancels between polls; ``clock`` measures elapsed time.

    Raises :class:`WaiterTimeoutError` when attempts run out,
    :class:`WaiterFailedError` on a failure acceptor, :class:`WaitCancelledError` when
    ``stop`` is set, our translation of an AWS error no acceptor expects, and
    :class:`UsageError` for an unknown waiter name or bad overrides.
    """
    runner = WaiterRunner(client, waiter_name)
    pause, attempts = runner.settings(delay, max_attempts)
    params = dict(params or {})
    label = resource_label(params)
    what = f"{runner.service} {runner.name} on {label}"
    pacer = Pacer(sleep, stop, clock)
    last: Observation | None = None
    for attempt in range(1, attempts + 1):
        pacer.check(what)
        last, _ = runner.observe(params)
        elapsed = pacer.elapsed()
        if on_attempt is not None:
            on_attempt(
                WaitAttempt(
                    runner.name,
                    attempt,
                    attempts,
                    elapsed,
                    last.observed,
                    last.state,
                    service=runner.service,
                    resources=label,
                )
            )
        if last.state == "success":
            return last.response
        if last.state == "failure":
            raise failed(runner, label, last, attempt, elapsed, pending=())
        if attempt < attempts:
            pacer.pause(pause, what)
    assert last is not None  # attempts >= 1
    raise timed_out(runner, label, last.observed, last.response, attempts, pacer.elapsed(), ())


def failed(
    runner: WaiterRunner,
    label: str,
    obs: Observation,
    attempt: int,
    elapsed: float,
    pending: Sequence[str],
) -> WaiterFailedError:
    return WaiterFailedError(
        f"waiter {runner.service} {runner.name} reached a failure state for {label} "
        f"after {attempt} attempt(s) ({elapsed:.1f}s); last observed: {obs.observed}",
        code="WaiterFailure",
        operation=runner.operation,
        region=runner.region,
        waiter=runner.name,
        service=runner.service,
        resources=label,
        observed=obs.observed,
        attempts=attempt,
        elapsed=elapsed,
        pending=pending,
        last_response=obs.response,
    )


def timed_out(
    runner: WaiterRunner,
    label: str,
    observed: Any,
    response: Mapping[str, Any] | None,
    attempts: int,
    elapsed: float,
    pending: Sequence[str],
) -> WaiterTimeoutError:
    return WaiterTimeoutError(
        f"waiter {runner.service} {runner.name} timed out after {attempts} attempt(s) "
        f"({elapsed:.1f}s) for {label}; last observed: {observed}",
        code="WaiterTimeout",
        operation=runner.operation,
        region=runner.region,
        waiter=runner.name,
        service=runner.service,
        resources=label,
        observed=observed,
        attempts=attempts,
        elapsed=elapsed,
        pending=pending,
        last_response=response,
    )


def chunked(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Split ids into lists of at most ``size`` (``size`` >= 1), keeping their order."""
    if size < 1:
        raise UsageError("batch size must be at least 1")
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
