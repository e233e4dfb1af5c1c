"""``awsops sandbox`` end to end: up with server faults, down that stops only the
sandbox, and the sandbox's faults seen through ``decommission`` (CloudTrail stop times,
backups that stay pending or fail), judged from the server and the proxy's ledger."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import assert_one_line_error, invoke, run_cli

from awsops.sandbox import manager
from awsops.sandbox.faults import FaultProxy
from awsops.sandbox.seed import DEMO_TAG, ec2_reason, seed_demo

REGION = "us-east-1"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_down_leaves_an_unrelated_process_alone(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    stale = manager.SandboxState(
        pid=sleeper.pid,
        host="127.0.0.1",
        port=9,  # nothing answers there
        started_at=0.0,
        log_file=str(home / "sandbox.log"),
        proxy_pid=sleeper.pid,
        proxy_port=9,
    )
    (home / "sandbox.json").write_text(json.dumps(asdict(stale)))
    result = run_cli(["sandbox", "down"], env={"AWSOPS_HOME": str(home)}, timeout=60)
    assert result.code == 0, result.stderr
    time.sleep(0.2)
    assert sleeper.poll() is None and _alive(sleeper.pid), "down killed a process not its own"
    assert f"pid {sleeper.pid} is not the sandbox" in result.stdout
    assert "left it alone" in result.stdout
    assert not (home / "sandbox.json").exists()


def test_up_with_server_faults_only_and_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("AWSOPS_HOME", str(home))
    bad = invoke(["sandbox", "up", "--faults", "snapshot-delay=soon"], capsys)
    assert bad.code == 2
    assert_one_line_error(bad, "snapshot_delay")
    assert not (home / "sandbox.json").exists()

    spec = "snapshot-delay=30s,snapshot-error=0.1,credential-ttl=60s,seed=5"
    up = invoke(["sandbox", "up", "--faults", spec], capsys)
    assert up.code == 0, up.stderr
    state = json.loads((home / "sandbox.json").read_text())
    try:
        assert state["proxy_pid"] is None  # only server keys: no proxy
        url = f"http://127.0.0.1:{state['port']}"
        settings = manager.control(url, "faults", None, method="GET")["settings"]
        assert settings == {
            "snapshot_delay": 30.0,
            "snapshot_error": 0.1,
            "image_delay": 0.0,
            "image_error": 0.0,
            "credential_ttl": 60.0,
            "seed": 5,
        }
        again = invoke(["sandbox", "up", "--faults", "image-delay=1"], capsys)
        assert again.code == 2 and "already running" in again.stderr
        shown = invoke(["sandbox", "faults", "image-error=0.5"], capsys)
        assert shown.code == 0 and "image-error=0.5" in shown.stdout
    finally:
        down = invoke(["sandbox", "down"], capsys)
        stopped = not _alive(state["pid"])
        if not stopped:
            os.kill(state["pid"], signal.SIGKILL)  # never leave a server behind
    assert down.code == 0 and f"sandbox stopped (pid {state['pid']})" in down.stdout
    assert stopped


# --- the sandbox's faults through decommission ----------------------------------------


def _seed(aws: Any) -> dict[str, str]:
    """The demo fleet, one instance per category; instance id -> category."""
    seed_demo(aws.session(), aws.settings, aws.server_url, [REGION], 12, with_buckets=False)
    ec2 = aws.client("ec2", REGION)
    fleet = {}
    for res in ec2.describe_instances()["Reservations"]:
        for inst in res["Instances"]:
            fleet[inst["InstanceId"]] = {t["Key"]: t["Value"] for t in inst["Tags"]}[DEMO_TAG]
    return fleet


def test_plan_with_cloudtrail_dates_the_undated_stops(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = _seed(aws)
    out = tmp_path / "plan.json"
    argv = ["--sandbox", "decommission", "plan", "--older-than", "30d", "--regions", REGION]
    made = invoke([*argv, "--cloudtrail", "-o", str(out)], capsys)
    assert made.code == 0, made.stderr
    chosen = {f["instance_id"]: f["stop_source"] for f in _chosen(out)}
    by_category = {fleet[iid]: source for iid, source in chosen.items()}
    assert by_category == {
        "stopped-45d": "state-transition-reason",
        "stopped-200d": "state-transition-reason",
        "stopped-bare-reason": "cloudtrail",
        "stopped-empty-reason": "cloudtrail",
    }
    # ... and such a plan can be applied: the CloudTrail-dated instances go too.
    done = invoke(
        [
            "--sandbox",
            "decommission",
            "apply",
            str(out),
            "--yes",
            "--backup",
            "snapshots",
            "--snapshot-delay",
            "0",
            "--terminate-delay",
            "0",
            "--output",
            "json",
        ],
        capsys,
    )
    assert done.code == 0, done.stderr
    ec2 = aws.client("ec2", REGION)
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    assert {states[i] for i in chosen} == {"terminated"}
    assert all(states[i] != "terminated" for i in fleet if i not in chosen)


def test_credentials_that_expire_mid_run_are_refreshed_through_plan_and_apply(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Assumed-role credentials live 4 s; plan and apply through the role take several
    times that (backups stay pending 8 s). Every call goes through: none is refused as expired,
    and the role was assumed again several times, not once per call."""
    _seed(aws)
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "accounts:\n  - role_arn: arn:aws:iam::123456789012:role/ops\n    regions: [us-east-1]\n"
    )
    aws.server_faults(credential_ttl=4, snapshot_delay=8)
    started = time.monotonic()
    plan = tmp_path / "plan.json"
    made = invoke(
        [
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--targets",
            str(targets),
            "-o",
            str(plan),
        ],
        capsys,
    )
    assert made.code == 0, made.stderr
    done = invoke(
        [
            "--sandbox",
            "decommission",
            "apply",
            str(plan),
            "--yes",
            "--backup",
            "snapshots",
            "--snapshot-delay",
            "1",
            "--terminate-delay",
            "0.5",
        ],
        capsys,
    )
    assert done.code == 0, done.stderr
    took = time.monotonic() - started
    counters = aws.fault_counters()
    assert took > 8, took  # outlived two credential lifetimes
    assert counters["expired_refusals"] == 0
    assert 3 <= counters["assume_role_calls"] <= took / 2 + 4, counters


