"""Secrets: with real assumed-role credentials (moto STS hands out ASIA... key ids,
secret keys and session tokens), ``--debug`` runs of inventory, plan and apply through
a faulty network never print or write any of them: not on stdout or stderr, not in the
plan, the journal or any other file."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from awsops.config import ClientSettings
from awsops.sandbox.faults import CallInfo
from awsops.sandbox.seed import seed_demo
from awsops.session import AssumeRoleSpec
from tests.helpers import CliResult, run_cli
from tests.reliability.conftest import FIGURES, Proxied, record_proxy
from tests.reliability.fleet import REGION

ACCOUNT = "111111111111"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ops"
_CRED_RE = re.compile(rb"<(AccessKeyId|SecretAccessKey|SessionToken)>([^<]+)</\1>")


class CredentialTap:
    """Collects every credential the server hands out in AssumeRole answers."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.answers = 0
        self._lock = threading.Lock()

    def __call__(self, call: CallInfo, status: int, body: bytes) -> None:
        if call.name != "sts:AssumeRole" or status != 200:
            return
        found = {m.group(2).decode() for m in _CRED_RE.finditer(body)}
        with self._lock:
            self.answers += 1
            self.secrets |= found


def _seed_role_account(proxied: Proxied) -> None:
    settings = ClientSettings(endpoint_url=proxied.aws.endpoint, max_attempts=3)
    from awsops.session import SessionFactory

    factory = SessionFactory(
        region=REGION, settings=settings, static_credentials=("testing", "testing")
    )
    session = factory.assume(AssumeRoleSpec(ROLE))
    seed_demo(session, settings, proxied.aws.server_url, [REGION], 24, with_buckets=False)


def _texts(results: list[CliResult], *dirs: Path) -> dict[str, str]:
    out = {f"run {n} stdout": r.stdout for n, r in enumerate(results)}
    out.update({f"run {n} stderr": r.stderr for n, r in enumerate(results)})
    for base in dirs:
        for path in base.rglob("*"):
            if path.is_file():
                out[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return out


def _leaks(secrets: set[str], texts: dict[str, str]) -> list[str]:
    return [f"{where}: {s[:8]}..." for where, text in texts.items() for s in secrets if s in text]


@pytest.fixture
def role_setup(proxied: Proxied, proxy_home: Path, tmp_path: Path) -> tuple[Path, CredentialTap]:
    _seed_role_account(proxied)
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        f"accounts:\n  - account_id: '{ACCOUNT}'\n    role_arn: {ROLE}\n    regions: [{REGION}]\n"
    )
    tap = CredentialTap()
    proxied.proxy.taps.append(tap)
    return targets, tap


@pytest.mark.slow
def test_no_credential_is_ever_printed_or_written(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, role_setup: tuple[Path, CredentialTap]
) -> None:
    targets, tap = role_setup
    proxied.proxy.set_spec("throttle=0.1,error5xx=0.05,seed=77")
    plan = tmp_path / "plan.json"
    env = dict(os.environ)
    runs = [
        [
            "--debug",
            "--sandbox",
            "inventory",
            "ec2-instances",
            "--targets",
            str(targets),
            "--output",
            "jsonl",
        ],
        [
            "--debug",
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
        [
            "--debug",
            "--sandbox",
            "decommission",
            "apply",
            str(plan),
            "--yes",
            "--snapshot-delay",
            "0",
            "--terminate-delay",
            "0",
            "--output",
            "json",
        ],
    ]
    results = [run_cli(args, env=env) for args in runs]
    for args, result in zip(runs, results, strict=True):
        failed = [ln for ln in result.stdout.splitlines() if "failed" in ln or "reason" in ln]
        assert result.code == 0, (args, failed[:20], result.stderr[-1500:])

    texts = _texts(results, tmp_path, proxy_home)
    assert tap.answers >= 3 and len(tap.secrets) >= 9  # key id, secret, token per run
    assert any(s.startswith("ASIA") for s in tap.secrets)
    debug = "\n".join(r.stderr for r in results)
    assert "botocore" in debug and "****" in debug  # debug logs were on, and redacted
    # The plan and the journal (in the awsops home, by plan id) were written and searched.
    journals = [str(p) for p in proxy_home.glob("plans/*/journal.jsonl")]
    assert plan.exists() and journals and all(j in texts for j in journals), journals
    assert not _leaks(tap.secrets, texts)
    record_proxy(proxied.proxy)
    FIGURES["secrets: credentials watched"] += len(tap.secrets)
    FIGURES["secrets: texts and files searched"] += len(texts)
    FIGURES["secrets: bytes searched"] += sum(len(t) for t in texts.values())


def test_truncated_sts_answer_does_not_leak_in_the_error_line(
    proxied: Proxied, proxy_home: Path, tmp_path: Path, role_setup: tuple[Path, CredentialTap]
) -> None:
    targets, tap = role_setup
    proxied.proxy.set_spec("truncate=1,only=AssumeRole")
    # Every AssumeRole answer is cut: two attempts end in the same error line as ten,
    # without eight more backoffs.
    result = run_cli(
        [
            "--max-attempts",
            "2",
            "--sandbox",
            "inventory",
            "ec2-instances",
            "--targets",
            str(targets),
        ],
        env=dict(os.environ),
    )
    assert result.code != 0
    assert tap.secrets
    assert not _leaks(tap.secrets, _texts([result], tmp_path))
