"""``decommission apply`` interrupted, run twice at once, copied, run from another host,
or left without room for its journal: what reaches AWS, judged from the fault proxy's
ledger of mutating calls and from moto's state, never from awsops' own report.

Signals are delivered by the proxy itself (a tap on the server's answers), at a known
point: while a CreateSnapshot(s) that the server has carried out is still on its way back,
so every run is interrupted with calls in flight, in the same phase.
"""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from awsops.sandbox.faults import CallInfo
from tests.reliability.apply_world import (
    Ledger,
    apply_args,
    assert_exactly_decommissioned,
    assert_journal_saw_every_change,
    changes,
    cli,
    expected_choice,
    journal_events,
    make_plan,
    planned,
    rows,
    run,
    seed,
    send,
    start,
)
from tests.reliability.conftest import FIGURES, Proxied, record_proxy

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
PER_REGION = 24
WORKERS = len(REGIONS)  # apply works on each (account, region) in its own thread
SLOW_CHANGES = "latency=200ms,only=CreateSnapshot+CreateSnapshots+TerminateInstances"
SNAPSHOT_ACTIONS = ("CreateSnapshot", "CreateSnapshots")

Tap = Callable[[CallInfo, int, bytes], None]


def _on_first_snapshot(action: Callable[[], None], hold: float = 0.0) -> tuple[Tap, dict[str, Any]]:
    """A proxy tap that runs ``action`` when the server has made the first snapshot, then
    holds that answer back ``hold`` seconds (the call stays in flight meanwhile)."""
    fired: dict[str, Any] = {}
    lock = threading.Lock()

    def tap(info: CallInfo, status: int, body: bytes) -> None:
        if info.action not in SNAPSHOT_ACTIONS or status >= 300:
            return
        with lock:
            if fired:
                return
            fired["at"] = time.monotonic()
        action()
        time.sleep(hold)

    return tap, fired


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture
def world(proxied: Proxied, proxy_home: Path, tmp_path: Path) -> dict[str, Any]:
    before = seed(proxied, REGIONS, PER_REGION)
    path = tmp_path / "plan.json"
    plan = make_plan(path, REGIONS)
    chosen = planned(plan)
    assert chosen == expected_choice(before) and len(chosen) >= 12
    return {"before": before, "path": path, "plan": plan, "chosen": chosen}


def _finish_and_check(proxied: Proxied, proxy_home: Path, world: dict[str, Any]) -> Ledger:
    """Resume to the end, then judge the whole history from the ledger and moto."""
    proxied.proxy.taps.clear()
    final = run(apply_args(world["path"]))
    assert final.returncode == 0, final.stderr[-3000:]
    records = proxied.proxy.stats.mutation_list()
    led = assert_exactly_decommissioned(proxied, REGIONS, world["before"], world["chosen"], records)
    assert_journal_saw_every_change(journal_events(proxy_home, world["plan"]["plan_id"]), led)
    record_proxy(proxied.proxy, items_checked=len(world["before"]))
    return led


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_new_changes_and_the_journal_sees_every_change(
    proxied: Proxied, proxy_home: Path, world: dict[str, Any], sig: signal.Signals
) -> None:
    """Seen: SIGINT at the first snapshot-created, 43 mutating calls after the signal,
    then only `error: aborted` and no report."""
    proxy = proxied.proxy
    proxy.set_spec(SLOW_CHANGES)
    pid: dict[str, int] = {}
    marks: dict[str, int] = {}

    def interrupt() -> None:
        marks["ledger"] = len(proxy.stats.mutation_list())
        send(pid["apply"], sig)

    tap, fired = _on_first_snapshot(interrupt)
    proxy.taps.append(tap)
    proc = start(apply_args(world["path"]))
    pid["apply"] = proc.pid
    out, err = proc.communicate(timeout=240)
    assert fired, "the apply never made a snapshot"
    assert proc.returncode == 130, err[-3000:]

    records = proxy.stats.mutation_list()
    # Calls in flight when the signal came (at most one per worker) finish; at most one
    # more per worker may have passed its check in the same instant. Nothing else.
    late = changes(records[marks["ledger"] :])
    assert len(late) <= 2 * WORKERS, [r.action for r in late]
    led = Ledger.read(records)
    assert not led.effective_terminations  # stopped during backups: nothing terminated
    assert_journal_saw_every_change(journal_events(proxy_home, world["plan"]["plan_id"]), led)

    # The usual report, then one line that names the signal and how to resume.
    reported = {r["instance_id"]: r["outcome"] for r in rows(out)}
    assert set(reported) == world["chosen"]
    assert "not-done" in reported.values() and "terminated" not in reported.values()
    (line,) = _error_lines(err)
    assert f"interrupted by {sig.name}" in line
    assert line.endswith(f"resume with: awsops --sandbox decommission apply {world['path']}"), line
    FIGURES["apply interrupts: mutating calls after the signal"] += len(late)

    _finish_and_check(proxied, proxy_home, world)


