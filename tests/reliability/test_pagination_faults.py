"""Pagination through the fault proxy: every item exactly once, within a bounded number
of calls, whatever mix of throttling, 5xx errors, resets and latency the proxy injects.

The clients use awsops' production retry settings (adaptive mode, 10 attempts). The
instances are seeded once for the module: every case only reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from awsops.paginate import CallCounter, PageStats, iter_items
from tests.helpers import invoke
from tests.reliability.conftest import Proxied, record_proxy, scaled

RESERVATIONS = scaled(24)
PER_RESERVATION = 5
PAGE = 2  # reservations per DescribeInstances page (moto pages by reservation)

FAULT_MIXES = [
    pytest.param("throttle=0.3,seed=1", id="throttle-30%"),
    pytest.param("error5xx=0.25,seed=2", id="5xx-25%"),
    pytest.param("reset=0.2,seed=3", id="reset-20%"),
    pytest.param("throttle=0.2,error5xx=0.05,reset=0.02,latency=5ms,seed=4", id="mixed"),
    pytest.param("bucket=ec2,bucket_scale=0.05,seed=5", id="token-bucket"),
]


@pytest.fixture(scope="module")
def seeded(module_proxied: Proxied) -> set[str]:
    """RESERVATIONS reservations of PER_RESERVATION instances, straight into moto."""
    ec2 = module_proxied.direct("ec2")
    ids: set[str] = set()
    for _ in range(RESERVATIONS):
        resp = ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=PER_RESERVATION, MaxCount=PER_RESERVATION
        )
        ids.update(i["InstanceId"] for i in resp["Instances"])
    return ids


@pytest.fixture
def proxied(module_proxied: Proxied) -> Proxied:
    """The module's proxy, with its counters zeroed and no faults yet."""
    module_proxied.proxy.set_spec("")
    module_proxied.proxy.stats.reset()
    return module_proxied


@pytest.mark.parametrize("faults", FAULT_MIXES)
def test_describe_instances_every_item_once(
    seeded: set[str], proxied: Proxied, faults: str
) -> None:
    proxied.proxy.set_spec(faults)
    ec2 = proxied.client("ec2")
    counter = CallCounter()
    counter.attach(ec2)
    stats = PageStats()
    got = [
        i["InstanceId"]
        for i in iter_items(
            ec2, "describe_instances", "Reservations[].Instances[]", page_size=PAGE, stats=stats
        )
    ]
    snap = proxied.proxy.stats.snapshot()
    record_proxy(proxied.proxy, items_checked=len(got))

    assert len(got) == len(seeded) and set(got) == seeded  # nothing lost, nothing twice
    pages = -(-RESERVATIONS // PAGE)
    assert stats.pages == pages
    assert snap["total_faults"] > 0, "the mix injected nothing: the test proves nothing"
    # Every HTTP attempt awsops counted reached the proxy, and no more.
    assert counter.total_attempts == snap["calls"]["ec2:DescribeInstances"]
    # Bounded: with at most 30% of calls failing, three attempts per page is plenty.
    assert snap["calls"]["ec2:DescribeInstances"] <= 3 * pages + 5
    assert snap["forwarded"]["ec2:DescribeInstances"] >= pages


def test_s3_listing_under_slowdown_and_resets(proxied: Proxied) -> None:
    s3 = proxied.direct("s3")
    s3.create_bucket(Bucket="reliability-objects")
    keys = {f"logs/{i:05d}.txt" for i in range(scaled(300))}
    for key in keys:
        s3.put_object(Bucket="reliability-objects", Key=key, Body=b"x")
    proxied.proxy.set_spec("throttle=0.25,error5xx=0.05,reset=0.05,seed=11")
    got = list(
        iter_items(
            proxied.client("s3"),
            "list_objects_v2",
            "Contents[].Key",
            {"Bucket": "reliability-objects"},
            page_size=20,
        )
    )
    snap = proxied.proxy.stats.snapshot()
    record_proxy(proxied.proxy, items_checked=len(got))
    assert len(got) == len(keys) and set(got) == keys
    assert snap["faults_by_action"]["s3:ListObjectsV2"].get("throttle", 0) > 0
    pages = -(-len(keys) // 20)
    assert snap["calls"]["s3:ListObjectsV2"] <= 3 * pages + 5


def test_sts_throttling_is_retried(proxied: Proxied) -> None:
    proxied.proxy.set_spec("throttle=0.3,seed=13")  # 4 refusals before the 6 answers
    sts = proxied.client("sts")
    accounts = {sts.get_caller_identity()["Account"] for _ in range(6)}
    snap = proxied.proxy.stats.snapshot()
    record_proxy(proxied.proxy, items_checked=6)
    assert accounts == {"123456789012"}
    assert snap["faults_by_action"]["sts:GetCallerIdentity"]["throttle"] > 0
    assert snap["forwarded"]["sts:GetCallerIdentity"] == 6


def test_truncated_bodies_are_retried(seeded: set[str], proxied: Proxied) -> None:
    proxied.proxy.set_spec("truncate=0.2,seed=3")
    got = [
        i["InstanceId"]
        for i in iter_items(
            proxied.client("ec2"),
            "describe_instances",
            "Reservations[].Instances[]",
            page_size=PAGE,
        )
    ]
    record_proxy(proxied.proxy, items_checked=len(got))
    assert sorted(got) == sorted(seeded)


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param("error5xx=0.2,reset=0.15,seed=21", id="5xx-and-resets"),
        pytest.param("throttle=0.1,error5xx=0.1,reset=0.1,latency=5ms,seed=22", id="mixed"),
    ],
)
def test_inventory_cli_loses_and_repeats_nothing(
    seeded: set[str],
    proxied: Proxied,
    module_proxy_home: Path,
    faults: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxied.proxy.set_spec(faults)
    result = invoke(
        [
            "--sandbox",
            "inventory",
            "ec2-instances",
            "--regions",
            "us-east-1",
            "--page-size",
            "5",
            "--output",
            "jsonl",
        ],
        capsys,
    )
    snap = proxied.proxy.stats.snapshot()
    assert result.code == 0, result.stderr
    ids = [json.loads(line)["instance_id"] for line in result.stdout.splitlines() if line]
    record_proxy(proxied.proxy, items_checked=len(ids))
    assert len(ids) == len(set(ids)) == len(seeded) and set(ids) == seeded
    assert snap["total_faults"] > 0
