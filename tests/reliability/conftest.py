"""Fixtures of the reliability suites: a fault proxy in front of the session's moto
server, clients with awsops' production retry settings, a sandbox record that sends
``awsops --sandbox`` through the proxy, and a ledger of the figures the suites report.

Sizes: ``AWSOPS_RELIABILITY_SCALE`` (default 1) multiplies fleet sizes and kill counts
for runs by hand; the default keeps the whole reliability suite within CI's budget.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest

from awsops.sandbox.faults import FaultProxy

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


# Figures the suites report at the end of the run (faults injected, calls, items, kills).
FIGURES: Counter[str] = Counter()
DURATIONS: dict[str, float] = {}


def record_proxy(proxy: FaultProxy, items_checked: int = 0) -> None:
    """Add a proxy's counters and the items a test checked to the run's figures."""
    snap = proxy.stats.snapshot()
    FIGURES["calls through the proxy"] += snap["total_calls"]
    FIGURES["faults injected"] += snap["total_faults"]
    for kind, n in snap["faults"].items():
        FIGURES[f"faults injected: {kind}"] += n
    FIGURES["items checked"] += items_checked


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and "reliability" in report.nodeid:
        DURATIONS[report.nodeid] = report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES and not DURATIONS:
        return
    tr = terminalreporter
    tr.write_sep("=", "reliability figures")
    for key in sorted(FIGURES):
        tr.write_line(f"{key:<64} {FIGURES[key]:>8}")
    by_file: Counter[str] = Counter()
    for nodeid, seconds in DURATIONS.items():
        by_file[nodeid.split("::")[0]] += seconds  # type: ignore[assignment]
    for path, seconds in sorted(by_file.items()):
        tr.write_line(f"{path:<60} {seconds:>8.1f}s")
    target = os.environ.get("AWSOPS_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(
            json.dumps({"figures": dict(FIGURES), "durations": DURATIONS}, indent=2)
        )


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
    from awsops.sandbox import manager
    from awsops.sandbox.manager import SandboxState

    home = tmp_path / "awsops-home"
    home.mkdir()
    monkeypatch.setenv("AWSOPS_HOME", str(home))
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
