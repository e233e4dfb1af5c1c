"""Logging set-up with secret redaction.

botocore's debug logs print request headers and bodies: signatures, access key ids,
session tokens and, for STS, the credentials themselves. :class:`RedactingFilter`
rewrites every record that passes through awsops' handler, at every level.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import IO

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Access key ids (long-term AKIA, temporary ASIA, and others of the same shape).
    (re.compile(r"\b(AKIA|ASIA|AROA|AIDA|ANPA|AGPA)[A-Z0-9]{12,}\b"), r"\1****"),
    # Key/value forms: SecretAccessKey, SessionToken, aws_secret_access_key, tokens.
    (
        re.compile(
            r"(?i)(\"?(?:secret_?access_?key|aws_secret_access_key|secret_key|session_?token|"
            r"aws_session_token|x-amz-security-token|token)\"?\s*[:=]\s*[\"']?)([^\s\"',}<]+)"
        ),
        r"\1****",
    ),
    # XML forms in STS responses.
    (
        re.compile(r"(<(SecretAccessKey|SessionToken|AccessKeyId)>)[^<]*(</\2>)"),
        r"\1****\3",
    ),
    # SigV4 Authorization header: credential scope and signature.
    (re.compile(r"(Credential=)[^/,\s]+"), r"\1****"),
    (re.compile(r"(Signature=)[0-9a-f]+"), r"\1****"),
)


def redact(text: str) -> str:
    """Remove credentials from ``text``."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Formats each record's message and replaces it with its redacted form."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        return True


def setup_logging(debug: bool = False, stream: IO[str] | None = None) -> logging.Handler:
    """Log to stderr: warnings by default, everything (botocore too) with ``debug``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_awsops", False):
            root.removeHandler(old)
    handler._awsops = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    if not debug:
        for noisy in ("botocore", "boto3", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
