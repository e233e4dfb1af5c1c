"""The decommission safety invariants, on generated worlds where bugs live.

Each example builds a world in the moto server: two accounts (the second reached by
AssumeRole from a targets file) and two regions; instances running or stopped long
ago or lately, with stop reasons EC2 writes and ones it does not date, protected by a
tag (any case) or by the API, in Auto Scaling groups (tagged, or known only to the
Auto Scaling API), excluded by id or tag, in accounts a plan or apply allow or deny.
It plans (in process, straight against moto), then someone else changes things (an
instance started, restarted, tagged, protected, given a volume change, attached to a
group, terminated), then apply runs in process through the fault proxy, with apply's
own policy differing from the plan's, snapshots that stay pending (within apply's
wait, or past it) or end in ``error`` (the sandbox server's backup faults), throttles,
5xx and connection resets at the proxy, and sometimes base credentials that now reach
the other account.

Judged from the proxy's ledger, the states it served, the server's backup witness and
moto itself, never from awsops' report or journal:

- an instance is sent to TerminateInstances only if it is eligible under the plan's
  criteria and apply's policy at apply time, and unchanged since the plan;
- each of its DeleteOnTermination volumes had a snapshot that the server completed,
  and that the caller was shown completed, before its TerminateInstances was sent;
- every eligible instance whose backups completed is terminated, and nothing else
  changes state;
- nothing is done twice: one snapshot per volume, no TerminateInstances to an
  instance already shutting down; no other mutating call;
- a plan whose credentials now reach another account changes nothing anywhere.

Profiles: ``ci`` (default, 100 derandomized examples) and ``deep`` (1,000, random), see
:mod:`tests.hypothesis_profiles`.

For speed, in this process only: botocore's retry backoff is scaled down; the look-ups
after a lost CreateSnapshot answer wait 10 ms (moto is consistent at once, EC2 is not);
and apply's clients use botocore's standard retry mode (the adaptive limiter only adds
waits). None of these changes what awsops decides or sends. Examples share the moto
server without a reset (see :class:`tests.property_fleet.Sandbox`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.retries.standard
import pytest
from hypothesis import example, given
from tests.hypothesis_profiles import profile_name, profile_seed, profile_settings
from tests.ledger_checks import (
    CREATE_SNAPSHOTS,
    TERMINATING,
    Fate,
    Ledger,
    backup_violations,
    witness,
)
from tests.property_fleet import (
    BACKUPS,
    EXAMPLES,
    REGIONS,
    Sandbox,
    Seeded,
    Truth,
    World,
    clean_up,
    eligible_at_apply,
    plan_criteria,
    planned,
    refused,
    seed,
    truth,
    worlds,
    write_targets_file,
)
from tests.property_fleet import apply_policy as policy_of
from tests.property_fleet import drift as drift_world
from tests.property_fleet import spec as eligible
from tests.property_fleet import world as example_world

from awsops.config import ClientSettings, Target
from awsops.decommission import createonce
from awsops.decommission.executor import ApplyOptions, apply_plan
from awsops.decommission.model import EndpointKind, Plan, PlanEndpoint
from awsops.decommission.planfile import load_plan, write_plan
from awsops.decommission.planner import build_plan
from awsops.errors import PlanError
from awsops.sandbox.faults import CallInfo, FaultProxy
from awsops.sandbox.manager import control, reset
from awsops.session import SessionFactory

# What the examples of this run reached, for the check that they searched widely.
REACHED: Counter[str] = Counter()


@dataclass
class Env:
    server_url: str
    proxy: FaultProxy
    targets: list[Target]
    work: Path
    box: Sandbox


@pytest.fixture(scope="module")
def env(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("property")
    targets = write_targets_file(work / "targets.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            botocore.retries.standard.ExponentialBackoff,
            "_DEFAULT_BACKOFF_CONFIG",
            {"throttling_base_scale": 0.02, "non_throttling_base_scale": 0.01},
        )
        mp.setattr(createonce, "SETTLE_DELAY", 0.01)
        reset(moto_server)
        try:
            with FaultProxy(moto_server) as proxy:
                yield Env(moto_server, proxy, targets, work, Sandbox(moto_server, moto_server))
        finally:
            reset(moto_server)


def examples(worlds: Sequence[World]) -> Callable[[Any], Any]:
    """Hypothesis's ``@example`` for each of ``worlds``."""

    def add(test: Any) -> Any:
        for w in reversed(worlds):
            test = example(world=w)(test)
        return test

    return add


