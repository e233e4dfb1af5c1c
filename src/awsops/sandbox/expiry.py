"""Assumed-role credentials that expire, inside the sandbox server.

moto's AssumeRole credentials never expire. With the server's ``credential_ttl`` set,
:class:`CredentialClock` rewrites the ``Expiration`` of each AssumeRole answer to now +
ttl and remembers the access key; once that time has passed, a request signed with the
key is refused with the service's expired-credentials error (EC2 ``RequestExpired``,
query services ``ExpiredToken``, ...), in the shapes the fault proxy uses. It counts
AssumeRole answers and refusals, so a test can tell how often a client refreshed.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections import Counter
from typing import Any

from awsops.sandbox.awscalls import CallInfo, FaultResponse, error_response

_EXPIRATION_RE = re.compile(rb"<Expiration>[^<]*</Expiration>")
_ACCESS_KEY_RE = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")
MAX_KEYS = 100_000


class CredentialClock:
    """Issued keys and their expiry (epoch seconds); counters. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._assume_role_calls = 0
        self._refused: Counter[str] = Counter()

    def issued(self, body: bytes, ttl: float | None, now: float | None = None) -> bytes:
        """Note an AssumeRole answer; with a ``ttl``, return it with its Expiration set to
        now + ttl (and remember its key), else unchanged."""
        with self._lock:
            self._assume_role_calls += 1
        found = _ACCESS_KEY_RE.search(body)
        if not ttl or found is None:
            return body
        expires = (time.time() if now is None else now) + ttl
        stamp = dt.datetime.fromtimestamp(expires, dt.timezone.utc).isoformat(
            timespec="milliseconds"
        )
        with self._lock:
            if len(self._expiry) < MAX_KEYS:
                self._expiry[found.group(1).decode()] = expires
        new = f"<Expiration>{stamp.replace('+00:00', 'Z')}</Expiration>".encode()
        return _EXPIRATION_RE.sub(new, body, count=1)

    def refusal(self, info: CallInfo, now: float | None = None) -> FaultResponse | None:
        """The expired-credentials error for a request signed with an expired key, or
        None if the key is not one that expires, or has not yet."""
        with self._lock:
            expires = self._expiry.get(info.key_id)
            if expires is None or (time.time() if now is None else now) < expires:
                return None
            self._refused[info.name] += 1
        return error_response(info, "expired")

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "assume_role_calls": self._assume_role_calls,
                "expiring_keys": len(self._expiry),
                "expired_refusals": sum(self._refused.values()),
                "expired_refusals_by_action": dict(self._refused),
            }

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()
            self._assume_role_calls = 0
            self._refused.clear()
