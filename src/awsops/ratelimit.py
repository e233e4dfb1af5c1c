"""A client-side limiter shaped on EC2's request token buckets, shared by every thread.

EC2 throttles each account, per region, per API: every request takes a token from the
API's bucket, which refills at a fixed rate (the "request token bucket sizes and refill
rates" of the EC2 API reference). TerminateInstances also takes one token per instance
from a resource bucket. Other tools and the console draw on the same buckets, so awsops
uses only a share of each (:data:`DEFAULT_SHARE`, 50%) and waits for a token rather
than being refused.

One :class:`RateLimiter` holds one :class:`TokenBucket` per (account, region, bucket).
:func:`awsops.clients.make_client` attaches the process's limiter
(:func:`default_limiter`) to every EC2 client it builds, through botocore events: before
each HTTP attempt (retries included) the calling thread takes its tokens, waiting if the
bucket is empty; on ``RequestLimitExceeded`` the bucket slows down (half its rate and
burst, at most once per :data:`SLOWDOWN_COOLDOWN` seconds, never under
:data:`MIN_RATE` requests a second) and every answer that is not throttled wins back a
little (:data:`RECOVERY_STEP` of the nominal rate). Waiting is by reservation: a caller
takes its tokens at once, the bucket may go into debt, and the caller sleeps until the
debt is repaid, so any number of threads sharing a bucket start at most ``capacity +
rate * t`` requests in any ``t`` seconds, in the order they asked.

The clock and the sleep are injectable (tests drive the arithmetic without waiting).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SHARE",
    "EC2_ACTION_BUCKETS",
    "EC2_CLASS_BUCKETS",
    "EC2_RESOURCE_BUCKETS",
    "BucketShape",
    "Demand",
    "LimiterStats",
    "RateLimiter",
    "TokenBucket",
    "default_limiter",
    "ec2_demands",
    "set_default_limiter",
]

DEFAULT_SHARE = 0.5
SHARE_ENV = "AWSOPS_EC2_RATE_SHARE"
MAX_SHARE = 100.0  # above 1: an account whose limits AWS raised
SLOWDOWN_COOLDOWN = 1.0  # seconds between two cuts: one burst of refusals is one signal
SLOWDOWN_FACTOR = 0.5
RECOVERY_STEP = 0.002  # of the nominal rate, per answer that was not throttled
MIN_RATE = 1.0  # requests per second: slowing down never goes below this
THROTTLE_CODES = frozenset({"RequestLimitExceeded"})
SWEEP_AT = 1024  # buckets held before idle ones are first dropped

Clock = Callable[[], float]
Sleep = Callable[[float], Any]


@dataclass(frozen=True)
class BucketShape:
    """A token bucket as EC2 documents it: burst ``capacity`` and ``refill`` per second."""

    capacity: float
    refill: float


# Request buckets by class (each API has its own bucket of its class's shape).
EC2_CLASS_BUCKETS: Mapping[str, BucketShape] = {
    "non-mutating": BucketShape(100.0, 20.0),
    "unfiltered": BucketShape(50.0, 10.0),  # unfiltered and unpaginated describes
    "mutating": BucketShape(50.0, 5.0),
}
# APIs whose request bucket has its own documented shape.
EC2_ACTION_BUCKETS: Mapping[str, BucketShape] = {
    "CreateSnapshot": BucketShape(100.0, 5.0),
    "CreateSnapshots": BucketShape(100.0, 5.0),
    "CreateTags": BucketShape(100.0, 10.0),
    "TerminateInstances": BucketShape(100.0, 5.0),
}
# Resource buckets: one token per resource named in the request.
EC2_RESOURCE_BUCKETS: Mapping[str, tuple[str, BucketShape]] = {
    "TerminateInstances": ("InstanceIds", BucketShape(1000.0, 20.0)),
}
# Describes that EC2 meters in the "unfiltered and unpaginated" class when called with
# no filter, no id list and no MaxResults/NextToken.
UNFILTERED_DESCRIBES = frozenset(
    {
        "DescribeInstances",
        "DescribeInstanceStatus",
        "DescribeNetworkInterfaces",
        "DescribeSecurityGroups",
        "DescribeSnapshots",
        "DescribeSpotInstanceRequests",
        "DescribeVolumes",
    }
)
_READ_PREFIXES = ("Describe", "Get", "List", "Search")
_NARROWING = ("Filters", "MaxResults", "NextToken")


@dataclass(frozen=True)
class Demand:
    """Tokens one request takes from one bucket (``bucket`` names it within an account
    and region)."""

    bucket: str
    shape: BucketShape
    tokens: float = 1.0


def _unfiltered(operation: str, params: Mapping[str, Any]) -> bool:
    if operation not in UNFILTERED_DESCRIBES:
        return False
    narrowed = any(params.get(k) for k in _NARROWING)
    return not narrowed and not any(k.endswith("Ids") and v for k, v in params.items())


def ec2_demands(operation: str, params: Mapping[str, Any]) -> tuple[Demand, ...]:
    """The buckets an EC2 request of ``operation`` with API ``params`` draws on."""
    if operation in EC2_ACTION_BUCKETS:
        demands = [Demand(operation, EC2_ACTION_BUCKETS[operation])]
    elif _unfiltered(operation, params):
        demands = [Demand(f"{operation}:unfiltered", EC2_CLASS_BUCKETS["unfiltered"])]
    elif operation.startswith(_READ_PREFIXES):
        demands = [Demand(operation, EC2_CLASS_BUCKETS["non-mutating"])]
    else:
        demands = [Demand(operation, EC2_CLASS_BUCKETS["mutating"])]
    resource = EC2_RESOURCE_BUCKETS.get(operation)
    if resource is not None:
        key, shape = resource
        count = len(params.get(key) or ())
        if count:
            demands.append(Demand(f"{operation}:resources", shape, float(count)))
    return tuple(demands)


class TokenBucket:
    """One bucket: ``share`` of ``shape``, slowed down by refusals. Not locked itself:
    :class:`RateLimiter` serializes access."""

    def __init__(self, shape: BucketShape, share: float, now: float) -> None:
        self.capacity = shape.capacity * share
        self.rate = shape.refill * share
        self.factor = 1.0  # 1 at nominal speed, lower after refusals
        self.tokens = self.capacity
        self.stamp = now
        self.last_cut = float("-inf")

    @property
    def current_rate(self) -> float:
        return self.rate * self.factor

    @property
    def current_capacity(self) -> float:
        return max(1.0, self.capacity * self.factor)

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(
                self.current_capacity, self.tokens + (now - self.stamp) * self.current_rate
            )
            self.stamp = now

    def reserve(self, tokens: float, now: float) -> float:
        """Take ``tokens`` (going into debt if needed); the seconds to wait before the
        request may start."""
        self._refill(now)
        self.tokens -= tokens
        return 0.0 if self.tokens >= 0 else -self.tokens / self.current_rate

    def throttled(self, now: float) -> bool:
        """EC2 refused a request: its bucket is empty. Drop what this one holds and cut
        the rate (once per cooldown); True if it was cut."""
        self._refill(now)
        self.tokens = min(self.tokens, 0.0)
        if now - self.last_cut < SLOWDOWN_COOLDOWN:
            return False
        floor = min(1.0, MIN_RATE / self.rate) if self.rate > 0 else 1.0
        self.factor = max(floor, self.factor * SLOWDOWN_FACTOR)
        self.last_cut = now
        return True

    def idle(self, now: float) -> bool:
        """Full again, at nominal speed, past any cut's cooldown: a new bucket of the
        same shape would behave as this one (more cautiously only for a share so small
        that the burst is under one token)."""
        return (
            self.factor >= 1.0
            and now - self.last_cut >= SLOWDOWN_COOLDOWN
            and self.tokens + max(0.0, now - self.stamp) * self.rate >= self.current_capacity
        )

    def answered(self) -> None:
        """A request got through: win back a little of the nominal rate."""
        if self.factor < 1.0:
            self.factor = min(1.0, self.factor + RECOVERY_STEP)


@dataclass(frozen=True)
class LimiterStats:
    """What a limiter did: requests it let through, how many had to wait and for how
    long in all, refusals (``RequestLimitExceeded``) seen, rate cuts made and the
    buckets held now."""

    requests: int
    waited: int
    wait_seconds: float
    throttled: int
    slowdowns: int
    buckets: int


class RateLimiter:
    """Token buckets per (account, region, bucket); thread-safe.

    Buckets are made on first use. Once ``sweep_at`` are held, the idle ones (see
    :meth:`TokenBucket.idle`) are dropped before the next is made, and the threshold
    becomes twice what is left: memory follows the targets in flight, not every target
    of an organisation, and a dropped bucket comes back as it was."""

    def __init__(
        self,
        share: float = DEFAULT_SHARE,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        sweep_at: int = SWEEP_AT,
    ) -> None:
        if not 0 < share <= MAX_SHARE:
            raise ValueError(f"rate share must be in (0, {MAX_SHARE:g}], got {share!r}")
        self.share = share
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self._min_sweep = self._sweep_at = max(1, sweep_at)
        self._requests = self._waited = self._throttled = self._slowdowns = 0
        self._wait_seconds = 0.0

    def _bucket(self, account: str, region: str, demand: Demand, now: float) -> TokenBucket:
        key = (account, region, demand.bucket)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.idle(now)}
                self._sweep_at = max(self._min_sweep, 2 * len(self._buckets))
            bucket = self._buckets[key] = TokenBucket(demand.shape, self.share, now)
        return bucket

    def reserve(self, account: str, region: str, demands: tuple[Demand, ...]) -> float:
        """Take the tokens of one request; the seconds it must wait (no sleeping)."""
        with self._lock:
            now = self.clock()
            wait = max(
                (self._bucket(account, region, d, now).reserve(d.tokens, now) for d in demands),
                default=0.0,
            )
            self._requests += 1
            if wait > 0:
                self._waited += 1
                self._wait_seconds += wait
        return wait

    def acquire(self, account: str, region: str, demands: tuple[Demand, ...]) -> float:
        """Take the tokens of one request, sleeping until it may start; the seconds
        slept."""
        wait = self.reserve(account, region, demands)
        if wait > 0:
            self.sleep(wait)
        return wait

    def feedback(
        self, account: str, region: str, demands: tuple[Demand, ...], throttled: bool
    ) -> None:
        """Tell the buckets how EC2 answered one request."""
        with self._lock:
            now = self.clock()
            for d in demands:
                bucket = self._bucket(account, region, d, now)
                if throttled:
                    self._slowdowns += bucket.throttled(now)
                else:
                    bucket.answered()
            self._throttled += throttled

    def stats(self) -> LimiterStats:
        with self._lock:
            return LimiterStats(
                self._requests,
                self._waited,
                self._wait_seconds,
                self._throttled,
                self._slowdowns,
                len(self._buckets),
            )

    def attach(self, client: Any, account: str) -> None:
        """Meter every HTTP attempt of an EC2 ``client`` (botocore events), as requests
        of ``account`` in the client's region."""
        _ClientHook(self, account, client.meta.region_name or "").register(client.meta.events)


