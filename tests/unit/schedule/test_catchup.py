"""Catch-up after downtime, per policy, with exact instants (docs/design.md section 5)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from app import schedule
from app.schedule import catchup as schedule_catchup
from tests.unit.schedule.helpers import at, iso

QUARTERLY = schedule.TriggerSpec(cron="*/15 * * * *")
NOON = at("2026-01-05T12:00Z")
MISSED = [f"2026-01-05T{h}:{m}Z" for h in ("12", "13", "14") for m in ("00", "15", "30", "45")]


def plan(spec=QUARTERLY, *, policy="latest", window=3600, first_due=NOON, now, tick=60,
         max_fires=100) -> tuple[list[str], list[str], str | None]:  # fmt: skip
    result = schedule_catchup.plan_catchup(
        spec,
        policy=policy,
        window_seconds=window,
        first_due=first_due,
        now=now,
        tick_seconds=tick,
        max_fires=max_fires,
    )
    next_run_at = iso(result.next_run_at) if result.next_run_at else None
    return [iso(f) for f in result.run], [iso(f) for f in result.skipped], next_run_at


# Down from 12:00 to 14:59:05: twelve quarter-hours missed, the 15:00 fire still ahead.
DOWN = NOON + timedelta(hours=2, minutes=59, seconds=5)


def test_latest_runs_once_for_the_most_recent_missed_fire() -> None:
    assert plan(now=DOWN) == (["2026-01-05T14:45Z"], [], "2026-01-05T15:00Z")


def test_all_runs_every_missed_fire_in_the_window_oldest_first() -> None:
    assert plan(policy="all", window=4 * 3600, now=DOWN) == (MISSED, [], "2026-01-05T15:00Z")


def test_all_records_fires_older_than_the_window_as_skipped() -> None:
    assert plan(policy="all", window=3600, now=DOWN) == (
        MISSED[8:],
        MISSED[:8],
        "2026-01-05T15:00Z",
    )


def test_all_is_capped_per_call_and_the_next_tick_continues() -> None:
    first = plan(policy="all", window=4 * 3600, now=DOWN, max_fires=5)
    assert first == (MISSED[:5], [], "2026-01-05T13:15Z")
    later = DOWN + timedelta(minutes=1)  # 15:00:05: the 15:00 fire is now on time
    second = plan(policy="all", window=4 * 3600, first_due=at(first[2]), now=later, max_fires=5)
    assert second == (MISSED[5:10], [], "2026-01-05T14:30Z")
    third = plan(policy="all", window=4 * 3600, first_due=at(second[2]), now=later, max_fires=5)
    assert third == ([*MISSED[10:], "2026-01-05T15:00Z"], [], "2026-01-05T15:15Z")


def test_none_skips_every_missed_fire_and_resumes_in_the_future() -> None:
    assert plan(policy="none", now=DOWN) == ([], MISSED, "2026-01-05T15:00Z")


def test_skipped_holds_at_most_max_fires_the_most_recent() -> None:
    assert plan(policy="none", now=DOWN, max_fires=5) == ([], MISSED[-5:], "2026-01-05T15:00Z")
    assert plan(policy="all", now=DOWN, max_fires=3) == (
        MISSED[8:11],
        MISSED[5:8],
        "2026-01-05T14:45Z",
    )


@pytest.mark.parametrize("policy", ["latest", "all", "none"])
def test_an_on_time_fire_runs_under_every_policy(policy: str) -> None:
    now = NOON + timedelta(seconds=2)
    assert plan(policy=policy, now=now) == (["2026-01-05T12:00Z"], [], "2026-01-05T12:15Z")
    # late, but by no more than one tick: still on time
    late = NOON + timedelta(seconds=60)
    assert plan(policy=policy, now=late, window=0) == (
        ["2026-01-05T12:00Z"],
        [],
        "2026-01-05T12:15Z",
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("latest", (["2026-01-05T15:00Z"], [], "2026-01-05T15:15Z")),
        ("all", ([*MISSED[9:], "2026-01-05T15:00Z"], MISSED[:9], "2026-01-05T15:15Z")),
        ("none", (["2026-01-05T15:00Z"], MISSED, "2026-01-05T15:15Z")),
    ],
)
def test_back_just_in_time_for_a_fire(policy: str, expected: tuple) -> None:
    # Down from 12:00 to 15:00:05: twelve missed fires, and 15:00 on time.
    assert plan(policy=policy, now=NOON + timedelta(hours=3, seconds=5)) == expected


def test_latest_records_its_fire_as_skipped_when_even_that_is_out_of_window() -> None:
    daily = schedule.TriggerSpec(cron="0 2 * * *")
    due = at("2026-01-05T02:00Z")
    assert plan(daily, first_due=due, now=at("2026-01-05T04:00Z")) == (
        [],
        ["2026-01-05T02:00Z"],
        "2026-01-06T02:00Z",
    )
    assert plan(daily, first_due=due, now=at("2026-01-05T02:59Z")) == (
        ["2026-01-05T02:00Z"],
        [],
        "2026-01-06T02:00Z",
    )


def test_a_trigger_not_yet_due_is_unchanged() -> None:
    assert plan(now=NOON - timedelta(seconds=1)) == ([], [], "2026-01-05T12:00Z")


def test_next_run_at_is_none_past_end_at() -> None:
    ending = schedule.TriggerSpec(cron="*/15 * * * *", end_at=at("2026-01-05T14:50Z"))
    assert plan(ending, policy="all", window=4 * 3600, now=DOWN) == (MISSED, [], None)


@pytest.mark.parametrize("policy", ["latest", "all", "none"])
def test_a_one_time_trigger_missed_within_its_window_runs_once(policy: str) -> None:
    once = schedule.TriggerSpec(cron=None, run_at=NOON)
    now = NOON + timedelta(minutes=59)
    assert plan(once, policy=policy, now=now) == (["2026-01-05T12:00Z"], [], None)
    assert plan(once, policy=policy, now=NOON + timedelta(seconds=30), window=0) == (
        ["2026-01-05T12:00Z"],
        [],
        None,
    )


@pytest.mark.parametrize("policy", ["latest", "all", "none"])
def test_a_one_time_trigger_missed_by_more_than_its_window_is_skipped(policy: str) -> None:
    once = schedule.TriggerSpec(cron=None, run_at=NOON)
    assert plan(once, policy=policy, now=NOON + timedelta(minutes=61)) == (
        [],
        ["2026-01-05T12:00Z"],
        None,
    )


def test_a_one_time_trigger_outside_its_window_never_runs() -> None:
    once = schedule.TriggerSpec(cron=None, run_at=NOON, end_at=NOON - timedelta(hours=1))
    assert plan(once, now=NOON + timedelta(seconds=1)) == ([], [], None)


@pytest.mark.parametrize("policy", ["latest", "all", "none"])
def test_a_year_of_downtime_is_bounded_work(policy: str) -> None:
    minutely = schedule.TriggerSpec(cron="* * * * *")
    now = at("2027-01-05T12:00:05Z")
    started = time.perf_counter()
    run, skipped, next_run_at = plan(minutely, policy=policy, first_due=NOON, now=now, max_fires=10)
    assert time.perf_counter() - started < 0.2
    if policy == "latest":
        assert (run, skipped, next_run_at) == (["2027-01-05T12:00Z"], [], "2027-01-05T12:01Z")
    elif policy == "none":
        assert (run, next_run_at) == (["2027-01-05T12:00Z"], "2027-01-05T12:01Z")
        assert skipped == [f"2027-01-05T11:{m}Z" for m in range(50, 60)]
    else:  # the window starts at 11:00:05
        assert run == [f"2027-01-05T11:{m:02d}Z" for m in range(1, 11)]
        assert skipped == [f"2027-01-05T10:{m}Z" for m in range(51, 60)] + ["2027-01-05T11:00Z"]
        assert next_run_at == "2027-01-05T11:11Z"


def test_an_unknown_policy_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="policy"):
        plan(policy="sometimes", now=DOWN)
