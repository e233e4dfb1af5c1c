"""awsops' sessions give each client botocore's event machinery at a lower cost: a trie
copied on write, botocore's built-in handlers registered once per process, handler
checks remembered, event aliases cached once per process, one service model per
(service, API version), no scan of the environment for proxies when none can apply.
Each must behave as botocore's does."""

from __future__ import annotations

import copy
import os
from typing import Any

import botocore
import botocore.hooks
import botocore.session
import pytest
from botocore.utils import get_environ_proxies
from hypothesis import given, settings
from hypothesis import strategies as st

from awsops.botoevents import Aliaser, Emitter
from awsops.clients import build_config, make_client
from awsops.config import ClientSettings
from awsops.loader import new_botocore_session
from awsops.session import SessionFactory

SETTINGS = ClientSettings(endpoint_url="http://127.0.0.1:9")
EVENTS = (
    "before-call.ec2.DescribeInstances",
    "before-call.ec2.TerminateInstances",
    "before-send.ec2.DescribeInstances",
    "needs-retry.ec2.DescribeInstances",
    "before-parameter-build.s3.PutObject",
    "creating-client-class.autoscaling",
    "provide-client-params.ec2.CreateSnapshots",
    "before-call.autoscaling.DescribeAutoScalingInstances",
)


def _handlers(emitter: Any, event: str) -> list[Any]:
    return list(emitter._handlers.prefix_search(event))


def _trie(node: Any) -> Any:
    """A trie node as plain data: chunk, handler lists, children (for comparing)."""
    values = node["values"]
    lists = None if values is None else (list(values.first), values.middle, values.last)
    return (node["chunk"], lists, {k: _trie(v) for k, v in node["children"].items()})


def test_a_session_emitter_copies_as_botocore_copies_it() -> None:
    """The built-in handlers of a real session: our copy has the same trie as botocore's
    own copy, handler lists that are new lists, and registrations on the copy leave the
    original alone."""
    session = new_botocore_session()
    emitter = session.get_component("event_emitter")._emitter
    assert isinstance(emitter, Emitter)
    ours = copy.copy(emitter)
    theirs = botocore.hooks.HierarchicalEmitter.__copy__(emitter)
    theirs_trie = botocore.hooks._PrefixTrie._recursive_copy(
        emitter._handlers, emitter._handlers._root
    )
    assert _trie(ours._handlers._root) == _trie(theirs_trie) == _trie(emitter._handlers._root)
    for event in EVENTS:
        assert _handlers(ours, event) == _handlers(theirs, event) == _handlers(emitter, event)

    def extra(**kwargs: Any) -> None:
        return None

    # events that already have built-in handlers, and one that has none
    for event in ("before-parameter-build.ec2.RunInstances", "choose-signer", "before-send"):
        ours.register(event, extra)
        ours.register_first(event, extra)
        ours.register_last(event, extra)
        assert _handlers(ours, event).count(extra) == 3
        assert extra not in _handlers(emitter, event)
        assert extra not in _handlers(theirs, event)
    assert type(ours._handlers) is type(emitter._handlers)


def test_handlers_without_kwargs_are_still_refused() -> None:
    emitter = Emitter()

    def good(**kwargs: Any) -> None:
        return None

    def bad(request: Any) -> None:
        return None

    for _ in range(2):  # the second time from memory
        emitter.register("before-send.ec2", good)
        with pytest.raises(ValueError, match="must accept keyword arguments"):
            emitter.register("before-send.ec2", bad)

    class Hook:
        def method(self, **kwargs: Any) -> None:
            return None

        def strict(self, x: Any) -> None:
            return None

    emitter.register("before-send.ec2", Hook().method)
    emitter.register("before-send.ec2", Hook().method)
    with pytest.raises(ValueError):
        emitter.register("before-send.ec2", Hook().strict)


def test_aliases_are_those_of_botocore_and_shared_between_copies() -> None:
    names = [
        "before-call.autoscaling.DescribeAutoScalingInstances",
        "before-call.apigateway.GetRestApis",  # aliased by botocore (api-gateway)
        "before-parameter-build.cloudsearchdomain.Search",
        "before-call.api.pricing.GetProducts",  # a dotted alias
        "creating-client-class.elasticloadbalancing",
    ]
    mine, theirs = Aliaser(Emitter()), botocore.hooks.EventAliaser(Emitter())
    assert [mine._alias_event_name(n) for n in names] == [
        theirs._alias_event_name(n) for n in names
    ]
    twin = copy.copy(mine)
    assert isinstance(twin, Aliaser) and twin._alias_name_cache is mine._alias_name_cache
    # other aliases: a cache of their own
    other = Aliaser(Emitter(), {"foo": "bar"})
    assert other._alias_name_cache is not mine._alias_name_cache
    assert other._alias_event_name("before-call.foo.X") == "before-call.bar.X"


