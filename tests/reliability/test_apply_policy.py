"""What was reviewed is the most that can happen, and apply's own policy is a floor:
plans edited and re-signed by the holder of the plan key, caps recorded at plan time,
an apply-time config, names made to mislead a reviewer, and file permissions. Judged
from the fault proxy's ledger and moto's state.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from awsops.decommission.planfile import canonical, checksum
from awsops.decommission.signing import signing_key
from tests.reliability.apply_world import (
    Ledger,
    apply_args,
    cli,
    make_plan,
    planned,
    rows,
    run,
    seed,
    truth,
)
from tests.reliability.conftest import Proxied

REGION = "us-east-1"


def _resign(path: Path, raw: dict[str, Any]) -> Path:
    """Write ``raw`` as the holder of this host's plan key would: checksum and signature
    made again."""
    body = {k: v for k, v in raw.items() if k not in ("checksum", "signature")}
    raw = {**body, "checksum": checksum(body), "signature": signing_key().sign(canonical(body))}
    path.write_text(json.dumps(raw, indent=2))
    return path


def _move_to_terminate(raw: dict[str, Any], ids: set[str]) -> None:
    target = raw["targets"][0]
    for entry in list(target["skip"]):
        if entry["instance_id"] in ids:
            target["skip"].remove(entry)
            facts = {k: v for k, v in entry.items() if k not in ("skip_reason", "detail")}
            target["terminate"].append(facts)


def test_a_key_holder_cannot_widen_a_plan_past_apply_policy(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    """Seen: with the checksum recomputed, lowering older_than_days to 0.0001 terminated
    an instance stopped 3 days ago. Signed edits by the key holder are bounded by apply's
    own policy: its minimum age (config), protection tags, exclusions, termination
    protection and Auto Scaling re-checked live."""
    before = seed(proxied, [REGION], 24)
    raw = make_plan(tmp_path / "plan.json", [REGION])
    by_cat: dict[str, list[str]] = {}
    for iid, inst in before.items():
        by_cat.setdefault(inst.category, []).append(iid)
    smuggled = {
        by_cat["stopped-3d"][0],
        by_cat["tag-protected"][0],
        by_cat["termination-protected"][0],
        by_cat["asg-member"][0],
    }
    excluded = sorted(planned(raw))[0]
    _move_to_terminate(raw, smuggled)
    raw["criteria"]["older_than_days"] = 0.0001
    raw["criteria"]["protect_tags"] = []
    edited = _resign(tmp_path / "edited.json", raw)
    config = tmp_path / "apply.yaml"
    config.write_text(f"min_older_than_days: 7\nexclude_instance_ids: [{excluded}]\n")

    result = run(apply_args(edited, "--config", str(config)))
    assert result.returncode == 0, result.stderr[-3000:]

    led = Ledger.read(proxied.proxy.stats.mutation_list())
    after = truth(proxied, [REGION])
    for iid in smuggled | {excluded}:
        assert after[iid].state == before[iid].state, (before[iid].category, after[iid].state)
        assert iid not in led.effective_terminations
    assert set(led.effective_terminations) == planned(raw) - smuggled - {excluded}
    reasons = {r["instance_id"]: r["reason"] for r in rows(result.stdout)}
    assert "stopped-too-recently" in reasons[by_cat["stopped-3d"][0]]
    assert "protection-tag" in reasons[by_cat["tag-protected"][0]]
    assert "termination-protection" in reasons[by_cat["termination-protected"][0]]
    assert "auto-scaling-group" in reasons[by_cat["asg-member"][0]]
    assert "excluded-by-config" in reasons[excluded]


def test_caps_count_live_stopped_instances_and_plan_caps_hold_without_options(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    """Seen: `examined = 10**9` in a plan got it past --max-percent 10. Caps set at plan
    time are enforced at apply with no option or config."""
    seed(proxied, [REGION], 24)
    raw = make_plan(tmp_path / "plan.json", [REGION])
    raw["targets"][0]["examined"] = 10**9
    inflated = _resign(tmp_path / "inflated.json", raw)
    r = run(apply_args(inflated, "--max-percent", "10"))
    assert r.returncode == 3, r.stderr
    stopped = sum(1 for x in truth(proxied, [REGION]).values() if x.state == "stopped")
    assert f"{len(planned(raw))} of the {stopped} stopped instances" in r.stderr

    capped = make_plan(tmp_path / "capped.json", [REGION], "--max-instances", "2")
    assert capped["limits"]["max_instances"] == 2
    r = run(apply_args(tmp_path / "capped.json"))
    assert r.returncode == 3, r.stderr
    assert "more than the cap of 2" in r.stderr
    r = run(apply_args(tmp_path / "capped.json", "--max-instances", "100"))
    assert r.returncode == 3, r.stderr  # an option cannot raise the plan's cap
    # limits from the config file at plan time are recorded the same way
    config = tmp_path / "limits.yaml"
    config.write_text("max_instances: 3\nmax_percent: 20\n")
    from_config = make_plan(tmp_path / "config.json", [REGION], "--config", str(config))
    assert from_config["limits"] == {"max_instances": 3, "max_percent": 20.0}
    r = run(apply_args(tmp_path / "config.json"))
    assert r.returncode == 3, r.stderr
    assert "more than the cap of 3" in r.stderr or "cap of 20%" in r.stderr
    assert not proxied.proxy.stats.mutation_list() or all(
        m.status >= 300 for m in proxied.proxy.stats.mutation_list()
    )


def test_names_made_to_mislead_are_shown_escaped(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    """Seen: names with control or bidirectional characters (U+202E) were printed raw."""
    before = seed(proxied, [REGION], 24)
    victim = sorted(i for i, x in before.items() if x.category == "stopped-200d")[0]
    name = "db-\u202egnp.exe\u2066-prod\u200b"
    proxied.direct("ec2", REGION).create_tags(
        Resources=[victim], Tags=[{"Key": "Name", "Value": name}]
    )
    r = run(
        cli(
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            REGION,
            "-o",
            str(tmp_path / "plan.json"),
        )
    )
    assert r.returncode == 0, r.stderr
    for raw, shown in (("\u202e", "\\u202e"), ("\u2066", "\\u2066"), ("\u200b", "\\u200b")):
        assert raw not in r.stdout and shown in r.stdout
    assert victim in r.stdout
    applied = run(
        apply_args(tmp_path / "plan.json", "--dry-run", "--output", "table"), env={"COLUMNS": "200"}
    )
    assert applied.returncode == 0, applied.stderr
    assert "\u202e" not in applied.stdout and "\\u202e" in applied.stdout


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_plans_journals_and_keys_are_private_whatever_the_umask(
    proxied: Proxied, proxy_home: Path, tmp_path: Path
) -> None:
    """Seen: plans (which hold external ids and role ARNs) written 0644, 0664 under
    umask 002."""
    seed(proxied, [REGION], 12)
    home = tmp_path / "fresh-home"
    env = {**os.environ, "AWSOPS_HOME": str(home)}
    home.mkdir(mode=0o775)
    (home / "sandbox.json").write_text((proxy_home / "sandbox.json").read_text())
    plan = tmp_path / "plan.json"

    def umask_002() -> None:
        os.umask(0o002)

    for args in (
        cli(
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            REGION,
            "-o",
            str(plan),
        ),
        apply_args(plan),
    ):
        r = subprocess.run(
            args, capture_output=True, text=True, env=env, timeout=300, preexec_fn=umask_002
        )
        assert r.returncode == 0, r.stderr[-2000:]
    plan_id = json.loads(plan.read_text())["plan_id"]
    assert _mode(plan) == 0o600
    assert _mode(home) == 0o700
    assert _mode(home / "plan-signing.key") == 0o600
    assert _mode(home / "plans") == 0o700
    assert _mode(home / "plans" / plan_id) == 0o700
    assert _mode(home / "plans" / plan_id / "journal.jsonl") == 0o600
