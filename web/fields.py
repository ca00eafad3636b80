"""Field types of the API's schemas: strict JSON types, UTC timestamps, schedule strings,
actions; every bad value becomes a 422 that names its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields

from app import errors, principals, schedule
from app.actions import registry

PAYLOAD_LIMIT = 64 * 1024  # bytes of compact JSON (docs/design.md section 7)
MIN_YEAR, MAX_YEAR = 1, 9998  # instants the API accepts (see Timestamp)


class StrictInteger(fields.Integer):
    """An integer that must be a JSON number (not a string, not a boolean)."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """true or false, nothing else."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Timestamp(fields.AwareDateTime):
    """ISO-8601 with an offset in; ISO-8601 UTC with `Z` out.

    Only years 1-9998 in UTC are accepted: Python's datetime ends at 9999-12-31, so an
    instant near either end overflows as soon as it is converted to UTC or a window is
    added to it (a preview, a catch-up), which would be a 500 rather than a 422. The value
    loads as UTC: Python accepts offsets up to +-23:59, PostgreSQL only up to +-15:59.
    """

    default_error_messages = {
        "invalid_awareness": "must include a UTC offset (e.g. Z or +02:00)",
        "out_of_range": f"must be between years {MIN_YEAR} and {MAX_YEAR} (UTC)",
    }

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            utc = moment.astimezone(UTC)
        except OverflowError:
            raise self.make_error("out_of_range")
        if not MIN_YEAR <= utc.year <= MAX_YEAR:
            raise self.make_error("out_of_range")
        return utc

    def _serialize(self, value: datetime | None, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else schedule.iso_utc(value)


class _ScheduleString(fields.String):
    """A string validated (and normalised) by app.schedule, its error named by the field."""

    max_length: int = 255
    validate_with: Any = None

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > self.max_length:
            raise ma.ValidationError(f"must be at most {self.max_length} characters")
        try:
            return type(self).validate_with(text)
        except errors.ScheduleError as exc:
            raise ma.ValidationError(exc.message)


class Cron(_ScheduleString):
    """A cron expression, validated and normalised by app.schedule."""

    validate_with = staticmethod(schedule.validate_cron)


class TimeZone(_ScheduleString):
    """An IANA time zone name, validated by app.schedule."""

    max_length = 64
    validate_with = staticmethod(schedule.validate_timezone)


class Principal(fields.String):
    """A principal id (app.principals): 1-200 characters, no control characters, no
    surrounding spaces; each problem named by the field."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = principals.problem(text)
        if problem is not None:
            raise ma.ValidationError(problem)
        return text


class Action(fields.Dict):
    """A webhook or task action, validated by the action registry (each bad key named)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict:
        action = super()._deserialize(value, attr, data, **kwargs)
        problems = registry.validate_action(action)
        if "action" in problems:
            raise ma.ValidationError(problems["action"])
        if problems:  # "action.url" -> {"url": ...}, nested under this field by marshmallow
            raise ma.ValidationError(
                {path.removeprefix("action."): message for path, message in problems.items()}
            )
        return action


def payload_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE
