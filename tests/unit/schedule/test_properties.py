"""Property tests: fires increase, match the expression in local time, and around every DST
transition of a sample of zones (2026-2030) equal a brute-force oracle that steps through
real time minute by minute. The oracle reads the fields with cronsim's parser and states the
Debian rules directly, so it shares no code with app/schedule/fires.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ScheduleError
from app.schedule import spec as schedule_spec
from tests.unit.schedule.helpers import transitions

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Dublin",  # negative DST in the tz database
    "Australia/Lord_Howe",  # 30-minute shift
    "Pacific/Chatham",  # transitions at 02:45 / 03:45
    "America/Santiago",  # transitions at midnight
    "Atlantic/Azores",  # transitions at midnight
    "America/Havana",  # transitions at midnight
    "Australia/Sydney",
    "Antarctica/Troll",  # a two-hour shift
    "Africa/Casablanca",  # suspended DST during Ramadan
    "America/St_Johns",
]
MINUTE = timedelta(minutes=1)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)
BOUNDS = {0: (0, 59), 1: (0, 23), 2: (1, 31), 3: (1, 12), 4: (0, 7)}
MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0"}


@st.composite
def items(draw, index: int) -> str:
    low, high = BOUNDS[index]
    kind = draw(st.sampled_from(["*", "value", "range"]))
    if kind == "*":
        text = "*"
    elif kind == "value":
        text = str(draw(st.integers(low, high)))
    else:
        start = draw(st.integers(low, high - 1))
        text = f"{start}-{draw(st.integers(start + 1, high))}"
    if draw(st.booleans()):
        text += f"/{draw(st.integers(1, high))}"
    return text


@st.composite
def expressions(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(sorted(MACROS)))
    fields = []
    for index in range(5):
        fields.append(",".join(draw(st.lists(items(index), min_size=1, max_size=3))))
    expr = " ".join(fields)
    try:
        schedule_spec.cron_grammar.parse(expr)
    except ScheduleError:  # e.g. '0 0 31 2 *': never fires, not a valid expression
        return "*/7 * * * *"
    return expr


class Oracle:
    """Debian cron's rules, stated directly on real instants."""

    def __init__(self, expr: str, zone: str) -> None:
        fields = MACROS.get(expr, expr)
        self.sim = CronSim(fields, datetime(2000, 1, 1))
        minute, hour = fields.split()[:2]
        self.pinned = not minute.startswith("*") and not hour.startswith("*")
        self.zone = ZoneInfo(zone)

    def matches(self, local: datetime) -> bool:
        sim = self.sim
        return (
            local.minute in sim.minutes
            and local.hour in sim.hours
            and local.month in sim.months
            and sim.match_day(local.date())
        )

    def fires(self, start: datetime, end: datetime) -> list[datetime]:
        """Fires f with start < f <= end, stepping through every real minute."""
        moment = start.replace(second=0, microsecond=0) + MINUTE
        before = (moment - MINUTE).astimezone(self.zone).replace(tzinfo=None)
        found = []
        while moment <= end:
            local = moment.astimezone(self.zone)
            wall = local.replace(tzinfo=None)
            fire = self.matches(wall) and (local.fold == 0 or not self.pinned)
            if self.pinned and wall - before > MINUTE:
                # Wall-clock minutes skipped by a gap fire once, at the first instant after it.
                skipped = before + MINUTE
                while skipped < wall and not fire:
                    fire = self.matches(skipped)
                    skipped += MINUTE
            if fire:
                found.append(moment)
            before = wall
            moment += MINUTE
        return found


def engine_fires(expr: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    found = []
    for fire in schedule_spec.iter_cron(expr, zone, start):
        if fire > end:
            break
        found.append(fire)
    return found


@st.composite
def around_a_transition(draw) -> tuple[str, str, datetime]:
    """(expression, zone, start) with start within a day before a transition. Half of the
    expressions name the local hours next to the transition, so gaps and repeats are hit."""
    zone = draw(st.sampled_from([z for z in ZONES if z != "UTC"]))
    moment = draw(st.sampled_from(transitions(zone)))
    expr = draw(expressions())
    if draw(st.booleans()) and not expr.startswith("@"):
        tz = ZoneInfo(zone)
        near = {(moment + timedelta(minutes=m)).astimezone(tz).hour for m in (-61, -1, 0, 60)}
        hours = draw(st.lists(st.sampled_from(sorted(near)), min_size=1, max_size=3))
        fields = expr.split()
        fields[1] = ",".join(str(h) for h in hours)
        if draw(st.booleans()):
            fields[1] = f"{min(hours)}-23/{draw(st.integers(1, 3))}"
        expr = " ".join([fields[0], fields[1], "*", "*", "*"])
    return expr, zone, moment + timedelta(seconds=draw(st.integers(-30 * 3600, 3 * 3600)))


@SETTINGS
@given(around_a_transition())
def test_around_dst_transitions_nothing_is_skipped_or_repeated(case) -> None:
    expr, zone, start = case
    end = start + timedelta(hours=36)
    assert engine_fires(expr, zone, start, end) == Oracle(expr, zone).fires(start, end)


@SETTINGS
@given(
    expressions(),
    st.sampled_from(ZONES),
    st.datetimes(datetime(2026, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)),
)
def test_in_any_two_days_the_fires_are_the_oracles(expr, zone, start) -> None:
    end = start + timedelta(days=2)
    assert engine_fires(expr, zone, start, end) == Oracle(expr, zone).fires(start, end)


@SETTINGS
@given(
    expressions(),
    st.sampled_from(ZONES),
    st.datetimes(datetime(2026, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)),
)
def test_fires_increase_are_utc_and_match_in_local_time(expr, zone, after) -> None:
    fires = schedule_spec.next_fires(expr, zone, after, 40)
    assert len(fires) == 40
    assert all(f.tzinfo is UTC for f in fires)
    assert all(a < b for a, b in zip([after, *fires], fires, strict=False))
    oracle = Oracle(expr, zone)
    for fire in fires:
        local = fire.astimezone(oracle.zone)
        if not oracle.matches(local.replace(tzinfo=None)):
            # Only a pinned time moved out of a DST gap may not match its own wall clock.
            assert oracle.pinned
            assert oracle.fires(fire - MINUTE, fire) == [fire]
            assert (fire - MINUTE).astimezone(oracle.zone).utcoffset() != local.utcoffset()
