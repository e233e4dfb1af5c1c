"""The reliability figures under pytest-xdist: each worker counts its own, and the
controller prints (and writes as JSON) their sum, with the seconds of every file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
import os
from tests.reliability.figures import FIGURES

def test_counts():
    FIGURES["widgets checked"] += {n}
    FIGURES["files run on " + os.environ["PYTEST_XDIST_WORKER"]] += 1
"""


def test_figures_of_two_workers_are_added_up(tmp_path: Path) -> None:
    for name, n in (("a", 2), ("b", 3)):
        (tmp_path / f"test_reliability_{name}.py").write_text(SUITE.format(n=n))
    report = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PYTHONPATH=str(ROOT), AWSOPS_RELIABILITY_REPORT=str(report))
    args = ["-p", "no:cacheprovider", "-p", "tests.reliability.figures"]
    args += ["-n", "2", "--dist", "loadfile", "-q", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
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
