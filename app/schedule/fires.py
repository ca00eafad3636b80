"""Fire instants of a cron expression in a time zone, with Debian cron's DST rules.

The expression is evaluated on local wall-clock time and every fire is converted straight
back to UTC. Candidates are generated as naive local times, day by day:

1. On a day whose UTC offset is constant (all but about two days a year) a local time has
   exactly one instant, `midnight_utc + seconds_of_day`: no zoneinfo call per fire.
2. On a day with a transition each candidate is classified with the two `fold` readings:
   - in a spring-forward gap (the time does not exist): a pinned expression (see
     `CronExpr.pinned`) fires once, at the first instant after the gap; any other
     expression does not fire;
   - in a fall-back overlap (the time happens twice): a pinned expression fires once, at the
     first occurrence; any other expression fires at both occurrences. The second occurrence
     comes after later candidates' first occurrences, so it waits in a heap and is released
     in instant order.
3. An instant is yielded only if it is later than the last one yielded (and than `after`):
   two gap times moved to the same instant fire once.

This reproduces cronsim (Debian cron) except where cronsim's real-time hour stepping is
path dependent (see tests/unit/schedule/test_agreement.py).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from app.schedule.cron import CronExpr

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
_OF_DAY = tuple(timedelta(seconds=s) for s in range(0, 86400, 60))  # index: seconds // 60
# Longest fall-back we allow for when looking back from `after` (real ones are 30-60 min).
_OVERLAP = timedelta(hours=3)
# The longest gap between two fires of a valid expression is 40 years (29 February on one
# weekday, around 2100); stop looking after 100 years without a fire.
_SEARCH_YEARS = 100
_LAST_YEAR = 9998  # datetime's range ends in 9999; leave room for the offset arithmetic


@lru_cache(maxsize=16384)  # ~two zoneinfo calls per day per fire otherwise; days repeat a lot
def _constant_offset(zone: ZoneInfo, day: date) -> timedelta | None:
    """The UTC offset of `day` if it holds no transition, else None.

    Both readings of both midnights agree only when no transition lies between them
    (transitions are months apart, so two cancelling ones within a day do not occur).
    """
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    offset = start.utcoffset()
    end = start + _DAY  # wall-clock arithmetic: the next local midnight
    if (
        start.replace(fold=1).utcoffset() != offset
        or end.utcoffset() != offset
        or end.replace(fold=1).utcoffset() != offset
    ):
        return None
    return offset


def _after_gap(local: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the gap holding the non-existent naive time `local`.

    Walks forward a minute at a time, as cronsim does, so the result is the first existing
    wall-clock minute (03:00 for a 02:30 skipped by a 02:00 -> 03:00 transition).
    """
    while True:
        local += _MINUTE
        moment = local.replace(tzinfo=zone).astimezone(UTC)
        if moment.astimezone(zone).replace(tzinfo=None) == local:
            return moment


def _start(expr: CronExpr, zone: ZoneInfo, after: datetime) -> datetime:
    """The naive local minute from which to generate candidates for fires after `after`."""
    local = after.astimezone(zone)
    start = local.replace(tzinfo=None, second=0, microsecond=0)
    if not expr.pinned:
        # A fall-back soon after `after` repeats wall-clock times earlier than its own, and
        # their second occurrences are still to come: start that much earlier.
        ahead = (after + _OVERLAP).astimezone(zone)
        back = local.utcoffset() - ahead.utcoffset()
        if back > timedelta(0):
            start -= back
    return start


def _days(expr: CronExpr, start: date) -> Iterator[date]:
    """The days matching the day and month fields, from `start` on."""
    year, month = start.year, start.month
    while year <= _LAST_YEAR:
        if month in expr.months:
            for day in expr.month_days(year, month):
                if year > start.year or month > start.month or day >= start.day:
                    yield date(year, month, day)
        month += 1
        if month == 13:
            year, month = year + 1, 1


def iter_fires(expr: CronExpr, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Yield the fires strictly after aware `after`, increasing, as aware UTC datetimes.

    The iterator ends after 100 years without a fire (or at the end of datetime's range).
    """
    after = after.astimezone(UTC)
    start = _start(expr, zone, after)
    first_day = start.date()
    first_second = start.hour * 3600 + start.minute * 60
    last = after
    pending: list[datetime] = []  # second occurrences of repeated times, not yet yielded
    give_up = first_day.year + _SEARCH_YEARS
    for day in _days(expr, first_day):
        if day.year > give_up:
            break
        give_up = max(give_up, last.year + _SEARCH_YEARS)
        seconds = expr.seconds_of_day
        if day == first_day:
            seconds = seconds[bisect_left(seconds, first_second) :]
        offset = None if pending else _constant_offset(zone, day)
        if offset is not None:
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) - offset
            for second in seconds:
                moment = midnight + _OF_DAY[second // 60]
                if moment > last:
                    yield moment
                    last = moment
            continue
        for second in seconds:
            hour, minute = divmod(second // 60, 60)
            local = datetime(day.year, day.month, day.day, hour, minute)
            first = local.replace(tzinfo=zone).astimezone(UTC)
            second_reading = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
            if first > second_reading:  # in a gap: fold=0 reads it with the earlier offset
                if not expr.pinned:
                    continue
                first = _after_gap(local, zone)
            elif first < second_reading and not expr.pinned:  # repeated: fire both times
                heapq.heappush(pending, second_reading)
            while pending and pending[0] < first:
                moment = heapq.heappop(pending)
                if moment > last:
                    yield moment
                    last = moment
            if first > last:
                yield first
                last = first
    while pending:
        moment = heapq.heappop(pending)
        if moment > last:
            yield moment
            last = moment
