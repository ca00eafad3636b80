"""Console pages listing triggers and showing one (fields, next fires, run history, chart).

Each view is an adapter over the same app.triggers functions the API uses.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from flask import render_template, request

from app import run_history, schedule, triggers
from app.models import Trigger
from web import context, pagination
from web.console import chart, display
from web.console.blueprint import bp, parse_id

PAGE_SIZE = 25
RUNS_PAGE_SIZE = 20
PREVIEW_COUNT = 10
STATES = {"enabled": True, "paused": False}


@bp.route("/triggers")
def triggers_list() -> str:
    """Triggers, oldest first, filtered by state, a page at a time."""
    state = request.args.get("state", "")
    enabled = STATES.get(state)
    after = pagination.decode(request.args.get("cursor") or None)
    with context.session() as session:
        rows = triggers.list_page(
            session, scope=context.scope(), enabled=enabled, limit=PAGE_SIZE + 1, after=after
        )
    page = pagination.page(rows, PAGE_SIZE, lambda d: (d.trigger.created_at, d.trigger.id))
    now = context.now()
    items = [_summary(detail.trigger, detail.last_run, now) for detail in page["items"]]
    return render_template(
        "console/triggers.html",
        items=items,
        state=state if enabled is not None else "",
        next_cursor=page["next_cursor"],
        first_page=after is None,
    )


def _summary(trigger: Trigger, last_run: Any, now: Any) -> dict[str, Any]:
    next_local = (
        trigger.next_run_at.astimezone(ZoneInfo(trigger.timezone)) if trigger.next_run_at else None
    )
    return {
        "trigger": trigger,
        "description": schedule.describe(schedule.TriggerSpec.of(trigger)),
        "next_local": next_local,
        "next_relative": display.relative(trigger.next_run_at, now),
        "last_run": last_run,
    }


@bp.route("/triggers/<trigger_id>")
def trigger_page(trigger_id: str) -> str:
    """Every field, the next fires with DST changes marked, run history and its chart."""
    page, _ = render(parse_id(trigger_id))
    return page


def render(
    tid: uuid.UUID,
    *,
    problems: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    """The trigger page; a refused pause or backfill form renders it again with `problems`
    next to its fields (the API's names) and the text the person typed in `values`."""
    before = pagination.decode(request.args.get("runs") or None)
    now = context.now()
    with context.session() as session:
        detail = triggers.get(session, tid, scope=context.scope())
        rows = run_history.list_runs(
            session, tid, scope=context.scope(), status=None, limit=RUNS_PAGE_SIZE + 1,
            before=before,
        )  # fmt: skip
    trigger = detail.trigger
    runs_page = pagination.page(rows, RUNS_PAGE_SIZE, lambda run: (run.created_at, run.id))
    spec = schedule.TriggerSpec.of(trigger)
    fires = display.fire_rows(
        triggers.preview(spec, after=now, count=PREVIEW_COUNT), trigger.timezone,
        due=lambda fire: schedule.due_at(spec, fire) if spec.jitter_seconds else None,
    )  # fmt: skip
    runs = runs_page["items"]
    points = [
        chart.Point(
            label=schedule.iso_utc(run.scheduled_for),
            lag=display.seconds_between(run.due_at, run.started_at),
            duration=display.seconds_between(run.started_at, run.finished_at),
        )
        for run in reversed(runs)
    ]
    return render_template(
        "console/trigger.html",
        trigger=trigger,
        summary=_summary(trigger, detail.last_run, now),
        fires=fires,
        runs=runs,
        runs_cursor=runs_page["next_cursor"],
        runs_page_older=before is not None,
        chart=chart.svg(points),
        seconds_between=display.seconds_between,
        span=display.span,
        run_token=secrets.token_urlsafe(16),
        problems=problems or {},
        values=values or {},
    ), status
