"""What the fault proxy injects: :class:`FaultSpec` and its one-line parser.

The value parsers here (probabilities, durations) are shared with the sandbox server's
own fault settings (:mod:`awsops.sandbox.serverfaults`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from awsops.errors import UsageError

MAX_LATENCY_S = 60.0


def normalize_key(key: str) -> str:
    """``Snapshot-Delay`` and ``snapshot_delay`` name the same key."""
    return key.strip().lower().replace("-", "_")


def split_items(text: str | None) -> list[tuple[str, str]]:
    """``"a=1, b=2"`` as ``[("a", "1"), ("b", "2")]`` (keys normalized); an item without
    ``=`` or without a value is a UsageError."""
    items: list[tuple[str, str]] = []
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise UsageError(f"faults: expected key=value, got {item!r}")
        items.append((normalize_key(key), value.strip()))
    return items


def _number(key: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise UsageError(f"faults: {key}={value!r} is not a number")
    return x


def parse_probability(key: str, value: str) -> float:
    p = _number(key, value)
    if not 0.0 <= p <= 1.0:
        raise UsageError(f"faults: {key}={value} must be between 0 and 1")
    return p


_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_seconds(key: str, value: str, default_unit: str, maximum: float) -> float:
    """A duration such as ``50ms``, ``0.2s``, ``2m`` or ``1h`` in seconds; a bare number
    is in ``default_unit``. Longer than ``maximum`` seconds is a UsageError."""
    m = _DURATION_RE.fullmatch(value)
    if not m:
        raise UsageError(f"faults: {key}={value!r} is not a duration (e.g. 50ms or 0.2s)")
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2) or default_unit]
    if seconds > maximum:
        raise UsageError(f"faults: {key}={value} is longer than {maximum:g}s")
    return seconds


def _duration_ms(key: str, value: str) -> float:
    return parse_seconds(key, value, "ms", MAX_LATENCY_S) * 1000.0


def parse_positive(key: str, value: str) -> float:
    x = _number(key, value)
    if not x > 0:
        raise UsageError(f"faults: {key}={value} must be greater than 0")
    return x


def parse_seed(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"faults: seed={value!r} is not an integer") from None


def _names(value: str) -> tuple[str, ...]:
    return tuple(sorted({v.strip() for v in value.split("+") if v.strip()}))


@dataclass(frozen=True)
class FaultSpec:
    """What to inject. Probabilities are per request and mutually exclusive, so their sum
    must not exceed 1. ``only`` restricts the random faults and latency to those action
    names (``DescribeInstances``, ...); empty means every action."""

    throttle: float = 0.0
    error5xx: float = 0.0
    reset: float = 0.0
    truncate: float = 0.0
    latency_ms: float = 0.0
    bucket: bool = False
    bucket_scale: float = 1.0
    expired: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    seed: int | None = None

    KEYS = (
        "throttle",
        "error5xx",
        "reset",
        "truncate",
        "latency",
        "bucket",
        "bucket_scale",
        "expired",
        "only",
        "seed",
    )

    def __post_init__(self) -> None:
        if self.throttle + self.error5xx + self.reset + self.truncate > 1.0 + 1e-9:
            raise UsageError("faults: throttle + error5xx + reset + truncate must not exceed 1")

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """Parse ``"throttle=0.2,error5xx=0.05,reset=0.02,latency=50ms,bucket=ec2"``.

        Other keys: ``bucket_scale=0.1`` (shrink bucket sizes and refill rates),
        ``expired=AKID1+AKID2``, ``only=Action1+Action2``, ``seed=N``. An empty string is
        no faults. Any bad key or value raises a one-line :class:`UsageError`.
        """
        values: dict[str, Any] = {}
        for key, value in split_items(text):
            if key not in cls.KEYS:
                raise UsageError(f"faults: unknown key {key!r} (known: {', '.join(cls.KEYS)})")
            if key in values or (key == "latency" and "latency_ms" in values):
                raise UsageError(f"faults: {key} given twice")
            if key in ("throttle", "error5xx", "reset", "truncate"):
                values[key] = parse_probability(key, value)
            elif key == "latency":
                values["latency_ms"] = _duration_ms(key, value)
            elif key == "bucket":
                if value.lower() not in ("ec2", "on", "true", "off", "false", "none"):
                    raise UsageError(f"faults: bucket={value!r}: expected ec2 or off")
                values["bucket"] = value.lower() in ("ec2", "on", "true")
            elif key == "bucket_scale":
                values[key] = parse_positive(key, value)
            elif key in ("expired", "only"):
                values[key] = _names(value)
            else:
                values["seed"] = parse_seed(value)
        return cls(**values)

    def __str__(self) -> str:
        parts = [
            f"{k}={getattr(self, k)}"
            for k in ("throttle", "error5xx", "reset", "truncate")
            if getattr(self, k)
        ]
        if self.latency_ms:
            parts.append(f"latency={self.latency_ms:g}ms")
        if self.bucket:
            parts.append("bucket=ec2")
            if self.bucket_scale != 1.0:
                parts.append(f"bucket_scale={self.bucket_scale:g}")
        for key in ("expired", "only"):
            if getattr(self, key):
                parts.append(f"{key}={'+'.join(getattr(self, key))}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return ",".join(parts)

    def applies_to(self, action: str) -> bool:
        return not self.only or action in self.only
