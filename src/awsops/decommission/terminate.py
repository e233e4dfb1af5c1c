"""Termination in batches, never twice for one instance.

- Right before each TerminateInstances batch the batch is described again: an instance
  that is already shutting down or terminated (another run of this plan, possibly on
  another host, or someone else) or that is no longer stopped is dropped from it.
- After any TerminateInstances error the batch is described again before deciding what
  happened (EC2 may have terminated part of it), then retried one instance at a time.
- Once the run is stopping, no new TerminateInstances is sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from awsops.decommission import inspect
from awsops.decommission.applyrun import ApplyRun
from awsops.decommission.journal import Event
from awsops.decommission.outcomes import Outcome, TargetWork
from awsops.errors import AwsopsError, NotFoundError, OtherAwsError, translate
from awsops.waiters import WaitCancelledError, WaiterFailedError, WaiterTimeoutError
from awsops.waitmany import wait_many

TERMINATING = ("shutting-down", "terminated")


def _state(described: Mapping[str, Mapping[str, object]], iid: str) -> str:
    inst = described.get(iid)
    if inst is None:
        return "gone"
    state = inst.get("State")
    return str(state.get("Name", "unknown")) if isinstance(state, Mapping) else "unknown"


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
        """TerminateInstances for ``ids``; returns (accepted, failed with error)."""
        run = self.run
        accepted: list[str] = []
        failed: dict[str, AwsopsError] = {}
        run.record(Event.TERMINATE_REQUESTED, instance_ids=list(ids))
        for i in ids:
            run.state.of(i).terminate_requested = True
        try:
            resp = work.ec2.terminate_instances(InstanceIds=list(ids))
        except (ClientError, BotoCoreError) as exc:
            err = translate(
                exc,
                operation="TerminateInstances",
                region=work.plan.region,
                account_id=work.plan.account_id,
            )
            # EC2 may have terminated part of the batch: look before deciding.
            now = inspect.describe_by_ids(work.ec2, work.plan.region, ids)
            rest = []
            for i in ids:
                if _state(now, i) in TERMINATING:
                    accepted.append(i)
                else:
                    rest.append(i)
            if len(ids) == 1:
                if rest:
                    failed[ids[0]] = err
            else:
                for i in rest:  # one at a time: one bad instance never blocks the others
                    if run.stopping:
                        work.result(i, Outcome.NOT_DONE, "stopped before its termination")
                        continue
                    ok, bad = self.terminate(work, [i])
                    accepted += ok
                    failed.update(bad)
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
                        failed[i] = OtherAwsError(
                            "TerminateInstances did not list the instance as terminating",
                            code="NotTerminating",
                            operation="TerminateInstances",
                            region=work.plan.region,
                        )
        for i in accepted:
            if not run.state.of(i).terminate_accepted:
                run.state.of(i).terminate_accepted = True
                run.record(Event.TERMINATE_ACCEPTED, instance_id=i)
        return accepted, failed

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