def _apply_factory(env: Env, credentials: tuple[str, str]) -> SessionFactory:
    return SessionFactory(
        region=REGIONS[0],
        settings=ClientSettings(endpoint_url=env.proxy.url, retry_mode="standard"),
        static_credentials=credentials,
    )


def _options(world: World, ids: list[str]) -> ApplyOptions:
    _server_delay, poll, polls = BACKUPS[world.backups]
    return ApplyOptions(
        batch_size=world.batch_size,
        max_percent=None,
        snapshot_delay=poll,
        snapshot_max_attempts=polls,
        terminate_delay=0.0,
        terminate_max_attempts=40,
        concurrency=4,
        backup="snapshots",
        **policy_of(world, ids),
    )


def _note_reach(
    world: World,
    ids: list[str],
    eligible: set[str],
    led: Ledger,
    before: dict[str, Truth],
    fates: dict[str, Fate],
) -> None:
    """Count what this example exercised, from what happened (not from the spec)."""
    REACHED["examples"] += 1
    REACHED["instances"] += len(ids)
    if refused(world):
        REACHED["refused: credentials reach another account"] += 1
    if world.faults and led.records:
        REACHED["faults while changing things"] += 1
    for iid, spec in zip(ids, world.instances, strict=True):
        if planned(spec, world) and spec.drift == "api-protected":
            REACHED["planned, then protected through the API"] += 1
        elif planned(spec, world) and spec.drift:
            REACHED["planned, then drifted"] += 1
        elif planned(spec, world) and iid not in eligible and not refused(world):
            REACHED["planned, then refused by apply's own policy"] += 1
        if iid not in eligible or not before[iid].deletable:
            continue
        calls = [r for v in before[iid].deletable for r in led.snapshot_calls.get(v, [])]
        if any(r.action == CREATE_SNAPSHOTS for r in calls):
            REACHED["eligible, one CreateSnapshots for all its volumes"] += 1
            if any(not r.delivered for r in calls if r.action == CREATE_SNAPSHOTS):
                REACHED["eligible, the answer to its CreateSnapshots lost"] += 1
        states = {
            fates[s].final_state for v in before[iid].deletable for s in led.snapshots.get(v, [])
        }
        if "error" in states:
            REACHED["eligible, a backup failed"] += 1
        elif world.backups == "stuck":
            REACHED["eligible, backups pending past apply's wait"] += 1
        elif world.backups == "pending" and iid in led.effective:
            REACHED["eligible, backups pending, then terminated"] += 1
    REACHED["terminated"] += len(led.effective)


@profile_settings()
@profile_seed()
@given(world=worlds())
@examples(EXAMPLES)
def test_only_eligible_instances_are_terminated_after_completed_backups(
    env: Env, world: World
) -> None:
    proxy, box = env.proxy, env.box
    proxy.set_spec("")
    proxy.stats.reset()
    now = dt.datetime.now(dt.timezone.utc)
    seeded = Seeded()
    try:
        seed(box, world, now, seeded)
        _check_world(env, world, seeded, now)
    except BaseException:
        REACHED["failed examples"] += 1
        raise
    finally:
        control(env.server_url, "faults", None, method="DELETE")
        proxy.set_spec("")
        clean_up(box, world, seeded)


def _plan(env: Env, world: World, ids: list[str], now: dt.datetime) -> Plan:
    """Plan, straight against moto, through a signed plan file; it must choose what the
    model chooses."""
    plan = build_plan(
        env.box.factory,
        env.targets,
        plan_criteria(world, ids),
        now=now,
        endpoint=PlanEndpoint(EndpointKind.CUSTOM, env.server_url),
    )
    path = env.work / f"{plan.plan_id}.json"
    write_plan(plan, path)
    plan = load_plan(path)
    chosen = {f.instance_id for _, f in plan.chosen}
    model = {iid for iid, s in zip(ids, world.instances, strict=True) if planned(s, world)}
    assert chosen == model, (
        f"the plan and the model differ on {chosen ^ model}\n{world.describe()}\nids {ids}"
    )
    return plan


