"""A fault-injecting HTTP proxy on loopback, between awsops and the moto server.

It forwards every request to the upstream (moto) server and, as a :class:`FaultSpec`
says, answers some of them the way AWS does when it is unhappy:

- ``throttle``: the service's own throttling error: EC2 ``RequestLimitExceeded``
  (HTTP 503, EC2 XML), query services such as STS and IAM ``Throttling`` (HTTP 400,
  ``<ErrorResponse>`` XML), S3 ``SlowDown`` (HTTP 503), JSON services
  ``ThrottlingException`` (HTTP 400);
- ``error5xx``: ``500 InternalError`` or ``503 ServiceUnavailable`` (``Unavailable`` for
  EC2) in the service's error shape, without forwarding the request;
- ``reset``: the request *is* forwarded and processed; the client gets the status line,
  the headers and half of the body, then a TCP reset (RST). This is the case where the
  caller cannot know whether a mutating call happened;
- ``truncate``: like ``reset`` but the connection is closed cleanly (FIN) after half the
  body, so the client sees a short body rather than a connection error;
- ``latency``: a delay before every forwarded request;
- ``bucket``: EC2's request-rate token buckets, one per (access key id, region, action),
  sized by the action's class (non-mutating, mutating, resource-intensive); moto maps
  access keys to accounts, so the key stands for the account. An empty bucket answers
  ``RequestLimitExceeded``;
- ``expired``: requests signed with the given access key ids get the service's
  expired-credentials error (EC2 ``RequestExpired``, others ``ExpiredToken``).

Sandbox control routes (``/_awsops/...``, ``/moto-api/...``) are forwarded untouched.
The proxy's own routes are ``GET /_faults/stats`` (counters as JSON), ``GET
/_faults/mutations`` (every mutating call that reached the server), ``POST
/_faults/reset`` (zero the counters) and ``POST /_faults/spec`` (body: a new spec
string). In-process, :class:`FaultProxy` exposes the same as Python objects.

Run as a process with ``python -m awsops.sandbox.faults --upstream URL --faults SPEC``;
:func:`spawn_proxy` does that for ``awsops sandbox up --faults``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from awsops.errors import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
PASS_THROUGH_PREFIXES = ("/_awsops/", "/moto-api/")
OWN_PREFIX = "/_faults/"
START_TIMEOUT = 30.0
UPSTREAM_TIMEOUT = 120.0
MAX_MUTATIONS = 100_000
WATCHDOG_INTERVAL = 5.0
WATCHDOG_FAILURES = 6
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)

# EC2 request-rate buckets per action class: (bucket size, refill per second), after
# the defaults AWS documents for request token buckets.
EC2_BUCKETS: Mapping[str, tuple[float, float]] = {
    "non-mutating": (100.0, 20.0),
    "mutating": (200.0, 5.0),
    "resource-intensive": (50.0, 5.0),
}
_RESOURCE_INTENSIVE = frozenset(
    {"RunInstances", "StartInstances", "CreateSnapshot", "CreateVolume", "AttachVolume"}
)
_READ_PREFIXES = ("Describe", "Get", "List", "BatchGet", "Search", "Lookup", "Head")


# --- the spec ---------------------------------------------------------------------


def _probability(key: str, value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        raise UsageError(f"faults: {key}={value!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise UsageError(f"faults: {key}={value} must be between 0 and 1")
    return p


def _duration_ms(key: str, value: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", value)
    if not m:
        raise UsageError(f"faults: {key}={value!r} is not a duration (e.g. 50ms or 0.2s)")
    amount = float(m.group(1))
    ms = amount * 1000.0 if m.group(2) == "s" else amount
    if ms > 60_000:
        raise UsageError(f"faults: {key}={value} is longer than 60s")
    return ms


def _positive(key: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise UsageError(f"faults: {key}={value!r} is not a number") from None
    if not x > 0:
        raise UsageError(f"faults: {key}={value} must be greater than 0")
    return x


def _names(value: str) -> tuple[str, ...]:
    return tuple(sorted({v.strip() for v in value.split("+") if v.strip()}))


@dataclass(frozen=True)
class FaultSpec:
    """What to inject. Probabilities are per request and mutually exclusive, so their sum
    must not exceed 1. ``only`` restricts the random faults and latency to those action
    names (``DescribeInstances``, ...); empty means every action."""

    throttle: float = 0.0
    error5xx: float = 0.0
    reset: float = 0.0
    truncate: float = 0.0
    latency_ms: float = 0.0
    bucket: bool = False
    bucket_scale: float = 1.0
    expired: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    seed: int | None = None

    KEYS = (
        "throttle",
        "error5xx",
        "reset",
        "truncate",
        "latency",
        "bucket",
        "bucket_scale",
        "expired",
        "only",
        "seed",
    )

    def __post_init__(self) -> None:
        if self.throttle + self.error5xx + self.reset + self.truncate > 1.0 + 1e-9:
            raise UsageError("faults: throttle + error5xx + reset + truncate must not exceed 1")

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """Parse ``"throttle=0.2,error5xx=0.05,reset=0.02,latency=50ms,bucket=ec2"``.

        Other keys: ``bucket_scale=0.1`` (shrink bucket sizes and refill rates),
        ``expired=AKID1+AKID2``, ``only=Action1+Action2``, ``seed=N``. An empty string is
        no faults. Any bad key or value raises a one-line :class:`UsageError`.
        """
        values: dict[str, Any] = {}
        for raw in (text or "").split(","):
            item = raw.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                raise UsageError(f"faults: expected key=value, got {item!r}")
            if key not in cls.KEYS:
                raise UsageError(f"faults: unknown key {key!r} (known: {', '.join(cls.KEYS)})")
            if key in values or (key == "latency" and "latency_ms" in values):
                raise UsageError(f"faults: {key} given twice")
            if key in ("throttle", "error5xx", "reset", "truncate"):
                values[key] = _probability(key, value)
            elif key == "latency":
                values["latency_ms"] = _duration_ms(key, value)
            elif key == "bucket":
                if value.lower() not in ("ec2", "on", "true", "off", "false", "none"):
                    raise UsageError(f"faults: bucket={value!r}: expected ec2 or off")
                values["bucket"] = value.lower() in ("ec2", "on", "true")
            elif key == "bucket_scale":
                values[key] = _positive(key, value)
            elif key in ("expired", "only"):
                values[key] = _names(value)
            else:
                try:
                    values["seed"] = int(value)
                except ValueError:
                    raise UsageError(f"faults: seed={value!r} is not an integer") from None
        return cls(**values)

    def __str__(self) -> str:
        parts = [
            f"{k}={getattr(self, k)}"
            for k in ("throttle", "error5xx", "reset", "truncate")
            if getattr(self, k)
        ]
        if self.latency_ms:
            parts.append(f"latency={self.latency_ms:g}ms")
        if self.bucket:
            parts.append("bucket=ec2")
            if self.bucket_scale != 1.0:
                parts.append(f"bucket_scale={self.bucket_scale:g}")
        for key in ("expired", "only"):
            if getattr(self, key):
                parts.append(f"{key}={'+'.join(getattr(self, key))}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return ",".join(parts)

    def applies_to(self, action: str) -> bool:
        return not self.only or action in self.only


# --- what a request is ------------------------------------------------------------

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
        return not self.action.startswith(_READ_PREFIXES)


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


# --- error shapes -------------------------------------------------------------------


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


def error_response(info: CallInfo, kind: str) -> FaultResponse:
    """The error AWS sends for ``kind`` (``throttle``, ``500``, ``503``, ``expired``) in
    the shape of ``info``'s service."""
    rid = str(uuid.uuid4())
    message = _MESSAGES[kind]
    if info.protocol == "ec2":
        code, status = {
            "throttle": ("RequestLimitExceeded", 503),
            "500": ("InternalError", 500),
            "503": ("Unavailable", 503),
            "expired": ("RequestExpired", 400),
        }[kind]
        if kind == "throttle":
            message = "Request limit exceeded."
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{rid}</RequestID></Response>"
        )
        return FaultResponse(status, (("Content-Type", "text/xml;charset=UTF-8"),), xml.encode())
    if info.protocol == "s3":
        code, status = {
            "throttle": ("SlowDown", 503),
            "500": ("InternalError", 500),
            "503": ("ServiceUnavailable", 503),
            "expired": ("ExpiredToken", 400),
        }[kind]
        if kind == "throttle":
            message = "Please reduce your request rate."
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{rid[:16]}</RequestId><HostId>{rid}</HostId></Error>"
        )
        headers = (("Content-Type", "application/xml"), ("x-amz-request-id", rid[:16]))
        return FaultResponse(status, headers, xml.encode())
    if info.protocol == "query":
        code, status, who = {
            "throttle": ("Throttling", 400, "Sender"),
            "500": ("InternalFailure", 500, "Receiver"),
            "503": ("ServiceUnavailable", 503, "Receiver"),
            "expired": ("ExpiredToken", 400, "Sender"),
        }[kind]
        xml = (
            f"<ErrorResponse><Error><Type>{who}</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
        )
        return FaultResponse(status, (("Content-Type", "text/xml"),), xml.encode())
    code, status = {
        "throttle": ("ThrottlingException", 400),
        "500": ("InternalServerError", 500),
        "503": ("ServiceUnavailableException", 503),
        "expired": ("ExpiredTokenException", 400),
    }[kind]
    body = json.dumps({"__type": code, "message": message}).encode()
    json_headers: tuple[tuple[str, str], ...] = (
        ("Content-Type", "application/x-amz-json-1.1"),
        ("x-amzn-RequestId", rid),
        ("x-amzn-ErrorType", code),
    )
    return FaultResponse(status, json_headers, body)


