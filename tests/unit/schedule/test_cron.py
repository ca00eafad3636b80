"""The cron grammar: validation messages name the field, day fields follow Debian cron."""

from __future__ import annotations

import random
import time

import pytest

from app import schedule
from app.errors import ScheduleError
from app.schedule import spec as schedule_spec
from tests.unit.schedule.helpers import fires, random_extended_expression


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("30 2 * * *", "30 2 * * *"),
        ("  0   9\t* * mon-fri ", "0 9 * * MON-FRI"),
        ("0 0 1 jan,Jul *", "0 0 1 JAN,JUL *"),
        ("@daily", "@daily"),
        ("@HOURLY", "@hourly"),
        ("@annually", "@annually"),
        ("0 0 29 2 *", "0 0 29 2 *"),
    ],
)
def test_it_returns_the_normalised_expression(expr: str, normalised: str) -> None:
    assert schedule.validate_cron(expr) == normalised


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "the cron expression is empty"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 * * * * *", "got 6; a seconds (or year) field is not supported"),
        ("0 0 * * * * 2026", "got 7; seconds and year fields are not supported"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("0 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field '13': 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("0 0 * foo *", "month field 'foo': 'foo' is not a number or a month name (JAN-DEC)"),
        ("0 0 * * sun-funday", "day-of-week field 'sun-funday': 'funday' is not a number or a"),
        ("x * * * *", "minute field 'x': 'x' is not a number"),
        ("*/0 * * * *", "minute field '*/0': step '0' is not a positive number"),
        ("0 */x * * *", "hour field '*/x': step 'x' is not a positive number"),
        ("0 0 * * FRI-MON", "day-of-week field 'FRI-MON': range 'FRI-MON' ends before it starts"),
        ("0 0 20-10 * *", "day-of-month field '20-10': range '20-10' ends before it starts"),
        ("1,,2 * * * *", "minute field '1,,2': '' is not a value, a range or a step"),
        ("-5 * * * *", "minute field '-5': '-5' is not a value, a range or a step"),
        ("0 0 15W * *", "day-of-month field '15W': '15W' is not supported"),
        # the extensions (L, LW, D#N, DL) in impossible combinations
        ("0 0 * * 1#6", "day-of-week field '1#6': '1#6': the week number after '#' must be 1-5"),
        ("0 0 * * 1#0", "the week number after '#' must be 1-5"),
        ("0 0 L/2 * *", "day-of-month field 'L/2': 'L/2': 'L' takes no step"),
        ("0 0 LW/3 * *", "'LW' takes no step"),
        ("0 0 * * 5L/2", "day-of-week field '5L/2': '5L/2' is not a valid '#' or 'L' item"),
        ("0 0 * * 1-3#2", "'1-3#2' is not a valid '#' or 'L' item"),
        ("0 0 1#2 * *", "day-of-month field '1#2': '#' is only allowed in the day-of-week"),
        ("0 0 * * L", "day-of-week field 'L': 'L' is not supported"),
        ("0 0 5L * *", "day-of-month field '5L': '5L' is not supported"),
        ("0 0 * * 8L", "day-of-week field '8L': 8 is out of range 0-7"),
        ("0 0 */30 * 1#2", "never fires: no day matches day-of-month '*/30' and day-of-week"),
        ("0 0 ? * *", "day-of-month field '?': '?' is not supported"),
        ("H * * * *", "minute field 'H': 'H' is not supported"),
        ("@reboot", "unknown macro '@reboot' (supported: @hourly @daily @midnight"),
        ("0 0 30 2 *", "never fires: day-of-month '30' does not exist in month '2' (FEB)"),
        ("0 0 31 4,6,9,11 *", "never fires: day-of-month '31' does not exist in month"),
        ("0 0 31 2 */2", "never fires: day-of-month '31' does not exist in month '2' (FEB)"),
    ],
)
def test_an_invalid_expression_names_the_field_and_the_problem(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        schedule.validate_cron(expr)
    assert info.value.field == "cron"
    assert message in info.value.message


def test_a_never_firing_expression_is_rejected_at_once_everywhere() -> None:
    started = time.perf_counter()
    for call in (
        lambda: schedule.validate_cron("0 0 30 2 *"),
        lambda: schedule_spec.next_fires("0 0 30 2 *", "UTC", _after(), 1),
        lambda: schedule_spec.next_fire("0 0 30 2 *", "UTC", _after()),
    ):
        with pytest.raises(ScheduleError, match="never fires"):
            call()
    assert time.perf_counter() - started < 0.1


def test_day_30_of_february_or_a_weekday_fires_on_the_weekday() -> None:
    # Neither day field starts with '*': OR, so the Mondays of February fire.
    assert fires("0 0 30 2 MON", "UTC", "2026-01-01T00:00Z", 2) == [
        "2026-02-02T00:00Z",
        "2026-02-09T00:00Z",
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # neither day field starts with '*': the 1st, and every Monday (OR)
        ("0 0 1 * MON", ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26", "2026-02-01"]),
        ("0 0 13 * FRI", ["2026-01-02", "2026-01-09", "2026-01-13", "2026-01-16"]),
        # one starts with '*': both must match (AND): Mondays that are odd days
        ("0 0 */2 * MON", ["2026-01-05", "2026-01-19", "2026-02-09", "2026-02-23"]),
        ("0 0 1 * */2", ["2026-02-01", "2026-03-01", "2026-08-01", "2026-09-01"]),
        ("0 0 1 * *", ["2026-02-01", "2026-03-01"]),
        ("0 0 * * MON", ["2026-01-05", "2026-01-12"]),
        # 7 and 0 are both Sunday, also inside ranges and steps
        ("0 0 * * 7", ["2026-01-04", "2026-01-11"]),
        ("0 0 * * 5-7", ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-09"]),
        ("0 0 * * 5/2", ["2026-01-02", "2026-01-04", "2026-01-09", "2026-01-11"]),
        ("0 0 * * MON/3", ["2026-01-04", "2026-01-05", "2026-01-08", "2026-01-11"]),
    ],
)
def test_day_fields_follow_debian_cron(expr: str, expected: list[str]) -> None:
    got = fires(expr, "UTC", "2026-01-01T00:00Z", len(expected))
    assert [f[:10] for f in got] == expected
    assert {f[10:] for f in got} == {"T00:00Z"}


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("@hourly", "2026-01-01T10:30Z", ["2026-01-01T11:00Z", "2026-01-01T12:00Z"]),
        ("@daily", "2026-01-01T10:30Z", ["2026-01-02T00:00Z", "2026-01-03T00:00Z"]),
        ("@midnight", "2026-01-01T10:30Z", ["2026-01-02T00:00Z", "2026-01-03T00:00Z"]),
        ("@weekly", "2026-01-01T10:30Z", ["2026-01-04T00:00Z", "2026-01-11T00:00Z"]),
        ("@monthly", "2026-01-01T10:30Z", ["2026-02-01T00:00Z", "2026-03-01T00:00Z"]),
        ("@yearly", "2026-01-01T10:30Z", ["2027-01-01T00:00Z", "2028-01-01T00:00Z"]),
        ("@annually", "2026-01-01T00:00Z", ["2027-01-01T00:00Z", "2028-01-01T00:00Z"]),
    ],
)
def test_macros(expr: str, after: str, expected: list[str]) -> None:
    assert fires(expr, "UTC", after, len(expected)) == expected


