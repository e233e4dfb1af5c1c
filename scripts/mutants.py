#!/usr/bin/env python3
"""The named safety mutations: each breaks one safety rail of ``decommission apply`` on
purpose, in a scratch copy of the tree, and the tests that guard that rail must fail.

Run through ``scripts/mutation --named`` (docs/testing.md). For each mutation: copy
``src``, ``tests`` and ``pyproject.toml`` to ``mutants/named/<name>/``, apply its edits
(each edit's text must be found exactly once, or the mutation is reported as not
applied: the table is out of date), check that ``awsops`` and ``tests`` are imported
from the copy, run its tests there with pytest (two xdist workers, as ``scripts/test``),
and report it *caught* (at least one test failed that passes on the unmutated copy) or
*survived*, naming the tests that caught it.

A baseline run of every test named in the table on an unmutated copy comes first, so a
test that fails anyway is never counted as a catch. A test that fails there is run once
more: if it passes then, it is reported as flaky and still never counted as a catch; if
it fails again, the baseline failed.

Exit status: 0 if every mutation was caught; 1 if one survived; 2 if a mutation could not
be applied or its run ended in an error, or the baseline failed.

Usage: ``scripts/mutants.py [--list] [--check] [--only NAME]... [--no-baseline]
[--workers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants" / "named"
PYTHON = ROOT / ".venv" / "bin" / "python"
PKG = "src/awsops/decommission/"

UNIT_BACKUP = "tests/unit/test_backup_units.py"
UNIT_VERIFY = "tests/unit/test_verify_units.py"
UNIT_TERMINATE = "tests/unit/test_terminate_units.py"
PROPERTY = "tests/integration/test_decommission_property.py"
INTEGRATION = "tests/integration/test_decommission.py"
CRASH = "tests/reliability/test_crash_safety.py"
IMAGES = "tests/reliability/test_image_backups.py"
INTERRUPTS = "tests/reliability/test_apply_interrupts.py"
POLICY = "tests/reliability/test_apply_policy.py"
E2E_RESUME = (
    "tests/e2e/test_decommission_cli.py::"
    "test_apply_backs_up_terminates_and_resumes_without_repeating"
)
JOURNAL_LOCK = "tests/unit/test_plan_model.py::test_second_open_of_the_same_journal_is_refused"


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (found exactly once in ``path``) by ``new``."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutation:
    name: str
    rail: str  # which of the five safety rails it breaks
    what: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]


def _snapshot_states(*also: str) -> tuple[Edit, ...]:
    """backup.py: snapshots in ``also`` states count as completed, both where the
    journal is told and where the instance is let through to termination."""
    ok = ", ".join(f'"{s}"' for s in ("completed", *also))
    return (
        Edit(
            PKG + "backup.py",
            'if states.get(sid) == "completed" and vid not in rec.completed:',
            f"if states.get(sid) in ({ok}) and vid not in rec.completed:",
        ),
        Edit(
            PKG + "backup.py",
            'if states.get(sid) != "completed"\n',
            f"if states.get(sid) not in ({ok})\n",
        ),
    )


_RESUMED_INTO_ACT = Edit(
    PKG + "verify.py",
    "            if requested:\n"
    "                work.resumed.append(planned.instance_id)\n"
    "            else:\n"
    "                work.result(\n"
    '                    planned, Outcome.SKIPPED, f"drift: {state} by someone else',
    "            if requested:\n"
    "                work.resumed.append(planned.instance_id)\n"
    "                work.act.append(planned)\n"
    "            else:\n"
    "                work.result(\n"
    '                    planned, Outcome.SKIPPED, f"drift: {state} by someone else',
)
_NO_RECHECK = Edit(
    PKG + "executor.py",
    "                batch = self.terminations.still_stopped(work, batch)\n",
    "                batch = list(batch)\n",
)

MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "snapshots-pending-complete",
        "backups complete before termination",
        "a snapshot still pending counts as completed",
        _snapshot_states("pending"),
        (UNIT_BACKUP, PROPERTY, CRASH),
    ),
    Mutation(
        "snapshots-error-complete",
        "backups complete before termination",
        "a snapshot in error counts as completed",
        _snapshot_states("error"),
        (UNIT_BACKUP, PROPERTY, CRASH),
    ),
    Mutation(
        "images-pending-available",
        "backups complete before termination",
        "an image still pending counts as available",
        (
            Edit(
                PKG + "images.py",
                'if state == "available":',
                'if state in ("available", "pending"):',
            ),
        ),
        (UNIT_BACKUP, IMAGES),
    ),
    Mutation(
        "images-failed-available",
        "backups complete before termination",
        "a failed (or deregistered) image counts as available",
        (
            Edit(
                PKG + "images.py",
                'if state == "available":',
                'if state == "available" or state in GONE:',
            ),
        ),
        (UNIT_BACKUP, IMAGES),
    ),
    Mutation(
        "resumed-into-act",
        "TerminateInstances never re-sent",
        "an instance an earlier run already terminated is put back among those to act on",
        (_RESUMED_INTO_ACT,),
        (UNIT_VERIFY, INTEGRATION, CRASH, E2E_RESUME),
    ),
    Mutation(
        "no-recheck-before-batch",
        "TerminateInstances never re-sent",
        "the describe right before each TerminateInstances batch is skipped",
        (_NO_RECHECK,),
        (UNIT_TERMINATE, INTEGRATION, INTERRUPTS),
    ),
    Mutation(
        "resumed-into-act+no-recheck",
        "TerminateInstances never re-sent",
        "both of the above",
        (_RESUMED_INTO_ACT, _NO_RECHECK),
        (UNIT_VERIFY, UNIT_TERMINATE, INTEGRATION, CRASH, E2E_RESUME),
    ),
    Mutation(
        "no-account-check",
        "apply-time account check",
        "apply no longer compares the account its credentials reach (GetCallerIdentity) "
        "with the plan's label",
        (
            Edit(
                PKG + "verify.py",
                "    if account != tp.account_id:\n        raise PlanError(",
                "    if False:\n        raise PlanError(",
            ),
        ),
        (UNIT_VERIFY, INTEGRATION, PROPERTY),
    ),
    Mutation(
        "no-rules-at-apply",
        "apply-time protection re-check",
        "apply no longer decides again (plan criteria and apply policy): every instance "
        "that still matches the plan is acted on",
        (
            Edit(
                PKG + "verify.py",
                "            decision = decide(facts, tp.account_id, criteria, now)\n"
                "            if decision.terminate:\n"
                "                decision = decide(facts, tp.account_id, policy, now)\n"
                "            if decision.terminate:\n",
                "            decision = decide(facts, tp.account_id, criteria, now)\n"
                "            if True:\n",
            ),
        ),
        (UNIT_VERIFY, INTEGRATION, PROPERTY, POLICY),
    ),
    Mutation(
        "protection-from-plan",
        "apply-time protection re-check",
        "termination protection (DisableApiTermination) is taken from the plan, not read "
        "again at apply",
        (
            Edit(
                PKG + "verify.py",
                "        for facts in enriched:\n",
                "        for facts in [\n"
                "            dataclasses.replace(f, termination_protection=p.termination_protection)\n"
                "            for (p, _), f in zip(matching, enriched)\n"
                "        ]:\n",
            ),
        ),
        (UNIT_VERIFY, INTEGRATION, PROPERTY, POLICY),
    ),
    Mutation(
        "no-journal-lock",
        "the journal lock",
        "the journal's flock is never taken: two applies of one plan run at once",
        (
            Edit(
                PKG + "journal.py",
                "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
                "            pass\n",
            ),
        ),
        (JOURNAL_LOCK, f"{CRASH}::test_a_frozen_apply_keeps_its_lock", INTERRUPTS),
    ),
)


@dataclass
class Outcome:
    name: str
    valid: bool = True  # False: not applied, or pytest could not run the tests
    returncode: int | None = None
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""


def missing_edits(mutation: Mutation, root: Path = ROOT) -> list[str]:
    """The edits whose text is not found exactly once under ``root`` (empty: all apply)."""
    wrong = []
    for edit in mutation.edits:
        count = (root / edit.path).read_text().count(edit.old)
        if count != 1:
            wrong.append(f"{edit.path}: found {count} times: {edit.old.strip()[:70]!r}")
    return wrong


def scratch_copy(name: str) -> Path:
    dest = WORK / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".hypothesis")
    shutil.copytree(ROOT / "src", dest / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def apply_edits(mutation: Mutation, dest: Path) -> None:
    for edit in mutation.edits:
        target = dest / edit.path
        text = target.read_text()
        assert text.count(edit.old) == 1, (mutation.name, edit.path)
        target.write_text(text.replace(edit.old, edit.new))


def _env(dest: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{dest / 'src'}{os.pathsep}{dest}"}


def imports_the_copy(dest: Path) -> bool:
    """``awsops`` and ``tests`` resolve to the copy (not the editable install)."""
    code = "import awsops, tests; print(awsops.__file__); print(tests.__file__)"
    out = subprocess.run(
        [str(PYTHON), "-c", code], env=_env(dest), cwd=dest, capture_output=True, text=True
    ).stdout.split()
    return len(out) == 2 and all(Path(p).is_relative_to(dest) for p in out)


def _node_id(dest: Path, classname: str, name: str) -> str:
    """pytest's node id of a junit test case (``tests.unit.test_x[.Class]``, name)."""
    parts = classname.split(".")
    for n in range(len(parts), 0, -1):
        path = "/".join(parts[:n]) + ".py"
        if (dest / path).exists():
            return "::".join([path, *parts[n:], name])
    return f"{classname}::{name}"


