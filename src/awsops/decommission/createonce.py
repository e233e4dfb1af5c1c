"""What every backup (and restore) call of apply shares: create calls that EC2 gives no
idempotency token, made exactly once; the tags of awsops' backups; waiting for many
backups at once without one failure ending the wait for the others.

- A create call (CreateSnapshot, CreateSnapshots, CreateImage, RunInstances on restore,
  and TerminateInstances sent again for one instance)
  goes through a client without automatic retries: a throttle was refused before EC2
  acted, so it is resent after a backoff; after a 5xx or a lost answer the caller's
  look-up (its resource, by tag) comes first, and only if it finds nothing is the call
  sent again (:func:`send_once`).
- Once the run is stopping, nothing is sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from awsops.decommission.applyrun import ApplyRun
from awsops.decommission.journal import Event
from awsops.decommission.model import InstanceFacts
from awsops.decommission.outcomes import Outcome, TargetWork
from awsops.errors import (
    AwsError,
    AwsopsError,
    AwsTimeoutError,
    EndpointUnreachableError,
    NotFoundError,
    ThrottledError,
    translate,
)
from awsops.waiters import WaitCancelledError, WaiterFailedError, WaiterTimeoutError
from awsops.waitmany import wait_many

MIN_CREATE_ATTEMPTS = 6
SETTLE_LOOKS = 3  # looks for the resource after a lost answer to its create call
SETTLE_DELAY = 1.0  # seconds before the first look; doubled before each next one
TAG_PLAN = "awsops:plan-id"
TAG_INSTANCE = "awsops:instance-id"
TAG_VOLUME = "awsops:volume-id"
TAG_DATE = "awsops:date"

T = TypeVar("T")


class StoppedError(AwsopsError):
    """The run began stopping before this step could be (re)sent."""


def fail(
    run: ApplyRun, work: TargetWork, facts: InstanceFacts | str, err: AwsopsError, why: str
) -> None:
    """Journal and report an instance that could not be handled."""
    code = err.code if isinstance(err, AwsError) else type(err).__name__
    iid = facts if isinstance(facts, str) else facts.instance_id
    run.record(Event.FAILED, instance_id=iid, code=code, reason=why)
    work.result(facts, Outcome.FAILED, f"{why}: {err.one_line()}", code)


def maybe_transient(err: AwsopsError) -> bool:
    """An error after which the call may or may not have happened, and may be retried."""
    if isinstance(err, (ThrottledError, EndpointUnreachableError, AwsTimeoutError)):
        return True
    return isinstance(err, AwsError) and (err.http_status or 0) >= 500


def backup_tags(run: ApplyRun, instance_id: str) -> list[dict[str, str]]:
    """The tags of every backup awsops makes (prune-backups selects by them)."""
    return [
        {"Key": TAG_PLAN, "Value": run.plan.plan_id},
        {"Key": TAG_INSTANCE, "Value": instance_id},
        {"Key": TAG_DATE, "Value": run.now().strftime("%Y-%m-%d")},
    ]


def settle(run: ApplyRun, look: Callable[[], T | None]) -> T | None:
    """``look`` up to ``SETTLE_LOOKS`` times, waiting ``SETTLE_DELAY`` seconds before the
    first and twice as long before each next (EC2's describe calls are eventually
    consistent); the first thing it finds, or None."""
    for n in range(SETTLE_LOOKS):
        run.sleep(SETTLE_DELAY * 2**n)
        found = look()
        if found is not None:
            return found
    return None


def send_once(
    run: ApplyRun,
    work: TargetWork,
    operation: str,
    what: str,
    send: Callable[[], T],
    look: Callable[[], T | None],
) -> T:
    """A create call that has no idempotency token, made exactly once.

    ``send`` goes through a client without automatic retries. A throttled call was
    refused before EC2 acted on it, so it is simply sent again after a full-jitter
    backoff. After a 5xx or a lost connection the call may have succeeded: ``look``
    (this plan's resource, by tag) is asked first, allowing for EC2's eventual
    consistency (:func:`settle`), and only if it finds nothing is the call sent again.
    At most ``max_attempts`` sends: the client settings' retry budget, never fewer than
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
        existing = settle(run, look)
        if existing is not None:
            return existing
        if attempt == attempts:
            raise err from cause
    raise AssertionError("unreachable")  # pragma: no cover


def wait_each(
    run: ApplyRun,
    work: TargetWork,
    waiter: str,
    id_param: str,
    ids: list[str],
    states_of: Callable[[list[str]], dict[str, str]],
    final: tuple[str, ...],
) -> dict[str, str]:
    """Wait until every one of ``ids`` is in a ``final`` state, then return each one's
    state. One backup failing does not end the wait for the others (the waiter stops at
    the first failure, so the failed ones are set aside and the wait goes on). It ends
    at the waiter's budget (timeout) or when the run stops; the states are described
    in every case."""
    left = list(ids)
    for _ in range(len(ids)):  # each round sets aside at least one failed id
        if not left:
            break
        try:
            wait_many(
                work.ec2,
                waiter,
                id_param,
                left,
                delay=run.options.snapshot_delay,
                max_attempts=run.options.snapshot_max_attempts,
                stop=run.cancel.event,
            )
            break
        except WaiterFailedError:
            now = states_of(left)
            left = [i for i in left if now.get(i) not in final]
        except (WaiterTimeoutError, NotFoundError, WaitCancelledError):
            break
    return states_of(list(ids)) if ids else {}
