"""The fault proxy's deterministic kill points and its ledger of what it served.

A dummy child process (it writes each SIGINT/SIGTERM it receives to a file) stands in
for awsops; a stub upstream records when each request reached "the server".
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.unit.stub_upstream import StubUpstream, running_stub

from awsops.errors import UsageError
from awsops.sandbox.faults import SETTLE_SECONDS, FaultProxy, parse_signal

AUTH = (
    "AWS4-HMAC-SHA256 Credential=EXAMPLEKEYID00123456/20260101/us-east-1/ec2/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abc123"
)
HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    "Authorization": AUTH,
}

CHILD = r"""
import signal, sys, time
out = sys.argv[1]
def noted(signum, frame):
    with open(out, "a") as fh:
        fh.write(f"{signal.Signals(signum).name} {time.time()}\n")
signal.signal(signal.SIGINT, noted)
signal.signal(signal.SIGTERM, noted)
open(out + ".ready", "w").close()
while True:
    time.sleep(0.02)
"""


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    notes: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def received(self) -> list[tuple[str, float]]:
        if not self.notes.exists():
            return []
        lines = self.notes.read_text().split()
        return [(lines[i], float(lines[i + 1])) for i in range(0, len(lines), 2)]

    def killed(self) -> bool:
        try:
            return self.proc.wait(timeout=5) == -signal.SIGKILL
        except subprocess.TimeoutExpired:
            return False


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Child]:
    notes = tmp_path / "signals.txt"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(notes)])
    ready = Path(f"{notes}.ready")
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists(), "the dummy child did not start"
    try:
        yield Child(proc, notes)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def stub() -> Iterator[StubUpstream]:
    with running_stub() as upstream:
        yield upstream


def _call(port: int, body: str) -> tuple[int, bytes] | None:
    """One EC2 request through the proxy; None if the proxy dropped it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/", body=body.encode(), headers=HEADERS)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (http.client.RemoteDisconnected, ConnectionError):
        return None
    finally:
        conn.close()


def _terminate(iid: str, dry_run: bool = False) -> str:
    return f"Action=TerminateInstances&Version=2016-11-15&InstanceId.1={iid}" + (
        "&DryRun=true" if dry_run else ""
    )


DESCRIBE = "Action=DescribeInstances&Version=2016-11-15"
POLL = "Action=DescribeSnapshots&Version=2016-11-15&SnapshotId.1=snap-1"


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT", "SIGTERM"])
def test_before_phase_signals_on_the_kth_change_before_forwarding_it(
    stub: StubUpstream, child: Child, sig: str
) -> None:
    with FaultProxy(stub.url) as proxy:
        proxy.arm_signal(child.pid, sig, at=2, phase="before")
        # A DryRun probe and a read change nothing: they are not counted.
        assert _call(proxy.port, _terminate("i-0", dry_run=True)) is not None
        assert _call(proxy.port, DESCRIBE) is not None
        assert _call(proxy.port, _terminate("i-1")) is not None
        assert child.received() == [] and child.proc.poll() is None
        answer = _call(proxy.port, _terminate("i-2"))
        fired = proxy.stats.fired_signals()
        ledger = proxy.stats.mutation_list()
    assert [(f.phase, f.signal, f.at, f.count, f.call, f.error) for f in fired] == [
        ("before", sig, 2, 2, "ec2:TerminateInstances", None)
    ]
    reached = stub.bodies()
    if sig == "SIGKILL":
        assert answer is None
        assert child.killed()
        assert not any(b"i-2" in b for b in reached)  # dropped: it never reached the server
        assert [m.params.get("InstanceId.1") for m in ledger] == ["i-0", "i-1"]
    else:
        assert answer is not None and answer[0] == 200
        ((name, signalled_at),) = child.received()
        assert name == sig
        # Forwarded only after the process had time to react.
        assert stub.first_at(b"i-2") >= signalled_at + SETTLE_SECONDS * 0.9
        assert child.proc.poll() is None


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_after_phase_signals_once_the_server_acted(
    stub: StubUpstream, child: Child, sig: str
) -> None:
    with FaultProxy(stub.url) as proxy:
        proxy.arm_signal(child.pid, sig, at=1, phase="after", actions=["TerminateInstances"])
        # Restricted to TerminateInstances: other changes are not counted.
        assert _call(proxy.port, "Action=CreateSnapshot&Version=2016-11-15&VolumeId=v") is not None
        assert child.received() == [] and child.proc.poll() is None
        answer = _call(proxy.port, _terminate("i-1"))
        answered_at = time.time()
        fired = proxy.stats.fired_signals()
        ledger = proxy.stats.mutation_list()
    assert [(f.phase, f.at, f.count, f.call) for f in fired] == [
        ("after", 1, 1, "ec2:TerminateInstances")
    ]
    reached_at = stub.first_at(b"i-1")  # the server acted in every case
    assert fired[0].time >= reached_at
    terminate = next(m for m in ledger if m.action == "ec2:TerminateInstances")
    if sig == "SIGKILL":
        assert answer is None and child.killed()
        assert not terminate.delivered  # the answer was dropped
    else:
        assert answer is not None and answer[0] == 200 and terminate.delivered
        ((_, signalled_at),) = child.received()
        assert reached_at <= signalled_at <= answered_at - SETTLE_SECONDS * 0.9


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_waiter_phase_signals_at_the_first_poll_after_the_kth_change(
    stub: StubUpstream, child: Child, sig: str
) -> None:
    with FaultProxy(stub.url) as proxy:
        proxy.arm_signal(child.pid, sig, at=1, phase="waiter")
        assert _call(proxy.port, POLL) is not None  # before the change: not yet
        assert _call(proxy.port, _terminate("i-1")) is not None
        # Describe calls that name no ids, or only tags, are not waiter polls.
        assert _call(proxy.port, "Action=DescribeSnapshots&Version=2016-11-15") is not None
        tag_lookup = "Filter.1.Name=tag%3Aplan&Filter.1.Value.1=p"
        assert _call(proxy.port, f"Action=DescribeSnapshots&Version=2016-11-15&{tag_lookup}")
        assert child.received() == [] and child.proc.poll() is None
        by_filter = (
            "Action=DescribeSnapshots&Version=2016-11-15"
            "&Filter.1.Name=snapshot-id&Filter.1.Value.1=snap-9"
        )
        answer = _call(proxy.port, by_filter)
        fired = proxy.stats.fired_signals()
    assert [(f.phase, f.call) for f in fired] == [("waiter", "ec2:DescribeSnapshots")]
    if sig == "SIGKILL":
        assert answer is None and child.killed()
        assert not any(b"snap-9" in b for b in stub.bodies())
    else:
        assert answer is not None and [n for n, _ in child.received()] == ["SIGINT"]


