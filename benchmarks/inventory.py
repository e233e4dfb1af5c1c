"""Benchmark ``awsops inventory ec2-instances`` against the plain ways of doing it.

Starts a private sandbox (moto server on 127.0.0.1, in a temporary AWSOPS_HOME), seeds
N instances per region, then lists them all three ways, each in its own process:

- ``awsops inventory ec2-instances --regions ...`` (JSON lines to /dev/null)
- a plain sequential boto3 paginator loop over the regions (JSON lines to /dev/null)
- the AWS CLI, ``aws ec2 describe-instances --region R`` once per region, if ``aws``
  is installed (else reported as skipped)

and reports wall time, API calls and peak memory (ru_maxrss of the process, from
``os.wait4``), with ratios against the boto3 loop measured in the same run. API calls
of the AWS CLI are counted in a separate, untimed ``--debug`` run.

Nothing here reaches AWS: every process gets the sandbox endpoint and dummy credentials.

    .venv/bin/python benchmarks/inventory.py --instances 3000 --regions us-east-1,eu-west-1
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from orgfleet import measure

BASELINE = r"""
import json, sys, boto3
endpoint, regions = sys.argv[1], sys.argv[2].split(",")
calls = items = 0
def count(**_):
    global calls
    calls += 1
out = sys.stdout
for region in regions:
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
    ec2.meta.events.register("before-call.ec2.DescribeInstances", count)
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                out.write(json.dumps(instance, default=str) + "\n")
                items += 1
print(f"{items} items {calls} calls", file=sys.stderr)
"""


@dataclass
class Measure:
    """One tool's figures (``calls``/``items`` None when not measured)."""

    tool: str
    seconds: float
    peak_mb: float
    calls: int | None
    items: int | None
    note: str = ""


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str, int]:
    """Run ``cmd`` with stdout to /dev/null; wall seconds, peak RSS MB, stderr, status."""
    run = measure(cmd, env)
    return run.seconds, run.peak_mb, run.stderr, run.status


def seed(endpoint: str, regions: list[str], per_region: int, per_reservation: int) -> None:
    import boto3

    def one_region(region: str) -> None:
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
        left = per_region
        while left > 0:
            n = min(per_reservation, left)
            ec2.run_instances(
                ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=n, MaxCount=n
            )
            left -= n

    with ThreadPoolExecutor(len(regions)) as pool:
        list(pool.map(one_region, regions))


def aws_cli() -> str | None:
    """The ``aws`` executable if it runs, else None."""
    exe = shutil.which("aws")
    if exe is None:
        return None
    try:
        ok = subprocess.run([exe, "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return exe if ok else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=3000, help="instances per region")
    ap.add_argument("--regions", default="us-east-1,eu-west-1")
    ap.add_argument("--per-reservation", type=int, default=1, help="instances per RunInstances")
    ap.add_argument("--concurrency", type=int, default=8, help="awsops --concurrency")
    args = ap.parse_args(argv)
    regions = [r for r in args.regions.split(",") if r]

    home = tempfile.mkdtemp(prefix="awsops-bench-")
    env = {
        **os.environ,
        "AWSOPS_HOME": home,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(Path(home) / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(Path(home) / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": regions[0],
        "AWS_DEFAULT_REGION": regions[0],
    }
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS", "AWSOPS"))})
    from awsops.sandbox import manager

    state = manager.up()
    endpoint = state.endpoint
    env["AWS_ENDPOINT_URL"] = endpoint
    try:
        total = args.instances * len(regions)
        t0 = time.perf_counter()
        seed(endpoint, regions, args.instances, args.per_reservation)
        print(
            f"seeded {total} instances ({args.instances} per region in {', '.join(regions)}, "
            f"{args.per_reservation} per reservation) in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        results: list[Measure] = []

        cmd = [sys.executable, "-m", "awsops", "inventory", "ec2-instances", "--sandbox"]
        cmd += ["--regions", ",".join(regions), "--output", "jsonl"]
        cmd += ["--concurrency", str(args.concurrency)]
        secs, mb, err, rc = run_measured(cmd, env)
        m = re.search(r"(\d+) items, (\d+) pages, (\d+) API calls", err)
        if rc != 0 or not m:
            raise SystemExit(f"awsops failed ({rc}): {err.strip()}")
        results.append(Measure("awsops inventory", secs, mb, int(m.group(3)), int(m.group(1))))

        secs, mb, err, rc = run_measured(
            [sys.executable, "-c", BASELINE, endpoint, ",".join(regions)], env
        )
        m = re.search(r"(\d+) items (\d+) calls", err)
        if rc != 0 or not m:
            raise SystemExit(f"boto3 loop failed ({rc}): {err.strip()}")
        results.append(Measure("boto3 paginator loop", secs, mb, int(m.group(2)), int(m.group(1))))

        exe = aws_cli()
        if exe is None:
            results.append(Measure("aws ec2 describe-instances", 0, 0, None, None, "skipped"))
        else:
            secs = peak = 0.0
            calls = 0
            for region in regions:
                base = [exe, "ec2", "describe-instances", "--region", region]
                base += ["--endpoint-url", endpoint, "--output", "json"]
                s, mb, err, rc = run_measured(base, env)
                if rc != 0:
                    raise SystemExit(f"aws cli failed ({rc}): {err.strip()[-300:]}")
                secs += s
                peak = max(peak, mb)
                _, _, debug, _ = run_measured([*base, "--debug"], env)
                calls += len(
                    re.findall(r"Making request for OperationModel\(name=DescribeInstances", debug)
                )
            results.append(
                Measure("aws ec2 describe-instances", secs, peak, calls, None, "one run per region")
            )
    finally:
        manager.down()
        shutil.rmtree(home, ignore_errors=True)

    base = results[1]
    print()
    print(
        f"{'tool':28} {'wall s':>8} {'API calls':>10} {'peak MB':>8} {'items':>7}   ratios vs boto3 (time / calls / memory)"
    )
    for r in results:
        if r.note == "skipped":
            print(f"{r.tool:28} skipped (the AWS CLI is not installed)")
            continue
        calls = "-" if r.calls is None else str(r.calls)
        items = "-" if r.items is None else str(r.items)
        call_ratio = f"{r.calls / base.calls:.2f}" if r.calls and base.calls else "-"
        print(
            f"{r.tool:28} {r.seconds:8.2f} {calls:>10} {r.peak_mb:8.1f} {items:>7}   "
            f"{r.seconds / base.seconds:.2f} / {call_ratio} / {r.peak_mb / base.peak_mb:.2f}"
            + (f"   ({r.note})" if r.note else "")
        )
    if results[0].items != total or base.items != total:
        print(f"MISMATCH: expected {total} items", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
