"""Fire times of an expression and of a whole trigger (window, one-time), and descriptions."""

from __future__ import annotations

import importlib
import random
from datetime import UTC, datetime, timedelta

import pytest

from app import schedule
from app.errors import ScheduleError
from app.schedule import spec as schedule_spec
from tests.unit.schedule.helpers import at, fires, iso, random_expression

NY = "America/New_York"


def test_next_fires_are_strictly_after_and_in_utc() -> None:
    got = schedule_spec.next_fires("*/15 * * * *", NY, at("2026-01-05T12:15:00-05:00"), 3)
    assert [iso(f) for f in got] == ["2026-01-05T17:30Z", "2026-01-05T17:45Z", "2026-01-05T18:00Z"]
    assert all(f.tzinfo is UTC for f in got)


def test_a_fraction_of_a_second_after_a_fire_moves_to_the_next() -> None:
    assert fires("0 * * * *", "UTC", "2026-01-05T12:00:00.000001Z", 1) == ["2026-01-05T13:00Z"]
    assert fires("0 * * * *", "UTC", "2026-01-05T11:59:59.999999Z", 1) == ["2026-01-05T12:00Z"]


def test_leap_day_fires_every_four_years() -> None:
    assert fires("0 0 29 2 *", "UTC", "2026-01-01T00:00Z", 3) == [
        "2028-02-29T00:00Z",
        "2032-02-29T00:00Z",
        "2036-02-29T00:00Z",
    ]
    assert fires("0 0 29 2 *", NY, "2026-01-01T00:00Z", 1) == ["2028-02-29T05:00Z"]


def test_leap_day_on_a_sunday_skips_2100() -> None:
    # '*/7' starts with '*': AND, so only 29 February falling on a Sunday.
    assert fires("0 0 29 2 */7", "UTC", "2070-01-01T00:00Z", 2) == [
        "2088-02-29T00:00Z",
        "2128-02-29T00:00Z",
    ]


@pytest.mark.parametrize(
    ("cron", "zone", "after", "expected"),
    [
        ("59 23 31 12 *", "UTC", "2026-12-31T23:59Z", ["2027-12-31T23:59Z"]),
        ("*/20 * * * *", "UTC", "2026-12-31T23:50Z", ["2027-01-01T00:00Z", "2027-01-01T00:20Z"]),
        # New Year in Auckland (+13 in summer) is still 2026 in UTC
        ("0 0 1 1 *", "Pacific/Auckland", "2026-06-01T00:00Z", ["2026-12-31T11:00Z"]),
        ("0 0 1 1 *", NY, "2026-12-31T12:00Z", ["2027-01-01T05:00Z", "2028-01-01T05:00Z"]),
        ("0 12 31 * *", "UTC", "2026-12-31T12:00Z", ["2027-01-31T12:00Z", "2027-03-31T12:00Z"]),
    ],
)
def test_year_end_roll_over(cron: str, zone: str, after: str, expected: list[str]) -> None:
    assert fires(cron, zone, after, len(expected)) == expected


def test_next_fire_is_memoised_on_its_arguments() -> None:
    after = datetime(2026, 1, 5, 12, 0, 30, tzinfo=UTC)
    first = schedule_spec.next_fire("*/5 * * * *", NY, after)
    hits = schedule_spec.next_fire.cache_info().hits
    again = schedule_spec.next_fire(
        "*/5 * * * *", NY, after.astimezone(datetime.now().astimezone().tzinfo)
    )
    assert again is first
    assert schedule_spec.next_fire.cache_info().hits == hits + 1
    assert iso(first) == "2026-01-05T12:05Z"


def test_counts_and_bad_arguments() -> None:
    assert schedule_spec.next_fires("* * * * *", "UTC", at("2026-01-01T00:00Z"), 0) == []
    with pytest.raises(ValueError, match="aware"):
        schedule_spec.next_fires("* * * * *", "UTC", datetime(2026, 1, 1), 1)
    with pytest.raises(ValueError):
        schedule_spec.next_fires("* * * * *", "UTC", at("2026-01-01T00:00Z"), -1)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "america/new_york", "../etc/passwd",
                                  "/usr/share/zoneinfo/UTC", "posixrules", "EST+5",
                                  "localtime"])  # fmt: skip
def test_an_unknown_time_zone_is_rejected_by_name(name: str) -> None:
    with pytest.raises(ScheduleError) as info:
        schedule.validate_timezone(name)
    assert info.value.field == "timezone"
    with pytest.raises(ScheduleError):
        schedule_spec.next_fires("* * * * *", name, at("2026-01-01T00:00Z"), 1)


