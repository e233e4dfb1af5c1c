"""Values as text: JSON for what boto3 returns, flat cells, and escaping for terminals.

No rendering and no AWS calls here; :mod:`awsops.output` and :mod:`awsops.tables` build
on it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any


def json_default(value: Any) -> Any:
    """JSON encoding for datetimes, sets and other values boto3 returns."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, default=json_default, indent=indent, sort_keys=False)


def cell(value: Any) -> str:
    """A flat text form of a value for csv and table cells."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return to_json(value)


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\u202e``,
    ``\\x1b``...): control characters, bidirectional overrides and other format
    characters in a tag value can neither move the cursor nor reorder what a reviewer
    reads on a terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)
