"""Plan signatures: HMAC-SHA256 over the plan's canonical JSON.

The key is ``$AWSOPS_PLAN_KEY`` if set (at least 32 characters; share it to apply a plan
on another host), else a random 256-bit key created on first use in
``$AWSOPS_HOME/plan-signing.key`` (mode 0600). ``apply`` refuses a plan whose signature
is missing or does not match.

What this protects against: a plan edited after review by anyone who does not hold the
key (widened criteria, an instance added, a lifetime stretched, a cap raised), a plan
file swapped for another one in a shared folder or a ticket, and plans made on another
host with another key. What it does not: someone who can read the key (the same user on
the same host, or whoever has ``AWSOPS_PLAN_KEY``) can sign anything; apply's own policy
(its floor on age, protection tags and caps) is what bounds such a plan.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awsops.errors import PlanError, UsageError
from awsops.home import home, open_private

KEY_ENV = "AWSOPS_PLAN_KEY"
KEY_FILE = "plan-signing.key"
ALGORITHM = "hmac-sha256"
MIN_ENV_KEY = 32


@dataclass(frozen=True)
class SigningKey:
    secret: bytes
    source: str  # where it came from, for messages

    @property
    def key_id(self) -> str:
        """A short public name of the key (not a secret: a hash of it)."""
        return hashlib.sha256(b"awsops-plan-key-id:" + self.secret).hexdigest()[:12]

    def sign(self, canonical: bytes) -> dict[str, str]:
        digest = hmac.new(self.secret, canonical, hashlib.sha256).hexdigest()
        return {"alg": ALGORITHM, "key_id": self.key_id, "value": digest}

    def verify(self, canonical: bytes, signature: Any, source: str) -> None:
        """Raise a one-line PlanError unless ``signature`` is this key's over ``canonical``."""
        if not isinstance(signature, Mapping) or signature.get("alg") != ALGORITHM:
            raise PlanError(
                f"{source} is not signed: apply only runs plans made by `awsops decommission "
                "plan` on a host with this plan key; make a new plan"
            )
        if signature.get("key_id") != self.key_id:
            raise PlanError(
                f"{source} was signed with another key ({signature.get('key_id')!r}; this host "
                f"has {self.key_id!r} from {self.source}): apply it where it was made, set "
                f"{KEY_ENV} to the key it was made with, or make a new plan here"
            )
        expected = hmac.new(self.secret, canonical, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(signature.get("value", ""))):
            raise PlanError(
                f"{source} signature mismatch: the plan was modified after it was written; "
                "make a new plan instead of editing it"
            )


def signing_key() -> SigningKey:
    """The plan key of this host (see the module docstring)."""
    env = os.environ.get(KEY_ENV)
    if env is not None:
        if len(env) < MIN_ENV_KEY:
            raise UsageError(f"{KEY_ENV} must be at least {MIN_ENV_KEY} characters long")
        return SigningKey(env.encode("utf-8"), f"${KEY_ENV}")
    return _file_key(home() / KEY_FILE)


def _file_key(path: Path) -> SigningKey:
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return _create_key(path)
    except OSError as exc:
        raise UsageError(f"cannot read plan key {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_mode & 0o077:
            raise UsageError(
                f"plan key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}): "
                f"chmod 600 {path}"
            )
        text = fh.read().decode("ascii", "replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 32:
        raise UsageError(f"plan key {path} is damaged: remove it to create a new one")
    return SigningKey(secret, str(path))


def _create_key(path: Path) -> SigningKey:
    """Write a new key beside ``path`` and link it into place: the key file appears
    whole or not at all, and of two processes creating it at once, one key wins."""
    secret = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret.hex().encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process created it first: use theirs
            return _file_key(path)
    except OSError as exc:
        raise UsageError(f"cannot create plan key {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return SigningKey(secret, str(path))
