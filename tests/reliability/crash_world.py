"""Kill points for the crash and interruption suite: ``decommission apply`` in a
subprocess, signalled by the fault proxy at a chosen call, then resumed.

A kill point names a phase of apply (the fault proxy's ``before``/``after`` a mutating
call, or the first waiter poll after one) and the call it must land on. The proxy
counts mutating calls from the moment it is armed, so the point is reached on every
run, whatever the timing; the suite asserts from ``fired_signals()`` that it was.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awsops.sandbox.faults import FaultProxy, FiredSignal
from tests.reliability.apply_world import (
    Instance,
    apply_args,
    run,
    snapshots,
    start,
    truth,
)
from tests.reliability.conftest import Proxied

# New snapshots stay pending this long (the sandbox server's backup fault), so apply
# really waits for them; apply polls every POLL seconds.
SNAPSHOT_DELAY = 1.0
POLL = 0.2
RUN_TIMEOUT = 180.0


def apply_argv(plan: Path) -> list[str]:
    """``awsops --sandbox decommission apply PLAN`` as the other suites run it, but one
    instance per TerminateInstances call (every instance a step of its own to be killed
    at) and snapshot polls every POLL seconds (the later option wins)."""
    return apply_args(plan, "--batch-size", "1", "--snapshot-delay", str(POLL))


SNAPSHOT_ACTIONS = ("CreateSnapshot", "CreateSnapshots")
SNAPSHOT_CALLS = ("ec2:CreateSnapshot", "ec2:CreateSnapshots")


@dataclass(frozen=True)
class KillPoint:
    """Where a run is interrupted: ``phase`` and the counted ``actions`` as the proxy
    arms them, and the calls the signal may be delivered at."""

    name: str
    phase: str
    actions: tuple[str, ...]
    calls: tuple[str, ...]
    at: int | None = None  # None: computed from moto before the run (see counts())

    @property
    def backups(self) -> bool:
        return self.actions == SNAPSHOT_ACTIONS


KILL_POINTS = (
    KillPoint("before CreateSnapshot(s)", "before", SNAPSHOT_ACTIONS, SNAPSHOT_CALLS, 2),
    KillPoint("after CreateSnapshot(s)", "after", SNAPSHOT_ACTIONS, SNAPSHOT_CALLS, 2),
    KillPoint("snapshot wait", "waiter", SNAPSHOT_ACTIONS, ("ec2:DescribeSnapshots",)),
    KillPoint(
        "before TerminateInstances",
        "before",
        ("TerminateInstances",),
        ("ec2:TerminateInstances",),
        1,
    ),
    KillPoint(
        "after TerminateInstances",
        "after",
        ("TerminateInstances",),
        ("ec2:TerminateInstances",),
        1,
    ),
    KillPoint("terminate wait", "waiter", ("TerminateInstances",), ("ec2:DescribeInstances",)),
)


@dataclass
class Remaining:
    """What is left to do, as moto has it, per region: the backup calls still to make
    for planned instances (one CreateSnapshots for an instance none of whose volumes has
    a snapshot of the plan and all of whose volumes termination deletes, else one
    CreateSnapshot per deletable volume without one), and planned instances still
    stopped."""

    backup_calls: dict[str, int]
    stopped: dict[str, set[str]]


def remaining(
    proxied: Proxied, regions: Sequence[str], before: Mapping[str, Instance], chosen: set[str]
) -> Remaining:
    now = truth(proxied, regions)
    snapped = snapshots(proxied, regions)
    calls: dict[str, int] = {r: 0 for r in regions}
    stopped: dict[str, set[str]] = {r: set() for r in regions}
    for iid in chosen:
        inst = before[iid]
        if now[iid].state == "stopped":
            stopped[inst.region].add(iid)
        left = [
            vol
            for vol in inst.deletable_volumes
            if not [s for s in snapped.get(vol, []) if s["State"] != "error"]
        ]
        whole = inst.one_snapshot_call and len(left) == len(inst.deletable_volumes)
        calls[inst.region] += 1 if whole else len(left)
    return Remaining(calls, stopped)


def counted_calls(point: KillPoint, left: Remaining) -> int:
    """The ``at`` to arm ``point`` with. A waiter kill point fires at the first poll
    after the *last* counted call of the run: then every target has sent its last
    CreateSnapshot(s) (its snapshots are pending for SNAPSHOT_DELAY, so the next poll is
    a snapshot waiter's) or its last TerminateInstances (the next poll is a
    termination waiter's). With one instance per batch, the run sends one
    TerminateInstances per planned instance still stopped."""
    if point.at is not None:
        return point.at
    if point.backups:
        assert all(left.backup_calls.values()), f"{point.name}: nothing left {left}"
        return sum(left.backup_calls.values())
    assert all(left.stopped.values()), f"{point.name}: a region has nothing left to do {left}"
    return sum(len(v) for v in left.stopped.values())


@dataclass
class Interrupted:
    """One interrupted run: how it ended and the signal the proxy delivered."""

    point: KillPoint
    sig: signal.Signals
    returncode: int
    fired: FiredSignal
    stderr: str = field(repr=False)


def interrupt_once(
    proxy: FaultProxy, plan: Path, point: KillPoint, at: int, sig: signal.Signals
) -> Interrupted:
    """Start apply, arm ``sig`` for it at ``point``, wait for it to end."""
    fired_before = len(proxy.stats.fired_signals())
    proc = start(apply_argv(plan))
    try:
        proxy.arm_signal(proc.pid, sig.name, at=at, phase=point.phase, actions=list(point.actions))
        _out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        proxy.signals.disarm()
    fired = proxy.stats.fired_signals()[fired_before:]
    assert len(fired) == 1, f"{point.name} {sig.name}: fired {fired}\n{err[-3000:]}"
    if sig == signal.SIGKILL:
        # The process is gone; a call another worker had in flight still lands, as it
        # would on AWS: let it before looking.
        time.sleep(0.5)
    return Interrupted(point, sig, proc.returncode, fired[0], err)


def freeze(
    proxy: FaultProxy, plan: Path, point: KillPoint, at: int, while_frozen: Callable[[int], Any]
) -> tuple[int, str, Any]:
    """Start apply, have the proxy stop it (SIGSTOP) at ``point``, run
    ``while_frozen(pid)``, then let it go on (SIGCONT) to its end. Returns its exit code,
    its stderr and what ``while_frozen`` returned."""
    fired_before = len(proxy.stats.fired_signals())
    proc = start(apply_argv(plan))
    try:
        proxy.arm_signal(proc.pid, "SIGSTOP", at=at, phase=point.phase, actions=list(point.actions))
        deadline = time.monotonic() + RUN_TIMEOUT
        while len(proxy.stats.fired_signals()) == fired_before:
            assert proc.poll() is None, f"apply ended before it was frozen: {proc.stderr}"
            assert time.monotonic() < deadline, "apply never reached the freeze point"
            time.sleep(0.05)
        (fired,) = proxy.stats.fired_signals()[fired_before:]
        assert fired.call in point.calls and fired.error is None, fired
        result = while_frozen(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
        proxy.signals.disarm()
    _out, err = proc.communicate(timeout=RUN_TIMEOUT)
    return proc.returncode, err, result


def run_to_end(plan: Path) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = run(apply_argv(plan), timeout=RUN_TIMEOUT)
    return result


def journal_text(home: Path, plan_id: str) -> str:
    path = home / "plans" / plan_id / "journal.jsonl"
    return path.read_text(errors="replace") if path.exists() else ""


def journal_runs(text: str) -> int:
    runs = 0
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            runs += json.loads(line).get("event") == "apply-started"
    return runs
