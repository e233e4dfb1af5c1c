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

# Runs awsops with botocore's response parsing timed (thread CPU), to tell the CPU spent
# parsing answers from the rest.
PARSE_TIMER = r"""
import atexit, runpy, sys, threading, time
import botocore.parsers as parsers
spent, lock, parse = [0.0], threading.Lock(), parsers.ResponseParser.parse
def timed(self, response, shape):
    start = time.thread_time()
    try:
        return parse(self, response, shape)
    finally:
        with lock:
            spent[0] += time.thread_time() - start
parsers.ResponseParser.parse = timed
atexit.register(lambda: sys.stderr.write("\nparse_cpu_s=%.3f\n" % spent[0]))
sys.argv = ["awsops", *sys.argv[1:]]
runpy.run_module("awsops", run_name="__main__", alter_sys=True)
"""
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
    def parse_cpu(self) -> float:
        m = re.search(r"parse_cpu_s=([\d.]+)", self.run.stderr)
        return float(m.group(1)) if m else float("nan")

    @property
    def ok(self) -> bool:
        return self.run.status == 0 and self.result == self.expected


def command(tool: str, box: Sandbox, org: Org, concurrency: int) -> list[str]:
    targets = str(targets_file(box, org))
    base = [sys.executable, "-c", PARSE_TIMER]
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
        f"{'parse s':>7} {'peak MB':>8} {'AssumeRole':>10} {'EC2 calls':>9} {'refused':>7}  result"
    )
    for f in figures:
        print(
            f"{f.tool:10} {f.org.label():>10} {f.org.targets:7} {f.run.seconds:7.1f} "
            f"{f.run.cpu:6.2f} {f.parse_cpu:7.2f} {f.run.peak_mb:8.1f} {f.assume_role:10} {f.ec2:9} "
            f"{f.refused:7}  {f.result}/{f.expected} {'ok' if f.ok else 'WRONG'}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", default="10x6x3", help="accounts x regions x instances")
    ap.add_argument("--big", default="100x6x3", help="same regions and instances, more accounts")
    ap.add_argument("--faults", default="latency=60ms,bucket=ec2", help="fault proxy spec")
    ap.add_argument("--concurrency", type=int, default=16, help="awsops --concurrency")
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
            added_targets = big.targets - small.targets
            per_target_ms = 1000 * (b.run.cpu - s.run.cpu) / added_targets
            parse_ms = 1000 * (b.parse_cpu - s.parse_cpu) / added_targets
            print(
                f"  {tool:10} peak RSS {b.run.peak_mb / s.run.peak_mb:.2f}x, wall "
                f"{b.run.seconds / s.run.seconds:.2f}x, CPU {b.run.cpu / s.run.cpu:.2f}x, "
                f"{per_target_ms:.1f} ms CPU per added target ({per_target_ms - parse_ms:.1f} "
                f"beyond parsing); peak RSS "
                f"{s.run.peak_mb / baseline.peak_mb:.2f}x / {b.run.peak_mb / baseline.peak_mb:.2f}x "
                "the baseline"
            )
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
