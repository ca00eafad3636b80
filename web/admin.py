"""Operator endpoints: the deploy hook (docs/design.md section 8), the scheduler state and
the backlog (section 17)."""

from __future__ import annotations

import logging

from flask import Response, request
from flask.views import MethodView
from werkzeug.exceptions import NotFound, Unauthorized

from app import errors, state
from web import auth, context, ops_schemas
from web.errors import Blueprint, InvalidFields, envelope

logger = logging.getLogger(__name__)

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Operators")
blp.before_request(auth.require_key)
blp.before_request(auth.require_admin)


@blp.before_request
def require_restart_secret() -> None:
    """Check the deploy secret before the hook's body is even parsed (an unauthenticated
    caller learns nothing from validation errors). 404 when no secret is configured."""
    if request.endpoint != "admin.SchedulerRestart":
        return
    configured = context.settings().scheduler_restart_secret
    if not configured:
        raise NotFound()
    if not auth.secret_matches(request.headers.get("X-Scheduler-Secret"), configured):
        logger.warning("restart refused", extra={"event": "scheduler_restart_refused"})
        raise Unauthorized()
    if not request.get_data(cache=True).strip():
        # An old deploy script without a body: name the field it must now send.
        raise InvalidFields({"release": "Missing data for required field."})


@blp.errorhandler(errors.ReleaseMismatch)
def release_mismatch(exc: errors.ReleaseMismatch) -> Response:
    logger.warning(
        "restart refused: release mismatch",
        extra={
            "event": "scheduler_restart_release_mismatch",
            "release": exc.serving,
            "requested_release": exc.requested,
        },
    )
    return envelope(409, exc.message, code="release_mismatch")


@blp.route("/scheduler")
class SchedulerState(MethodView):
    @blp.response(200, ops_schemas.SchedulerStateOut)
    def get(self) -> dict:
        """Generation, deployment, last tick and its statistics (admin key)."""
        with context.session() as session:
            current = state.get_state(session)
        return {**vars(current), "release_id": context.settings().release_id}


@blp.route("/backlog")
class Backlog(MethodView):
    @blp.response(200, ops_schemas.BacklogOut)
    @blp.alt_response(
        503, schema=ops_schemas.BacklogOut, description="Runs wait for a slot longer than allowed"
    )
    def get(self) -> tuple[dict, int]:
        """Whether runs that could start wait for a slot longer than ten tick periods (at
        least 10 minutes), leaving out the tenants held back by a cap of their own
        (admin key); 503 when they do."""
        with context.session() as session:
            report = context.services().backlog(session)
        body = {**vars(report), "status": "ok" if report.ok else "unhealthy"}
        if not report.ok:
            body["detail"] = "runs wait for a slot longer than allowed"
        return body, 200 if report.ok else 503


@blp.route("/scheduler/restart")
@auth.public
class SchedulerRestart(MethodView):
    @blp.arguments(ops_schemas.RestartIn)
    @blp.arguments(ops_schemas.RestartHeaders, location="headers")
    @blp.response(200, ops_schemas.RestartOut)
    @blp.alt_response(409, description="The serving process runs another release")
    @blp.doc(security=[])
    def post(self, body: dict, headers: dict) -> dict:
        """The deploy hook: bump the generation and hand dispatching to this release.

        Needs `X-Scheduler-Secret`, not an API key (404 when no secret is configured), and
        the body `{"release": "<id>"}`: 409, changing nothing, when this process runs
        another release (the call reached an old process during a deploy overlap).
        """
        settings = context.settings()
        with context.session() as session:
            previous, generation = state.restart(
                session,
                release_id=settings.release_id,
                requested_release=body["release"],
                now=context.now(),
            )
        logger.info(
            "scheduler restarted",
            extra={
                "event": "scheduler_restarted",
                "generation": generation,
                "previous_generation": previous,
                "deployment_id": settings.release_id,
            },
        )
        return {
            "generation": generation,
            "deployment_id": settings.release_id,
            "previous_generation": previous,
        }
