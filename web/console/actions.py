"""Console actions on a trigger: run now, pause, resume, delete (with a confirmation page).

Each is a form POST (CSRF-protected) that calls one app.triggers function and redirects, so
they work without JavaScript and a reload never repeats them.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for

from app import errors, triggers
from web import context
from web import triggers as api_triggers
from web.console.blueprint import TOKEN, bp, parse_id


@bp.route("/triggers/<trigger_id>/run", methods=["POST"])
def run_trigger_now(trigger_id: str) -> Response:
    """Run now: a manual run (the page's token makes a double click one run), then its page."""
    tid = parse_id(trigger_id)
    token = request.form.get("token", "")
    try:
        with context.session() as session:
            run, created = triggers.run_now(
                session, tid, scope=context.scope(),
                request_key=f"console-{token}" if TOKEN.match(token) else None,
                now=context.now(),
            )  # fmt: skip
    except errors.Conflict as exc:
        flash(f"Cannot run now: {exc.message}.", "error")
        return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)
    if created:
        api_triggers.hand_off(run)
    return redirect(url_for("console.run_page", run_id=run.id), code=303)


def set_enabled(trigger_id: uuid.UUID, *, enabled: bool) -> None:
    """Pause or resume: the one call the pause and resume forms make (a pause note slots in
    here). Pausing cancels pending runs; resuming recomputes the next fire from now."""
    with context.session() as session:
        triggers.update(
            session, trigger_id, scope=context.scope(), changes={"enabled": enabled},
            if_match=None, now=context.now(),
        )  # fmt: skip


@bp.route("/triggers/<trigger_id>/pause", methods=["POST"])
def pause_trigger(trigger_id: str) -> Response:
    tid = parse_id(trigger_id)
    set_enabled(tid, enabled=False)
    flash("Trigger paused: it will not fire until resumed.", "success")
    return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)


@bp.route("/triggers/<trigger_id>/resume", methods=["POST"])
def resume_trigger(trigger_id: str) -> Response:
    tid = parse_id(trigger_id)
    set_enabled(tid, enabled=True)
    flash("Trigger resumed.", "success")
    return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)


@bp.route("/triggers/<trigger_id>/delete", methods=["GET", "POST"])
def delete_trigger(trigger_id: str) -> Any:
    """GET: the confirmation page. POST: delete and cancel pending runs (history stays)."""
    tid = parse_id(trigger_id)
    if request.method == "GET":
        with context.session() as session:
            trigger = triggers.get(session, tid, scope=context.scope()).trigger
        return render_template("console/delete.html", trigger=trigger)
    with context.session() as session:
        triggers.delete(session, tid, scope=context.scope(), if_match=None, now=context.now())
    flash("Trigger deleted; its pending runs were cancelled.", "success")
    return redirect(url_for("console.triggers_list"), code=303)
