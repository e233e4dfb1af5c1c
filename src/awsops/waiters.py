"""One way to wait for any state: botocore's waiter definitions, run by one bounded loop.

:func:`wait` interprets a botocore waiter (its operation and acceptors, pure data)
with a delay/max-attempts override and a callback per attempt, and raises errors of
ours that name the waiter, the resources and the last observed state.
:func:`wait_many` waits for many resources by batching their ids into few describe
calls per poll.

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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jmespath
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError, UnknownServiceError
from botocore.exceptions import DataNotFoundError as _DataNotFoundError

from awsops.errors import AwsError, AwsopsError, ThrottledError, UsageError, translate

if TYPE_CHECKING:
    from botocore.client import BaseClient

# A merged observation never follows more pages than this (a runaway paginator).
MAX_PAGES_PER_POLL = 1000
# How many ids or values an error message or progress label shows before "+N".
_SHOWN = 5


@dataclass(frozen=True)
class WaitAttempt:
    """What a per-attempt callback is told after each poll.

    ``attempt`` of ``max_attempts``; ``elapsed`` seconds since the wait began;
    ``observed`` is what the waiter's path looked at (e.g. the instance states, or
    the error code of an error response); ``state`` is ``retry``, ``success`` or
    ``failure``. For :func:`wait_many` one attempt is one round over every pending
    batch, ``observed`` counts the values seen in that round (``{"pending": 3,
    "running": 97}``) and ``pending`` is how many resources are not done yet.
    """

    waiter: str
    attempt: int
    max_attempts: int
    elapsed: float
    observed: Any
    state: str  # "retry", "success" or "failure"
    service: str = ""
    resources: str = ""
    pending: int | None = None


class WaiterError(AwsError):
    """A wait that did not reach its success state. Carries the evidence.

    ``waiter`` (snake_case name), ``service``, ``resources`` (a short label of the
    parameters), ``observed`` (the last observed value), ``attempts`` made,
    ``elapsed`` seconds, ``pending`` ids (for :func:`wait_many`) and the
    ``last_response``.
    """

    category = "waiter"

    def __init__(
        self,
        message: str,
        *,
        waiter: str | None = None,
        service: str | None = None,
        resources: str = "",
        observed: Any = None,
        attempts: int = 0,
        elapsed: float = 0.0,
        pending: Sequence[str] = (),
        last_response: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.waiter = waiter
        self.service = service
        self.resources = resources
        self.observed = observed
        self.attempts = attempts
        self.elapsed = elapsed
        self.pending = tuple(pending)
        self.last_response = dict(last_response) if last_response is not None else None


class WaiterTimeoutError(WaiterError):
    """The waiter ran out of attempts before reaching its success state (exit 4)."""

    category = "waiter-timeout"
    exit_code = 4


class WaiterFailedError(WaiterError):
    """The resource reached a state from which the waiter cannot succeed (exit 5)."""

    category = "waiter-failure"
    exit_code = 5


class WaitCancelledError(AwsopsError):
    """The caller's ``stop`` event was set while waiting (exit 130, like Ctrl-C)."""

    exit_code = 130


OnAttempt = Callable[[WaitAttempt], None]


@dataclass(frozen=True)
class WaitSummary:
    """What a successful :func:`wait_many` cost: rounds of polling and API calls."""

    resources: int
    batches: int
    rounds: int
    calls: int
    elapsed: float


def waiter_names(client: BaseClient) -> list[str]:
    """Waiter names of a client, snake_case (``instance_running``)."""
    return list(client.waiter_names)


def normalize_waiter_name(name: str) -> str:
    """Accept ``instance-running``, ``instance_running`` or ``InstanceRunning``."""
    if "-" in name:
        return name.replace("-", "_").lower()
    return xform_name(name) if name[:1].isupper() else name


def resource_label(params: Mapping[str, Any]) -> str:
    """A short, one-line description of what a waiter polls, from its parameters."""
    parts = []
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            if value and all(isinstance(v, (str, int)) for v in value):
                parts.append(f"{key}={_shorten(value)}")
            elif value and all(isinstance(v, Mapping) for v in value):
                parts.append(f"{key}={_shorten([_filter_label(v) for v in value])}")
        elif isinstance(value, (str, int)) and not isinstance(value, bool):
            parts.append(f"{key}={value}")
    return " ".join(parts) or "(no parameters)"


def _shorten(values: Sequence[Any]) -> str:
    shown = ",".join(map(str, values[:_SHOWN]))
    return shown + (f",+{len(values) - _SHOWN}" if len(values) > _SHOWN else "")


def _filter_label(item: Mapping[str, Any]) -> str:
    if "Name" in item and "Values" in item:
        return f"{item['Name']}:{'|'.join(map(str, item['Values']))}"
    return ";".join(f"{k}:{v}" for k, v in item.items())


@dataclass(frozen=True)
class _Observation:
    state: str
    observed: Any
    response: dict[str, Any]


