"""Waiting for many resources at once: their ids batched into few describe calls per
poll, one round over every pending batch per attempt, the resources that reached the
success state dropped from later rounds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from awsops.errors import UsageError
from awsops.waiters import (
    OnAttempt,
    Pacer,
    WaiterRunner,
    chunked,
    failed,
    timed_out,
)
from awsops.waitresults import WaitAttempt, WaitSummary, resource_label, shorten

if TYPE_CHECKING:
    import threading

    from botocore.client import BaseClient


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
    runner = WaiterRunner(client, waiter_name)
    pause, attempts = runner.settings(delay, max_attempts)
    unique = list(dict.fromkeys(ids))
    single = _takes_single_id(client, runner.operation, id_param)
    pending: dict[int, list[str]] = dict(enumerate(chunked(unique, 1 if single else batch_size)))
    batches = len(pending)
    pacer = Pacer(sleep, stop, clock)
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
                raise failed(runner, resource_label(params), obs, round_no, pacer.elapsed(), batch)
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
                    resources=f"{id_param}={shorten(unique)}",
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
    raise timed_out(
        runner,
        f"{len(left_ids)} of {len(unique)} {id_param} ({shorten(left_ids)})",
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