def test_a_second_signal_waits_for_the_calls_in_flight_and_the_lock_holds(
    proxied: Proxied, proxy_home: Path, world: dict[str, Any]
) -> None:
    """Seen: two SIGINTs 1 s apart: `error: aborted`, yet all TerminateInstances batches
    were sent afterwards, none journaled, and a second apply was admitted meanwhile."""
    proxy = proxied.proxy
    proxy.set_spec(SLOW_CHANGES)
    pid: dict[str, int] = {}
    second: dict[str, Any] = {}

    def interrupt_twice_and_try_again() -> None:
        send(pid["apply"], signal.SIGINT)

        def later() -> None:
            time.sleep(1.0)
            send(pid["apply"], signal.SIGINT)
            # Meanwhile another apply of the same plan must be refused.
            second["result"] = run(apply_args(world["path"]), timeout=60)
            second["first_alive"] = proc.poll() is None

        threading.Thread(target=later, daemon=True).start()

    # The first snapshot's answer is held back 6 s: the run must wait for it.
    tap, fired = _on_first_snapshot(interrupt_twice_and_try_again, hold=6.0)
    proxy.taps.append(tap)
    proc = start(apply_args(world["path"]))
    pid["apply"] = proc.pid
    _out, err = proc.communicate(timeout=240)
    assert fired
    assert proc.returncode == 130, err[-3000:]
    assert "already stopping" in err
    assert second.get("first_alive"), "the first apply ended before the second one ran"
    refused = second["result"]
    assert refused.returncode == 2, refused.stderr
    assert "another apply of plan" in refused.stderr and "is running" in refused.stderr

    led = Ledger.read(proxy.stats.mutation_list())
    assert not led.effective_terminations
    # The held-back snapshot was journaled although its answer came after both signals.
    assert_journal_saw_every_change(journal_events(proxy_home, world["plan"]["plan_id"]), led)
    final = _finish_and_check(proxied, proxy_home, world)
    # The re-run took the first run's work as its own: nothing reported as drift.
    assert not final.resent_terminations


