"""Inventory, plan and apply of a large fleet while EC2 throttles: time, calls, faults.

Starts a private sandbox (moto server on 127.0.0.1, in a temporary AWSOPS_HOME) and the
fault proxy in front of it, seeds the demo fleet straight into moto (``--instances``,
spread over ``--regions``), then runs ``awsops --sandbox ...`` through the proxy, each
command in its own process:

- ``inventory ec2-instances`` of every region;
- ``decommission plan --older-than 30d`` of every region;
- ``decommission apply PLAN --yes`` of that plan.

It does so twice on fleets seeded alike: first without faults (the baseline the ratios
are against, measured in the same run; ``--no-baseline`` skips it), then under the
chosen faults: by default a steady 30% random throttle (the storm CI ran at 2,000
instances until it took half an hour), or with ``--token-buckets SCALE`` EC2's request
token buckets per account, region and action at SCALE times their size and refill,
plus a 5% random throttle; ``--faults`` takes any fault-proxy spec.

For each phase it prints wall seconds, calls sent and answered, faults injected by kind
and the throttled mutating calls. It checks the storm suite's invariants
(``tests/reliability/test_storm.py``): every instance listed once; the plan chooses
exactly the long-stopped, unprotected instances and changes nothing; every planned
instance is terminated exactly once, after a completed snapshot of each of its deletable
volumes, and nothing else is touched; exact DescribeInstanceAttribute, CreateSnapshot(s)
and TerminateInstances counts; calls sent within 3 per call answered. It exits 1 if one
fails. Nothing here reaches AWS.

    .venv/bin/python benchmarks/storm.py --instances 2000 --token-buckets 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The checks are the storm suite's own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from tests.reliability.conftest import Proxied

PHASES = ("inventory", "plan", "apply")
MUTATING = ("ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:TerminateInstances")


@dataclass
class Moto:
    """The moto server, reached directly (seeding and the truth never go through the
    proxy); what the suite's ``Proxied`` handles need of the test fixture ``Aws``."""

    endpoint: str

    @property
    def server_url(self) -> str:
        return self.endpoint

    def session(self, region: str) -> Any:
        from awsops.config import ClientSettings
        from awsops.session import SessionFactory

        settings = ClientSettings(endpoint_url=self.endpoint, max_attempts=3)
        factory = SessionFactory(
            region=region, settings=settings, static_credentials=("testing", "testing")
        )
        return factory.session(region)


@dataclass
class Phase:
    case: str
    name: str
    seconds: float
    stats: dict[str, Any]


@dataclass
class Run:
    """One case's phases and the invariants it checked (description, held)."""

    case: str
    phases: dict[str, Phase] = field(default_factory=dict)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, what: str, held: Callable[[], object]) -> None:
        """Record whether ``held()`` is true; an AssertionError from it is a failure."""
        try:
            ok = bool(held())
        except AssertionError as exc:
            what, ok = f"{what}: {str(exc)[:300]}", False
        self.checks.append((f"{self.case}: {what}", ok))


def awsops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "awsops", "--sandbox", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def timed(
    run: Run, proxied: Proxied, name: str, step: Callable[[], subprocess.CompletedProcess[str]]
) -> subprocess.CompletedProcess[str]:
    proxied.proxy.stats.reset()
    started = time.monotonic()
    done = step()
    seconds = time.monotonic() - started
    run.phases[name] = Phase(run.case, name, seconds, proxied.proxy.stats.snapshot())
    print(f"  {run.case} / {name}: {seconds:.1f}s, exit {done.returncode}", flush=True)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    run.check(f"{name} exits 0", lambda: done.returncode == 0)
    return done


def one_case(
    case: str,
    spec: str,
    proxied: Proxied,
    env: dict[str, str],
    regions: list[str],
    per_region: int,
    batch_size: int,
    work: Path,
) -> Run:
    """Seed a fresh fleet, then list, plan and apply it under ``spec``."""
    from tests.reliability.apply_world import (
        assert_exactly_decommissioned,
        expected_choice,
        planned,
        seed,
        truth,
    )
    from tests.reliability.storm_checks import apply_calls, bounded, plan_calls

    from awsops.sandbox import manager

    run = Run(case)
    manager.reset(proxied.aws.endpoint)
    started = time.monotonic()
    fleet = seed(proxied, regions, per_region)
    print(f"  {case} / seed: {len(fleet)} instances in {time.monotonic() - started:.1f}s")
    proxied.proxy.set_spec(spec)
    where = ",".join(regions)

    listed = timed(
        run,
        proxied,
        "inventory",
        lambda: awsops(env, "inventory", "ec2-instances", "--regions", where, "--output", "jsonl"),
    )
    ids = [json.loads(line)["instance_id"] for line in listed.stdout.splitlines() if line]
    run.check("every instance listed once", lambda: sorted(ids) == sorted(fleet))

    plan = work / f"plan-{case}.json"
    timed(
        run,
        proxied,
        "plan",
        lambda: awsops(
            env, "decommission", "plan", "--older-than", "30d", "--regions", where, "-o", str(plan)
        ),
    )
    chosen = planned(json.loads(plan.read_text())) if plan.exists() else set()
    snap = run.phases["plan"].stats
    run.check(
        "plan chooses exactly the expected instances", lambda: chosen == expected_choice(fleet)
    )
    run.check("no mutating call at plan", lambda: not proxied.proxy.stats.mutation_list())
    for action, n in plan_calls(fleet).items():
        run.check(f"{action} x {n} at plan", lambda a=action, n=n: snap["forwarded"].get(a) == n)

    args = ["decommission", "apply", str(plan), "--yes", "--batch-size", str(batch_size)]
    args += ["--snapshot-delay", "0", "--terminate-delay", "0", "--output", "json"]
    timed(run, proxied, "apply", lambda: awsops(env, *args))
    snap = run.phases["apply"].stats
    records = proxied.proxy.stats.mutation_list()
    run.check(
        "planned instances terminated once each after completed snapshots, nothing else touched",
        lambda: assert_exactly_decommissioned(proxied, regions, fleet, chosen, records),
    )
    after = truth(proxied, regions)
    run.check(
        "planned instances terminated", lambda: {after[i].state for i in chosen} <= {"terminated"}
    )
    for action, n in apply_calls(fleet, chosen, batch_size).items():
        run.check(
            f"{action} x {n} at apply", lambda a=action, n=n: snap["forwarded"].get(a, 0) == n
        )
    for name in PHASES:
        stats = run.phases[name].stats
        run.check(f"calls sent within 3 per answered, {name}", lambda s=stats: bounded(s))
    return run


