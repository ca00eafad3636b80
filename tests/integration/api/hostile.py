"""Hypothesis strategies for input the API must refuse (docs/design.md section 15).

Every value drawn here is refusable wherever it lands: a string holding NUL or a lone
surrogate, a number JSON cannot express (NaN, Infinity, 1e999), nesting deeper than 32
levels, a container hiding one of those, or (for timestamp fields) an instant outside
years 1-9998. Bodies are written as raw JSON text so the hostile tokens reach the server
exactly as an attacker would send them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is (NaN, Infinity, a deep nest): json.dumps cannot make it."""

    text: str


def encode(value: Any) -> str:
    """`value` as JSON text; Raw tokens verbatim, lone surrogates as `\\udXXX` escapes."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)


SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
POISON = st.one_of(st.just("\x00"), SURROGATES)

# Text with NUL or a lone surrogate somewhere in it.
unstorable_text = st.builds(
    lambda head, poison, tail: head + poison + tail,
    st.text(max_size=20),
    POISON,
    st.text(max_size=20),
)
non_finite = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]).map(Raw)


def _nest(levels: int, kind: str) -> str:
    if kind == "[]":
        return "[" * levels + "]" * levels
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


# A value nested 32+ levels deep: with the body's own object around it, 33 or more.
too_deep = st.builds(
    lambda levels, kind: Raw(_nest(levels, kind)),
    st.one_of(st.integers(32, 200), st.just(20_000)),
    st.sampled_from(["[]", "{}"]),
)


_poisoned_leaf = st.one_of(unstorable_text, non_finite)
poisoned_container = st.one_of(
    st.dictionaries(st.text(max_size=8), _poisoned_leaf, min_size=1, max_size=3),
    st.dictionaries(unstorable_text, st.integers(), min_size=1, max_size=2),
    st.lists(_poisoned_leaf, min_size=1, max_size=3),
    st.builds(lambda inner: {"nested": [inner]}, _poisoned_leaf),
)
hostile_value = st.one_of(unstorable_text, non_finite, too_deep, poisoned_container)


def _offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


# Instants that are valid ISO-8601 but outside years 1-9998 once in UTC.
out_of_range_timestamp = st.one_of(
    st.builds(
        lambda month, day, hour, offset: f"9999-{month:02d}-{day:02d}T{hour:02d}:00:00{offset}",
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.sampled_from(["Z", "+00:00", "-00:30", "-05:00", "-23:59"]),
    ),
    st.builds(
        lambda minute, ahead: f"0001-01-01T00:{minute:02d}:00{_offset(minute + ahead)}",
        st.integers(0, 59),
        st.integers(1, 600),
    ),
)

# Instants at the edges of what is accepted (years 1 and 9998, any offset Python parses):
# each must get an answer, never a 500.
edge_timestamp = st.builds(
    lambda year, month, day, hour, offset: (
        f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:00:00{offset}"
    ),
    st.sampled_from([1, 2, 9997, 9998, 9999]),
    st.sampled_from([1, 12]),
    st.sampled_from([1, 31]),
    st.sampled_from([0, 23]),
    st.sampled_from(["Z", "+23:59", "-23:59", "+15:59", "-16:00", "+00:01"]),
)

# Cursors that decode to something other than [iso-instant, uuid], or do not decode.
_cursor_payloads = st.one_of(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=4), children, max_size=3)
        ),
        max_leaves=6,
    ),
    st.tuples(st.integers(), st.text(max_size=10)).map(list),
    st.tuples(out_of_range_timestamp, st.uuids().map(str)).map(list),
    st.tuples(st.just("0001-01-01T00:00:00+05:00"), st.uuids().map(str)).map(list),
    st.tuples(st.text(max_size=30), st.text(max_size=40)).map(list),
)
hostile_cursor = st.one_of(
    _cursor_payloads.map(
        lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode().rstrip("=")
    ),
    st.text(min_size=1, max_size=60),
    st.binary(min_size=1, max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON document where a value sits (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(paths(child, (*prefix, index)))
    return found


def replace(document: Any, path: tuple, new: Any) -> Any:
    """A copy of `document` with the value at `path` replaced (the root when path is ())."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: replace(document[head], rest, new)}
    copy = list(document)
    copy[head] = replace(copy[head], rest, new)
    return copy
