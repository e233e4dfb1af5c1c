"""The sandbox server's WSGI middleware: its control routes, and the AWS behaviour it
adds to moto.

Control routes, under ``/_awsops/``:

- ``GET health``: ``{"ok": true, "pid": ...}``;
- ``POST backdate``: rewrite instances' stop reason and launch time, and seed their
  CloudTrail stop (``stop_event_time``), because moto stamps the current time. Body::

      {"account_id": "123456789012", "region": "us-east-1",
       "instances": [{"id": "i-...", "reason": "User initiated (2026-01-01 00:00:00 GMT)",
                      "launch_time": "2025-01-01T00:00:00+00:00",
                      "stop_event_time": "2026-01-01T00:00:00+00:00"}]}

- ``GET faults``: the server fault settings and counters (AssumeRole answers, refused
  expired calls, recorded stop events); ``POST faults`` (JSON object of settings, e.g.
  ``{"snapshot_delay": 30, "snapshot_error": 0.1}``) changes the given ones; ``DELETE
  faults`` sets them all back to bare moto;
- ``GET backups``: every snapshot and image given a fate since the last reset, with its
  creation time, the time it becomes final and its final state (epoch seconds).

Added to moto: snapshots and images that are pending and may fail
(:mod:`~awsops.sandbox.backups`), CloudTrail ``LookupEvents`` for StopInstances
(:mod:`~awsops.sandbox.cloudtrail`), and assumed-role credentials that expire
(:mod:`~awsops.sandbox.expiry`). ``POST /moto-api/reset`` also forgets all of these and
the fault settings.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from awsops.errors import UsageError
from awsops.sandbox.awscalls import CallInfo, classify
from awsops.sandbox.backups import IMAGE_ACTIONS, SNAPSHOT_ACTIONS, BackupClock, install
from awsops.sandbox.cloudtrail import Trail, TrailError
from awsops.sandbox.expiry import CredentialClock
from awsops.sandbox.serverfaults import ServerFaults

CONTROL_PREFIX = "/_awsops/"
DEFAULT_ACCOUNT = "123456789012"
RESET_PATH = "/moto-api/reset"
MAX_BODY = 16 * 1024 * 1024
Response = tuple[str, list[tuple[str, str]], bytes]
StartResponse = Callable[..., Any]


def _parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed  # moto keeps naive UTC


def _epoch(value: str) -> float:
    return _parse_time(value).replace(tzinfo=dt.timezone.utc).timestamp()


def _account(info: CallInfo, headers: dict[str, str]) -> str:
    """The account of a request, as moto picks it: ``MOTO_ACCOUNT_ID``, the
    ``x-moto-account-id`` header, or the account its signing key belongs to."""
    from moto.iam.models import get_account_id_from

    return (
        os.environ.get("MOTO_ACCOUNT_ID")
        or headers.get("x-moto-account-id")
        or get_account_id_from(info.key_id)
    )


def _caller(info: CallInfo, headers: dict[str, str]) -> tuple[str, str, str]:
    """(account, identity type, user name) of a request's signing key, as moto sees it."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    account = _account(info, headers)
    try:
        partition = get_partition(info.region or "us-east-1")
        role = sts_backends[account][partition].get_assumed_role_from_access_key(info.key_id)
        if role is not None:
            return account, "AssumedRole", str(role.session_name)
        user = iam_backends[account][partition].get_user_from_access_key_id(info.key_id)
        if user is not None:
            return account, "IAMUser", str(user.name)
    except Exception:  # an identity for the record only: never fail the call for it
        pass
    return account, "IAMUser", "moto"


def _warm_ec2(info: CallInfo, headers: dict[str, str]) -> None:
    """Build the region's EC2 backend now if it does not exist yet: moto creates its
    default AMIs (and their snapshots) then, and they must not get a backup fate."""
    from moto.ec2.models import ec2_backends

    ec2_backends[_account(info, headers)][info.region or "us-east-1"]


