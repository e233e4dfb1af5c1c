"""Server-side filters: AWS CLI shorthand in, request parameters out, validated first.

``Name=instance-state-name,Values=stopped,running`` (repeatable, or several separated
by spaces in one argument, or the JSON list form) and ``--tag Key=Value`` become
:class:`Filter` values; :func:`build_params` checks them against a kind's declared
filter names and turns them into the request's ``Filters`` list or parameters. Every
problem is a one-line :class:`UsageError` raised before any API call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from awsops.errors import UsageError
from awsops.inventory.specs import KindSpec


@dataclass(frozen=True)
class Filter:
    """One server-side filter: a name and its values (any value matches)."""

    name: str
    values: tuple[str, ...]


_SHAPE = "expected Name=<name>,Values=<v1>[,<v2>...]"


def parse_filter(text: str) -> list[Filter]:
    """Parse one ``--filters`` argument (shorthand, several space-separated, or JSON)."""
    text = text.strip()
    if not text:
        raise UsageError(f"empty --filters value: {_SHAPE}")
    if text.startswith("["):
        return _parse_json(text)
    return [_parse_shorthand(part) for part in text.split()]


def _parse_shorthand(part: str) -> Filter:
    if not part.startswith("Name="):
        raise UsageError(f"bad filter {part!r}: {_SHAPE}")
    head, sep, values = part[len("Name=") :].partition(",Values=")
    if not sep or not head:
        raise UsageError(f"bad filter {part!r}: {_SHAPE}")
    items = tuple(v for v in values.split(",") if v)
    if not items:
        raise UsageError(f"filter {head!r} has no values: {_SHAPE}")
    return Filter(head, items)


def _parse_json(text: str) -> list[Filter]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--filters is not valid JSON: {exc.msg}") from None
    out = []
    for entry in raw if isinstance(raw, list) else [None]:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("Name"), str)
            or not isinstance(entry.get("Values"), list)
            or not entry["Values"]
        ):
            raise UsageError('--filters JSON must be [{"Name": "...", "Values": ["..."]}, ...]')
        out.append(Filter(entry["Name"], tuple(str(v) for v in entry["Values"])))
    return out


def parse_tag(text: str) -> Filter:
    """``Key=Value`` -> filter ``tag:Key``; a bare ``Key`` -> filter ``tag-key``."""
    key, sep, value = text.partition("=")
    if not key:
        raise UsageError(f"bad --tag {text!r}: expected Key=Value or Key")
    if not sep:
        return Filter("tag-key", (key,))
    if not value:
        raise UsageError(f"bad --tag {text!r}: expected Key=Value or Key")
    return Filter(f"tag:{key}", (value,))


def parse_filters(filters: Iterable[str] = (), tags: Iterable[str] = ()) -> list[Filter]:
    """Every ``--filters`` and ``--tag`` argument, in order."""
    out: list[Filter] = []
    for text in filters:
        out.extend(parse_filter(text))
    out.extend(parse_tag(t) for t in tags)
    return out


def build_params(spec: KindSpec, filters: Sequence[Filter]) -> dict[str, Any]:
    """The request parameters for ``spec`` with ``filters`` applied (no page size).

    Raises UsageError for a name the kind does not declare (listing the valid ones),
    several values for a parameter filter, or a missing required filter.
    """
    params: dict[str, Any] = {k: _copy(v) for k, v in spec.base_params.items()}
    listed: list[dict[str, Any]] = []
    for f in filters:
        decl = spec.filter_decl(f.name)
        if decl is None:
            valid = ", ".join(spec.filter_names) or "none"
            what = "tag filters" if f.name.startswith("tag") else f"filter {f.name!r}"
            raise UsageError(f"{spec.name} takes no {what}; valid filters: {valid}")
        if decl.param is None:
            listed.append({"Name": f.name, "Values": list(f.values)})
            continue
        if len(f.values) != 1:
            raise UsageError(f"filter {f.name!r} of {spec.name} takes exactly one value")
        if decl.param in params:
            raise UsageError(f"filter {f.name!r} given twice")
        params[decl.param] = f.values[0]
    for decl in spec.filters:
        if decl.required and decl.param not in params:
            raise UsageError(
                f"{spec.name} needs filter {decl.name!r} (e.g. --{decl.name} <value> or "
                f"--filters Name={decl.name},Values=<value>)"
            )
    if listed:
        params["Filters"] = listed
    return params


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value
