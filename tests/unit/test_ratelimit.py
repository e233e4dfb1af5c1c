"""The EC2 rate limiter: bucket arithmetic on an injected clock, the request classes,
slowing down on refusals, and many threads sharing one bucket."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awsops.ratelimit import (
    MIN_RATE,
    RECOVERY_STEP,
    SLOWDOWN_COOLDOWN,
    BucketShape,
    Demand,
    RateLimiter,
    TokenBucket,
    ec2_demands,
)


class FakeClock:
    """A clock the test moves; ``sleep`` moves it too (and records how long)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


DESCRIBE = ec2_demands("DescribeInstanceAttribute", {"InstanceId": "i-1"})


def test_share_sets_burst_and_refill() -> None:
    bucket = TokenBucket(BucketShape(100, 20), share=0.5, now=0.0)
    assert (bucket.capacity, bucket.rate, bucket.tokens) == (50.0, 10.0, 50.0)


def test_burst_then_waits_at_the_refill_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(share=0.5, clock=clock, sleep=clock.sleep)
    waits = [limiter.reserve("111111111111", "us-east-1", DESCRIBE) for _ in range(53)]
    assert waits[:50] == [0.0] * 50  # half of the documented burst of 100
    assert waits[50:] == pytest.approx([0.1, 0.2, 0.3])  # debt repaid at 10/s (half of 20)
    clock.now += 0.3  # the debt is repaid
    assert limiter.reserve("111111111111", "us-east-1", DESCRIBE) == pytest.approx(0.1)


def test_refill_never_exceeds_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(share=0.5, clock=clock, sleep=clock.sleep)
    for _ in range(50):
        limiter.reserve("a", "r", DESCRIBE)
    clock.now += 3600.0
    waits = [limiter.reserve("a", "r", DESCRIBE) for _ in range(51)]
    assert waits[:50] == [0.0] * 50 and waits[50] == pytest.approx(0.1)


def test_acquire_sleeps_for_the_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(share=0.01, clock=clock, sleep=clock.sleep)  # burst 1, 0.2/s
    limiter.acquire("a", "r", DESCRIBE)
    limiter.acquire("a", "r", DESCRIBE)
    assert clock.slept == pytest.approx([5.0])
    stats = limiter.stats()
    assert (stats.requests, stats.waited, stats.wait_seconds) == (2, 1, pytest.approx(5.0))


def test_buckets_are_per_account_region_and_api() -> None:
    clock = FakeClock()
    limiter = RateLimiter(share=0.01, clock=clock, sleep=clock.sleep)
    other_api = ec2_demands("DescribeVolumes", {"Filters": [{"Name": "x", "Values": ["y"]}]})
    assert limiter.reserve("a", "us-east-1", DESCRIBE) == 0.0
    assert limiter.reserve("b", "us-east-1", DESCRIBE) == 0.0
    assert limiter.reserve("a", "eu-west-1", DESCRIBE) == 0.0
    assert limiter.reserve("a", "us-east-1", other_api) == 0.0
    assert limiter.reserve("a", "us-east-1", DESCRIBE) > 0.0
    assert limiter.stats().buckets == 4


def test_request_classes() -> None:
    def shape(op: str, **params: object) -> list[tuple[str, float, float, float]]:
        return [
            (d.bucket, d.shape.capacity, d.shape.refill, d.tokens) for d in ec2_demands(op, params)
        ]

    assert shape("DescribeInstances") == [("DescribeInstances:unfiltered", 50, 10, 1)]
    assert shape("DescribeInstances", MaxResults=1000) == [("DescribeInstances", 100, 20, 1)]
    assert shape("DescribeInstances", InstanceIds=["i-1"]) == [("DescribeInstances", 100, 20, 1)]
    assert shape("DescribeInstances", Filters=[{"Name": "a"}]) == [
        ("DescribeInstances", 100, 20, 1)
    ]
    assert shape("DescribeRegions") == [("DescribeRegions", 100, 20, 1)]
    assert shape("StopInstances", InstanceIds=["i-1"]) == [("StopInstances", 50, 5, 1)]
    assert shape("CreateSnapshot", VolumeId="v") == [("CreateSnapshot", 100, 5, 1)]
    assert shape("CreateSnapshots") == [("CreateSnapshots", 100, 5, 1)]
    assert shape("CreateTags") == [("CreateTags", 100, 10, 1)]
    assert shape("TerminateInstances", InstanceIds=["i-1", "i-2", "i-3"]) == [
        ("TerminateInstances", 100, 5, 1),
        ("TerminateInstances:resources", 1000, 20, 3),
    ]


