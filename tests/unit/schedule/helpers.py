"""Shared helpers for the schedule tests: ISO strings in, ISO strings out."""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from app.errors import ScheduleError
from app.schedule import cron as cron_grammar
from app.schedule import spec as schedule_spec


def at(text: str) -> datetime:
    """An aware datetime from ISO-8601 ('2026-03-08T07:00Z' or with an offset)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None
    return value


def iso(moment: datetime) -> str:
    assert moment.tzinfo is not None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def fires(cron: str, zone: str, after: str, count: int) -> list[str]:
    return [iso(f) for f in schedule_spec.next_fires(cron, zone, at(after), count)]


BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
NAMES = {3: MONTHS, 4: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]}


def value(rng: random.Random, index: int, number: int) -> str:
    names = NAMES.get(index)
    if names and number - BOUNDS[index][0] < len(names) and rng.random() < 0.3:
        return names[number - BOUNDS[index][0]]
    return str(number)


def item(rng: random.Random, index: int) -> str:
    low, high = BOUNDS[index]
    roll = rng.random()
    if roll < 0.3:
        text = "*"
    elif roll < 0.6:
        text = value(rng, index, rng.randint(low, high))
    else:  # at least two values: cronsim reads "A-A/S" as "A/S"
        start = rng.randint(low, high - 1)
        text = f"{value(rng, index, start)}-{value(rng, index, rng.randint(start + 1, high))}"
    if rng.random() < 0.35:
        text += f"/{rng.randint(1, high // 2 + 2)}"
    return text


def random_expression(rng: random.Random) -> str:
    """A random valid 5-field expression: lists, ranges, steps and names."""
    while True:
        fields = [
            ",".join(item(rng, i) for _ in range(rng.choice((1, 1, 1, 2, 3)))) for i in range(5)
        ]
        expr = " ".join(fields)
        try:
            cron_grammar.parse(expr)
        except ScheduleError:  # never fires ('0 0 30 2 *'): not a valid expression
            continue
        return expr


@functools.cache
def transitions(zone: str) -> list[datetime]:
    """Every UTC offset change of `zone` in 2026-2030, to the second."""
    tz = ZoneInfo(zone)
    found = []
    day = datetime(2026, 1, 1, tzinfo=UTC)
    while day < datetime(2031, 1, 1, tzinfo=UTC):
        nxt = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            low, high = day, nxt
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = mid
                else:
                    high = mid
            found.append(high)
        day = nxt
    return found


def extension_item(rng: random.Random, index: int) -> str:
    """An `L`/`LW` day-of-month item or a `D#N`/`DL` day-of-week item (cronsim's forms)."""
    if index == 2:
        return rng.choice(("L", "LW"))
    weekday = rng.randint(0, 7)
    if rng.random() < 0.5:
        name = value(rng, 4, weekday) if weekday < 7 else "7"
        return f"{name}#{rng.randint(1, 5)}"
    return f"{weekday}L"  # cronsim takes only a number before L


def random_extended_expression(rng: random.Random) -> str:
    """A random valid expression whose day fields use at least one extension."""
    while True:
        fields = [",".join(item(rng, i) for _ in range(rng.choice((1, 1, 2)))) for i in range(5)]
        for index in rng.choice(((2,), (4,), (2, 4))):
            items = [extension_item(rng, index) for _ in range(rng.choice((1, 1, 2)))]
            if rng.random() < 0.4:  # mixed with plain items; sometimes leading with '*'
                items = (
                    [*items, item(rng, index)] if rng.random() < 0.5 else [item(rng, index), *items]
                )
            fields[index] = ",".join(items)
        expr = " ".join(fields)
        try:
            cron_grammar.parse(expr)
        except ScheduleError:
            continue
        return expr
