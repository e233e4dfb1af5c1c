"""Explicit ``boto3.Session`` objects: named profile, the standard chain, or AssumeRole.

Cost per target is flat: every session loads its service models through the process's
one loader (:mod:`awsops.loader`), so a model is parsed once per process however many
sessions and clients there are; one session serves every region of one set of
credentials; and assumed-role credentials are fetched once per (role, external id) and
shared by every region and session of that role: one AssumeRole per account and run.

Thread safety: a ``boto3.Session`` is *not* thread-safe; :func:`awsops.clients.make_client`
builds one session's clients one at a time, so threads may share a session from this
factory and each build their own clients. The factory itself is thread-safe. Sessions
are cached weakly, plus the last few used: the same session comes back while someone
holds it, and it is freed (with its clients) once the targets that used it are done.

Assumed-role credentials are botocore ``RefreshableCredentials`` that call STS again
before they expire, so a run of several hours never fails with ``ExpiredToken``.
botocore refreshes 15 minutes (advisory) / 10 minutes (mandatory) before expiry; for
credentials that live shorter than that, the windows shrink to a quarter / a sixth of
their lifetime, so they are refreshed during a run rather than on every call.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from awsops.clients import bind_account, make_client
from awsops.config import ClientSettings, Target, validate_role_arn
from awsops.errors import UsageError, translate
from awsops.loader import new_botocore_session

log = logging.getLogger(__name__)

DEFAULT_SESSION_NAME = "awsops"
DEFAULT_DURATION_SECONDS = 3600
# Assumed-role sessions kept after use: targets come account by account, so the next
# region of an account finds its session; older ones are freed (memory stays flat).
RECENT_SESSIONS = 32


EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")


@dataclass(frozen=True)
class AssumeRoleSpec:
    """What to assume: validated on construction."""

    role_arn: str
    session_name: str = DEFAULT_SESSION_NAME
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    external_id: str | None = None

    def __post_init__(self) -> None:
        validate_role_arn(self.role_arn)
        if not 900 <= self.duration_seconds <= 43200:
            raise UsageError("role session duration must be between 900 and 43200 seconds")
        if not 2 <= len(self.session_name) <= 64:
            raise UsageError("role session name must be 2 to 64 characters")
        if self.external_id is not None and not EXTERNAL_ID_RE.match(self.external_id):
            raise UsageError(
                f"external id {self.external_id!r}: STS takes 2 to 1224 characters of "
                "letters, digits and +=,.@:/-"
            )

    @property
    def account_id(self) -> str:
        return validate_role_arn(self.role_arn)


_ADVISORY_S = float(getattr(RefreshableCredentials, "_advisory_refresh_timeout", 15 * 60))
_MANDATORY_S = float(getattr(RefreshableCredentials, "_mandatory_refresh_timeout", 10 * 60))


class LifetimeRefreshCredentials(RefreshableCredentials):
    """``RefreshableCredentials`` whose refresh windows fit the credentials' lifetime.

    After each fetch the advisory window is min(botocore's 15 minutes, a quarter of the
    lifetime) and the mandatory one min(10 minutes, a sixth): hour-long credentials
    behave exactly as in botocore; one-minute credentials are refreshed about every 45
    seconds instead of before every request.
    """

    ADVISORY_SHARE = 1 / 4
    MANDATORY_SHARE = 1 / 6

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fit_windows()

    def _publish_refresh(self) -> None:
        base: Any = super()  # botocore's private hook: where new credentials take effect
        base._publish_refresh()
        self._fit_windows()

    def _fit_windows(self) -> None:
        state: Any = self  # the stubs do not declare botocore's private attributes
        if state._expiry_time is None:
            return
        lifetime = max(0.0, float(state._seconds_remaining()))
        state._advisory_refresh_timeout = min(_ADVISORY_S, lifetime * self.ADVISORY_SHARE)
        state._mandatory_refresh_timeout = min(_MANDATORY_S, lifetime * self.MANDATORY_SHARE)


class _AssumeRoleProvider(CredentialProvider):  # type: ignore[misc]
    """A credential provider of self-refreshing AssumeRole credentials: one credentials
    object, fetched on first use and shared by every session the provider serves."""

    METHOD = "awsops-assume-role"
    CANONICAL_NAME = "awsops-assume-role"

    def __init__(self, source: boto3.Session, spec: AssumeRoleSpec, settings: ClientSettings):
        super().__init__()
        self._source = source
        self._spec = spec
        self._settings = settings
        self._lock = threading.Lock()
        self._credentials: RefreshableCredentials | None = None

    def _fetch(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "RoleArn": self._spec.role_arn,
            "RoleSessionName": self._spec.session_name,
            "DurationSeconds": self._spec.duration_seconds,
        }
        if self._spec.external_id:
            kwargs["ExternalId"] = self._spec.external_id
        # A short-lived STS client: refreshes are far apart, and a client per role kept
        # for the whole run would grow with the number of accounts.
        sts = make_client(self._source, "sts", settings=self._settings)
        try:
            creds = sts.assume_role(**kwargs)["Credentials"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="AssumeRole") from exc
        finally:
            sts.close()
        log.debug("assumed %s until %s", self._spec.role_arn, creds["Expiration"])
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    def load(self) -> RefreshableCredentials:
        with self._lock:
            if self._credentials is None:
                self._credentials = LifetimeRefreshCredentials.create_from_metadata(
                    metadata=self._fetch(), refresh_using=self._fetch, method=self.METHOD
                )
            return self._credentials


_REGIONS_LOCK = threading.Lock()
_REGIONS: set[str] = set()


def known_regions(session: boto3.Session) -> set[str]:
    """Every region botocore knows for EC2 in any partition (offline, no API call).

    Computed once per process: botocore's endpoint data does not change at run time.
    """
    with _REGIONS_LOCK:
        if not _REGIONS:
            for partition in session.get_available_partitions():
                _REGIONS.update(session.get_available_regions("ec2", partition_name=partition))
        return set(_REGIONS)


RoleKey = tuple[str, "str | None"]


class SessionFactory:
    """Builds explicit sessions; never touches boto3's default session.

    ``profile`` selects a named profile for the base credentials; ``None`` uses the
    standard chain (environment, shared files, SSO, container, instance metadata).
    """

    def __init__(
        self,
        profile: str | None = None,
        region: str | None = None,
        settings: ClientSettings | None = None,
        session_name: str = DEFAULT_SESSION_NAME,
        duration_seconds: int = DEFAULT_DURATION_SECONDS,
        static_credentials: tuple[str, str] | None = None,
    ) -> None:
        self.profile = profile
        self._static = static_credentials
        self.settings = settings or ClientSettings.from_env()
        self.session_name = session_name
        self.duration_seconds = duration_seconds
        self._lock = threading.Lock()
        self._base = self._new_session(region)
        if self.settings.endpoint_url is None and not self._static:
            # A profile may name its own endpoint (endpoint_url in the config file):
            # every session built here, assumed-role ones too, then goes there.
            own = self._base._session.get_scoped_config().get("endpoint_url")
            if own:
                self.settings = self.settings.with_endpoint(str(own))
        self.region = region or self._base.region_name
        if self.region:
            self.validate_region(self.region)
        # One credentials provider per role (shared by its sessions: one AssumeRole),
        # sessions per (role, region) held only while someone uses them.
        self._roles: dict[RoleKey, _AssumeRoleProvider] = {}
        self._assumed: weakref.WeakValueDictionary[tuple[str, str | None, str], boto3.Session]
        self._assumed = weakref.WeakValueDictionary()
        self._recent: OrderedDict[tuple[str, str | None, str], boto3.Session] = OrderedDict()
        self._profiles: dict[str, SessionFactory] = {}

    def _new_session(self, region: str | None) -> boto3.Session:
        kwargs: dict[str, Any] = {"region_name": region}
        if self._static:
            kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = self._static
        try:
            bs = new_botocore_session(None if self._static else self.profile)
            session = boto3.Session(botocore_session=bs, **kwargs)
            if not self._static and self.profile:
                bs.get_scoped_config()  # an unknown profile fails here, not at first use
        except BotoCoreError as exc:
            raise translate(exc) from exc
        bind_account(session, f"profile:{self.profile or 'default'}")
        return session

    @property
    def base(self) -> boto3.Session:
        """The session of the base credentials (profile or chain)."""
        return self._base

    def validate_region(self, region: str) -> str:
        """Return ``region`` if botocore knows it (in any partition); else a one-line
        UsageError. The same holds with an endpoint override: the sandbox serves the
        regions AWS has, and an unknown name there is a typo, not a region."""
        if region in known_regions(self._base):
            return region
        raise UsageError(f"unknown region {region!r}")

    def session(self, region: str | None = None) -> boto3.Session:
        """A new session with the base credentials in ``region``."""
        region = self.validate_region(region) if region else self.region
        with self._lock:
            return self._new_session(region)

    def assume(self, spec: AssumeRoleSpec, region: str | None = None) -> boto3.Session:
        """A session whose credentials come from AssumeRole and refresh before expiry.

        Credentials are fetched once per (role, external id), lazily, on the first
        request that needs them, and shared by every session of that role; the session
        for (role, external id, region) is the same while it is in use.
        """
        region = self.validate_region(region) if region else self.region
        key = (spec.role_arn, spec.external_id, region or "")
        with self._lock:
            cached = self._assumed.get(key)
            if cached is not None:
                self._keep(key, cached)
                return cached
            provider = self._roles.get((spec.role_arn, spec.external_id))
            if provider is None:
                provider = _AssumeRoleProvider(self._base, spec, self.settings)
                self._roles[(spec.role_arn, spec.external_id)] = provider
            bs = new_botocore_session()
            bs.get_component("credential_provider").insert_before("env", provider)
            sess = boto3.Session(botocore_session=bs, region_name=region)
            bind_account(sess, spec.account_id)
            self._assumed[key] = sess
            self._keep(key, sess)
            return sess

    def _keep(self, key: tuple[str, str | None, str], session: boto3.Session) -> None:
        self._recent[key] = session
        self._recent.move_to_end(key)
        while len(self._recent) > RECENT_SESSIONS:
            self._recent.popitem(last=False)

    def for_target(self, target: Target) -> boto3.Session:
        """The session for one target's credentials: assumed into its role if it has
        one. One session serves every region of those credentials (clients are made
        per region), in the factory's region by default."""
        if target.role_arn:
            spec = AssumeRoleSpec(
                role_arn=target.role_arn,
                session_name=self.session_name,
                duration_seconds=self.duration_seconds,
                external_id=target.external_id,
            )
            return self.assume(spec)
        if target.profile and target.profile != self.profile:
            with self._lock:
                other = self._profiles.get(target.profile)
                if other is None:
                    other = SessionFactory(target.profile, self.region, self.settings)
                    self._profiles[target.profile] = other
            return other.base
        return self._base

    def account_id(self, session: boto3.Session) -> str:
        """The account of a session's credentials (one STS GetCallerIdentity call); the
        session's EC2 rate buckets are keyed by it from then on."""
        sts = make_client(session, "sts", settings=self.settings)
        try:
            account = str(sts.get_caller_identity()["Account"])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="GetCallerIdentity", region=session.region_name) from exc
        finally:
            sts.close()
        bind_account(session, account)
        return account
