"""Bad input, table-driven: each case gives one ``error:`` line and a non-zero exit, and
no API call that changes anything reaches AWS (counted at the fault proxy), and no
instance changes state.

The fleet is seeded and planned once for the module: every case checks that it changed
nothing, so they can share it. Each case gets its own copy of the plan and of the awsops
home the plan was made in (sandbox record, plan key), as if it had made them alone.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from awsops.decommission.planfile import canonical, checksum
from awsops.decommission.signing import signing_key
from tests.helpers import assert_one_line_error, invoke
from tests.reliability.apply_world import make_plan
from tests.reliability.conftest import FIGURES, Proxied
from tests.reliability.fleet import REGION, Instance, seed_fleet, truth

Setup = Callable[[Path, Path], list[str]]  # (tmp dir, valid plan) -> CLI arguments


def _file(name: str, text: str) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        path = tmp / name
        path.write_text(text)
        return path

    return write


def _inventory_targets(text: str) -> Setup:
    def args(tmp: Path, plan: Path) -> list[str]:
        path = _file("targets.yaml", text)(tmp)
        return ["--sandbox", "inventory", "ec2-instances", "--targets", str(path)]

    return args


def _edited_plan(edit: Callable[[dict[str, object]], None], reseal: bool) -> Setup:
    def args(tmp: Path, plan: Path) -> list[str]:
        raw = json.loads(plan.read_text())
        edit(raw)
        if reseal:  # as the holder of the plan key could
            body = {k: v for k, v in raw.items() if k not in ("checksum", "signature")}
            raw["checksum"] = checksum(body)
            raw["signature"] = signing_key().sign(canonical(body))
        bad = tmp / "edited-plan.json"
        bad.write_text(json.dumps(raw))
        return ["--sandbox", "decommission", "apply", str(bad), "--yes"]

    return args


def _truncated(tmp: Path, plan: Path) -> list[str]:
    text = plan.read_text()
    bad = tmp / "truncated-plan.json"
    bad.write_text(text[: len(text) // 2])
    return ["--sandbox", "decommission", "apply", str(bad), "--yes"]


def _set(key: str, value: object) -> Callable[[dict[str, object]], None]:
    def edit(raw: dict[str, object]) -> None:
        raw[key] = value

    return edit


def _swap_instance(raw: dict[str, object]) -> None:
    targets = raw["targets"]
    assert isinstance(targets, list)
    targets[0]["terminate"][0]["instance_id"] = "i-0123456789abcdef0"


def _fixed(*argv: str) -> Setup:
    """Fixed arguments; ``{tmp}`` stands for the test's own temporary directory."""
    return lambda tmp, plan: [a.replace("{tmp}", str(tmp)) for a in argv]


def _apply_valid(tmp: Path, plan: Path) -> list[str]:
    return ["--sandbox", "decommission", "apply", str(plan), "--yes"]


PAST = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()


@dataclass(frozen=True)
class Case:
    setup: Setup
    needle: str = ""
    faults: str = ""
    gap: str = ""  # a known gap elsewhere: the case is expected to fail until fixed


