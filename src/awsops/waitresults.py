"""What a wait reports: the per-attempt callback's record, the summary of a
successful :func:`awsops.waiters.wait_many`, the errors of a wait that did not succeed,
and the short labels of what was polled that their messages use."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from awsops.errors import AwsError, AwsopsError

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


def resource_label(params: Mapping[str, Any]) -> str:
    """A short, one-line description of what a waiter polls, from its parameters."""
    parts = []
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            if value and all(isinstance(v, (str, int)) for v in value):
                parts.append(f"{key}={shorten(value)}")
            elif value and all(isinstance(v, Mapping) for v in value):
                parts.append(f"{key}={shorten([_filter_label(v) for v in value])}")
        elif isinstance(value, (str, int)) and not isinstance(value, bool):
            parts.append(f"{key}={value}")
    return " ".join(parts) or "(no parameters)"


def shorten(values: Sequence[Any]) -> str:
    """The first few values, comma-separated, then ``+N`` for the rest."""
    shown = ",".join(map(str, values[:_SHOWN]))
    return shown + (f",+{len(values) - _SHOWN}" if len(values) > _SHOWN else "")


def _filter_label(item: Mapping[str, Any]) -> str:
    if "Name" in item and "Values" in item:
        return f"{item['Name']}:{'|'.join(map(str, item['Values']))}"
    return ";".join(f"{k}:{v}" for k, v in item.items())
