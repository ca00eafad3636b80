"""Console pages for triggers: list, one trigger, create, edit, run now, pause, resume, delete.

Each view is an adapter over the same app.triggers functions and web.schemas the API uses;
the form only turns text into the API's JSON body (web.console.forms).
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, flash, jsonify, redirect, render_template, request, url_for

from app import errors, idempotency, triggers
from app.actions.registry import METHODS
from app.models import CATCHUP_POLICIES, OVERLAP_POLICIES, Trigger
from web import context, pagination
from web import schemas as s
from web import triggers as api_triggers
from web.console import chart, display, forms
from web.console.blueprint import bp
from web.errors import InvalidFields

PAGE_SIZE = 25
RUNS_PAGE_SIZE = 20
PREVIEW_COUNT = 10
STATES = {"enabled": True, "paused": False}
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CREATE_PATH = "/console/triggers/new"  # the idempotency record's "path", whatever the mount


def parse_id(value: str, what: str = "trigger") -> uuid.UUID:
    """A uuid from the URL; anything else is the same 404 as an unknown id."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise errors.NotFound(f"{what} not found")


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
        "description": s.describe(triggers.spec_of(trigger)),
        "next_local": next_local,
        "next_relative": display.relative(trigger.next_run_at, now),
        "last_run": last_run,
    }