class ControlMiddleware:
    """WSGI middleware: ``/_awsops/*`` is ours, everything else goes to moto, with the
    sandbox's additions. ``faults`` are the settings to start with."""

    def __init__(self, app: Callable[..., Iterable[bytes]], faults: ServerFaults | None = None):
        self.app = app
        self._lock = threading.Lock()
        self.faults = faults or ServerFaults()
        self.backups = BackupClock(lambda: self.faults)
        self.trail = Trail()
        self.credentials = CredentialClock()
        install(self.backups)

    # -- dispatch ------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        if path.startswith("/moto-api/"):
            if path == RESET_PATH and environ.get("REQUEST_METHOD") == "POST":
                return _reply(start_response, *self._reset(environ))
            return self.app(environ, start_response)
        body = _buffer_body(environ)
        headers = {
            "Authorization": environ.get("HTTP_AUTHORIZATION", ""),
            "X-Amz-Target": environ.get("HTTP_X_AMZ_TARGET", ""),
            "Content-Type": environ.get("CONTENT_TYPE", ""),
            "x-moto-account-id": environ.get("HTTP_X_MOTO_ACCOUNT_ID", ""),
        }
        query = environ.get("QUERY_STRING", "")
        target = path + (f"?{query}" if query else "")
        info = classify(environ.get("REQUEST_METHOD", "GET"), target, headers, body)
        refusal = self.credentials.refusal(info)
        if refusal is not None:
            return _reply(
                start_response, _status_line(refusal.status), list(refusal.headers), refusal.body
            )
        if info.service == "cloudtrail" and info.action == "LookupEvents":
            return _reply(start_response, *self._lookup_events(info, headers, body))
        if info.service == "sts" and info.action == "AssumeRole":
            status, out_headers, data = self._run(environ)
            if status.startswith("200"):
                data = self.credentials.issued(data, self.faults.credential_ttl)
            return _reply(start_response, status, out_headers, data)
        if info.protocol == "ec2" and info.action in SNAPSHOT_ACTIONS | IMAGE_ACTIONS:
            _warm_ec2(info, headers)
            with self.backups.creating(info.action):
                return _reply(start_response, *self._run(environ))
        if info.protocol == "ec2" and info.action == "StopInstances" and not info.dry_run:
            status, out_headers, data = self._run(environ)
            if status.startswith("2"):
                self._record_stop(info, headers)
            return _reply(start_response, status, out_headers, data)
        return self.app(environ, start_response)

    def _run(self, environ: dict[str, Any]) -> Response:
        """Call moto and collect its whole answer."""
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        result = self.app(environ, start)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return captured["status"], list(captured["headers"]), b"".join(chunks)

    def _reset(self, environ: dict[str, Any]) -> Response:
        answer = self._run(environ)
        with self._lock:
            self.faults = ServerFaults()
        self.backups.clear()
        self.trail.clear()
        self.credentials.clear()
        return answer

    # -- AWS additions -------------------------------------------------------------
    def _record_stop(self, info: CallInfo, headers: dict[str, str]) -> None:
        numbered = [(k, v) for k, v in info.params.items() if k.startswith("InstanceId.")]
        ids = [v for k, v in sorted(numbered, key=lambda kv: int(kv[0].rsplit(".", 1)[1]))]
        account, kind, username = _caller(info, headers)
        self.trail.record_stop(account, info.region, ids, username, kind, info.key_id)

    def _lookup_events(self, info: CallInfo, headers: dict[str, str], body: bytes) -> Response:
        account, _, _ = _caller(info, headers)
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise TrailError("ValidationException", "the request body is not an object")
            answer = self.trail.lookup(account, info.region, request)
            status = "200 OK"
        except ValueError:
            answer, status = (
                {"__type": "SerializationException", "message": "bad JSON"},
                "400 Bad Request",
            )
        except TrailError as exc:
            answer, status = {"__type": exc.code, "message": exc.message}, "400 Bad Request"
        data = json.dumps(answer).encode()
        return status, [("Content-Type", "application/x-amz-json-1.1")], data

    # -- control routes ------------------------------------------------------------
    def _control(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        action = path[len(CONTROL_PREFIX) :].strip("/")
        try:
            if action == "health":
                body: dict[str, Any] = {"ok": True, "pid": os.getpid()}
            elif action == "backdate" and method == "POST":
                body = self.backdate(_json_body(environ))
            elif action == "faults" and method in ("GET", "POST", "DELETE"):
                body = self._faults_route(method, environ)
            elif action == "backups" and method == "GET":
                body = self.backups.listing()
            else:
                return _reply_json(
                    start_response, "404 Not Found", {"error": f"no route {method} {path}"}
                )
        except UsageError as exc:
            return _reply_json(start_response, "400 Bad Request", {"error": str(exc)})
        except Exception as exc:  # a control call must answer, never kill the server
            error = f"{type(exc).__name__}: {exc}"
            return _reply_json(start_response, "400 Bad Request", {"error": error})
        return _reply_json(start_response, "200 OK", body)

    def _faults_route(self, method: str, environ: dict[str, Any]) -> dict[str, Any]:
        if method != "GET":
            with self._lock:
                if method == "DELETE":
                    self.faults = ServerFaults()
                else:
                    payload = _json_body(environ)
                    if not isinstance(payload, dict):
                        raise UsageError("faults: expected a JSON object of settings")
                    self.faults = self.faults.merged(payload.items())
        return {
            "settings": self.faults.to_json(),
            "spec": str(self.faults),
            "counters": {**self.credentials.counters(), "stop_events": self.trail.count()},
        }

    def backdate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Apply a backdate request to moto's in-process EC2 state and the trail."""
        from moto.ec2.models import ec2_backends

        account = payload.get("account_id") or DEFAULT_ACCOUNT
        region = payload["region"]
        backend = ec2_backends[account][region]
        changed = 0
        for item in payload.get("instances", []):
            inst = backend.get_instance(item["id"])
            if "reason" in item:
                inst._reason = item["reason"]
            if item.get("launch_time"):
                inst.launch_time = _parse_time(item["launch_time"])
            if item.get("stop_event_time"):
                self.trail.backdate_stop(
                    account, region, item["id"], _epoch(item["stop_event_time"])
                )
            changed += 1
        return {"changed": changed}


def _buffer_body(environ: dict[str, Any]) -> bytes:
    """The body of a query or JSON protocol request, read once and put back for moto;
    other bodies (S3 uploads) are left alone and read as empty here."""
    wanted = "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "") or environ.get(
        "HTTP_X_AMZ_TARGET"
    )
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if not wanted or not 0 < length <= MAX_BODY:
        return b""
    body: bytes = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _json_body(environ: dict[str, Any]) -> Any:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return json.loads(environ["wsgi.input"].read(length) or b"{}")


def _status_line(code: int) -> str:
    from http import HTTPStatus

    return f"{code} {HTTPStatus(code).phrase}"


def _reply(
    start_response: StartResponse, status: str, headers: list[tuple[str, str]], body: bytes
) -> list[bytes]:
    kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start_response(status, [*kept, ("Content-Length", str(len(body)))])
    return [body]


def _reply_json(start_response: StartResponse, status: str, body: Any) -> list[bytes]:
    return _reply(
        start_response, status, [("Content-Type", "application/json")], json.dumps(body).encode()
    )
