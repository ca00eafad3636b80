"""Schemas of the operator endpoints: scheduler state, the restart hook, the backlog, /healthz."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from web import fields as wf


class SchedulerStateOut(ma.Schema):
    generation = fields.Integer(required=True)
    deployment_id = fields.String(required=True, allow_none=True)
    restarted_at = wf.Timestamp(required=True, allow_none=True)
    last_tick_at = wf.Timestamp(required=True, allow_none=True)
    last_tick_stats = fields.Dict(required=True, allow_none=True)
    release_id = fields.String(required=True, metadata={"description": "This process's release"})


class RestartOut(ma.Schema):
    generation = fields.Integer(required=True)
    deployment_id = fields.String(required=True)
    previous_generation = fields.Integer(required=True)


class RestartIn(wf.Strict):
    """The release the deployer just shipped: the hook refuses (409) when the process that
    answers runs another one, so a call reaching an old process changes nothing."""

    release = fields.String(
        required=True,
        validate=[
            validate.Length(1, 200),
            validate.Regexp(r"^[\x21-\x7e]+$", error="must be printable ASCII without spaces"),
        ],
        metadata={"description": "The deployed release (RELEASE_ID)", "example": "v42"},
    )


class RestartHeaders(ma.Schema):
    secret = fields.String(data_key="X-Scheduler-Secret", metadata={"description": "Deploy secret"})


class Check(ma.Schema):
    ok = fields.Boolean(required=True)
    detail = fields.String()


class SchedulerCheck(Check):
    last_tick_at = wf.Timestamp(required=True, allow_none=True)
    age_seconds = fields.Float(required=True, allow_none=True)
    max_age_seconds = fields.Float(required=True)


class HealthChecks(ma.Schema):
    database = fields.Nested(Check, required=True)
    broker = fields.Nested(Check, required=True)
    scheduler = fields.Nested(SchedulerCheck, required=True)


class HealthOut(ma.Schema):
    status = fields.String(required=True, metadata={"enum": ["ok", "unhealthy"]})
    checks = fields.Nested(HealthChecks, required=True)


class HeldTenantOut(ma.Schema):
    tenant_id = fields.String(required=True)
    cap = fields.String(
        required=True,
        metadata={
            "enum": ["MAX_RUNNING_PER_TENANT", "MAX_WAITING_RUNS_PER_TENANT"],
            "description": "The tenant's own cap that holds its runs back",
        },
    )
    waiting = fields.Integer(required=True)
    in_progress = fields.Integer(required=True)
    pending = fields.Integer(required=True)


class BacklogOut(ma.Schema):
    status = fields.String(required=True, metadata={"enum": ["ok", "unhealthy"]})
    detail = fields.String()
    waiting = fields.Integer(
        required=True,
        metadata={"description": "Runs that could start and wait for a slot, held tenants aside"},
    )
    oldest_wait_seconds = fields.Float(required=True)
    max_wait_seconds = fields.Float(required=True)
    slots_in_use = fields.Integer(required=True)
    held_count = fields.Integer(
        required=True, metadata={"description": "Tenants left out: held back by a cap of their own"}
    )
    held_tenants = fields.List(
        fields.Nested(HeldTenantOut),
        required=True,
        metadata={"description": "The 100 held tenants with the most runs waiting"},
    )