@bp.route("/triggers/<trigger_id>")
def trigger_page(trigger_id: str) -> str:
    """Every field, the next fires with DST changes marked, run history and its chart."""
    tid = parse_id(trigger_id)
    before = pagination.decode(request.args.get("runs") or None)
    now = context.now()
    with context.session() as session:
        detail = triggers.get(session, tid, scope=context.scope())
        rows = triggers.list_runs(
            session, tid, scope=context.scope(), status=None, limit=RUNS_PAGE_SIZE + 1,
            before=before,
        )  # fmt: skip
    trigger = detail.trigger
    runs_page = pagination.page(rows, RUNS_PAGE_SIZE, lambda run: (run.created_at, run.id))
    spec = triggers.spec_of(trigger)
    fires = display.fire_rows(
        triggers.preview(spec, after=now, count=PREVIEW_COUNT), trigger.timezone
    )
    runs = runs_page["items"]
    points = [
        chart.Point(
            label=s.iso_utc(run.scheduled_for),
            lag=display.seconds_between(run.scheduled_for, run.started_at),
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
        chart=chart.svg(points),
        seconds_between=display.seconds_between,
        span=display.span,
        run_token=secrets.token_urlsafe(16),
    )


def _render_form(
    *,
    values: dict[str, str],
    problems: dict[str, str],
    trigger: Trigger | None = None,
    preview: dict | None = None,
    created: dict | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return render_template(
        "console/trigger_form.html",
        values=values,
        problems=problems,
        trigger=trigger,
        preview=preview,
        created=created,
        methods=METHODS,
        overlap_policies=OVERLAP_POLICIES,
        catchup_policies=CATCHUP_POLICIES,
    ), status


@bp.route("/triggers/new", methods=["GET"])
def new_trigger() -> Any:
    """The create form; its one-time token becomes the Idempotency-Key of the create.

    The token lives in the URL (a fresh one by redirect), not only in the page: the back
    button may fetch the page again (its cookie changed), and the form the browser restores
    must carry the token it was first shown with, so a resubmission replays.
    """
    token = request.args.get("token", "")
    if not TOKEN.match(token):
        return redirect(url_for("console.new_trigger", token=secrets.token_urlsafe(24)))
    with context.session() as session:
        used = idempotency.stored_response(
            session, tenant_id=context.principal().tenant_id, key=f"console:{token}",
            request_hash=_token_hash(token),
        )  # fmt: skip
    values = {**forms.DEFAULTS, "form_token": token}
    created = used.body if used is not None and isinstance(used.body, dict) else None
    return _render_form(values=values, problems={}, created=created)


def _token_hash(token: str) -> str:
    return idempotency.request_hash("POST", CREATE_PATH, {"form_token": token})


@bp.route("/triggers/new", methods=["POST"])
def create_trigger() -> Any:
    """Create from the form, exactly once per form token (double click, resubmit, back).

    1. A token already used by a completed create: go to that trigger (nothing new).
    2. Validate through the API's schema; errors re-render the form with the same token.
    3. In one transaction: claim the token (app.idempotency), create, store the response.
       A concurrent submission of the same token waits on the claim, then replays.
    """
    form = request.form.to_dict()
    token = form.get("form_token", "")
    if not TOKEN.match(token):
        raise InvalidFields({"form_token": "is missing; reload the form"})
    key, tenant = f"console:{token}", context.principal().tenant_id
    digest = _token_hash(token)
    with context.session() as session:
        replay = idempotency.stored_response(
            session, tenant_id=tenant, key=key, request_hash=digest
        )
    if replay is not None:
        return _to_created(replay.body, replayed=True)
    if form.get("intent") == "preview":
        return _render_form(values=form, problems={}, preview=_preview(form))
    values, problems = forms.validate(form, creating=True)
    if values is None:
        return _render_form(values=form, problems=problems, preview=_preview(form), status=422)
    try:
        with context.session() as session:
            claim = idempotency.claim(session, tenant_id=tenant, key=key, request_hash=digest)
            if claim.is_replay:
                body = claim.body
            else:
                trigger = triggers.create(session, tenant_id=tenant, values=values,
                                          now=context.now())  # fmt: skip
                body = s.TriggerOut().dump(triggers.TriggerDetail(trigger, None))
                idempotency.complete(session, claim, status=201, body=body)
    except triggers.InvalidTrigger as exc:
        return _render_form(values=form, problems=exc.fields, status=422)
    except errors.Conflict as exc:
        return _render_form(values=form, problems={"body": exc.message}, status=409)
    return _to_created(body, replayed=claim.is_replay)


def _to_created(body: Any, *, replayed: bool) -> Response:
    if replayed:
        flash("This form was already submitted: here is the trigger it created.", "info")
    else:
        flash(f"Trigger {body['name']!r} created.", "success")
    return redirect(url_for("console.trigger_page", trigger_id=body["id"]), code=303)


@bp.route("/triggers/<trigger_id>/edit", methods=["GET", "POST"])
def edit_trigger(trigger_id: str) -> Any:
    """Edit every field; the version the form was opened at guards against lost updates."""
    tid = parse_id(trigger_id)
    with context.session() as session:
        trigger = triggers.get(session, tid, scope=context.scope()).trigger
    if request.method == "GET":
        values = {**forms.form_of(trigger), "version": str(trigger.version)}
        return _render_form(values=values, problems={}, trigger=trigger)
    form = request.form.to_dict()
    if form.get("intent") == "preview":
        return _render_form(values=form, problems={}, trigger=trigger, preview=_preview(form))
    changes, problems = forms.validate(form, creating=False)
    if changes is None:
        return _render_form(values=form, problems=problems, trigger=trigger,
                            preview=_preview(form), status=422)  # fmt: skip
    version = form.get("version", "")
    try:
        with context.session() as session:
            triggers.update(
                session, tid, scope=context.scope(), changes=changes,
                if_match=int(version) if version.isdigit() and len(version) < 10 else None,
                now=context.now(),
            )  # fmt: skip
    except triggers.InvalidTrigger as exc:
        return _render_form(values=form, problems=exc.fields, trigger=trigger, status=422)
    except errors.PreconditionFailed:
        message = "Someone changed this trigger since you opened the form; reload it."
        return _render_form(values=form, problems={"body": message}, trigger=trigger, status=412)
    flash("Trigger saved.", "success")
    return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)


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


@bp.route("/preview", methods=["POST"])
def preview() -> tuple[Response, int]:
    """The live preview of an unsaved schedule for the form's script (session + CSRF, where
    /api/v1/schedules/preview needs a bearer key). Same schema and code as that endpoint."""
    result = _preview(request.form.to_dict())
    return jsonify(result), 422 if "errors" in result else 200


def _preview(form: dict[str, str]) -> dict[str, Any]:
    """{"description", "fires": [{"utc", "local", "change"}]} or {"errors": {field: message}}."""
    body: dict[str, Any] = {"timezone": form.get("timezone", "").strip() or "UTC"}
    if form.get("schedule_kind") == "once":
        body["run_at"] = form.get("run_at", "").strip()
    else:
        body["cron"] = form.get("cron", "").strip()
    for name in ("start_at", "end_at"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    if any("\x00" in str(value) for value in body.values()):
        return {"errors": {"body": "must not contain NUL characters"}}
    values, problems = forms.load(s.PreviewIn(), body)
    if values is None:
        return {"errors": problems}
    spec = triggers.spec_of(values)
    fires = triggers.preview(spec, after=context.now(), count=PREVIEW_COUNT)
    return {
        "description": s.describe(spec),
        "fires": [
            {"utc": s.iso_utc(row.utc), "local": row.local.isoformat(), "change": row.change}
            for row in display.fire_rows(fires, spec.timezone)
        ],
    }
