"""``awsops wait`` and friends in a subprocess: exit codes, quiet pipes, a live terminal line."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.helpers import assert_one_line_error, run_cli


def _instance(aws) -> str:  # type: ignore[no-untyped-def]
    r = aws.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    return str(r["Instances"][0]["InstanceId"])


def test_wait_exit_codes_in_a_subprocess(sandbox_home: Path, aws) -> None:  # type: ignore[no-untyped-def]
    iid = _instance(aws)
    ok = run_cli(["wait", "ec2", "instance-running", "--instance-ids", iid, "--sandbox"])
    assert ok.code == 0, ok.stderr
    assert ok.stderr == ""  # no progress line when stderr is not a terminal
    assert ok.stdout.startswith("ec2 instance-running: success after 1 attempt(s)")
    timeout = run_cli(
        [
            *("wait", "ec2", "instance-stopped", "--instance-ids", iid, "--sandbox"),
            *("--delay", "0.01", "--polls", "2"),
        ]
    )
    assert timeout.code == 4
    assert_one_line_error(timeout, "timed out after 2 attempt(s)", iid)


def test_live_progress_line_on_a_terminal(sandbox_home: Path, aws) -> None:  # type: ignore[no-untyped-def]
    iid = _instance(aws)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "awsops", "wait", "ec2", "instance-stopped"),
                *("--instance-ids", iid, "--delay", "0.3", "--polls", "3", "--sandbox"),
            ],
            stdout=subprocess.PIPE,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
            timeout=120,
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 4
    assert "ec2 instance-stopped" in screen and "attempt" in screen and "running=1" in screen
    assert "error: WaiterTimeout: waiter ec2 instance_stopped timed out after 3" in screen