def failed_tests(dest: Path, junit: Path) -> list[str]:
    if not junit.exists():
        return []
    failed = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(_node_id(dest, case.get("classname", ""), case.get("name", "")))
    return sorted(set(failed))


def run_tests(name: str, dest: Path, tests: list[str], workers: int) -> Outcome:
    junit = dest / "junit.xml"
    log = WORK / f"{name}.log"
    xdist = ["-n", str(workers), "--dist", "loadfile", "--no-loadscope-reorder"] if workers else []
    cmd = [str(PYTHON), "-m", "pytest", *xdist, "-p", "no:cacheprovider", "-q", "-rfE"]
    start = time.monotonic()
    with open(log, "w") as fh:
        code = subprocess.run(
            [*cmd, f"--junitxml={junit}", *tests],
            env=_env(dest),
            cwd=dest,
            stdout=fh,
            stderr=subprocess.STDOUT,
        ).returncode
    seconds = time.monotonic() - start
    return Outcome(name, True, code, failed_tests(dest, junit), seconds, str(log))


def baseline(chosen: list[Mutation], workers: int) -> tuple[set[str], bool]:
    """Every test of ``chosen`` on an unmutated copy: the tests never to count as a
    catch (failed, even if only once) and whether the baseline holds (none failed
    twice)."""
    tests = list(dict.fromkeys(t for m in chosen for t in m.tests))
    dest = scratch_copy("baseline")
    base = run_tests("baseline", dest, tests, workers)
    print(f"baseline: exit {base.returncode}, {base.seconds:.0f}s, log {base.note}")
    if base.returncode == 0:
        return set(), True
    again = run_tests("baseline-again", dest, base.failed, workers) if base.failed else base
    for t in base.failed:
        verdict = "fails" if t in again.failed else "flaky (passed when run again)"
        print(f"    without any mutation: {verdict}: {t}")
    holds = bool(base.failed) and again.returncode == 0
    if not holds:
        print("baseline failed: the results below cannot be trusted")
    return set(base.failed), holds


