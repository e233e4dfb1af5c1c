"""The suite's pytest-xdist plugins, in a pytest run of their own on two workers: the
reliability figures each worker counts reach the controller, which prints (and writes
as JSON) their sum with the seconds of every file; and a worker's tests see the terminal
size the controller was given, not the one the worker process found."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COUNTING = """
import os
from tests.reliability.figures import FIGURES

def test_counts():
    FIGURES["widgets checked"] += {n}
    FIGURES["files run on " + os.environ["PYTEST_XDIST_WORKER"]] += 1
"""

TERMINAL = """
import os

def test_terminal_size_is_the_controllers():
    assert os.environ.get("COLUMNS") == {columns!r}
    assert "LINES" not in os.environ
"""


def _pytest_on_two_workers(
    suite: Path, plugin: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    clean.pop("LINES", None)
    args = ["-p", "no:cacheprovider", "-p", plugin, "-n", "2", "--dist", "loadfile"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-q", str(suite)],
        cwd=suite,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_figures_of_two_workers_are_added_up(tmp_path: Path) -> None:
    for name, n in (("a", 2), ("b", 3)):
        (tmp_path / f"test_reliability_{name}.py").write_text(COUNTING.format(n=n))
    report = tmp_path / "figures.json"
    proc = _pytest_on_two_workers(
        tmp_path, "tests.reliability.figures", {"AWSOPS_RELIABILITY_REPORT": str(report)}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(report.read_text())["figures"]
    # One file on each worker, and the controller has both workers' counts.
    assert figures == {
        "widgets checked": 5,
        "files run on gw0": 1,
        "files run on gw1": 1,
    }, proc.stdout
    summary = proc.stdout.split("reliability figures", 1)[1]
    assert re.search(r"^widgets checked +5$", summary, re.M), summary
    for name in ("a", "b"):
        assert re.search(rf"^test_reliability_{name}\.py +\d+\.\ds$", summary, re.M), summary


def test_workers_see_the_controllers_terminal_size(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"test_{name}.py").write_text(TERMINAL.format(columns="132"))
    proc = _pytest_on_two_workers(tmp_path, "tests.parallel", {"COLUMNS": "132"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