# --- token buckets ------------------------------------------------------------------


def ec2_action_class(action: str) -> str:
    """The EC2 throttling class of an action."""
    if action.startswith(_READ_PREFIXES):
        return "non-mutating"
    return "resource-intensive" if action in _RESOURCE_INTENSIVE else "mutating"


class TokenBuckets:
    """EC2-style request token buckets, one per (key id, region, action). Thread-safe."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str, str], tuple[float, float]] = {}

    def take(self, key_id: str, region: str, action: str, now: float | None = None) -> bool:
        """Take one token; False (throttle) when the bucket is empty."""
        size, rate = EC2_BUCKETS[ec2_action_class(action)]
        size, rate = max(1.0, size * self.scale), rate * self.scale
        now = time.monotonic() if now is None else now
        k = (key_id, region, action)
        with self._lock:
            tokens, last = self._state.get(k, (size, now))
            tokens = min(size, tokens + (now - last) * rate)
            ok = tokens >= 1.0
            self._state[k] = (tokens - 1.0 if ok else tokens, now)
        return ok


# --- counters -----------------------------------------------------------------------


@dataclass(frozen=True)
class MutationRecord:
    """A mutating call that reached the upstream server, and what it answered.

    ``delivered`` is False when the proxy cut the response (a ``reset`` fault): the
    change happened but the caller did not learn of it. ``changes`` lists, for EC2
    instance state calls, ``(instance id, previous state, current state)``;
    ``created`` the ids of snapshots or volumes the call created.
    """

    action: str
    params: Mapping[str, str]
    status: int
    delivered: bool
    changes: tuple[tuple[str, str, str], ...] = ()
    created: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "params": dict(self.params),
            "status": self.status,
            "delivered": self.delivered,
            "changes": [list(c) for c in self.changes],
            "created": list(self.created),
        }


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_mutation(info: CallInfo, status: int, body: bytes, delivered: bool) -> MutationRecord:
    """Build the record of a mutating call from its EC2 XML answer (best effort)."""
    changes: list[tuple[str, str, str]] = []
    created: list[str] = []
    if info.protocol == "ec2" and status < 300:
        with contextlib.suppress(ET.ParseError):
            root = ET.fromstring(body)
            for item in root.iter():
                if _local(item.tag) != "item":
                    continue
                kids = {_local(c.tag): c for c in item}
                if "instanceId" in kids and "previousState" in kids:
                    prev = next(
                        (c.text or "" for c in kids["previousState"] if _local(c.tag) == "name"), ""
                    )
                    cur = (
                        next(
                            (c.text or "" for c in kids["currentState"] if _local(c.tag) == "name"),
                            "",
                        )
                        if "currentState" in kids
                        else ""
                    )
                    changes.append((kids["instanceId"].text or "", prev, cur))
            for child in root:
                if _local(child.tag) in ("snapshotId", "volumeId", "imageId") and child.text:
                    created.append(child.text)
    return MutationRecord(
        info.name, dict(info.params), status, delivered, tuple(changes), tuple(created)
    )


class FaultStats:
    """Thread-safe counters per action (``service:Action``): calls seen, calls forwarded
    to the server, faults injected by kind, and the ledger of mutating calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.faults_by_action: dict[str, Counter[str]] = {}
        self.mutations: deque[MutationRecord] = deque(maxlen=MAX_MUTATIONS)

    def record(self, action: str, fault: str | None, forwarded: bool) -> None:
        with self._lock:
            self.calls[action] += 1
            if forwarded:
                self.forwarded[action] += 1
            if fault:
                self.faults[fault] += 1
                self.faults_by_action.setdefault(action, Counter())[fault] += 1

    def add_mutation(self, record: MutationRecord) -> None:
        with self._lock:
            self.mutations.append(record)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.forwarded.clear()
            self.faults.clear()
            self.faults_by_action.clear()
            self.mutations.clear()

    @property
    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    @property
    def total_faults(self) -> int:
        with self._lock:
            return sum(self.faults.values())

    def mutation_list(self) -> list[MutationRecord]:
        with self._lock:
            return list(self.mutations)

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain JSON-able data."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "forwarded": dict(self.forwarded),
                "faults": dict(self.faults),
                "faults_by_action": {a: dict(c) for a, c in self.faults_by_action.items()},
                "total_calls": sum(self.calls.values()),
                "total_faults": sum(self.faults.values()),
                "mutations": len(self.mutations),
            }


