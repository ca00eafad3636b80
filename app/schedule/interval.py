"""Interval schedules: fires at `anchor + k * interval` for every integer k.

docs/design.md section 11.

Absolute time only: no time zone, no daylight saving time (an interval of 3600 s fires every
real hour, 24 times a day, also on the days a zone's clock jumps). The anchor may lie in the
past or the future: k ranges over all integers, so the fires before it exist too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from app.errors import ScheduleError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_SECONDS = 60
MAX_SECONDS = 366 * 86400
_LAST = datetime(9998, 1, 1, tzinfo=UTC)  # datetime's range ends in 9999
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def validate(seconds: int) -> int:
    """Return `seconds` if it is an allowed interval, else raise ScheduleError naming it."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ScheduleError("must be a whole number of seconds", field="interval_seconds")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise ScheduleError(
            f"must be between {MIN_SECONDS} and {MAX_SECONDS} seconds (366 days)",
            field="interval_seconds",
        )
    return seconds


def iter_fires(anchor: datetime, seconds: int, after: datetime) -> Iterator[datetime]:
    """Every `anchor + k * seconds` strictly after aware `after`, increasing, aware UTC."""
    step = timedelta(seconds=seconds)
    anchor = anchor.astimezone(UTC)
    # Floor division of timedeltas is exact (integer microseconds): k is the last index at
    # or before `after`, whichever side of the anchor it lies.
    moment = anchor + ((after - anchor) // step + 1) * step
    while moment < _LAST:
        yield moment
        moment += step


def fire_after(anchor: datetime, seconds: int, after: datetime) -> datetime | None:
    """The first `anchor + k * seconds` strictly after `after` (None past datetime's range);
    `iter_fires` without the generator, for the dispatcher's advance of many triggers."""
    step = timedelta(seconds=seconds)
    moment = anchor + ((after - anchor) // step + 1) * step
    return moment.astimezone(UTC) if moment < _LAST else None


def describe(seconds: int) -> str:
    """Whole units, largest first: 5400 -> '1 hour 30 minutes', 90 -> '1 minute 30 seconds'."""
    parts = []
    for name, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return " ".join(parts) or "0 seconds"
