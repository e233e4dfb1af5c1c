"""Termination in batches, never twice for one instance.

- Right before each TerminateInstances batch the batch is described again: an instance
  that is already shutting down or terminated (another run of this plan, possibly on
  another host, or someone else) or that is no longer stopped is dropped from it.
- TerminateInstances goes through a client without automatic retries: a throttled
  batch is resent after a backoff; after any other error the batch is described again
  before deciding what happened (EC2 may have terminated part of it, or all of it
  with the answer lost), and what is still stopped is sent one instance at a time,
  each exactly once (described again before any resend).
- Once the run is stopping, no new TerminateInstances is sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from awsops.decommission import createonce, inspect
from awsops.decommission.applyrun import ApplyRun
from awsops.decommission.createonce import (
    MIN_CREATE_ATTEMPTS,
    StoppedError,
    maybe_transient,
    send_once,
)
from awsops.decommission.journal import Event
from awsops.decommission.outcomes import Outcome, TargetWork
from awsops.errors import AwsopsError, NotFoundError, OtherAwsError, ThrottledError, translate
from awsops.waiters import WaitCancelledError, WaiterFailedError, WaiterTimeoutError
from awsops.waitmany import wait_many

TERMINATING = ("shutting-down", "terminated")


def _state(described: Mapping[str, Mapping[str, object]], iid: str) -> str:
    inst = described.get(iid)
    if inst is None:
        return "gone"
    state = inst.get("State")
    return str(state.get("Name", "unknown")) if isinstance(state, Mapping) else "unknown"


def _not_terminating(work: TargetWork) -> OtherAwsError:
    return OtherAwsError(
        "TerminateInstances did not list the instance as terminating",
        code="NotTerminating",
        operation="TerminateInstances",
        region=work.plan.region,
    )


class Terminations:
    """Terminates and waits for the instances of one run."""

    def __init__(self, run: ApplyRun) -> None:
        self.run = run

    def still_stopped(self, work: TargetWork, ids: Sequence[str]) -> list[str]:
        """The ids of ``ids`` that are still stopped now; the others are reported."""
        now = inspect.describe_by_ids(work.ec2, work.plan.region, ids)
        keep = []
        for i in ids:
            state = _state(now, i)
            if state == "stopped":
                keep.append(i)
            elif state in TERMINATING or state == "gone":
                self.run.record(Event.SKIPPED, instance_id=i, reason=f"already {state}")
                work.result(
                    i,
                    Outcome.SKIPPED,
                    f"already {state} before TerminateInstances (another run of this plan, "
                    "or someone else)",
                )
            else:
                self.run.record(Event.SKIPPED, instance_id=i, reason=f"now {state}")
                work.result(i, Outcome.SKIPPED, f"drift: {state} since it was verified")
        return keep

    def terminate(
        self, work: TargetWork, ids: Sequence[str]
    ) -> tuple[list[str], dict[str, AwsopsError]]:
        """TerminateInstances for ``ids``; returns (accepted, failed with error).

        The call goes through the client without automatic retries (botocore would
        resend a batch whose answer was lost although EC2 had acted on it): a throttled
        batch is resent after a backoff; after any other error the batch is described
        (once more after a pause if the error may have been transient), and what is
        not terminating is sent again one instance at a time, each exactly once
        (:func:`~awsops.decommission.createonce.send_once`)."""
        run = self.run
        accepted: list[str] = []
        failed: dict[str, AwsopsError] = {}
        run.record(Event.TERMINATE_REQUESTED, instance_ids=list(ids))
        for i in ids:
            run.state.of(i).terminate_requested = True
        try:
            resp = self._send_batch(work, ids)
        except AwsopsError as err:
            if maybe_transient(err):
                run.sleep(createonce.SETTLE_DELAY)
            now = inspect.describe_by_ids(work.ec2, work.plan.region, ids)
            rest: list[str] = []
            for i in ids:
                (accepted if _state(now, i) in TERMINATING else rest).append(i)
            if len(ids) == 1 and not maybe_transient(err):
                failed.update({i: err for i in rest})  # refused: sending it alone changes nothing
                rest = []
            for i in rest:  # one at a time: one bad instance never blocks the others
                if run.stopping:
                    work.result(i, Outcome.NOT_DONE, "stopped before its termination")
                    continue
                run.record(Event.TERMINATE_REQUESTED, instance_ids=[i])
                try:
                    accepted.append(self._send_one(work, i))
                    self._accepted(i)
                except StoppedError as stopped:
                    work.result(i, Outcome.NOT_DONE, str(stopped))
                except AwsopsError as one:
                    failed[i] = one
        else:
            listed = {t["InstanceId"] for t in resp.get("TerminatingInstances", [])}
            accepted += [i for i in ids if i in listed]
            missing = [i for i in ids if i not in listed]
            if missing:  # not expected from EC2: look rather than assume
                now = inspect.describe_by_ids(work.ec2, work.plan.region, missing)
                for i in missing:
                    if _state(now, i) in TERMINATING:
                        accepted.append(i)
                    else:
                        failed[i] = _not_terminating(work)
        for i in accepted:
            self._accepted(i)
        return accepted, failed

    def _accepted(self, iid: str) -> None:
        if not self.run.state.of(iid).terminate_accepted:
            self.run.state.of(iid).terminate_accepted = True
            self.run.record(Event.TERMINATE_ACCEPTED, instance_id=iid)

    def _send_batch(self, work: TargetWork, ids: Sequence[str]) -> dict[str, Any]:
        """One TerminateInstances for the batch; a throttle (refused before EC2 acted)
        is resent after a backoff while the run is not stopping, before the backoff or
        after it (a signal cuts the backoff short)."""
        run = self.run
        client = work.ec2_once or work.ec2
        attempts = max(MIN_CREATE_ATTEMPTS, run.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return dict(client.terminate_instances(InstanceIds=list(ids)))
            except (ClientError, BotoCoreError, ResponseParserError) as exc:
                err = translate(
                    exc,
                    operation="TerminateInstances",
                    region=work.plan.region,
                    account_id=work.plan.account_id,
                )
                if not isinstance(err, ThrottledError) or attempt == attempts or run.stopping:
                    raise err from exc
                run.sleep(run.jitter() * min(0.25 * 2**attempt, 8.0))
                if run.stopping:  # stopped during the backoff: the batch is not sent again
                    raise err from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_one(self, work: TargetWork, iid: str) -> str:
        """TerminateInstances for one instance, exactly once: after a lost answer the
        instance is described before any resend."""
        client = work.ec2_once or work.ec2

        def look() -> str | None:
            now = inspect.describe_by_ids(work.ec2, work.plan.region, [iid])
            return iid if _state(now, iid) in TERMINATING else None

        def send() -> str:
            resp = client.terminate_instances(InstanceIds=[iid])
            if iid in {t["InstanceId"] for t in resp.get("TerminatingInstances", [])}:
                return iid
            if look() is None:
                raise _not_terminating(work)
            return iid

        return send_once(
            self.run, work, "TerminateInstances", f"the termination of {iid}", send, look
        )

    def wait_terminated(
        self,
        work: TargetWork,
        ids: Sequence[str],
        snaps: Mapping[str, Mapping[str, str]],
        images: Mapping[str, str] | None = None,
    ) -> None:
        """Wait for ``terminated`` (not past a stop), then report each instance."""
        if not ids:
            return
        run = self.run
        if not run.stopping:
            with contextlib.suppress(
                WaiterTimeoutError, WaiterFailedError, NotFoundError, WaitCancelledError
            ):  # described below
                wait_many(
                    work.ec2,
                    "instance_terminated",
                    "InstanceIds",
                    list(ids),
                    delay=run.options.terminate_delay,
                    max_attempts=run.options.terminate_max_attempts,
                    stop=run.cancel.event,
                )
        now = inspect.describe_by_ids(work.ec2, work.plan.region, ids)
        for i in ids:
            state = _state(now, i)
            if state in ("terminated", "gone"):
                if not run.state.of(i).terminated:
                    run.state.of(i).terminated = True
                    run.record(Event.TERMINATED, instance_id=i)
                work.result(i, Outcome.TERMINATED, "", None, snaps.get(i), (images or {}).get(i))
            elif state == "shutting-down" and run.stopping:
                work.result(
                    i,
                    Outcome.TERMINATED,
                    "termination accepted, still shutting-down when the run stopped",
                    None,
                    snaps.get(i),
                    (images or {}).get(i),
                )
            else:
                run.record(
                    Event.FAILED, instance_id=i, code="WaiterTimeout", reason=f"still {state}"
                )
                work.result(
                    i,
                    Outcome.FAILED,
                    f"termination accepted but still {state}",
                    "WaiterTimeout",
                    snaps.get(i),
                )
