"""Signals the fault proxy delivers at chosen points of a run.

A test arms a signal for a process: "send SIGKILL to pid P at the 3rd mutating call,
before forwarding it". The proxy counts the calls that would change something (mutating
and not a DryRun probe, optionally only some actions) from the moment of arming, so the
point is reached on every run, whatever the timing. A call the proxy answers itself
with an injected error (throttling, 5xx, expired) never reaches the server and is not
counted. Phases:

- ``before``: when the k-th counted call arrives, before it is forwarded. SIGKILL drops
  the call (it never reaches the server); SIGINT/SIGTERM give the process
  :data:`SETTLE_SECONDS` to react, then the call is forwarded and answered as usual,
  because it was already in flight.
- ``after``: the k-th counted call is forwarded and the server acts; then the signal is
  delivered, and the answer is sent after :data:`SETTLE_SECONDS` (SIGINT/SIGTERM) or
  dropped (SIGKILL).
- ``waiter``: at the first waiter poll after the k-th counted call (a DescribeSnapshots,
  DescribeInstances or DescribeImages call that names ids), handled like ``before``.
  ``at=0`` means the first poll after arming.

Each delivery is recorded as a :class:`~awsops.sandbox.ledger.FiredSignal` in the
proxy's stats, so a test can assert that the phase it meant was hit.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from awsops.errors import UsageError
from awsops.sandbox.awscalls import CallInfo
from awsops.sandbox.ledger import FaultStats, FiredSignal

PHASES = ("before", "after", "waiter")
SETTLE_SECONDS = 0.3


def parse_signal(value: int | str) -> signal.Signals:
    """``9``, ``"KILL"``, ``"SIGKILL"`` or ``signal.SIGKILL`` as a signal."""
    try:
        if isinstance(value, int) or str(value).isdigit():
            return signal.Signals(int(value))
        name = str(value).upper()
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except (KeyError, ValueError):
        raise UsageError(f"faults: unknown signal {value!r}") from None


@dataclass
class ArmedSignal:
    """One armed signal and how many counted calls it has seen since arming."""

    armed_id: int
    pid: int
    signum: signal.Signals
    at: int
    phase: str
    actions: frozenset[str]
    count: int = 0
    fired: bool = False

    def counts(self, info: CallInfo) -> bool:
        return info.changes and (not self.actions or info.action in self.actions)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.armed_id,
            "pid": self.pid,
            "signal": self.signum.name,
            "at": self.at,
            "phase": self.phase,
            "actions": sorted(self.actions),
            "count": self.count,
            "fired": self.fired,
        }


class SignalArming:
    """The armed signals of one proxy; thread-safe."""

    def __init__(self, stats: FaultStats, settle: float = SETTLE_SECONDS) -> None:
        self._stats = stats
        self._settle = settle
        self._lock = threading.Lock()
        self._armed: list[ArmedSignal] = []
        self._next_id = 1

    def arm(
        self,
        pid: int,
        sig: int | str = signal.SIGKILL,
        at: int = 1,
        phase: str = "before",
        actions: Iterable[str] = (),
    ) -> int:
        """Arm ``sig`` for ``pid`` at the ``at``-th counted call in ``phase``; returns
        the armed signal's id. Bad arguments raise a one-line UsageError."""
        signum = parse_signal(sig)
        if isinstance(actions, str):
            actions = [a for a in actions.split("+") if a]
        if phase not in PHASES:
            raise UsageError(f"faults: phase {phase!r} is not one of {', '.join(PHASES)}")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1:
            raise UsageError(f"faults: pid {pid!r} is not a process id")
        lowest = 0 if phase == "waiter" else 1
        if isinstance(at, bool) or not isinstance(at, int) or at < lowest:
            raise UsageError(f"faults: at={at!r} must be an integer >= {lowest} for {phase}")
        with self._lock:
            armed = ArmedSignal(self._next_id, pid, signum, at, phase, frozenset(actions))
            self._next_id += 1
            self._armed.append(armed)
            return armed.armed_id

    def disarm(self) -> None:
        with self._lock:
            self._armed.clear()

    def armed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.to_json() for a in self._armed]

    def due(self, info: CallInfo) -> list[ArmedSignal]:
        """Count ``info`` for every armed signal; return those that fire at this call
        (each fires once)."""
        firing: list[ArmedSignal] = []
        with self._lock:
            for armed in self._armed:
                if armed.fired:
                    continue
                if armed.phase == "waiter" and armed.count >= armed.at:
                    if info.waiter_poll:
                        armed.fired = True
                        firing.append(armed)
                    continue
                if armed.counts(info):
                    armed.count += 1
                    if armed.phase != "waiter" and armed.count == armed.at:
                        armed.fired = True
                        firing.append(armed)
        return firing

    def deliver(self, due: Sequence[ArmedSignal], info: CallInfo) -> bool:
        """Send each signal and record it; True if one was SIGKILL (the caller drops the
        call or its answer). After a catchable signal, wait for the process to react."""
        killed = caught = False
        for armed in due:
            error = None
            try:
                os.kill(armed.pid, armed.signum)
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
            self._stats.add_signal(
                FiredSignal(
                    armed.armed_id,
                    armed.pid,
                    armed.signum.name,
                    armed.phase,
                    armed.at,
                    info.name,
                    armed.count,
                    time.time(),
                    error,
                )
            )
            if armed.signum == signal.SIGKILL:
                killed = True
            elif error is None:
                caught = True
        if caught and not killed:
            time.sleep(self._settle)
        return killed
