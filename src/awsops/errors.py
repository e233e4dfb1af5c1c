"""One exception tree for awsops.

Every failure that leaves the library is an :class:`AwsopsError`. AWS failures are
translated from botocore with :func:`translate` and raised ``from`` the original::

    AwsopsError                      exit code 1 unless stated
    ├── UsageError                   bad input: config, plan, targets, region, profile (2)
    │   └── PlanError                plan file malformed, tampered, expired or drifted (2)
    ├── SafetyError                  a safety rail refused to go on (3)
    └── AwsError                     anything AWS or the transport said (code, request id...)
        ├── NotFoundError            *NotFound, NoSuch*, *.Malformed ids that do not exist
        ├── AccessDeniedError        AccessDenied, UnauthorizedOperation, AuthFailure...
        ├── ThrottledError           Throttling, RequestLimitExceeded, SlowDown...
        ├── InvalidParameterError    InvalidParameter*, ValidationError, Malformed*
        ├── OperationNotPermittedError  OperationNotPermitted (e.g. termination protection)
        ├── DryRunSucceeded          DryRunOperation: the call *would* have succeeded
        ├── OtherAwsError            any other ClientError code
        ├── EndpointUnreachableError DNS, refused connection, connection closed
        ├── AwsTimeoutError          connect or read timeout
        └── CredentialsError         missing, expired or invalid credentials

Waiter failures live in :mod:`awsops.waiters` and are also ``AwsError`` subclasses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    TokenRetrievalError,
    UnknownServiceError,
)
from botocore.parsers import ResponseParserError

log = logging.getLogger(__name__)


class AwsopsError(Exception):
    """Base of every error awsops raises. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1

    def one_line(self) -> str:
        """The message the CLI prints after ``error: ``: one line, credentials redacted."""
        from awsops.logs import redact

        return redact(" ".join(str(self).split()))


class UsageError(AwsopsError):
    """The user gave input we cannot act on. Nothing has been changed."""

    exit_code = 2


class PlanError(UsageError):
    """A plan file is malformed, tampered with, expired or no longer matches reality."""


class SafetyError(AwsopsError):
    """A safety rail (confirmation, blast radius, permissions) refused to go on."""

    exit_code = 3


class AwsError(AwsopsError):
    """A failure reported by AWS or by the transport on the way to it."""

    category = "aws"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        operation: str | None = None,
        region: str | None = None,
        account_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.operation = operation
        self.region = region
        self.account_id = account_id
        self.http_status = http_status

    def __str__(self) -> str:
        where = ", ".join(
            f"{k}={v}"
            for k, v in (
                ("operation", self.operation),
                ("region", self.region),
                ("account", self.account_id),
                ("request_id", self.request_id),
            )
            if v
        )
        head = f"{self.code}: {self.message}" if self.code else self.message
        return f"{head} ({where})" if where else head


class NotFoundError(AwsError):
    category = "not-found"


class AccessDeniedError(AwsError):
    category = "access-denied"


class ThrottledError(AwsError):
    category = "throttled"


class InvalidParameterError(AwsError):
    category = "invalid-parameter"
    exit_code = 2


class OperationNotPermittedError(AwsError):
    category = "operation-not-permitted"


class DryRunSucceeded(AwsError):
    """EC2 answered ``DryRunOperation``: the caller has permission and the call would succeed."""

    category = "dry-run-ok"
    exit_code = 0


class OtherAwsError(AwsError):
    category = "other"


class EndpointUnreachableError(AwsError):
    category = "unreachable"


class AwsTimeoutError(AwsError):
    category = "timeout"


class CredentialsError(AwsError):
    category = "credentials"
    exit_code = 2


