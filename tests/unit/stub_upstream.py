"""A stub AWS server on loopback for the fault proxy's unit tests: it records every
request it receives (path, body, wall time) and answers EC2-shaped XML."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EC2_OK = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse>'
    + b"<reservationSet/>" * 200
    + b"</DescribeInstancesResponse>"
)


def snapshots_xml(states: dict[str, str]) -> bytes:
    items = "".join(
        f"<item><snapshotId>{sid}</snapshotId><status>{state}</status></item>"
        for sid, state in states.items()
    )
    return (
        '<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<snapshotSet>{items}</snapshotSet></DescribeSnapshotsResponse>"
    ).encode()


@dataclass
class Received:
    path: str
    body: bytes
    at: float


@dataclass
class StubUpstream:
    """What the stub received, and the snapshot states it answers DescribeSnapshots
    with."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    snapshots: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r.body for r in self.received]

    def first_at(self, needle: bytes) -> float:
        """When the first request whose body holds ``needle`` arrived."""
        with self.lock:
            return next(r.at for r in self.received if needle in r.body)

    def answer(self, path: str, body: bytes) -> bytes:
        with self.lock:
            self.received.append(Received(path, body, time.time()))
            if path.startswith("/_awsops/"):
                return b'{"ok": true}'
            if b"Action=DescribeSnapshots" in body:
                return snapshots_xml(self.snapshots)
            return EC2_OK


@contextlib.contextmanager
def running_stub() -> Iterator[StubUpstream]:
    """A stub upstream served for the duration of the block."""
    stub = StubUpstream()
    server = serve_stub(stub)
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


def serve_stub(stub: StubUpstream) -> ThreadingHTTPServer:
    """Serve ``stub`` on a free loopback port (on a daemon thread); sets ``stub.url``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = stub.answer(self.path, self.rfile.read(length) if length else b"")
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server