CASES = {
    "targets: not YAML": Case(_inventory_targets("accounts: [unclosed\n"), "not valid YAML"),
    "targets: short account id": Case(
        _inventory_targets("accounts:\n  - account_id: '12'\n    regions: [us-east-1]\n"),
        "12 digits",
    ),
    "targets: user ARN as role": Case(
        _inventory_targets(
            "accounts:\n  - role_arn: arn:aws:iam::111111111111:user/x\n    regions: [us-east-1]\n"
        ),
        "malformed role ARN",
    ),
    "targets: unknown key": Case(
        _inventory_targets("accounts:\n  - account_id: '111111111111'\n    regoins: [us-east-1]\n"),
        "unknown key",
    ),
    "targets: bad region": Case(
        _inventory_targets("accounts:\n  - account_id: '111111111111'\n    regions: [mars]\n"),
        "not a region name",
    ),
    "targets: missing file": Case(
        _fixed("--sandbox", "inventory", "ec2-instances", "--targets", "/nonexistent/t.yaml"),
        "not found",
    ),
    "plan: truncated": Case(_truncated, "not valid JSON"),
    "plan: schema version 99": Case(_edited_plan(_set("schema_version", 99), False), "schema"),
    "plan: wrong checksum": Case(_edited_plan(_swap_instance, False), "checksum"),
    "plan: expired": Case(_edited_plan(_set("expires_at", PAST), True), "expired"),
    "plan: not a plan": Case(
        lambda tmp, plan: [
            "--sandbox",
            "decommission",
            "apply",
            str(_file("other.json", '{"hello": 1}')(tmp)),
            "--yes",
        ],
        "not an awsops decommission plan",
    ),
    "plan: missing file": Case(
        _fixed("--sandbox", "decommission", "apply", "/nonexistent/plan.json", "--yes"),
        "not found",
    ),
    "region: malformed in --regions": Case(
        _fixed("--sandbox", "inventory", "ec2-instances", "--regions", "us-east-1,mars"),
        "unknown region",
    ),
    "region: malformed for plan": Case(
        _fixed(
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            "moon",
            "-o",
            "{tmp}/never-written-plan.json",
        ),
        "unknown region",
    ),
    "filter: no Values": Case(
        _fixed("--sandbox", "inventory", "ec2-instances", "--filters", "Name=instance-state-name")
    ),
    "filter: not shorthand": Case(
        _fixed("--sandbox", "inventory", "ec2-instances", "--filters", "nonsense")
    ),
    "JMESPath: unclosed": Case(
        _fixed("--sandbox", "inventory", "ec2-instances", "--query", "Reservations[."),
        "JMESPath",
    ),
    "older-than: not a duration": Case(
        _fixed(
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30 parsecs",
            "-o",
            "{tmp}/never-written-plan.json",
        )
    ),
    "faults: bad spec": Case(_fixed("sandbox", "up", "--faults", "throttle=2"), "between 0 and 1"),
    "credentials expired: inventory": Case(
        _fixed("--sandbox", "inventory", "ec2-instances", "--regions", REGION),
        "expired",
        faults="expired=testing",
    ),
    "credentials expired: plan": Case(
        _fixed(
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            REGION,
            "-o",
            "{tmp}/expired-creds-plan.json",
        ),
        "expired",
        faults="expired=testing",
    ),
    "credentials expired: apply": Case(_apply_valid, "expired", faults="expired=testing"),
}


@dataclass(frozen=True)
class Seeded:
    before: dict[str, Instance]
    plan: Path


@pytest.fixture(scope="module")
def seeded(
    module_proxied: Proxied, module_proxy_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Seeded:
    before = seed_fleet(module_proxied, 24)
    plan = tmp_path_factory.mktemp("bad-input") / "plan.json"
    make_plan(plan, [REGION])
    return Seeded(before, plan)


@pytest.fixture
def case_home(
    seeded: Seeded, module_proxy_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = Path(shutil.copytree(module_proxy_home, tmp_path / "awsops-home"))
    monkeypatch.setenv("AWSOPS_HOME", str(home))
    return home


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=c.gap)) if c.gap else n
        for n, c in CASES.items()
    ],
)
def test_bad_input_is_refused_cleanly(
    name: str,
    seeded: Seeded,
    case_home: Path,
    module_proxied: Proxied,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[name]
    before = seeded.before
    plan = Path(shutil.copy(seeded.plan, tmp_path / "plan.json"))
    args = case.setup(tmp_path, plan)
    proxy = module_proxied.proxy
    proxy.stats.reset()
    proxy.set_spec(case.faults)

    result = invoke(args, capsys)

    assert_one_line_error(result, *([case.needle] if case.needle else []))
    snap = proxy.stats.snapshot()
    mutating = [
        a
        for a in snap["calls"]
        if not a.startswith("sts:")
        and not a.split(":", 1)[1].startswith(("Describe", "Get", "List"))
    ]
    assert not mutating, mutating
    assert not proxy.stats.mutation_list()
    assert {i: x.state for i, x in truth(module_proxied).items()} == {
        i: x.state for i, x in before.items()
    }
    FIGURES["bad input: cases refused"] += 1
    FIGURES["bad input: read-only calls made"] += snap["total_calls"]