def test_terminate_waits_for_its_resource_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(share=0.5, clock=clock, sleep=clock.sleep)  # resources: 500, 10/s
    batch = ec2_demands("TerminateInstances", {"InstanceIds": [f"i-{n}" for n in range(100)]})
    waits = [limiter.reserve("a", "r", batch) for _ in range(6)]
    assert waits[:5] == [0.0] * 5  # 500 instances in the resource burst
    assert waits[5] == pytest.approx(10.0)  # 100 more at 10 per second


def test_refusals_slow_down_once_per_cooldown_to_a_floor_and_answers_recover() -> None:
    clock = FakeClock()
    limiter = RateLimiter(share=0.5, clock=clock, sleep=clock.sleep)
    limiter.reserve("a", "r", DESCRIBE)
    bucket = limiter._buckets[("a", "r", "DescribeInstanceAttribute")]
    limiter.feedback("a", "r", DESCRIBE, throttled=True)
    assert bucket.factor == 0.5 and bucket.tokens == 0.0
    assert bucket.current_rate == 5.0 and bucket.current_capacity == 25.0
    limiter.feedback("a", "r", DESCRIBE, throttled=True)  # same burst of refusals
    assert bucket.factor == 0.5
    for _ in range(10):
        clock.now += SLOWDOWN_COOLDOWN
        limiter.feedback("a", "r", DESCRIBE, throttled=True)
    assert bucket.current_rate == pytest.approx(MIN_RATE)  # never slower than the floor
    assert limiter.reserve("a", "r", DESCRIBE) == pytest.approx(1.0 / MIN_RATE)
    factor = bucket.factor
    limiter.feedback("a", "r", DESCRIBE, throttled=False)
    assert bucket.factor == pytest.approx(factor + RECOVERY_STEP)
    for _ in range(1000):
        limiter.feedback("a", "r", DESCRIBE, throttled=False)
    assert bucket.factor == 1.0
    stats = limiter.stats()
    assert stats.throttled == 12 and stats.slowdowns == 11


def test_bad_share_is_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(share=0)


def _replay(starts: list[float], capacity: float, rate: float) -> float:
    """The lowest level a bucket of ``capacity`` and ``rate`` reaches if one request
    starts at each time: negative means the starts exceeded the bucket."""
    tokens, last, lowest = capacity, starts[0], capacity
    for at in starts:
        tokens = min(capacity, tokens + (at - last) * rate) - 1
        last = at
        lowest = min(lowest, tokens)
    return lowest


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads switch as often as the interpreter can, so races show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_many_threads_sharing_one_bucket_never_exceed_it(busy_switching: None) -> None:
    """32 threads, 40 requests each, on a clock that moves as the threads ask for it:
    each request starts when its wait is over; replayed in order, the starts never
    take more than the bucket holds."""
    lock = threading.Lock()
    state = {"now": 0.0}
    seen = threading.local()

    def clock() -> float:
        with lock:
            state["now"] += 0.001  # time passes as the threads call
            seen.now = state["now"]
            return state["now"]

    limiter = RateLimiter(share=0.1, clock=clock, sleep=lambda s: None)  # burst 10, 2/s
    starts: list[float] = []
    barrier = threading.Barrier(32)

    def worker() -> None:
        barrier.wait()
        for _ in range(40):
            wait = limiter.acquire("a", "r", DESCRIBE)
            with lock:
                starts.append(seen.now + wait)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(starts) == 1280
    starts.sort()
    assert _replay(starts, capacity=10.0, rate=2.0) >= -1e-6
    # and the bucket was used, not left idle: the last start is as early as it can be
    assert starts[-1] == pytest.approx((1280 - 10) / 2.0, rel=0.01)


