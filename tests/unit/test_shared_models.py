"""Service models are parsed once per process and client classes built once, however
many sessions and threads make clients; a target's clients close together."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from botocore.loaders import JSONFileLoader

from awsops.clients import TargetClients, make_client
from awsops.config import ClientSettings, Target
from awsops.fanout import map_concurrent
from awsops.loader import shared_loader
from awsops.session import AssumeRoleSpec, SessionFactory

# Nothing is called: clients are only built, from sessions with static credentials.
SETTINGS = ClientSettings(endpoint_url="http://127.0.0.1:9")
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2")


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every JSON model file parsed by any botocore loader during the test."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    original = JSONFileLoader.load_file

    def counting(self: Any, file_path: str) -> Any:
        data = original(self, file_path)
        if data is not None:
            with lock:
                seen[file_path] += 1
        return data

    monkeypatch.setattr(JSONFileLoader, "load_file", counting)
    return seen


def test_models_parsed_once_for_many_sessions_threads_and_regions(parsed: Counter[str]) -> None:
    factories = [
        SessionFactory(region="us-east-1", settings=SETTINGS, static_credentials=("a", "b"))
        for _ in range(3)
    ]
    jobs = [(f, r) for f in factories for r in REGIONS for _ in range(2)]

    def build(job: tuple[SessionFactory, str]) -> list[Any]:
        factory, region = job
        session = factory.session(region)
        return [make_client(session, s, region, SETTINGS) for s in ("ec2", "sts", "autoscaling")]

    clients = map_concurrent(build, jobs, 8)
    assert len(clients) == 24
    # each file at most once in this test (zero if an earlier test of this process
    # already parsed it): 24 sessions of their own would parse the EC2 model 24 times
    assert max(parsed.values(), default=0) <= 1, parsed.most_common(3)
    assert max(shared_loader().files_loaded.values()) == 1
    # one client class per service, whatever the session
    assert len({type(c[0]) for c in clients}) == 1
    assert len({type(c[2]) for c in clients}) == 1
    assert shared_loader().classes_built["ec2"] == 1


def test_every_session_uses_the_shared_loader() -> None:
    factory = SessionFactory(region="us-east-1", settings=SETTINGS, static_credentials=("a", "b"))
    role = factory.assume(AssumeRoleSpec("arn:aws:iam::111111111111:role/ops"), "eu-west-1")
    other = factory.for_target(Target(region="eu-west-1", role_arn=None))
    for session in (factory.base, factory.session("us-west-2"), role, other):
        assert session._session.get_component("data_loader") is shared_loader()
    # the search paths do not grow with the sessions
    assert len(shared_loader().search_paths) == len(set(shared_loader().search_paths))


def test_regions_of_one_role_share_a_session_and_its_credentials() -> None:
    factory = SessionFactory(region="us-east-1", settings=SETTINGS, static_credentials=("a", "b"))
    targets = [
        Target(region=r, account_id="111111111111", role_arn="arn:aws:iam::111111111111:role/ops")
        for r in REGIONS
    ]
    held = [factory.for_target(t) for t in targets]
    assert all(s is held[0] for s in held)
    in_region = factory.assume(AssumeRoleSpec("arn:aws:iam::111111111111:role/ops"), "eu-west-1")
    resolver = in_region._session.get_component("credential_provider")
    shared = factory.for_target(targets[0])._session.get_component("credential_provider")
    assert resolver.get_provider("awsops-assume-role") is shared.get_provider("awsops-assume-role")


class _FakeClient:
    def __init__(self) -> None:
        self.closed = False
        self.meta = type("Meta", (), {"service_model": type("M", (), {"service_name": "sts"})})

    def close(self) -> None:
        self.closed = True


class _FakeSession:
    region_name = "us-east-1"

    def __init__(self) -> None:
        self.made: list[_FakeClient] = []

    def client(self, service: str, **_: Any) -> _FakeClient:
        self.made.append(_FakeClient())
        return self.made[-1]


def test_target_clients_are_built_once_and_closed_together() -> None:
    session = _FakeSession()
    with TargetClients(session, "us-east-1", SETTINGS) as clients:  # type: ignore[arg-type]
        first = clients.get("sts")
        assert clients.get("sts") is first
        other = clients.get(
            "sts", ClientSettings(endpoint_url="http://127.0.0.1:9", max_attempts=1)
        )
        assert other is not first
    assert [c.closed for c in session.made] == [True, True]
    with pytest.raises(RuntimeError):
        clients.get("sts")
