"""The order the test files run in: reliability suites first, then end-to-end,
integration and unit tests, each tier in its files' usual order.

A pytest plugin (``-p tests.schedule``, in the project's pytest settings). Under
pytest-xdist with ``--dist loadfile --no-loadscope-reorder`` (``scripts/test``) the
workers take whole files in this order, so the long reliability files start first and
the many short unit files come last, where they even out the ends of the two workers;
a long file started last would leave one worker idle while the other finishes it.
"""

from __future__ import annotations

import os

import pytest

TIERS = ("reliability", "e2e", "integration", "unit")


def tier(item: pytest.Item) -> int:
    path = str(item.path)
    for n, name in enumerate(TIERS):
        if f"{os.sep}{name}{os.sep}" in path:
            return n
    return len(TIERS)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=tier)  # stable: each file's tests keep their order
