"""The CLI's foundation contract: help, sandbox commands, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, invoke, run_cli


def test_help_lists_commands() -> None:
    r = run_cli(["--help"])
    assert r.code == 0, r.stderr
    listed = r.stdout.split("Commands:", 1)[1].split()
    for command in ("decommission", "ec2", "inventory", "rds", "sandbox", "wait"):
        assert command in listed, (command, r.stdout)
        sub = run_cli([command, "--help"])
        assert sub.code == 0 and f"Usage: awsops {command}" in sub.stdout, sub


def test_sandbox_lifecycle_in_a_fresh_home(tmp_path: Path) -> None:
    env = {"AWSOPS_HOME": str(tmp_path)}
    assert run_cli(["sandbox", "status"], env).code == 1
    up = run_cli(["sandbox", "up"], env, timeout=120)
    try:
        assert up.code == 0, up.stderr
        assert "http://127.0.0.1:" in up.stdout
        st = run_cli(["sandbox", "status"], env)
        assert st.code == 0 and "running" in st.stdout
        seed = run_cli(
            ["sandbox", "seed", "--instances", "12", "--regions", "us-west-2", "--no-buckets"], env
        )
        assert seed.code == 0, seed.stderr
        assert "12 instances" in seed.stdout
    finally:
        down = run_cli(["sandbox", "down"], env)
    assert down.code == 0 and "stopped" in down.stdout
    assert run_cli(["sandbox", "status"], env).code == 1


def test_seed_without_sandbox_is_one_line_error(tmp_path: Path) -> None:
    r = run_cli(["sandbox", "seed"], {"AWSOPS_HOME": str(tmp_path)})
    assert_one_line_error(r, "no sandbox is running")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--region", "mars-east-1", "sandbox", "seed"], "unknown region"),
    ],
)
def test_bad_input_one_line(
    args: list[str], needle: str, sandbox_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = invoke(args, capsys)
    assert_one_line_error(r, needle)


def test_shell_completion_as_documented() -> None:
    script = run_cli([], env={"_AWSOPS_COMPLETE": "bash_source"})
    assert script.code == 0 and "_awsops_completion" in script.stdout
    done = run_cli(
        [],
        env={"_AWSOPS_COMPLETE": "bash_complete", "COMP_WORDS": "awsops decom", "COMP_CWORD": "1"},
    )
    assert done.stdout.split() == ["plain,decommission"], done
