"""Pure presentation helpers: relative times, durations, fires with their DST changes marked.

No Flask and no clock: `now` is an argument, so the tests pin every string exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def span(seconds: float) -> str:
    """A length of time in its largest whole unit: `3 h`, `5 min`, `12 s`, `250 ms`."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    for size, unit in UNITS:
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return "0 s"  # unreachable: the loop ends with a 1-second unit


def relative(moment: datetime | None, now: datetime) -> str:
    """`in 3 h` for the future, `5 min ago` for the past, `now` within a second, `-` for None."""
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    return f"in {span(seconds)}" if seconds > 0 else f"{span(seconds)} ago"


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """`end - start` in seconds, or None when either is missing."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def offset_text(offset: timedelta | None) -> str:
    """A UTC offset as `+hh:mm` (`-04:00`)."""
    minutes = int((offset or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@dataclass(frozen=True)
class FireRow:
    """One upcoming fire: UTC, local wall-clock time, and the offset change since the last."""

    utc: datetime
    local: datetime
    change: str | None  # e.g. "UTC offset -05:00 (EST) -> -04:00 (EDT)"
    due_local: datetime | None = None  # with jitter: when the fire is due, in the zone


def fire_rows(
    fires: list[datetime],
    timezone: str,
    *,
    due: Callable[[datetime], datetime | None] | None = None,
) -> list[FireRow]:
    """The fires in `timezone`, each marked when its UTC offset differs from the previous
    fire's: that is where daylight saving moved the wall clock between two fires. `due`
    gives a fire's jittered instant (None without jitter), shown next to the nominal one."""
    zone = ZoneInfo(timezone)
    rows: list[FireRow] = []
    previous: datetime | None = None
    for fire in fires:
        local = fire.astimezone(zone)
        change = None
        if previous is not None and previous.utcoffset() != local.utcoffset():
            change = (
                f"UTC offset {offset_text(previous.utcoffset())} ({previous.tzname()}) -> "
                f"{offset_text(local.utcoffset())} ({local.tzname()})"
            )
        jittered = due(fire) if due is not None else None
        due_local = jittered.astimezone(zone) if jittered is not None else None
        rows.append(FireRow(utc=fire, local=local, change=change, due_local=due_local))
        previous = local
    return rows
