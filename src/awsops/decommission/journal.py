"""The apply journal: append-only JSON lines, flushed and fsync'd, one per plan.

The journal of a plan lives in the awsops home, keyed by the plan id
(``$AWSOPS_HOME/plans/<plan id>/journal.jsonl``, mode 0600), not beside the plan file:
a copy of the plan, a symbolic link to it or the same file reached by another path all
share one journal and one lock.

Every mutating step is journaled *before* the call (intent) and *after* it (outcome).
:func:`replay` rebuilds what earlier runs did; a torn last line (a crash in the middle
of a write) is ignored, since its action is re-derived from AWS on resume. An exclusive
lock on the journal keeps two applies of one plan from running at once. A write that
fails (a full disk) or comes after the journal was closed raises: it is never dropped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awsops.errors import AwsopsError, PlanError, UsageError
from awsops.home import home, open_private, private_dir


class Event:
    """Journal event names (stable on disk)."""

    APPLY_STARTED = "apply-started"
    SNAPSHOT_REQUESTED = "snapshot-requested"
    SNAPSHOT_CREATED = "snapshot-created"
    SNAPSHOT_COMPLETED = "snapshot-completed"
    SNAPSHOT_FAILED = "snapshot-failed"
    RESTORE_CAPTURED = "restore-captured"
    IMAGE_REQUESTED = "image-requested"
    IMAGE_CREATED = "image-created"
    IMAGE_AVAILABLE = "image-available"
    IMAGE_FAILED = "image-failed"
    TERMINATE_REQUESTED = "terminate-requested"
    TERMINATE_ACCEPTED = "terminate-accepted"
    TERMINATED = "terminated"
    SKIPPED = "skipped"
    FAILED = "failed"
    APPLY_FINISHED = "apply-finished"


class JournalError(AwsopsError):
    """The journal could not be written (or was written after it was closed): apply
    stops before its next change."""

    exit_code = 1


def plan_dir(plan_id: str) -> Path:
    """``$AWSOPS_HOME/plans/<plan id>`` (not created)."""
    if not plan_id or "/" in plan_id or plan_id.startswith("."):
        raise PlanError(f"malformed plan id {plan_id!r}")
    return home() / "plans" / plan_id


def journal_path_for(plan_id: str) -> Path:
    """Where the journal of ``plan_id`` lives (the file may not exist yet)."""
    return plan_dir(plan_id) / "journal.jsonl"


def has_journal(plan_id: str) -> bool:
    """Whether ``plan_id`` has been applied (or is being applied): its journal exists."""
    try:
        path = journal_path_for(plan_id)
    except PlanError:
        return False
    return path.exists() and path.stat().st_size > 0


@dataclass
class InstanceRecord:
    """What the journal says about one instance."""

    snapshots: dict[str, str] = field(default_factory=dict)  # volume id -> snapshot id
    completed: set[str] = field(default_factory=set)  # volume ids with completed snapshot
    snapshot_requested: set[str] = field(default_factory=set)
    terminate_requested: bool = False
    terminate_accepted: bool = False
    terminated: bool = False
    image_id: str | None = None
    image_available: bool = False
    capture: dict[str, Any] | None = None  # what a restore needs (see capture.py)


@dataclass
class JournalState:
    """The replayed journal."""

    plan_id: str | None = None
    runs: int = 0
    instances: dict[str, InstanceRecord] = field(default_factory=dict)
    events: int = 0
    torn_lines: int = 0

    def of(self, instance_id: str) -> InstanceRecord:
        return self.instances.setdefault(instance_id, InstanceRecord())


class Journal:
    """An open, locked journal. Thread-safe :meth:`record`.

    Each record is one ``write`` of a whole line to a file opened ``O_APPEND``, then an
    fsync. A write that fails part-way (a full disk) is cut back off the file, so the
    journal never keeps half a record from a failed write."""

    def __init__(self, path: str | Path, plan_id: str) -> None:
        self.path = Path(path)
        self.plan_id = plan_id
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._seq = 0

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> JournalState:
        """Lock the journal (or refuse if another apply holds it) and replay it."""
        private_dir(self.path.parent)
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            raise JournalError(
                f"cannot open journal {self.path}: {exc.strerror or exc}; nothing was changed"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"another apply of plan {self.plan_id} is running (its journal {self.path} "
                "is locked): wait for it to finish, then run apply again to resume"
            ) from None
        self._fd = fd
        state = replay(self.path)
        if state.plan_id and state.plan_id != self.plan_id:
            self.close()
            raise PlanError(
                f"journal {self.path} belongs to plan {state.plan_id}, not {self.plan_id}"
            )
        self._seq = state.events
        if _ends_mid_line(self.path):
            # A crash between a record and its newline: start the next record on a
            # fresh line so the two never merge into one unreadable line.
            try:
                self._append(b"\n")
            except OSError as exc:
                self.close()
                raise JournalError(
                    f"cannot write journal {self.path}: {exc.strerror or exc}; nothing was changed"
                ) from None
        return state

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        """Unlock and close (idempotent)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _append(self, data: bytes) -> None:
        """Write all of ``data`` at the end and fsync; on failure cut off what part of
        it was written, then raise the OSError."""
        assert self._fd is not None
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise

    def record(self, event: str, **data: Any) -> dict[str, Any]:
        """Append one event and fsync before returning; raise :class:`JournalError` if
        the journal is closed or the write fails."""
        with self._lock:
            if self._fd is None:
                raise JournalError(f"journal {self.path} is closed: {event} was not recorded")
            entry = {
                "seq": self._seq + 1,
                "ts": dt.datetime.now(dt.timezone.utc).isoformat(),
                "plan_id": self.plan_id,
                "event": event,
                **data,
            }
            try:
                self._append((json.dumps(entry, sort_keys=True) + "\n").encode("utf-8"))
            except OSError as exc:
                raise JournalError(
                    f"cannot write journal {self.path}: {exc.strerror or exc}"
                ) from None
            self._seq += 1
        return entry


