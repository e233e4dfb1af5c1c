"""The fault proxy's parts: spec parsing, request classification, error shapes that
botocore parses and retries as AWS's own, token buckets, and the proxy itself against
a stub upstream on loopback."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse
from botocore.parsers import create_parser
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)
from tests.unit.stub_upstream import EC2_OK, StubUpstream, running_stub

from awsops.errors import CredentialsError, ThrottledError, UsageError, category_for
from awsops.sandbox.faults import (
    CallInfo,
    FaultProxy,
    FaultSpec,
    TokenBuckets,
    classify,
    error_response,
    fetch_stats,
    parse_mutation,
    spawn_proxy,
)

AUTH = (
    "AWS4-HMAC-SHA256 Credential=EXAMPLEKEYID00123456/20260101/{region}/{service}/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abc123"
)
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_parse_full_spec_and_round_trip() -> None:
    spec = FaultSpec.parse(
        "throttle=0.2, error5xx=0.05,reset=0.02,truncate=0.01,latency=50ms,bucket=ec2,"
        "bucket_scale=0.5,expired=AKIA1+AKIA2,only=TerminateInstances,seed=7"
    )
    assert spec == FaultSpec(
        throttle=0.2,
        error5xx=0.05,
        reset=0.02,
        truncate=0.01,
        latency_ms=50.0,
        bucket=True,
        bucket_scale=0.5,
        expired=("AKIA1", "AKIA2"),
        only=("TerminateInstances",),
        seed=7,
    )
    assert FaultSpec.parse(str(spec)) == spec
    assert FaultSpec.parse("latency=0.2s").latency_ms == 200.0
    assert FaultSpec.parse("") == FaultSpec()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("throttel=0.2", "unknown key 'throttel'"),
        ("throttle=1.5", "between 0 and 1"),
        ("throttle=lots", "not a number"),
        ("latency=fast", "not a duration"),
        ("latency=90s", "longer than 60s"),
        ("bucket=maybe", "expected ec2 or off"),
        ("bucket_scale=0", "greater than 0"),
        ("seed=x", "not an integer"),
        ("throttle", "expected key=value"),
        ("throttle=0.1,throttle=0.2", "given twice"),
        ("throttle=0.6,error5xx=0.3,reset=0.2", "must not exceed 1"),
    ],
)
def test_bad_specs_are_one_line_usage_errors(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        FaultSpec.parse(text)
    assert needle in str(info.value)
    assert "\n" not in info.value.one_line()


def test_classify_ec2_sts_s3_and_json() -> None:
    ec2 = classify(
        "POST",
        "/",
        {**FORM, "Authorization": AUTH.format(region="eu-west-1", service="ec2")},
        b"Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-1",
    )
    assert (ec2.service, ec2.action, ec2.region, ec2.key_id, ec2.protocol) == (
        "ec2",
        "TerminateInstances",
        "eu-west-1",
        "EXAMPLEKEYID00123456",
        "ec2",
    )
    assert ec2.mutating and ec2.params == {"InstanceId.1": "i-1"}
    sts = classify(
        "POST",
        "/",
        {**FORM, "Authorization": AUTH.format(region="us-east-1", service="sts")},
        b"Action=AssumeRole&Version=2011-06-15",
    )
    assert (sts.protocol, sts.name, sts.mutating) == ("query", "sts:AssumeRole", False)
    s3_auth = {"Authorization": AUTH.format(region="us-east-1", service="s3")}
    cases = {
        ("GET", "/b?list-type=2&prefix=x"): "ListObjectsV2",
        ("PUT", "/b/k/deep"): "PutObject",
        ("PUT", "/b"): "CreateBucket",
        ("GET", "/"): "ListBuckets",
        ("POST", "/b?delete"): "DeleteObjects",
        ("GET", "/b/k?tagging"): "GetObjectTagging",
    }
    for (method, path), action in cases.items():
        info = classify(method, path, s3_auth, b"")
        assert (info.protocol, info.action) == ("s3", action)
    assert classify("GET", "/b/k", s3_auth, b"").mutating is False
    assert classify("DELETE", "/b/k", s3_auth, b"").mutating is True
    js = classify(
        "POST",
        "/",
        {
            "X-Amz-Target": "AmazonSSM.DescribeParameters",
            "Authorization": AUTH.format(region="us-east-1", service="ssm"),
        },
        b"{}",
    )
    assert (js.protocol, js.name, js.mutating) == ("json", "ssm:DescribeParameters", False)


def _info(protocol: str, service: str) -> CallInfo:
    return CallInfo(service, "Op", "us-east-1", "AKIA", protocol)


@pytest.mark.parametrize(
    ("protocol", "service", "botocore_protocol", "kind", "code", "status"),
    [
        ("ec2", "ec2", "ec2", "throttle", "RequestLimitExceeded", 503),
        ("ec2", "ec2", "ec2", "500", "InternalError", 500),
        ("ec2", "ec2", "ec2", "503", "Unavailable", 503),
        ("ec2", "ec2", "ec2", "expired", "RequestExpired", 400),
        ("query", "sts", "query", "throttle", "Throttling", 400),
        ("query", "sts", "query", "expired", "ExpiredToken", 400),
        ("query", "iam", "query", "500", "InternalFailure", 500),
        ("s3", "s3", "rest-xml", "throttle", "SlowDown", 503),
        ("s3", "s3", "rest-xml", "503", "ServiceUnavailable", 503),
        ("s3", "s3", "rest-xml", "expired", "ExpiredToken", 400),
        ("json", "ssm", "json", "throttle", "ThrottlingException", 400),
        ("json", "ssm", "json", "500", "InternalServerError", 500),
    ],
)
def test_error_shapes_parse_and_retry_like_aws(
    protocol: str, service: str, botocore_protocol: str, kind: str, code: str, status: int
) -> None:
    err = error_response(_info(protocol, service), kind)
    assert err.status == status
    headers = dict(err.headers)
    parsed = create_parser(botocore_protocol).parse(
        {"status_code": err.status, "headers": headers, "body": err.body}, None
    )
    assert parsed["Error"]["Code"] == code
    context = RetryContext(
        attempt_number=1,
        parsed_response=parsed,
        http_response=AWSResponse("http://127.0.0.1", err.status, headers, None),
    )
    retried = ThrottledRetryableChecker().is_retryable(
        context
    ) or TransientRetryableChecker().is_retryable(context)
    if kind == "expired":
        assert not retried
        assert category_for(code) is CredentialsError
    else:
        assert retried
    if kind == "throttle":
        assert category_for(code) is ThrottledError


def test_token_bucket_empties_and_refills() -> None:
    buckets = TokenBuckets(scale=0.1)  # non-mutating: 10 tokens, 2 per second
    assert all(buckets.take("k", "us-east-1", "DescribeInstances", now=100.0) for _ in range(10))
    assert not buckets.take("k", "us-east-1", "DescribeInstances", now=100.0)
    # Buckets are per key, region and action.
    assert buckets.take("k", "eu-west-1", "DescribeInstances", now=100.0)
    assert buckets.take("other", "us-east-1", "DescribeInstances", now=100.0)
    assert buckets.take("k", "us-east-1", "DescribeVolumes", now=100.0)
    assert buckets.take("k", "us-east-1", "DescribeInstances", now=100.5)  # one refilled
    assert not buckets.take("k", "us-east-1", "DescribeInstances", now=100.5)
    # Mutating actions refill slower: 20 tokens, 0.5 per second at this scale.
    assert sum(buckets.take("k", "r", "TerminateInstances", now=0.0) for _ in range(30)) == 20
    assert not buckets.take("k", "r", "TerminateInstances", now=1.0)
    assert buckets.take("k", "r", "TerminateInstances", now=2.0)


def test_parse_mutation_reads_state_changes_and_created_ids() -> None:
    ec2 = _info("ec2", "ec2")
    body = (
        b'<TerminateInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        b"<instancesSet><item><instanceId>i-1</instanceId><currentState><name>shutting-down"
        b"</name></currentState><previousState><name>stopped</name></previousState></item>"
        b"</instancesSet></TerminateInstancesResponse>"
    )
    rec = parse_mutation(ec2, 200, body, delivered=False)
    assert rec.changes == (("i-1", "stopped", "shutting-down"),) and not rec.delivered
    snap = parse_mutation(
        ec2,
        200,
        b"<CreateSnapshotResponse><snapshotId>snap-1</snapshotId><volumeId>vol-1</volumeId>"
        b"</CreateSnapshotResponse>",
        delivered=True,
    )
    assert snap.created == ("snap-1", "vol-1") and snap.snapshots == ()  # action "Op"
    assert parse_mutation(ec2, 200, b"not xml", delivered=True).changes == ()


def test_parse_mutation_pairs_each_snapshot_with_its_volume() -> None:
    one = CallInfo("ec2", "CreateSnapshot", "us-east-1", "AKIA", "ec2", {"VolumeId": "vol-1"})
    body = b"<CreateSnapshotResponse><snapshotId>snap-1</snapshotId></CreateSnapshotResponse>"
    assert parse_mutation(one, 200, body, delivered=True).snapshots == (("vol-1", "snap-1"),)
    assert parse_mutation(one, 500, body, delivered=True).snapshots == ()
    many = CallInfo("ec2", "CreateSnapshots", "us-east-1", "AKIA", "ec2")
    body = (
        b'<CreateSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15">'
        b"<snapshotSet><item><tagSet><item><key>k</key><value>v</value></item></tagSet>"
        b"<volumeId>vol-1</volumeId><snapshotId>snap-1</snapshotId></item>"
        b"<item><volumeId>vol-2</volumeId><snapshotId>snap-2</snapshotId></item></snapshotSet>"
        b"<requestId>r</requestId></CreateSnapshotsResponse>"
    )
    rec = parse_mutation(many, 200, body, delivered=False)
    assert rec.snapshots == (("vol-1", "snap-1"), ("vol-2", "snap-2"))
    assert rec.created == ("snap-1", "snap-2")
    assert rec.to_json()["snapshots"] == [["vol-1", "snap-1"], ["vol-2", "snap-2"]]


def test_decisions_are_reproducible_and_scoped() -> None:
    def draws(spec: str) -> list[str | None]:
        proxy = FaultProxy("http://127.0.0.1:9", spec)
        try:
            return [
                proxy.decide(CallInfo("ec2", "DescribeInstances", "r", "k", "ec2"))
                for _ in range(50)
            ]
        finally:
            proxy.close()

    first = draws("throttle=0.3,error5xx=0.2,reset=0.1,truncate=0.1,seed=42")
    assert first == draws("throttle=0.3,error5xx=0.2,reset=0.1,truncate=0.1,seed=42")
    assert {"throttle", "500", "503", "reset", "truncate", None} == set(first)
    assert set(draws("throttle=1,only=TerminateInstances")) == {None}
    assert set(draws("expired=k")) == {"expired"}


def test_an_action_meets_the_same_faults_however_other_actions_interleave() -> None:
    """With a seed, the k-th TerminateInstances meets the same fault whether other
    actions' calls came between or not (threads interleave calls differently in every
    run); two actions do not share one sequence; a new spec starts the streams again."""
    spec = "throttle=0.3,seed=4"
    term = CallInfo("ec2", "TerminateInstances", "r", "k", "ec2")
    look = CallInfo("ec2", "DescribeInstances", "r", "k", "ec2")
    alone, mixed = FaultProxy("http://127.0.0.1:9", spec), FaultProxy("http://127.0.0.1:9", spec)
    try:
        plain = [alone.decide(term) for _ in range(60)]
        between = []
        for n in range(60):
            for _ in range(n % 4):
                mixed.decide(look)
            between.append(mixed.decide(term))
        assert between == plain and "throttle" in plain and None in plain
        looks = [alone.decide(look) for _ in range(60)]
        assert looks != plain
        alone.set_spec(spec)
        assert [alone.decide(term) for _ in range(60)] == plain
    finally:
        alone.close()
        mixed.close()


# --- the proxy against a stub upstream ------------------------------------------------


@pytest.fixture
def stub() -> Iterator[StubUpstream]:
    with running_stub() as upstream:
        yield upstream


@pytest.fixture
def upstream(stub: StubUpstream) -> str:
    return stub.url


def _post(
    port: int,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


EC2_HEADERS = {**FORM, "Authorization": AUTH.format(region="us-east-1", service="ec2")}
EC2_BODY = b"Action=DescribeInstances&Version=2016-11-15"


def test_proxy_forwards_counts_and_injects(upstream: str) -> None:
    with FaultProxy(upstream, "throttle=1") as proxy:
        status, body = _post(proxy.port, "/", EC2_BODY, EC2_HEADERS)
        assert status == 503 and b"RequestLimitExceeded" in body
        # Control routes are never faulted.
        assert _post(proxy.port, "/_awsops/health")[0] == 200
        proxy.set_spec("")
        assert _post(proxy.port, "/", EC2_BODY, EC2_HEADERS) == (200, EC2_OK)
        stats = json.loads(_post(proxy.port, "/_faults/stats", method="GET")[1])
        assert stats["calls"] == {"ec2:DescribeInstances": 2}
        assert stats["forwarded"] == {"ec2:DescribeInstances": 1}
        assert stats["faults"] == {"throttle": 1}
        bad = _post(proxy.port, "/_faults/spec", b"throttle=7")
        assert bad[0] == 400 and b"between 0 and 1" in bad[1]
        assert _post(proxy.port, "/_faults/spec", b"latency=1ms")[0] == 200
        assert proxy.spec.latency_ms == 1.0
        assert _post(proxy.port, "/_faults/reset")[0] == 200
        assert proxy.stats.total_calls == 0


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_proxy_cuts_responses_after_the_server_answered(stub: StubUpstream, kind: str) -> None:
    with FaultProxy(stub.url, f"{kind}=1") as proxy:
        before = len(stub.received)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        try:
            conn.request("POST", "/", body=EC2_BODY, headers=EC2_HEADERS)
            with pytest.raises(
                (http.client.IncompleteRead, ConnectionError, http.client.HTTPException)
            ):
                conn.getresponse().read()
        finally:
            conn.close()
        assert len(stub.received) == before + 1  # the server did the work
        assert proxy.stats.faults[kind] == 1


def test_spawned_proxy_answers_and_stops_on_sigterm(upstream: str, tmp_path: Path) -> None:
    pid, port = spawn_proxy(upstream, "throttle=0.5,seed=1", tmp_path)
    try:
        stats = fetch_stats(f"http://127.0.0.1:{port}")
        assert stats is not None and stats["spec"] == "throttle=0.5,seed=1"
        assert stats["pid"] == pid
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert fetch_stats(f"http://127.0.0.1:{port}", timeout=1) is None


def test_spawn_refuses_bad_specs_before_starting(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown key"):
        spawn_proxy("http://127.0.0.1:9", "nonsense=1", tmp_path)
    assert not (tmp_path / "faults.log").exists()
    with pytest.raises(UsageError, match="loopback"):
        FaultProxy("http://10.0.0.1:80")
