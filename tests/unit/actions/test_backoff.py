"""Retry delays: exponential backoff with full jitter, Retry-After, and the throttle countdown."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from app import backoff


class Fixed:
    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def test_the_ceiling_doubles_with_each_attempt() -> None:
    top = Fixed(1.0)
    assert [backoff.delay_seconds(n, 10, rng=top) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]


def test_the_ceiling_is_capped() -> None:
    assert backoff.delay_seconds(20, 10, rng=Fixed(1.0)) == backoff.BACKOFF_CAP_SECONDS


def test_retry_after_raises_the_delay_but_not_past_the_cap() -> None:
    assert backoff.delay_seconds(1, 10, rng=Fixed(0.0), retry_after=120) == 120
    assert backoff.delay_seconds(1, 10, rng=Fixed(0.9), retry_after=1) == 9
    assert backoff.delay_seconds(1, 10, rng=Fixed(0.0), retry_after=10**9) == 1800


@given(
    attempt=st.integers(1, 20),
    base=st.integers(0, 86_400),
    seed=st.integers(0, 2**32),
    retry_after=st.one_of(st.none(), st.floats(0, 10**7)),
)
def test_the_delay_always_lies_within_the_bounds(attempt, base, seed, retry_after) -> None:
    delay = backoff.delay_seconds(attempt, base, rng=random.Random(seed), retry_after=retry_after)
    assert 0 <= delay <= backoff.BACKOFF_CAP_SECONDS
    if retry_after is None:
        assert delay <= base * 2 ** (attempt - 1)
    else:
        assert delay >= min(retry_after, backoff.BACKOFF_CAP_SECONDS)
