"""Waiters and lifecycle commands against the moto server (library and in-process CLI).

moto makes every state change at once (running at launch, terminated at terminate,
snapshots available at creation), so a timeout is provoked with a waiter that cannot
succeed and a tiny delay, and a failure state with a waiter whose acceptors say
failure on the current state. moto answers every DryRun with DryRunOperation; the
"not authorized" answer comes from a loopback proxy that plays EC2's refusal.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import CliResult, assert_one_line_error, invoke

from awsops import ec2ops, rds
from awsops.errors import NotFoundError, SafetyError
from awsops.waiters import WaitAttempt

AMI = "ami-12c6146b"


def _run(ec2: Any, count: int = 1, **extra: Any) -> list[str]:
    r = ec2.run_instances(ImageId=AMI, MinCount=count, MaxCount=count, **extra)
    return [i["InstanceId"] for i in r["Instances"]]


def _protected(ec2: Any) -> list[str]:
    """An instance with termination protection (moto ignores it on RunInstances)."""
    ids = _run(ec2)
    ec2.modify_instance_attribute(InstanceId=ids[0], DisableApiTermination={"Value": True})
    return ids


def _states(ec2: Any, ids: list[str]) -> dict[str, str]:
    r = ec2.describe_instances(InstanceIds=ids)
    return {
        i["InstanceId"]: i["State"]["Name"] for res in r["Reservations"] for i in res["Instances"]
    }


def _jsonl(result: CliResult) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# --- the library ---------------------------------------------------------------------


def test_launch_wait_terminate_wait(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    spec = ec2ops.LaunchSpec(AMI, "t3.micro", count=3, tags={"Name": "web", "team": "ops"})
    launched = ec2ops.launch(ec2, spec, wait=True, wait_status_ok=True, delay=0.01)
    ids = [i.instance_id for i in launched]
    assert len(set(ids)) == 3
    assert {i.state for i in launched} == {"running"}
    assert all(
        i.availability_zone and i.availability_zone.startswith("us-east-1") for i in launched
    )
    described = ec2.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"]
    assert all({"Key": "Name", "Value": "web"} in i["Tags"] for i in described)
    assert _states(ec2, ids) == dict.fromkeys(ids, "running")

    changes = ec2ops.change_state(ec2, "terminate", ids, wait=True, delay=0.01)
    assert [c.instance_id for c in changes] == ids
    assert {(c.previous_state, c.current_state) for c in changes} == {("running", "terminated")}
    assert _states(ec2, ids) == dict.fromkeys(ids, "terminated")


def test_stop_and_start_wait_for_end_state(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    ids = _run(ec2, 2)
    stopped = ec2ops.change_state(ec2, "stop", ids, wait=True, delay=0.01)
    assert {c.current_state for c in stopped} == {"stopped"}
    assert _states(ec2, ids) == dict.fromkeys(ids, "stopped")
    started = ec2ops.change_state(ec2, "start", ids, wait=True, delay=0.01)
    assert {(c.previous_state, c.current_state) for c in started} == {("stopped", "running")}


def test_terminate_refuses_protected_instances_and_touches_none(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    free = _run(ec2)
    guarded = _protected(ec2)
    with pytest.raises(SafetyError) as info:
        ec2ops.change_state(ec2, "terminate", free + guarded)
    assert guarded[0] in str(info.value) and free[0] not in str(info.value)
    assert info.value.exit_code == 3
    assert _states(ec2, free + guarded) == dict.fromkeys(free + guarded, "running")


def test_dry_run_would_succeed_changes_nothing(aws) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    ids = _run(ec2)
    check = ec2ops.check_permissions(ec2, "stop_instances", {"InstanceIds": ids})
    assert (check.verdict, check.code, check.allowed) == ("would-succeed", "DryRunOperation", True)
    assert _states(ec2, ids) == {ids[0]: "running"}


def test_rds_snapshot_created_and_waited_for(aws) -> None:  # type: ignore[no-untyped-def]
    client = aws.client("rds")
    _db(client, "db-1")
    seen: list[WaitAttempt] = []
    snap = rds.create_db_snapshot(
        client, "db-1", "snap-1", tags={"team": "ops"}, wait=True, on_attempt=seen.append
    )
    assert (snap.identifier, snap.db_instance_identifier, snap.status) == (
        "snap-1",
        "db-1",
        "available",
    )
    assert [(a.waiter, a.max_attempts, a.state) for a in seen] == [
        ("db_snapshot_available", 120, "success")
    ]
    again = rds.wait_db_snapshot(client, "snap-1")
    assert again.status == "available"
    with pytest.raises(NotFoundError):
        rds.wait_db_snapshot(client, "no-such-snap")


def _db(client: Any, name: str) -> None:
    client.create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="password123",
        AllocatedStorage=20,
    )


# --- the CLI (in-process) ------------------------------------------------------------


def test_cli_wait_success(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    ids = _run(aws.client("ec2"), 2)
    r = invoke(["wait", "ec2", "instance-running", "--instance-ids", *ids, "--sandbox"], capsys)
    assert r.code == 0, r.stderr
    assert "success after 1 attempt(s)" in r.stdout and ids[0] in r.stdout


def test_cli_wait_with_filters(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    tag = {"ResourceType": "instance", "Tags": [{"Key": "env", "Value": "dev"}]}
    _run(ec2, 2, TagSpecifications=[tag])
    _run(ec2)  # untagged, terminated: would fail the waiter if the filter were ignored
    ec2.terminate_instances(InstanceIds=_run(ec2))
    r = invoke(
        ["wait", "ec2", "instance-running", "--filters", "Name=tag:env,Values=dev", "--sandbox"],
        capsys,
    )
    assert r.code == 0, r.stderr
    assert "Filters=tag:env:dev" in r.stdout


def test_cli_wait_timeout_exit_4(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    ids = _run(aws.client("ec2"))
    r = invoke(
        [
            "wait",
            "ec2",
            "instance-stopped",
            "--instance-ids",
            ids[0],
            "--delay",
            "0.01",
            "--polls",
            "3",
            "--sandbox",
        ],
        capsys,
    )
    assert r.code == 4
    assert_one_line_error(r, "timed out after 3 attempt(s)", ids[0], "last observed: ['running']")


def test_cli_wait_failure_exit_5(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    ids = _run(ec2)
    ec2.terminate_instances(InstanceIds=ids)
    r = invoke(["wait", "ec2", "instance-running", "--instance-ids", ids[0], "--sandbox"], capsys)
    assert r.code == 5
    assert_one_line_error(r, "failure state", ids[0], "terminated")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["wait", "ec2", "instance-flying"], ["unknown ec2 waiter", "instance-running"]),
        (["wait", "ec2", "instance-running", "--instance-idz", "i-1"], ["--instance-ids"]),
        (["wait", "ec2", "instance-running", "--dry-run", "x", "y"], ["exactly one value"]),
        (["wait", "rds", "db-snapshot-available", "snap-1"], ["--name value"]),
        (["wait", "ec2", "instance-running", "--filters", "Nam=x"], ["cannot parse"]),
        (["ec2", "stop", "--instance-ids", "vol-1"], ["not an instance id"]),
        (["ec2", "launch", "--image-id", AMI, "--tag", "novalue"], ["malformed tag"]),
        (["rds", "snapshot", "wait", "bad--name"], ["invalid DB snapshot identifier"]),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(  # type: ignore[no-untyped-def]
    args: list[str], needles: list[str], sandbox_home: Path, capsys
) -> None:
    r = invoke([*args, "--sandbox"], capsys)
    assert r.code == 2
    assert_one_line_error(r, *needles)


def test_cli_lists_waiters_of_a_service(sandbox_home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    r = invoke(["wait", "rds", "--sandbox"], capsys)
    assert r.code == 0 and "db-snapshot-available" in r.stdout.split()


def test_cli_launch_wait_terminate_wait(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    r = invoke(
        [
            "ec2",
            "launch",
            "--image-id",
            AMI,
            "--instance-type",
            "t3.micro",
            "--count",
            "2",
            "--tag",
            "Name=x",
            "--wait",
            "--delay",
            "0.01",
            "--output",
            "jsonl",
            "--sandbox",
        ],
        capsys,
    )
    assert r.code == 0, r.stderr
    rows = _jsonl(r)
    ids = [row["instance_id"] for row in rows]
    assert len(ids) == 2 and all(row["availability_zone"] for row in rows)
    assert {row["state"] for row in rows} == {"running"}

    t = invoke(["ec2", "terminate", "--instance-ids", *ids, "--wait", "--sandbox"], capsys)
    assert t.code == 0, t.stderr
    assert {(row["instance_id"], row["current_state"]) for row in _jsonl(t)} == {
        (i, "terminated") for i in ids
    }
    w = invoke(["wait", "ec2", "instance-terminated", "--instance-ids", *ids, "--sandbox"], capsys)
    assert w.code == 0, w.stderr
    assert _states(aws.client("ec2"), ids) == dict.fromkeys(ids, "terminated")


def test_cli_terminate_refuses_protected(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    free = _run(ec2)
    guarded = _protected(ec2)
    r = invoke(["ec2", "terminate", free[0], guarded[0], "--sandbox"], capsys)
    assert r.code == 3
    assert_one_line_error(r, "termination protection", guarded[0])
    assert _states(ec2, free + guarded) == dict.fromkeys(free + guarded, "running")


def test_cli_check_permissions_would_succeed(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    ids = _run(ec2)
    r = invoke(
        ["ec2", "stop", "--instance-ids", ids[0], "--check-permissions", "--sandbox"], capsys
    )
    assert r.code == 0, r.stderr
    assert "StopInstances: would succeed" in r.stdout
    launch = invoke(
        ["ec2", "launch", "--image-id", AMI, "--check-permissions", "--sandbox"], capsys
    )
    assert launch.code == 0 and "RunInstances: would succeed" in launch.stdout
    assert _states(ec2, ids) == {ids[0]: "running"}
    assert len(ec2.describe_instances()["Reservations"]) == 1  # nothing launched


class _RefuseDryRun(BaseHTTPRequestHandler):
    """Forwards to moto, but answers every DryRun request as EC2 does without IAM rights."""

    upstream = ""
    refused: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if b"DryRun=true" in body:
            type(self).refused.append(body.decode())
            payload = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                b"<Code>UnauthorizedOperation</Code><Message>You are not authorized to "
                b"perform this operation.</Message></Error></Errors>"
                b"<RequestID>proxy-req-1</RequestID></Response>"
            )
            self._reply(403, payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        req = urllib.request.Request(self.upstream + self.path, body, headers, method="POST")
        with urllib.request.urlopen(req) as resp:
            self._reply(resp.status, resp.read())

    def _reply(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def refusing_proxy(aws) -> Iterator[str]:  # type: ignore[no-untyped-def]
    handler = type("Handler", (_RefuseDryRun,), {"upstream": aws.endpoint, "refused": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_check_permissions_not_authorized(aws, refusing_proxy: str, capsys) -> None:  # type: ignore[no-untyped-def]
    ec2 = aws.client("ec2")
    ids = _run(ec2)
    r = invoke(
        [
            "ec2",
            "terminate",
            "--instance-ids",
            ids[0],
            "--check-permissions",
            "--endpoint-url",
            refusing_proxy,
            "--region",
            "us-east-1",
        ],
        capsys,
    )
    assert r.code == 3, r.stderr
    assert "TerminateInstances: not authorized" in r.stdout
    assert _states(ec2, ids) == {ids[0]: "running"}


def test_rds_cli_snapshot_create_and_wait(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    _db(aws.client("rds"), "db-1")
    c = invoke(
        [
            "rds",
            "snapshot",
            "create",
            "--db-instance-identifier",
            "db-1",
            "--db-snapshot-identifier",
            "snap-1",
            "--wait",
            "--output",
            "jsonl",
            "--sandbox",
        ],
        capsys,
    )
    assert c.code == 0, c.stderr
    [row] = _jsonl(c)
    assert (row["db_snapshot_identifier"], row["status"]) == ("snap-1", "available")
    w = invoke(["rds", "snapshot", "wait", "snap-1", "--output", "jsonl", "--sandbox"], capsys)
    assert w.code == 0 and _jsonl(w)[0]["status"] == "available"
    g = invoke(
        ["wait", "rds", "db-snapshot-available", "--db-snapshot-identifier", "snap-1", "--sandbox"],
        capsys,
    )
    assert g.code == 0 and "DBSnapshotIdentifier=snap-1" in g.stdout
    missing = invoke(["rds", "snapshot", "wait", "snap-2", "--sandbox"], capsys)
    assert_one_line_error(missing, "snap-2")


def test_wait_needs_ids_or_all_and_suggests_close_names(sandbox_home: Path, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    """Seen: `wait ec2 instance-running` with no ids waited on every instance; `wait ec3`
    printed about 400 service names; an unknown region in the sandbox gave a parse
    error and exit 1."""
    ids = _run(aws.client("ec2"))
    r = invoke(["wait", "ec2", "instance-running", "--sandbox"], capsys)
    assert r.code == 2
    assert_one_line_error(r, "would wait on every resource", "--instance-ids", "--all")
    ok = invoke(
        ["wait", "ec2", "instance-running", "--all", "--delay", "0.01", "--sandbox"], capsys
    )
    assert ok.code == 0, ok.stderr
    assert ids[0] in ok.stdout or "success" in ok.stdout
    r = invoke(["wait", "ec3", "instance-running", "--sandbox"], capsys)
    assert r.code == 2 and len(r.stderr) < 200
    assert_one_line_error(r, "unknown service 'ec3'", "did you mean", "ec2")
    r = invoke(["wait", "ec2", "instance-runing", "--instance-ids", ids[0], "--sandbox"], capsys)
    assert r.code == 2
    assert_one_line_error(
        r, "unknown ec2 waiter 'instance-runing'", "did you mean: instance-running"
    )
    r = invoke(
        ["--region", "xx-nowhere-1", "wait", "ec2", "instance-running", "--all", "--sandbox"],
        capsys,
    )
    assert r.code == 2
    assert_one_line_error(r, "unknown region 'xx-nowhere-1'")
