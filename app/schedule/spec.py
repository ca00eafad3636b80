"""A trigger's schedule as a value (cron, interval or one-time, with its window and jitter)
and its fire times.

`first_fire` gives a trigger written at `now` its next nominal fire (every write path of
app/triggers.py calls it, and reconciliation does for a row that lacks one); the dispatcher
advances a trigger it has dispatched with the catch-up plan instead (catchup.py), from the
same iterators. `due_at` adds the trigger's jitter to a nominal fire (app/schedule/jitter.py).

Every function here speaks of nominal fires (the run's `scheduled_for`) unless its name says
"due": a fire is due (claimed by the dispatcher) at `due_at(spec, fire)`, which is the fire
itself when the trigger has no jitter.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from app.errors import ScheduleError
from app.schedule import cron as cron_grammar
from app.schedule import fires, interval, jitter, zones

_TICK = timedelta(microseconds=1)  # see _just_before
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

    @classmethod
    def of(cls, source: Any) -> TriggerSpec:
        """The schedule of a trigger, read by the trigger model's field names from the model,
        a row that carries them (an SQLAlchemy Row, a NamedTuple) or a mapping; its `id`
        keys the jitter (none yet: a trigger being written for the first time)."""
        if isinstance(source, Mapping):
            get = source.get
        else:
            get = lambda name: getattr(source, name, None)  # noqa: E731 - one of two readers
        trigger_id = get("id")
        return cls(
            cron=get("cron"),
            timezone=get("timezone") or "UTC",
            run_at=get("run_at"),
            start_at=get("start_at"),
            end_at=get("end_at"),
            interval_seconds=get("interval_seconds"),
            anchor_at=get("anchor_at"),
            jitter_seconds=get("jitter_seconds") or 0,
            jitter_key="" if trigger_id is None else str(trigger_id),
        )

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


def jitter_problem(spec: TriggerSpec) -> str | None:
    """Why the spec's jitter is too large for its schedule, or None when it is within bound.

    Within the period, jittered fires stay in order: the dispatcher's plan relies on it.
    """
    period = period_seconds(spec)
    if period is None or spec.jitter_seconds <= jitter.limit(period):
        return None
    return f"must be at most {jitter.limit(period)} (the schedule's period, at most 3600)"


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


def _just_before(moment: datetime) -> datetime:
    """`moment` minus one microsecond: "strictly after" this is "at or after `moment`". At
    datetime's first instant (0001-01-01T00:00, which the API accepts) it is `moment`
    itself, so a fire at that very instant is left out, rather than the request failing."""
    return moment if moment.replace(tzinfo=None) == datetime.min else moment - _TICK


def _lower_bound(spec: TriggerSpec, after: datetime) -> datetime:
    if spec.start_at is None:
        return after
    return max(_just_before(spec.start_at), after)


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
    found = iter_spec(spec, _just_before(start))
    return list(itertools.islice(itertools.takewhile(lambda f: f <= end, found), limit))


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
        begin = start if end - start <= span else end - span  # never before year 1
        found = deque(fires_between(spec, begin, end, limit=10**9), maxlen=limit)
        if len(found) == limit or begin == start:
            return list(found)
        span *= 4
