"""Marshmallow schemas: what the API accepts and returns (and so its OpenAPI document).

Input is strict: unknown fields, wrong JSON types (a string for a number, 1 for a boolean)
and naive timestamps are rejected with every bad field named. Cron expressions, time zones
and actions are validated by the domain (app.schedule, app.actions.registry); cross-field
rules by app.triggers.check_fields, the same function the service applies to updates.
Timestamps go out as ISO-8601 UTC with `Z`.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import marshmallow as ma
from marshmallow import fields, validate
from werkzeug.exceptions import RequestEntityTooLarge

from app import errors, schedule, triggers
from app.actions import registry
from app.models import CATCHUP_POLICIES, OVERLAP_POLICIES, RUN_STATUSES
from web import context

PAYLOAD_LIMIT = 64 * 1024  # bytes of compact JSON (DESIGN section 7)
MAX_LIMIT = 200
MAX_IDEMPOTENCY_KEY = 150  # the run key `<uuid>:manual:<key>` must fit in 200 characters


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
    """ISO-8601 with an offset in; ISO-8601 UTC with `Z` out."""

    default_error_messages = {"invalid_awareness": "must include a UTC offset (e.g. Z or +02:00)"}

    def _serialize(self, value: datetime | None, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else iso_utc(value)


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


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payload_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class TriggerPatch(Strict):
    """Every writable trigger field, all optional (the PATCH body). Send `null` to clear
    cron, run_at, start_at or end_at (switching between cron and run_at needs both)."""

    name = fields.String(validate=validate.Length(1, 200))
    description = fields.String(validate=validate.Length(max=2000))
    cron = Cron(allow_none=True, metadata={"example": "*/15 * * * *"})
    timezone = TimeZone(metadata={"example": "Europe/Paris"})
    run_at = Timestamp(allow_none=True)
    start_at = Timestamp(allow_none=True)
    end_at = Timestamp(allow_none=True)
    enabled = StrictBoolean()
    action = Action(metadata={"example": {"type": "task", "name": "echo"}})
    payload = fields.Dict(keys=fields.String())
    overlap_policy = fields.String(validate=validate.OneOf(OVERLAP_POLICIES))
    catchup_policy = fields.String(validate=validate.OneOf(CATCHUP_POLICIES))
    catchup_window_seconds = StrictInteger(validate=validate.Range(0, 30 * 86400))
    max_attempts = StrictInteger(validate=validate.Range(1, 20))
    retry_backoff_seconds = StrictInteger(validate=validate.Range(0, 86400))
    timeout_seconds = StrictInteger(validate=validate.Range(1, 86400))

    @ma.pre_load
    def limit_payload(self, data: Any, **kwargs: Any) -> Any:
        # An oversized payload is a 413, not a field error (DESIGN section 7).
        if isinstance(data, dict) and payload_size(data.get("payload")) > PAYLOAD_LIMIT:
            raise RequestEntityTooLarge(f"payload is larger than {PAYLOAD_LIMIT // 1024} KiB")
        return data


class TriggerCreate(TriggerPatch):
    """A new trigger: `name`, `action` and exactly one of `cron` / `run_at`."""

    name = fields.String(required=True, validate=validate.Length(1, 200))
    action = Action(required=True, metadata={"example": {"type": "task", "name": "echo"}})
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    timezone = TimeZone(load_default="UTC", metadata={"example": "UTC"})
    enabled = StrictBoolean(load_default=True)
    payload = fields.Dict(keys=fields.String(), load_default=dict)
    overlap_policy = fields.String(load_default="allow", validate=validate.OneOf(OVERLAP_POLICIES))
    catchup_policy = fields.String(load_default="latest", validate=validate.OneOf(CATCHUP_POLICIES))
    catchup_window_seconds = StrictInteger(load_default=3600, validate=validate.Range(0, 2592000))
    max_attempts = StrictInteger(load_default=3, validate=validate.Range(1, 20))
    retry_backoff_seconds = StrictInteger(load_default=10, validate=validate.Range(0, 86400))
    timeout_seconds = StrictInteger(load_default=60, validate=validate.Range(1, 86400))

    @ma.validates_schema(pass_original=True, skip_on_field_errors=False)
    def check_schedule(self, data: dict, original: Any, **kwargs: Any) -> None:
        _check_schedule(data, original, run_at_is_new=True)


def _check_schedule(data: dict, original: Any, *, run_at_is_new: bool) -> None:
    original = original if isinstance(original, dict) else {}
    problems = triggers.check_fields(
        # Presence from the raw body, so an invalid cron still counts as "given".
        has_cron=original.get("cron") is not None,
        has_run_at=original.get("run_at") is not None,
        run_at=data.get("run_at"),
        start_at=data.get("start_at"),
        end_at=data.get("end_at"),
        now=context.now(),
        run_at_is_new=run_at_is_new,
    )
    if problems:
        raise ma.ValidationError(problems)


class RunOut(ma.Schema):
    id = fields.UUID(required=True)
    trigger_id = fields.UUID(required=True)
    tenant_id = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": ["scheduled", "manual"]})
    status = fields.String(required=True, metadata={"enum": list(RUN_STATUSES)})
    scheduled_for = Timestamp(required=True)
    idempotency_key = fields.String(required=True)
    attempt = fields.Integer(required=True)
    generation = fields.Integer(required=True)
    enqueued_at = Timestamp(required=True, allow_none=True)
    started_at = Timestamp(required=True, allow_none=True)
    finished_at = Timestamp(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    result = fields.Raw(required=True, allow_none=True)


class TriggerOut(ma.Schema):
    id = fields.UUID(required=True)
    tenant_id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    cron = fields.String(required=True, allow_none=True)
    timezone = fields.String(required=True)
    run_at = Timestamp(required=True, allow_none=True)
    start_at = Timestamp(required=True, allow_none=True)
    end_at = Timestamp(required=True, allow_none=True)
    enabled = fields.Boolean(required=True)
    action = fields.Dict(required=True)
    payload = fields.Dict(required=True)
    overlap_policy = fields.String(required=True, metadata={"enum": list(OVERLAP_POLICIES)})
    catchup_policy = fields.String(required=True, metadata={"enum": list(CATCHUP_POLICIES)})
    catchup_window_seconds = fields.Integer(required=True)
    max_attempts = fields.Integer(required=True)
    retry_backoff_seconds = fields.Integer(required=True)
    timeout_seconds = fields.Integer(required=True)
    next_run_at = Timestamp(required=True, allow_none=True)
    schedule_description = fields.String(required=True)
    last_run = fields.Nested(RunOut, required=True, allow_none=True)
    version = fields.Integer(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)

    @ma.pre_dump
    def flatten_detail(self, detail: triggers.TriggerDetail, **kwargs: Any) -> dict:
        trigger = detail.trigger
        values = {name: getattr(trigger, name) for name in self.fields if hasattr(trigger, name)}
        values["schedule_description"] = describe(triggers.spec_of(trigger))
        values["last_run"] = detail.last_run
        return values


@functools.lru_cache(maxsize=4096)
def describe(spec: schedule.TriggerSpec) -> str:
    """schedule.describe, memoised: a page of 200 triggers mostly repeats a few schedules."""
    return schedule.describe(spec)


class Page(ma.Schema):
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Pass as ?cursor= for the next page; null on the last page"},
    )


class TriggerPage(Page):
    items = fields.List(fields.Nested(TriggerOut), required=True)


class RunPage(Page):
    items = fields.List(fields.Nested(RunOut), required=True)


class PageQuery(ma.Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))
    cursor = fields.String(validate=validate.Length(1, 500))


class TriggerListQuery(PageQuery):
    enabled = fields.Boolean(truthy={"true", "1"}, falsy={"false", "0"})


class RunListQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(RUN_STATUSES))


class IdempotencyHeaders(ma.Schema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=[
            validate.Length(1, MAX_IDEMPOTENCY_KEY),
            validate.Regexp(r"^[\x21-\x7e]+$", error="must be printable ASCII without spaces"),
        ],
        metadata={"description": "Retries with the same key return the first response"},
    )


class IfMatchHeaders(ma.Schema):
    if_match = fields.String(
        data_key="If-Match",
        validate=validate.Length(1, 100),
        metadata={"description": "The trigger version the change is based on (412 if stale)"},
    )


class PreviewQuery(ma.Schema):
    count = fields.Integer(load_default=10, validate=validate.Range(1, 100))
    after = Timestamp(metadata={"description": "Fires strictly after this instant (default now)"})


class PreviewIn(Strict):
    """An unsaved schedule: `cron` (with `timezone`) or `run_at`, and an optional window."""

    cron = Cron(allow_none=True)
    timezone = TimeZone(load_default="UTC")
    run_at = Timestamp(allow_none=True)
    start_at = Timestamp(allow_none=True)
    end_at = Timestamp(allow_none=True)
    after = Timestamp()
    count = StrictInteger(load_default=10, validate=validate.Range(1, 100))

    @ma.validates_schema(pass_original=True, skip_on_field_errors=False)
    def check_schedule(self, data: dict, original: Any, **kwargs: Any) -> None:
        _check_schedule(data, original, run_at_is_new=False)


class Fire(ma.Schema):
    utc = fields.String(required=True, metadata={"example": "2026-03-08T07:00:00Z"})
    local = fields.String(required=True, metadata={"example": "2026-03-08T03:00:00-04:00"})


class PreviewOut(ma.Schema):
    description = fields.String(required=True)
    fires = fields.List(fields.Nested(Fire), required=True)


def preview_out(spec: schedule.TriggerSpec, fires: list[datetime]) -> dict:
    """The preview body: each fire in UTC (`Z`) and in the schedule's local time."""
    zone = ZoneInfo(spec.timezone)
    return {
        "description": describe(spec),
        "fires": [{"utc": iso_utc(f), "local": f.astimezone(zone).isoformat()} for f in fires],
    }


class SchedulerStateOut(ma.Schema):
    generation = fields.Integer(required=True)
    deployment_id = fields.String(required=True, allow_none=True)
    restarted_at = Timestamp(required=True, allow_none=True)
    last_tick_at = Timestamp(required=True, allow_none=True)
    last_tick_stats = fields.Dict(required=True, allow_none=True)
    release_id = fields.String(required=True, metadata={"description": "This process's release"})


class RestartOut(ma.Schema):
    generation = fields.Integer(required=True)
    deployment_id = fields.String(required=True)
    previous_generation = fields.Integer(required=True)


class RestartHeaders(ma.Schema):
    secret = fields.String(data_key="X-Scheduler-Secret", metadata={"description": "Deploy secret"})


class Check(ma.Schema):
    ok = fields.Boolean(required=True)
    detail = fields.String()


class SchedulerCheck(Check):
    last_tick_at = Timestamp(required=True, allow_none=True)
    age_seconds = fields.Float(required=True, allow_none=True)
    max_age_seconds = fields.Float(required=True)


class BacklogCheck(Check):
    waiting = fields.Integer(allow_none=True)
    oldest_wait_seconds = fields.Float(allow_none=True)
    max_wait_seconds = fields.Float()
    slots_in_use = fields.Integer(allow_none=True)


class HealthChecks(ma.Schema):
    database = fields.Nested(Check, required=True)
    broker = fields.Nested(Check, required=True)
    scheduler = fields.Nested(SchedulerCheck, required=True)
    backlog = fields.Nested(BacklogCheck, required=True)


class HealthOut(ma.Schema):
    status = fields.String(required=True, metadata={"enum": ["ok", "unhealthy"]})
    checks = fields.Nested(HealthChecks, required=True)
