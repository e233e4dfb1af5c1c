"""The reliability figures: what the suites counted (faults injected, calls through the
proxy, items checked, kills survived...) and seconds per file, printed in a "reliability
figures" section at the end of the run and, with ``AWSOPS_RELIABILITY_REPORT=file.json``,
written as JSON.

A pytest plugin, loaded with ``-p tests.reliability.figures`` (the project's pytest
settings do it) so that its hooks run in pytest-xdist's controller too, which collects
nothing and so never loads ``tests/reliability/conftest.py``. Each xdist worker counts
its own figures and sends them in ``workeroutput`` when it finishes; the controller adds
them up. Test durations reach the controller as test reports, so they need no carrying.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from awsops.sandbox.faults import FaultProxy

# Figures the suites report at the end of the run (faults injected, calls, items, kills).
FIGURES: Counter[str] = Counter()
DURATIONS: dict[str, float] = {}
_WORKER_KEY = "awsops_reliability_figures"


def record_proxy(proxy: FaultProxy, items_checked: int = 0) -> None:
    """Add a proxy's counters and the items a test checked to the run's figures."""
    snap = proxy.stats.snapshot()
    FIGURES["calls through the proxy"] += snap["total_calls"]
    FIGURES["faults injected"] += snap["total_faults"]
    for kind, n in snap["faults"].items():
        FIGURES[f"faults injected: {kind}"] += n
    FIGURES["items checked"] += items_checked


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Under xdist the controller gets every worker's reports through this hook; a worker
    # keeps its own copy too, which nothing reads.
    if report.when == "call" and "reliability" in report.nodeid:
        DURATIONS[report.nodeid] = report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the figures to the controller
        workeroutput[_WORKER_KEY] = dict(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: add a finished worker's figures to the run's."""
    FIGURES.update(getattr(node, "workeroutput", {}).get(_WORKER_KEY, {}))


def seconds_by_file() -> dict[str, float]:
    by_file: Counter[str] = Counter()
    for nodeid, seconds in DURATIONS.items():
        by_file[nodeid.split("::")[0]] += seconds  # type: ignore[assignment]
    return dict(sorted(by_file.items()))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workeroutput") or (not FIGURES and not DURATIONS):
        return
    tr = terminalreporter
    tr.write_sep("=", "reliability figures")
    for key in sorted(FIGURES):
        tr.write_line(f"{key:<64} {FIGURES[key]:>8}")
    for path, seconds in seconds_by_file().items():
        tr.write_line(f"{path:<60} {seconds:>8.1f}s")
    target = os.environ.get("AWSOPS_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(
            json.dumps({"figures": dict(FIGURES), "durations": DURATIONS}, indent=2)
        )
