"""``awsops decommission plan`` against Cloud Custodian's ``c7n-org run --dryrun`` on the
same simulated organisation, with the same decision.

Installs Cloud Custodian (``c7n``) and ``c7n-org`` in their own virtual environment
under ``--work-dir`` (never into awsops' environment; reused by later runs), starts a
private sandbox behind the fault proxy (60 ms latency and EC2's token buckets at their
documented sizes by default), seeds A accounts x R regions x N instances
(``orgfleet.py``; accounts reached by AssumeRole) and runs, each in its own process:

- ``awsops decommission plan --older-than 30d --targets ...``;
- ``c7n-org run --dryrun`` with the policy below and the same accounts and regions.

It prints wall and CPU seconds, peak RSS, and the calls each made as the proxy counted
them (AssumeRole, DescribeInstanceAttribute, all EC2), the ratio awsops / c7n-org, and
whether both chose exactly the same instances. c7n-org is pointed at the sandbox with
``AWS_ENDPOINT_URL`` (botocore reads it for every client, STS included).

    .venv/bin/python benchmarks/peers.py --size 4x3x300
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

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

POLICY = """\
policies:
  - name: ec2-stopped-30d
    resource: ec2
    filters:
      - "State.Name": stopped
      - {type: state-age, days: 30, op: greater-than}
      - "tag:awsops:protect": absent
      - "tag:DoNotDelete": absent
      - "tag:aws:autoscaling:groupName": absent
      - not: [{type: termination-protected}]
"""
PACKAGES = ("c7n", "c7n-org")
# c7n-org runs its targets on this many worker processes (its default: 4 per CPU)
C7N_WORKERS = int(os.environ.get("C7N_ORG_PARALLEL", 4 * (os.cpu_count() or 1)))


def c7n_org(work: Path) -> Path:
    """The ``c7n-org`` executable of the benchmark's own environment (made if needed)."""
    env_dir = work / "c7n-venv"
    exe = env_dir / "bin" / "c7n-org"
    if not exe.exists():
        print(f"installing {', '.join(PACKAGES)} into {env_dir} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *PACKAGES], check=True)
    return exe


def versions(work: Path) -> str:
    py = work / "c7n-venv" / "bin" / "python"
    code = "import importlib.metadata as m; print(*(m.version(p) for p in ('c7n', 'c7n-org', 'boto3')))"
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=False)
    c7n, org, boto3 = (out.stdout.split() + ["?"] * 3)[:3]
    return f"c7n {c7n}, c7n-org {org} (boto3 {boto3})"


def awsops_plan(box: Sandbox, org: Org, concurrency: int | None) -> tuple[Run, set[str]]:
    """``awsops decommission plan`` with ``--concurrency`` (None: its default)."""
    out = box.home / "plan.json"
    cmd = [sys.executable, "-m", "awsops", "decommission", "plan", "--sandbox",
           "--targets", str(targets_file(box, org)), "--older-than", "30d", "-o", str(out)]  # fmt: skip
    if concurrency is not None:
        cmd += ["--concurrency", str(concurrency)]
    run = measure(cmd, box.env)
    chosen: set[str] = set()
    if out.exists():
        plan = json.loads(out.read_text())
        chosen = {i["instance_id"] for t in plan["targets"] for i in t.get("terminate") or []}
    return run, chosen


