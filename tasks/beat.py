"""Beat schedules that align to the wall clock, and a scheduler that needs no writable file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from celery import schedules
from celery.beat import Scheduler


class aligned(schedules.schedule):  # noqa: N801 - named like celery's own `crontab`
    """Due at every multiple of `seconds` since midnight UTC (plus an offset), never drifting.

    `aligned(60)` is due at second 0 of every minute, like `crontab(minute="*")`, and
    `aligned(5)` at :00, :05, :10 ... of every minute.
    """

    def __init__(
        self, seconds: int, offset_seconds: int = 0, nowfun: Callable[[], datetime] | None = None
    ) -> None:
        super().__init__(run_every=timedelta(seconds=seconds), nowfun=nowfun)
        self.period_seconds = seconds
        self.offset_seconds = offset_seconds

    def _next_after(self, moment: datetime) -> datetime:
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        elapsed = (moment - midnight).total_seconds() - self.offset_seconds
        periods = int(elapsed // self.period_seconds) + 1
        return midnight + timedelta(seconds=self.offset_seconds + periods * self.period_seconds)

    def is_due(self, last_run_at: datetime) -> schedules.schedstate:
        now = (self.nowfun or _utcnow)()
        last = last_run_at if last_run_at.tzinfo else last_run_at.replace(tzinfo=UTC)
        due_at = self._next_after(last)
        if due_at <= now:
            return schedules.schedstate(True, (self._next_after(now) - now).total_seconds())
        return schedules.schedstate(False, (due_at - now).total_seconds())

    def __repr__(self) -> str:
        return f"<aligned every {self.period_seconds}s +{self.offset_seconds}s>"

    def __reduce__(self):
        return self.__class__, (self.period_seconds, self.offset_seconds, self.nowfun)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def every(seconds: int) -> schedules.BaseSchedule:
    """The dispatch tick: a crontab entry at second 0 of every minute for 60 s, else
    `aligned(seconds)` (a period that divides 60, so ticks still start each minute)."""
    return schedules.crontab(minute="*") if seconds == 60 else aligned(seconds)


class MemoryScheduler(Scheduler):
    """Celery's scheduler without the shelve file: the schedule lives in the database and
    the beat schedule in code, so beat needs no writable disk (docs/design.md section 9)."""

    def setup_schedule(self) -> None:
        self.merge_inplace(self.app.conf.beat_schedule)
