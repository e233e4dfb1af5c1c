"""Plan files: versioned JSON with a SHA-256 checksum and an HMAC signature.

The checksum catches a truncated or damaged file; the signature (see
:mod:`awsops.decommission.signing`) refuses a plan edited after it was written. A plan
also carries its expiry (at most seven days after it was made). Every problem with a
plan file is a one-line :class:`PlanError`, before anything runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from awsops.decommission.model import PLAN_KIND, SCHEMA_VERSION, Plan
from awsops.decommission.signing import SigningKey, signing_key
from awsops.errors import PlanError
from awsops.home import write_private

PLAN_ID_RE = re.compile(r"^plan-\d{8}T\d{6}Z-[0-9a-f]{8}$")
MAX_PLAN_BYTES = 256 * 1024 * 1024
CLOCK_SKEW = dt.timedelta(minutes=5)


def canonical(body: Mapping[str, Any]) -> bytes:
    """The canonical JSON form (sorted keys, no spaces, ASCII)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def checksum(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON form."""
    return _digest(canonical(body))


def plan_json(plan: Plan, key: SigningKey | None = None) -> dict[str, Any]:
    """The plan as written to disk: its body, checksum and signature."""
    body = plan.body()
    raw = canonical(body)  # encoded once for both
    key = key or signing_key()
    return {**body, "checksum": _digest(raw), "signature": key.sign(raw)}


def _chunks(doc: Mapping[str, Any], size: int = 1 << 16) -> Iterator[bytes]:
    """``json.dumps(doc, indent=2) + "\\n"`` encoded, in pieces of about ``size`` bytes:
    a plan of many targets is never held whole as text."""
    parts: list[str] = []
    held = 0
    for part in json.JSONEncoder(indent=2).iterencode(doc):
        parts.append(part)
        held += len(part)
        if held >= size:
            yield "".join(parts).encode("utf-8")
            parts, held = [], 0
    parts.append("\n")
    yield "".join(parts).encode("utf-8")


def write_plan(plan: Plan, path: str | Path, key: SigningKey | None = None) -> Path:
    """Write the signed plan atomically, mode 0600, never through a symbolic link."""
    return write_private(Path(path), _chunks(plan_json(plan, key)), "plan")


def check_plan_id(plan_id: Any, source: str) -> str:
    if not isinstance(plan_id, str) or not PLAN_ID_RE.match(plan_id):
        raise PlanError(f"{source} has a malformed plan id {plan_id!r}")
    return plan_id


def parse_plan(
    raw: Any,
    source: str,
    now: dt.datetime | None = None,
    allow_expired: bool = False,
    key: SigningKey | None = None,
) -> Plan:
    """Validate a decoded plan: kind, schema version, checksum, signature, lifetime,
    expiry, then every field."""
    if not isinstance(raw, Mapping) or raw.get("kind") != PLAN_KIND:
        raise PlanError(f"{source} is not an awsops decommission plan")
    version = raw.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise PlanError(
            f"{source} has plan schema version {version!r}; this awsops reads version "
            f"{SCHEMA_VERSION}: make a new plan"
        )
    body = {k: v for k, v in raw.items() if k not in ("checksum", "signature")}
    if raw.get("checksum") != checksum(body):
        raise PlanError(
            f"{source} checksum mismatch: the plan was modified after it was "
            "written; make a new plan instead of editing it"
        )
    (key or signing_key()).verify(canonical(body), raw.get("signature"), source)
    try:
        check_plan_id(raw.get("plan_id"), source)
        plan = Plan.from_body(body, source)
    except PlanError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise PlanError(f"{source} is malformed: {type(exc).__name__} {exc}") from None
    now = now or dt.datetime.now(dt.timezone.utc)
    if plan.created_at > now + CLOCK_SKEW:
        raise PlanError(f"{source} was made in the future ({plan.created_at.isoformat()})")
    if not allow_expired and now >= plan.expires_at:
        raise PlanError(f"{source} expired at {plan.expires_at.isoformat()}: make a new plan")
    return plan


def read_plan_json(path: str | Path) -> Any:
    """The decoded JSON of a plan file; every problem is a one-line PlanError."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise PlanError(f"plan file not found: {p}") from None
    except IsADirectoryError:
        raise PlanError(f"plan file {p} is a directory") from None
    except OSError as exc:
        raise PlanError(f"cannot read plan file {p}: {exc.strerror or exc}") from None
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(f"plan file {p} is larger than {MAX_PLAN_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PlanError(f"plan file {p} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{p} is not valid JSON (truncated or corrupt at line {exc.lineno})"
        ) from None
    except RecursionError:
        raise PlanError(f"{p} is nested too deeply to be a plan") from None


def load_plan(
    path: str | Path, now: dt.datetime | None = None, allow_expired: bool = False
) -> Plan:
    """Read and validate a plan file; every problem is a one-line PlanError."""
    return parse_plan(read_plan_json(path), str(path), now=now, allow_expired=allow_expired)


def peek_plan_id(path: str | Path) -> str | None:
    """The plan id of an existing plan file, without validating the rest (None if the
    file is not a readable plan)."""
    try:
        raw = read_plan_json(path)
    except PlanError:
        return None
    if isinstance(raw, Mapping) and raw.get("kind") == PLAN_KIND:
        pid = raw.get("plan_id")
        if isinstance(pid, str) and PLAN_ID_RE.match(pid):
            return pid
    return None
