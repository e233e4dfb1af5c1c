"""RDS DB snapshots: create one and wait until it is available.

Snapshots of large databases take a long time, so the defaults are generous:
:data:`DEFAULT_SNAPSHOT_DELAY` seconds between polls, :data:`DEFAULT_SNAPSHOT_MAX_ATTEMPTS`
polls (one hour), through :func:`awsops.waiters.wait` with the
``db_snapshot_available`` waiter.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from awsops.errors import NotFoundError, UsageError, translate
from awsops.waiters import OnAttempt, wait

if TYPE_CHECKING:
    from mypy_boto3_rds import RDSClient

DEFAULT_SNAPSHOT_DELAY = 30.0
DEFAULT_SNAPSHOT_MAX_ATTEMPTS = 120
SNAPSHOT_WAITER = "db_snapshot_available"

# RDS identifier rules: 1-255 letters, digits and hyphens, starting with a letter,
# no two hyphens in a row, not ending with a hyphen.
_IDENTIFIER_RE = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,254}$")


@dataclass(frozen=True)
class DbSnapshot:
    """The parts of a DB snapshot an operator looks at."""

    identifier: str
    db_instance_identifier: str | None
    status: str | None
    snapshot_type: str | None = None
    engine: str | None = None
    arn: str | None = None
    created: dt.datetime | None = None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> DbSnapshot:
        return cls(
            identifier=item["DBSnapshotIdentifier"],
            db_instance_identifier=item.get("DBInstanceIdentifier"),
            status=item.get("Status"),
            snapshot_type=item.get("SnapshotType"),
            engine=item.get("Engine"),
            arn=item.get("DBSnapshotArn"),
            created=item.get("SnapshotCreateTime"),
        )

    def record(self) -> dict[str, Any]:
        return {
            "db_snapshot_identifier": self.identifier,
            "db_instance_identifier": self.db_instance_identifier,
            "status": self.status,
            "snapshot_type": self.snapshot_type,
            "engine": self.engine,
            "created_at": self.created,
            "db_snapshot_arn": self.arn,
        }


def validate_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a valid RDS identifier, else a one-line UsageError."""
    if not _IDENTIFIER_RE.match(value):
        raise UsageError(
            f"invalid {what} {value!r}: 1-255 letters, digits or hyphens, starting with a "
            "letter, without two hyphens in a row or a trailing hyphen"
        )
    return value


def wait_db_snapshot(
    client: RDSClient,
    db_snapshot_identifier: str,
    *,
    delay: float = DEFAULT_SNAPSHOT_DELAY,
    max_attempts: int = DEFAULT_SNAPSHOT_MAX_ATTEMPTS,
    on_attempt: OnAttempt | None = None,
    sleep: Callable[[float], Any] | None = None,
    stop: threading.Event | None = None,
) -> DbSnapshot:
    """Wait until the snapshot is ``available``; return it as last described.

    Raises :class:`~awsops.waiters.WaiterTimeoutError`,
    :class:`~awsops.waiters.WaiterFailedError` (deleted, failed, incompatible...) or
    :class:`~awsops.errors.NotFoundError` when there is no such snapshot.
    """
    validate_identifier(db_snapshot_identifier, "DB snapshot identifier")
    response = wait(
        client,
        SNAPSHOT_WAITER,
        {"DBSnapshotIdentifier": db_snapshot_identifier},
        delay=delay,
        max_attempts=max_attempts,
        on_attempt=on_attempt,
        sleep=sleep,
        stop=stop,
    )
    snapshots = response.get("DBSnapshots") or []
    if not snapshots:  # pathAll never succeeds on an empty list; kept as a guard
        raise NotFoundError(f"DB snapshot {db_snapshot_identifier} not found")
    return DbSnapshot.from_api(snapshots[0])


def create_db_snapshot(
    client: RDSClient,
    db_instance_identifier: str,
    db_snapshot_identifier: str,
    *,
    tags: Mapping[str, str] | None = None,
    wait: bool = False,
    delay: float = DEFAULT_SNAPSHOT_DELAY,
    max_attempts: int = DEFAULT_SNAPSHOT_MAX_ATTEMPTS,
    on_attempt: OnAttempt | None = None,
    sleep: Callable[[float], Any] | None = None,
    stop: threading.Event | None = None,
) -> DbSnapshot:
    """Create a manual snapshot of a DB instance; with ``wait``, wait until available.

    Identifiers are validated before any call. A snapshot name already in use is
    raised as one of ours (``DBSnapshotAlreadyExists``), nothing is overwritten.
    """
    validate_identifier(db_instance_identifier, "DB instance identifier")
    validate_identifier(db_snapshot_identifier, "DB snapshot identifier")
    params: dict[str, Any] = {
        "DBInstanceIdentifier": db_instance_identifier,
        "DBSnapshotIdentifier": db_snapshot_identifier,
    }
    if tags:
        params["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    try:
        response = client.create_db_snapshot(**params)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation="CreateDBSnapshot", region=client.meta.region_name) from exc
    created = DbSnapshot.from_api(response["DBSnapshot"])
    if not wait:
        return created
    return wait_db_snapshot(
        client,
        db_snapshot_identifier,
        delay=delay,
        max_attempts=max_attempts,
        on_attempt=on_attempt,
        sleep=sleep,
        stop=stop,
    )