_CONTEXT_KEY = "awsops_rate_demands"


class _ClientHook:
    """The three botocore event handlers that connect one client to a limiter."""

    def __init__(self, limiter: RateLimiter, account: str, region: str) -> None:
        self.limiter = limiter
        self.account = account
        self.region = region

    def register(self, events: Any) -> None:
        events.register("before-parameter-build.ec2", self.before_parameter_build)
        events.register("before-send.ec2", self.before_send)
        events.register("response-received.ec2", self.response_received)

    def before_parameter_build(
        self, params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        context[_CONTEXT_KEY] = ec2_demands(model.name, params)

    def before_send(self, request: Any, **_: Any) -> None:
        demands = (getattr(request, "context", None) or {}).get(_CONTEXT_KEY)
        if demands:
            self.limiter.acquire(self.account, self.region, demands)

    def response_received(
        self, context: Mapping[str, Any], parsed_response: Any = None, **_: Any
    ) -> None:
        demands = context.get(_CONTEXT_KEY)
        if not demands or parsed_response is None:
            return  # no answer at all (a connection error) says nothing about the bucket
        code = (parsed_response.get("Error") or {}).get("Code")
        self.limiter.feedback(self.account, self.region, demands, code in THROTTLE_CODES)


_DEFAULT_LOCK = threading.Lock()
_DEFAULT: RateLimiter | None = None


def _share_from_env() -> float:
    raw = os.environ.get(SHARE_ENV, "").strip()
    if not raw:
        return DEFAULT_SHARE
    try:
        value = float(raw.rstrip("%")) / (100.0 if raw.endswith("%") else 1.0)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_SHARE:
        raise ValueError(f"{SHARE_ENV}={raw!r}: expected a share such as 0.5 or 50%")
    return value


def default_limiter() -> RateLimiter:
    """The process's limiter, shared by every EC2 client awsops builds (its share from
    ``AWSOPS_EC2_RATE_SHARE``, e.g. ``0.5`` or ``50%``, read when first used)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = RateLimiter(_share_from_env())
        return _DEFAULT


def set_default_limiter(limiter: RateLimiter | None) -> RateLimiter | None:
    """Replace the process's limiter (None: a fresh one on next use); returns the old."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        old, _DEFAULT = _DEFAULT, limiter
        return old
