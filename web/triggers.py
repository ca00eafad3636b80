"""Triggers: create (idempotent), list, read, update (If-Match), delete, run now, backfill,
preview."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from flask import Response, jsonify, request, url_for
from flask.views import MethodView

from app import errors, idempotency, schedule, triggers
from app.models import Run
from web import auth, context, pagination, preview_schemas
from web import schemas as s
from web.errors import Blueprint

logger = logging.getLogger(__name__)

blp = Blueprint("triggers", __name__, url_prefix="/api/v1", description="Scheduled triggers")
blp.before_request(auth.require_key)


@blp.before_request
def replay_before_validation() -> Response | None:
    """Answer a retried create from its stored response before the body is validated again:
    time-relative checks (a one-time `run_at` at most 60 s in the past) must not turn a
    retry of a request that succeeded into a 422."""
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or request.endpoint != "triggers.TriggerCollection" or not key:
        return None
    body = request.get_json(silent=True)
    if body is None:
        return None  # not JSON: the normal path answers 400
    digest = idempotency.request_hash("POST", request.path, body)
    with context.session() as session:
        replay = idempotency.stored_response(
            session, tenant_id=context.principal().tenant_id, key=key, request_hash=digest
        )
    return None if replay is None else _json(replay.body, replay.status, replayed=True)


# A member key's write to a trigger that runs as another principal (docs/design.md section 18).
FORBIDDEN = "A member key may only write triggers that run as its own principal (`run_as`)"
IF_MATCH = re.compile(r'^(?:W/)?"?(\d{1,10})"?$')


@blp.route("/triggers")
class TriggerCollection(MethodView):
    @blp.arguments(s.TriggerListQuery, location="query")
    @blp.response(200, s.TriggerPage)
    def get(self, query: dict) -> dict:
        """List triggers, oldest first (keyset-paginated)."""
        after, limit = pagination.decode(query.get("cursor")), query["limit"]
        with context.session() as session:
            rows = triggers.list_page(
                session, scope=context.scope(), enabled=query.get("enabled"),
                limit=limit + 1, after=after,
            )  # fmt: skip
        return pagination.page(rows, limit, lambda d: (d.trigger.created_at, d.trigger.id))

    @blp.arguments(s.TriggerCreate)
    @blp.arguments(s.IdempotencyHeaders, location="headers")
    @blp.alt_response(403, description=FORBIDDEN)
    @blp.response(201, s.TriggerOut, headers={"Location": {"schema": {"type": "string"}}})
    def post(self, values: dict, headers: dict) -> Response:
        """Create a trigger. With `Idempotency-Key`, a retry returns the first response."""
        key, tenant = headers.get("idempotency_key"), context.principal().tenant_id
        with context.session() as session:
            if key is not None:
                digest = idempotency.request_hash("POST", request.path, request.get_json())
                claim = idempotency.claim(session, tenant_id=tenant, key=key, request_hash=digest)
                if claim.is_replay:
                    return _json(claim.body, claim.status, replayed=True)
            trigger = context.services().create_trigger(
                session, tenant_id=tenant, values=values, by=context.actor(),
                actor=context.principal().label,
            )  # fmt: skip
            body = s.TriggerOut().dump(triggers.TriggerDetail(trigger, None))
            if key is not None:
                idempotency.complete(session, claim, status=201, body=body)
        return _json(body, 201)


@blp.route("/triggers/<uuid:trigger_id>")
class TriggerItem(MethodView):
    @blp.response(200, s.TriggerOut, headers={"ETag": {"schema": {"type": "string"}}})
    def get(self, trigger_id: uuid.UUID) -> Any:
        """One trigger with its next run, schedule description and last run."""
        with context.session() as session:
            detail = triggers.get(session, trigger_id, scope=context.scope())
        return detail, 200, _etag(detail.trigger.version)

    @blp.arguments(s.TriggerPatch)
    @blp.arguments(s.IfMatchHeaders, location="headers")
    @blp.alt_response(403, description=FORBIDDEN)
    @blp.response(200, s.TriggerOut)
    def patch(self, changes: dict, headers: dict, trigger_id: uuid.UUID) -> Any:
        """Partial update; `If-Match: <version>` makes it conditional (412 when stale)."""
        with context.session() as session:
            detail = triggers.update(
                session, trigger_id, scope=context.scope(), changes=changes,
                if_match=if_match(headers.get("if_match")), now=context.now(),
                by=context.actor(), actor=context.principal().label,
            )  # fmt: skip
        return detail, 200, _etag(detail.trigger.version)

    @blp.arguments(s.IfMatchHeaders, location="headers")
    @blp.alt_response(403, description=FORBIDDEN)
    @blp.response(204)
    def delete(self, headers: dict, trigger_id: uuid.UUID) -> None:
        """Delete a trigger and cancel its pending runs (its run history stays)."""
        with context.session() as session:
            triggers.delete(
                session, trigger_id, scope=context.scope(),
                if_match=if_match(headers.get("if_match")), now=context.now(), by=context.actor(),
            )  # fmt: skip


@blp.route("/triggers/<uuid:trigger_id>/run")
class TriggerRunNow(MethodView):
    @blp.arguments(s.IdempotencyHeaders, location="headers")
    @blp.alt_response(403, description=FORBIDDEN)
    @blp.response(202, s.RunOut)
    @blp.alt_response(409, description="The tenant has MAX_WAITING_RUNS_PER_TENANT runs waiting")
    def post(self, headers: dict, trigger_id: uuid.UUID) -> Run:
        """Run now: a `manual` run, committed, then handed to the workers. 409, creating
        nothing, when the tenant already has `MAX_WAITING_RUNS_PER_TENANT` runs waiting."""
        with context.session() as session:
            run, created = context.services().run_now(
                session, trigger_id, scope=context.scope(),
                request_key=headers.get("idempotency_key"), by=context.actor(),
            )  # fmt: skip
        if created:
            context.services().hand_off(run)
        return run


@blp.route("/triggers/<uuid:trigger_id>/backfill")
class TriggerBackfill(MethodView):
    @blp.arguments(s.BackfillIn)
    @blp.alt_response(403, description=FORBIDDEN)
    @blp.response(202, s.BackfillOut)
    @blp.alt_response(409, description="The runs would pass MAX_WAITING_RUNS_PER_TENANT")
    def post(self, body: dict, trigger_id: uuid.UUID) -> dict:
        """Run every fire in [start, end) again as a `backfill` run (at most 1,000; end not
        in the future; start no more than `BACKFILL_MAX_AGE_DAYS` back, else 422 naming
        `start`). A fire that already has a run keeps it: a repeated call creates nothing
        more. 409, creating nothing, when the new runs would take the tenant past
        `MAX_WAITING_RUNS_PER_TENANT` waiting runs."""
        with context.session() as session:
            result = context.services().backfill(
                session, trigger_id, scope=context.scope(), start=body["start"],
                end=body["end"], by=context.actor(),
            )  # fmt: skip
        if result.runs:
            context.services().hand_off(*result.runs)
        return {"created": result.created, "existing": result.existing}


@blp.route("/triggers/<uuid:trigger_id>/preview")
class TriggerPreview(MethodView):
    @blp.arguments(s.PreviewQuery, location="query")
    @blp.response(200, preview_schemas.PreviewOut)
    def get(self, query: dict, trigger_id: uuid.UUID) -> dict:
        """The trigger's next fire times in UTC and its local time, inside its window."""
        with context.session() as session:
            spec = schedule.TriggerSpec.of(
                triggers.get(session, trigger_id, scope=context.scope()).trigger
            )
        after = query.get("after") or context.now()
        return preview_schemas.preview_out(
            spec, triggers.preview(spec, after=after, count=query["count"])
        )


@blp.route("/schedules/preview")
class SchedulePreview(MethodView):
    @blp.arguments(s.PreviewIn)
    @blp.response(200, preview_schemas.PreviewOut)
    def post(self, body: dict) -> dict:
        """Next fire times of an unsaved schedule (`cron` + `timezone`, or `run_at`)."""
        spec = schedule.TriggerSpec.of(body)
        after = body.get("after") or context.now()
        return preview_schemas.preview_out(
            spec, triggers.preview(spec, after=after, count=body["count"])
        )


def if_match(value: str | None) -> int | None:
    """The version an `If-Match` header names; None for no header or `*`."""
    if value is None or value.strip() == "*":
        return None
    match = IF_MATCH.match(value.strip())
    if match is None:
        # No version looks like this, so the condition is false (RFC 9110 section 13.1.1).
        raise errors.PreconditionFailed('If-Match must name a trigger version, e.g. "3"')
    return int(match.group(1))


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _json(body: Any, status: int, *, replayed: bool = False) -> Response:
    response = jsonify(body)
    response.status_code = status
    if status == 201 and isinstance(body, dict) and "id" in body:
        response.headers["Location"] = url_for("triggers.TriggerItem", trigger_id=body["id"])
        response.headers.update(_etag(body["version"]))
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
