"""Running the suite on pytest-xdist workers as if in one process: the order the test
files run in, and the terminal size the tests see.

A pytest plugin (``-p tests.parallel``, in the project's pytest settings).

- Order: reliability suites first, then end-to-end, integration and unit tests, each
  tier in its files' usual order. With ``--dist loadfile --no-loadscope-reorder``
  (``scripts/test``) the workers take whole files in this order, so the long reliability
  files start first and the many short unit files come last, where they even out the
  ends of the two workers; a long file started last would leave one worker idle while
  the other finishes it.
- Terminal size: a worker process finds ``COLUMNS=80`` and ``LINES=24`` in its
  environment (readline sets them when it starts without a terminal), and every CLI the
  tests run in a subprocess would inherit them and draw its tables 80 columns wide. The
  controller hands its own values to the workers, which restore them, so a test sees
  the environment it sees without xdist; tests that care about the width set it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

TIERS = ("reliability", "e2e", "integration", "unit")
TERMINAL_VARS = ("COLUMNS", "LINES")
_WORKER_KEY = "awsops_terminal_env"


def tier(item: pytest.Item) -> int:
    path = str(item.path)
    for n, name in enumerate(TIERS):
        if f"{os.sep}{name}{os.sep}" in path:
            return n
    return len(TIERS)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=tier)  # stable: each file's tests keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: send the terminal size it was given to a new worker."""
    node.workerinput[_WORKER_KEY] = {k: os.environ.get(k) for k in TERMINAL_VARS}


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    for key, value in workerinput.get(_WORKER_KEY, {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
