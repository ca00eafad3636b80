"""The catch-up decision: which due fires of a trigger to run, which to record as skipped.

Vocabulary (all relative to `now`, the dispatcher's tick time):
- due fires: the trigger's fires in [first_due, now]; `first_due` is its `next_run_at`,
  itself a fire since every write path computes it with `first_fire`;
- on time: now - fire <= tick_seconds; those are normal dispatch, not catch-up;
- missed: late by more than tick_seconds (the scheduler was down or behind);
- out of window: older than now - window_seconds. Never run, under any policy (the window
  counts as at least one tick, so an on-time fire always runs).

Policies:
- `latest` (default, "run once after downtime"): when any due fire is missed, run only the
  newest due fire (on time or not) and drop the others without a trace. If that newest fire
  is itself out of window it is recorded as skipped instead, so the history shows why nothing
  ran. With no missed fire, every on-time fire runs.
- `all`: run every due fire in the window, oldest first, at most `max_fires` per call; when
  capped, `next_run_at` is the first fire not yet handled (still <= now) and the next tick
  continues from there. Out-of-window fires are recorded as skipped.
- `none`: run the on-time fires; record every missed fire as skipped.

`skipped` holds at most `max_fires` fires, the most recent. The work is bounded whatever the
downtime: fires are enumerated forward only from the window (or the on-time cutoff), and the
skipped ones are found by `spec.last_fires`, which looks back a bounded number of fires.

A one-time trigger runs once when it is on time or missed by no more than the window (under
every policy: there is no later fire to wait for), else it is recorded as skipped; either
way its `next_run_at` becomes None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.schedule import spec as schedule_spec

POLICIES = ("latest", "all", "none")


@dataclass(frozen=True)
class CatchupPlan:
    """What to do with a due trigger."""

    run: list[datetime]  # fires to create `pending` runs for, oldest first
    skipped: list[datetime]  # fires to record as `skipped` runs, oldest first (bounded)
    next_run_at: datetime | None  # None: nothing more (one-time done, or past end_at)


def plan_catchup(
    spec: schedule_spec.TriggerSpec,
    *,
    policy: str,
    window_seconds: int,
    first_due: datetime,
    now: datetime,
    tick_seconds: int,
    max_fires: int,
) -> CatchupPlan:
    """Decide the fires of a trigger whose `next_run_at` (`first_due`) is <= `now`.

    1. Nothing is due (`first_due` > now): no fire, `next_run_at` stays `first_due`.
    2. A one-time trigger: run or skip `run_at` by the window; `next_run_at` None.
    3. A cron trigger: apply `policy` (module docstring); `next_run_at` is the first fire
       after `now` in the trigger's window, except when `max_fires` capped the run list
       (only `all` in practice): then it is the first fire left, still <= now.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown catch-up policy {policy!r}")
    if max_fires < 1:
        raise ValueError("max_fires must be >= 1")
    if first_due > now:
        return CatchupPlan(run=[], skipped=[], next_run_at=first_due)
    late = now - timedelta(seconds=tick_seconds)  # older fires are missed
    # Older fires never run. The window is at least a tick, so on-time fires always run.
    horizon = min(late, now - timedelta(seconds=window_seconds))
    if spec.run_at is not None:
        return _plan_one_time(spec, now=now, horizon=horizon)

    if policy == "latest" and first_due < late:
        newest = schedule_spec.last_fires(spec, first_due, now, limit=1)
        run = [f for f in newest if f >= horizon]
        return CatchupPlan(
            run=run,
            skipped=[f for f in newest if f < horizon],
            next_run_at=schedule_spec.fire_after(spec, now),
        )
    # `all` runs everything in the window; `latest` without a missed fire and `none` run the
    # on-time fires only (both bounds are normally equal for `latest`).
    run_from = max(first_due, late if policy == "none" else horizon)
    candidates = schedule_spec.fires_between(spec, run_from, now, limit=max_fires + 1)
    skipped = schedule_spec.last_fires(
        spec, first_due, run_from - timedelta(microseconds=1), limit=max_fires
    )
    if len(candidates) > max_fires:
        # Capped: resume at the first fire not handled; the next tick continues from it and
        # its out-of-window part has already been recorded here.
        return CatchupPlan(
            run=candidates[:max_fires], skipped=skipped, next_run_at=candidates[max_fires]
        )
    return CatchupPlan(
        run=candidates, skipped=skipped, next_run_at=schedule_spec.fire_after(spec, now)
    )


def _plan_one_time(
    spec: schedule_spec.TriggerSpec, *, now: datetime, horizon: datetime
) -> CatchupPlan:
    assert spec.run_at is not None
    if schedule_spec.first_fire(spec, now) is None:  # outside its window: never fires
        return CatchupPlan(run=[], skipped=[], next_run_at=None)
    run_at = spec.run_at.astimezone(UTC)
    if run_at > now:
        return CatchupPlan(run=[], skipped=[], next_run_at=run_at)
    if run_at >= horizon:
        return CatchupPlan(run=[run_at], skipped=[], next_run_at=None)
    return CatchupPlan(run=[], skipped=[run_at], next_run_at=None)
