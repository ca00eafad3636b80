"""A trigger's schedule as a value (cron, interval or one-time, with its window and jitter)
and its fire times.

`first_fire` is the one function that computes a trigger's next nominal fire on every write
path (create, schedule change, re-enable), so no path can leave a trigger without one;
`due_at` adds the trigger's jitter to a nominal fire (app/schedule/jitter.py).

Every function here speaks of nominal fires (the run's `scheduled_for`) unless its name says
"due": a fire is due (claimed by the dispatcher) at `due_at(spec, fire)`, which is the fire
itself when the trigger has no jitter.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import cron_descriptor

from app.errors import ScheduleError
from app.schedule import cron as cron_grammar
from app.schedule import fires, interval, jitter, zones

_TICK = timedelta(microseconds=1)  # "strictly after start_at - tick" is "at or after start_at"
EPOCH = interval.EPOCH


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ScheduleError(f"{name} must carry a UTC offset", field=name)


@dataclass(frozen=True)
class TriggerSpec:
    """What a trigger's schedule is: exactly one of `cron` (evaluated in `timezone`), `run_at`
    and `interval_seconds` (from `anchor_at`, default the Unix epoch), optionally bounded by
    `start_at` and `end_at` (both inclusive). `jitter_seconds` delays each cron or interval
    fire by a stable offset in [0, jitter) drawn from (`jitter_key`, the fire): the key is
    the trigger id, so two triggers sharing a schedule spread apart."""

    cron: str | None
    timezone: str = "UTC"
    run_at: datetime | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    interval_seconds: int | None = None
    anchor_at: datetime | None = None
    jitter_seconds: int = 0
    jitter_key: str = ""

    def __post_init__(self) -> None:
        kinds = [self.cron, self.run_at, self.interval_seconds]
        if sum(kind is not None for kind in kinds) != 1:
            raise ScheduleError(
                "exactly one of cron, run_at and interval_seconds is required", field="cron"
            )
        for name in ("run_at", "start_at", "end_at", "anchor_at"):
            _require_aware(getattr(self, name), name)
        if self.start_at and self.end_at and self.end_at < self.start_at:
            raise ScheduleError("end_at is before start_at", field="end_at")
        if self.interval_seconds is not None:
            interval.validate(self.interval_seconds)
        if self.jitter_seconds and self.run_at is not None:
            raise ScheduleError("a one-time trigger takes no jitter", field="jitter_seconds")
        if self.jitter_seconds < 0:
            raise ScheduleError("must be 0 or more", field="jitter_seconds")

    @property
    def anchor(self) -> datetime:
        """The instant interval fires are counted from (the Unix epoch unless set)."""
        return self.anchor_at if self.anchor_at is not None else EPOCH


def due_at(spec: TriggerSpec, fire: datetime) -> datetime:
    """When the nominal `fire` is due: the fire plus its jitter (the fire without jitter)."""
    if not spec.jitter_seconds:
        return fire
    return fire + jitter.offset(spec.jitter_key, fire, spec.jitter_seconds)


def _check_after(after: datetime) -> None:
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("`after` must be an aware datetime")


def iter_cron(cron: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """Every fire of `cron` in `timezone` strictly after `after` (aware UTC, increasing)."""
    _check_after(after)
    return fires.iter_fires(cron_grammar.parse(cron), zones.get(timezone), after)


def next_fires(cron: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` fires strictly after aware `after`, as aware UTC datetimes, increasing.

    Fewer than `count` only when the search limit (100 years) is reached. Raises
    ScheduleError for an invalid expression or zone.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    return list(itertools.islice(iter_cron(cron, timezone, after), count))


@lru_cache(maxsize=4096)
def next_fire(cron: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire strictly after `after`, or None if none within 100 years.

    Memoised: the dispatcher asks this for many triggers sharing an expression and `after`.
    """
    return next(iter_cron(cron, timezone, after), None)


_PERIOD_SAMPLE = 1000
_PERIOD_FROM = datetime(2026, 1, 1, tzinfo=UTC)


def period_seconds(spec: TriggerSpec) -> float | None:
    """The shortest gap between two fires of a cron or interval schedule (None: one-time).

    For cron, the shortest gap among its first 1,000 fires from 2026 in its own zone: a
    daylight-saving day can bring two wall-clock fires closer ('30 2,3 * * *' fires at 03:00
    and 03:30 on a spring-forward day), and jitter must stay below it.
    """
    if spec.interval_seconds is not None:
        return float(spec.interval_seconds)
    if spec.cron is None:
        return None
    return _cron_period(spec.cron, spec.timezone)


@lru_cache(maxsize=1024)
def _cron_period(cron: str, timezone: str) -> float:
    found = list(itertools.islice(iter_cron(cron, timezone, _PERIOD_FROM), _PERIOD_SAMPLE))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(found)]
    return min(gaps, default=float(interval.MAX_SECONDS))


