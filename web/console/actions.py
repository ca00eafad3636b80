"""Console actions on a trigger: run now, pause (with a note), resume, backfill a range,
delete (with a confirmation page).

Each is a form POST (CSRF-protected) that calls one app.triggers function and redirects, so
they work without JavaScript and a reload never repeats them.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for

from app import errors, triggers
from web import context
from web import schemas as s
from web.console import forms
from web.console import triggers as pages
from web.console.blueprint import TOKEN, bp, parse_id


@bp.route("/triggers/<trigger_id>/run", methods=["POST"])
def run_trigger_now(trigger_id: str) -> Response:
    """Run now: a manual run (the page's token makes a double click one run), then its page."""
    tid = parse_id(trigger_id)
    token = request.form.get("token", "")
    try:
        with context.session() as session:
            run, created = context.services().run_now(
                session, tid, scope=context.scope(),
                request_key=f"console-{token}" if TOKEN.match(token) else None,
                by=context.actor(),
            )  # fmt: skip
    except (errors.Conflict, errors.PermissionDenied) as exc:
        flash(f"Cannot run now: {_reason(exc)}.", "error")
        return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)
    if created:
        context.services().hand_off(run)
    return redirect(url_for("console.run_page", run_id=run.id), code=303)


def set_enabled(trigger_id: uuid.UUID, *, enabled: bool, note: str | None = None) -> None:
    """Pause (with an optional note) or resume, as the API's PATCH does: the key's prefix is
    recorded as who paused it; pausing cancels pending runs; resuming clears the note and
    recomputes the next fire from now. A bad note raises InvalidTrigger naming paused_note."""
    changes: dict[str, Any] = {"enabled": enabled}
    if not enabled:
        changes["paused_note"] = note
    with context.session() as session:
        triggers.update(
            session, trigger_id, scope=context.scope(), changes=changes, if_match=None,
            now=context.now(), by=context.actor(), actor=context.principal().label,
        )  # fmt: skip


@bp.route("/triggers/<trigger_id>/pause", methods=["POST"])
def pause_trigger(trigger_id: str) -> Any:
    """Pause with the note typed on the trigger page (validated by the API's schema)."""
    tid = parse_id(trigger_id)
    text = request.form.get("paused_note", "").strip()
    values, problems = forms.load(s.TriggerPatch(), {"paused_note": text or None})
    if "\x00" in text:
        values, problems = None, {"paused_note": "must not contain NUL characters"}
    if values is None:
        return pages.render(tid, problems=problems, values={"paused_note": text}, status=422)
    try:
        set_enabled(tid, enabled=False, note=values["paused_note"])
    except errors.InvalidTrigger as exc:
        return pages.render(tid, problems=exc.fields, values={"paused_note": text}, status=422)
    except errors.PermissionDenied as exc:
        return pages.render(tid, problems=exc.fields, values={"paused_note": text}, status=403)
    flash("Trigger paused: it will not fire until resumed.", "success")
    return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)


@bp.route("/triggers/<trigger_id>/resume", methods=["POST"])
def resume_trigger(trigger_id: str) -> Response:
    tid = parse_id(trigger_id)
    try:
        set_enabled(tid, enabled=True)
    except errors.PermissionDenied as exc:
        flash(f"Cannot resume: {_reason(exc)}.", "error")
        return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)
    flash("Trigger resumed.", "success")
    return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)


@bp.route("/triggers/<trigger_id>/backfill", methods=["POST"])
def backfill_trigger(trigger_id: str) -> Any:
    """Backfill [start, end): the API's schema (BackfillIn) and app.backfill, then the same
    hand-off as the API. Errors land next to `start` and `end`, named as the API's 422."""
    tid = parse_id(trigger_id)
    text = {name: request.form.get(name, "").strip() for name in ("start", "end")}
    problems = {name: "must not contain NUL characters" for name, v in text.items() if "\x00" in v}
    values = None
    if not problems:
        values, problems = forms.load(s.BackfillIn(), {k: v for k, v in text.items() if v})
    if values is None:
        return pages.render(tid, problems=problems, values=text, status=422)
    try:
        with context.session() as session:
            result = context.services().backfill(
                session, tid, scope=context.scope(), start=values["start"], end=values["end"],
                by=context.actor(),
            )  # fmt: skip
    except errors.InvalidTrigger as exc:
        return pages.render(tid, problems=exc.fields, values=text, status=422)
    except (errors.Conflict, errors.PermissionDenied) as exc:
        flash(f"Cannot backfill: {_reason(exc)}.", "error")
        return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)
    if result.runs:
        context.services().hand_off(*result.runs)
    flash(
        f"Backfill: {result.created} run{'' if result.created == 1 else 's'} created, "
        f"{result.existing} fire{'' if result.existing == 1 else 's'} already had a run.",
        "success",
    )
    return redirect(url_for("console.trigger_page", trigger_id=tid) + "#runs", code=303)


@bp.route("/triggers/<trigger_id>/delete", methods=["GET", "POST"])
def delete_trigger(trigger_id: str) -> Any:
    """GET: the confirmation page. POST: delete and cancel pending runs (history stays)."""
    tid = parse_id(trigger_id)
    if request.method == "GET":
        with context.session() as session:
            trigger = triggers.get(session, tid, scope=context.scope()).trigger
        return render_template("console/delete.html", trigger=trigger)
    try:
        with context.session() as session:
            triggers.delete(
                session, tid, scope=context.scope(), if_match=None, now=context.now(),
                by=context.actor(),
            )  # fmt: skip
    except errors.PermissionDenied as exc:
        flash(f"Cannot delete: {_reason(exc)}.", "error")
        return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)
    flash("Trigger deleted; its pending runs were cancelled.", "success")
    return redirect(url_for("console.triggers_list"), code=303)


def _reason(exc: errors.SchedulerError) -> str:
    """A refusal as one line: a member's write to a trigger of another principal says so."""
    if isinstance(exc, errors.PermissionDenied):
        return "this trigger runs as another principal, and your key is a member key"
    return exc.message