def _check_world(env: Env, world: World, seeded: Seeded, now: dt.datetime) -> None:
    proxy, box, ids = env.proxy, env.box, seeded.ids
    credentials = box.other_account_key() if world.switched_credentials else ("testing", "testing")
    plan = _plan(env, world, ids, now)

    drift_world(box, world, seeded)
    before = truth(box, seeded)
    eligible = (
        set()
        if refused(world)
        else {
            iid for iid, s in zip(ids, world.instances, strict=True) if eligible_at_apply(s, world)
        }
    )

    # Apply, through the fault proxy, with the server's backup faults on.
    delay = BACKUPS[world.backups][0]
    control(
        env.server_url,
        "faults",
        {"snapshot_delay": delay, "snapshot_error": world.snapshot_error, "seed": world.seed},
    )
    proxy.set_spec(world.faults)
    options = _options(world, ids)
    journal = env.work / f"{plan.plan_id}.journal.jsonl"
    refusal: PlanError | None = None
    try:
        apply_plan(plan, _apply_factory(env, credentials), options, journal)
    except PlanError as exc:
        if not refused(world):
            raise
        refusal = exc
    finally:
        proxy.set_spec("")
    after = truth(box, seeded)
    led = Ledger.read(proxy.stats.mutation_list())
    fates = witness(control(env.server_url, "backups", None, method="GET"))
    served = proxy.stats.served_states()
    _note_reach(world, ids, eligible, led, before, fates)
    context = f"\n{world.describe()}\nids {ids}"

    # Only eligible instances were ever named in a TerminateInstances call.
    assert set(led.asked) <= eligible, f"asked to terminate {set(led.asked) - eligible}{context}"
    # Each after completed snapshots of all its DeleteOnTermination volumes.
    volumes = {iid: t.deletable for iid, t in before.items()}
    wrong = backup_violations(led, volumes, served, fates)
    assert not wrong, "\n".join(wrong) + context
    # Nothing twice, nothing else.
    assert not led.duplicate_snapshots(), f"{led.duplicate_snapshots()}{context}"
    assert not led.resent, f"TerminateInstances re-sent: {dict(led.resent)}{context}"
    assert not led.other, f"other mutating calls: {led.other}{context}"
    allowed_volumes = {v for iid in eligible for v in before[iid].deletable}
    assert set(led.snapshots) <= allowed_volumes, (
        f"snapshots of {set(led.snapshots) - allowed_volumes}{context}"
    )
    # Exactly the eligible instances whose backups completed are terminated (moto).
    completed = {s for s, f in fates.items() if f.final_state == "completed"}
    backed_up = {
        iid
        for iid in eligible
        if world.backups != "stuck" or not before[iid].deletable
        if all(set(led.snapshots.get(v, [])) & completed for v in before[iid].deletable)
    }
    began = {
        iid
        for iid, t in after.items()
        if t.state in TERMINATING and before[iid].state not in TERMINATING
    }
    assert began == backed_up, (
        f"terminated {began - backed_up or '-'}, not terminated {backed_up - began or '-'}{context}"
    )
    for iid, t in after.items():
        if iid not in began:
            assert t.state == before[iid].state, f"{iid}: {before[iid].state} -> {t.state}{context}"
    if refused(world):  # nothing changed anywhere (ledger), and apply said why
        assert not led.records, f"a refused plan changed things: {led.records}{context}"
        assert refusal is not None and "reach account" in str(refusal), f"{refusal}{context}"


# Each kind of example the property test is meant to search; the derandomized CI
# profile must reach every one of them (by the hundred examples it runs).
SCENARIOS = (
    "refused: credentials reach another account",
    "faults while changing things",
    "planned, then protected through the API",
    "planned, then drifted",
    "planned, then refused by apply's own policy",
    "eligible, a backup failed",
    "eligible, backups pending past apply's wait",
    "eligible, backups pending, then terminated",
    "eligible, one CreateSnapshots for all its volumes",
    "terminated",
)


def test_the_examples_searched_every_scenario() -> None:
    """Runs after the property test (same module, same process): the examples it
    generated reached each scenario at least once."""
    if not REACHED["examples"] or REACHED["failed examples"]:
        pytest.skip("the property test did not run in this process, or failed")
    missing = [s for s in SCENARIOS if not REACHED[s]]
    assert not missing, f"profile {profile_name()}: never reached {missing}: {dict(REACHED)}"
    assert REACHED["examples"] >= 100 or profile_name() != "ci", dict(REACHED)