def _lower_bound(spec: TriggerSpec, after: datetime) -> datetime:
    if spec.start_at is not None and spec.start_at - _TICK > after:
        return spec.start_at - _TICK
    return after


def iter_spec(spec: TriggerSpec, after: datetime) -> Iterator[datetime]:
    """Every fire of the trigger strictly after `after`, inside its window, increasing."""
    _check_after(after)
    if spec.run_at is not None:
        if spec.run_at > after and _in_window(spec, spec.run_at):
            yield spec.run_at.astimezone(UTC)
        return
    if spec.interval_seconds is not None:
        found = interval.iter_fires(spec.anchor, spec.interval_seconds, _lower_bound(spec, after))
    else:
        assert spec.cron is not None
        found = iter_cron(spec.cron, spec.timezone, _lower_bound(spec, after))
    for moment in found:
        if spec.end_at is not None and moment > spec.end_at:
            return
        yield moment


def trigger_fires(spec: TriggerSpec, after: datetime, count: int) -> list[datetime]:
    """The trigger's next `count` fires strictly after `after`, inside its window (previews)."""
    return list(itertools.islice(iter_spec(spec, after), count))


def _in_window(spec: TriggerSpec, moment: datetime) -> bool:
    return (spec.start_at is None or moment >= spec.start_at) and (
        spec.end_at is None or moment <= spec.end_at
    )


def first_fire(spec: TriggerSpec, now: datetime) -> datetime | None:
    """The `next_run_at` of a trigger written at `now` (created, rescheduled or re-enabled).

    - cron: the first fire at or after `start_at` and strictly after `now`; None when it
      would fall after `end_at`.
    - one-time: `run_at` when it lies inside [start_at, end_at], else None. It is not
      compared with `now`: the API rejects a `run_at` in the past on creation, and a past
      `run_at` of a re-enabled trigger is the catch-up policy's to decide (run once if
      within the window).
    """
    _check_after(now)
    if spec.run_at is not None:
        return spec.run_at.astimezone(UTC) if _in_window(spec, spec.run_at) else None
    return fire_after(spec, now)


def fire_after(spec: TriggerSpec, after: datetime) -> datetime | None:
    """The trigger's next fire strictly after `after` inside its window; None when there is
    none (a one-time trigger whose `run_at` <= `after`, or past `end_at`)."""
    _check_after(after)
    if spec.interval_seconds is not None:
        moment = interval.fire_after(spec.anchor, spec.interval_seconds, _lower_bound(spec, after))
        if moment is None or (spec.end_at is not None and moment > spec.end_at):
            return None
        return moment
    if spec.run_at is not None:
        return next(iter_spec(spec, after), None)
    assert spec.cron is not None
    moment = next_fire(spec.cron, spec.timezone, _lower_bound(spec, after))
    if moment is None or (spec.end_at is not None and moment > spec.end_at):
        return None
    return moment