# --- the proxy ----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def do_GET(self) -> None:
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):  # the client went away: its loss
            self.close_connection = True

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._read_body()
        proxy = self.server.proxy
        if self.path.startswith(OWN_PREFIX):
            status, answer = proxy.control(self.command, self.path, body)
            self._send(status, (("Content-Type", "application/json"),), json.dumps(answer).encode())
            return
        if self.path.startswith(PASS_THROUGH_PREFIXES):
            self._relay(*self._forward(body))
            return
        info = classify(self.command, self.path, dict(self.headers.items()), body)
        fault = proxy.decide(info)
        if fault in ("throttle", "bucket", "500", "503", "expired"):
            proxy.stats.record(info.name, fault, forwarded=False)
            kind = "throttle" if fault == "bucket" else fault
            err = error_response(info, kind)
            self._send(err.status, err.headers, err.body)
            return
        spec = proxy.spec
        if spec.latency_ms and spec.applies_to(info.action):
            time.sleep(spec.latency_ms / 1000.0)
        status, headers, data = self._forward(body)
        proxy.stats.record(info.name, fault, forwarded=True)
        for tap in list(proxy.taps):
            tap(info, status, data)
        if info.mutating:
            proxy.stats.add_mutation(
                parse_mutation(info, status, data, delivered=fault not in ("reset", "truncate"))
            )
        if fault in ("reset", "truncate"):
            self._cut(status, headers, data, abort=fault == "reset")
        else:
            self._relay(status, headers, data)

    def _forward(self, body: bytes) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        """Send the request upstream; a 502 answer if the server cannot be reached."""
        host, port = self.server.proxy.upstream
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
            conn = self._upstream
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in _HOP_BY_HOP:
                        conn.putheader(k, v)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                headers = tuple(
                    (k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP
                )
                if resp.will_close:
                    conn.close()
                    self._upstream = None
                return resp.status, headers, data
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._upstream = None
                if attempt == 2:
                    msg = f"fault proxy: upstream unreachable: {exc}".encode()
                    return 502, (("Content-Type", "text/plain"),), msg
        raise AssertionError("unreachable")

    def _relay(self, status: int, headers: tuple[tuple[str, str], ...], data: bytes) -> None:
        self._send(status, headers, data)

    def _cut(
        self, status: int, headers: tuple[tuple[str, str], ...], data: bytes, abort: bool
    ) -> None:
        """Send the headers and half the body, then reset (``abort``) or close the
        connection."""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data[: len(data) // 2])
        with contextlib.suppress(OSError):
            self.wfile.flush()
            if abort:
                linger = struct.pack("ii", 1, 0)  # close with RST, not FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            else:
                self.connection.shutdown(socket.SHUT_WR)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class FaultProxy:
    """The proxy, in process: ``with FaultProxy(upstream, spec) as proxy: proxy.url``.

    ``stats`` is live; ``set_spec`` changes the faults of the next requests. Each
    callable in ``taps`` is called with ``(call, status, body)`` for every answer the
    server gave (before any cut), on the proxy's threads: tests use it to learn what the
    server handed out, e.g. the credentials of an AssumeRole answer.
    """

    def __init__(
        self, upstream_url: str, spec: FaultSpec | str | None = None, port: int = 0
    ) -> None:
        parsed = urlsplit(upstream_url)
        if parsed.hostname not in LOOPBACK or parsed.port is None:
            raise UsageError(
                f"fault proxy: upstream {upstream_url!r} must be http://<loopback>:<port>"
            )
        self.upstream: tuple[str, int] = (parsed.hostname, parsed.port)
        self.stats = FaultStats()
        self.taps: list[Callable[[CallInfo, int, bytes], None]] = []
        self._spec_lock = threading.Lock()
        self._rng = random.Random()
        self.spec = FaultSpec()
        self.buckets = TokenBuckets()
        self.set_spec(spec if spec is not None else FaultSpec())
        self._server = _ProxyServer((parsed.hostname, port), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.upstream[0]}:{self.port}"

    def set_spec(self, spec: FaultSpec | str) -> FaultSpec:
        """Use ``spec`` from now on (fresh random stream and token buckets)."""
        new = FaultSpec.parse(spec) if isinstance(spec, str) else spec
        with self._spec_lock:
            self.spec = new
            self._rng = random.Random(new.seed)
            self.buckets = TokenBuckets(new.bucket_scale)
        return new

    def decide(self, info: CallInfo) -> str | None:
        """The fault for this request: ``expired``, ``bucket``, ``throttle``, ``500``,
        ``503``, ``reset``, ``truncate`` or None."""
        with self._spec_lock:
            spec, rng, buckets = self.spec, self._rng, self.buckets
            if spec.expired and info.key_id in spec.expired:
                return "expired"
            if not spec.applies_to(info.action):
                return None
            if (
                spec.bucket
                and info.protocol == "ec2"
                and not buckets.take(info.key_id, info.region, info.action)
            ):
                return "bucket"
            r = rng.random()
            if r < spec.throttle:
                return "throttle"
            if r < spec.throttle + spec.error5xx:
                return "500" if rng.random() < 0.5 else "503"
            if r < spec.throttle + spec.error5xx + spec.reset:
                return "reset"
            if r < spec.throttle + spec.error5xx + spec.reset + spec.truncate:
                return "truncate"
            return None

    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Answer the proxy's own ``/_faults/`` routes."""
        route = path[len(OWN_PREFIX) :].split("?", 1)[0].strip("/")
        if method == "GET" and route == "stats":
            return 200, {**self.stats.snapshot(), "spec": str(self.spec), "pid": os.getpid()}
        if method == "GET" and route == "mutations":
            return 200, [m.to_json() for m in self.stats.mutation_list()]
        if method == "POST" and route == "reset":
            self.stats.reset()
            return 200, {"ok": True}
        if method == "POST" and route == "spec":
            try:
                spec = self.set_spec(body.decode("utf-8", "replace"))
            except UsageError as exc:
                return 400, {"error": str(exc)}
            return 200, {"spec": str(spec)}
        return 404, {"error": f"no route {method} {path}"}

    def start(self) -> FaultProxy:
        """Serve on a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def shutdown(self) -> None:
        """Make :meth:`serve_forever` return (from another thread)."""
        self._server.shutdown()

    def close(self) -> None:
        """Close the listening socket."""
        self._server.server_close()

    def stop(self) -> None:
        """Stop the serving thread and close the socket (idempotent)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- as a process -------------------------------------------------------------------


def fetch_stats(proxy_url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """``GET /_faults/stats`` of a running proxy, or None if nothing answers."""
    try:
        with urllib.request.urlopen(f"{proxy_url}/_faults/stats", timeout=timeout) as resp:
            return dict(json.loads(resp.read()))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def spawn_proxy(upstream_url: str, faults: str, base_dir: Path) -> tuple[int, int]:
    """Start the proxy as a detached process in front of ``upstream_url``; return
    ``(pid, port)`` once it answers. Raises UsageError if the spec is bad or the
    proxy does not come up within ``START_TIMEOUT`` seconds."""
    FaultSpec.parse(faults)
    host = urlsplit(upstream_url).hostname or "127.0.0.1"
    ready = base_dir / "faults.ready"
    log_path = base_dir / "faults.log"
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "awsops.sandbox.faults",
                "--upstream",
                upstream_url,
                "--faults",
                faults,
                "--ready-file",
                str(ready),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"fault proxy exited at start: {tail[0]}")
        if ready.exists():
            port = int(json.loads(ready.read_text())["port"])
            if fetch_stats(f"http://{host}:{port}") is not None:
                return proc.pid, port
        time.sleep(0.05)
    proc.kill()
    raise UsageError(f"fault proxy did not start within {START_TIMEOUT:.0f}s (see {log_path})")


def _upstream_alive(upstream: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(upstream, timeout=2.0):
            return True
    except OSError:
        return False


def _watchdog(proxy: FaultProxy, interval: float, failures: int) -> None:
    """Stop the proxy once the upstream has refused ``failures`` checks in a row."""
    missed = 0
    while missed < failures:
        time.sleep(interval)
        missed = 0 if _upstream_alive(proxy.upstream) else missed + 1
    proxy.shutdown()


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM, or until the upstream has been gone for 30 seconds."""
    parser = argparse.ArgumentParser(prog="awsops-fault-proxy")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--faults", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    try:
        proxy = FaultProxy(args.upstream, args.faults, port=args.port)
    except UsageError as exc:
        sys.exit(f"error: {exc}")
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"port": proxy.port, "pid": os.getpid()}, fh)
        os.replace(tmp, args.ready_file)

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    watchdog = threading.Thread(
        target=_watchdog, args=(proxy, WATCHDOG_INTERVAL, WATCHDOG_FAILURES), daemon=True
    )
    watchdog.start()
    try:
        proxy.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        proxy.close()


if __name__ == "__main__":
    main()
