"""Fixtures of the reliability suites: a fault proxy in front of the session's moto
server (per test, or per module for suites that seed once and only read), clients with
awsops' production retry settings, and a sandbox record that sends ``awsops --sandbox``
through the proxy. The figures the suites report live in ``tests/reliability/figures.py``
(re-exported here).

Sizes: ``AWSOPS_RELIABILITY_SCALE`` (default 1) multiplies fleet sizes and kill counts
for runs by hand; the default keeps the whole reliability suite within CI's budget.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest

from awsops.sandbox.faults import FaultProxy
from tests.reliability.figures import FIGURES as FIGURES
from tests.reliability.figures import record_proxy as record_proxy

if TYPE_CHECKING:
    from tests.conftest import Aws


def scale() -> float:
    """The size multiplier of the suites (``AWSOPS_RELIABILITY_SCALE``)."""
    try:
        value = float(os.environ.get("AWSOPS_RELIABILITY_SCALE", "1"))
    except ValueError:
        return 1.0
    return max(0.05, value)


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, round(n * scale()))


@dataclass
class Proxied:
    """Handles for a test that talks to moto through the fault proxy.

    ``settings`` are awsops' production defaults (adaptive retries, 10 attempts); the
    ``direct_*`` helpers bypass the proxy, for seeding and for checking the truth.
    """

    proxy: FaultProxy
    aws: Aws

    @property
    def endpoint(self) -> str:
        return self.proxy.url

    @property
    def settings(self) -> Any:
        from awsops.config import ClientSettings

        return ClientSettings(endpoint_url=self.proxy.url)

    def factory(self, region: str = "us-east-1") -> Any:
        from awsops.session import SessionFactory

        return SessionFactory(
            region=region, settings=self.settings, static_credentials=("testing", "testing")
        )

    def client(self, service: str, region: str = "us-east-1") -> Any:
        from awsops.clients import make_client

        return make_client(self.factory(region).session(region), service, region, self.settings)

    def direct(self, service: str, region: str = "us-east-1") -> Any:
        from awsops.clients import make_client
        from awsops.config import ClientSettings

        settings = ClientSettings(endpoint_url=self.aws.endpoint, max_attempts=3)
        return make_client(self.aws.session(region), service, region, settings)


def write_proxy_home(home: Path, aws: Aws, proxy: FaultProxy) -> Path:
    """Make ``home`` an AWSOPS_HOME whose sandbox record sends ``awsops --sandbox``
    through ``proxy``."""
    from awsops.sandbox import manager
    from awsops.sandbox.manager import SandboxState

    home.mkdir(parents=True, exist_ok=True)
    info = manager.health(aws.endpoint)
    assert info is not None
    port = urlparse(aws.endpoint).port
    assert port is not None
    state = SandboxState(
        pid=int(info["pid"]),
        host="127.0.0.1",
        port=port,
        started_at=time.time(),
        log_file=str(home / "log"),
        proxy_pid=None,
        proxy_port=proxy.port,
        faults="(set by the test)",
    )
    (home / "sandbox.json").write_text(json.dumps(asdict(state)))
    return home


# --- per test: a freshly reset moto server ------------------------------------------


@pytest.fixture
def proxy(aws: Aws) -> Iterator[FaultProxy]:
    """A fault proxy (no faults yet) in front of the freshly reset moto server; it
    stops with the test."""
    with FaultProxy(aws.endpoint) as p:
        yield p


@pytest.fixture
def proxied(aws: Aws, proxy: FaultProxy) -> Proxied:
    return Proxied(proxy, aws)


@pytest.fixture
def proxy_home(
    aws: Aws, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """An AWSOPS_HOME whose sandbox record sends ``awsops --sandbox`` through the proxy."""
    home = write_proxy_home(tmp_path / "awsops-home", aws, proxy)
    monkeypatch.setenv("AWSOPS_HOME", str(home))
    return home


# --- per module: seed once, then the cases only read ----------------------------------
# A module that uses these must not use the per-test fixtures above: ``aws`` resets the
# server, which would wipe what the module seeded.


@pytest.fixture(scope="module")
def module_proxied(moto_server: str) -> Iterator[Proxied]:
    """The moto server, reset once for the module, behind a fault proxy that lives as
    long as the module; the cases share what is seeded through it."""
    from awsops.sandbox.manager import reset
    from tests.conftest import Aws

    reset(moto_server)
    aws = Aws(endpoint=moto_server, server_url=moto_server)
    with FaultProxy(aws.endpoint) as p:
        yield Proxied(p, aws)


@pytest.fixture(scope="module")
def module_proxy_home(
    module_proxied: Proxied, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """``proxy_home`` for the whole module."""
    home = tmp_path_factory.mktemp("awsops-home")
    write_proxy_home(home, module_proxied.aws, module_proxied.proxy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWSOPS_HOME", str(home))
        yield home
