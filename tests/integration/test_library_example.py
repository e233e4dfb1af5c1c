"""The README's library examples run as written: against the sandbox, and through a
profile whose config names the sandbox as its endpoint (assumed-role sessions must go
there too: the suite's guard refuses any other address)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest

from awsops.errors import UsageError
from awsops.session import AssumeRoleSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The library", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _stopped_in_role_account(aws: Any, region: str) -> list[str]:
    """Stopped instances in account 111111111111, made through the example's role."""
    factory = aws.factory(region)
    session = factory.assume(AssumeRoleSpec("arn:aws:iam::111111111111:role/ops"), region)
    from awsops.clients import make_client

    ec2 = make_client(session, "ec2", region, aws.settings)
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)["Instances"]
    ]
    ec2.stop_instances(InstanceIds=ids)
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)  # running: not listed
    return ids


def _run(code: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    return out.getvalue().split()


def test_the_sandbox_example_runs_as_written(aws: Any, sandbox_home: Path) -> None:
    examples = _examples()
    assert len(examples) == 2
    stopped = _stopped_in_role_account(aws, "eu-west-1")
    assert sorted(_run(examples[1])) == sorted(stopped)


def test_the_profile_example_runs_as_written_and_its_endpoint_is_honoured(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen: an assumed-role session ignored the base profile's endpoint_url and sent a
    request toward the real EC2 endpoint."""
    config = tmp_path / "config"
    config.write_text(f"[profile ops]\nregion = eu-west-1\nendpoint_url = {aws.endpoint}\n")
    creds = tmp_path / "credentials"
    creds.write_text("[ops]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    stopped = _stopped_in_role_account(aws, "eu-west-1")
    assert sorted(_run(_examples()[0])) == sorted(stopped)


def test_a_short_external_id_is_a_clear_error() -> None:
    with pytest.raises(UsageError) as info:
        AssumeRoleSpec("arn:aws:iam::111111111111:role/ops", external_id="x")
    assert "2 to 1224 characters" in str(info.value) and "\n" not in str(info.value)
