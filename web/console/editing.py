"""Console create and edit forms for triggers.

The form only turns text into the API's JSON body (web.console.forms); the API's schemas and
app.triggers decide what is valid. The create form's one-time token is its Idempotency-Key
(app.idempotency), so one form makes at most one trigger.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for

from app import errors, idempotency, triggers
from app.actions.registry import METHODS
from app.models import CATCHUP_POLICIES, OVERLAP_POLICIES, Trigger
from web import context
from web import schemas as s
from web.console import forms, preview
from web.console.blueprint import TOKEN, bp, parse_id
from web.errors import InvalidFields

CREATE_PATH = "/console/triggers/new"  # the idempotency record's "path", whatever the mount


def _render_form(
    *,
    values: dict[str, str],
    problems: dict[str, str],
    trigger: Trigger | None = None,
    schedule: dict | None = None,
    created: dict | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return render_template(
        "console/trigger_form.html",
        values=values,
        problems=problems,
        trigger=trigger,
        preview=schedule,
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
        return _render_form(values=form, problems={}, schedule=preview.of_form(form))
    values, problems = forms.validate(form, creating=True)
    if values is None:
        return _render_form(
            values=form, problems=problems, schedule=preview.of_form(form), status=422
        )
    try:
        with context.session() as session:
            claim = idempotency.claim(session, tenant_id=tenant, key=key, request_hash=digest)
            if claim.is_replay:
                body = claim.body
            else:
                trigger = context.services().create_trigger(
                    session, tenant_id=tenant, values=values, by=context.actor()
                )
                body = s.TriggerOut().dump(triggers.TriggerDetail(trigger, None))
                idempotency.complete(session, claim, status=201, body=body)
    except errors.InvalidTrigger as exc:
        return _render_form(values=form, problems=exc.fields, status=422)
    except errors.PermissionDenied as exc:
        return _render_form(values=form, problems=exc.fields, status=403)
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
        return _render_form(
            values=form,
            problems={},
            trigger=trigger,
            schedule=preview.of_form(form, trigger_id=tid),
        )
    changes, problems = forms.validate(form, creating=False)
    if changes is None:
        return _render_form(values=form, problems=problems, trigger=trigger,
                            schedule=preview.of_form(form, trigger_id=tid),
                            status=422)  # fmt: skip
    version = form.get("version", "")
    try:
        with context.session() as session:
            triggers.update(
                session, tid, scope=context.scope(), changes=changes,
                if_match=int(version) if version.isdigit() and len(version) < 10 else None,
                now=context.now(), by=context.actor(),
            )  # fmt: skip
    except errors.InvalidTrigger as exc:
        return _render_form(values=form, problems=exc.fields, trigger=trigger, status=422)
    except errors.PermissionDenied as exc:
        return _render_form(values=form, problems=exc.fields, trigger=trigger, status=403)
    except errors.PreconditionFailed:
        message = "Someone changed this trigger since you opened the form; reload it."
        return _render_form(values=form, problems={"body": message}, trigger=trigger, status=412)
    flash("Trigger saved.", "success")
    return redirect(url_for("console.trigger_page", trigger_id=tid), code=303)