# Codes are matched exactly first, then by the patterns below.
_EXACT: dict[str, type[AwsError]] = {
    "DryRunOperation": DryRunSucceeded,
    "OperationNotPermitted": OperationNotPermittedError,
    "UnauthorizedOperation": AccessDeniedError,
    "AccessDenied": AccessDeniedError,
    "AccessDeniedException": AccessDeniedError,
    "AuthFailure": AccessDeniedError,
    "UnauthorizedAccess": AccessDeniedError,
    "Forbidden": AccessDeniedError,
    "OptInRequired": AccessDeniedError,
    "InvalidClientTokenId": CredentialsError,
    "UnrecognizedClientException": CredentialsError,
    "SignatureDoesNotMatch": CredentialsError,
    "ExpiredToken": CredentialsError,
    "ExpiredTokenException": CredentialsError,
    "RequestExpired": CredentialsError,
    "InvalidAccessKeyId": CredentialsError,
    "Throttling": ThrottledError,
    "ThrottlingException": ThrottledError,
    "ThrottledException": ThrottledError,
    "RequestLimitExceeded": ThrottledError,
    "RequestThrottled": ThrottledError,
    "RequestThrottledException": ThrottledError,
    "TooManyRequestsException": ThrottledError,
    "ProvisionedThroughputExceededException": ThrottledError,
    "SlowDown": ThrottledError,
    "BandwidthLimitExceeded": ThrottledError,
    "ValidationError": InvalidParameterError,
    "ValidationException": InvalidParameterError,
    "MissingParameter": InvalidParameterError,
    "InvalidParameterCombination": InvalidParameterError,
    "InvalidFilter": InvalidParameterError,
    "NoSuchBucket": NotFoundError,
    "NoSuchKey": NotFoundError,
    "NoSuchEntity": NotFoundError,
    "NotFound": NotFoundError,
    "404": NotFoundError,
    "403": AccessDeniedError,
}


def category_for(code: str | None) -> type[AwsError]:
    """The error class for an AWS error code (``OtherAwsError`` when unknown)."""
    if not code:
        return OtherAwsError
    if code in _EXACT:
        return _EXACT[code]
    if code.endswith(("NotFound", ".NotFound", "NotFoundException", "NotFoundFault")) or (
        code.startswith("NoSuch")
    ):
        return NotFoundError
    if code.startswith("InvalidParameter") or code.endswith(".Malformed"):
        return InvalidParameterError
    if "Throttl" in code:
        return ThrottledError
    if code.startswith("Invalid") and code.endswith("Id"):
        return InvalidParameterError
    return OtherAwsError


def translate(
    exc: BaseException,
    *,
    operation: str | None = None,
    region: str | None = None,
    account_id: str | None = None,
) -> AwsopsError:
    """Map a botocore exception to one of ours, keeping code, request id and context.

    Exceptions that are already ours are returned unchanged. Anything that is not a
    botocore error is returned as an :class:`OtherAwsError` wrapping its text.
    """
    if isinstance(exc, AwsopsError):
        return exc
    ctx: dict[str, Any] = {"operation": operation, "region": region, "account_id": account_id}
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(err.get("Code") or "") or None
        message = str(err.get("Message") or exc)
        ctx["operation"] = operation or getattr(exc, "operation_name", None)
        cls = category_for(code)
        log.debug("AWS error %s in %s (%s)", code, ctx["operation"], cls.category)
        return cls(
            message,
            code=code,
            request_id=meta.get("RequestId") or meta.get("HTTPHeaders", {}).get("x-amz-request-id"),
            http_status=meta.get("HTTPStatusCode"),
            **ctx,
        )
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return AwsTimeoutError(str(exc), code=type(exc).__name__, **ctx)
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError)):
        return EndpointUnreachableError(str(exc), code=type(exc).__name__, **ctx)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, TokenRetrievalError)):
        return CredentialsError(str(exc), code=type(exc).__name__, **ctx)
    if isinstance(exc, ResponseParserError):
        # Its text holds the raw body (an STS answer carries credentials): never show it.
        return EndpointUnreachableError(
            "the response could not be parsed (cut short or garbled)",
            code="ResponseParserError",
            **ctx,
        )
    if isinstance(exc, ParamValidationError):
        return InvalidParameterError(" ".join(str(exc).split()), code="ParamValidation", **ctx)
    if isinstance(exc, ProfileNotFound):
        return UsageError(str(exc))
    if isinstance(exc, NoRegionError):
        return UsageError("no region given: pass --region or set AWS_REGION")
    if isinstance(exc, UnknownServiceError):
        return UsageError(str(exc).splitlines()[0])
    if isinstance(exc, BotoCoreError):
        name = type(exc).__name__
        if "Credential" in name or "Token" in name:
            return CredentialsError(str(exc), code=name, **ctx)
        if "Connection" in name or "Endpoint" in name:
            return EndpointUnreachableError(str(exc), code=name, **ctx)
        return OtherAwsError(str(exc), code=name, **ctx)
    return OtherAwsError(f"{type(exc).__name__}: {exc}", **ctx)


@contextmanager
def aws_errors(
    *, operation: str | None = None, region: str | None = None, account_id: str | None = None
) -> Iterator[None]:
    """Translate botocore errors raised in the block into awsops errors."""
    try:
        yield
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise translate(exc, operation=operation, region=region, account_id=account_id) from exc
