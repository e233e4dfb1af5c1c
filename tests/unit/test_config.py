from __future__ import annotations

from pathlib import Path

import pytest

from awsops.config import (
    ClientSettings,
    load_decommission_settings,
    load_targets_file,
    parse_region_list,
    validate_role_arn,
)
from awsops.errors import UsageError


def test_role_arn_validation() -> None:
    assert validate_role_arn("arn:aws:iam::111111111111:role/ops/Admin") == "111111111111"
    for bad in ("arn:aws:iam::1111:role/x", "arn:aws:iam::111111111111:user/x", "role/x", ""):
        with pytest.raises(UsageError, match="malformed role ARN"):
            validate_role_arn(bad)


def test_targets_file_ok(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(
        "accounts:\n"
        "  - account_id: '111111111111'\n"
        "    role_arn: arn:aws:iam::111111111111:role/ops\n"
        "    external_id: ext\n"
        "    name: prod\n"
        "    regions: [us-east-1, eu-west-1]\n"
        "  - role_arn: arn:aws:iam::222222222222:role/ops\n"
        "    regions: us-west-2\n"
    )
    specs = load_targets_file(p)
    assert [s.account_id for s in specs] == ["111111111111", "222222222222"]
    targets = [t for s in specs for t in s.targets()]
    assert [(t.account_id, t.region) for t in targets] == [
        ("111111111111", "us-east-1"),
        ("111111111111", "eu-west-1"),
        ("222222222222", "us-west-2"),
    ]
    assert targets[0].external_id == "ext" and targets[0].label == "prod/us-east-1"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("accounts: [", "not valid YAML"),
        ("just a string", "expected a mapping"),
        ("accounts: []", "non-empty list"),
        ("accounts:\n  - account_id: '12'\n    regions: [us-east-1]\n", "12 digits"),
        (
            "accounts:\n  - account_id: '111111111111'\n    role_arn: nope\n    regions: [us-east-1]\n",
            "malformed role ARN",
        ),
        (
            "accounts:\n  - account_id: '111111111111'\n    role_arn: arn:aws:iam::222222222222:role/x\n"
            "    regions: [us-east-1]\n",
            "not in account",
        ),
        ("accounts:\n  - account_id: '111111111111'\n    regions: [mars-1]\n", "not a region"),
        (
            "accounts:\n  - account_id: '111111111111'\n    regions: [us-east-1]\n    bogus: 1\n",
            "unknown key",
        ),
    ],
)
def test_targets_file_errors_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(text)
    with pytest.raises(UsageError) as info:
        load_targets_file(p)
    assert needle in str(info.value)
    assert "\n" not in info.value.one_line()


def test_missing_targets_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        load_targets_file(tmp_path / "nope.yaml")


def test_region_list_and_settings() -> None:
    assert parse_region_list("us-east-1, eu-west-1,us-east-1") == ["us-east-1", "eu-west-1"]
    assert parse_region_list(None) == []
    with pytest.raises(UsageError):
        ClientSettings(retry_mode="bogus")


def test_decommission_settings(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("protect_tags: [keep]\naccount_denylist: ['111111111111']\nbatch_size: 10\n")
    s = load_decommission_settings(p)
    assert s.protect_tags == ("keep",) and s.batch_size == 10
    p.write_text("batch_size: -1\n")
    with pytest.raises(UsageError, match="positive integer"):
        load_decommission_settings(p)
    p.write_text("whatever: 1\n")
    with pytest.raises(UsageError, match="unknown key"):
        load_decommission_settings(p)
