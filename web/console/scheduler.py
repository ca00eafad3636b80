"""The console's scheduler page, for admin keys: is the scheduler alive and keeping up?"""

from __future__ import annotations

from datetime import timedelta

from flask import render_template
from werkzeug.exceptions import NotFound

from app import activity, admission, state
from web import context, metrics
from web.console import display
from web.console.blueprint import bp

RECENT = timedelta(hours=1)
TOP_TENANTS = metrics.TOP_TENANTS  # the tenants with the most waiting runs, as /metrics


@bp.route("/scheduler")
def scheduler_page() -> str:
    """Release and generation, the last tick's age and stats, the due backlog, the waiting
    room (slots in use, waiting runs by tenant: the same queries as /metrics) and the runs
    of the last hour by status. A tenant key gets the 404 page, as the admin API answers."""
    if not context.principal().is_admin:
        raise NotFound()
    now = context.now()
    with context.session() as session:
        current = state.get_state(session)
        runs = activity.runs_overview(session, now=now, since=now - RECENT)
        room = admission.backlog(session)
        waiting = admission.waiting_by_tenant(session, top=TOP_TENANTS)
    return render_template(
        "console/scheduler.html",
        state=current,
        release_id=context.settings().release_id,
        tick_age=display.relative(current.last_tick_at, now),
        due=runs["due"],
        by_status={**runs["active"], **runs["finished"]},
        active=runs["active"],
        room=room,
        waiting=waiting,
        top=TOP_TENANTS,
        max_running=context.services().limits.max_running,
        span=display.span,
    )