def report(runs: list[Run]) -> None:
    from tests.reliability.storm_checks import throttled

    base = next((r for r in runs if r.case == "baseline"), None)
    print()
    print(
        f"{'case':<10} {'phase':<10} {'wall s':>8} {'ratio':>7} {'sent':>7} {'answered':>9}"
        "   faults by kind; throttled CreateSnapshot / CreateSnapshots / TerminateInstances"
    )
    for run in runs:
        for name in PHASES:
            p = run.phases.get(name)
            if p is None:
                continue
            ratio = "-"
            if base is not None and name in base.phases and base.phases[name].seconds:
                ratio = f"{p.seconds / base.phases[name].seconds:.2f}"
            faults = " ".join(f"{k}={v}" for k, v in sorted(p.stats["faults"].items())) or "none"
            mutating = " / ".join(str(throttled(p.stats, a)) for a in MUTATING)
            answered = sum(p.stats["forwarded"].values())
            print(
                f"{run.case:<10} {name:<10} {p.seconds:>8.1f} {ratio:>7} "
                f"{p.stats['total_calls']:>7} {answered:>9}   {faults}; {mutating}"
            )
    print("ratio: wall time against the same phase without faults")
    print()
    for run in runs:
        for what, ok in run.checks:
            print(f"{'ok' if ok else 'FAILED':<7} {what}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=2000, help="instances in all")
    ap.add_argument("--regions", default="us-east-1", help="comma-separated regions")
    ap.add_argument("--faults", default="throttle=0.3,seed=4", help="fault-proxy spec")
    ap.add_argument(
        "--token-buckets",
        type=float,
        metavar="SCALE",
        help="instead of --faults: bucket=ec2,bucket_scale=SCALE,throttle=0.05",
    )
    ap.add_argument("--batch-size", type=int, default=50, help="apply --batch-size")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run without faults")
    args = ap.parse_args(argv)
    regions = [r for r in args.regions.split(",") if r]
    per_region = args.instances // len(regions)
    if per_region < 1 or per_region * len(regions) != args.instances:
        ap.error("--instances must be a positive multiple of the number of regions")
    spec = args.faults
    if args.token_buckets is not None:
        spec = f"bucket=ec2,bucket_scale={args.token_buckets:g},throttle=0.05,seed=4"

    home = tempfile.mkdtemp(prefix="awsops-bench-")
    env = {
        **os.environ,
        "AWSOPS_HOME": home,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.path.join(home, "config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": regions[0],
        "AWS_REGION": regions[0],
    }
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
        os.environ.pop(var, None)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS", "AWSOPS"))})
    from tests.reliability.conftest import Proxied, write_proxy_home

    from awsops.sandbox import manager
    from awsops.sandbox.faults import FaultProxy

    print(
        f"{args.instances} instances ({per_region} per region in {', '.join(regions)}), "
        f"faults {spec}, batches of {args.batch_size}",
        flush=True,
    )
    state = manager.up()
    runs: list[Run] = []
    try:
        with FaultProxy(state.server_url) as proxy:
            moto = Moto(state.server_url)
            proxied = Proxied(proxy, moto)  # type: ignore[arg-type]
            write_proxy_home(Path(home), moto, proxy)  # type: ignore[arg-type]
            cases = [] if args.no_baseline else [("baseline", "")]
            for case, faults in [*cases, ("storm", spec)]:
                runs.append(
                    one_case(
                        case,
                        faults,
                        proxied,
                        env,
                        regions,
                        per_region,
                        args.batch_size,
                        Path(home),
                    )
                )
    finally:
        manager.down()
        shutil.rmtree(home, ignore_errors=True)
    report(runs)
    return 0 if all(ok for run in runs for _, ok in run.checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
