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

Besides, armed signals (:mod:`awsops.sandbox.signals`) are delivered to a process at
the k-th call that would change something: before forwarding it, after the server
acted, or at the next waiter poll.

Sandbox control routes (``/_awsops/...``, ``/moto-api/...``) are forwarded untouched.
The proxy's own routes are ``GET /_faults/stats`` (counters as JSON), ``GET
/_faults/mutations`` (every mutating call that reached the server), ``GET
/_faults/served`` (the states served per snapshot/image id), ``POST /_faults/reset``
(zero the counters, disarm every signal), ``POST /_faults/spec`` (body: a new spec
string) and ``/_faults/signals`` (``POST`` a JSON ``{"pid", "signal", "at", "phase",
"actions"}`` to arm, ``GET`` armed and fired, ``DELETE`` to disarm). In-process,
:class:`FaultProxy` exposes the same as Python objects.

The parts live in their own modules: :mod:`~awsops.sandbox.faultspec` (the spec),
:mod:`~awsops.sandbox.awscalls` (what a request is, AWS error shapes),
:mod:`~awsops.sandbox.buckets` (token buckets), :mod:`~awsops.sandbox.ledger`
(counters and the ledger), :mod:`~awsops.sandbox.signals` and
:mod:`~awsops.sandbox.proxy` (the server). This module runs the proxy as a process:
``python -m awsops.sandbox.faults --upstream URL --faults SPEC``; :func:`spawn_proxy`
does that for ``awsops sandbox up --faults``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from awsops.errors import UsageError
from awsops.sandbox.awscalls import CallInfo, FaultResponse, classify, error_response
from awsops.sandbox.buckets import EC2_BUCKETS, TokenBuckets, ec2_action_class
from awsops.sandbox.faultspec import FaultSpec
from awsops.sandbox.ledger import (
    MAX_MUTATIONS,
    FaultStats,
    FiredSignal,
    MutationRecord,
    parse_mutation,
    served_states,
)
from awsops.sandbox.proxy import LOOPBACK, OWN_PREFIX, PASS_THROUGH_PREFIXES, FaultProxy
from awsops.sandbox.signals import PHASES, SETTLE_SECONDS, parse_signal

__all__ = [
    "EC2_BUCKETS",
    "LOOPBACK",
    "MAX_MUTATIONS",
    "OWN_PREFIX",
    "PASS_THROUGH_PREFIXES",
    "PHASES",
    "SETTLE_SECONDS",
    "CallInfo",
    "FaultProxy",
    "FaultResponse",
    "FaultSpec",
    "FaultStats",
    "FiredSignal",
    "MutationRecord",
    "TokenBuckets",
    "classify",
    "ec2_action_class",
    "error_response",
    "fetch_stats",
    "main",
    "parse_mutation",
    "parse_signal",
    "served_states",
    "spawn_proxy",
]

START_TIMEOUT = 30.0
READY_NAME = "faults.ready"  # in the awsops home: where a spawned proxy says its port
WATCHDOG_INTERVAL = 5.0
WATCHDOG_FAILURES = 6


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
    ready = base_dir / READY_NAME
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
