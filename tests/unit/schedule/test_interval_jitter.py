"""Interval schedules and jitter in the pure engine, with exact instants.

docs/design.md section 11.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest

from app import schedule
from app.errors import ScheduleError
from app.schedule import catchup, jitter, spec
from app.schedule import spec as schedule_spec
from tests.unit.schedule.helpers import at, iso

NY = "America/New_York"
HOUR = 3600


def interval(seconds: int, **fields) -> schedule.TriggerSpec:
    return schedule.TriggerSpec(cron=None, interval_seconds=seconds, **fields)


def fires(spec_value: schedule.TriggerSpec, after: str, count: int) -> list[str]:
    return [iso(f) for f in schedule_spec.trigger_fires(spec_value, at(after), count)]


def test_an_interval_without_anchor_counts_from_the_unix_epoch() -> None:
    # 3600 fires on every UTC hour, like Temporal's interval specs.
    assert fires(interval(HOUR), "2026-01-05T12:00Z", 3) == [
        "2026-01-05T13:00Z",
        "2026-01-05T14:00Z",
        "2026-01-05T15:00Z",
    ]
    # 90 minutes from the epoch: 2026-01-05T00:00Z is epoch + 328,176 x 90 min.
    assert fires(interval(5400), "2026-01-05T00:30Z", 2) == [
        "2026-01-05T01:30Z",
        "2026-01-05T03:00Z",
    ]


def test_an_interval_ignores_daylight_saving_time() -> None:
    # New York springs forward at 2026-03-08T07:00Z and falls back at 2026-11-01T06:00Z;
    # the interval goes on in absolute time, one fire per real hour, none doubled or lost.
    assert fires(interval(HOUR), "2026-03-08T05:30Z", 4) == [
        "2026-03-08T06:00Z",
        "2026-03-08T07:00Z",
        "2026-03-08T08:00Z",
        "2026-03-08T09:00Z",
    ]
    assert fires(interval(HOUR, timezone=NY), "2026-11-01T04:30Z", 4) == [
        "2026-11-01T05:00Z",
        "2026-11-01T06:00Z",
        "2026-11-01T07:00Z",
        "2026-11-01T08:00Z",
    ]


def test_an_anchor_in_the_past_or_the_future_sets_the_phase_both_ways() -> None:
    anchor = at("2026-06-01T00:10Z")
    # every 2 hours at :10 of even hours, before and after the anchor alike
    assert fires(interval(2 * HOUR, anchor_at=anchor), "2026-01-05T12:00Z", 2) == [
        "2026-01-05T12:10Z",
        "2026-01-05T14:10Z",
    ]
    assert fires(interval(2 * HOUR, anchor_at=anchor), "2026-06-01T00:00Z", 2) == [
        "2026-06-01T00:10Z",
        "2026-06-01T02:10Z",
    ]
    # the anchor itself is a fire; strictly after it comes the next
    assert fires(interval(2 * HOUR, anchor_at=anchor), "2026-06-01T00:10Z", 1) == [
        "2026-06-01T02:10Z"
    ]


def test_an_anchor_with_seconds_keeps_them() -> None:
    anchor = at("2026-01-01T00:00:30Z")
    got = schedule_spec.trigger_fires(interval(60, anchor_at=anchor), at("2026-01-01T00:00:31Z"), 1)
    assert got[0].isoformat() == "2026-01-01T00:01:30+00:00"


def test_an_interval_respects_its_window() -> None:
    window = interval(HOUR, start_at=at("2026-01-05T12:30Z"), end_at=at("2026-01-05T15:00Z"))
    assert fires(window, "2026-01-05T00:00Z", 10) == [
        "2026-01-05T13:00Z",
        "2026-01-05T14:00Z",
        "2026-01-05T15:00Z",
    ]
    assert schedule.first_fire(window, at("2026-01-05T15:00Z")) is None


@pytest.mark.parametrize("seconds", [59, 0, -60, 366 * 86400 + 1])
def test_an_interval_outside_60_seconds_to_366_days_is_rejected(seconds: int) -> None:
    with pytest.raises(ScheduleError) as info:
        interval(seconds)
    assert info.value.field == "interval_seconds"


def test_exactly_one_schedule_kind() -> None:
    with pytest.raises(ScheduleError) as info:
        schedule.TriggerSpec(cron="* * * * *", interval_seconds=60)
    assert info.value.field == "cron"
    with pytest.raises(ScheduleError):
        schedule.TriggerSpec(cron=None, run_at=at("2026-01-05T12:00Z"), interval_seconds=60)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"interval_seconds": 5400}, "Every 1 hour 30 minutes"),
        ({"interval_seconds": 86400}, "Every 1 day"),
        ({"interval_seconds": 90, "anchor_at": at("2026-01-01T00:15Z")},
         "Every 1 minute 30 seconds, counted from 2026-01-01T00:15:00Z"),
        ({"interval_seconds": 7200, "start_at": at("2026-02-01T00:00Z"), "jitter_seconds": 300},
         "Every 2 hours, from 2026-02-01T00:00:00Z, delayed by up to 5 minutes of jitter"),
    ],
)  # fmt: skip
def test_describe_an_interval(fields: dict, text: str) -> None:
    assert schedule.describe(schedule.TriggerSpec(cron=None, **fields)) == text


# --- jitter ---------------------------------------------------------------------------


def test_jitter_is_within_bounds_stable_and_spread() -> None:
    fire = at("2026-01-06T00:00Z")
    offsets = [jitter.offset(str(uuid.UUID(int=n)), fire, 600) for n in range(2000)]
    assert all(timedelta(0) <= o < timedelta(seconds=600) for o in offsets)
    assert all(o == timedelta(seconds=int(o.total_seconds())) for o in offsets)  # whole seconds
    # the midnight herd spreads: every minute of the 10-minute window gets some triggers
    assert {int(o.total_seconds()) // 60 for o in offsets} == set(range(10))
    # stable: the same (trigger, fire) always has the same offset
    key = str(uuid.UUID(int=7))
    assert jitter.offset(key, fire, 600) == jitter.offset(key, fire, 600)
    assert jitter.offset(key, fire.astimezone(spec.zones.get(NY)), 600) == jitter.offset(
        key, fire, 600
    )
    # a function of the fire too: one trigger's fires do not all share one offset
    fires_of_day = [fire + timedelta(hours=h) for h in range(24)]
    assert len({jitter.offset(key, f, 600) for f in fires_of_day}) > 10
    assert jitter.offset(key, fire, 0) == timedelta(0)
    assert jitter.offset(key, fire, 1) == timedelta(0)


def jittered(**fields) -> schedule.TriggerSpec:
    return schedule.TriggerSpec(cron=fields.pop("cron", None), jitter_key="trigger-1", **fields)


def test_due_at_adds_the_offset_and_previews_know_both_instants() -> None:
    hourly = jittered(interval_seconds=HOUR, jitter_seconds=900)
    for fire in schedule_spec.trigger_fires(hourly, at("2026-01-05T00:00Z"), 24):
        due = schedule.due_at(hourly, fire)
        assert due - fire == jitter.offset("trigger-1", fire, 900)
        assert fire <= due < fire + timedelta(seconds=900)
    assert schedule.due_at(interval(HOUR), at("2026-01-05T01:00Z")) == at("2026-01-05T01:00Z")


def test_jitter_is_rejected_for_a_one_time_trigger() -> None:
    with pytest.raises(ScheduleError) as info:
        jittered(run_at=at("2026-01-05T12:00Z"), jitter_seconds=10)
    assert info.value.field == "jitter_seconds"


def test_the_period_bounds_jitter() -> None:
    assert schedule_spec.period_seconds(interval(5400)) == 5400
    assert schedule_spec.period_seconds(schedule.TriggerSpec(cron="*/15 * * * *")) == 900
    assert schedule_spec.period_seconds(schedule.TriggerSpec(cron="0 9 * * 1-5")) == 86400
    # a spring-forward day brings 02:30 (moved to 03:00) within 30 minutes of 03:30
    assert (
        schedule_spec.period_seconds(schedule.TriggerSpec(cron="30 2,3 * * *", timezone=NY)) == 1800
    )
    assert jitter.limit(86400) == 3600 and jitter.limit(900) == 900


# --- catch-up with interval and jitter ----------------------------------------------------


def plan(spec_value, *, policy="latest", window=3600, first_due, now, tick=60, max_fires=100):
    result = catchup.plan_catchup(
        spec_value,
        policy=policy,
        window_seconds=window,
        first_due=at(first_due),
        now=at(now),
        tick_seconds=tick,
        max_fires=max_fires,
    )
    nxt = iso(result.next_fire) if result.next_fire else None
    return [iso(f) for f in result.run], [iso(f) for f in result.skipped], nxt


# Every 20 minutes, from 12:10 to 14:30 (inclusive), down from 12:10 to 13:35.
WINDOWED = interval(
    1200, anchor_at=at("2026-01-05T00:10Z"), start_at=at("2026-01-05T12:10Z"),
    end_at=at("2026-01-05T14:30Z"),
)  # fmt: skip


def test_interval_with_window_and_catch_up_all() -> None:
    # the default one-hour catch-up window reaches back to 12:35
    assert plan(WINDOWED, policy="all", first_due="2026-01-05T12:10Z",
                now="2026-01-05T13:35Z") == (
        ["2026-01-05T12:50Z", "2026-01-05T13:10Z", "2026-01-05T13:30Z"],
        ["2026-01-05T12:10Z", "2026-01-05T12:30Z"],
        "2026-01-05T13:50Z",
    )  # fmt: skip
    # a two-hour window holds them all
    assert plan(WINDOWED, policy="all", window=7200, first_due="2026-01-05T12:10Z",
                now="2026-01-05T13:35Z") == (
        ["2026-01-05T12:10Z", "2026-01-05T12:30Z", "2026-01-05T12:50Z",
         "2026-01-05T13:10Z", "2026-01-05T13:30Z"],
        [],
        "2026-01-05T13:50Z",
    )  # fmt: skip


def test_interval_with_window_and_catch_up_latest_and_none() -> None:
    got = plan(WINDOWED, policy="latest", first_due="2026-01-05T12:10Z", now="2026-01-05T13:35Z")
    assert got == (["2026-01-05T13:30Z"], [], "2026-01-05T13:50Z")
    assert plan(WINDOWED, policy="none", first_due="2026-01-05T12:10Z",
                now="2026-01-05T13:35Z") == (
        [],
        ["2026-01-05T12:10Z", "2026-01-05T12:30Z", "2026-01-05T12:50Z",
         "2026-01-05T13:10Z", "2026-01-05T13:30Z"],
        "2026-01-05T13:50Z",
    )  # fmt: skip
    # past end_at: the last fires run, then nothing more
    assert plan(WINDOWED, policy="latest", first_due="2026-01-05T14:30Z",
                now="2026-01-05T14:30:20Z") == (["2026-01-05T14:30Z"], [], None)  # fmt: skip


def test_a_jittered_fire_is_not_run_before_it_is_due() -> None:
    hourly = jittered(interval_seconds=HOUR, jitter_seconds=HOUR)
    fire = at("2026-01-05T12:00Z")
    due = schedule.due_at(hourly, fire)
    assert due - fire > timedelta(minutes=1)  # this fire's jitter is large: a real test
    result = catchup.plan_catchup(hourly, policy="none", window_seconds=3600, first_due=fire,
                                   now=due - timedelta(seconds=1), tick_seconds=60,
                                   max_fires=100)  # fmt: skip
    assert (result.run, result.skipped, result.next_fire) == ([], [], fire)
    assert result.next_run_at == due
    result = catchup.plan_catchup(hourly, policy="none", window_seconds=3600, first_due=fire,
                                   now=due + timedelta(seconds=5), tick_seconds=60,
                                   max_fires=100)  # fmt: skip
    # on time by its due instant, even if its nominal time is long past: it runs under `none`
    assert result.run == [fire] and result.skipped == []
    assert result.run_due == [due]
    assert result.next_fire == at("2026-01-05T13:00Z")
    assert result.next_run_at == schedule.due_at(hourly, at("2026-01-05T13:00Z"))


def test_jittered_catch_up_classifies_each_fire_by_its_due_instant() -> None:
    rng = random.Random(5)
    for _ in range(200):
        hourly = schedule.TriggerSpec(cron=None, interval_seconds=HOUR, jitter_seconds=1800,
                                      jitter_key=str(rng.random()))  # fmt: skip
        first = at("2026-01-05T00:00Z")
        now = first + timedelta(seconds=rng.randint(0, 6 * HOUR))
        for policy in ("all", "none", "latest"):
            result = catchup.plan_catchup(hourly, policy=policy, window_seconds=7200,
                                           first_due=first, now=now, tick_seconds=60,
                                           max_fires=100)  # fmt: skip
            handled = sorted(result.run + result.skipped)
            assert all(schedule.due_at(hourly, f) <= now for f in handled)
            assert schedule.due_at(hourly, result.next_fire) > now
            assert all(f < result.next_fire for f in handled)
            if policy != "latest":  # every due fire is handled exactly once
                ahead = schedule_spec.trigger_fires(hourly, first - timedelta(seconds=1), 10)
                due = [f for f in ahead if schedule.due_at(hourly, f) <= now]
                assert handled == due
            for fire in result.run:
                assert schedule.due_at(hourly, fire) >= now - timedelta(seconds=7200)


def test_a_next_fire_that_is_not_a_fire_of_the_schedule_moves_on_without_running() -> None:
    # next_fire_at edited by hand to 12:07 on a quarter-hour interval: nothing is due.
    quarter = interval(900)
    for policy in ("latest", "all", "none"):
        assert plan(quarter, policy=policy, first_due="2026-01-05T12:07Z",
                    now="2026-01-05T12:14Z") == ([], [], "2026-01-05T12:15Z")  # fmt: skip


@pytest.mark.parametrize("policy", ["latest", "all", "none"])
def test_jitter_changes_never_run_a_fire_twice_or_drop_it(policy: str) -> None:
    # The dispatcher's loop with the update rule of app.triggers (a jitter change keeps the
    # next fire and makes it due at max(its new due instant, now)), a tick a minute for 4
    # hours, the jitter changed every 10 minutes, for 300 trigger ids: every fire runs once.
    # (Without the max(), a change that moves a pending fire's due instant into the past
    # makes `latest` drop it as missed, for about one id in ten.)
    noon = at("2026-01-05T12:00Z")
    jitters = [0, 600, 17, 599, 0, 300, 1, 450]
    expected = [noon + timedelta(minutes=10 * k) for k in range(1, 24)]
    for number in range(300):

        def spec_with(seconds: int, key: str = f"trigger-{number}") -> schedule.TriggerSpec:
            return schedule.TriggerSpec(cron="*/10 * * * *", jitter_seconds=seconds, jitter_key=key)

        current = spec_with(500)
        fire = schedule.first_fire(current, noon)
        due = schedule.due_at(current, fire)
        ran: list = []
        clock, step = noon, 0
        while clock < noon + timedelta(hours=4):
            clock += timedelta(seconds=60)
            if clock.minute % 10 == 0:
                step += 1
                current = spec_with(jitters[step % len(jitters)])
                due = max(schedule.due_at(current, fire), clock)
            if due <= clock:
                result = catchup.plan_catchup(
                    current, policy=policy, window_seconds=3600, first_due=fire, now=clock,
                    tick_seconds=60, max_fires=100, first_due_at=due,
                )  # fmt: skip
                assert result.skipped == []
                ran += result.run
                fire, due = result.next_fire, result.next_run_at
        assert ran[: len(expected)] == expected and len(ran) == len(set(ran)), number
