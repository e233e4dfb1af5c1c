"""Targets from --regions and --targets files, with 'all' expanded per account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from awsops.cli.context import AppContext, enabled_regions


def test_regions_all_expands_to_enabled_regions(aws: Any) -> None:
    app = AppContext(region="us-east-1", endpoint_url=aws.endpoint)
    targets = app.targets("all")
    regions = [t.region for t in targets]
    assert regions == enabled_regions(app.factory()) and "eu-west-1" in regions
    assert regions == sorted(set(regions))


def test_targets_file_all_regions_are_the_accounts_own(aws: Any, tmp_path: Path) -> None:
    f = tmp_path / "targets.yaml"
    f.write_text(
        "accounts:\n"
        "  - role_arn: arn:aws:iam::111111111111:role/ops\n"
        "    name: prod\n"
        "    regions: all\n"
        "  - role_arn: arn:aws:iam::222222222222:role/ops\n"
        "    regions: [eu-west-1]\n"
    )
    app = AppContext(region="us-east-1", endpoint_url=aws.endpoint)
    targets = app.targets(None, str(f))
    prod = [t for t in targets if t.account_id == "111111111111"]
    assert len(prod) > 10 and all(t.role_arn and t.name == "prod" for t in prod)
    assert [(t.account_id, t.region) for t in targets if t.account_id == "222222222222"] == [
        ("222222222222", "eu-west-1")
    ]
