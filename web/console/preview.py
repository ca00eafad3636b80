"""The console's live preview of an unsaved schedule: description and next fires.

The form's script posts here with the session and CSRF token (the API's
/api/v1/schedules/preview needs a bearer key the browser does not have); the Preview button
renders the same result without JavaScript. Same schema (PreviewIn) and code as the API.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from app import triggers
from web import context
from web import schemas as s
from web.console import display, forms
from web.console.blueprint import bp

PREVIEW_COUNT = 10


@bp.route("/preview", methods=["POST"])
def preview() -> tuple[Response, int]:
    """The live preview of an unsaved schedule for the form's script (session + CSRF, where
    /api/v1/schedules/preview needs a bearer key). Same schema and code as that endpoint."""
    result = of_form(request.form.to_dict())
    return jsonify(result), 422 if "errors" in result else 200


def of_form(form: dict[str, str]) -> dict[str, Any]:
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
