"""Backoff between attempts: exponential with full jitter, capped, raised by Retry-After. Pure."""

from __future__ import annotations

import random

# Longest wait between attempts.
BACKOFF_CAP_SECONDS = 1800.0


def delay_seconds(
    attempt: int,
    base_seconds: float,
    *,
    rng: random.Random,
    retry_after: float | None = None,
    cap: float = BACKOFF_CAP_SECONDS,
) -> float:
    """Delay before the attempt after `attempt`: exponential backoff with full jitter,
    uniform(0, min(cap, base * 2^(attempt-1))). A server's Retry-After raises the delay to
    what it asked for, never past the cap."""
    ceiling = min(cap, base_seconds * 2 ** max(0, attempt - 1))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), cap))
    return delay
