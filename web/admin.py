"""Operator endpoints: the deploy hook (DESIGN section 8) and the scheduler state."""

from __future__ import annotations

import logging

from flask.views import MethodView
from werkzeug.exceptions import NotFound, Unauthorized

from app import state
from web import auth, context
from web import schemas as s
from web.errors import Blueprint

logger = logging.getLogger(__name__)

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Operators")
blp.before_request(auth.require_key)
blp.before_request(auth.require_admin)


@blp.route("/scheduler")
class SchedulerState(MethodView):
    @blp.response(200, s.SchedulerStateOut)
    def get(self) -> dict:
        """Generation, deployment, last tick and its statistics (admin key)."""
        with context.session() as session:
            current = state.get_state(session)
        return {**vars(current), "release_id": context.settings().release_id}


@blp.route("/scheduler/restart")
@auth.public
class SchedulerRestart(MethodView):
    @blp.arguments(s.RestartHeaders, location="headers")
    @blp.response(200, s.RestartOut)
    @blp.doc(security=[])
    def post(self, headers: dict) -> dict:
        """The deploy hook: bump the generation and hand dispatching to this release.

        Needs `X-Scheduler-Secret`, not an API key. 404 when no secret is configured.
        """
        settings = context.settings()
        if not settings.scheduler_restart_secret:
            raise NotFound()
        if not auth.secret_matches(headers.get("secret"), settings.scheduler_restart_secret):
            logger.warning("restart refused", extra={"event": "scheduler_restart_refused"})
            raise Unauthorized()
        with context.session() as session:
            previous, generation = state.restart(
                session, release_id=settings.release_id, now=context.now()
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
