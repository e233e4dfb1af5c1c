"""Event emitters for awsops' botocore sessions: what a new client costs in events.

botocore gives every client a copy of its session's event emitter: a prefix trie of a
few hundred built-in handlers, copied node by node through ``copy.copy``. It checks
every handler registered on it with ``inspect.getfullargspec``, and maps each event
name through its aliases with a cache that starts empty in every copy, so each new
client works out again the aliases of every event it emits. With two clients per
(account, region) target that was about a third of the CPU a target costs beyond
parsing. The classes here behave exactly as botocore's and cost less:

- :class:`Emitter` copies its trie with one specialised function (same structure, new
  handler lists, the handlers themselves shared as botocore shares them) and remembers,
  per function, that it accepts ``**kwargs``;
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


def _copy_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """A trie node and everything under it, as ``_PrefixTrie._recursive_copy`` copies
    it: new nodes and new handler lists holding the same handlers."""
    values = node["values"]
    children = node["children"]
    return {
        "chunk": node["chunk"],
        "values": None
        if values is None
        else NodeList(values.first[:], values.middle[:], values.last[:]),
        "children": {k: _copy_node(v) for k, v in children.items()} if children else {},
    }


class _Trie(_PrefixTrie):  # type: ignore[misc,valid-type]
    """botocore's handler trie, copied in one pass."""

    def __copy__(self) -> _Trie:
        new = self.__class__()
        new.__dict__ = {**self.__dict__, "_root": _copy_node(self._root)}
        return new


class Emitter(_HierarchicalEmitter):  # type: ignore[misc,valid-type]
    """botocore's ``HierarchicalEmitter`` with a fast copy and a memory of which handler
    functions accept ``**kwargs``."""

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
