"""``awsops inventory`` in a subprocess: piped output is JSON lines, the summary and
errors go to stderr, and nothing else (no progress bar) is written when not a terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import run_cli


def test_piped_output_is_jsonl_with_summary_on_stderr(aws: Any, sandbox_home: Path) -> None:
    ec2 = aws.client("ec2")
    made = {
        i["InstanceId"]
        for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=4, MaxCount=4)["Instances"]
    }
    r = run_cli(["inventory", "ec2-instances", "--sandbox"], {"AWSOPS_HOME": str(sandbox_home)})
    assert r.code == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert {rec["instance_id"] for rec in records} == made
    assert all(rec["region"] == "us-east-1" for rec in records)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # only the summary: no progress bar when piped
    assert lines[0].startswith("inventory ec2-instances: 4 items, 1 pages, 2 API calls, 1 targets")


def test_help_names_kinds_and_the_cost_of_attributes() -> None:
    r = run_cli(["inventory", "--help"])
    assert r.code == 0
    for kind in ("ec2-instances", "ebs-volumes", "ebs-snapshots", "amis", "s3-objects"):
        assert kind in r.stdout
    assert "one extra API call per" in " ".join(r.stdout.split())
