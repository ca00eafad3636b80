"""The strict JSON reader's nesting scan: the right depth, in time linear in the body.

A body of one `"` followed by many `\\"` (no string ever closes) made the old scan, which
stripped string tokens with a regex before counting brackets, rescan to the end from every
quote: 2 s for 16 KiB, and two 96 KiB bodies at once timed out both gunicorn workers.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from web import MAX_CONTENT_LENGTH, json_input

SETTINGS = hypothesis.settings(deadline=None, database=None, derandomize=True, max_examples=300)
# A body at the size limit is read in milliseconds (about 20 ms here for the worst); the
# quadratic scan took minutes. The budget leaves room for a slow, loaded host.
BUDGET_SECONDS = 1.0
# Characters that steer the scan: quotes, escapes, brackets, and one that is none of them.
STEERING = '"\\[]{}a'


def nesting(value: Any) -> int:
    """The reference: how deeply arrays and objects nest in a parsed value."""
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    return 0


# Strings full of the characters the scan must not mistake for structure.
tricky_text = st.text(alphabet=st.sampled_from(list(STEERING) + ["\n", "\u00e9"]), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=30,
)


@SETTINGS
@hypothesis.given(json_values)
def test_depth_matches_the_parsed_nesting(value: Any) -> None:
    assert json_input.depth(json.dumps(value)) == nesting(value)


@SETTINGS
@hypothesis.given(json_values)
def test_depth_ignores_brackets_inside_strings_with_escapes(value: Any) -> None:
    text = json.dumps({"s": '"]]]}}\\[', "v": value})
    assert json_input.depth(text) == 1 + nesting(value)


def worst_bodies(size: int) -> dict[str, str]:
    """Bodies of `size` characters made to defeat a scan: strings that never close,
    escapes that escape the closing quote, and deep nesting."""
    return {
        "quote then escaped quotes": '"' + '\\"' * (size // 2),
        "... ending in a lone backslash": '"' + '\\"' * (size // 2 - 1) + "\\",
        "only quotes": '"' * size,
        "only backslashes": "\\" * size,
        "only brackets": "[" * size,
        "escaped quote, bracket": '\\"[' * (size // 3),
        "open objects": '{"a":' * (size // 5),
    }


@pytest.mark.parametrize("name", list(worst_bodies(8)))
def test_the_worst_bodies_at_the_size_limit_are_read_in_milliseconds(name: str) -> None:
    body = worst_bodies(MAX_CONTENT_LENGTH)[name]
    started = time.perf_counter()
    with pytest.raises(json_input.InvalidJson):
        json_input.loads(body)
    assert time.perf_counter() - started < BUDGET_SECONDS


@SETTINGS
@hypothesis.given(st.text(alphabet=st.sampled_from(list(STEERING)), min_size=1, max_size=12))
def test_any_repeated_pattern_at_the_size_limit_is_read_in_milliseconds(unit: str) -> None:
    """Adversarial bodies: a short pattern of the steering characters, repeated to the limit
    (the quadratic scan's worst case is such a repetition)."""
    body = unit * (MAX_CONTENT_LENGTH // len(unit))
    started = time.perf_counter()
    with contextlib.suppress(json_input.InvalidJson):
        json_input.loads(body)
    assert time.perf_counter() - started < BUDGET_SECONDS