def fires_between(spec: TriggerSpec, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """The first `limit` fires f with start <= f <= end, oldest first."""
    found = iter_spec(spec, start - _TICK)
    return list(itertools.islice(itertools.takewhile(lambda f: f <= end, found), limit))


def fires_in_range(spec: TriggerSpec, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """The first `limit` fires f with start <= f < end (half-open: backfill's range)."""
    found = iter_spec(spec, start - _TICK)
    return list(itertools.islice(itertools.takewhile(lambda f: f < end, found), limit))


def last_fires(spec: TriggerSpec, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """The last `limit` fires f with start <= f <= end, oldest first.

    Bounded work whatever the distance from `start` to `end`: looks back over a span that
    grows fourfold until it holds `limit` fires (fires are at least a minute apart, so the
    first span is `limit` minutes), instead of walking every fire since `start`.
    """
    if limit <= 0 or end < start:
        return []
    span = timedelta(minutes=limit)
    while True:
        begin = max(start, end - span)
        found = deque(fires_between(spec, begin, end, limit=10**9), maxlen=limit)
        if len(found) == limit or begin == start:
            return list(found)
        span *= 4


def describe(spec: TriggerSpec) -> str:
    """Human text: "At 02:30 AM, America/New_York"; "Once at 2026-12-01T09:00:00Z";
    "Every 1 hour 30 minutes, counted from 2026-01-01T00:15:00Z" (no anchor phrase for the
    epoch); a window adds ", from <start_at>" and ", until <end_at>"; jitter adds ", delayed
    by up to N seconds of jitter"."""
    if spec.run_at is not None:
        text = f"Once at {_iso(spec.run_at)}"
    elif spec.interval_seconds is not None:
        text = f"Every {interval.describe(spec.interval_seconds)}"
        if spec.anchor != EPOCH:
            text += f", counted from {_iso(spec.anchor)}"
    else:
        assert spec.cron is not None
        text = f"{_describe_cron(cron_grammar.parse(spec.cron))}, {spec.timezone}"
    if spec.start_at is not None:
        text += f", from {_iso(spec.start_at)}"
    if spec.end_at is not None:
        text += f", until {_iso(spec.end_at)}"
    if spec.jitter_seconds:
        text += f", delayed by up to {interval.describe(spec.jitter_seconds)} of jitter"
    return text


_FULL = (set(range(60)), set(range(24)), set(range(1, 32)), set(range(1, 13)), set(range(7)))
_DESCRIBE_ERRORS = (cron_descriptor.FormatError, cron_descriptor.MissingFieldError, ValueError)


def _describe_cron(expr: cron_grammar.CronExpr) -> str:
    """cron-descriptor's text for `expr`, fed a form it reads correctly.

    It fails on some valid fields ('*,5', 'FEB-3', '3-FRI,*/4'), so a field covering its
    whole range is given as '*' and names as numbers; if it still fails, the restricted
    fields are spelled out as value lists. Debian's day rule is kept: with OR, one full day
    field means every day; with AND its "or on" is corrected.
    """
    if expr.extended:
        return _describe_extended(expr)
    sets = (expr.minutes, expr.hours, expr.days, expr.months, expr.weekdays)
    fields = [
        "*" if set(values) == full else cron_grammar.names_to_numbers(index, text)
        for index, (values, full, text) in enumerate(zip(sets, _FULL, expr.fields, strict=True))
    ]
    if not expr.day_and and "*" in (fields[2], fields[4]):
        fields[2] = fields[4] = "*"
    try:
        text = cron_descriptor.get_description(" ".join(fields))
    except _DESCRIBE_ERRORS:
        fields = [
            text if text == "*" else ",".join(str(v) for v in sorted(values))
            for values, text in zip(sets, fields, strict=True)
        ]
        text = cron_descriptor.get_description(" ".join(fields))
    if expr.day_and and fields[2] != "*" and fields[4] != "*":
        # cron-descriptor always reads two day fields as "or"; with a '*'-led field Debian
        # cron requires both ('0 0 */2 * MON': Mondays that are odd days).
        text = text.replace(", or on ", ", and only on ")
    return text


_ORDINALS = ("", "first", "second", "third", "fourth", "fifth")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _describe_extended(expr: cron_grammar.CronExpr) -> str:
    """Text for an expression using `L`, `LW`, `#` or `DL`.

    cron-descriptor reads a lone extension well but garbles lists ('15,L': "day 15 and L";
    'MON#2,FRI#1': "the  Monday and Friday") and joins the two day fields with a comma where
    Debian's rule means "or". So it describes the time and the months only (day fields '*'),
    and the day phrase is written here, in its words.
    """
    plain = cron_grammar.parse(" ".join([*expr.fields[:2], "*", expr.fields[3], "*"]))
    base = _describe_cron(plain)
    time_only = _describe_cron(cron_grammar.parse(" ".join([*expr.fields[:2], "* * *"])))
    months = base[len(time_only) :] if base.startswith(time_only) else ""
    dom_parts = [f"day {', '.join(str(d) for d in sorted(expr.days))}"] if expr.days else []
    if expr.days and not expr.month_ends:  # cron-descriptor reads plain days well ('*/2')
        plain_days = _describe_cron(cron_grammar.parse(f"0 0 {expr.fields[2]} * *"))
        dom_parts = [plain_days.removeprefix("At 12:00 AM, ").removeprefix("on ")]
    dom_parts += [
        {"L": "the last day", "LW": "the last weekday"}[end] for end in sorted(expr.month_ends)
    ]
    dow_parts = [_WEEKDAYS[d] for d in sorted(expr.weekdays)]
    dow_parts += [f"the {_ORDINALS[n]} {_WEEKDAYS[d]}" for d, n in sorted(expr.nth_weekdays)]
    dow_parts += [f"the last {_WEEKDAYS[d]}" for d in sorted(expr.last_weekdays)]
    of_month = " of the month" if expr.nth_weekdays or expr.last_weekdays else ""
    dom = " and ".join(dom_parts)
    if dom and not dom.endswith("of the month") and not dom.startswith("every"):
        dom += " of the month"
    dom = f"on {dom}" if dom.startswith(("day", "the")) else dom
    dow = f"on {' and '.join(dow_parts)}{of_month}" if dow_parts else ""
    full_dom = expr.fields[2].startswith("*") and set(expr.days) == set(range(1, 32))
    full_dow = expr.fields[4].startswith("*") and set(expr.weekdays) == set(range(7))
    if full_dom or not dom:
        days = dow
    elif full_dow or not dow:
        days = dom
    else:
        days = f"{dom}, and only {dow}" if expr.day_and else f"{dom}, or {dow}"
    return f"{time_only}, {days}{months}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
