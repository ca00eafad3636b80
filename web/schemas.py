"""Marshmallow schemas: what the API accepts and returns (and so its OpenAPI document).

Input is strict: unknown fields, wrong JSON types (a string for a number, 1 for a boolean)
and naive timestamps are rejected with every bad field named. Cron expressions, time zones
and actions are validated by the domain (app.schedule, app.actions.registry); cross-field
rules by app.trigger_checks.check_fields, the same function the service applies to updates.
Timestamps go out as ISO-8601 UTC with `Z`.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate
from werkzeug.exceptions import RequestEntityTooLarge

from app import schedule, trigger_checks, triggers
from app.models import (
    CATCHUP_POLICIES,
    INTERVAL_SECONDS,
    MAX_JITTER_SECONDS,
    OVERLAP_POLICIES,
    PAUSED_NOTE_LENGTH,
    RUN_KINDS,
    RUN_STATUSES,
)
from web import context
from web import fields as wf

MAX_LIMIT = 200
MAX_IDEMPOTENCY_KEY = 150  # the run key `<uuid>:manual:<key>` must fit in 200 characters
RUN_AS = (
    "The principal the trigger's runs act for (1-200 characters, no control characters): "
    "default, the creating key's principal. A `member` key may only create or change triggers "
    "that run as its own principal (403 naming run_as otherwise); an `admin` key may name any "
    "principal of its tenant. Webhooks carry it in the signed body and in `webhook-run-as`; "
    "handlers read `ctx.run_as`."
)


class TriggerPatch(wf.Strict):
    """Every writable trigger field, all optional (the PATCH body). Send `null` to clear
    cron, run_at, interval_seconds, anchor_at, start_at, end_at or paused_note (switching
    between cron, run_at and interval_seconds sets one and clears the other)."""

    name = fields.String(validate=validate.Length(1, 200))
    description = fields.String(validate=validate.Length(max=2000))
    cron = wf.Cron(allow_none=True, metadata={"example": "*/15 * * * *"})
    timezone = wf.TimeZone(metadata={"example": "Europe/Paris"})
    run_at = wf.Timestamp(allow_none=True)
    start_at = wf.Timestamp(allow_none=True)
    end_at = wf.Timestamp(allow_none=True)
    enabled = wf.StrictBoolean()
    action = wf.Action(metadata={"example": {"type": "task", "name": "echo"}})
    payload = fields.Dict(keys=fields.String())
    overlap_policy = fields.String(validate=validate.OneOf(OVERLAP_POLICIES))
    catchup_policy = fields.String(validate=validate.OneOf(CATCHUP_POLICIES))
    catchup_window_seconds = wf.StrictInteger(validate=validate.Range(0, 30 * 86400))
    max_attempts = wf.StrictInteger(validate=validate.Range(1, 20))
    retry_backoff_seconds = wf.StrictInteger(validate=validate.Range(0, 86400))
    timeout_seconds = wf.StrictInteger(validate=validate.Range(1, 86400))
    interval_seconds = wf.StrictInteger(
        allow_none=True,
        validate=validate.Range(*INTERVAL_SECONDS),
        metadata={"description": "Fire every N seconds from anchor_at (60 s to 366 days)",
                  "example": 5400},
    )  # fmt: skip
    anchor_at = wf.Timestamp(
        allow_none=True,
        metadata={"description": "Interval fires are anchor_at + k * interval_seconds, for "
                                 "every integer k (default the Unix epoch)"},
    )  # fmt: skip
    jitter_seconds = wf.StrictInteger(
        validate=validate.Range(0, MAX_JITTER_SECONDS),
        metadata={"description": "Delay each cron or interval fire by a stable offset in "
                                 "[0, jitter_seconds) (at most min(period, 3600))"},
    )  # fmt: skip
    paused_note = fields.String(
        allow_none=True,
        validate=validate.Length(max=PAUSED_NOTE_LENGTH),
        metadata={"description": "Why the trigger is paused; only with enabled: false"},
    )
    run_as = wf.Principal(metadata={"description": RUN_AS, "example": "user-42"})

    @ma.pre_load
    def limit_payload(self, data: Any, **kwargs: Any) -> Any:
        # An oversized payload is a 413, not a field error (docs/design.md section 7).
        if isinstance(data, dict) and wf.payload_size(data.get("payload")) > wf.PAYLOAD_LIMIT:
            raise RequestEntityTooLarge(f"payload is larger than {wf.PAYLOAD_LIMIT // 1024} KiB")
        return data


class TriggerCreate(TriggerPatch):
    """A new trigger: `name`, `action` and exactly one of `cron`, `run_at` and
    `interval_seconds`."""

    name = fields.String(required=True, validate=validate.Length(1, 200))
    action = wf.Action(required=True, metadata={"example": {"type": "task", "name": "echo"}})
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    timezone = wf.TimeZone(load_default="UTC", metadata={"example": "UTC"})
    enabled = wf.StrictBoolean(load_default=True)
    payload = fields.Dict(keys=fields.String(), load_default=dict)
    overlap_policy = fields.String(load_default="allow", validate=validate.OneOf(OVERLAP_POLICIES))
    catchup_policy = fields.String(load_default="latest", validate=validate.OneOf(CATCHUP_POLICIES))
    catchup_window_seconds = wf.StrictInteger(
        load_default=3600, validate=validate.Range(0, 2592000)
    )
    max_attempts = wf.StrictInteger(load_default=3, validate=validate.Range(1, 20))
    retry_backoff_seconds = wf.StrictInteger(load_default=10, validate=validate.Range(0, 86400))
    timeout_seconds = wf.StrictInteger(load_default=60, validate=validate.Range(1, 86400))
    jitter_seconds = wf.StrictInteger(
        load_default=0, validate=validate.Range(0, MAX_JITTER_SECONDS)
    )

    @ma.validates_schema(pass_original=True, skip_on_field_errors=False)
    def check_schedule(self, data: dict, original: Any, **kwargs: Any) -> None:
        _check_schedule(data, original, run_at_is_new=True)


def _check_schedule(data: dict, original: Any, *, run_at_is_new: bool) -> None:
    original = original if isinstance(original, dict) else {}
    problems = trigger_checks.check_fields(
        # Presence from the raw body, so an invalid cron still counts as "given".
        has_cron=original.get("cron") is not None,
        has_run_at=original.get("run_at") is not None,
        run_at=data.get("run_at"),
        start_at=data.get("start_at"),
        end_at=data.get("end_at"),
        now=context.now(),
        run_at_is_new=run_at_is_new,
        has_interval=original.get("interval_seconds") is not None,
        jitter_seconds=data.get("jitter_seconds"),
        paused_note=data.get("paused_note"),
        enabled=data.get("enabled", True),
    )
    if problems:
        raise ma.ValidationError(problems)


class RunOut(ma.Schema):
    id = fields.UUID(required=True)
    trigger_id = fields.UUID(required=True)
    tenant_id = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": list(RUN_KINDS)})
    status = fields.String(required=True, metadata={"enum": list(RUN_STATUSES)})
    scheduled_for = wf.Timestamp(required=True)
    due_at = wf.Timestamp(
        required=True,
        allow_none=True,
        metadata={"description": "When the run was due, what its lag counts from: for a "
                                 "scheduled run, scheduled_for plus the trigger's jitter; for "
                                 "a manual or backfill run, when it was asked for"},
    )  # fmt: skip
    idempotency_key = fields.String(required=True)
    attempt = fields.Integer(required=True)
    generation = fields.Integer(required=True)
    enqueued_at = wf.Timestamp(required=True, allow_none=True)
    started_at = wf.Timestamp(required=True, allow_none=True)
    finished_at = wf.Timestamp(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    result = fields.Raw(required=True, allow_none=True)
    run_as = fields.String(required=True, allow_none=True, metadata={
        "description": "The principal the run acts for: its trigger's run_as when it was made"
    })  # fmt: skip


class TriggerOut(ma.Schema):
    id = fields.UUID(required=True)
    tenant_id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    cron = fields.String(required=True, allow_none=True)
    timezone = fields.String(required=True)
    run_at = wf.Timestamp(required=True, allow_none=True)
    start_at = wf.Timestamp(required=True, allow_none=True)
    end_at = wf.Timestamp(required=True, allow_none=True)
    enabled = fields.Boolean(required=True)
    action = fields.Dict(required=True)
    payload = fields.Dict(required=True)
    overlap_policy = fields.String(required=True, metadata={"enum": list(OVERLAP_POLICIES)})
    catchup_policy = fields.String(required=True, metadata={"enum": list(CATCHUP_POLICIES)})
    catchup_window_seconds = fields.Integer(required=True)
    max_attempts = fields.Integer(required=True)
    retry_backoff_seconds = fields.Integer(required=True)
    timeout_seconds = fields.Integer(required=True)
    interval_seconds = fields.Integer(required=True, allow_none=True)
    anchor_at = wf.Timestamp(required=True, allow_none=True)
    jitter_seconds = fields.Integer(required=True)
    paused_note = fields.String(required=True, allow_none=True)
    paused_at = wf.Timestamp(required=True, allow_none=True)
    paused_by = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "Who paused it: the pausing key's prefix for a key of the tenant, "
            "`admin` for an admin key, `cli` for the operator CLI"
        },
    )
    next_run_at = wf.Timestamp(
        required=True,
        allow_none=True,
        metadata={"description": "When the next fire is due (its jitter included)"},
    )
    next_fire_at = wf.Timestamp(
        required=True,
        allow_none=True,
        metadata={"description": "The next fire itself: its runs' scheduled_for"},
    )
    run_as = fields.String(required=True, metadata={"description": RUN_AS})
    created_by = fields.String(
        required=True, metadata={"description": "The principal of the key that created it"}
    )
    updated_by = fields.String(
        required=True, metadata={"description": "The principal of the key that changed it last"}
    )
    schedule_description = fields.String(required=True)
    last_run = fields.Nested(RunOut, required=True, allow_none=True)
    version = fields.Integer(required=True)
    created_at = wf.Timestamp(required=True)
    updated_at = wf.Timestamp(required=True)

    @ma.pre_dump
    def flatten_detail(self, detail: triggers.TriggerDetail, **kwargs: Any) -> dict:
        trigger = detail.trigger
        values = {name: getattr(trigger, name) for name in self.fields if hasattr(trigger, name)}
        spec = schedule.TriggerSpec.of(trigger)
        values["schedule_description"] = schedule.describe(spec)
        values["last_run"] = detail.last_run
        return values


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
    after = wf.Timestamp(
        metadata={"description": "Fires strictly after this instant (default now)"}
    )


class PreviewIn(wf.Strict):
    """An unsaved schedule: `cron` (with `timezone`), `run_at` or `interval_seconds` (with
    `anchor_at`), an optional window and jitter (drawn as for a trigger with no id yet)."""

    cron = wf.Cron(allow_none=True)
    timezone = wf.TimeZone(load_default="UTC")
    run_at = wf.Timestamp(allow_none=True)
    interval_seconds = wf.StrictInteger(allow_none=True, validate=validate.Range(*INTERVAL_SECONDS))
    anchor_at = wf.Timestamp(allow_none=True)
    jitter_seconds = wf.StrictInteger(
        load_default=0, validate=validate.Range(0, MAX_JITTER_SECONDS)
    )
    start_at = wf.Timestamp(allow_none=True)
    end_at = wf.Timestamp(allow_none=True)
    after = wf.Timestamp()
    count = wf.StrictInteger(load_default=10, validate=validate.Range(1, 100))

    @ma.validates_schema(pass_original=True, skip_on_field_errors=False)
    def check_schedule(self, data: dict, original: Any, **kwargs: Any) -> None:
        _check_schedule(data, original, run_at_is_new=False)


class BackfillIn(wf.Strict):
    """A past range to run again: every fire f with start <= f < end (at most 1,000)."""

    start = wf.Timestamp(required=True, metadata={"example": "2026-11-29T00:00:00Z"})
    end = wf.Timestamp(required=True, metadata={"example": "2026-11-30T00:00:00Z"})


class BackfillOut(ma.Schema):
    created = fields.Integer(required=True, metadata={"description": "Runs created"})
    existing = fields.Integer(
        required=True, metadata={"description": "Fires that already had a run (not run again)"}
    )
