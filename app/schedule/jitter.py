"""Deterministic jitter: a fire's delay is a pure function of (trigger id, nominal fire).

Stable (the same fire always gets the same delay, on every dispatcher and in previews), so a
retried tick or a restarted scheduler agrees with itself; spread (a hash, so 10,000 triggers
due at midnight fall evenly over the jitter window); and independent of anything that
changes between ticks. Only whole seconds: `[0, jitter)` in steps of one second.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def offset(key: str, fire: datetime, jitter_seconds: int) -> timedelta:
    """The delay of the nominal `fire` of the trigger `key`: whole seconds in [0, jitter)."""
    if jitter_seconds <= 0:
        return timedelta(0)
    # The fire as whole microseconds since the epoch: the same for any zone it is given in.
    moment = (fire - _EPOCH) // _MICROSECOND
    digest = hashlib.blake2b(f"{key}|{moment}".encode(), digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % jitter_seconds)


def limit(period_seconds: float) -> int:
    """The largest jitter allowed for a schedule whose fires are `period_seconds` apart:
    min(period, 3600). Keeping jitter within the period keeps due instants in fire order."""
    return int(min(period_seconds, 3600))