@pytest.mark.parametrize("name", ["UTC", "America/New_York", "Australia/Lord_Howe", "Etc/GMT+5"])
def test_a_known_time_zone_is_returned(name: str) -> None:
    assert schedule.validate_timezone(name) == name


def spec(**fields) -> schedule.TriggerSpec:
    fields.setdefault("cron", "0 9 * * *")
    return schedule.TriggerSpec(**fields)


NOW = at("2026-01-05T12:00:30Z")


def test_first_fire_of_a_cron_trigger_is_after_now() -> None:
    assert iso(schedule.first_fire(spec(), NOW)) == "2026-01-06T09:00Z"
    assert iso(schedule.first_fire(spec(timezone=NY), NOW)) == "2026-01-05T14:00Z"


def test_first_fire_waits_for_start_at_and_includes_it() -> None:
    start = at("2026-02-01T09:00Z")
    assert schedule.first_fire(spec(start_at=start), NOW) == start
    later = at("2026-02-01T09:00:01Z")
    assert iso(schedule.first_fire(spec(start_at=later), NOW)) == "2026-02-02T09:00Z"
    # a start already past changes nothing
    assert iso(schedule.first_fire(spec(start_at=at("2025-01-01T00:00Z")), NOW)) == (
        "2026-01-06T09:00Z"
    )


def test_first_fire_is_none_past_end_at_and_end_at_is_inclusive() -> None:
    assert schedule.first_fire(spec(end_at=at("2026-01-06T08:59Z")), NOW) is None
    end = at("2026-01-06T09:00Z")
    assert schedule.first_fire(spec(end_at=end), NOW) == end


def test_first_fire_of_a_one_time_trigger_is_run_at_inside_its_window() -> None:
    run_at = at("2026-12-01T09:00Z")
    assert schedule.first_fire(spec(cron=None, run_at=run_at), NOW) == run_at
    # not compared with now: a re-enabled past trigger is the catch-up policy's to decide
    past = at("2026-01-05T11:00Z")
    assert schedule.first_fire(spec(cron=None, run_at=past), NOW) == past
    outside = spec(cron=None, run_at=run_at, end_at=at("2026-11-30T00:00Z"))
    assert schedule.first_fire(outside, NOW) is None
    before = spec(cron=None, run_at=run_at, start_at=at("2026-12-01T09:00:01Z"))
    assert schedule.first_fire(before, NOW) is None


def test_fire_after() -> None:
    assert iso(schedule_spec.fire_after(spec(), at("2026-01-06T09:00Z"))) == "2026-01-07T09:00Z"
    windowed = spec(start_at=at("2026-03-01T00:00Z"), end_at=at("2026-03-02T09:00Z"))
    assert iso(schedule_spec.fire_after(windowed, NOW)) == "2026-03-01T09:00Z"
    assert iso(schedule_spec.fire_after(windowed, at("2026-03-01T09:00Z"))) == "2026-03-02T09:00Z"
    assert schedule_spec.fire_after(windowed, at("2026-03-02T09:00Z")) is None
    one_time = spec(cron=None, run_at=at("2026-01-05T12:01Z"))
    assert iso(schedule_spec.fire_after(one_time, NOW)) == "2026-01-05T12:01Z"
    assert schedule_spec.fire_after(one_time, at("2026-01-05T12:01Z")) is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": None}, "cron"),
        ({"run_at": at("2026-12-01T09:00Z")}, "cron"),
        ({"cron": None, "run_at": datetime(2026, 12, 1, 9)}, "run_at"),
        ({"start_at": datetime(2026, 12, 1)}, "start_at"),
        ({"start_at": at("2026-12-02T00:00Z"), "end_at": at("2026-12-01T00:00Z")}, "end_at"),
    ],
)
def test_an_inconsistent_trigger_spec_is_rejected(fields: dict, field: str) -> None:
    with pytest.raises(ScheduleError) as info:
        spec(**fields)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"cron": "30 2 * * *", "timezone": NY}, "At 02:30 AM, America/New_York"),
        ({"cron": "*/15 * * * *"}, "Every 15 minutes, UTC"),
        ({"cron": "@weekly"}, "At 12:00 AM, only on Sunday, UTC"),
        ({"cron": "0 0 1 * MON"}, "At 12:00 AM, on day 1 of the month, or on Monday, UTC"),
        ({"cron": "0 0 */2 * MON"}, "At 12:00 AM, every 2 days, and only on Monday, UTC"),
        ({"cron": None, "run_at": at("2026-12-01T10:00+01:00")}, "Once at 2026-12-01T09:00:00Z"),
        # forms cron-descriptor cannot read as written
        ({"cron": "*,5 9 * * *"}, "Every minute, between 09:00 AM and 09:59 AM, UTC"),
        ({"cron": "0 9 * feb-3 *"}, "At 09:00 AM, February through March, UTC"),
        ({"cron": "0 9 * * 3-FRI,*/4"},
         "At 09:00 AM, only on Sunday, Wednesday, Thursday, and Friday, UTC"),
        # OR with a full day-of-week field is every day
        ({"cron": "0 0 1 * 0-7"}, "At 12:00 AM, UTC"),
        (
            {"cron": "0 9 * * *", "start_at": at("2026-01-01T00:00Z"),
             "end_at": at("2026-06-30T00:00Z")},
            "At 09:00 AM, UTC, from 2026-01-01T00:00:00Z, until 2026-06-30T00:00:00Z",
        ),
    ],
)  # fmt: skip
def test_describe(fields: dict, text: str) -> None:
    assert schedule.describe(schedule.TriggerSpec(**fields)) == text


