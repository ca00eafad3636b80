"""Schedule maths, pure: datetimes in, datetimes out; `now` and `after` are always arguments.

The public surface, over a trigger's schedule (`TriggerSpec`: cron, interval or one-time,
with its window and jitter):
- `fires(spec, after)`: every nominal fire strictly after `after`, inside the window, in
  order (previews, backfill);
- `first_fire(spec, now)`: the next fire of a trigger written at `now` (create, schedule
  change, re-enable, reconciliation);
- `due_at(spec, fire)`: when a nominal fire is due (the fire plus its jitter);
- validators: `validate_cron`, `validate_timezone` (normalise or raise ScheduleError naming
  the field), `jitter_problem` (jitter over the schedule's period);
- `describe` (human text) and `iso_utc` (how every instant is written).

The dispatcher's batch planner (`app.schedule.planner`) advances triggers with the
catch-up policy (`catchup.py`); everything else here is the engine's own.

All returned instants are aware UTC datetimes. Cron is evaluated on local wall-clock time
with Debian cron's daylight-saving rules (app/schedule/fires.py).
"""

from __future__ import annotations

from app.schedule.cron import validate as validate_cron
from app.schedule.describe import describe
from app.schedule.spec import TriggerSpec, due_at, first_fire, jitter_problem
from app.schedule.spec import iter_spec as fires
from app.schedule.zones import iso_utc
from app.schedule.zones import validate as validate_timezone

__all__ = [
    "TriggerSpec",
    "describe",
    "due_at",
    "fires",
    "first_fire",
    "iso_utc",
    "jitter_problem",
    "validate_cron",
    "validate_timezone",
]
