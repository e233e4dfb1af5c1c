"""One way to wait for any state: botocore's waiter definitions, run by one bounded loop.

:func:`wait` interprets a botocore waiter (its operation and acceptors, pure data)
with a delay/max-attempts override and a callback per attempt, and raises errors of
ours that name the waiter, the resources and the last observed state.
:func:`wait_many` waits for many resources by batching their ids into few describe
calls per poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jmespath
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError, UnknownServiceError
from botocore.exceptions import DataNotFoundError as _DataNotFoundError

from awsops.errors import AwsError, UsageError, translate

if TYPE_CHECKING:
    from botocore.client import BaseClient


@dataclass(frozen=True)
class WaitAttempt:
    """What a per-attempt callback is told."""

    waiter: str
    attempt: int
    max_attempts: int
    elapsed: float
    observed: Any
    state: str  # "retry", "success" or "failure"


class WaiterTimeoutError(AwsError):
    """The waiter ran out of attempts before reaching its success state."""

    category = "waiter-timeout"
    exit_code = 4


class WaiterFailedError(AwsError):
    """The resource reached a state from which the waiter cannot succeed."""

    category = "waiter-failure"
    exit_code = 5


OnAttempt = Callable[[WaitAttempt], None]


def waiter_names(client: BaseClient) -> list[str]:
    """Waiter names of a client, snake_case (``instance_running``)."""
    return list(client.waiter_names)


def normalize_waiter_name(name: str) -> str:
    """Accept ``instance-running``, ``instance_running`` or ``InstanceRunning``."""
    if "-" in name:
        return name.replace("-", "_")
    return xform_name(name) if name[:1].isupper() else name


def _resource_label(params: Mapping[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            shown = ",".join(map(str, value[:5])) + (
                f",+{len(value) - 5}" if len(value) > 5 else ""
            )
            parts.append(f"{key}={shown}")
        elif isinstance(value, (str, int)):
            parts.append(f"{key}={value}")
    return " ".join(parts) or "(no parameters)"


def _observe(acceptors: Sequence[Any], response: Mapping[str, Any]) -> Any:
    """The value the waiter's path acceptors look at (e.g. instance states)."""
    if "Error" in response:
        return response["Error"].get("Code")
    for acceptor in acceptors:
        if acceptor.matcher in ("path", "pathAll", "pathAny") and acceptor.argument:
            try:
                return jmespath.search(acceptor.argument, response)
            except jmespath.exceptions.JMESPathError:
                continue
    return None


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
) -> dict[str, Any]:
    """Poll until the waiter's success state; return the last response.

    At most ``max_attempts`` calls are made (the waiter's default when ``None``), with
    ``delay`` seconds between them. Raises :class:`WaiterTimeoutError` when attempts
    run out, :class:`WaiterFailedError` on a failure acceptor, an awsops error on an
    unexpected AWS error, and :class:`UsageError` for an unknown waiter name.
    """
    name = normalize_waiter_name(waiter_name)
    service = client.meta.service_model.service_name
    if name not in client.waiter_names:
        known = ", ".join(n.replace("_", "-") for n in client.waiter_names)
        raise UsageError(f"unknown {service} waiter {waiter_name!r}; known: {known}")
    try:
        config: Any = client.get_waiter(name).config
    except (_DataNotFoundError, UnknownServiceError) as exc:
        raise UsageError(str(exc)) from exc
    attempts = int(max_attempts if max_attempts is not None else config.max_attempts)
    pause = float(delay if delay is not None else config.delay)
    if attempts < 1 or pause < 0:
        raise UsageError("waiter needs max attempts >= 1 and delay >= 0")
    method = getattr(client, xform_name(config.operation))
    params = dict(params or {})
    label = _resource_label(params)
    region = client.meta.region_name
    event = stop or threading.Event()
    do_sleep = sleep or event.wait
    start = time.monotonic()
    observed: Any = None
    for attempt in range(1, attempts + 1):
        try:
            response: dict[str, Any] = method(**params)
        except ClientError as exc:
            response = dict(exc.response)
            error_exc: ClientError | None = exc
        except BotoCoreError as exc:
            raise translate(exc, operation=config.operation, region=region) from exc
        else:
            error_exc = None
        state = "retry"
        for acceptor in config.acceptors:
            if acceptor.matcher_func(response):
                state = acceptor.state
                break
        observed = _observe(config.acceptors, response)
        if on_attempt is not None:
            on_attempt(
                WaitAttempt(name, attempt, attempts, time.monotonic() - start, observed, state)
            )
        if state == "success":
            return response
        if state == "failure":
            raise WaiterFailedError(
                f"waiter {service} {name} reached a failure state for {label}; "
                f"last observed: {observed}",
                code="WaiterFailure",
                operation=config.operation,
                region=region,
            )
        if (
            error_exc is not None
            and state == "retry"
            and not _retryable_error(config.acceptors, response)
        ):
            raise translate(error_exc, operation=config.operation, region=region) from error_exc
        if attempt < attempts:
            do_sleep(pause)
    raise WaiterTimeoutError(
        f"waiter {service} {name} timed out after {attempts} attempts "
        f"({time.monotonic() - start:.1f}s) for {label}; last observed: {observed}",
        code="WaiterTimeout",
        operation=config.operation,
        region=region,
    )


def _retryable_error(acceptors: Sequence[Any], response: Mapping[str, Any]) -> bool:
    """An error the waiter explicitly retries on (matched by an 'error' acceptor)."""
    code = response.get("Error", {}).get("Code")
    return any(a.matcher == "error" and a.expected == code for a in acceptors)


def chunked(items: Iterable[str], size: int) -> Iterable[list[str]]:
    """Split ids into lists of at most ``size``."""
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def wait_many(
    client: BaseClient,
    waiter_name: str,
    id_param: str,
    ids: Sequence[str],
    *,
    batch_size: int = 200,
    extra_params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Wait for many resources with one describe call per ``batch_size`` ids per poll.

    Each batch is waited for in turn; a batch that already succeeded costs one call.
    """
    for batch in chunked(dict.fromkeys(ids), batch_size):
        wait(client, waiter_name, {**dict(extra_params or {}), id_param: batch}, **kwargs)