def test_a_one_time_fire_comes_back_in_utc() -> None:
    one_time = spec(cron=None, run_at=at("2026-12-01T10:00+01:00"))
    fire = schedule.first_fire(one_time, NOW)
    assert fire.tzinfo is UTC and iso(fire) == "2026-12-01T09:00Z"
    assert schedule_spec.fire_after(one_time, NOW - timedelta(days=1)).tzinfo is UTC


def test_describe_reads_every_valid_expression() -> None:
    rng = random.Random(7)
    for _ in range(500):
        text = schedule.describe(schedule.TriggerSpec(cron=random_expression(rng), timezone=NY))
        assert text.endswith(", America/New_York") and len(text) > len(", America/New_York")


EARLIEST = datetime(1, 1, 1, tzinfo=UTC)  # the first instant the API accepts
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@pytest.mark.parametrize(
    ("fields", "history"),
    [
        # A fire at the first instant itself is left out (spec._just_before), so the
        # daily cron's history starts the next day.
        ({"cron": "0 0 * * *"}, [EARLIEST + DAY, EARLIEST + 2 * DAY, EARLIEST + 3 * DAY]),
        (
            {"interval_seconds": 3600, "anchor_at": EARLIEST},
            [EARLIEST + n * HOUR for n in range(1, 73)],
        ),
        ({"run_at": EARLIEST + 2 * DAY}, [EARLIEST + 2 * DAY]),
    ],
)
def test_a_window_that_starts_at_the_first_instant_has_fires_and_a_history(fields, history) -> None:
    """A window from 0001-01-01T00:00Z: its bound was once computed as one microsecond
    before it, and the history's look-back went past year 1 (an OverflowError, which the
    API could only report as a 422 on the whole body)."""
    spec = schedule_spec.TriggerSpec(
        cron=fields.get("cron"),
        start_at=EARLIEST,
        **{k: v for k, v in fields.items() if k != "cron"},
    )
    assert schedule_spec.fire_after(spec, EARLIEST) == history[0]
    assert schedule_spec.trigger_fires(spec, EARLIEST, 2) == history[:2]
    end = EARLIEST + 3 * DAY
    assert schedule_spec.last_fires(spec, EARLIEST, end, limit=500) == history
    assert schedule_spec.fires_between(spec, EARLIEST, end, limit=500) == history


def test_triggers_sharing_an_expression_are_described_by_cron_descriptor_once(
    monkeypatch,
) -> None:
    """cron-descriptor reads its translation file at every call; a page of triggers that
    share an expression (each its own spec: the trigger id keys its jitter) must not pay
    for it per trigger. A list page of 100 such triggers took 70 ms on it."""
    describe_module = importlib.import_module("app.schedule.describe")  # not the function
    calls: list[str] = []
    real = describe_module.cron_descriptor.get_description
    monkeypatch.setattr(
        describe_module.cron_descriptor,
        "get_description",
        lambda expression: calls.append(expression) or real(expression),
    )
    describe_module._cron_descriptor_text.cache_clear()
    specs = [
        schedule_spec.TriggerSpec(cron="*/7 3 * * *", jitter_key=str(n), jitter_seconds=5)
        for n in range(3)
    ]
    texts = {schedule.describe(spec) for spec in specs}
    assert len(texts) == 1 and "every 7 minutes" in texts.pop().lower()
    assert calls == ["*/7 3 * * *"]
