"""Strict JSON reading for request bodies: what Python's json accepts but we must not.

Python's parser takes `NaN`, `Infinity` and `1e999` (not JSON, and not storable in jsonb),
recurses once per nesting level (a body of 100,000 `[` is a RecursionError, so a 500), and
decodes `"\\ud800"` into a lone surrogate and `"\\u0000"` into NUL, neither of which
PostgreSQL's text or jsonb can hold. Every JSON body the API reads goes through
:func:`loads` (the webargs parser and Flask's `request.get_json`), and every string in it,
keys included, is checked by :func:`bad_strings`, so a new field gets the same treatment.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 32
# One token of the nesting scan: a string (escapes included) or a bracket. A string that
# never closes runs to the end of the input, a lone backslash included, so the match never
# fails and retries from a later quote; the possessive `*+` never backtracks. Each
# character is read once, whatever the body: a body of `"` and many `\"` used to make every
# quote rescan to the end (quadratic: 7.7 s for 32 KiB).
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
# NUL, and any UTF-16 surrogate (only a lone one survives decoding into a Python str).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "must not contain NUL characters or unpaired surrogates"


class InvalidJson(ValueError):
    """The body is not JSON we accept; the message says why (safe to show the caller)."""


def depth(text: str) -> int:
    """How deeply arrays and objects nest in `text`, found without recursing."""
    level = deepest = 0
    for piece in _TOKEN.findall(text):
        if piece == "[" or piece == "{":
            level += 1
            deepest = max(deepest, level)
        elif piece == "]" or piece == "}":
            level -= 1
    return deepest


def _finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise InvalidJson(f"The number {token[:40]} is out of range.")
    return value


def _constant(token: str) -> Any:
    raise InvalidJson(f"{token} is not a JSON value.")


def loads(raw: str | bytes) -> Any:
    """Parse a request body; raise InvalidJson for anything but bounded, finite UTF-8 JSON.

    1. Decode as UTF-8 (RFC 8259), so bytes that encode a surrogate are refused here.
    2. Measure the nesting before parsing, so the parser never gets deep enough to fail.
    3. Parse with NaN, Infinity and overflowing numbers refused.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError:
        raise InvalidJson("The request body is not valid UTF-8.")
    if depth(text) > MAX_DEPTH:
        raise InvalidJson(f"The request body nests deeper than {MAX_DEPTH} levels.")
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_finite)
    except InvalidJson:
        raise
    except (ValueError, RecursionError):
        raise InvalidJson("The request body is not valid JSON.")


def bad_strings(value: Any, path: str = "") -> dict[str, str]:
    """Every string that PostgreSQL could not store, as {"dotted.path": message}.

    A bad object key is reported at its object's path (the key itself is not echoed).
    """
    found: dict[str, str] = {}
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                found[where or "body"] = UNSTORABLE_MESSAGE
        elif isinstance(item, dict):
            for key, child in item.items():
                if _UNSTORABLE.search(key):
                    found[where or "body"] = f"keys {UNSTORABLE_MESSAGE}"
                    continue
                stack.append((f"{where}.{key}" if where else key, child))
        elif isinstance(item, list):
            stack.extend((f"{where}.{index}" if where else str(index), child)
                         for index, child in enumerate(item))  # fmt: skip
    return found


def unstorable(text: str) -> bool:
    """Whether a single string holds NUL or a lone surrogate (for non-JSON input)."""
    return _UNSTORABLE.search(text) is not None


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with :func:`loads` as its parser, so `request.get_json()`
    anywhere (e.g. a before_request hook) refuses what the API refuses."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        body = loads(s)
        if bad_strings(body):
            raise InvalidJson(UNSTORABLE_MESSAGE)
        return body
