"""Waiter parameters from command-line tokens, typed by the waiter operation's input
shape: ``--instance-ids i-1 i-2 --filters Name=x,Values=a,b`` -> API parameters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botocore import xform_name

from awsops.errors import UsageError


def option_names(input_shape: Any) -> dict[str, str]:
    """``--instance-ids`` style option names -> member names of an input shape."""
    members = input_shape.members if input_shape is not None else {}
    return {xform_name(m).replace("_", "-"): m for m in members}


def _shorthand_structure(shape: Any, text: str) -> dict[str, Any]:
    """``Name=tag:env,Values=a,b`` -> ``{"Name": "tag:env", "Values": ["a", "b"]}``.

    A part without ``=`` continues the previous list member's values.
    """
    out: dict[str, Any] = {}
    current: str | None = None
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key in shape.members:
            current = key
            member = shape.members[key]
            out[key] = (
                [_scalar(member.member, value)]
                if member.type_name == "list"
                else (_scalar(member, value))
            )
        elif current is not None and isinstance(out[current], list):
            out[current].append(_scalar(shape.members[current].member, part))
        else:
            valid = ", ".join(shape.members)
            raise UsageError(f"cannot parse {text!r}: expected Key=Value,... with keys {valid}")
    return out


def _scalar(shape: Any, text: str) -> Any:
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
    except ValueError:
        raise UsageError(f"expected a number, got {text!r}") from None
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise UsageError(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    if kind == "structure":
        return _json_or(text, lambda: _shorthand_structure(shape, text))
    if kind in ("map", "list"):
        return _json_or(text, lambda: _fail(f"expected JSON for a {kind}, got {text!r}"))
    return text


def _fail(message: str) -> Any:
    raise UsageError(message)


def _json_or(text: str, fallback: Any) -> Any:
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"invalid JSON {text!r}: {exc.msg}") from None
    return fallback()


def parse_waiter_params(operation_model: Any, tokens: Sequence[str]) -> dict[str, Any]:
    """Turn ``--instance-ids i-1 i-2 --filters Name=x,Values=a,b`` into API parameters.

    Option names are the operation's input members in dashed form (``InstanceIds`` ->
    ``--instance-ids``; ``--name=value`` works too). A list member takes every value up
    to the next option and may be repeated; a scalar takes exactly one (a boolean
    none: it is then true); structures take ``Key=Value,...`` shorthand or JSON.
    An unknown option is a :class:`UsageError` listing the valid ones.
    """
    shape = operation_model.input_shape
    names = option_names(shape)
    grouped: list[tuple[str, str, list[str]]] = []
    for token in tokens:
        if token.startswith("--"):
            name, sep, inline = token[2:].partition("=")
            member = names.get(name) or (name if shape and name in shape.members else None)
            if member is None:
                valid = " ".join(f"--{n}" for n in names) or "(none)"
                raise UsageError(
                    f"unknown parameter --{name} for {operation_model.name}; valid: {valid}"
                )
            grouped.append((name, member, [inline] if sep else []))
        elif not grouped:
            raise UsageError(f"unexpected value {token!r}: give parameters as --name value")
        else:
            grouped[-1][2].append(token)
    params: dict[str, Any] = {}
    for name, member, values in grouped:
        member_shape = shape.members[member]
        if member_shape.type_name == "list":
            if not values:
                raise UsageError(f"--{name} needs at least one value")
            params.setdefault(member, []).extend(_scalar(member_shape.member, v) for v in values)
        elif member_shape.type_name == "boolean" and not values:
            params[member] = True
        elif len(values) != 1:
            raise UsageError(f"--{name} takes exactly one value, got {len(values)}")
        else:
            params[member] = _scalar(member_shape, values[0])
    missing = [m for m in getattr(shape, "required_members", []) if m not in params]
    if missing:
        need = ", ".join(f"--{xform_name(m).replace('_', '-')}" for m in missing)
        raise UsageError(f"{operation_model.name} needs {need}")
    return params