def run_mutation(m: Mutation, workers: int, not_catches: set[str]) -> Outcome:
    dest = scratch_copy(m.name)
    apply_edits(m, dest)
    if not imports_the_copy(dest):
        return Outcome(m.name, False, note="tests would not import the copy")
    res = run_tests(m.name, dest, list(m.tests), workers)
    res.failed = [t for t in res.failed if t not in not_catches]
    res.valid = res.returncode in (0, 1)  # else interrupted, internal error, no tests...
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the table and exit")
    parser.add_argument("--check", action="store_true", help="only check the edits apply")
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers (0: none)")
    args = parser.parse_args(argv)
    unknown = set(args.only) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:30} [{m.rail}] {m.what}\n{'':30} tests: {' '.join(m.tests)}")
        return 0
    broken = {m.name: missing_edits(m) for m in chosen}
    for name, wrong in broken.items():
        for line in wrong:
            print(f"NOT APPLIED {name}: {line}")
    if args.check or any(broken.values()):
        return 2 if any(broken.values()) else 0

    WORK.mkdir(parents=True, exist_ok=True)
    not_catches, holds = (set(), True) if args.no_baseline else baseline(chosen, args.workers)
    results: list[Outcome] = []
    for m in chosen:
        res = run_mutation(m, args.workers, not_catches)
        results.append(res)
        verdict = ("caught" if res.failed else "SURVIVED") if res.valid else "ERROR"
        print(f"{m.name:30} {verdict:8} exit {res.returncode} {res.seconds:5.0f}s  {res.note}")
        for t in res.failed:
            print(f"    caught by {t}")
    report = {"not_catches": sorted(not_catches), "mutations": [vars(r) for r in results]}
    (WORK / "results.json").write_text(json.dumps(report, indent=2))
    if not holds or not all(r.valid for r in results):
        return 2
    return 1 if any(not r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