def test_copies_and_links_of_a_plan_share_one_lock(
    proxied: Proxied, proxy_home: Path, world: dict[str, Any], tmp_path: Path
) -> None:
    """Seen: plan.json, a copy and a symbolic link applied at once: 3 CreateSnapshot per
    volume and 3 TerminateInstances per instance."""
    proxy = proxied.proxy
    path: Path = world["path"]
    copy = tmp_path / "copy.json"
    shutil.copy(path, copy)
    link = tmp_path / "link.json"
    link.symlink_to(path)
    # Whoever wins holds the lock at least 3 s: the others surely arrive meanwhile.
    tap, _fired = _on_first_snapshot(lambda: None, hold=3.0)
    proxy.taps.append(tap)
    procs = [start(apply_args(p)) for p in (path, copy, link)]
    results = [(p.wait(timeout=240), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2, 2], results
    for code, err in results:
        if code == 2:
            assert "another apply of plan" in err and "is running" in err, err
    records = proxy.stats.mutation_list()
    assert_exactly_decommissioned(proxied, REGIONS, world["before"], world["chosen"], records)
    record_proxy(proxy, items_checked=len(world["before"]))


def test_another_host_applying_the_same_plan_duplicates_nothing(
    proxied: Proxied, proxy_home: Path, world: dict[str, Any], tmp_path: Path
) -> None:
    """Two hosts (two awsops homes, so two locks) apply one plan: host B verifies, is
    frozen just before its first change, host A does everything, then B goes on. B's
    look-ups right before each change find A's work: no second snapshot, no second
    TerminateInstances."""
    proxy = proxied.proxy
    home_b = tmp_path / "host-b"
    home_b.mkdir(mode=0o700)
    shutil.copy(proxy_home / "sandbox.json", home_b / "sandbox.json")
    shutil.copy(proxy_home / "plan-signing.key", home_b / "plan-signing.key")
    frozen = threading.Event()
    pid: dict[str, int] = {}

    def freeze_b(info: CallInfo, status: int, body: bytes) -> None:
        # B's last read-only step: a DryRun probe of CreateSnapshot(s) (412).
        if info.action in SNAPSHOT_ACTIONS and status == 412 and not frozen.is_set():
            send(pid["b"], signal.SIGSTOP)
            frozen.set()

    proxy.taps.append(freeze_b)
    b = start(apply_args(world["path"]), env={"AWSOPS_HOME": str(home_b)})
    pid["b"] = b.pid
    try:
        assert frozen.wait(120), "host B never reached its first change"
        proxy.taps.remove(freeze_b)
        a = run(apply_args(world["path"]))
        assert a.returncode == 0, a.stderr[-3000:]
    finally:
        send(b.pid, signal.SIGCONT)
    out, err = b.communicate(timeout=240)
    assert b.returncode == 0, err[-3000:]
    assert {r["outcome"] for r in rows(out)} <= {"terminated", "skipped"}
    records = proxy.stats.mutation_list()
    assert_exactly_decommissioned(proxied, REGIONS, world["before"], world["chosen"], records)


def test_a_new_plan_never_replaces_one_that_has_a_journal(
    proxied: Proxied, proxy_home: Path, world: dict[str, Any]
) -> None:
    """Seen: `plan -o plan.json` over a plan being applied replaced it; every later
    apply failed and the plan needed to resume was gone."""
    path: Path = world["path"]
    tap, fired = _on_first_snapshot(lambda: None)
    proxied.proxy.taps.append(tap)
    first = run(apply_args(path))
    assert first.returncode == 0 and fired
    original = path.read_bytes()
    again = run(
        cli(
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            ",".join(REGIONS),
            "-o",
            str(path),
        )
    )
    assert again.returncode == 2, again.stderr
    (line,) = _error_lines(again.stderr)
    assert world["plan"]["plan_id"] in line and "another path" in line
    assert path.read_bytes() == original


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_journal_that_cannot_be_written_stops_the_run_before_its_next_change(
    proxied: Proxied, proxy_home: Path, world: dict[str, Any]
) -> None:
    """Seen: a journal on a full disk gave `MemoryError` or an OSError without naming
    the journal. Files may not grow past 2.5 kB here: the journal fills up mid-run."""
    proc = subprocess.run(
        apply_args(world["path"]),
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=_limit_file_size(2500),
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = _error_lines(proc.stderr)
    journal = proxy_home / "plans" / world["plan"]["plan_id"] / "journal.jsonl"
    assert f"cannot write journal {journal}" in line and "resume with:" in line, line
    assert "Traceback" not in proc.stderr
    records = proxied.proxy.stats.mutation_list()
    led = Ledger.read(records)
    assert led.created_ids or led.snapshots_created == {}
    # Every change that reached AWS was journaled before it was made.
    events = journal_events(proxy_home, world["plan"]["plan_id"])
    requested = {e["volume_id"] for e in events if e["event"] == "snapshot-requested"}
    assert set(led.snapshots_created) <= requested
    assert not led.effective_terminations
    _finish_and_check(proxied, proxy_home, world)
