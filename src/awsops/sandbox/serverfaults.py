"""Faults the sandbox server itself plays, as opposed to those of the fault proxy.

Bare moto completes every snapshot and image at once and hands out credentials that
never expire, so nothing that waits for a backup or outlives its credentials can fail
against it. :class:`ServerFaults` says how the server should behave instead:

- ``snapshot_delay`` / ``image_delay`` (seconds): a new snapshot (image) stays
  ``pending`` that long, with a growing ``Progress``;
- ``snapshot_error`` / ``image_error`` (share 0..1): that share of them then ends
  ``error`` (``failed``) instead of ``completed`` (``available``), chosen by
  :func:`fails` from ``seed`` and the resource id, so a test can tell which;
- ``credential_ttl`` (seconds): AssumeRole credentials expire that long after they are
  issued, and the server refuses them afterwards.

The ``--faults`` option of ``awsops sandbox up`` carries both kinds in one string;
:func:`split_faults` separates them. This module does not import moto.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from awsops.errors import UsageError
from awsops.sandbox.faultspec import (
    FaultSpec,
    normalize_key,
    parse_probability,
    parse_seconds,
    parse_seed,
    split_items,
)

MAX_DELAY_S = 24 * 3600.0
MAX_TTL_S = 12 * 3600.0
SERVER_KEYS = ("snapshot_delay", "snapshot_error", "image_delay", "image_error", "credential_ttl")
SHARED_KEYS = ("seed",)


def fails(seed: int, resource_id: str, share: float) -> bool:
    """Whether the backup ``resource_id`` ends in failure, for an error ``share``: the
    same answer for the same seed and id, in any process."""
    if share <= 0.0:
        return False
    digest = hashlib.sha256(f"{seed}:{resource_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < share


@dataclass(frozen=True)
class ServerFaults:
    """The sandbox server's fault settings; all zero (or None) is bare moto."""

    snapshot_delay: float = 0.0
    snapshot_error: float = 0.0
    image_delay: float = 0.0
    image_error: float = 0.0
    credential_ttl: float | None = None
    seed: int = 0

    @classmethod
    def parse(cls, text: str | None) -> ServerFaults:
        """``"snapshot-delay=30s,snapshot-error=0.1,credential-ttl=60s,seed=3"``: bare
        numbers are seconds. A bad key or value raises a one-line UsageError."""
        return cls().merged(split_items(text), strict=True)

    def merged(self, items: Iterable[tuple[str, Any]], strict: bool = False) -> ServerFaults:
        """These settings with ``items`` (key, value) applied; a value of None sets the
        key back to its default. ``strict`` refuses a key given twice."""
        defaults = ServerFaults()
        values: dict[str, Any] = {}
        for raw_key, raw in items:
            key = normalize_key(str(raw_key))
            if key not in (*SERVER_KEYS, *SHARED_KEYS):
                known = ", ".join(k.replace("_", "-") for k in (*SERVER_KEYS, *SHARED_KEYS))
                raise UsageError(f"faults: unknown server key {key!r} (known: {known})")
            if strict and key in values:
                raise UsageError(f"faults: {key} given twice")
            if raw is None:
                values[key] = getattr(defaults, key)
                continue
            if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
                raise UsageError(f"faults: {key}={raw!r} is not a number or a duration")
            values[key] = _value(key, str(raw).strip())
        return replace(self, **values)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerFaults:
        return cls().merged(data.items())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "seed")

    def __str__(self) -> str:
        parts = []
        for key in SERVER_KEYS:
            value = getattr(self, key)
            if value:
                unit = "s" if key.endswith(("_delay", "_ttl")) else ""
                parts.append(f"{key.replace('_', '-')}={value:g}{unit}")
        if self.seed:
            parts.append(f"seed={self.seed}")
        return ",".join(parts)


def _value(key: str, value: str) -> float | int:
    if key == "seed":
        return parse_seed(value)
    if key.endswith("_error"):
        return parse_probability(key, value)
    if key == "credential_ttl":
        ttl = parse_seconds(key, value, "s", MAX_TTL_S)
        if ttl <= 0:
            raise UsageError(f"faults: {key}={value} must be greater than 0")
        return ttl
    return parse_seconds(key, value, "s", MAX_DELAY_S)


def split_faults(text: str | None) -> tuple[str, str]:
    """Split a ``--faults`` string into (fault proxy spec, server spec). ``seed`` goes to
    both, but alone it asks for no proxy: a spec with only server keys needs none.
    Keys are not validated here beyond being ``key=value``."""
    proxy: list[str] = []
    server: list[str] = []
    seeds: list[str] = []
    for key, value in split_items(text):
        item = f"{key}={value}"
        if key in SERVER_KEYS:
            server.append(item)
        elif key in SHARED_KEYS:
            seeds.append(item)
        else:
            proxy.append(item)
    return ",".join(proxy + seeds if proxy else []), ",".join(server + seeds)


def parse_faults(text: str | None) -> tuple[FaultSpec, ServerFaults]:
    """Validate a ``--faults`` string: (the fault proxy's spec, the server's settings).
    Any bad key or value raises a one-line UsageError."""
    known = (*FaultSpec.KEYS, *SERVER_KEYS)
    for key, _ in split_items(text):
        if key not in known:
            names = ", ".join(k.replace("_", "-") if k in SERVER_KEYS else k for k in known)
            raise UsageError(f"faults: unknown key {key!r} (known: {names})")
    proxy, server = split_faults(text)
    return FaultSpec.parse(proxy), ServerFaults.parse(server)
