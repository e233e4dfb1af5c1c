"""The sandbox server process: moto in server mode plus a small control API.

Run as ``python -m awsops.sandbox.server --port N``. Besides every AWS endpoint that
moto serves, it answers under ``/_awsops/``:

- ``GET /_awsops/health``: ``{"ok": true, "pid": ...}``
- ``POST /_awsops/backdate``: rewrite instances' stop reason and launch time inside
  the server, because moto stamps the current time and AWS-style history cannot be
  created through the API. Body::

      {"account_id": "123456789012", "region": "us-east-1",
       "instances": [{"id": "i-...", "reason": "User initiated (2026-01-01 00:00:00 GMT)",
                      "launch_time": "2025-01-01T00:00:00+00:00"}]}

This module imports moto: only the server process and the test suite load it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

CONTROL_PREFIX = "/_awsops/"
DEFAULT_ACCOUNT = "123456789012"


def _parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed  # moto keeps naive UTC


def backdate(payload: dict[str, Any]) -> dict[str, Any]:
    """Apply a backdate request to moto's in-process EC2 state."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[payload.get("account_id") or DEFAULT_ACCOUNT][payload["region"]]
    changed = 0
    for item in payload.get("instances", []):
        inst = backend.get_instance(item["id"])
        if "reason" in item:
            inst._reason = item["reason"]
        if item.get("launch_time"):
            inst.launch_time = _parse_time(item["launch_time"])
        changed += 1
    return {"changed": changed}


class ControlMiddleware:
    """WSGI middleware: ``/_awsops/*`` is ours, everything else goes to moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(CONTROL_PREFIX):
            return self.app(environ, start_response)
        action = path[len(CONTROL_PREFIX) :].strip("/")
        try:
            if action == "health":
                body: dict[str, Any] = {"ok": True, "pid": os.getpid()}
            elif action == "backdate" and environ.get("REQUEST_METHOD") == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                payload = json.loads(environ["wsgi.input"].read(length) or b"{}")
                body = backdate(payload)
            else:
                return _respond(start_response, "404 Not Found", {"error": f"no route {path}"})
        except Exception as exc:  # a control call must answer, never kill the server
            return _respond(
                start_response, "400 Bad Request", {"error": f"{type(exc).__name__}: {exc}"}
            )
        return _respond(start_response, "200 OK", body)


def _respond(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def make_app() -> ControlMiddleware:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return ControlMiddleware(DomainDispatcherApplication(create_backend_app))


def serve(host: str, port: int, ready_file: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT. Writes the bound port to ``ready_file`` once listening."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):  # type: ignore[misc]
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    server = make_server(host, port, make_app(), threaded=True, request_handler=QuietHandler)
    bound = server.server_address[1]
    if ready_file:
        tmp = ready_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"host": host, "port": bound, "pid": os.getpid()}, fh)
        os.replace(tmp, ready_file)

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="awsops-sandbox-server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the sandbox only listens on loopback")
    serve(args.host, args.port, args.ready_file)


if __name__ == "__main__":
    main()
