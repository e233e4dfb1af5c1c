"""What an AWS request is, and how AWS says no.

:func:`classify` names a request's service, action, region, signing key and protocol;
:func:`error_response` builds the error AWS sends for throttling, server errors and
expired credentials, in the shape of that protocol (EC2 XML, query ``ErrorResponse``,
S3 XML, JSON). The fault proxy and the sandbox server both answer with these.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

READ_PREFIXES = ("Describe", "Get", "List", "BatchGet", "Search", "Lookup", "Head")

_POLL_ACTIONS = frozenset({"DescribeSnapshots", "DescribeInstances", "DescribeImages"})
_ID_PARAM_RE = re.compile(r"(?:SnapshotId|InstanceId|ImageId)\.\d+")
_FILTER_NAME_RE = re.compile(r"Filter\.(\d+)\.Name")
_ID_FILTERS = frozenset({"snapshot-id", "instance-id", "image-id"})
_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class CallInfo:
    """One AWS request as the proxy sees it. ``protocol`` picks the error shape."""

    service: str
    action: str
    region: str
    key_id: str
    protocol: str  # "ec2" | "query" | "s3" | "json"
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``service:Action``, the key of the counters."""
        return f"{self.service}:{self.action}"

    @property
    def mutating(self) -> bool:
        """Whether the call may change something (STS never does)."""
        if self.service == "sts":
            return False
        if self.protocol == "s3":
            return not self.action.startswith(("Get", "Head", "List"))
        return not self.action.startswith(READ_PREFIXES)

    @property
    def dry_run(self) -> bool:
        """An EC2 ``DryRun=true`` probe: it asks for permission and changes nothing."""
        return self.params.get("DryRun", "").lower() == "true"

    @property
    def changes(self) -> bool:
        """Whether the call would change something: mutating and not a DryRun probe."""
        return self.mutating and not self.dry_run

    def named_ids(self) -> tuple[str, ...]:
        """The resource ids an EC2 describe call names: ``SnapshotId.N``, ``InstanceId.N``,
        ``ImageId.N`` or the values of a ``snapshot-id``/``instance-id``/``image-id``
        filter."""
        ids = [v for k, v in self.params.items() if _ID_PARAM_RE.fullmatch(k)]
        for key, name in self.params.items():
            m = _FILTER_NAME_RE.fullmatch(key)
            if m and name in _ID_FILTERS:
                prefix = f"Filter.{m.group(1)}.Value."
                ids += [v for k, v in self.params.items() if k.startswith(prefix)]
        return tuple(ids)

    @property
    def waiter_poll(self) -> bool:
        """A describe call that names the snapshots, instances or images it asks about:
        what a waiter sends on every attempt."""
        return self.action in _POLL_ACTIONS and bool(self.named_ids())


def _s3_action(method: str, path: str, query: Mapping[str, list[str]]) -> str:
    parts = [p for p in path.split("/", 2)[1:] if p]
    level = "Object" if len(parts) > 1 else ("Bucket" if parts else "Service")
    if level == "Service":
        return "ListBuckets"
    sub = next(
        (q for q in ("tagging", "versioning", "policy", "acl", "lifecycle") if q in query), ""
    )
    if sub:
        verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method.title())
        return f"{verb}{level}{sub.title()}"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if level == "Bucket":
        if method == "GET":
            if "versions" in query:
                return "ListObjectVersions"
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket"}.get(
            method, f"{method.title()}Bucket"
        )
    return {
        "GET": "GetObject",
        "PUT": "PutObject",
        "DELETE": "DeleteObject",
        "HEAD": "HeadObject",
        "POST": "PostObject",
    }.get(method, f"{method.title()}Object")


