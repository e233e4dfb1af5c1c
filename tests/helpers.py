"""Helpers shared by the test tiers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> CliResult:
    """Run ``awsops`` in a subprocess (no terminal: stdin/stdout are pipes)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "awsops", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input if input is not None else "",
        cwd=cwd,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def invoke(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """Run the CLI in-process (fast); SystemExit gives the exit code."""
    from awsops.cli.main import main

    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    """A clean failure: non-zero exit, one ``error:`` line, no traceback."""
    assert result.code != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:") or ln.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def run_on_terminal(
    args: list[str],
    timeout: float = 120,
    answer: str | None = None,
    prompt: str = "Type ",
    expect_code: int = 0,
) -> str:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; everything it
    drew. With ``answer``, it is typed (and Enter) once ``prompt`` appears."""
    import pty
    import re
    import select
    import time

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "awsops", *args],
        stdin=follower if answer is not None else subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks: list[bytes] = []
    typed = answer is None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
            if not typed and prompt.encode() in b"".join(chunks):
                os.write(leader, (str(answer) + "\r").encode())
                typed = True
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(leader)
    drawn = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == expect_code, (proc.returncode, drawn[-3000:])
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