class _WaiterRunner:
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

    def observe(self, params: Mapping[str, Any]) -> tuple[_Observation, int]:
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
        return _Observation(state, _observed(self.config.acceptors, matched, response), response), (
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


class _Pacer:
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
    runner = _WaiterRunner(client, waiter_name)
    pause, attempts = runner.settings(delay, max_attempts)
    params = dict(params or {})
    label = resource_label(params)
    what = f"{runner.service} {runner.name} on {label}"
    pacer = _Pacer(sleep, stop, clock)
    last: _Observation | None = None
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
            raise _failed(runner, label, last, attempt, elapsed, pending=())
        if attempt < attempts:
            pacer.pause(pause, what)
    assert last is not None  # attempts >= 1
    raise _timed_out(runner, label, last.observed, last.response, attempts, pacer.elapsed(), ())


def _failed(
    runner: _WaiterRunner,
    label: str,
    obs: _Observation,
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


def _timed_out(
    runner: _WaiterRunner,
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


def _tally(observed: Iterable[Any]) -> dict[str, int]:
    """Count the scalar values observed across batches (``{"pending": 2, ...}``)."""
    counts: Counter[str] = Counter()
    for value in observed:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is not None:
                counts[v if isinstance(v, str) else str(v)] += 1
    return dict(sorted(counts.items()))


def wait_many(
    client: BaseClient,
    waiter_name: str,
    id_param: str,
    ids: Sequence[str],
    *,
    batch_size: int = 100,
    extra_params: Mapping[str, Any] | None = None,
    delay: float | None = None,
    max_attempts: int | None = None,
    on_attempt: OnAttempt | None = None,
    sleep: Callable[[float], Any] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] | None = None,
) -> WaitSummary:
    """Wait for many resources, polling every pending batch once per round.

    Ids are de-duplicated and split into ``ceil(n / batch_size)`` batches passed as
    ``id_param`` (a list parameter such as ``InstanceIds``; when the operation takes a
    single id, such as ``DBSnapshotIdentifier``, each batch is one id). Each round
    makes one describe call per batch that has not yet succeeded, so a round costs at
    most ``ceil(n / batch_size)`` calls (plus extra pages if AWS pages one batch's
    answer) and the whole wait at most ``max_attempts`` times that. A batch that
    succeeded is not polled again. There is one ``delay`` between rounds.

    Raises like :func:`wait`: :class:`WaiterFailedError` as soon as any batch reaches a
    failure state, :class:`WaiterTimeoutError` (whose ``pending`` lists the ids not
    done) when rounds run out.
    """
    runner = _WaiterRunner(client, waiter_name)
    pause, attempts = runner.settings(delay, max_attempts)
    unique = list(dict.fromkeys(ids))
    single = _takes_single_id(client, runner.operation, id_param)
    pending: dict[int, list[str]] = dict(enumerate(chunked(unique, 1 if single else batch_size)))
    batches = len(pending)
    pacer = _Pacer(sleep, stop, clock)
    base = dict(extra_params or {})
    what = f"{runner.service} {runner.name} on {len(unique)} resource(s)"
    calls = 0
    observed: dict[str, int] = {}
    last_response: dict[str, Any] | None = None
    for round_no in range(1, attempts + 1):
        if not pending:
            break
        pacer.check(what)
        seen: list[Any] = []
        for index, batch in list(pending.items()):
            params = {**base, id_param: batch[0] if single else batch}
            obs, made = runner.observe(params)
            calls += made
            last_response = obs.response
            if obs.state == "failure":
                raise _failed(runner, resource_label(params), obs, round_no, pacer.elapsed(), batch)
            if obs.state == "success":
                del pending[index]
            seen.append(obs.observed)
        observed = _tally(seen)
        left = sum(len(b) for b in pending.values())
        if on_attempt is not None:
            on_attempt(
                WaitAttempt(
                    runner.name,
                    round_no,
                    attempts,
                    pacer.elapsed(),
                    observed,
                    "retry" if pending else "success",
                    service=runner.service,
                    resources=f"{id_param}={_shorten(unique)}",
                    pending=left,
                )
            )
        if pending and round_no < attempts:
            pacer.pause(pause, what)
        elif not pending:
            return WaitSummary(len(unique), batches, round_no, calls, pacer.elapsed())
    if not pending:  # nothing to wait for
        return WaitSummary(0, 0, 0, 0, pacer.elapsed())
    left_ids = [i for b in pending.values() for i in b]
    raise _timed_out(
        runner,
        f"{len(left_ids)} of {len(unique)} {id_param} ({_shorten(left_ids)})",
        observed,
        last_response,
        attempts,
        pacer.elapsed(),
        left_ids,
    )


def _takes_single_id(client: BaseClient, operation: str, id_param: str) -> bool:
    """Whether ``id_param`` of ``operation`` is a scalar (one id per call)."""
    shape = client.meta.service_model.operation_model(operation).input_shape
    members = shape.members if shape is not None else {}
    if id_param not in members:
        valid = ", ".join(sorted(members)) or "none"
        raise UsageError(f"{operation} has no parameter {id_param!r}; valid: {valid}")
    return bool(members[id_param].type_name != "list")
