"""Cost per target of ``awsops inventory`` and ``awsops decommission plan`` at two sizes
of a simulated organisation.

Starts a private sandbox behind the fault proxy (``--faults``: latency and EC2's token
buckets at their documented sizes by default), seeds the small organisation (accounts
reached by AssumeRole, the instance mix of ``orgfleet.py``), measures both commands,
grows the fleet to the big size (the small one is its first accounts) and measures
again. Each command runs in its own process; for each it prints wall time, CPU seconds,
peak RSS, AssumeRole and EC2 calls as the proxy counted them, and the ratios big/small
and the CPU per added target. The baseline measured in the same run is one process that
imports boto3 and builds one EC2 client (the floor any boto3 tool pays).

``--busy-scale`` then runs both commands on the small organisation again with the
proxy's EC2 buckets shrunk to that share (a busy account) and reports how many EC2
requests the buckets refused, and whether the results are still complete.

    .venv/bin/python benchmarks/org_scale.py --small 10x6x3 --big 100x6x3
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass

from orgfleet import (
    Org,
    Run,
    Sandbox,
    calls,
    ec2_calls,
    measure,
    parse_org,
    refusals,
    sandbox,
    seed,
    targets_file,
)

BASELINE = (
    "import boto3; boto3.Session(region_name='us-east-1').client('ec2', "
    "endpoint_url='http://127.0.0.1:9')"
)


@dataclass
class Figure:
    tool: str
    org: Org
    run: Run
    assume_role: int
    ec2: int
    attribute_calls: int
    refused: int
    result: int  # items listed, or instances the plan terminates
    expected: int

    @property
    def ok(self) -> bool:
        return self.run.status == 0 and self.result == self.expected


def command(tool: str, box: Sandbox, org: Org, concurrency: int) -> list[str]:
    targets = str(targets_file(box, org))
    base = [sys.executable, "-m", "awsops"]
    if tool == "inventory":
        return [*base, "inventory", "ec2-instances", "--sandbox", "--targets", targets,
                "--output", "jsonl", "--concurrency", str(concurrency)]  # fmt: skip
    out = str(box.home / f"plan-{org.label()}.json")
    return [*base, "decommission", "plan", "--sandbox", "--targets", targets,
            "--older-than", "30d", "-o", out, "--concurrency", str(concurrency)]  # fmt: skip


def result_of(tool: str, box: Sandbox, org: Org, run: Run) -> int:
    if tool == "inventory":
        m = re.search(r"(\d+) items,", run.stderr)
        return int(m.group(1)) if m else -1
    path = box.home / f"plan-{org.label()}.json"
    if not path.exists():
        return -1
    plan = json.loads(path.read_text())
    path.unlink()
    return int(plan["summary"]["terminate"]) if "summary" in plan else -1


def run_tool(tool: str, box: Sandbox, org: Org, concurrency: int) -> Figure:
    box.reset_proxy()
    run = measure(command(tool, box, org, concurrency), box.env)
    stats = box.proxy_stats()
    terminate, _ = org.expected()
    expected = org.targets * org.per_target if tool == "inventory" else terminate
    figure = Figure(
        tool,
        org,
        run,
        calls(stats, "sts:AssumeRole"),
        ec2_calls(stats),
        calls(stats, "ec2:DescribeInstanceAttribute"),
        refusals(stats),
        result_of(tool, box, org, run),
        expected,
    )
    if run.status != 0:
        print(f"{tool} {org.label()} failed ({run.status}): {run.stderr.strip()[-600:]}")
    return figure


def show(figures: list[Figure]) -> None:
    print(
        f"\n{'tool':10} {'size':>10} {'targets':>7} {'wall s':>7} {'cpu s':>6} "
        f"{'peak MB':>8} {'AssumeRole':>10} {'EC2 calls':>9} {'refused':>7}  result"
    )
    for f in figures:
        print(
            f"{f.tool:10} {f.org.label():>10} {f.org.targets:7} {f.run.seconds:7.1f} "
            f"{f.run.cpu:6.2f} {f.run.peak_mb:8.1f} {f.assume_role:10} {f.ec2:9} "
            f"{f.refused:7}  {f.result}/{f.expected} {'ok' if f.ok else 'WRONG'}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", default="10x6x3", help="accounts x regions x instances")
    ap.add_argument("--big", default="100x6x3", help="same regions and instances, more accounts")
    ap.add_argument("--faults", default="latency=60ms,bucket=ec2", help="fault proxy spec")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--busy-scale", type=float, default=0.2, help="0 to skip the busy run")
    args = ap.parse_args(argv)
    small, big = parse_org(args.small), parse_org(args.big)
    if (big.regions, big.per_target) != (
        small.regions,
        small.per_target,
    ) or big.accounts < small.accounts:
        raise SystemExit("--big must have the regions and instances of --small and more accounts")

    with sandbox(args.faults) as box:
        baseline = measure([sys.executable, "-c", BASELINE], box.env)
        print(
            f"baseline (boto3 + one EC2 client): {baseline.peak_mb:.1f} MB, {baseline.cpu:.2f} s CPU"
        )
        figures: list[Figure] = []
        seconds = seed(box, small)
        print(f"seeded {small.label()} ({small.targets} targets) in {seconds:.0f}s", flush=True)
        for tool in ("inventory", "plan"):
            figures.append(run_tool(tool, box, small, args.concurrency))
        added = [p for p in big.pairs() if p not in set(small.pairs())]
        seconds = seed(box, big, added)
        print(f"seeded {big.label()} ({big.targets} targets) in {seconds:.0f}s", flush=True)
        for tool in ("inventory", "plan"):
            figures.append(run_tool(tool, box, big, args.concurrency))
        show(figures)
        print("\nbig / small, and per added target:")
        for tool in ("inventory", "plan"):
            s, b = (f for f in figures if f.tool == tool)
            per_target_ms = 1000 * (b.run.cpu - s.run.cpu) / (big.targets - small.targets)
            print(
                f"  {tool:10} peak RSS {b.run.peak_mb / s.run.peak_mb:.2f}x, wall "
                f"{b.run.seconds / s.run.seconds:.2f}x, CPU {b.run.cpu / s.run.cpu:.2f}x, "
                f"{per_target_ms:.1f} ms CPU per added target; peak RSS "
                f"{s.run.peak_mb / baseline.peak_mb:.2f}x / {b.run.peak_mb / baseline.peak_mb:.2f}x "
                "the baseline"
            )
        if args.busy_scale > 0:
            box.set_faults(f"{args.faults},bucket_scale={args.busy_scale}")
            busy = [run_tool(tool, box, small, args.concurrency) for tool in ("inventory", "plan")]
            print(f"\nbusy account: EC2 buckets at {args.busy_scale:.0%} of their documented size")
            show(busy)
            for f in busy:
                share = f.refused / f.ec2 if f.ec2 else 0.0
                print(f"  {f.tool:10} refused {f.refused} of {f.ec2} EC2 requests ({share:.1%})")
            figures += busy
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
