"""Console page for one run: status, attempts, timestamps, error and result."""

from __future__ import annotations

import json

from flask import render_template

from app import run_history
from app.run_status import FINISHED, RunStatus
from web import context
from web.console import display
from web.console.blueprint import bp, parse_id


@bp.route("/runs/<run_id>")
def run_page(run_id: str) -> str:
    """A run; the page refreshes itself (no script) until the run has finished."""
    with context.session() as session:
        run = run_history.get_run(session, parse_id(run_id, "run"), scope=context.scope())
    return render_template(
        "console/run.html",
        run=run,
        finished=run.status in FINISHED,
        RunStatus=RunStatus,
        lag=display.seconds_between(run.due_at, run.started_at),
        jitter=display.seconds_between(run.scheduled_for, run.due_at) or 0,
        duration=display.seconds_between(run.started_at, run.finished_at),
        span=display.span,
        result=None if run.result is None else json.dumps(run.result, indent=2),
    )
