"""Clients built from an explicit session with one botocore ``Config``.

Every client awsops makes comes from :func:`make_client`: adaptive retries, connect and
read timeouts, a ``awsops/<version>`` user-agent suffix, when set an endpoint override
(the sandbox, tests) and, for EC2, the process's rate limiter
(:func:`awsops.ratelimit.default_limiter`), keyed by the account the session was bound
to (:func:`bind_account`). Clients are thread-safe once built. A session is not, so
:func:`make_client` builds the clients of one session one at a time (a lock per
session): threads may share a session and each build their own clients from it.

:class:`TargetClients` holds the clients of one target (account, region) and closes
them together when the target is done.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import urllib.request
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import ConnectionClosedError

from awsops import __version__
from awsops.config import ClientSettings
from awsops.errors import translate
from awsops.ratelimit import RateLimiter, default_limiter

if TYPE_CHECKING:
    import boto3

UNBOUND_ACCOUNT = "default"


@dataclass
class _SessionState:
    account: str
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


_SESSIONS: weakref.WeakKeyDictionary[Any, _SessionState] = weakref.WeakKeyDictionary()
_SESSIONS_LOCK = threading.Lock()


def _state(session: Any) -> _SessionState:
    with _SESSIONS_LOCK:
        state = _SESSIONS.get(session)
        if state is None:
            state = _SESSIONS[session] = _SessionState(UNBOUND_ACCOUNT)
        return state


def bind_account(session: boto3.Session, account: str) -> None:
    """Name the account ``session``'s credentials reach: the key of its EC2 rate
    buckets (sessions never bound share the ``default`` key)."""
    _state(session).account = account


def bound_account(session: boto3.Session) -> str:
    return _state(session).account


def build_config(settings: ClientSettings, region: str | None = None) -> Config:
    """The botocore ``Config`` that every awsops client uses."""
    kwargs: dict[str, Any] = {
        # total_max_attempts counts the first try; botocore's max_attempts does not.
        "retries": {"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "user_agent_extra": f"awsops/{__version__}",
        "max_pool_connections": settings.max_pool_connections,
    }
    if region:
        kwargs["region_name"] = region
    if not _proxies_possible():
        kwargs["proxies"] = {}  # what botocore would find, without looking
    if settings.endpoint_url:
        # A single local endpoint serves every service: S3 must use path-style URLs.
        kwargs["s3"] = {"addressing_style": "path"}
    return Config(**kwargs)


def _proxies_possible() -> bool:
    """False when no proxy can apply: on systems where proxies come from the
    environment only, no ``*_proxy`` variable is set. botocore otherwise scans the whole
    environment twice for every client it builds (about 0.2 ms each)."""
    if urllib.request.getproxies is not urllib.request.getproxies_environment:
        return True  # macOS and Windows also read the system's settings
    return any(name[-6:].lower() == "_proxy" for name in os.environ)


def make_client(
    session: boto3.Session,
    service: str,
    region: str | None = None,
    settings: ClientSettings | None = None,
    *,
    limiter: RateLimiter | None = None,
) -> Any:
    """A client for ``service`` in ``region`` from ``session`` (never the default session).

    EC2 clients go through ``limiter`` (default: the process's). Typed ``Any`` because
    botocore builds each service's methods at run time."""
    settings = settings or ClientSettings.from_env()
    region = region or session.region_name
    state = _state(session)
    try:
        with state.lock:
            client = session.client(  # type: ignore[call-overload]
                service,
                region_name=region,
                endpoint_url=settings.endpoint_url,
                config=build_config(settings, region),
            )
    except Exception as exc:  # botocore raises several unrelated types here
        raise translate(exc, operation=f"{service}:client", region=region) from exc
    _refuse_short_bodies(client)
    if client.meta.service_model.service_name == "ec2":
        (limiter or default_limiter()).attach(client, state.account)
    return client


class TargetClients:
    """The clients of one target: each built once, on first use, from the target's
    session; all closed (their connections released) by :meth:`close` or on leaving a
    ``with`` block. Thread-safe."""

    def __init__(
        self, session: boto3.Session, region: str, settings: ClientSettings | None = None
    ) -> None:
        self.session = session
        self.region = region
        self.settings = settings or ClientSettings.from_env()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, ClientSettings], Any] = {}
        self._closed = False

    def get(self, service: str, settings: ClientSettings | None = None) -> Any:
        """The target's client for ``service`` (with ``settings`` if given: e.g. a
        client without retries next to the usual one)."""
        key = (service, settings or self.settings)
        with self._lock:
            if self._closed:
                raise RuntimeError("the target's clients were closed")
            client = self._clients.get(key)
            if client is None:
                client = make_client(self.session, service, self.region, key[1])
                self._clients[key] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            self._closed = True
        for client in clients:
            client.close()

    def __enter__(self) -> TargetClients:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _refuse_short_bodies(client: Any) -> None:
    """Turn a response body cut short by a closed connection into a retryable error.

    botocore reads bodies without enforcing Content-Length, so a truncated answer would
    reach the parser (and fail there, unretried, with the raw body in its message).
    Raising ``ConnectionClosedError`` from the HTTP send step puts it inside botocore's
    retry loop, where it is retried like a reset. Streaming answers (S3 GetObject) are
    left alone: their reader checks the length itself.
    """
    http = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if http is None or getattr(http, "_awsops_guarded", False):
        return
    send = http.send

    def checked_send(request: Any) -> Any:
        response = send(request)
        expected = response.headers.get("content-length", "")
        checked = request.method != "HEAD" and not request.stream_output and expected.isdigit()
        if checked and len(response.content) < int(expected):
            raise ConnectionClosedError(endpoint_url=request.url)
        return response

    http.send = checked_send
    http._awsops_guarded = True
