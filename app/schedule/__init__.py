"""Schedule maths, pure: datetimes in, datetimes out; `now` and `after` are always arguments.

Public API (DESIGN sections 4 and 5):
- `validate_cron`, `validate_timezone`: normalise or raise ScheduleError naming the field;
- `next_fires`, `next_fire`: fire instants of a cron expression in a time zone;
- `TriggerSpec` (cron, interval or one-time; window; jitter), `first_fire` (every write
  path's next fire), `due_at` (a fire plus its jitter), `fire_after`, `trigger_fires`
  (previews), `fires_in_range` (backfill), `period_seconds` and `jitter_limit` (the jitter
  bound), `describe`;
- `CatchupPlan`, `plan_catchup`: the dispatcher's decision for a due trigger.

All returned instants are aware UTC datetimes. Cron is evaluated on local wall-clock time
with Debian cron's daylight-saving rules (app/schedule/fires.py).
"""

from __future__ import annotations

from app.schedule.catchup import CatchupPlan, plan_catchup
from app.schedule.cron import validate as validate_cron
from app.schedule.describe import describe
from app.schedule.jitter import limit as jitter_limit
from app.schedule.spec import (
    TriggerSpec,
    due_at,
    fire_after,
    fires_in_range,
    first_fire,
    next_fire,
    next_fires,
    period_seconds,
    trigger_fires,
)
from app.schedule.zones import validate as validate_timezone

__all__ = [
    "CatchupPlan",
    "TriggerSpec",
    "describe",
    "due_at",
    "fire_after",
    "fires_in_range",
    "jitter_limit",
    "first_fire",
    "next_fire",
    "next_fires",
    "period_seconds",
    "plan_catchup",
    "trigger_fires",
    "validate_cron",
    "validate_timezone",
]
