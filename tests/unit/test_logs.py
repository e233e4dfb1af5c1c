"""Secret redaction: every shape in which botocore and awsops may print credentials."""

from __future__ import annotations

import io
import logging
import string
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awsops.logs import MASK, RedactingFilter, add_secret, redact, setup_logging

AK = "ASIAQWERTYUIOPASDFGH"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEBYaD" + "Ab3dE5fGh6iJk7Lm8No9pQ" * 12 + "=="
SIG = "a" * 24 + "0123456789abcdef" * 3

SHAPES = [
    pytest.param(
        "Sending http request: <AWSPreparedRequest headers={'X-Amz-Date': b'20260101T000000Z', "
        f"'X-Amz-Security-Token': b'{TOKEN}', 'Authorization': b'AWS4-HMAC-SHA256 "
        f"Credential={AK}/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, "
        f"Signature={SIG}'}}>",
        id="botocore-request-headers",
    ),
    pytest.param(
        "Response body:\nb'<AssumeRoleResponse><AssumeRoleResult><Credentials>"
        f"<AccessKeyId>{AK}</AccessKeyId><SecretAccessKey>{SK}</SecretAccessKey>"
        f"<SessionToken>{TOKEN}</SessionToken></Credentials></AssumeRoleResult>'",
        id="sts-xml-answer",
    ),
    pytest.param(
        f'{{"Credentials": {{"AccessKeyId": "{AK}", "SecretAccessKey": "{SK}", '
        f'"SessionToken": "{TOKEN}"}}}}',
        id="json-credentials",
    ),
    pytest.param(
        f"[p]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n"
        f"aws_session_token = {TOKEN}\n",
        id="config-file",
    ),
    pytest.param(
        f"https://b.s3.amazonaws.com/k?X-Amz-Credential={AK}%2F20260101%2Fus-east-1%2Fs3"
        f"&X-Amz-Security-Token={TOKEN}&X-Amz-Signature={SIG}",
        id="presigned-url",
    ),
    pytest.param(
        f"Credentials(access_key='{AK}', secret_key='{SK}', token='{TOKEN}')",
        id="credentials-repr",
    ),
    pytest.param(f"canonical request:\nx-amz-security-token:{TOKEN}\n", id="canonical-request"),
    pytest.param(f"unparsable: {SK} then {TOKEN}", id="bare-values"),
]


@pytest.mark.parametrize("text", SHAPES)
def test_every_shape_is_redacted(text: str) -> None:
    out = redact(text)
    for secret in (AK, SK, TOKEN, SIG):
        assert secret not in out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "NextToken=r-0123456789abcdef0&MaxResults=5",
        "'nextToken': 'eyJ2IjoxfQ=='",
        "RequestId: 6f1c3f2e-6c1a-4d51-9a4e-0c3bbf1e1a11 i-0123456789abcdef0 vol-0a1b2c3d",
        "commit 0123456789abcdef0123456789abcdef01234567",
        "2026-01-01T00:00:00Z us-east-1 arn:aws:iam::111111111111:role/ops",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text


def test_added_secrets_are_redacted_anywhere() -> None:
    value = "plain-looking-secret-value"
    add_secret(value)
    add_secret("short")  # ignored: too short to mask safely
    assert redact(f"x{value}y short") == f"x{MASK}y short"


_B64 = string.ascii_letters + string.digits + "+/"


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(alphabet=_B64, min_size=40, max_size=40).filter(
        lambda s: (
            any(c.isupper() for c in s)
            and any(c.islower() for c in s)
            and any(c.isdigit() for c in s)
        )
    ),
    token=st.text(alphabet=_B64, min_size=200, max_size=600),
    prefix=st.text(alphabet=string.printable, max_size=30),
    shape=st.sampled_from(range(5)),
)
def test_generated_credentials_never_survive(
    secret: str, token: str, prefix: str, shape: int
) -> None:
    text = [
        f"{prefix}<SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{token}</SessionToken>",
        f"{prefix}{{'X-Amz-Security-Token': b'{token}', 'secret_key': '{secret}'}}",
        f'{prefix}"SecretAccessKey": "{secret}", "SessionToken": "{token}"',
        f"{prefix} {secret} {token} ",
        f"{prefix}aws_secret_access_key={secret}\naws_session_token={token}",
    ][shape]
    out = redact(text)
    assert secret not in out
    assert token not in out


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("botocore", "boto3", "urllib3"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_filter_redacts_arguments_and_tracebacks() -> None:
    try:
        raise ValueError(f"bad answer <SecretAccessKey>{SK}</SecretAccessKey>")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "botocore", logging.DEBUG, __file__, 1, "token=%s", (TOKEN,), sys.exc_info()
        )
    assert RedactingFilter().filter(record)
    assert record.exc_info is None and record.args is None
    text = logging.Formatter().format(record)
    assert SK not in text and TOKEN not in text
    assert "ValueError" in text  # the traceback is kept, redacted


def test_debug_logging_after_quiet_set_up_shows_botocore_redacted(root_logging: None) -> None:
    setup_logging(debug=False, stream=io.StringIO())
    stream = io.StringIO()
    setup_logging(debug=True, stream=stream)
    assert sum(getattr(h, "_awsops", False) for h in logging.getLogger().handlers) == 1
    logging.getLogger("botocore.endpoint").debug("headers %s", {"X-Amz-Security-Token": TOKEN})
    logging.getLogger("botocore.endpoint").debug("failed", exc_info=ValueError(SK))
    out = stream.getvalue()
    assert "botocore.endpoint" in out
    assert TOKEN not in out and SK not in out
