"""What the fault proxy saw: counters per action, the ledger of mutating calls that
reached the server, the snapshot and image states it served, and the signals it sent.

Tests judge awsops from this record rather than from awsops' own output: which calls
reached EC2, in what order, and what EC2 had told the caller by then.
"""

from __future__ import annotations

import contextlib
import threading
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from awsops.sandbox.awscalls import CallInfo

MAX_MUTATIONS = 100_000
MAX_SERVED_IDS = 100_000


@dataclass(frozen=True)
class MutationRecord:
    """A mutating call that reached the upstream server, and what it answered.

    ``delivered`` is False when the proxy cut the response (a ``reset`` fault) or
    dropped it (a SIGKILL after the call): the change happened but the caller did not
    learn of it. ``changes`` lists, for EC2 instance state calls, ``(instance id,
    previous state, current state)``; ``created`` the ids of snapshots or volumes the
    call created. ``snapshots`` lists ``(volume id, snapshot id)`` for each snapshot a
    CreateSnapshot or CreateSnapshots call made. ``at`` is the wall time
    (``time.time()``) the call was sent to the server; ``dry_run`` marks an EC2
    ``DryRun=true`` probe, which changes nothing.
    """

    action: str
    params: Mapping[str, str]
    status: int
    delivered: bool
    changes: tuple[tuple[str, str, str], ...] = ()
    created: tuple[str, ...] = ()
    at: float = 0.0
    dry_run: bool = False
    snapshots: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "params": dict(self.params),
            "status": self.status,
            "delivered": self.delivered,
            "changes": [list(c) for c in self.changes],
            "created": list(self.created),
            "at": self.at,
            "dry_run": self.dry_run,
            "snapshots": [list(p) for p in self.snapshots],
        }


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str:
    return next((c.text or "" for c in element if _local(c.tag) == name), "")


def _parse_xml(body: bytes) -> ET.Element | None:
    with contextlib.suppress(ET.ParseError):
        return ET.fromstring(body)
    return None


def parse_mutation(
    info: CallInfo, status: int, body: bytes, delivered: bool, at: float = 0.0
) -> MutationRecord:
    """Build the record of a mutating call from its EC2 XML answer (best effort)."""
    changes: list[tuple[str, str, str]] = []
    created: list[str] = []
    snapshots: list[tuple[str, str]] = []
    root = _parse_xml(body) if info.protocol == "ec2" and status < 300 else None
    if root is not None:
        for item in root.iter():
            if _local(item.tag) != "item":
                continue
            kids = {_local(c.tag): c for c in item}
            if "instanceId" in kids and "previousState" in kids:
                prev = _child_text(kids["previousState"], "name")
                cur = _child_text(kids["currentState"], "name") if "currentState" in kids else ""
                changes.append((kids["instanceId"].text or "", prev, cur))
        for child in root:
            if _local(child.tag) in ("snapshotId", "volumeId", "imageId") and child.text:
                created.append(child.text)
        if info.action == "CreateSnapshot":
            sid = _child_text(root, "snapshotId")
            if sid:
                snapshots.append((info.params.get("VolumeId", ""), sid))
        elif info.action == "CreateSnapshots":
            for container in root.iter():
                if _local(container.tag) != "snapshotSet":
                    continue
                for item in container:
                    sid, vol = _child_text(item, "snapshotId"), _child_text(item, "volumeId")
                    if sid:
                        snapshots.append((vol, sid))
                        created.append(sid)
    return MutationRecord(
        info.name,
        dict(info.params),
        status,
        delivered,
        tuple(changes),
        tuple(created),
        at=at,
        dry_run=info.dry_run,
        snapshots=tuple(snapshots),
    )


# The item element of each describe answer, its id child and its state child.
_SERVED_SHAPES = {
    "DescribeSnapshots": ("snapshotSet", "snapshotId", "status"),
    "DescribeImages": ("imagesSet", "imageId", "imageState"),
}


def served_states(info: CallInfo, status: int, body: bytes) -> list[tuple[str, str]]:
    """``(id, state)`` of each snapshot or image in a DescribeSnapshots/DescribeImages
    answer; empty for any other call or an error answer."""
    shape = _SERVED_SHAPES.get(info.action) if info.protocol == "ec2" else None
    root = _parse_xml(body) if shape and status < 300 else None
    if root is None or shape is None:
        return []
    set_name, id_name, state_name = shape
    found: list[tuple[str, str]] = []
    for container in root.iter():
        if _local(container.tag) != set_name:
            continue
        for item in container:
            rid, state = _child_text(item, id_name), _child_text(item, state_name)
            if rid and state:
                found.append((rid, state))
    return found


@dataclass(frozen=True)
class FiredSignal:
    """An armed signal the proxy delivered: to whom, which, in what phase, and at which
    call (``call`` is ``service:Action``, ``count`` the counted mutating calls since
    arming). ``error`` says why delivery failed (e.g. no such process)."""

    armed_id: int
    pid: int
    signal: str
    phase: str
    at: int
    call: str
    count: int
    time: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultStats:
    """Thread-safe counters per action (``service:Action``): calls seen, calls forwarded
    to the server, faults injected by kind, the ledger of mutating calls, the states
    served per snapshot/image id, and the signals delivered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.faults_by_action: dict[str, Counter[str]] = {}
        self.mutations: deque[MutationRecord] = deque(maxlen=MAX_MUTATIONS)
        self.served: dict[str, list[tuple[str, float]]] = {}
        self.signals: list[FiredSignal] = []

    def record(self, action: str, fault: str | None, forwarded: bool) -> None:
        with self._lock:
            self.calls[action] += 1
            if forwarded:
                self.forwarded[action] += 1
            if fault:
                self.faults[fault] += 1
                self.faults_by_action.setdefault(action, Counter())[fault] += 1

    def add_mutation(self, record: MutationRecord) -> None:
        with self._lock:
            self.mutations.append(record)

    def add_served(self, states: list[tuple[str, str]], at: float) -> None:
        """Note the states a describe answer delivered; only changes are kept, so each
        id's list reads as its history as the caller saw it."""
        with self._lock:
            for rid, state in states:
                history = self.served.get(rid)
                if history is None:
                    if len(self.served) >= MAX_SERVED_IDS:
                        continue
                    history = self.served[rid] = []
                if not history or history[-1][0] != state:
                    history.append((state, at))

    def add_signal(self, fired: FiredSignal) -> None:
        with self._lock:
            self.signals.append(fired)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.forwarded.clear()
            self.faults.clear()
            self.faults_by_action.clear()
            self.mutations.clear()
            self.served.clear()
            self.signals.clear()

    @property
    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    @property
    def total_faults(self) -> int:
        with self._lock:
            return sum(self.faults.values())

    def mutation_list(self) -> list[MutationRecord]:
        with self._lock:
            return list(self.mutations)

    def served_states(self) -> dict[str, list[tuple[str, float]]]:
        """Per snapshot/image id, the states delivered to callers with the wall time
        each was first delivered (changes only)."""
        with self._lock:
            return {rid: list(h) for rid, h in self.served.items()}

    def fired_signals(self) -> list[FiredSignal]:
        with self._lock:
            return list(self.signals)

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain JSON-able data."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "forwarded": dict(self.forwarded),
                "faults": dict(self.faults),
                "faults_by_action": {a: dict(c) for a, c in self.faults_by_action.items()},
                "total_calls": sum(self.calls.values()),
                "total_faults": sum(self.faults.values()),
                "mutations": len(self.mutations),
                "served_ids": len(self.served),
                "signals": [s.to_json() for s in self.signals],
            }
