"""CPU of the plan command's work per target, this checkout against another revision,
on one seeded sandbox.

CPU seconds per target vary with what else runs on the machine; comparing two versions
run alternately, on the same fleet, in the same minutes, is steadier. Each version runs
in its own process (``--base`` is exported from git into a temporary directory and put
first on ``PYTHONPATH``): it builds the plan of every target (``build_plan``), writes the
signed plan file and renders the review (at 200 columns, as when piped), ``--repeat``
times, after one warm-up target; the least CPU of its runs is kept. Parsing is included.

    .venv/bin/python benchmarks/plan_cpu.py --base main --size 10x6x3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from orgfleet import parse_org, sandbox, seed, targets_file

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import io, json, sys, time
from rich.console import Console
from awsops.config import ClientSettings, load_targets_file
from awsops.decommission.model import PlanCriteria
from awsops.decommission.planfile import write_plan
from awsops.decommission.planner import build_plan
from awsops.decommission.render import render_review
from awsops.decommission.review import review
from awsops.session import SessionFactory

endpoint, tfile, out, repeat, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
settings = ClientSettings(endpoint_url=endpoint)
targets = [t for spec in load_targets_file(tfile) for t in spec.targets()]
criteria = PlanCriteria(older_than_days=30, protect_tags=("awsops:protect", "DoNotDelete"))

def command(subset):
    factory = SessionFactory(
        region="us-east-1", settings=settings, static_credentials=("testing", "testing")
    )
    plan = build_plan(factory, subset, criteria, concurrency=concurrency)
    write_plan(plan, out)
    render_review(review(plan), Console(file=io.StringIO(), width=200))

command(targets[:1])
cpu = []
for _ in range(repeat):
    start = time.process_time()
    command(targets)
    cpu.append(time.process_time() - start)
print(json.dumps({"cpu": cpu, "targets": len(targets)}))
"""


def export(ref: str, into: Path) -> Path:
    """The ``src`` tree of git revision ``ref``, under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--size", default="10x6x3", help="accounts x regions x instances")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the two")
    ap.add_argument("--repeat", type=int, default=3, help="runs per process")
    ap.add_argument("--concurrency", type=int, default=16, help="targets at once")
    args = ap.parse_args(argv)
    org = parse_org(args.size)
    with tempfile.TemporaryDirectory(prefix="awsops-base-") as tmp, sandbox("bucket=ec2") as box:
        versions = {"this checkout": None, args.base: str(export(args.base, Path(tmp)))}
        seed(box, org)
        tfile = str(targets_file(box, org))
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, path in versions.items():
                env = dict(box.env)
                env.pop("PYTHONPATH", None)
                if path:
                    env["PYTHONPATH"] = path
                cmd = [sys.executable, "-c", CHILD, box.endpoint, tfile,
                       str(box.home / "plan.json"), str(args.repeat), str(args.concurrency)]  # fmt: skip
                run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if run.returncode:
                    print(run.stderr[-2000:])
                    return 1
                cpu = json.loads(run.stdout.strip().splitlines()[-1])["cpu"]
                per_target = [1000 * c / org.targets for c in cpu]
                print(f"{name:>16}: " + ", ".join(f"{ms:.1f}" for ms in per_target) + " ms/target")
                best[name] = min(best.get(name, float("inf")), *per_target)
        mine, theirs = best["this checkout"], best[args.base]
        print(f"\nleast CPU per target: this checkout {mine:.1f} ms, {args.base} {theirs:.1f} "
              f"ms ({mine / theirs:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
