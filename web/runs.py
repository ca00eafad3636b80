"""Runs: a trigger's run history, one run, and cancelling a run."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from app import run_history
from app.models import Run
from web import auth, context, pagination
from web import schemas as s
from web.errors import Blueprint

blp = Blueprint("runs", __name__, url_prefix="/api/v1", description="Run history")
blp.before_request(auth.require_key)


@blp.route("/triggers/<uuid:trigger_id>/runs")
class TriggerRuns(MethodView):
    @blp.arguments(s.RunListQuery, location="query")
    @blp.response(200, s.RunPage)
    def get(self, query: dict, trigger_id: uuid.UUID) -> dict:
        """A trigger's runs, newest first (also after the trigger was deleted)."""
        before, limit = pagination.decode(query.get("cursor")), query["limit"]
        with context.session() as session:
            rows = run_history.list_runs(
                session, trigger_id, scope=context.scope(), status=query.get("status"),
                limit=limit + 1, before=before,
            )  # fmt: skip
        return pagination.page(rows, limit, lambda run: (run.created_at, run.id))


@blp.route("/runs/<uuid:run_id>")
class RunItem(MethodView):
    @blp.response(200, s.RunOut)
    def get(self, run_id: uuid.UUID) -> Run:
        """One run."""
        with context.session() as session:
            return run_history.get_run(session, run_id, scope=context.scope())


@blp.route("/runs/<uuid:run_id>/cancel")
class RunCancel(MethodView):
    @blp.alt_response(403, description="A member key may only cancel runs of its own principal")
    @blp.response(202, s.RunOut)
    def post(self, run_id: uuid.UUID) -> Run:
        """Cancel a pending run now, or ask a running one to stop between attempts."""
        with context.session() as session:
            return run_history.cancel_run(
                session, run_id, scope=context.scope(), now=context.now(), by=context.actor()
            )
