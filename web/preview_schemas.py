"""The schedule preview's answer (GET /triggers/{id}/preview, POST /schedules/preview):
each fire in UTC and in the schedule's local time, and with jitter when it is due."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import marshmallow as ma
from marshmallow import fields

from app import schedule


class Fire(ma.Schema):
    utc = fields.String(required=True, metadata={"example": "2026-03-08T07:00:00Z"})
    local = fields.String(required=True, metadata={"example": "2026-03-08T03:00:00-04:00"})
    jittered_utc = fields.String(
        metadata={"description": "When the fire is due, its jitter included (only with "
                                 "jitter): the run's scheduled_for stays `utc`",
                  "example": "2026-03-08T07:04:31Z"},
    )  # fmt: skip
    jittered_local = fields.String(metadata={"example": "2026-03-08T03:04:31-04:00"})


class PreviewOut(ma.Schema):
    description = fields.String(required=True)
    fires = fields.List(fields.Nested(Fire), required=True)


def preview_out(spec: schedule.TriggerSpec, fires: list[datetime]) -> dict:
    """The preview body: each fire in UTC (`Z`) and in the schedule's local time, and with
    jitter the instant it is due, both ways."""
    zone = ZoneInfo(spec.timezone)
    items = []
    for fire in fires:
        item = {"utc": schedule.iso_utc(fire), "local": fire.astimezone(zone).isoformat()}
        if spec.jitter_seconds:
            due = schedule.due_at(spec, fire)
            item.update(
                jittered_utc=schedule.iso_utc(due), jittered_local=due.astimezone(zone).isoformat()
            )
        items.append(item)
    return {"description": schedule.describe(spec), "fires": items}