def test_demand_tokens_larger_than_the_burst_still_pass() -> None:
    clock = FakeClock()
    limiter = RateLimiter(share=0.5, clock=clock, sleep=clock.sleep)
    big = (Demand("X:resources", BucketShape(10, 1), tokens=8.0),)  # burst 5 at 50%
    assert limiter.reserve("a", "r", big) == pytest.approx(6.0)  # 3 short, at 0.5/s


STEPS = st.lists(
    st.tuples(
        st.integers(0, 40),  # which account
        st.sampled_from(["reserve", "throttled", "answered"]),
        st.sampled_from([0.0, 0.01, 0.3, 1.0, 4.0, 30.0]),  # seconds before it
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(STEPS, st.sampled_from([0.02, 0.2, 0.5, 1.0]))
def test_dropping_idle_buckets_changes_no_wait(
    steps: list[tuple[int, str, float]], share: float
) -> None:
    """A limiter that drops idle buckets whenever it can answers every request exactly as
    one that keeps them all, refusals and slow-downs included."""
    clock = FakeClock()
    sweeping = RateLimiter(share=share, clock=clock, sleep=clock.sleep, sweep_at=1)
    keeping = RateLimiter(share=share, clock=clock, sleep=clock.sleep, sweep_at=10**9)
    demands = ec2_demands("TerminateInstances", {"InstanceIds": ["i-1", "i-2", "i-3"]})
    for n, (account, op, pause) in enumerate(steps):
        clock.now += pause
        for limiter in (sweeping, keeping):  # a new account each time makes the sweep run
            limiter.reserve(f"new-{n}", "r", DESCRIBE)
        if op == "reserve":
            assert sweeping.reserve(str(account), "r", demands) == keeping.reserve(
                str(account), "r", demands
            )
        else:
            for limiter in (sweeping, keeping):
                limiter.feedback(str(account), "r", demands, op == "throttled")
    a, b = sweeping.stats(), keeping.stats()
    assert (a.requests, a.waited, a.throttled, a.slowdowns) == (
        b.requests,
        b.waited,
        b.throttled,
        b.slowdowns,
    )
    assert a.wait_seconds == pytest.approx(b.wait_seconds)
    assert a.buckets <= b.buckets


def test_an_organisation_s_buckets_do_not_pile_up() -> None:
    """Targets one after another, each using its buckets for a few seconds: the buckets
    held stay near those of the targets in flight, while a bucket still in debt or slowed
    down is kept."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep, sweep_at=8)
    limiter.feedback("slow", "r", DESCRIBE, throttled=True)
    for _ in range(200):
        limiter.reserve("busy", "r", DESCRIBE)  # in debt: 15 s to repay at half rate
    busy = ("busy", "r", "DescribeInstanceAttribute")
    for n in range(5000):
        clock.now += 0.5
        limiter.acquire(f"acct-{n}", "r", DESCRIBE)
        assert limiter.stats().buckets <= 2 * 8
        if n == 200:
            assert busy not in limiter._buckets  # repaid long ago: dropped
        if n == 20:
            assert busy in limiter._buckets  # 10 s later, still in debt
    assert limiter.stats().requests == 5200
    assert ("slow", "r", "DescribeInstanceAttribute") in limiter._buckets
    kept = limiter._buckets[("slow", "r", "DescribeInstanceAttribute")]
    assert kept.factor < 1.0
