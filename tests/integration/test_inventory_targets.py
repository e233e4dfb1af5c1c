"""Many accounts and failing targets, against the moto server.

moto maps assumed-role credentials to the role's account (isolated state), so roles in
111111111111 and 222222222222 are two real accounts here. moto never refuses AssumeRole
and is always reachable, so failures come from a small loopback proxy in front of it:
it answers AssumeRole into 333333333333 with STS's AccessDenied error, and drops every
connection for requests signed for eu-west-3 (an unreachable regional endpoint).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from tests.helpers import CliResult, invoke

from awsops.clients import make_client
from awsops.session import AssumeRoleSpec

AMI = "ami-12c6146b"
DENIED_ACCOUNT = "333333333333"
UNREACHABLE_REGION = "eu-west-3"
STS_DENIED = (
    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
    "<Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:"
    "user/ops is not authorized to perform: sts:AssumeRole on resource: "
    "arn:aws:iam::333333333333:role/ops</Message></Error>"
    "<RequestId>denied-request-1</RequestId></ErrorResponse>"
)
_SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


class _Proxy(BaseHTTPRequestHandler):
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        scope = _SCOPE_RE.search(self.headers.get("Authorization", ""))
        if scope and scope.group(1) == UNREACHABLE_REGION:
            self.close_connection = True  # no answer at all: the client sees it closed
            return
        if b"Action=AssumeRole" in body and DENIED_ACCOUNT.encode() in body:
            payload = STS_DENIED.encode()
            self.send_response(403)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle


@pytest.fixture
def proxy(aws: Any) -> Iterator[str]:
    """A proxy endpoint in front of the (reset) moto server."""
    up = urlparse(aws.endpoint)
    handler = type("Handler", (_Proxy,), {"upstream": (up.hostname, up.port)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _seed(aws: Any, account: str, region: str, count: int) -> set[str]:
    factory = aws.factory()
    session = factory.assume(AssumeRoleSpec(f"arn:aws:iam::{account}:role/ops"), region)
    ec2 = make_client(session, "ec2", region, aws.settings)
    resp = ec2.run_instances(ImageId=AMI, MinCount=count, MaxCount=count)
    return {i["InstanceId"] for i in resp["Instances"]}


def _targets_file(tmp_path: Path, accounts: list[dict[str, Any]]) -> str:
    path = tmp_path / "targets.yaml"
    path.write_text(json.dumps({"accounts": accounts}))  # JSON is YAML
    return str(path)


def _account(account: str, regions: list[str], name: str, **extra: Any) -> dict[str, Any]:
    return {
        "account_id": account,
        "role_arn": f"arn:aws:iam::{account}:role/ops",
        "regions": regions,
        "name": name,
        **extra,
    }


def _records(result: CliResult) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_two_accounts_by_assumed_roles_carry_account_and_region(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = {
        ("111111111111", "us-east-1"): _seed(aws, "111111111111", "us-east-1", 3),
        ("222222222222", "us-east-1"): _seed(aws, "222222222222", "us-east-1", 2),
        ("222222222222", "eu-west-1"): _seed(aws, "222222222222", "eu-west-1", 4),
    }
    targets = _targets_file(
        tmp_path,
        [
            _account("111111111111", ["us-east-1", "eu-west-1"], "prod"),
            _account("222222222222", ["us-east-1", "eu-west-1"], "dev", external_id="ext-2"),
        ],
    )
    r = invoke(["inventory", "ec2-instances", "--sandbox", "--targets", targets], capsys)
    assert r.code == 0, r.stderr
    got: dict[tuple[str, str], set[str]] = {}
    for rec in _records(r):
        got.setdefault((rec["account_id"], rec["region"]), set()).add(rec["instance_id"])
    assert got == made
    assert "9 items" in r.stderr and "4 targets, 0 errors" in r.stderr
    # the sandbox's own account sees none of them
    own = invoke(["inventory", "ec2-instances", "--sandbox"], capsys)
    assert own.code == 0 and _records(own) == []


def test_failing_targets_are_reported_while_the_others_complete(
    aws: Any, proxy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _seed(aws, "111111111111", "us-east-1", 3)
    targets = _targets_file(
        tmp_path,
        [
            _account("111111111111", ["us-east-1", UNREACHABLE_REGION], "prod"),
            _account(DENIED_ACCOUNT, ["us-east-1"], "locked"),
        ],
    )
    r = invoke(
        [
            "--max-attempts",
            "2",
            "inventory",
            "ec2-instances",
            "--endpoint-url",
            proxy,
            "--targets",
            targets,
        ],
        capsys,
    )
    assert r.code == 1
    assert "Traceback" not in r.stderr
    assert {rec["instance_id"] for rec in _records(r)} == good
    errors = sorted(ln for ln in r.stderr.splitlines() if ln.startswith("error:"))
    assert len(errors) == 2, r.stderr
    denied, unreachable = errors
    assert denied.startswith("error: locked/us-east-1: AccessDenied:")
    assert "AssumeRole" in denied and "denied-request-1" in denied
    assert unreachable.startswith(f"error: prod/{UNREACHABLE_REGION}: ")
    assert "DescribeInstances" in unreachable and "Connection" in unreachable
    assert "3 items" in r.stderr and "3 targets, 2 errors" in r.stderr
