"""The table of named safety mutations (``scripts/mutants.py``, run by
``scripts/mutation --named``) still fits the code: each edit's text is found exactly
once, each edit changes something, and each test it names exists. When the code moves,
this fails here, at once, rather than in a mutation run that reports "not applied"."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "mutants.py"

# mutmut's copy of the tree (mutants/) has no scripts/, and its src/ is mutated.
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="no scripts/ beside these tests")


def _table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("awsops_named_mutants", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def test_every_named_mutation_applies_to_the_code_as_it_is() -> None:
    table = _table()
    names = [m.name for m in table.MUTATIONS]
    assert len(set(names)) == len(names)
    assert len({m.rail for m in table.MUTATIONS}) == 5
    for mutation in table.MUTATIONS:
        assert table.missing_edits(mutation, ROOT) == [], mutation.name
        assert all(edit.old != edit.new for edit in mutation.edits), mutation.name


def test_every_test_a_named_mutation_runs_exists() -> None:
    for mutation in _table().MUTATIONS:
        assert mutation.tests, mutation.name
        for test in mutation.tests:
            path, _, name = test.partition("::")
            assert (ROOT / path).is_file(), test
            assert not name or f"def {name.split('[')[0]}(" in (ROOT / path).read_text(), test
