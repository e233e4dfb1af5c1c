"""The sandbox server process: moto in server mode plus a small control API.

Run as ``python -m awsops.sandbox.server --port N [--faults SPEC]``. Besides every AWS
endpoint that moto serves, it answers the control routes under ``/_awsops/`` and adds
pending and failing backups, CloudTrail stop events and expiring assumed-role
credentials: see :mod:`awsops.sandbox.control`. ``--faults`` takes the server's fault
settings (:class:`~awsops.sandbox.serverfaults.ServerFaults`), e.g.
``snapshot-delay=30s,snapshot-error=0.1,credential-ttl=60s``.

This module imports moto: only the server process and the test suite load it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

from awsops.errors import UsageError
from awsops.sandbox.control import CONTROL_PREFIX, DEFAULT_ACCOUNT, ControlMiddleware
from awsops.sandbox.serverfaults import ServerFaults

__all__ = ["CONTROL_PREFIX", "DEFAULT_ACCOUNT", "ControlMiddleware", "main", "make_app", "serve"]


def make_app(faults: ServerFaults | None = None) -> ControlMiddleware:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return ControlMiddleware(DomainDispatcherApplication(create_backend_app), faults)


def serve(
    host: str, port: int, ready_file: str | None = None, faults: ServerFaults | None = None
) -> None:
    """Serve until SIGTERM/SIGINT. Writes the bound port to ``ready_file`` once listening."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):  # type: ignore[misc]
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    app = make_app(faults)
    server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
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
    parser.add_argument("--faults", default="", help="server fault settings")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the sandbox only listens on loopback")
    try:
        faults = ServerFaults.parse(args.faults)
    except UsageError as exc:
        sys.exit(f"error: {exc}")
    serve(args.host, args.port, args.ready_file, faults)


if __name__ == "__main__":
    main()
