"""A simulated organisation in a private sandbox, and how to measure a tool against it.

Shared by ``org_scale.py`` and ``peers.py`` (run them, not this). The sandbox is the
moto server on 127.0.0.1 in a temporary AWSOPS_HOME, behind the fault proxy (latency,
EC2's token buckets); accounts are reached by AssumeRole, which moto maps to the role's
account. Each target (account, region) gets the same mix of instances, in this order,
so even a target of three instances has a candidate and a protected one:

    old, running, old+termination-protected, recent, old, running, tag awsops:protect,
    old, running, recent, old, running, tag DoNotDelete, old-45d, running, recent, old,
    running, tag aws:autoscaling:groupName, old+termination-protected

("old" is stopped 200 days ago, "recent" 5 days ago.) Instances to terminate when
planning at 30 days: every old and old-45d one; DescribeInstanceAttribute is needed for
those and for the termination-protected ones.

Nothing here reaches AWS: every process gets the sandbox endpoint and dummy credentials.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AMI = "ami-12c6146b"
REGIONS = (
    "us-east-1",
    "eu-west-1",
    "ap-southeast-2",
    "us-west-2",
    "eu-central-1",
    "ap-northeast-1",
)
MIX = (
    "old", "running", "old-tp", "recent", "old", "running", "tag-protect", "old", "running",
    "recent", "old", "running", "tag-dnd", "old-45", "running", "recent", "old", "running",
    "tag-asg", "old-tp",
)  # fmt: skip
STOPPED_DAYS = {"old": 200, "old-tp": 200, "old-45": 45, "recent": 5}
STOPPED_DAYS.update({"tag-protect": 200, "tag-dnd": 200, "tag-asg": 200})
TAGS = {"tag-protect": "awsops:protect", "tag-dnd": "DoNotDelete"}
TAGS["tag-asg"] = "aws:autoscaling:groupName"
TERMINATE = frozenset({"old", "old-45"})
NEEDS_ATTRIBUTE = frozenset({"old", "old-45", "old-tp"})


def account_ids(count: int) -> list[str]:
    return [f"{100000000000 + n:012d}" for n in range(1, count + 1)]


def role_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:role/ops"


@dataclass(frozen=True)
class Org:
    """A fleet's shape: accounts x regions, instances per target."""

    accounts: int
    regions: int
    per_target: int

    @property
    def targets(self) -> int:
        return self.accounts * self.regions

    def pairs(self) -> list[tuple[str, str]]:
        return [(a, r) for a in account_ids(self.accounts) for r in REGIONS[: self.regions]]

    def expected(self) -> tuple[int, int]:
        """(instances to terminate, DescribeInstanceAttribute calls) over the fleet."""
        kinds = [MIX[i % len(MIX)] for i in range(self.per_target)]
        per = (sum(k in TERMINATE for k in kinds), sum(k in NEEDS_ATTRIBUTE for k in kinds))
        return per[0] * self.targets, per[1] * self.targets

    def label(self) -> str:
        return f"{self.accounts}x{self.regions}x{self.per_target}"


def parse_org(text: str) -> Org:
    """``AxRxN``: accounts, regions (at most 6), instances per target."""
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text.strip())
    if not m or not 1 <= int(m.group(2)) <= len(REGIONS):
        raise SystemExit(f"bad size {text!r}: expected AxRxN with 1 <= R <= {len(REGIONS)}")
    return Org(int(m.group(1)), int(m.group(2)), int(m.group(3)))