def test_clients_of_awsops_sessions_share_one_service_model() -> None:
    factory = SessionFactory(region="us-east-1", settings=SETTINGS, static_credentials=("a", "b"))
    a = make_client(factory.session("us-east-1"), "ec2", "us-east-1", SETTINGS)
    b = make_client(factory.session("eu-west-1"), "ec2", "eu-west-1", SETTINGS)
    assert a.meta.service_model is b.meta.service_model
    assert a.meta.region_name == "us-east-1" and b.meta.region_name == "eu-west-1"
    # a session of botocore's own builds its own, as botocore always does
    plain = botocore.session.Session().create_client(
        "ec2", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    assert plain.meta.service_model is not a.meta.service_model

    # the events of each client are its own
    def hook(**kwargs: Any) -> None:
        return None

    a.meta.events.register("before-send.ec2", hook)
    assert hook not in list(b.meta.events._emitter._handlers.prefix_search("before-send.ec2.X"))


def test_a_new_session_starts_with_botocore_s_built_in_handlers() -> None:
    """The handlers a session gets from the process's copy are those a botocore session
    registers itself: the same functions under the same names, in the same order."""
    ours = new_botocore_session().get_component("event_emitter")._emitter
    plain = botocore.session.Session()._original_handler
    assert _trie(ours._handlers._root) == _trie(plain._handlers._root)

    def count(node: Any) -> int:
        values = node["values"]
        here = 0 if values is None else len(values.first + values.middle + values.last)
        return here + sum(count(child) for child in node["children"].values())

    assert count(ours._handlers._root) == count(plain._handlers._root) > 100
    for event in EVENTS:
        assert _handlers(ours, event) == _handlers(plain, event)
    # a handler registered on one session is not another's
    other = new_botocore_session()

    def hook(**kwargs: Any) -> None:
        return None

    other.register("before-send.ec2", hook)
    assert hook in _handlers(other.get_component("event_emitter")._emitter, "before-send.ec2.X")
    assert hook not in _handlers(ours, "before-send.ec2.X")
    assert hook not in _handlers(new_botocore_session()._original_handler, "before-send.ec2.X")


def test_botocore_initializers_run_once_per_session() -> None:
    """A handler an initializer registers (botocore's hook for every new session) is
    there once, as in a botocore session."""

    def hook(**kwargs: Any) -> None:
        return None

    def initializer(session: Any) -> None:
        session.register("before-send.ec2", hook)

    botocore.register_initializer(initializer)
    try:
        ours = new_botocore_session().get_component("event_emitter")._emitter
        plain = botocore.session.Session()._original_handler
    finally:
        botocore.unregister_initializer(initializer)
    assert _handlers(ours, "before-send.ec2.X").count(hook) == 1
    assert _handlers(plain, "before-send.ec2.X").count(hook) == 1
    assert hook not in _handlers(new_botocore_session()._original_handler, "before-send.ec2.X")


KEYS = ("a", "a.b", "a.b.c", "a.*.c", "a.x", "b", "b.c.d", "*.c")
SECTIONS = (botocore.hooks._FIRST, botocore.hooks._MIDDLE, botocore.hooks._LAST)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 3), st.sampled_from(KEYS), st.integers(0, 2)),
        st.tuples(st.just("remove"), st.integers(0, 3), st.sampled_from(KEYS), st.integers(0, 5)),
        st.tuples(st.just("copy"), st.integers(0, 3), st.integers(0, 3)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_copy_on_write_tries_behave_as_botocore_s_copied_tries(ops: list[Any]) -> None:
    """Four tries, changed and copied into one another in any order: every search of
    every key finds what botocore's own trie (deep-copied) finds, and a failed removal
    fails alike."""
    ours = [Emitter()._handlers for _ in range(4)]
    theirs = [botocore.hooks._PrefixTrie() for _ in range(4)]
    for op in ops:
        if op[0] == "add":
            _, i, key, section = op
            value = (key, len(ops), id(op))
            ours[i].append_item(key, value, SECTIONS[section])
            theirs[i].append_item(key, value, SECTIONS[section])
        elif op[0] == "remove":
            _, i, key, nth = op
            present = [v for v in theirs[i].prefix_search(key) if v[0] == key]
            value = present[nth % len(present)] if present else ("absent", 0, 0)
            outcomes = []
            for trie in (ours[i], theirs[i]):
                try:
                    trie.remove_item(key, value)
                    outcomes.append(None)
                except (ValueError, AttributeError) as exc:
                    outcomes.append(type(exc))
            assert outcomes[0] == outcomes[1]
        else:
            _, src, dst = op
            ours[dst] = copy.copy(ours[src])
            theirs[dst] = copy.copy(theirs[src])
        for mine, reference in zip(ours, theirs, strict=True):
            for key in (*KEYS, "a.b.c.d", "a.q.c", "z"):
                assert list(mine.prefix_search(key)) == list(reference.prefix_search(key))


def test_no_proxy_scan_when_no_proxy_variable_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no proxy variable, clients are told there is none (what botocore would have
    found); with one, botocore looks as it always does and the client uses it."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    url = "https://ec2.us-east-1.amazonaws.com"
    assert build_config(SETTINGS).proxies == {} == get_environ_proxies(url)
    monkeypatch.setenv("hTTps_PROXY", "http://proxy.example:3128")
    assert build_config(SETTINGS).proxies is None
    factory = SessionFactory(
        region="us-east-1", settings=ClientSettings(), static_credentials=("a", "b")
    )
    client = make_client(factory.base, "ec2", "us-east-1", ClientSettings())
    proxy = client._endpoint.http_session._proxy_config.proxy_url_for(url)
    assert proxy == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "amazonaws.com")
    assert build_config(SETTINGS).proxies is None  # botocore decides the bypass
