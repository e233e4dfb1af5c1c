"""Calls that change something and carry no idempotency token, made exactly once.

CreateSnapshot, CreateImage, RunInstances (with its token, but looked for first) and
TerminateInstances go through a client without automatic retries: botocore would resend
a call whose answer was lost although EC2 had acted on it. Here a throttle (refused
before EC2 acted) is resent after a backoff; after a 5xx or a lost connection the
resource is looked for first, allowing for EC2's eventual consistency, and the call is
sent again only if nothing is found. Once the run is stopping, nothing is sent again.
"""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from awsops.decommission.applyrun import ApplyRun
from awsops.decommission.outcomes import TargetWork
from awsops.errors import (
    AwsError,
    AwsopsError,
    AwsTimeoutError,
    EndpointUnreachableError,
    ThrottledError,
    translate,
)

MIN_CREATE_ATTEMPTS = 6
SETTLE_LOOKS = 3  # looks for what a call made after its answer was lost
SETTLE_DELAY = 1.0  # seconds before the first look; doubled before each next one


class StoppedError(AwsopsError):
    """The run began stopping before this step could be (re)sent."""


def maybe_transient(err: AwsopsError) -> bool:
    """An error after which the call may or may not have happened, and may be retried."""
    if isinstance(err, (ThrottledError, EndpointUnreachableError, AwsTimeoutError)):
        return True
    return isinstance(err, AwsError) and (err.http_status or 0) >= 500


def send_once(
    run: ApplyRun,
    work: TargetWork,
    operation: str,
    what: str,
    send: Callable[[], str],
    look: Callable[[], str | None],
) -> str:
    """A create call that has no idempotency token, made exactly once.

    ``send`` goes through a client without automatic retries. A throttled call was
    refused before EC2 acted on it, so it is simply sent again after a full-jitter
    backoff. After a 5xx or a lost connection the call may have succeeded: ``look``
    (this plan's resource, by tag) is asked first, allowing for EC2's eventual
    consistency (``SETTLE_LOOKS`` looks, waiting ``SETTLE_DELAY`` seconds, then twice
    that...), and only if it finds nothing is the call sent again. At most
    ``max_attempts`` sends: the client settings' retry budget, never fewer than
    ``MIN_CREATE_ATTEMPTS``. Once the run is stopping, nothing is sent again.
    """
    attempts = max(MIN_CREATE_ATTEMPTS, run.max_attempts)
    for attempt in range(1, attempts + 1):
        if attempt > 1 and run.stopping:
            raise StoppedError(
                f"stopped while creating {what}; the next run adopts it if it was made"
            )
        try:
            return send()
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            err = translate(
                exc, operation=operation, region=work.plan.region, account_id=work.plan.account_id
            )
            cause = exc
            if not maybe_transient(err):
                raise err from exc
        if isinstance(err, ThrottledError):  # refused, not acted on: nothing to look for
            if attempt == attempts:
                raise err from cause
            run.sleep(run.jitter() * min(0.25 * 2**attempt, 8.0))
            continue
        for n in range(SETTLE_LOOKS):
            run.sleep(SETTLE_DELAY * 2**n)
            existing = look()
            if existing is not None:
                return existing
        if attempt == attempts:
            raise err from cause
    raise AssertionError("unreachable")  # pragma: no cover
