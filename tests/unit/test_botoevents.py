"""awsops' sessions give each client botocore's event machinery at a lower cost: a trie
copied in one pass, handler checks remembered, event aliases cached once per process,
one service model per (service, API version). Each must behave as botocore's does."""

from __future__ import annotations

import copy
from typing import Any

import botocore.hooks
import botocore.session
import pytest

from awsops.botoevents import Aliaser, Emitter
from awsops.clients import make_client
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
