"""Crash safety: ``decommission apply`` killed (SIGKILL) or interrupted (SIGINT,
SIGTERM) at every phase, resumed each time, then run to the end.

The fault proxy delivers the signal at a deterministic point of each run, counted in
mutating calls from the moment it is armed, so every phase is hit on every run (the
test asserts from ``fired_signals()`` that it was):

1. before the 2nd CreateSnapshot(s) is forwarded (SIGKILL: it never reaches EC2);
2. after EC2 made the 2nd backup call's snapshots, before its answer (SIGKILL: the
   answer is lost);
3. during the snapshot wait: the first poll after the run's last CreateSnapshot(s), while
   the snapshots are still pending (the sandbox server keeps them pending 1 s);
4. before the 1st TerminateInstances is forwarded;
5. after EC2 began terminating, before its answer;
6. during the termination wait: the first poll after the run's last TerminateInstances.

One world per signal, its runs in that order, each resuming the one before (six
interruptions in one history), then a last run to the end. Interrupted runs (SIGINT,
SIGTERM) exit 130. Then, judged from the proxy's ledger, the snapshot states it served,
the server's backup witness and moto, never from awsops' report or journal: every
planned instance terminated once, after a snapshot of each DeleteOnTermination volume
that was completed and shown completed before its TerminateInstances; no
TerminateInstances to an instance already shutting down; one snapshot per volume;
nothing else touched. And the journal file has no torn line.

A run frozen mid-call (SIGSTOP after EC2 made a snapshot) keeps its plan's lock: a
second apply of the plan meanwhile is refused and changes nothing.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ledger_checks import Ledger, backup_violations, torn_lines, witness
from tests.reliability.apply_world import (
    Ledger as WorldLedger,
)
from tests.reliability.apply_world import (
    assert_exactly_decommissioned,
    assert_journal_saw_every_change,
    expected_choice,
    journal_events,
    make_plan,
    planned,
    seed,
)
from tests.reliability.conftest import FIGURES, Proxied, record_proxy
from tests.reliability.crash_world import (
    KILL_POINTS,
    SNAPSHOT_ACTIONS,
    SNAPSHOT_CALLS,
    SNAPSHOT_DELAY,
    KillPoint,
    counted_calls,
    freeze,
    interrupt_once,
    journal_runs,
    journal_text,
    remaining,
    run_to_end,
)

REGIONS = ("us-east-1", "eu-west-1")
PER_REGION = 16  # 4 planned instances and 6 deletable volumes per region


def make_world(
    proxied: Proxied, tmp_path: Path, regions: tuple[str, ...], per_region: int
) -> dict[str, Any]:
    """The demo fleet in ``regions``, its plan, and new snapshots kept pending."""
    before = seed(proxied, regions, per_region)
    path = tmp_path / "plan.json"
    plan = make_plan(path, regions)
    chosen = planned(plan)
    assert chosen == expected_choice(before) and len(chosen) >= 2 * len(regions)
    proxied.aws.backup_faults(snapshot_delay=SNAPSHOT_DELAY, seed=7)
    return {"before": before, "path": path, "plan": plan, "chosen": chosen, "regions": regions}


@pytest.fixture
def world(proxied: Proxied, proxy_home: Path, tmp_path: Path) -> dict[str, Any]:
    return make_world(proxied, tmp_path, REGIONS, PER_REGION)


def _judge(proxied: Proxied, proxy_home: Path, world: dict[str, Any]) -> Ledger:
    """The whole history, from AWS's side: exact final state, one snapshot per volume,
    no re-sent TerminateInstances, backups completed before each termination; and no
    torn journal line."""
    records = proxied.proxy.stats.mutation_list()
    assert_exactly_decommissioned(
        proxied, world["regions"], world["before"], world["chosen"], records
    )
    led = Ledger.read(records)
    assert not led.resent, f"TerminateInstances re-sent: {dict(led.resent)}"
    assert not led.duplicate_snapshots(), led.duplicate_snapshots()
    assert set(led.effective) == world["chosen"]
    volumes = {i: world["before"][i].deletable_volumes for i in world["chosen"]}
    wrong = backup_violations(
        led, volumes, proxied.proxy.stats.served_states(), witness(proxied.aws.backups())
    )
    assert not wrong, "\n".join(wrong)
    text = journal_text(proxy_home, world["plan"]["plan_id"])
    assert not torn_lines(text), torn_lines(text)
    events = journal_events(proxy_home, world["plan"]["plan_id"])
    assert_journal_saw_every_change(events, WorldLedger.read(records))
    return led


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name
)
def test_interrupted_at_every_phase_then_resumed(
    proxied: Proxied, proxy_home: Path, world: dict[str, Any], sig: signal.Signals
) -> None:
    proxy = proxied.proxy
    expected_exit = -signal.SIGKILL if sig == signal.SIGKILL else 130
    for point in KILL_POINTS:
        left = remaining(proxied, REGIONS, world["before"], world["chosen"])
        at = counted_calls(point, left)
        run = interrupt_once(proxy, world["path"], point, at, sig)
        fired = run.fired
        assert (fired.phase, fired.signal, fired.error) == (point.phase, sig.name, None), (
            f"{point.name}: {fired}"
        )
        assert fired.call in point.calls, f"{point.name}: {fired}"
        assert run.returncode == expected_exit, f"{point.name}: exit {run.returncode}\n{run.stderr}"
        if sig != signal.SIGKILL:
            assert f"interrupted by {sig.name}" in run.stderr, run.stderr[-2000:]
        FIGURES[f"crash: {sig.name} delivered {point.name}"] += 1

    final = run_to_end(world["path"])
    assert final.returncode == 0, final.stderr[-3000:]
    led = _judge(proxied, proxy_home, world)

    record_proxy(proxy, items_checked=len(world["before"]))
    text = journal_text(proxy_home, world["plan"]["plan_id"])
    FIGURES[f"crash: {sig.name} runs interrupted then resumed"] += len(KILL_POINTS)
    FIGURES["crash: apply runs recorded in the journal"] += journal_runs(text)
    FIGURES["crash: instances terminated once after completed backups"] += len(led.effective)
    FIGURES["crash: torn journal lines"] += len(torn_lines(text))
    FIGURES["crash: TerminateInstances re-sent"] += sum(led.resent.values())
    FIGURES["crash: duplicate snapshots"] += len(led.duplicate_snapshots())


def test_a_frozen_apply_keeps_its_lock(proxied: Proxied, proxy_home: Path, tmp_path: Path) -> None:
    """SIGSTOP right after EC2 made the first snapshot (its answer not yet read): the
    frozen run still holds the plan's lock, so another apply of the plan meanwhile is
    refused and sends nothing; once let go, the first run finishes the job."""
    world = make_world(proxied, tmp_path, REGIONS[:1], 12)
    proxy = proxied.proxy
    point = KillPoint("after CreateSnapshot(s)", "after", SNAPSHOT_ACTIONS, SNAPSHOT_CALLS, 1)

    def second_apply(frozen_pid: int) -> dict[str, Any]:
        start = time.time()
        other = run_to_end(world["path"])
        end = time.time()
        during = [r for r in proxy.stats.mutation_list() if start <= r.at <= end and not r.dry_run]
        return {"run": other, "changes": during}

    code, err, second = freeze(proxy, world["path"], point, 1, second_apply)
    other = second["run"]
    assert not second["changes"], (
        f"{len(second['changes'])} changes while another apply held the plan: "
        f"{[(r.action, dict(r.params)) for r in second['changes']][:4]}"
    )
    assert other.returncode == 2, other.stderr[-2000:]
    assert "another apply of plan" in other.stderr, other.stderr[-2000:]
    assert code == 0, err[-3000:]
    led = _judge(proxied, proxy_home, world)
    FIGURES["crash: applies refused while a frozen run held the lock"] += 1
    FIGURES["crash: instances terminated once after completed backups"] += len(led.effective)
