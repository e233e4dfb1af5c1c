"""Logging set-up with secret redaction.

botocore's debug logs print request headers and bodies: signatures, access key ids,
session tokens (``'X-Amz-Security-Token': b'...'``) and, for STS, the credentials
themselves (``<SecretAccessKey>`` in the AssumeRole answer). :func:`redact` removes
them by shape; values handed to :func:`add_secret` are removed wherever they appear.

The contract: a record that goes through :class:`RedactingFilter` or is formatted by
:class:`RedactingFormatter` carries no access key id, secret key, session token or
signature, at any level, in its message, its arguments or its traceback.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import IO

MASK = "****"
_MIN_SECRET = 8

# Names under which credentials travel: headers, JSON/dict keys, config keys, query
# parameters. Matched case-insensitively, with optional quotes around the name.
_SECRET_NAMES = (
    r"secret_?access_?key|aws_secret_access_key|secret_?key|session_?token|"
    r"aws_session_token|security_?token|x-amz-security-token|x-amz-signature|"
    r"x-amz-credential|token|password"
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # XML forms in STS (and other) responses.
    (
        re.compile(r"(<(SecretAccessKey|SessionToken|AccessKeyId|SecurityToken)>)[^<]*(</\2>)"),
        r"\1" + MASK + r"\3",
    ),
    # key: value / key=value / 'key': b'value' / "key": "value" forms.
    (
        re.compile(
            r"(?i)((?<![a-z])['\"]?(?:" + _SECRET_NAMES + r")['\"]?\s*[:=]\s*b?['\"]?)"
            r"([^\s'\"&,;}<>\]\)]+)"
        ),
        r"\1" + MASK,
    ),
    # SigV4 Authorization header: credential scope and signature.
    (re.compile(r"(Credential=)[^/,\s'\"&]+"), r"\1" + MASK),
    (re.compile(r"(?i)(Signature=)[0-9a-f]+"), r"\1" + MASK),
    # Access key ids (long-term AKIA, temporary ASIA, and others of the same shape).
    (re.compile(r"\b(AKIA|ASIA|AROA|AIDA|ANPA|AGPA|ABIA|ACCA)[A-Z0-9]{12,}\b"), r"\1" + MASK),
    # Session tokens by shape: STS tokens are long base64 runs.
    (re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{120,}={0,2}"), MASK),
    # Secret access keys by shape: 40 base64 characters mixing cases and digits.
    (
        re.compile(
            r"(?<![A-Za-z0-9+/=])(?=[A-Za-z0-9+/]{0,39}[A-Z])(?=[A-Za-z0-9+/]{0,39}[a-z])"
            r"(?=[A-Za-z0-9+/]{0,39}[0-9])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])"
        ),
        MASK,
    ),
)

_known_lock = threading.Lock()
_known: set[str] = set()


def add_secret(value: str | None) -> None:
    """Redact this exact value from now on (e.g. a secret key or token just fetched).

    Values shorter than 8 characters are ignored: masking them would garble logs.
    """
    if value and len(value) >= _MIN_SECRET:
        with _known_lock:
            _known.add(value)


def redact(text: str) -> str:
    """Remove credentials from ``text``."""
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Replaces each record's message (arguments and traceback included) with its
    redacted form, so every handler after it sees no secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = str(record.msg)
        if record.exc_info:
            message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
            record.exc_info = None
        elif record.exc_text:
            message = f"{message}\n{record.exc_text}"
        record.exc_text = None
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
            record.stack_info = None
        record.msg = redact(message)
        record.args = None
        return True


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output (message, traceback, stack) is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(debug: bool = False, stream: IO[str] | None = None) -> logging.Handler:
    """Log to stderr: warnings by default, everything (botocore too) with ``debug``.

    Calling it again replaces the handler it installed before."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_awsops", False):
            root.removeHandler(old)
    handler._awsops = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.NOTSET if debug else logging.WARNING)
    return handler
