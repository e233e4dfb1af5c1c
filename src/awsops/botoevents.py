"""Event emitters for awsops' botocore sessions: what a new client costs in events.

botocore gives every client a copy of its session's event emitter: a prefix trie of a
few hundred built-in handlers, copied node by node through ``copy.copy``. It checks
every handler registered on it with ``inspect.getfullargspec``, and maps each event
name through its aliases with a cache that starts empty in every copy, so each new
client works out again the aliases of every event it emits. With two clients per
(account, region) target that was about a third of the CPU a target costs beyond
parsing. The classes here behave exactly as botocore's and cost less:

- :class:`Emitter` copies its trie on write: a copy costs nothing until one side
  registers or unregisters a handler, which then copies the nodes of that event's path
  only (new handler lists, the handlers themselves shared as botocore shares them); it
  remembers, per function, that it accepts ``**kwargs``;
- :class:`Aliaser` shares one process-wide cache of aliased event names between all
  its copies that use botocore's own aliases: the alias of a name depends only on the
  name and the aliases.

Only sessions made by :func:`awsops.loader.new_botocore_session` use them; clients of
any other session are built as botocore always builds them.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import botocore.hooks
from botocore.utils import EVENT_ALIASES

__all__ = ["Aliaser", "Emitter"]

# botocore's classes, typed loosely: the stubs leave out the private parts used here.
_hooks: Any = botocore.hooks
_PrefixTrie: Any = _hooks._PrefixTrie
_HierarchicalEmitter: Any = _hooks.HierarchicalEmitter
_EventAliaser: Any = _hooks.EventAliaser
NodeList: Any = _hooks.NodeList

# Event name -> its alias under botocore's default aliases (a pure function of the name).
_ALIASES: dict[str, str] = {}
# Code objects of handler functions known to accept **kwargs.
_ACCEPTS_KWARGS: dict[types.CodeType, bool] = {}


def _node(chunk: str | None, owner: object) -> dict[str, Any]:
    return {"chunk": chunk, "values": None, "children": {}, "owner": owner}


class _Trie(_PrefixTrie):  # type: ignore[misc,valid-type]
    """botocore's handler trie, copied on write.

    A copy shares every node with its original; whichever of the two then changes a key
    first copies the nodes on that key's path only (a node is changed in place only by
    the trie that owns it, its ``owner`` token). Lookups walk the same nodes and lists
    as botocore's, which ignores the extra key."""

    def __init__(self) -> None:
        self._owner = object()
        self._root = _node(None, self._owner)

    def _own(self, node: dict[str, Any]) -> dict[str, Any]:
        if node.get("owner") is self._owner:
            return node
        values = node["values"]
        return {
            "chunk": node["chunk"],
            "values": None
            if values is None
            else NodeList(values.first[:], values.middle[:], values.last[:]),
            "children": dict(node["children"]),
            "owner": self._owner,
        }

    def _own_path(self, parts: list[str], create: bool) -> dict[str, Any]:
        """The last node of ``parts``' path (or of its existing part, without
        ``create``), every node on the way owned by this trie."""
        node = self._root = self._own(self._root)
        for part in parts:
            children = node["children"]
            child = children.get(part)
            if child is None:
                if not create:
                    break
                child = _node(part, self._owner)
            node = children[part] = self._own(child)
        return node

    def append_item(self, key: str, value: Any, section: int = _hooks._MIDDLE) -> None:
        node = self._own_path(key.split("."), create=True)
        if node["values"] is None:
            node["values"] = NodeList([], [], [])
        node["values"][section].append(value)

    def remove_item(self, key: str, value: Any) -> None:
        self._own_path(key.split("."), create=False)
        super().remove_item(key, value)

    def __copy__(self) -> _Trie:
        new = self.__class__.__new__(self.__class__)
        new.__dict__ = {**self.__dict__, "_owner": object()}
        self._owner = object()  # the nodes are shared now: the original copies too
        return new


class Emitter(_HierarchicalEmitter):  # type: ignore[misc,valid-type]
    """botocore's ``HierarchicalEmitter`` with a copy-on-write trie and a memory of
    which handler functions accept ``**kwargs``."""

    def __init__(self) -> None:
        super().__init__()
        self._handlers = _Trie()

    def _verify_accept_kwargs(self, func: Any) -> Any:
        target = getattr(func, "__func__", func)
        code = None
        if isinstance(target, types.FunctionType) and not hasattr(target, "__signature__"):
            code = target.__code__  # then the signature is the code's
        if code is None:
            return super()._verify_accept_kwargs(func)
        if code not in _ACCEPTS_KWARGS:
            result = super()._verify_accept_kwargs(func)  # raises if it does not
            if result is not None:
                return result
            _ACCEPTS_KWARGS[code] = True
        return None


class Aliaser(_EventAliaser):  # type: ignore[misc,valid-type]
    """botocore's ``EventAliaser``; with botocore's own aliases, its copies share one
    cache of aliased names (thread-safe: a name always maps to the same alias)."""

    def __init__(self, event_emitter: Any, event_aliases: Mapping[str, str] | None = None) -> None:
        super().__init__(event_emitter, event_aliases)
        if self._event_aliases == EVENT_ALIASES:
            self._alias_name_cache = _ALIASES
