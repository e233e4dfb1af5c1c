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


@pytest.mark.parametrize(
    ("arn", "region"),
    [
        ("arn:aws-cn:iam::111111111111:role/ops", "cn-north-1"),
        ("arn:aws-cn:iam::111111111111:role/ops", "cn-northwest-1"),
        ("arn:aws-us-gov:iam::111111111111:role/path/ops", "us-gov-west-1"),
        ("arn:aws-iso:iam::111111111111:role/ops", "us-iso-east-1"),
        ("arn:aws:iam::111111111111:role/ops", "eu-central-2"),
    ],
)
def test_partitions_of_role_arns_and_regions(tmp_path: Path, arn: str, region: str) -> None:
    assert validate_role_arn(arn) == "111111111111"
    p = tmp_path / "t.yaml"
    p.write_text(f"accounts:\n  - role_arn: {arn}\n    regions: [{region}]\n")
    (spec,) = load_targets_file(p)
    assert spec.account_id == "111111111111" and spec.regions == (region,)


@pytest.mark.parametrize(
    ("arn", "region", "needle"),
    [
        (
            "arn:aws-cn:iam::111111111111:role/ops",
            "us-east-1",
            "partition aws, but the role is in aws-cn",
        ),
        ("arn:aws:iam::111111111111:role/ops", "us-gov-east-1", "partition aws-us-gov"),
        ("arn:awsx:iam::111111111111:role/ops", "us-east-1", "malformed role ARN"),
        ("arn:azure:iam::111111111111:role/ops", "us-east-1", "malformed role ARN"),
    ],
)
def test_partition_mismatches_are_refused(
    tmp_path: Path, arn: str, region: str, needle: str
) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(f"accounts:\n  - role_arn: {arn}\n    regions: [{region}]\n")
    with pytest.raises(UsageError) as info:
        load_targets_file(p)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_one_account_and_region_listed_twice_is_refused_naming_both(tmp_path: Path) -> None:
    """Seen: one account listed twice (two roles, or a role and none) was planned twice."""
    p = tmp_path / "t.yaml"
    p.write_text(
        "accounts:\n"
        "  - {account_id: '111111111111', regions: [us-east-1, eu-west-1]}\n"
        "  - {role_arn: 'arn:aws:iam::222222222222:role/ops', regions: [us-east-1]}\n"
        "  - {role_arn: 'arn:aws:iam::111111111111:role/other', regions: [eu-west-1]}\n"
    )
    with pytest.raises(UsageError) as info:
        load_targets_file(p)
    assert "accounts[1] and accounts[3] both cover account 111111111111 in eu-west-1" in str(
        info.value
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (b"protect_tags: [\xff\xfe]\n", "not UTF-8"),
        (b"plan_ttl_hours: .inf\n", "plan_ttl_hours must be a number"),
        (b"plan_ttl_hours: 1.0e300\n", "at most 168"),
        (b"plan_ttl_hours: 169\n", "at most 168"),
        (b"max_percent: 101\n", "max_percent must be a number"),
        (b"max_percent: .nan\n", "max_percent must be a number"),
        (b"batch_size: true\n", "batch_size must be a positive integer"),
        (b"min_older_than_days: 0\n", "min_older_than_days must be a number"),
        (b"protect_tags: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
        (b"older_than: 30d\n", "unknown key(s) older_than"),
    ],
)
def test_bad_decommission_settings_are_one_line(tmp_path: Path, text: bytes, needle: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(text)
    with pytest.raises(UsageError) as info:
        load_decommission_settings(p)
    assert needle in str(info.value) and str(p) in str(info.value)
    assert "\n" not in str(info.value)