def test_each_armed_signal_fires_once_and_a_dead_pid_is_recorded(
    stub: StubUpstream, child: Child
) -> None:
    with FaultProxy(stub.url) as proxy:
        proxy.arm_signal(child.pid, "INT", at=1, phase="before")
        proxy.arm_signal(2**22 + 12345, "TERM", at=2, phase="before")  # no such process
        for i in range(4):
            assert _call(proxy.port, _terminate(f"i-{i}")) is not None
        fired = proxy.stats.fired_signals()
    assert [f.count for f in fired] == [1, 2]
    assert fired[0].error is None and fired[1].error and "ProcessLookupError" in fired[1].error
    assert [n for n, _ in child.received()] == ["SIGINT"]


def test_signal_routes_arm_list_and_refuse_bad_requests(stub: StubUpstream, child: Child) -> None:
    with FaultProxy(stub.url) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)

        def route(method: str, body: object = None) -> tuple[int, dict[str, object]]:
            data = json.dumps(body).encode() if body is not None else b""
            conn.request(method, "/_faults/signals", body=data)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())

        arm = {"pid": child.pid, "signal": "SIGTERM", "at": 1, "phase": "after"}
        assert route("POST", {**arm, "actions": "TerminateInstances"}) == (200, {"id": 1})
        assert route("POST", {**arm, "phase": "during"})[0] == 400
        assert route("POST", {**arm, "signal": "SIGNOPE"})[0] == 400
        assert route("POST", {**arm, "at": 0})[0] == 400
        assert route("POST", {"signal": "SIGINT"})[0] == 400
        status, listed = route("GET")
        assert status == 200 and listed["fired"] == []
        assert listed["armed"] == [
            {
                "id": 1,
                "pid": child.pid,
                "signal": "SIGTERM",
                "at": 1,
                "phase": "after",
                "actions": ["TerminateInstances"],
                "count": 0,
                "fired": False,
            }
        ]
        assert _call(proxy.port, _terminate("i-1")) is not None
        fired = route("GET")[1]["fired"]
        assert isinstance(fired, list) and [f["phase"] for f in fired] == ["after"]
        assert route("DELETE") == (200, {"ok": True}) and route("GET")[1]["armed"] == []
        conn.close()


def test_parse_signal_names_and_numbers() -> None:
    assert parse_signal("kill") is signal.SIGKILL
    assert parse_signal("SIGINT") is signal.SIGINT
    assert parse_signal(15) is signal.SIGTERM
    assert parse_signal("2") is signal.SIGINT
    with pytest.raises(UsageError, match="unknown signal"):
        parse_signal("SIGWHAT")


def test_ledger_records_time_dry_run_and_served_state_changes(stub: StubUpstream) -> None:
    with FaultProxy(stub.url) as proxy:
        t0 = time.time()
        _call(proxy.port, _terminate("i-1", dry_run=True))
        _call(proxy.port, _terminate("i-1"))
        stub.snapshots = {"snap-1": "pending", "snap-2": "completed"}
        _call(proxy.port, POLL)
        _call(proxy.port, POLL)  # unchanged: not repeated
        stub.snapshots = {"snap-1": "completed"}
        completed_at = time.time()
        _call(proxy.port, POLL)
        proxy.set_spec("reset=1")  # an answer the caller never got is not "served"
        stub.snapshots = {"snap-1": "error"}
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            conn.request("POST", "/", body=POLL.encode(), headers=HEADERS)
            conn.getresponse().read()
        ledger = proxy.stats.mutation_list()
        served = proxy.stats.served_states()
    assert [(m.dry_run, m.params["InstanceId.1"]) for m in ledger] == [
        (True, "i-1"),
        (False, "i-1"),
    ]
    assert t0 <= ledger[0].at <= ledger[1].at <= time.time()
    assert ledger[1].to_json()["dry_run"] is False and "at" in ledger[1].to_json()
    assert [s for s, _ in served["snap-1"]] == ["pending", "completed"]
    assert served["snap-1"][1][1] >= completed_at
    assert [s for s, _ in served["snap-2"]] == ["completed"]
