"""Snapshots and images that take time, and sometimes fail, inside the sandbox server.

moto creates every snapshot ``completed`` and every image ``available``. While the
server's backup faults are set, a snapshot created by CreateSnapshot(s) or CopySnapshot
gets a :class:`BackupFate` instead: ``pending`` with a growing ``Progress`` until its
delay has passed, then ``completed`` or, for the chosen share, ``error``. Images created
by CreateImage or CopyImage likewise go ``pending`` -> ``available`` / ``failed``.

The state is computed from the creation time whenever moto reads it (no timers): the
patched ``status`` of moto's ``Snapshot`` and ``state`` of its ``Ami`` are properties,
so DescribeSnapshots/DescribeImages, their ``status``/``state`` filters and botocore's
waiters all see the same thing. An explicit change later (e.g. DisableImage) wins over
the fate. Only resources created by those API actions get a fate: the default AMIs moto
builds for each region, and the snapshots behind them, stay as moto makes them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from awsops.sandbox.serverfaults import ServerFaults, fails

SNAPSHOT_ACTIONS = frozenset({"CreateSnapshot", "CreateSnapshots", "CopySnapshot"})
IMAGE_ACTIONS = frozenset({"CreateImage", "CopyImage"})
# kind -> (state while pending, final state on success, final state on failure)
STATES = {
    "snapshot": ("pending", "completed", "error"),
    "image": ("pending", "available", "failed"),
}


@dataclass(frozen=True)
class BackupFate:
    """What a snapshot or image does over time: pending until ``final_at`` (epoch
    seconds), then ``final_state``."""

    kind: str
    resource_id: str
    account_id: str
    region: str
    created_at: float
    final_at: float
    final_state: str

    def state(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return self.final_state if now >= self.final_at else STATES[self.kind][0]

    @property
    def failed(self) -> bool:
        return self.final_state == STATES[self.kind][2]

    def progress(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if now >= self.final_at:
            return "0%" if self.failed else "100%"
        share = (now - self.created_at) / (self.final_at - self.created_at)
        return f"{min(99, max(0, int(share * 100)))}%"

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.resource_id,
            "account_id": self.account_id,
            "region": self.region,
            "created_at": self.created_at,
            "final_at": self.final_at,
            "final_state": self.final_state,
            "state": self.state(now),
        }


class BackupClock:
    """Gives new snapshots and images their fate, from the settings of the moment, and
    remembers every fate it gave (for the witness route). Thread-safe."""

    def __init__(self, settings: Callable[[], ServerFaults]) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._fates: dict[str, BackupFate] = {}
        self._request = threading.local()

    @contextlib.contextmanager
    def creating(self, action: str) -> Iterator[None]:
        """Within this block (one request on this thread), resources that ``action``
        creates get a fate."""
        kind = (
            "snapshot" if action in SNAPSHOT_ACTIONS else "image" if action in IMAGE_ACTIONS else ""
        )
        self._request.kind = kind
        try:
            yield
        finally:
            self._request.kind = ""

    def fate_for(
        self, kind: str, resource_id: str, account_id: str, region: str
    ) -> BackupFate | None:
        """The fate of a resource being created now, or None if it behaves as in moto."""
        if getattr(self._request, "kind", "") != kind:
            return None
        settings = self._settings()
        delay = settings.snapshot_delay if kind == "snapshot" else settings.image_delay
        share = settings.snapshot_error if kind == "snapshot" else settings.image_error
        if not delay and not share:
            return None
        _, ok, bad = STATES[kind]
        now = time.time()
        final = bad if fails(settings.seed, resource_id, share) else ok
        fate = BackupFate(kind, resource_id, account_id, region, now, now + delay, final)
        with self._lock:
            self._fates[resource_id] = fate
        return fate

    def listing(self) -> dict[str, list[dict[str, Any]]]:
        """Every fate given since the last reset, by kind, oldest first."""
        now = time.time()
        with self._lock:
            fates = sorted(self._fates.values(), key=lambda f: f.created_at)
        return {
            "snapshots": [f.to_json(now) for f in fates if f.kind == "snapshot"],
            "images": [f.to_json(now) for f in fates if f.kind == "image"],
        }

    def clear(self) -> None:
        with self._lock:
            self._fates.clear()


_FATE = "_awsops_fate"
_installed: list[BackupClock] = []


def install(clock: BackupClock) -> None:
    """Patch moto's Snapshot and Ami models (once per process) so that resources created
    under :meth:`BackupClock.creating` follow their fate."""
    if _installed:
        _installed[0] = clock
        return
    _installed.append(clock)
    from moto.ec2.models.amis import Ami
    from moto.ec2.models.elastic_block_store import Snapshot

    _patch(Snapshot, "snapshot", "status", default="completed")
    _patch(Ami, "image", "state", default="available")
    setattr(Snapshot, "progress", property(_progress))  # noqa: B010 - moto's model, patched
    setattr(Snapshot, "state_message", property(_state_message))  # noqa: B010


def _patch(model: Any, kind: str, attribute: str, default: str) -> None:
    original_init = model.__init__
    raw = f"_awsops_{attribute}"

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        backend = self.ec2_backend
        fate = _installed[0].fate_for(kind, self.id, backend.account_id, backend.region_name)
        if fate is not None:
            self.__dict__[_FATE] = fate

    def get(self: Any) -> str:
        fate = self.__dict__.get(_FATE)
        return fate.state() if fate is not None else str(self.__dict__.get(raw, default))

    def set_(self: Any, value: str) -> None:
        self.__dict__[raw] = value
        self.__dict__.pop(_FATE, None)  # an explicit change (e.g. DisableImage) wins

    model.__init__ = __init__
    setattr(model, attribute, property(get, set_))


def _progress(self: Any) -> str:
    fate = self.__dict__.get(_FATE)
    return fate.progress() if fate is not None else "100%"


def _state_message(self: Any) -> str | None:
    fate = self.__dict__.get(_FATE)
    if fate is not None and fate.failed and fate.state() == fate.final_state:
        return "the sandbox's snapshot-error fault failed this snapshot"
    return None