def _apply_explicit(
    env: Env, world: World, server_faults: dict[str, Any], tap: Any
) -> tuple[Ledger, dict[str, Truth], Seeded]:
    """Seed ``world``, plan it, apply it with the server's backup faults and a proxy
    tap, clean up; the ledger, the truth before apply and the ids."""
    proxy, box = env.proxy, env.box
    proxy.stats.reset()
    now = dt.datetime.now(dt.timezone.utc)
    seeded = Seeded()
    try:
        seed(box, world, now, seeded)
        plan = _plan(env, world, seeded.ids, now)
        before = truth(box, seeded)
        control(env.server_url, "faults", {**server_faults, "seed": world.seed})
        proxy.taps.append(tap)
        apply_plan(
            plan,
            _apply_factory(env, ("testing", "testing")),
            _options(world, seeded.ids),
            env.work / f"{plan.plan_id}.journal.jsonl",
        )
    finally:
        proxy.taps.clear()
        control(env.server_url, "faults", None, method="DELETE")
        proxy.set_spec("")
        clean_up(box, world, seeded)
    return Ledger.read(proxy.stats.mutation_list()), before, seeded


def test_a_failed_snapshot_does_not_cut_short_the_wait_for_the_others(env: Env) -> None:
    """Two eligible instances in one target, one volume each to back up. The first
    snapshot fails (the server's backup fault), the second completes 0.35 s later (the
    proxy slows each CreateSnapshot by 0.3 s). The second instance's backup completed,
    so it must be terminated; the first, kept. (Seen before ``backup.wait_each``: the
    waiter stopped at the first failure and the pending one was reported failed.)"""
    world = example_world(
        eligible(), eligible(), backups="pending", snapshot_error=1.0, seed=5, batch_size=1
    )

    def only_the_first_fails(info: CallInfo, status: int, body: bytes) -> None:
        if info.action in ("CreateSnapshot", "CreateSnapshots") and status < 300:
            control(env.server_url, "faults", {"snapshot_error": 0.0})

    env.proxy.set_spec("latency=300ms,only=CreateSnapshot")
    led, before, seeded = _apply_explicit(
        env, world, {"snapshot_delay": 0.6, "snapshot_error": 1.0}, only_the_first_fails
    )
    fates = witness(control(env.server_url, "backups", None, method="GET"))
    final = {
        iid: {fates[s].final_state for v in before[iid].deletable for s in led.snapshots[v]}
        for iid in seeded.ids
    }
    assert sorted(map(sorted, final.values())) == [["completed"], ["error"]], final
    done = {i for i, states in final.items() if states == {"completed"}}
    assert set(led.effective) == done, f"backups {final}, terminated {set(led.effective)}"


@pytest.mark.parametrize(
    ("call", "data_dot"), [("CreateSnapshot", False), ("CreateSnapshots", True)]
)
def test_a_lost_answer_to_a_snapshot_that_failed_leads_to_no_second_one(
    env: Env, call: str, data_dot: bool
) -> None:
    """One eligible instance: one volume to back up (CreateSnapshot), or two that
    termination deletes (one CreateSnapshots). The server fails every snapshot at once;
    the proxy cuts the answer to the first create call (a reset: EC2 made the snapshots,
    the caller never heard). Exactly one call may reach EC2 for each volume, and the
    instance is kept (its backup failed)."""
    world = example_world(eligible(1, data_dot=data_dot), snapshot_error=1.0, seed=3, batch_size=1)
    proxy = env.proxy

    def cut_only_the_first(info: CallInfo, status: int, body: bytes) -> None:
        # After the DryRun probe, cut the next create call's answer, and only that.
        if info.action == call:
            proxy.set_spec(f"reset=1.0,only={call}" if info.dry_run else "")

    led, before, seeded = _apply_explicit(
        env, world, {"snapshot_delay": 0.001, "snapshot_error": 1.0}, cut_only_the_first
    )
    (iid,) = seeded.ids
    assert len(before[iid].deletable) == (2 if data_dot else 1)
    assert not led.effective, "terminated although its backup failed"
    for vol in before[iid].deletable:
        calls = led.snapshot_calls[vol]
        assert [c.action for c in calls] == [f"ec2:{call}"], f"{len(calls)} calls for {vol}"
        assert not calls[0].delivered, "the first answer was meant to be cut"