@dataclass
class Sandbox:
    home: Path
    env: dict[str, str]
    server_url: str
    endpoint: str  # the fault proxy

    def proxy_stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoint}/_faults/stats", timeout=30) as resp:
            return dict(json.loads(resp.read()))

    def reset_proxy(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/_faults/reset", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=30).read()

    def set_faults(self, spec: str) -> None:
        req = urllib.request.Request(
            f"{self.endpoint}/_faults/spec", data=spec.encode(), method="POST"
        )
        urllib.request.urlopen(req, timeout=30).read()


@contextmanager
def sandbox(faults: str) -> Iterator[Sandbox]:
    """A private sandbox behind the fault proxy (``faults``: its spec, e.g.
    ``latency=60ms,bucket=ec2``); everything is stopped and removed after."""
    home = Path(tempfile.mkdtemp(prefix="awsops-org-"))
    env = {
        **os.environ,
        "AWSOPS_HOME": str(home),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": REGIONS[0],
        "AWS_DEFAULT_REGION": REGIONS[0],
    }
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    os.environ.clear()
    os.environ.update(env)
    from awsops.sandbox import manager

    state = manager.up(faults=faults)
    try:
        yield Sandbox(home, env, state.server_url, state.endpoint)
    finally:
        manager.down()
        shutil.rmtree(home, ignore_errors=True)


def seed(
    box: Sandbox, org: Org, pairs: list[tuple[str, str]] | None = None, workers: int = 4
) -> float:
    """Create the fleet (or only its ``pairs``) straight in moto, not through the proxy;
    seconds taken."""
    from awsops.clients import make_client
    from awsops.config import ClientSettings
    from awsops.sandbox.manager import control
    from awsops.session import AssumeRoleSpec, SessionFactory

    settings = ClientSettings(endpoint_url=box.server_url, max_attempts=5)
    factory = SessionFactory(region=REGIONS[0], settings=settings)
    now = dt.datetime.now(dt.timezone.utc)

    def one(pair: tuple[str, str]) -> None:
        account, region = pair
        ec2 = make_client(
            factory.assume(AssumeRoleSpec(role_arn(account))), "ec2", region, settings
        )
        ids: list[str] = []
        while len(ids) < org.per_target:
            n = min(500, org.per_target - len(ids))
            resp = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=n, MaxCount=n)
            ids += [i["InstanceId"] for i in resp["Instances"]]
        kinds = {iid: MIX[i % len(MIX)] for i, iid in enumerate(ids)}
        for kind, key in TAGS.items():
            tagged = [i for i, k in kinds.items() if k == kind]
            if tagged:
                ec2.create_tags(Resources=tagged, Tags=[{"Key": key, "Value": "yes"}])
        stopped = [i for i, k in kinds.items() if k != "running"]
        for start in range(0, len(stopped), 500):
            ec2.stop_instances(InstanceIds=stopped[start : start + 500])
        for iid in (i for i, k in kinds.items() if k == "old-tp"):
            ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": True})
        backdates = []
        for iid in stopped:
            at = now - dt.timedelta(days=STOPPED_DAYS[kinds[iid]])
            reason = f"User initiated ({at.strftime('%Y-%m-%d %H:%M:%S')} GMT)"
            backdates.append({"id": iid, "reason": reason})
        payload = {"account_id": account, "region": region, "instances": backdates}
        control(box.server_url, "backdate", payload)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, org.pairs() if pairs is None else pairs))
    return time.perf_counter() - started


def targets_file(box: Sandbox, org: Org, kind: str = "awsops") -> Path:
    """The organisation as an awsops targets file or a c7n-org accounts file."""
    regions = list(REGIONS[: org.regions])
    accounts = []
    for account in account_ids(org.accounts):
        entry: dict[str, Any] = {"account_id": account, "name": f"acct-{account[-4:]}"}
        entry["regions"] = regions
        entry["role_arn" if kind == "awsops" else "role"] = role_arn(account)
        accounts.append(entry)
    path = box.home / f"{kind}-{org.label()}.json"
    path.write_text(json.dumps({"accounts": accounts}))  # JSON is YAML
    return path


# Linux keeps a process's peak RSS across fork and exec, so a child forked from this
# (large) process would report at least our own size. A tiny launcher forks instead.
LAUNCHER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("\nmeasured maxrss_kb=%d cpu_s=%.3f\n" % (usage.ru_maxrss, usage.ru_utime + usage.ru_stime))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Run:
    """One measured process: wall and CPU seconds, peak RSS, its stderr and status."""

    seconds: float
    cpu: float
    peak_mb: float
    stderr: str
    status: int


def measure(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Run:
    """Run ``cmd`` (stdout to /dev/null) and measure it; the process tree's CPU counts
    (children reaped by it included, as ``wait4`` reports them)."""
    with tempfile.TemporaryFile("w+") as err, open(os.devnull, "w") as null:
        started = time.perf_counter()
        status = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, *cmd],
            stdout=null,
            stderr=err,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        ).returncode
        seconds = time.perf_counter() - started
        err.seek(0)
        text = err.read()
    m = re.search(r"measured maxrss_kb=(\d+) cpu_s=([\d.]+)\s*$", text)
    if not m:
        return Run(seconds, float("nan"), float("nan"), text, status)
    return Run(seconds, float(m.group(2)), int(m.group(1)) / 1024.0, text[: m.start()], status)


def calls(stats: dict[str, Any], name: str) -> int:
    return int(stats.get("calls", {}).get(name, 0))


def refusals(stats: dict[str, Any]) -> int:
    """EC2 requests the proxy's token buckets refused."""
    by_action = stats.get("faults_by_action", {})
    return sum(int(c.get("bucket", 0)) for a, c in by_action.items() if a.startswith("ec2:"))


def ec2_calls(stats: dict[str, Any]) -> int:
    return sum(int(n) for a, n in stats.get("calls", {}).items() if a.startswith("ec2:"))
