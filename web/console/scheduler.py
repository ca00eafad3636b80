"""Console pages for operators: the scheduler (admin keys only) and webhook secrets."""

from __future__ import annotations

from datetime import timedelta

from flask import render_template
from werkzeug.exceptions import NotFound

from app import state
from web import context, metrics
from web.console import display
from web.console.blueprint import bp

RECENT = timedelta(hours=1)


@bp.route("/scheduler")
def scheduler_page() -> str:
    """Release and generation, the last tick's age and stats, the due backlog and the runs of
    the last hour by status. A tenant key gets the 404 page, as the admin API answers."""
    if not context.principal().is_admin:
        raise NotFound()
    now = context.now()
    with context.session() as session:
        current = state.get_state(session)
        due = metrics.count_due_triggers(session, now=now)
        active = metrics.count_active_runs(session)
        finished = metrics.count_finished_runs(session, since=now - RECENT)
    return render_template(
        "console/scheduler.html",
        state=current,
        release_id=context.settings().release_id,
        tick_age=display.relative(current.last_tick_at, now),
        due=due,
        by_status={**active, **finished},
    )


@bp.route("/webhook-secrets")
def webhook_secrets_page() -> str:
    """Webhook signing secrets: list, rotate, revoke (filled in with the secrets API)."""
    return render_template("console/webhook_secrets.html")


@bp.route("/<path:unknown>", methods=["GET", "POST"])
def unknown_page(unknown: str) -> str:
    """Any other /console path: the console's 404 page rather than the API's JSON."""
    raise NotFound()
