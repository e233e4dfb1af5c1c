"""EC2's request-rate token buckets, one per (access key id, region, action).

An empty bucket means the call is throttled (``RequestLimitExceeded``). The sizes and
refill rates follow the defaults AWS documents per action class; ``scale`` shrinks both
so the buckets bite against moto, which is far slower than EC2.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from awsops.sandbox.awscalls import READ_PREFIXES

# EC2 request-rate buckets per action class: (bucket size, refill per second), after
# the defaults AWS documents for request token buckets.
EC2_BUCKETS: Mapping[str, tuple[float, float]] = {
    "non-mutating": (100.0, 20.0),
    "mutating": (200.0, 5.0),
    "resource-intensive": (50.0, 5.0),
}
_RESOURCE_INTENSIVE = frozenset(
    {"RunInstances", "StartInstances", "CreateSnapshot", "CreateVolume", "AttachVolume"}
)


def ec2_action_class(action: str) -> str:
    """The EC2 throttling class of an action."""
    if action.startswith(READ_PREFIXES):
        return "non-mutating"
    return "resource-intensive" if action in _RESOURCE_INTENSIVE else "mutating"


class TokenBuckets:
    """EC2-style request token buckets, one per (key id, region, action). Thread-safe."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str, str], tuple[float, float]] = {}

    def take(self, key_id: str, region: str, action: str, now: float | None = None) -> bool:
        """Take one token; False (throttle) when the bucket is empty."""
        size, rate = EC2_BUCKETS[ec2_action_class(action)]
        size, rate = max(1.0, size * self.scale), rate * self.scale
        now = time.monotonic() if now is None else now
        k = (key_id, region, action)
        with self._lock:
            tokens, last = self._state.get(k, (size, now))
            tokens = min(size, tokens + (now - last) * rate)
            ok = tokens >= 1.0
            self._state[k] = (tokens - 1.0 if ok else tokens, now)
        return ok
