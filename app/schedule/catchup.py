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

Jitter (docs/design.md section 11): a fire f is due at f + its delay, and "due", "on time", "missed"
and "out of window" above are all judged on that instant, never on f, so a fire delayed by
its jitter is neither run early nor counted late. Since the jitter is below the schedule's
period, at most one fire up to `now` is not yet due: it becomes the next fire.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.schedule import spec as schedule_spec

POLICIES = ("latest", "all", "none")


@dataclass(frozen=True)
class CatchupPlan:
    """What to do with a due trigger. Fires are nominal (the runs' `scheduled_for`)."""

    run: list[datetime]  # fires to create `pending` runs for, oldest first
    skipped: list[datetime]  # fires to record as `skipped` runs, oldest first (bounded)
    next_run_at: datetime | None  # when the next fire is due (jittered); None: nothing more
    next_fire: datetime | None = None  # the next fire itself (nominal); None: nothing more
    run_due: list[datetime] = field(default_factory=list)  # when each `run` fire was due
    due: dict[datetime, datetime] = field(default_factory=dict)  # fire -> due, run and skipped

    def due_at(self, fire: datetime) -> datetime:
        """When `fire` (one of `run` or `skipped`) was due."""
        return self.due.get(fire, fire)


def _plan(
    run: list[datetime],
    skipped: list[datetime],
    next_fire: datetime | None,
    due: Callable[[datetime], datetime],
) -> CatchupPlan:
    return CatchupPlan(
        run=run,
        skipped=skipped,
        next_run_at=None if next_fire is None else due(next_fire),
        next_fire=next_fire,
        run_due=[due(fire) for fire in run],
        due={fire: due(fire) for fire in run + skipped},
    )


def plan_catchup(
    spec: schedule_spec.TriggerSpec,
    *,
    policy: str,
    window_seconds: int,
    first_due: datetime,
    now: datetime,
    tick_seconds: int,
    max_fires: int,
    first_due_at: datetime | None = None,
) -> CatchupPlan:
    """Decide the fires of a trigger whose next fire `first_due` (nominal) is due by `now`.

    `first_due_at` is when `first_due` is due if not its own jittered instant: a jitter
    change made after that instant had passed makes the fire due at the change (the
    trigger's stored `next_run_at`), so the change cannot turn it into a missed fire.

    With jitter, a fire f is due at `due_at(spec, f)` >= f, and every comparison with `now`
    (due, on time, missed, out of window) is made on that instant, so a fire delayed by its
    jitter is neither early nor counted late. Without jitter both instants are the fire.

    1. Nothing is due (`first_due` is due after now): no fire, the next fire stays.
    2. A one-time trigger: run or skip `run_at` by the window; `next_run_at` None.
    3. A cron or interval trigger: apply `policy` (module docstring); the next fire is the
       first one not yet due, except when `max_fires` capped the run list (only `all` in
       practice): then it is the first fire left, already due.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown catch-up policy {policy!r}")
    if max_fires < 1:
        raise ValueError("max_fires must be >= 1")

    def due(fire: datetime) -> datetime:
        if first_due_at is not None and fire == first_due:
            return first_due_at
        return schedule_spec.due_at(spec, fire)

    if due(first_due) > now:
        return _plan([], [], first_due, due)
    late = now - timedelta(seconds=tick_seconds)  # fires due before this are missed
    # Older fires never run. The window is at least a tick, so on-time fires always run.
    horizon = min(late, now - timedelta(seconds=window_seconds))
    if spec.run_at is not None:
        return _plan_one_time(spec, now=now, horizon=horizon)
    # A fire due by now lies in [due - jitter, due]: the nominal fires to look at.
    spread = timedelta(seconds=spec.jitter_seconds)

    if policy == "latest" and due(first_due) < late:
        # The newest fire due by now: the last fire up to now, or the one before it when
        # the last one's jitter has not elapsed yet (jitter < period: at most one such).
        recent = schedule_spec.last_fires(spec, first_due, now, limit=2)
        newest = [f for f in recent if due(f) <= now][-1:]
        return _plan(
            run=[f for f in newest if due(f) >= horizon],
            skipped=[f for f in newest if due(f) < horizon],
            next_fire=(
                schedule_spec.fire_after(spec, newest[0])
                if newest
                else _first_not_due(spec, first_due, now=now)
            ),
            due=due,
        )
    # `all` runs everything in the window; `latest` without a missed fire and `none` run the
    # on-time fires only (both bounds are normally equal for `latest`).
    threshold = late if policy == "none" else horizon
    scan_from = max(first_due, threshold - spread)
    candidates: list[datetime] = []
    lookback_from = first_due
    if first_due < scan_from and due(first_due) >= threshold:
        # Only with `first_due_at`: a jitter change made the first fire due recently.
        candidates.append(first_due)
        lookback_from = first_due + timedelta(microseconds=1)
    # Other fires before `scan_from` are due before the threshold: skipped, found looking
    # back a bounded number of fires. From `scan_from` on each fire is classified by its
    # due time.
    skipped = schedule_spec.last_fires(
        spec, lookback_from, scan_from - timedelta(microseconds=1), limit=max_fires
    )
    next_fire: datetime | None = None
    for fire in schedule_spec.iter_spec(spec, scan_from - timedelta(microseconds=1)):
        if due(fire) > now:
            next_fire = fire
            break
        if due(fire) < threshold:
            skipped.append(fire)
        elif len(candidates) == max_fires:
            # Capped: resume at the first fire not handled; the next tick continues from
            # it and its out-of-window part has already been recorded here.
            return _plan(candidates, skipped[-max_fires:], fire, due)
        else:
            candidates.append(fire)
    return _plan(candidates, skipped[-max_fires:], next_fire, due)


def _first_not_due(
    spec: schedule_spec.TriggerSpec, first: datetime, *, now: datetime
) -> datetime | None:
    """The first fire at or after `first` that is not due by `now` (None: no more fires).

    Reached only when no fire in [first, now] is due, so the first fire found is the one: it
    keeps a trigger whose `next_fire_at` is not a fire of its schedule (a hand edit) moving.
    """
    for fire in schedule_spec.iter_spec(spec, first - timedelta(microseconds=1)):
        if schedule_spec.due_at(spec, fire) > now:
            return fire
    return None


def _plan_one_time(
    spec: schedule_spec.TriggerSpec, *, now: datetime, horizon: datetime
) -> CatchupPlan:
    assert spec.run_at is not None
    due = functools.partial(schedule_spec.due_at, spec)  # a one-time trigger has no jitter
    if schedule_spec.first_fire(spec, now) is None:  # outside its window: never fires
        return _plan([], [], None, due)
    run_at = spec.run_at.astimezone(UTC)
    if run_at > now:
        return _plan([], [], run_at, due)
    if run_at >= horizon:
        return _plan([run_at], [], None, due)
    return _plan([], [run_at], None, due)