def c7n_plan(box: Sandbox, org: Org, exe: Path, work: Path) -> tuple[Run, set[str]]:
    policy = box.home / "policy.yml"
    policy.write_text(POLICY)
    output = box.home / "c7n-out"
    # No resource cache: by default c7n-org keeps what it described in ~/.cache/c7n-org
    # for 15 minutes, so a run within 15 minutes of another benchmark run read the
    # other sandbox's instances, and failed on the targets it did (their ids no longer
    # exist). awsops keeps no such cache either.
    cache = box.home / "c7n-cache"
    cache.mkdir(exist_ok=True)
    env = {**box.env, "AWS_ENDPOINT_URL": box.endpoint}
    cmd = [str(exe), "run", "-c", str(targets_file(box, org, "c7n")), "-s", str(output),
           "-u", str(policy), "--dryrun", "--cache-period", "0",
           "--cache-path", str(cache)]  # fmt: skip
    run = measure(cmd, env, cwd=work)
    (work / "c7n-org.log").write_text(run.stderr)  # the whole log, to see why a target failed
    chosen: set[str] = set()
    for found in output.glob("**/resources.json"):
        chosen |= {r["InstanceId"] for r in json.loads(found.read_text())}
    return run, chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="4x3x300", help="accounts x regions x instances")
    ap.add_argument("--faults", default="latency=60ms,bucket=ec2", help="fault proxy spec")
    ap.add_argument(
        "--concurrency", type=int, default=None, help="awsops --concurrency (default: its own)"
    )
    ap.add_argument(
        "--busy-scale",
        type=float,
        default=0.2,
        help="then plan and list again with EC2's buckets at this share (0: skip)",
    )
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=Path.home() / ".cache" / "awsops-bench" / "peers",
        help="where c7n's virtual environment is kept",
    )
    args = ap.parse_args(argv)
    org = parse_org(args.size)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    exe = c7n_org(args.work_dir)
    print(f"peers: {versions(args.work_dir)}")

    with sandbox(args.faults) as box:
        seconds = seed(box, org)
        terminate, attribute_calls = org.expected()
        print(f"seeded {org.label()} ({org.targets} targets) in {seconds:.0f}s; expected: "
              f"{terminate} to terminate, {attribute_calls} DescribeInstanceAttribute")  # fmt: skip
        rows = []
        for name, fn in (
            ("awsops plan", lambda: awsops_plan(box, org, args.concurrency)),
            (f"awsops, {C7N_WORKERS} at once", lambda: awsops_plan(box, org, C7N_WORKERS)),
            ("c7n-org run --dryrun", lambda: c7n_plan(box, org, exe, args.work_dir)),
        ):
            box.reset_proxy()
            run, chosen = fn()
            stats = box.proxy_stats()
            if run.status != 0:
                print(f"{name} failed ({run.status}): {run.stderr.strip()[-800:]}")
            rows.append((name, run, chosen, stats))
        busy = busy_account(box, org, args) if args.busy_scale > 0 else []
    print(
        f"\n{'tool':22} {'wall s':>7} {'cpu s':>6} {'peak MB':>8} {'AssumeRole':>10} "
        f"{'DescribeInstanceAttribute':>25} {'EC2 calls':>9} {'chosen':>6}"
    )
    for name, run, chosen, stats in rows:
        print(
            f"{name:22} {run.seconds:7.1f} {run.cpu:6.2f} {run.peak_mb:8.1f} "
            f"{calls(stats, 'sts:AssumeRole'):10} "
            f"{calls(stats, 'ec2:DescribeInstanceAttribute'):25} {ec2_calls(stats):9} "
            f"{len(chosen):6}"
        )
    _, theirs, their_ids, their_stats = rows[-1]
    print()
    alike = True
    for name, ours, our_ids, our_stats in rows[:-1]:
        same = our_ids == their_ids and len(our_ids) == terminate
        alike = alike and same and ours.status == 0
        print(
            f"{name} / c7n-org: wall {ours.seconds / theirs.seconds:.2f}x, CPU "
            f"{ours.cpu / theirs.cpu:.2f}x, peak RSS {ours.peak_mb / theirs.peak_mb:.2f}x; "
            f"DescribeInstanceAttribute {calls(our_stats, 'ec2:DescribeInstanceAttribute')} vs "
            f"{calls(their_stats, 'ec2:DescribeInstanceAttribute')}; same decision: {same}"
            + (
                ""
                if same
                else f" (only awsops: {len(our_ids - their_ids)}, only c7n-org: "
                f"{len(their_ids - our_ids)})"
            )
        )
    for line in busy:
        print(line)
    busy_ok = all("WRONG" not in line for line in busy)
    return 0 if alike and busy_ok and theirs.status == 0 else 1


def busy_account(box: Sandbox, org: Org, args: argparse.Namespace) -> list[str]:
    """awsops plan and inventory again with the proxy's EC2 buckets shrunk to
    ``--busy-scale`` (a busy account): how many EC2 requests the buckets refused, and
    whether the results are still complete."""
    box.set_faults(f"{args.faults},bucket_scale={args.busy_scale}")
    lines = [f"\nbusy account: EC2 buckets at {args.busy_scale:.0%} of their documented size"]
    terminate, _ = org.expected()
    inventory = [sys.executable, "-m", "awsops", "inventory", "ec2-instances", "--sandbox",
                 "--targets", str(targets_file(box, org)), "--output", "jsonl",
                 ]  # fmt: skip
    if args.concurrency is not None:
        inventory += ["--concurrency", str(args.concurrency)]
    for name in ("awsops plan", "awsops inventory"):
        box.reset_proxy()
        if name == "awsops plan":
            run, chosen = awsops_plan(box, org, args.concurrency)
            ok = len(chosen) == terminate
        else:
            run = measure(inventory, box.env)
            m = re.search(r"(\d+) items,", run.stderr)
            ok = bool(m) and int(m.group(1)) == org.targets * org.per_target
        stats = box.proxy_stats()
        refused, total = refusals(stats), ec2_calls(stats)
        lines.append(
            f"  {name:18} {run.seconds:6.1f} s, refused {refused} of {total} EC2 requests "
            f"({refused / max(total, 1):.1%}); results {'complete' if ok and run.status == 0 else 'WRONG'}"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
