"""The rules a trigger's fields must keep together, shared by the API's schemas and the service.

Single-field checks live in the marshmallow schemas (web/schemas.py); these are the
cross-field ones (exactly one schedule kind, a window that ends after it starts, jitter
within the period) that both the create and the update paths apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app import errors, schedule

SCHEDULE_KINDS = ("cron", "run_at", "interval_seconds")
# A one-time trigger may be created this far in the past (clock skew, slow clients).
RUN_AT_GRACE = timedelta(seconds=60)


def check_fields(
    *,
    has_cron: bool,
    has_run_at: bool,
    run_at: datetime | None,
    start_at: datetime | None,
    end_at: datetime | None,
    now: datetime,
    run_at_is_new: bool,
    has_interval: bool = False,
    jitter_seconds: int | None = None,
    paused_note: str | None = None,
    enabled: bool = True,
) -> dict[str, str]:
    """The cross-field problems of a trigger's schedule, as {field: message} (empty if none)."""
    problems: dict[str, str] = {}
    given = [name for name, has in zip(SCHEDULE_KINDS, (has_cron, has_run_at, has_interval),
                                       strict=True) if has]  # fmt: skip
    if len(given) != 1:
        message = (
            f"give exactly one of cron, run_at and interval_seconds, not {' and '.join(given)}"
            if given
            else "one of cron, run_at and interval_seconds is required"
        )
        for name in given or SCHEDULE_KINDS:
            problems[name] = message
    if jitter_seconds and has_run_at and not (has_cron or has_interval):
        problems["jitter_seconds"] = "a one-time trigger (run_at) takes no jitter"
    if paused_note is not None and enabled:
        problems["paused_note"] = "only a paused trigger (enabled: false) carries a note"
    for name, value in (("run_at", run_at), ("start_at", start_at), ("end_at", end_at)):
        if value is not None and value.tzinfo is None:
            problems[name] = "must include a UTC offset"
    aware = not ({"run_at", "start_at", "end_at"} & problems.keys())
    if aware and run_at_is_new and run_at is not None and run_at < now - RUN_AT_GRACE:
        problems["run_at"] = "is more than 60 seconds in the past"
    if aware and start_at is not None and end_at is not None and end_at <= start_at:
        problems["end_at"] = "must be after start_at"
    return problems


def validate(
    values: Mapping[str, Any],
    *,
    now: datetime,
    run_at_is_new: bool,
    trigger_id: uuid.UUID | None = None,
) -> None:
    """Raise InvalidTrigger naming every field of `values` that breaks a rule; None if valid."""
    problems: dict[str, str] = {}
    for name, check in (
        ("cron", schedule.validate_cron),
        ("timezone", schedule.validate_timezone),
    ):
        if values.get(name) is not None:
            try:
                check(values[name])
            except errors.ScheduleError as exc:
                problems[name] = exc.message
    problems.update(
        check_fields(
            has_cron=values.get("cron") is not None,
            has_run_at=values.get("run_at") is not None,
            run_at=values.get("run_at"),
            start_at=values.get("start_at"),
            end_at=values.get("end_at"),
            now=now,
            run_at_is_new=run_at_is_new,
            has_interval=values.get("interval_seconds") is not None,
            jitter_seconds=values.get("jitter_seconds"),
            paused_note=values.get("paused_note"),
            enabled=values.get("enabled", True),
        )
    )
    if not problems:
        problems.update(_check_spec(values, trigger_id=trigger_id))
    if problems:
        raise errors.InvalidTrigger(problems)


def _check_spec(values: Mapping[str, Any], *, trigger_id: uuid.UUID | None) -> dict[str, str]:
    """Problems only the whole schedule shows: the interval's range, jitter over its bound."""
    try:
        spec = schedule.TriggerSpec.of({**values, "id": trigger_id})
    except errors.ScheduleError as exc:
        return {exc.field: exc.message}
    problem = schedule.jitter_problem(spec)
    if problem is not None:
        return {"jitter_seconds": problem}
    return {}
