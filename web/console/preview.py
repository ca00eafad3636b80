"""The console's live preview of an unsaved schedule: description and next fires.

The form's script posts here with the session and CSRF token (the API's
/api/v1/schedules/preview needs a bearer key the browser does not have); the Preview button
renders the same result without JavaScript. Same schema (PreviewIn) and code as the API.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify, request

from app import schedule, triggers
from web import context
from web import schemas as s
from web.console import display, forms
from web.console.blueprint import bp

PREVIEW_COUNT = 10


@bp.route("/preview", methods=["POST"])
def preview() -> tuple[Response, int]:
    """The live preview of an unsaved schedule for the form's script (session + CSRF, where
    /api/v1/schedules/preview needs a bearer key). Same schema and code as that endpoint."""
    form = request.form.to_dict()
    result = of_form(form, trigger_id=_uuid_or_none(form.get("trigger_id", "")))
    return jsonify(result), 422 if "errors" in result else 200


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def of_form(form: dict[str, str], *, trigger_id: uuid.UUID | None = None) -> dict[str, Any]:
    """{"description", "fires": [{"utc", "local", "change"[, "jittered_utc",
    "jittered_local"]}]} or {"errors": {field: message}}. With jitter, each fire carries the
    instant it is due, drawn for `trigger_id` (an edited trigger) or, like the API's preview,
    for a trigger with no id yet."""
    body: dict[str, Any] = {"timezone": form.get("timezone", "").strip() or "UTC"}
    body.update({k: v for k, v in forms.schedule_fields(form).items() if v is not None})
    for name in ("start_at", "end_at"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    jitter = form.get("jitter_seconds", "").strip()
    if jitter and jitter != "0" and form.get("schedule_kind") != "once":
        body["jitter_seconds"] = int(jitter) if forms.INTEGER.match(jitter) else jitter
    if any("\x00" in str(value) for value in body.values()):
        return {"errors": {"body": "must not contain NUL characters"}}
    values, problems = forms.load(s.PreviewIn(), body)
    if values is None:
        return {"errors": problems}
    spec = schedule.TriggerSpec.of({**values, "id": trigger_id})
    fires = triggers.preview(spec, after=context.now(), count=PREVIEW_COUNT)
    due = (lambda fire: schedule.due_at(spec, fire)) if spec.jitter_seconds else None
    items = []
    for row in display.fire_rows(fires, spec.timezone, due=due):
        item = {
            "utc": schedule.iso_utc(row.utc),
            "local": row.local.isoformat(),
            "change": row.change,
        }
        if row.due_local is not None:
            item.update(jittered_utc=schedule.iso_utc(row.due_local),
                        jittered_local=row.due_local.isoformat())  # fmt: skip
        items.append(item)
    return {"description": schedule.describe(spec), "fires": items}
