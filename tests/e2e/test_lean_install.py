"""The library and the CLI need no moto: it is the ``sandbox`` extra. The wheel's
metadata is checked, and the CLI is run with ``moto`` made unimportable."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BLOCK_MOTO = """
import sys
sys.modules["moto"] = None  # as if it were not installed: importing it fails
from awsops.cli.main import main
main(sys.argv[1:])
"""


def _without_moto(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_MOTO, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "AWSOPS_HOME": str(home)},
    )


def test_moto_is_only_in_the_sandbox_extra(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("awsops-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith("METADATA"))
        meta = email.message_from_bytes(zf.read(name))
    requires = meta.get_all("Requires-Dist") or []
    moto = [r for r in requires if r.lower().startswith("moto")]
    assert moto and all('extra == "sandbox"' in r for r in moto), moto
    assert "sandbox" in (meta.get_all("Provides-Extra") or [])
    plain = [r.split(";")[0].split(">")[0].strip().lower() for r in requires if "extra" not in r]
    assert sorted(plain) == ["boto3", "botocore", "click", "jmespath", "pyyaml", "rich"]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["inventory", "--help"],
        ["decommission", "plan", "--help"],
        ["wait", "--help"],
    ],
)
def test_the_cli_runs_without_moto(tmp_path: Path, args: list[str]) -> None:
    r = _without_moto(*args, home=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


def test_sandbox_up_without_moto_says_how_to_install_it(tmp_path: Path) -> None:
    r = _without_moto("sandbox", "up", home=tmp_path)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        "error: the sandbox needs moto, which is not installed: pip install 'awsops[sandbox]'"
    ]
    assert not (tmp_path / "sandbox.json").exists()
