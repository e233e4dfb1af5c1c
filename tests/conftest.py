"""Test-suite guard and the moto server on loopback.

The guard runs before anything else is imported: dummy credentials, no profiles or
shared files, no instance metadata, and a socket hook that refuses any address that is
not loopback. The suite cannot reach real AWS.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_GUARD_DIR = tempfile.mkdtemp(prefix="awsops-tests-")
for var in (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
):
    os.environ.pop(var, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    AWS_CONFIG_FILE=os.path.join(_GUARD_DIR, "config"),
    AWS_SHARED_CREDENTIALS_FILE=os.path.join(_GUARD_DIR, "credentials"),
    AWS_EC2_METADATA_DISABLED="true",
    AWSOPS_HOME=os.path.join(_GUARD_DIR, "home"),
    # The EC2 rate limiter paces real accounts' request buckets; the sandbox has none,
    # and a whole suite's calls share one key: 100 times the documented rates keeps it
    # out of the way (tests/unit/test_ratelimit.py and the org-scale tests build their
    # own limiters with the real shapes).
    AWSOPS_EC2_RATE_SHARE="100",
)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"test guard: refusing non-loopback address {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"test guard: refusing non-loopback address {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        from urllib.parse import urlparse

        host = urlparse(endpoint).hostname or ""
        if not _is_loopback((host, 0)):
            pytest.exit(f"refusing to run: AWS_ENDPOINT_URL={endpoint} is not loopback", 3)
    if os.environ.get("AWS_ACCESS_KEY_ID") != "testing":
        pytest.exit("refusing to run: the test guard's dummy credentials were replaced", 3)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        for tier in ("integration", "e2e", "reliability"):
            if f"{os.sep}{tier}{os.sep}" in path:
                item.add_marker(getattr(pytest.mark, tier))


# --- the moto server ---------------------------------------------------------------


@dataclass
class Aws:
    """Handles for one test against the (freshly reset) moto server."""

    endpoint: str
    server_url: str

    @property
    def settings(self) -> Any:
        from awsops.config import ClientSettings

        return ClientSettings(endpoint_url=self.endpoint, max_attempts=3)

    def factory(self, region: str = "us-east-1") -> Any:
        from awsops.session import SessionFactory

        return SessionFactory(
            region=region, settings=self.settings, static_credentials=("testing", "testing")
        )

    def session(self, region: str = "us-east-1") -> Any:
        return self.factory(region).session(region)

    def client(self, service: str, region: str = "us-east-1") -> Any:
        from awsops.clients import make_client

        return make_client(self.session(region), service, region, self.settings)

    # The sandbox server's own faults; the fixture clears them after each test.
    def server_faults(self, **settings: Any) -> dict[str, Any]:
        """Change the given server fault settings (``snapshot_delay=30``,
        ``credential_ttl="12s"``, ``seed=3``, ...; None restores a default) and return
        the server's answer: ``settings`` and ``counters``."""
        from awsops.sandbox.manager import control

        return dict(control(self.server_url, "faults", settings))

    def backup_faults(
        self,
        snapshot_delay: float = 0.0,
        snapshot_error: float = 0.0,
        image_delay: float = 0.0,
        image_error: float = 0.0,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Make new snapshots and images pending for a delay, then fail a share of them."""
        return self.server_faults(
            snapshot_delay=snapshot_delay,
            snapshot_error=snapshot_error,
            image_delay=image_delay,
            image_error=image_error,
            seed=seed,
        )

    def fault_counters(self) -> dict[str, Any]:
        """The server's counters: AssumeRole answers, refused expired calls, stop events."""
        from awsops.sandbox.manager import control

        return dict(control(self.server_url, "faults", None, method="GET")["counters"])

    def backups(self) -> dict[str, list[dict[str, Any]]]:
        """The server's witness: each snapshot and image given a fate, with its creation
        time, the time it becomes final and its final state."""
        from awsops.sandbox.manager import control

        return dict(control(self.server_url, "backups", None, method="GET"))

    def clear_server_faults(self) -> None:
        from awsops.sandbox.manager import control

        control(self.server_url, "faults", None, method="DELETE")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server (the sandbox server process) on 127.0.0.1 for the whole run."""
    from awsops.sandbox.manager import _terminate, spawn_server

    base = tmp_path_factory.mktemp("moto")
    proc = spawn_server("127.0.0.1", 0, base / "server.log", base / "ready.json")
    import json

    port = json.loads((base / "ready.json").read_text())["port"]
    url = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield url
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        _terminate(proc.pid)
        proc.wait(timeout=10)


@pytest.fixture
def aws(moto_server: str) -> Iterator[Aws]:
    """The moto server, reset: every test starts with an empty AWS and no server faults
    (the reset clears them too), and leaves none behind."""
    from awsops.sandbox.manager import reset

    reset(moto_server)
    handle = Aws(endpoint=moto_server, server_url=moto_server)
    yield handle
    handle.clear_server_faults()


@pytest.fixture
def sandbox_home(aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An AWSOPS_HOME whose sandbox record points at the test server (for --sandbox)."""
    import json
    import time
    from dataclasses import asdict
    from urllib.parse import urlparse

    from awsops.sandbox.manager import SandboxState

    home = tmp_path / "awsops-home"
    home.mkdir()
    monkeypatch.setenv("AWSOPS_HOME", str(home))
    port = urlparse(aws.endpoint).port
    assert port is not None
    from awsops.sandbox import manager

    info = manager.health(aws.endpoint)
    assert info is not None
    state = SandboxState(
        pid=int(info["pid"]),
        host="127.0.0.1",
        port=port,
        started_at=time.time(),
        log_file=str(home / "log"),
    )
    (home / "sandbox.json").write_text(json.dumps(asdict(state)))
    return home