@pytest.fixture
def proxy_home(aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault proxy in front of the test server, and an AWSOPS_HOME whose sandbox record
    sends ``awsops --sandbox`` through it."""
    home = tmp_path / "proxy-home"
    home.mkdir()
    monkeypatch.setenv("AWSOPS_HOME", str(home))
    info = manager.health(aws.endpoint)
    assert info is not None
    with FaultProxy(aws.endpoint) as proxy:
        state = manager.SandboxState(
            pid=int(info["pid"]),
            host="127.0.0.1",
            port=int(aws.endpoint.rsplit(":", 1)[1]),
            started_at=time.time(),
            log_file=str(home / "log"),
            proxy_port=proxy.port,
            faults="(set by the test)",
        )
        (home / "sandbox.json").write_text(json.dumps(asdict(state)))
        yield proxy


@pytest.mark.parametrize(
    ("delay", "error", "terminated"),
    [(1.0, 0.0, True), (1.0, 1.0, False), (600.0, 0.0, False)],
    ids=["backups-complete", "backups-fail", "backups-still-pending"],
)
def test_apply_terminates_only_after_backups_complete_judged_by_the_server(
    aws: Any,
    proxy_home: FaultProxy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    delay: float,
    error: float,
    terminated: bool,
) -> None:
    stopped = _stopped_long_ago(aws, 2)
    plan = tmp_path / "plan.json"
    argv = ["--sandbox", "decommission", "plan", "--older-than", "30d", "--regions", REGION]
    assert invoke([*argv, "-o", str(plan)], capsys).code == 0
    planned = {f["instance_id"] for f in _chosen(plan)}
    assert planned == stopped
    volumes = {iid: _deletable_volumes(aws, iid) for iid in planned}
    aws.backup_faults(snapshot_delay=delay, snapshot_error=error, seed=1)
    apply = ["--sandbox", "decommission", "apply", str(plan), "--yes", "--backup", "snapshots"]
    apply += ["--output", "json"]
    waits = ["--snapshot-delay", "0.25", "--snapshot-max-attempts", "8", "--terminate-delay", "0"]
    result = invoke([*apply, *waits], capsys)

    witness = {w["id"]: w for w in aws.backups()["snapshots"]}
    assert witness and {w["final_state"] for w in witness.values()} == (
        {"error"} if error else {"completed"}
    )
    assert all(w["final_at"] - w["created_at"] == pytest.approx(delay) for w in witness.values())
    ledger = proxy_home.stats.mutation_list()
    creates = [m for m in ledger if m.action.startswith("ec2:CreateSnapshot") and not m.dry_run]
    # every volume is deleted with its instance: one CreateSnapshots per instance
    assert sorted(m.params["InstanceSpecification.InstanceId"] for m in creates) == sorted(planned)
    snapshot_of = {  # snapshot id -> instance, from the CreateSnapshots calls
        sid: iid
        for m in creates
        if m.status == 200
        for vol, sid in m.snapshots
        for iid in planned
        if vol in volumes[iid]
    }
    assert set(snapshot_of) == set(witness)
    terminations = [
        (m.at, m.params[k])
        for m in ledger
        if m.action == "ec2:TerminateInstances" and not m.dry_run
        for k in m.params
        if k.startswith("InstanceId.")
    ]
    served = proxy_home.stats.served_states()
    if not terminated:
        assert result.code != 0
        assert terminations == []  # nothing reached the server
        states = {i["InstanceId"]: i["State"]["Name"] for i in _instances(aws)}
        assert all(states[i] == "stopped" for i in planned)
        return
    assert result.code == 0, result.stderr[-2000:]
    assert {iid for _, iid in terminations} == planned
    for at, iid in terminations:
        for sid, owner in snapshot_of.items():
            if owner == iid:
                assert at >= witness[sid]["final_at"], "terminated before its backup completed"
                completed = [t for state, t in served[sid] if state == "completed"]
                assert completed and completed[0] <= at, "terminated before completed was served"


def _chosen(plan: Path) -> list[dict[str, Any]]:
    """The instances a plan file terminates, as its JSON lists them."""
    data = json.loads(plan.read_text())
    return [f for target in data["targets"] for f in target["terminate"]]


def _stopped_long_ago(aws: Any, count: int) -> set[str]:
    """``count`` instances with two deletable volumes each, stopped 45 days ago (and as
    many stopped 3 days ago, so that the plan stays under a 50% blast-radius cap)."""
    ec2 = aws.client("ec2", REGION)
    disks = [
        {"DeviceName": name, "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}}
        for name in ("/dev/xvda", "/dev/sdf")
    ]
    made = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=2 * count, MaxCount=2 * count, BlockDeviceMappings=disks
    )
    ids = [i["InstanceId"] for i in made["Instances"]]
    ec2.stop_instances(InstanceIds=ids)
    now = dt.datetime.now(dt.timezone.utc)
    instances = [
        {"id": iid, "reason": ec2_reason(now - dt.timedelta(days=45 if n < count else 3))}
        for n, iid in enumerate(ids)
    ]
    manager.control(aws.server_url, "backdate", {"region": REGION, "instances": instances})
    return set(ids[:count])


def _instances(aws: Any) -> list[dict[str, Any]]:
    ec2 = aws.client("ec2", REGION)
    return [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]


def _deletable_volumes(aws: Any, iid: str) -> set[str]:
    (inst,) = [i for i in _instances(aws) if i["InstanceId"] == iid]
    return {
        m["Ebs"]["VolumeId"]
        for m in inst.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("DeleteOnTermination")
    }


def test_seed_shows_progress_on_a_terminal(aws: Any, sandbox_home: Path) -> None:
    """Seen: `sandbox seed` through the fault proxy was silent for over two minutes."""
    from tests.helpers import run_on_terminal

    drawn = run_on_terminal(
        ["sandbox", "seed", "--instances", "12", "--regions", "us-east-1,eu-west-1", "--no-buckets"]
    )
    assert "instances seeded" in drawn and "24/24" in drawn