def classify(method: str, target: str, headers: Mapping[str, str], body: bytes) -> CallInfo:
    """Identify service, action, region, signing key and protocol of a request.

    The service and region come from the SigV4 credential scope (``Authorization``
    header or ``X-Amz-Credential`` query parameter); the action from ``Action=`` (query
    protocols), ``X-Amz-Target`` (JSON protocols) or the method and path (S3).
    """
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    lower = {k.lower(): v for k, v in headers.items()}
    m = _CREDENTIAL_RE.search(lower.get("authorization", ""))
    if m:
        key_id, region, service = m.group(1), m.group(2), m.group(3)
    elif "X-Amz-Credential" in query:
        scope = [*query["X-Amz-Credential"][0].split("/"), "", "", "", ""]
        key_id, region, service = scope[0], scope[2], scope[3]
    else:
        key_id, region, service = "", "", ""
    amz_target = lower.get("x-amz-target", "")
    if amz_target:
        return CallInfo(service or "json", amz_target.rsplit(".", 1)[-1], region, key_id, "json")
    form: dict[str, list[str]] = {}
    if "x-www-form-urlencoded" in lower.get("content-type", ""):
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    action = (form.get("Action") or query.get("Action") or [""])[0]
    if action:
        params = {k: v[0] for k, v in form.items() if k not in ("Action", "Version")}
        protocol = "ec2" if service == "ec2" else "query"
        return CallInfo(service or "query", action, region, key_id, protocol, params)
    if service in ("", "s3"):
        return CallInfo("s3", _s3_action(method, url.path, query), region, key_id, "s3")
    return CallInfo(service, f"{method} {url.path}", region, key_id, "json")


@dataclass(frozen=True)
class FaultResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


_MESSAGES = {
    "throttle": "Rate exceeded",
    "500": "We encountered an internal error. Please try again.",
    "503": "Service is unavailable. Please try again.",
    "expired": "The security token included in the request is expired",
}


# (error code, HTTP status) per protocol and kind, as each kind of service answers.
_ERRORS: Mapping[str, Mapping[str, tuple[str, int]]] = {
    "ec2": {
        "throttle": ("RequestLimitExceeded", 503),
        "500": ("InternalError", 500),
        "503": ("Unavailable", 503),
        "expired": ("RequestExpired", 400),
    },
    "s3": {
        "throttle": ("SlowDown", 503),
        "500": ("InternalError", 500),
        "503": ("ServiceUnavailable", 503),
        "expired": ("ExpiredToken", 400),
    },
    "query": {
        "throttle": ("Throttling", 400),
        "500": ("InternalFailure", 500),
        "503": ("ServiceUnavailable", 503),
        "expired": ("ExpiredToken", 400),
    },
    "json": {
        "throttle": ("ThrottlingException", 400),
        "500": ("InternalServerError", 500),
        "503": ("ServiceUnavailableException", 503),
        "expired": ("ExpiredTokenException", 400),
    },
}
_THROTTLE_MESSAGES = {"ec2": "Request limit exceeded.", "s3": "Please reduce your request rate."}


def error_response(info: CallInfo, kind: str) -> FaultResponse:
    """The error AWS sends for ``kind`` (``throttle``, ``500``, ``503``, ``expired``) in
    the shape of ``info``'s service."""
    rid = str(uuid.uuid4())
    protocol = info.protocol if info.protocol in _ERRORS else "json"
    code, status = _ERRORS[protocol][kind]
    message = _MESSAGES[kind]
    if kind == "throttle":
        message = _THROTTLE_MESSAGES.get(protocol, message)
    if protocol == "ec2":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{rid}</RequestID></Response>"
        )
        return FaultResponse(status, (("Content-Type", "text/xml;charset=UTF-8"),), xml.encode())
    if protocol == "s3":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{rid[:16]}</RequestId><HostId>{rid}</HostId></Error>"
        )
        headers = (("Content-Type", "application/xml"), ("x-amz-request-id", rid[:16]))
        return FaultResponse(status, headers, xml.encode())
    if protocol == "query":
        who = "Receiver" if status >= 500 else "Sender"
        xml = (
            f"<ErrorResponse><Error><Type>{who}</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
        )
        return FaultResponse(status, (("Content-Type", "text/xml"),), xml.encode())
    body = json.dumps({"__type": code, "message": message}).encode()
    json_headers: tuple[tuple[str, str], ...] = (
        ("Content-Type", "application/x-amz-json-1.1"),
        ("x-amzn-RequestId", rid),
        ("x-amzn-ErrorType", code),
    )
    return FaultResponse(status, json_headers, body)
