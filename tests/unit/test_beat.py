"""The beat schedule: ticks at second 0 of every minute, or aligned N-second periods."""

from __future__ import annotations

from datetime import datetime

import pytest
from celery.schedules import crontab

from app.config import Settings
from tasks import beat
from tasks.celery_app import DISPATCH_TASK, beat_schedule


def at(clock: str) -> datetime:
    return datetime.fromisoformat(f"2026-03-08T{clock}+00:00")


def test_the_default_tick_is_a_crontab_entry_every_minute_carrying_the_release() -> None:
    entry = beat_schedule(Settings.from_env({"RELEASE_ID": "v9"}))["dispatch-due-triggers"]
    assert entry["task"] == DISPATCH_TASK
    assert entry["schedule"] == crontab(minute="*")
    assert entry["args"] == ("v9",)


@pytest.mark.parametrize(
    ("now", "last", "due", "next_in"),
    [
        ("10:00:05.000", "10:00:00.000", True, 5.0),  # 10:00:05 was due, next 10:00:10
        ("10:00:04.500", "10:00:00.000", False, 0.5),
        ("10:00:09.999", "10:00:05.000", False, 0.001),
        ("10:01:00.250", "10:00:55.100", True, 4.75),  # late by 250 ms: no drift after
    ],
)
def test_aligned_periods_start_on_the_clock_and_never_drift(now, last, due, next_in) -> None:
    schedule = beat.aligned(5, nowfun=lambda: at(now))
    state = schedule.is_due(at(last))
    assert state.is_due is due
    assert state.next == pytest.approx(next_in, abs=1e-6)


def test_a_short_tick_period_uses_aligned_periods() -> None:
    entry = beat_schedule(Settings.from_env({"DISPATCH_INTERVAL_SECONDS": "2"}))
    schedule = entry["dispatch-due-triggers"]["schedule"]
    assert isinstance(schedule, beat.aligned)
    assert schedule.period_seconds == 2
