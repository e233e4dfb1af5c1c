"""Who owns an instance: its tags, then (optionally) who launched it, then a fallback.

1. the first non-empty value among the configured tag keys (default ``Owner``,
   ``owner``, ``CreatedBy``, ``Contact``), in that order;
2. with ``owner_from_cloudtrail``, the caller of its ``RunInstances`` call, looked up in
   CloudTrail (events of the last 90 days only; 2 look-ups per second per account and
   region). Answers, found or not, are kept in ``$AWSOPS_HOME/notices/owners.json``: who
   launched an instance never changes, so each instance is looked up once;
3. the config's ``fallback_owner``;
4. else the owner is unknown, and the notice says so (it can still go to the webhook,
   SNS and the report file, which need no address).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awsops.clock import iso_utc, system_clock
from awsops.decommission.stoptime import InstanceTrail, RateLimiter
from awsops.errors import AwsopsError
from awsops.home import home, private_dir, write_private
from awsops.markconfig import MarkSettings

SOURCE_CLOUDTRAIL = "cloudtrail"
SOURCE_FALLBACK = "fallback"
SOURCE_UNKNOWN = "unknown"


@dataclass(frozen=True)
class Owner:
    """An owner's contact (an email address, a user or team name) and where it came
    from: ``tag:<key>``, ``cloudtrail``, ``fallback`` or ``unknown`` (no contact)."""

    contact: str | None
    source: str

    @property
    def label(self) -> str:
        return self.contact or "(owner unknown)"


def owner_from_tags(tags: Mapping[str, str], keys: Sequence[str]) -> Owner | None:
    for key in keys:
        value = (tags.get(key) or "").strip()
        if value:
            return Owner(value, f"tag:{key}")
    return None


def caller_of(event: Mapping[str, Any]) -> str | None:
    """Who made a CloudTrail event: its ``Username`` (a user name, or an assumed role's
    session name, often the person's address), else the identity in the record."""
    name = event.get("Username")
    if isinstance(name, str) and name.strip():
        return name.strip()
    try:
        identity = json.loads(str(event.get("CloudTrailEvent") or "{}")).get("userIdentity", {})
    except (ValueError, AttributeError):
        return None
    arn = identity.get("arn") if isinstance(identity, dict) else None
    return str(arn) if arn else None


def _failed(event: Mapping[str, Any]) -> bool:
    try:
        return bool(json.loads(str(event.get("CloudTrailEvent") or "{}")).get("errorCode"))
    except (ValueError, AttributeError):
        return False


class CloudTrailOwnerLookup(InstanceTrail):
    """The caller of an instance's ``RunInstances``, from CloudTrail's 90-day history.

    One per account and region: look-ups are spaced to at most 2 a second (the
    LookupEvents limit) and each reads at most ``max_pages`` pages of the instance's
    events (newest first; the launch is the oldest)."""

    def __init__(
        self,
        client: Any,
        limiter: RateLimiter | None = None,
        max_pages: int = 10,
        now: dt.datetime | None = None,
    ) -> None:
        super().__init__(client, limiter, max_pages)
        self.now = now or system_clock()

    def lookup(self, instance_id: str) -> str | None:
        for page in self.pages(instance_id, self.now):
            for event in page:
                if event.get("EventName") == "RunInstances" and not _failed(event):
                    return caller_of(event)
        return None


class OwnerCache:
    """CloudTrail answers by ``account/region/instance``, kept between runs (0600)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "notices" / "owners.json"
        self._lock = threading.Lock()
        self._changed = False
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raw = {}
        self._entries: dict[str, dict[str, Any]] = raw if isinstance(raw, dict) else {}

    def get(self, key: str) -> tuple[bool, str | None]:
        """(known, owner): owner None means CloudTrail had no launch event for it."""
        with self._lock:
            entry = self._entries.get(key)
        if not isinstance(entry, dict):
            return False, None
        owner = entry.get("owner")
        return True, str(owner) if owner else None

    def put(self, key: str, owner: str | None, at: dt.datetime) -> None:
        with self._lock:
            self._entries[key] = {"owner": owner, "at": iso_utc(at)}
            self._changed = True

    def save(self) -> None:
        with self._lock:
            if not self._changed:
                return
            data = json.dumps(self._entries, indent=1, sort_keys=True).encode()
            self._changed = False
        private_dir(self.path.parent)
        write_private(self.path, data, "owner cache")


class OwnerResolver:
    """Resolves owners by the configured order (module docstring). Thread-safe."""

    def __init__(self, settings: MarkSettings, cache: OwnerCache | None, now: dt.datetime) -> None:
        self.settings = settings
        self.cache = cache
        self.now = now

    def resolve(
        self,
        tags: Mapping[str, str],
        key: str,
        lookup: CloudTrailOwnerLookup | None,
    ) -> Owner:
        """The owner of the instance ``key`` (``account/region/instance id``) with
        ``tags``. A CloudTrail error falls through to the fallback for this run and is
        not remembered: the next run asks again."""
        found = owner_from_tags(tags, self.settings.owner_tags)
        if found is not None:
            return found
        if self.settings.owner_from_cloudtrail and lookup is not None:
            known, caller = self.cache.get(key) if self.cache else (False, None)
            if not known:
                try:
                    caller = lookup.lookup(key.rsplit("/", 1)[-1])
                except AwsopsError:
                    caller = None
                else:
                    if self.cache is not None:
                        self.cache.put(key, caller, self.now)
            if caller:
                return Owner(caller, SOURCE_CLOUDTRAIL)
        if self.settings.fallback_owner:
            return Owner(self.settings.fallback_owner, SOURCE_FALLBACK)
        return Owner(None, SOURCE_UNKNOWN)
