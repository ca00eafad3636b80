"""Daylight saving time, exactly once, as Debian cron does it (docs/design.md section 4).

The transitions these tests cross (zoneinfo, 2026):

| zone                | instant (UTC)      | local wall clock                            |
|---------------------|--------------------|---------------------------------------------|
| America/New_York    | 2026-03-08 07:00Z  | 02:00 EST -> 03:00 EDT (02:00-03:00 skipped)  |
| America/New_York    | 2026-11-01 06:00Z  | 02:00 EDT -> 01:00 EST (01:00-02:00 twice)    |
| Europe/London       | 2026-03-29 01:00Z  | 01:00 GMT -> 02:00 BST (01:00-02:00 skipped)  |
| Europe/London       | 2026-10-25 01:00Z  | 02:00 BST -> 01:00 GMT (01:00-02:00 twice)    |
| Australia/Lord_Howe | 2026-04-04 15:00Z  | 02:00 +11 -> 01:30 +10:30 (01:30-02:00 twice) |
| Australia/Lord_Howe | 2026-10-03 15:30Z  | 02:00 +10:30 -> 02:30 +11 (02:00-02:30 skip)  |
| Australia/Sydney    | 2026-04-04 16:00Z  | 03:00 AEDT -> 02:00 AEST (02:00-03:00 twice)  |
| Australia/Sydney    | 2026-10-03 16:00Z  | 02:00 AEST -> 03:00 AEDT (02:00-03:00 skip)   |
| America/Santiago    | 2026-04-05 03:00Z  | 24:00 -03 -> 23:00 -04 (23:00-24:00 twice)    |
| America/Santiago    | 2026-09-06 04:00Z  | 00:00 -04 -> 01:00 -03 (00:00-01:00 skipped)  |

"Pinned" expressions (minute and hour fields both not starting with '*') fire a skipped
time once right after the gap and a repeated time once, at its first occurrence. Others
fire at every real instant whose wall-clock time matches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.unit.schedule.helpers import fires

TRANSITIONS = [
    ("America/New_York", "2026-03-08T07:00Z", "-05:00", "-04:00"),
    ("America/New_York", "2026-11-01T06:00Z", "-04:00", "-05:00"),
    ("Europe/London", "2026-03-29T01:00Z", "+00:00", "+01:00"),
    ("Europe/London", "2026-10-25T01:00Z", "+01:00", "+00:00"),
    ("Australia/Lord_Howe", "2026-04-04T15:00Z", "+11:00", "+10:30"),
    ("Australia/Lord_Howe", "2026-10-03T15:30Z", "+10:30", "+11:00"),
    ("Australia/Sydney", "2026-04-04T16:00Z", "+11:00", "+10:00"),
    ("Australia/Sydney", "2026-10-03T16:00Z", "+10:00", "+11:00"),
    ("America/Santiago", "2026-04-05T03:00Z", "-03:00", "-04:00"),
    ("America/Santiago", "2026-09-06T04:00Z", "-04:00", "-03:00"),
]


@pytest.mark.parametrize(("zone", "instant", "before", "after"), TRANSITIONS)
def test_the_table_matches_the_time_zone_database(zone, instant, before, after) -> None:
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    tz = ZoneInfo(zone)
    offset = (moment - timedelta(seconds=1)).astimezone(tz).strftime("%z")
    assert f"{offset[:3]}:{offset[3:]}" == before
    assert moment.astimezone(tz).isoformat()[-6:] == after
    assert moment.astimezone(UTC) == moment


NEW_YORK_SPRING = {
    # pinned: a skipped time fires once at 03:00 EDT (07:00Z)
    "30 2 * * *": ["2026-03-08T07:00Z", "2026-03-09T06:30Z"],
    "30 1 * * *": ["2026-03-08T06:30Z", "2026-03-09T05:30Z"],
    # 02:00 moves to 03:00 EDT, which is also 03:00's own instant: once
    "0 1-3 * * *": ["2026-03-08T06:00Z", "2026-03-08T07:00Z", "2026-03-09T05:00Z"],
    # '*'-hour and step-hour: 02:00 does not exist, so it does not fire
    "0 * * * *": ["2026-03-08T05:00Z", "2026-03-08T06:00Z", "2026-03-08T07:00Z"],
    "0 */2 * * *": ["2026-03-08T05:00Z", "2026-03-08T08:00Z", "2026-03-08T10:00Z"],
    "*/10 2 * * *": ["2026-03-09T06:00Z", "2026-03-09T06:10Z"],
    "*/10 1 * * *": ["2026-03-08T06:00Z", "2026-03-08T06:10Z", "2026-03-08T06:20Z"],
}


@pytest.mark.parametrize("cron", sorted(NEW_YORK_SPRING))
def test_new_york_spring_forward(cron: str) -> None:
    expected = NEW_YORK_SPRING[cron]
    assert fires(cron, "America/New_York", "2026-03-08T04:30Z", len(expected)) == expected


NEW_YORK_FALL = {
    # pinned: 01:30 happens twice and fires once, at its first occurrence (EDT)
    "30 1 * * *": ["2026-11-01T05:30Z", "2026-11-02T06:30Z"],
    "30 2 * * *": ["2026-11-01T07:30Z", "2026-11-02T07:30Z"],
    "0 1-3 * * *": ["2026-11-01T05:00Z", "2026-11-01T07:00Z", "2026-11-01T08:00Z"],
    # '*'-hour: every real instant whose wall clock matches, so 01:00 and 01:30 twice
    "0 * * * *": ["2026-11-01T04:00Z", "2026-11-01T05:00Z", "2026-11-01T06:00Z",
                  "2026-11-01T07:00Z"],
    "30 * * * *": ["2026-11-01T04:30Z", "2026-11-01T05:30Z", "2026-11-01T06:30Z",
                   "2026-11-01T07:30Z"],
    "*/30 * * * *": ["2026-11-01T04:00Z", "2026-11-01T04:30Z", "2026-11-01T05:00Z",
                     "2026-11-01T05:30Z", "2026-11-01T06:00Z", "2026-11-01T06:30Z",
                     "2026-11-01T07:00Z"],
    "0 */2 * * *": ["2026-11-01T04:00Z", "2026-11-01T07:00Z", "2026-11-01T09:00Z"],
    # step-minute in the repeated hour: both passes through 01:00-01:59
    "*/10 1 * * *": [f"2026-11-01T{h}:{m}0Z" for h in ("05", "06") for m in range(6)]
    + ["2026-11-02T06:00Z"],
}  # fmt: skip


@pytest.mark.parametrize("cron", sorted(NEW_YORK_FALL))
def test_new_york_fall_back(cron: str) -> None:
    expected = NEW_YORK_FALL[cron]
    assert fires(cron, "America/New_York", "2026-11-01T03:30Z", len(expected)) == expected


def test_after_inside_the_second_pass_a_pinned_time_already_fired_is_not_repeated() -> None:
    # 06:45Z is 01:45 EST, the second 01:45; 01:50 fired at 05:50Z (EDT) already.
    assert fires("50 1 * * *", "America/New_York", "2026-11-01T06:45Z", 2) == [
        "2026-11-02T06:50Z",
        "2026-11-03T06:50Z",
    ]


def test_after_inside_the_first_pass_the_second_pass_still_fires() -> None:
    # 05:45Z is 01:45 EDT: 01:50 EDT, then all of 01:xx EST are still ahead.
    assert fires("*/10 1 * * *", "America/New_York", "2026-11-01T05:45Z", 8) == [
        "2026-11-01T05:50Z",
        *[f"2026-11-01T06:{m}0Z" for m in range(6)],
        "2026-11-02T06:00Z",
    ]


LONDON = [
    ("30 1 * * *", "2026-03-28T12:00Z", ["2026-03-29T01:00Z", "2026-03-30T00:30Z"]),
    ("0 * * * *", "2026-03-28T23:30Z",
     ["2026-03-29T00:00Z", "2026-03-29T01:00Z", "2026-03-29T02:00Z"]),
    ("*/30 1 * * *", "2026-03-28T12:00Z", ["2026-03-30T00:00Z", "2026-03-30T00:30Z"]),
    ("30 1 * * *", "2026-10-24T12:00Z", ["2026-10-25T00:30Z", "2026-10-26T01:30Z"]),
    ("0 1 * * *", "2026-10-24T12:00Z", ["2026-10-25T00:00Z", "2026-10-26T01:00Z"]),
    ("*/30 1 * * *", "2026-10-24T12:00Z",
     ["2026-10-25T00:00Z", "2026-10-25T00:30Z", "2026-10-25T01:00Z", "2026-10-25T01:30Z",
      "2026-10-26T01:00Z"]),
]  # fmt: skip


@pytest.mark.parametrize(("cron", "after", "expected"), LONDON)
def test_london_spring_forward_and_fall_back(cron: str, after: str, expected: list[str]) -> None:
    assert fires(cron, "Europe/London", after, len(expected)) == expected


LORD_HOWE = [
    # fall back by 30 minutes: 01:30-02:00 happens at +11 and again at +10:30
    ("45 1 * * *", "2026-04-04T12:00Z", ["2026-04-04T14:45Z", "2026-04-05T15:15Z"]),
    ("0 2 * * *", "2026-04-04T12:00Z", ["2026-04-04T15:30Z", "2026-04-05T15:30Z"]),
    ("*/15 1 * * *", "2026-04-04T12:00Z",
     ["2026-04-04T14:00Z", "2026-04-04T14:15Z", "2026-04-04T14:30Z", "2026-04-04T14:45Z",
      "2026-04-04T15:00Z", "2026-04-04T15:15Z", "2026-04-05T14:30Z"]),
    # spring forward by 30 minutes: 02:00-02:30 does not exist
    ("15 2 * * *", "2026-10-03T12:00Z", ["2026-10-03T15:30Z", "2026-10-04T15:15Z"]),
    ("0,15,45 2 * * *", "2026-10-03T12:00Z", ["2026-10-03T15:30Z", "2026-10-03T15:45Z"]),
    ("*/15 2 * * *", "2026-10-03T12:00Z", ["2026-10-03T15:30Z", "2026-10-03T15:45Z"]),
    # cronsim 2.8 skips 03:00 and 03:15 here (its hour step lands on 03:30); they exist
    ("0,15,45 */3 * * *", "2026-10-03T14:30Z",
     ["2026-10-03T16:00Z", "2026-10-03T16:15Z", "2026-10-03T16:45Z"]),
]  # fmt: skip


@pytest.mark.parametrize(("cron", "after", "expected"), LORD_HOWE)
def test_lord_howe_half_hour_shifts(cron: str, after: str, expected: list[str]) -> None:
    assert fires(cron, "Australia/Lord_Howe", after, len(expected)) == expected


SOUTHERN = [
    ("Australia/Sydney", "30 2 * * *", "2026-10-03T12:00Z",
     ["2026-10-03T16:00Z", "2026-10-04T15:30Z"]),
    ("Australia/Sydney", "30 2 * * *", "2026-04-04T12:00Z",
     ["2026-04-04T15:30Z", "2026-04-05T16:30Z"]),
    ("Australia/Sydney", "0 * * * *", "2026-04-04T13:30Z",
     ["2026-04-04T14:00Z", "2026-04-04T15:00Z", "2026-04-04T16:00Z", "2026-04-04T17:00Z"]),
    # Santiago changes at midnight: the skipped 00:00 of 6 September fires at 01:00 -03
    ("America/Santiago", "0 0 * * *", "2026-09-05T00:00Z",
     ["2026-09-05T04:00Z", "2026-09-06T04:00Z", "2026-09-07T03:00Z"]),
    ("America/Santiago", "30 0 * * *", "2026-09-05T12:00Z", ["2026-09-06T04:00Z"]),
    # not pinned: hour 0 does not exist on 6 September (cronsim 2.8 fires once at 04:00Z)
    ("America/Santiago", "* 0 * * *", "2026-09-05T04:58Z",
     ["2026-09-05T04:59Z", "2026-09-07T03:00Z"]),
    ("America/Santiago", "0 */3 * * *", "2026-09-06T02:30Z",
     ["2026-09-06T06:00Z", "2026-09-06T09:00Z"]),
    # a fall back at midnight repeats 23:00-24:00 on 4 April
    ("America/Santiago", "30 23 * * *", "2026-04-04T12:00Z",
     ["2026-04-05T02:30Z", "2026-04-06T03:30Z"]),
    ("America/Santiago", "*/30 23 * * *", "2026-04-04T12:00Z",
     ["2026-04-05T02:00Z", "2026-04-05T02:30Z", "2026-04-05T03:00Z", "2026-04-05T03:30Z",
      "2026-04-06T03:00Z"]),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "cron", "after", "expected"), SOUTHERN)
def test_southern_hemisphere(zone: str, cron: str, after: str, expected: list[str]) -> None:
    assert fires(cron, zone, after, len(expected)) == expected


def test_macros_follow_the_same_rules() -> None:
    # @daily is '0 0 * * *' (pinned); @hourly is '0 * * * *' (not pinned)
    assert fires("@daily", "America/Santiago", "2026-09-05T12:00Z", 1) == ["2026-09-06T04:00Z"]
    assert fires("@hourly", "America/New_York", "2026-11-01T05:30Z", 2) == [
        "2026-11-01T06:00Z",
        "2026-11-01T07:00Z",
    ]