@pytest.mark.parametrize(
    ("expr", "values"),
    [
        ("1-5/2,7 */20 * * *", ([1, 3, 5, 7], [0, 20])),
        ("5/15 * * * *", ([5, 20, 35, 50], list(range(24)))),
        ("0-59/30 22-23 * * *", ([0, 30], [22, 23])),
        ("*/100 */7 * * *", ([0], [0, 7, 14, 21])),
    ],
)
def test_minute_and_hour_sets(expr: str, values: tuple[list[int], list[int]]) -> None:
    from app.schedule import cron

    parsed = cron.parse(expr)
    assert (list(parsed.minutes), list(parsed.hours)) == values


def test_a_degenerate_range_with_a_step_is_that_single_value() -> None:
    # Debian cron reads '38-38/9' as 38; cronsim 2.8 reads it as '38/9' (38, 47, 56).
    assert fires("38-38/9 14 * * *", "UTC", "2026-01-01T00:00Z", 2) == [
        "2026-01-01T14:38Z",
        "2026-01-02T14:38Z",
    ]


def _after():
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # L: the last day of the month, leap years included
        ("0 9 L * *", "2026-01-30T00:00Z",
         ["2026-01-31T09:00Z", "2026-02-28T09:00Z", "2026-03-31T09:00Z"]),
        ("0 0 L 2 *", "2027-03-01T00:00Z", ["2028-02-29T00:00Z", "2029-02-28T00:00Z"]),
        # LW: the last Monday-Friday (January 2026 ends on a Saturday, May on a Sunday)
        ("0 9 LW * *", "2026-01-01T00:00Z",
         ["2026-01-30T09:00Z", "2026-02-27T09:00Z", "2026-03-31T09:00Z"]),
        ("0 9 LW 5 *", "2026-01-01T00:00Z", ["2026-05-29T09:00Z"]),
        # D#N: the Nth such weekday; 5th Mondays are rare
        ("0 9 * * MON#2", "2026-01-01T00:00Z", ["2026-01-12T09:00Z", "2026-02-09T09:00Z"]),
        ("0 9 * * 1#5", "2026-01-01T00:00Z", ["2026-03-30T09:00Z", "2026-06-29T09:00Z"]),
        ("0 9 * * 7#1", "2026-01-01T00:00Z", ["2026-01-04T09:00Z", "2026-02-01T09:00Z"]),
        # DL: the last such weekday
        ("0 9 * * 5L", "2026-01-01T00:00Z", ["2026-01-30T09:00Z", "2026-02-27T09:00Z"]),
        # a list mixes them; neither field starts with '*': OR (the 15th, or the last day)
        ("0 9 15,L * *", "2026-01-01T00:00Z",
         ["2026-01-15T09:00Z", "2026-01-31T09:00Z", "2026-02-15T09:00Z"]),
        ("0 9 1 * 1#2", "2026-01-01T00:00Z",
         ["2026-01-01T09:00Z", "2026-01-12T09:00Z", "2026-02-01T09:00Z"]),
        # '*/2' starts with '*': AND, the second Monday only when it is an odd day
        ("0 9 */2 * 1#2", "2026-01-01T00:00Z", ["2026-02-09T09:00Z", "2026-03-09T09:00Z"]),
    ],
)  # fmt: skip
def test_month_end_and_nth_weekday_extensions(expr: str, after: str, expected: list[str]) -> None:
    assert fires(expr, "UTC", after, len(expected)) == expected


