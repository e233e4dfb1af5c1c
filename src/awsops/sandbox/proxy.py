"""The fault proxy in process: an HTTP server on loopback that forwards each request to
the sandbox server and, as its :class:`~awsops.sandbox.faultspec.FaultSpec` says,
answers some of them the way AWS does when it is unhappy, cuts answers short, or
delivers armed signals (:mod:`awsops.sandbox.signals`) at chosen calls.

See :mod:`awsops.sandbox.faults` for the faults and the routes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from awsops.errors import UsageError
from awsops.sandbox.awscalls import CallInfo, classify, error_response
from awsops.sandbox.buckets import TokenBuckets
from awsops.sandbox.faultspec import FaultSpec
from awsops.sandbox.ledger import FaultStats, parse_mutation, served_states
from awsops.sandbox.signals import SignalArming

LOOPBACK = ("127.0.0.1", "localhost", "::1")
PASS_THROUGH_PREFIXES = ("/_awsops/", "/moto-api/")
OWN_PREFIX = "/_faults/"
UPSTREAM_TIMEOUT = 120.0
POLL_INTERVAL = 0.05  # how soon stop() returns; idle cost is one select() per interval
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

    def _send_head(self, status: int, headers: tuple[tuple[str, str], ...], length: int) -> bool:
        """Send the status line and headers; True if a body follows (not HEAD)."""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        return self.command != "HEAD"

    def _send(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
        if self._send_head(status, headers, len(body)):
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
        due = proxy.signals.due(info)
        early = [a for a in due if a.phase != "after"]
        if early and proxy.signals.deliver(early, info):
            proxy.stats.record(info.name, fault, forwarded=False)
            self.close_connection = True  # killed before sending: the call never left
            return
        sent_at = time.time()
        status, headers, data = self._forward(body)
        proxy.stats.record(info.name, fault, forwarded=True)
        for tap in list(proxy.taps):
            tap(info, status, data)
        late = [a for a in due if a.phase == "after"]
        dropped = bool(late) and proxy.signals.deliver(late, info)
        cut = fault in ("reset", "truncate")
        if info.mutating:
            delivered = not (cut or dropped)
            proxy.stats.add_mutation(parse_mutation(info, status, data, delivered, at=sent_at))
        if not (cut or dropped):
            proxy.stats.add_served(served_states(info, status, data), time.time())
        if dropped:
            self.close_connection = True  # killed before the answer: it is lost
        elif cut:
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
        if self._send_head(status, headers, len(data)):
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

    ``stats`` is live; ``set_spec`` changes the faults of the next requests;
    ``arm_signal`` arranges for a process to be signalled at a chosen call. Each
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
        self._rngs: dict[str, random.Random] = {}
        self.spec = FaultSpec()
        self.buckets = TokenBuckets()
        self.signals = SignalArming(self.stats)
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
        """Use ``spec`` from now on (fresh random streams and token buckets)."""
        new = FaultSpec.parse(spec) if isinstance(spec, str) else spec
        with self._spec_lock:
            self.spec = new
            self._rngs = {}
            self.buckets = TokenBuckets(new.bucket_scale)
        return new

    def _stream(self, info: CallInfo) -> random.Random:
        """The random stream of ``info``'s action. With a seed, each action has its own,
        seeded by the seed and the action: the k-th call of an action meets the same
        fault however the calls of different actions interleave across threads."""
        rng = self._rngs.get(info.name)
        if rng is None:
            seed = self.spec.seed
            rng = self._rngs[info.name] = random.Random(
                None if seed is None else f"{seed}/{info.name}"
            )
        return rng

    def decide(self, info: CallInfo) -> str | None:
        """The fault for this request: ``expired``, ``bucket``, ``throttle``, ``500``,
        ``503``, ``reset``, ``truncate`` or None."""
        with self._spec_lock:
            spec, buckets = self.spec, self.buckets
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
            rng = self._stream(info)
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

    def arm_signal(
        self,
        pid: int,
        sig: int | str = "SIGKILL",
        at: int = 1,
        phase: str = "before",
        actions: Iterable[str] = (),
    ) -> int:
        """Deliver ``sig`` to ``pid`` at the ``at``-th call that would change something
        from now on (only ``actions`` if given), in ``phase`` (``before``, ``after`` or
        ``waiter``: see :mod:`awsops.sandbox.signals`). Returns the armed signal's id;
        ``stats.fired_signals()`` tells when it fired."""
        return self.signals.arm(pid, sig, at, phase, actions)

    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Answer the proxy's own ``/_faults/`` routes."""
        route = path[len(OWN_PREFIX) :].split("?", 1)[0].strip("/")
        if method == "GET" and route == "stats":
            return 200, {**self.stats.snapshot(), "spec": str(self.spec), "pid": os.getpid()}
        if method == "GET" and route == "mutations":
            return 200, [m.to_json() for m in self.stats.mutation_list()]
        if method == "GET" and route == "served":
            return 200, self.stats.served_states()
        if method == "POST" and route == "reset":
            self.stats.reset()
            self.signals.disarm()
            return 200, {"ok": True}
        try:
            if method == "POST" and route == "spec":
                spec = self.set_spec(body.decode("utf-8", "replace"))
                return 200, {"spec": str(spec)}
            if route == "signals":
                return self._signals_route(method, body)
        except UsageError as exc:
            return 400, {"error": str(exc)}
        return 404, {"error": f"no route {method} {path}"}

    def _signals_route(self, method: str, body: bytes) -> tuple[int, Any]:
        if method == "POST":
            try:
                req = json.loads(body or b"{}")
                pid = req["pid"]
            except (ValueError, KeyError, TypeError):
                raise UsageError('faults: expected {"pid": N, ...} as JSON') from None
            armed_id = self.arm_signal(
                pid,
                req.get("signal", "SIGKILL"),
                req.get("at", 1),
                req.get("phase", "before"),
                req.get("actions") or (),
            )
            return 200, {"id": armed_id}
        if method == "DELETE":
            self.signals.disarm()
            return 200, {"ok": True}
        fired = [f.to_json() for f in self.stats.fired_signals()]
        return 200, {"armed": self.signals.armed(), "fired": fired}

    def start(self) -> FaultProxy:
        """Serve on a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(POLL_INTERVAL,),
            name="fault-proxy",
            daemon=True,
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
