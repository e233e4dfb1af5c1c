"""How fast one awsops EC2 client gets work done while EC2 throttles it.

Starts a private sandbox (moto server on 127.0.0.1, in a temporary AWSOPS_HOME) and the
fault proxy in front of it, launches one instance, then calls DescribeInstanceAttribute
on it (the planner's per-candidate call) for a fixed time per case, through clients made
by ``awsops.clients.make_client`` with a given retry mode and number of threads. Cases:

- no faults (the baseline the ratios are against, measured in the same run);
- a steady random throttle (``--throttle``, 0.3 by default: the storm suite's);
- the proxy's EC2 token bucket at a tenth of its size and refill
  (``bucket=ec2,bucket_scale=0.1``), which, like real EC2, refills at a fixed rate.

For each case and retry mode it prints successful calls per second, the calls sent
(throttled ones included) and the ratio to the baseline. Nothing here reaches AWS.

    .venv/bin/python benchmarks/throttle.py --seconds 30
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from dataclasses import dataclass


@dataclass
class Result:
    case: str
    mode: str
    threads: int
    ok: int
    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def measure(
    endpoint: str, instance_id: str, mode: str, threads: int, seconds: float, case: str
) -> tuple[int, float]:
    from awsops.clients import make_client
    from awsops.config import ClientSettings
    from awsops.session import SessionFactory

    settings = ClientSettings(endpoint_url=endpoint, retry_mode=mode)
    factory = SessionFactory(
        region="us-east-1", settings=settings, static_credentials=("testing", "testing")
    )
    client = make_client(factory.session("us-east-1"), "ec2", "us-east-1", settings)
    done = [0] * threads
    started = time.monotonic()

    def work(slot: int) -> None:
        while time.monotonic() - started < seconds:
            client.describe_instance_attribute(
                InstanceId=instance_id, Attribute="disableApiTermination"
            )
            done[slot] += 1

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done), time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="time per case")
    ap.add_argument("--throttle", type=float, default=0.3, help="random throttle share")
    ap.add_argument("--threads", type=int, default=1, help="threads sharing the client")
    ap.add_argument("--modes", default="adaptive,standard", help="botocore retry modes")
    args = ap.parse_args(argv)

    home = tempfile.mkdtemp(prefix="awsops-bench-")
    os.environ.update(
        AWSOPS_HOME=home,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=os.path.join(home, "config"),
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(home, "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
    )
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(var, None)
    from awsops.clients import make_client
    from awsops.config import ClientSettings
    from awsops.sandbox import manager
    from awsops.sandbox.faults import FaultProxy
    from awsops.session import SessionFactory

    state = manager.up()
    results: list[Result] = []
    try:
        with FaultProxy(state.endpoint) as proxy:
            direct = ClientSettings(endpoint_url=state.endpoint)
            factory = SessionFactory(
                region="us-east-1", settings=direct, static_credentials=("testing", "testing")
            )
            ec2 = make_client(factory.session("us-east-1"), "ec2", "us-east-1", direct)
            instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[
                "Instances"
            ][0]["InstanceId"]
            cases = [
                ("no faults", ""),
                (f"throttle {args.throttle:.0%}", f"throttle={args.throttle}"),
                ("EC2 token bucket / 10", "bucket=ec2,bucket_scale=0.1"),
            ]
            for case, spec in cases:
                for mode in [m for m in args.modes.split(",") if m]:
                    proxy.set_spec(spec)
                    proxy.stats.reset()
                    ok, secs = measure(
                        proxy.url, instance_id, mode, args.threads, args.seconds, case
                    )
                    sent = proxy.stats.snapshot()["total_calls"]
                    results.append(Result(case, mode, args.threads, ok, sent, secs))
                    print(f"  {case} / {mode}: {ok} calls answered in {secs:.1f}s", flush=True)
    finally:
        manager.down()

    base = {r.mode: r.rate for r in results if r.case == "no faults"}
    print()
    print(f"{'case':<20} {'retry mode':<10} {'threads':>7} {'ok/s':>8} {'sent':>6} {'ratio':>7}")
    for r in results:
        ratio = r.rate / base[r.mode] if base.get(r.mode) else 0.0
        print(f"{r.case:<20} {r.mode:<10} {r.threads:>7} {r.rate:>8.2f} {r.sent:>6} {ratio:>7.3f}")
    print("ratio: answered calls per second against the same mode with no faults")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
