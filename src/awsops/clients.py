"""Clients built from an explicit session with one botocore ``Config``.

Every client awsops makes comes from :func:`make_client`: adaptive retries, connect and
read timeouts, a ``awsops/<version>`` user-agent suffix and, when set, an endpoint
override (the sandbox, tests). Clients are thread-safe once built; build them from a
session in one thread, then share the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import ConnectionClosedError

from awsops import __version__
from awsops.config import ClientSettings
from awsops.errors import translate

if TYPE_CHECKING:
    import boto3


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
    if settings.endpoint_url:
        # A single local endpoint serves every service: S3 must use path-style URLs.
        kwargs["s3"] = {"addressing_style": "path"}
    return Config(**kwargs)


def make_client(
    session: boto3.Session,
    service: str,
    region: str | None = None,
    settings: ClientSettings | None = None,
) -> Any:
    """A client for ``service`` in ``region`` from ``session`` (never the default session).

    Typed ``Any`` because botocore builds each service's methods at run time."""
    settings = settings or ClientSettings.from_env()
    region = region or session.region_name
    try:
        client = session.client(  # type: ignore[call-overload]
            service,
            region_name=region,
            endpoint_url=settings.endpoint_url,
            config=build_config(settings, region),
        )
    except Exception as exc:  # botocore raises several unrelated types here
        raise translate(exc, operation=f"{service}:client", region=region) from exc
    _refuse_short_bodies(client)
    return client


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