def test_extensions_follow_the_dst_rules_of_plain_expressions() -> None:
    # 2026-03-08 (second Sunday of March) is the spring-forward day in New York: the pinned
    # 02:30 moves to 03:00 EDT; on 2026-11-01 (first Sunday of November) 01:30 fires once.
    assert fires("30 2 * * SUN#2", "America/New_York", "2026-03-01T00:00Z", 1) == [
        "2026-03-08T07:00Z"
    ]
    assert fires("30 1 * * 0#1", "America/New_York", "2026-10-31T00:00Z", 2) == [
        "2026-11-01T05:30Z",
        "2026-12-06T06:30Z",
    ]


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("0 9 L * *", "At 09:00 AM, on the last day of the month, UTC"),
        ("0 9 LW * *", "At 09:00 AM, on the last weekday of the month, UTC"),
        ("0 9 15,L * *", "At 09:00 AM, on day 15 and the last day of the month, UTC"),
        ("0 9 * * MON#2,FRI#1",
         "At 09:00 AM, on the second Monday and the first Friday of the month, UTC"),
        ("0 18 * * 5L", "At 06:00 PM, on the last Friday of the month, UTC"),
        ("30 8 L 2 *", "At 08:30 AM, on the last day of the month, only in February, UTC"),
        # neither day field starts with '*': OR; one does: AND (Debian's rule, kept)
        ("0 9 1 * 1#2",
         "At 09:00 AM, on day 1 of the month, or on the second Monday of the month, UTC"),
        ("0 9 */2 * 1#2",
         "At 09:00 AM, every 2 days, and only on the second Monday of the month, UTC"),
    ],
)  # fmt: skip
def test_extensions_are_described_in_words(expr: str, text: str) -> None:
    assert schedule.describe(schedule.TriggerSpec(cron=expr)) == text


def test_every_random_expression_with_extensions_has_a_description() -> None:
    rng = random.Random(11)
    for _ in range(300):
        text = schedule.describe(schedule.TriggerSpec(cron=random_extended_expression(rng)))
        assert text.endswith(", UTC") and " L " not in text and "#" not in text
