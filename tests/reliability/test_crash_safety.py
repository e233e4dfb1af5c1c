"""Crash safety: ``decommission apply`` killed with SIGKILL at random points, many
times, then run to completion. Every planned instance is terminated exactly once, each
after a completed snapshot of each of its deletable volumes; no volume gets two
snapshots; nothing unplanned is touched.

Mutating calls get 400 ms of latency at the proxy, and each run is killed during start-up
or after a random number of mutating calls reached EC2, plus a random fraction of a
second: kills land while requests are in flight (the server still carries them out, as
AWS would) as well as between steps, in every phase.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from awsops.decommission.journal import journal_path_for, replay
from awsops.sandbox.faults import FaultProxy
from tests.reliability.conftest import FIGURES, Proxied, record_proxy, scaled
from tests.reliability.fleet import (
    assert_decommissioned_exactly,
    expected_choice,
    plan_fleet,
    planned_ids,
    seed_fleet,
)

FLEET = scaled(60, minimum=24)
KILLS = scaled(20, minimum=3)
RUN_DEADLINE = 120.0
LATENCY = "latency=400ms,only=CreateSnapshot+TerminateInstances,seed=9"


def _changes(proxy: FaultProxy) -> int:
    """Mutating calls that changed something (DryRun probes answer 412 and do not)."""
    return sum(1 for m in proxy.stats.mutation_list() if m.status < 300)


def _apply_args(plan: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "awsops",
        "--sandbox",
        "decommission",
        "apply",
        str(plan),
        "--yes",
        "--batch-size",
        "1",
        "--snapshot-delay",
        "0",
        "--terminate-delay",
        "0",
        "--output",
        "json",
    ]


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = seed_fleet(proxied, FLEET)
    plan = plan_fleet(tmp_path / "plan.json", capsys)
    planned = planned_ids(plan)
    plan_id = json.loads(plan.read_text())["plan_id"]
    assert planned == expected_choice(before) and planned
    proxy = proxied.proxy
    proxy.set_spec(LATENCY)

    rng = random.Random(20260101)
    kills = finished_early = 0
    journal_path = journal_path_for(plan_id)
    for _ in range(3 * KILLS):  # bounded: stop once KILLS runs died mid-way, or all is done
        if kills >= KILLS:
            break
        if journal_path.exists() and all(replay(journal_path).of(i).terminated for i in planned):
            break
        landed = _changes(proxy)
        # Kill at a random point: during start-up and verification (k = 0), or after k more
        # mutating calls reached EC2, plus up to half a second (in flight or between steps).
        k = rng.choice((0, 1, 1, 2, 2, 3, 4))
        proc = subprocess.Popen(
            _apply_args(plan), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ
        )
        deadline = time.monotonic() + RUN_DEADLINE
        if k == 0:
            time.sleep(rng.uniform(0.3, 2.5))
        else:
            while (
                proc.poll() is None and _changes(proxy) < landed + k and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        else:
            finished_early += 1
        proc.communicate(timeout=60)
        time.sleep(0.5)  # let a request that was in flight land, as it would on AWS

    journal = replay(journal_path)
    done_before_final = sum(1 for i in planned if journal.of(i).terminated)

    final = subprocess.run(
        _apply_args(plan), capture_output=True, text=True, env=os.environ, timeout=600
    )
    assert final.returncode == 0, final.stderr[-3000:]

    ledger = assert_decommissioned_exactly(proxied, before, planned, proxy.stats.mutation_list())
    journal = replay(journal_path)
    assert all(journal.of(i).terminated for i in planned)
    assert journal.runs >= 2  # at least one killed run had started changing things

    record_proxy(proxy, items_checked=len(before))
    FIGURES["crash: SIGKILLs survived"] += kills
    FIGURES["crash: runs that finished before the kill"] += finished_early
    FIGURES["crash: instances terminated"] += len(planned)
    FIGURES["crash: terminated before the final run"] += done_before_final
    FIGURES["crash: apply runs recorded in the journal"] += journal.runs
    FIGURES["crash: torn journal lines"] += journal.torn_lines
    FIGURES["crash: TerminateInstances re-sent for a terminated instance"] += sum(
        ledger.resent_terminations.values()
    )
    assert kills >= KILLS // 2, "too few kills landed mid-run: the test proves little"
