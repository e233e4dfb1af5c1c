"""Plans and inputs that ``decommission plan`` and ``apply`` must refuse: one ``error:``
line naming the file or option, exit 2, no traceback, and nothing changed (no mutating
call reaches the fault proxy; moto's instances as they were).

One fleet and one plan serve the whole module, since no case may change anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from awsops.decommission.planfile import canonical, checksum
from awsops.decommission.signing import KEY_ENV, SigningKey
from awsops.sandbox.faults import FaultProxy
from awsops.sandbox.manager import reset
from tests.reliability.apply_world import cli, make_plan, run, seed, truth

REGION = "us-east-1"
KEY = "k" * 40  # the plan key of this module's "host" (AWSOPS_PLAN_KEY)


@dataclass
class Bench:
    proxy: FaultProxy
    home: Path
    tmp: Path
    plan: Path
    raw: dict[str, Any]
    env: dict[str, str]
    states: dict[str, str]
    moto: str


@pytest.fixture(scope="module")
def bench(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    from tests.conftest import Aws
    from tests.reliability.conftest import Proxied

    reset(moto_server)
    tmp = tmp_path_factory.mktemp("refusals")
    home = tmp / "home"
    home.mkdir(mode=0o700)
    with FaultProxy(moto_server) as proxy:
        proxied = Proxied(proxy, Aws(moto_server, moto_server))
        fleet = seed(proxied, [REGION], 24)
        from awsops.sandbox import manager

        info = manager.health(moto_server)
        assert info is not None
        (home / "sandbox.json").write_text(
            json.dumps(
                {
                    "pid": int(info["pid"]),
                    "host": "127.0.0.1",
                    "port": int(moto_server.rsplit(":", 1)[1]),
                    "started_at": 0.0,
                    "log_file": str(home / "log"),
                    "proxy_pid": None,
                    "proxy_port": proxy.port,
                    "faults": "(set by the test)",
                }
            )
        )
        env = {"AWSOPS_HOME": str(home), KEY_ENV: KEY}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            plan = tmp / "plan.json"
            raw = make_plan(plan, [REGION])
            yield Bench(
                proxy,
                home,
                tmp,
                plan,
                raw,
                env,
                {i: x.state for i, x in fleet.items()},
                moto_server,
            )
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _write(b: Bench, name: str, text: str | bytes) -> Path:
    path = b.tmp / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _edited(b: Bench, edit: Callable[[dict[str, Any]], None], sign: str | None) -> Path:
    """The module's plan edited; its checksum made again, and its signature too with
    ``sign="key"`` (the holder of the plan key), dropped with ``sign="none"``."""
    raw = json.loads(json.dumps(b.raw))
    edit(raw)
    body = {k: v for k, v in raw.items() if k not in ("checksum", "signature")}
    raw["checksum"] = checksum(body)
    if sign == "key":
        raw["signature"] = SigningKey(KEY.encode(), "test").sign(canonical(body))
    elif sign == "none":
        raw.pop("signature")
    return _write(b, "edited.json", json.dumps(raw))


def _apply(path: Path, *extra: str) -> list[str]:
    return cli("--sandbox", "decommission", "apply", str(path), "--yes", *extra)


def _plan(b: Bench, *extra: str, out: str | None = None) -> list[str]:
    return cli(
        "--sandbox",
        "decommission",
        "plan",
        "--regions",
        REGION,
        "-o",
        out or str(b.tmp / "new-plan.json"),
        *extra,
    )


def _set(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        node: Any = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


Case = Callable[[Bench], list[str]]

CASES: dict[str, tuple[Case, str]] = {
    # the plan file
    "plan edited, checksum made again": (
        lambda b: _apply(_edited(b, _set("criteria", "older_than_days", value=0.0001), sign=None)),
        "signature mismatch",
    ),
    "plan unsigned": (lambda b: _apply(_edited(b, lambda r: None, sign="none")), "not signed"),
    "plan signed by the key holder to live until 2099": (
        lambda b: _apply(
            _edited(b, _set("expires_at", value="2099-01-01T00:00:00+00:00"), sign="key")
        ),
        "7 days",
    ),
    "plan nested 10,000 levels deep": (
        lambda b: _apply(_write(b, "deep.json", "[" * 10_000 + "]" * 10_000)),
        "nested too deeply",
    ),
    "plan not UTF-8": (
        lambda b: _apply(_write(b, "latin1.json", b'{"kind": "\xe9"}')),
        "not UTF-8",
    ),
    "plan made against the sandbox, applied elsewhere": (
        lambda b: cli("--endpoint-url", b.moto, "decommission", "apply", str(b.plan), "--yes"),
        "apply it there with: awsops --sandbox decommission apply {plan}",
    ),
    # the config file
    "config not UTF-8": (
        lambda b: _apply(b.plan, "--config", str(_write(b, "c.yaml", b"protect_tags: [\xff]\n"))),
        "c.yaml: not UTF-8",
    ),
    "config plan_ttl_hours .inf": (
        lambda b: _plan(
            b, "--older-than", "30d", "--config", str(_write(b, "c.yaml", "plan_ttl_hours: .inf\n"))
        ),
        "plan_ttl_hours must be a number",
    ),
    "config plan_ttl_hours 1e300": (
        lambda b: _plan(
            b,
            "--older-than",
            "30d",
            "--config",
            str(_write(b, "c.yaml", "plan_ttl_hours: 1.0e300\n")),
        ),
        "plan_ttl_hours must be a number",
    ),
    "config plan_ttl_hours as a string": (
        lambda b: _plan(
            b,
            "--older-than",
            "30d",
            "--config",
            str(_write(b, "c.yaml", "plan_ttl_hours: 1e300\n")),
        ),
        "plan_ttl_hours must be a number",
    ),
    "config batch_size: true": (
        lambda b: _apply(b.plan, "--config", str(_write(b, "c.yaml", "batch_size: true\n"))),
        "batch_size must be a positive integer",
    ),
    # options
    "--older-than in Arabic-Indic digits": (
        lambda b: _plan(b, "--older-than", "\u0663\u0660d"),
        "use a duration like 30d",
    ),
    "--older-than under a day": (lambda b: _plan(b, "--older-than", "12h"), "--allow-short"),
    "-o given a format name": (
        lambda b: _plan(b, "--older-than", "30d", out="json"),
        "did you mean --output json",
    ),
    "-o in a directory that does not exist": (
        lambda b: _plan(b, "--older-than", "30d", out=str(b.tmp / "nowhere" / "p.json")),
        "does not exist",
    ),
    # targets files
    "targets: one account twice": (
        lambda b: _plan(
            b,
            "--older-than",
            "30d",
            "--targets",
            str(
                _write(
                    b,
                    "t.yaml",
                    "accounts:\n"
                    "  - {account_id: '123456789012', regions: [us-east-1]}\n"
                    "  - {account_id: '123456789012', regions: [us-east-1],\n"
                    "     role_arn: 'arn:aws:iam::123456789012:role/ops'}\n",
                )
            ),
        ),
        "accounts[1] and accounts[2] both cover account 123456789012 in us-east-1",
    ),
    "targets: labelled with another account": (
        lambda b: _plan(
            b,
            "--older-than",
            "30d",
            "--targets",
            str(
                _write(
                    b,
                    "t.yaml",
                    "accounts:\n  - {account_id: '111111111111', regions: [us-east-1]}\n",
                )
            ),
        ),
        "labelled account 111111111111, but its credentials reach account 123456789012",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_with_one_line_and_nothing_changed(bench: Bench, name: str) -> None:
    build, needle = CASES[name]
    args = build(bench)
    new_plan = bench.tmp / "new-plan.json"
    bench.proxy.stats.reset()
    result = run(args, env=bench.env, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert needle.replace("{plan}", str(bench.plan)) in errors[0], errors[0]
    assert not bench.proxy.stats.mutation_list()
    assert not new_plan.exists()
    assert not (bench.home / "plans" / bench.raw["plan_id"]).exists()
    if name.startswith(("-o", "--older-than", "config plan_ttl")):
        assert bench.proxy.stats.total_calls == 0  # refused before any AWS call
    from tests.conftest import Aws
    from tests.reliability.conftest import Proxied

    now = truth(Proxied(bench.proxy, Aws(bench.moto, bench.moto)), [REGION])
    assert {i: x.state for i, x in now.items()} == bench.states