def _ends_mid_line(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return False
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


def read_events(path: str | Path) -> Iterator[Mapping[str, Any]]:
    """Every complete event of a journal; torn or garbled lines are skipped."""
    p = Path(path)
    if not p.exists():
        return
    with open(p, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                yield {"event": "__torn__"}
                continue
            if isinstance(entry, dict) and "event" in entry:
                yield entry


def replay(path: str | Path) -> JournalState:
    """Fold the journal into what is known to be done."""
    state = JournalState()
    for e in read_events(path):
        name = e["event"]
        if name == "__torn__":
            state.torn_lines += 1
            continue
        state.events = max(state.events, int(e.get("seq", 0)))
        state.plan_id = state.plan_id or e.get("plan_id")
        iid = e.get("instance_id")
        if name == Event.APPLY_STARTED:
            state.runs += 1
        elif name == Event.SNAPSHOT_REQUESTED and iid:
            state.of(iid).snapshot_requested.add(e["volume_id"])
        elif name == Event.SNAPSHOT_CREATED and iid:
            state.of(iid).snapshots[e["volume_id"]] = e["snapshot_id"]
        elif name == Event.SNAPSHOT_COMPLETED and iid:
            rec = state.of(iid)
            rec.snapshots[e["volume_id"]] = e["snapshot_id"]
            rec.completed.add(e["volume_id"])
        elif name == Event.SNAPSHOT_FAILED and iid:
            rec = state.of(iid)
            rec.snapshots.pop(e["volume_id"], None)
            rec.completed.discard(e["volume_id"])
        elif name == Event.RESTORE_CAPTURED and iid:
            state.of(iid).capture = dict(e.get("capture") or {})
        elif name == Event.IMAGE_CREATED and iid:
            state.of(iid).image_id = e.get("image_id")
        elif name == Event.IMAGE_AVAILABLE and iid:
            rec = state.of(iid)
            rec.image_id, rec.image_available = e.get("image_id"), True
        elif name == Event.IMAGE_FAILED and iid:
            rec = state.of(iid)
            rec.image_id, rec.image_available = None, False
        elif name == Event.TERMINATE_REQUESTED:
            for i in e.get("instance_ids", []):
                state.of(i).terminate_requested = True
        elif name == Event.TERMINATE_ACCEPTED and iid:
            state.of(iid).terminate_accepted = True
        elif name == Event.TERMINATED and iid:
            state.of(iid).terminated = True
    return state
