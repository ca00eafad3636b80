"""The trigger form: HTML form fields in, the API's JSON body out, then the API's schemas.

Inputs are named by the API's field paths (`cron`, `action.url`, `payload`), so an error from
the schemas (web.schemas), the action registry or app.triggers lands next to its field with
the same name and message the API's 422 gives. This module only turns text into JSON; every
rule lives where the API keeps it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from werkzeug.exceptions import RequestEntityTooLarge

from app import schedule
from app.models import Trigger
from web import errors as web_errors
from web import json_input
from web import schemas as s

MAX_DEPTH = 32  # docs/design.md section 15: deeper JSON is refused
INTEGER = re.compile(r"^-?\d{1,12}$")
INT_FIELDS = (
    "catchup_window_seconds",
    "max_attempts",
    "retry_backoff_seconds",
    "timeout_seconds",
    "jitter_seconds",
)
TEXT_FIELDS = ("name", "description", "timezone", "overlap_policy", "catchup_policy")
DEFAULTS = {
    "schedule_kind": "cron",
    "cron": "",
    "timezone": "UTC",
    "action.type": "task",
    "action.name": "echo",
    "action.method": "POST",
    "payload": "{}",
    "enabled": "on",
    "overlap_policy": "allow",
    "catchup_policy": "latest",
    "catchup_window_seconds": "3600",
    "max_attempts": "3",
    "retry_backoff_seconds": "10",
    "timeout_seconds": "60",
    "jitter_seconds": "0",
}
SCHEDULE_KINDS = ("cron", "once", "interval")  # anything else is read as cron


class JsonProblem(ValueError):
    """Text that is not a JSON object the API would accept."""


def parse_json_object(text: str) -> dict[str, Any]:
    """A JSON object from form text; JsonProblem says why not (bad JSON, NaN, 1e999, too
    deep, NUL).

    The API's strict reader (web.json_input) parses it, so the form refuses what the API
    refuses: Python's own parser reads `1e999` as infinity, which jsonb cannot store (a 500).
    """
    try:
        value = json_input.loads(text)
    except json_input.InvalidJson as exc:
        raise JsonProblem(_field_message(str(exc))) from None
    if not isinstance(value, dict):
        raise JsonProblem("must be a JSON object")
    _check_json(value, depth=1)
    return value


def _field_message(body_message: str) -> str:
    # The reader speaks of "the request body"; here the text is one field's.
    message = body_message.rstrip(".")
    if message.startswith("The request body "):
        return message[len("The request body ") :]
    return "the " + message[4:] if message.startswith("The ") else message


def _check_json(value: Any, *, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise JsonProblem(f"is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_json(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth=depth + 1)


def _check_text(text: str) -> None:
    # PostgreSQL text and jsonb cannot hold NUL, and a lone surrogate cannot be encoded.
    if "\x00" in text:
        raise JsonProblem("must not contain NUL characters")
    if any("\ud800" <= char <= "\udfff" for char in text):
        raise JsonProblem("must not contain lone surrogates")


def body_from_form(form: Mapping[str, str], *, creating: bool) -> tuple[dict, dict[str, str]]:
    """The API body a submitted trigger form stands for, and the fields whose text could not
    become JSON (keyed by the API's field paths)."""
    problems: dict[str, str] = {}
    for name, value in form.items():
        if "\x00" in value:
            problems[name] = "must not contain NUL characters"
    text = {k: v for k, v in form.items() if k not in problems}
    body: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        if name in text:
            body[name] = text[name].strip() if name != "description" else text[name]
    body.update(schedule_fields(text))
    for name in ("start_at", "end_at"):
        body[name] = text.get(name, "").strip() or None
    if creating:
        body["enabled"] = "enabled" in text
    for name in INT_FIELDS:
        raw = text.get(name, "").strip()
        if raw:
            # A number when it looks like one; the schema names anything else.
            body[name] = int(raw) if INTEGER.match(raw) else raw
    body["action"] = _action(text, problems)
    if text.get("run_as"):  # left empty: the key's own principal (create) or unchanged (edit)
        body["run_as"] = text["run_as"]
    raw_payload = text.get("payload", "").strip()
    if "payload" not in problems:
        try:
            body["payload"] = parse_json_object(raw_payload) if raw_payload else {}
        except JsonProblem as exc:
            problems["payload"] = str(exc)
    return body, problems


def schedule_fields(text: Mapping[str, str]) -> dict[str, Any]:
    """The schedule the form's kind selects: that kind's fields set, the others cleared
    (null), as the API's body switches kinds. An interval without an anchor counts from
    the Unix epoch; a number-like interval becomes a number, anything else the schema names."""
    kind = text.get("schedule_kind", "cron")
    body: dict[str, Any] = {"cron": None, "run_at": None, "interval_seconds": None,
                            "anchor_at": None}  # fmt: skip
    if kind == "once":
        body["run_at"] = text.get("run_at", "").strip()
    elif kind == "interval":
        raw = text.get("interval_seconds", "").strip()
        body["interval_seconds"] = int(raw) if INTEGER.match(raw) else raw
        body["anchor_at"] = text.get("anchor_at", "").strip() or None
    else:
        body["cron"] = text.get("cron", "").strip()
    return body


def _action(text: Mapping[str, str], problems: dict[str, str]) -> dict[str, Any]:
    kind = text.get("action.type", "task")
    if kind != "webhook":
        return {"type": kind, "name": text.get("action.name", "").strip()}
    action: dict[str, Any] = {
        "type": "webhook",
        "url": text.get("action.url", "").strip(),
        "method": text.get("action.method", "POST").strip() or "POST",
    }
    raw = text.get("action.headers", "").strip()
    if raw and "action.headers" not in problems:
        try:
            action["headers"] = parse_json_object(raw)
        except JsonProblem as exc:
            problems["action.headers"] = str(exc)
    return action


def load(schema: ma.Schema, body: dict) -> tuple[dict | None, dict[str, str]]:
    """Validate `body` with the API's schema: (values, {}) or (None, {field: message})."""
    try:
        return schema.load(body), {}
    except ma.ValidationError as exc:
        return None, web_errors.flatten(exc.messages)
    except RequestEntityTooLarge as exc:
        return None, {"payload": exc.description or "is too large"}


def validate(form: Mapping[str, str], *, creating: bool) -> tuple[dict | None, dict[str, str]]:
    """A submitted form as validated trigger values, or None and every problem by field."""
    body, problems = body_from_form(form, creating=creating)
    if problems:
        return None, problems
    schema = s.TriggerCreate() if creating else s.TriggerPatch()
    return load(schema, body)


def form_of(trigger: Trigger) -> dict[str, str]:
    """A stored trigger as the edit form's initial text."""
    action = trigger.action or {}
    values = {
        "name": trigger.name,
        "description": trigger.description or "",
        "schedule_kind": (
            "once"
            if trigger.run_at is not None
            else "interval"
            if trigger.interval_seconds is not None
            else "cron"
        ),
        "cron": trigger.cron or "",
        "interval_seconds": str(trigger.interval_seconds or ""),
        "anchor_at": schedule.iso_utc(trigger.anchor_at) if trigger.anchor_at else "",
        "timezone": trigger.timezone,
        "run_at": schedule.iso_utc(trigger.run_at) if trigger.run_at else "",
        "start_at": schedule.iso_utc(trigger.start_at) if trigger.start_at else "",
        "end_at": schedule.iso_utc(trigger.end_at) if trigger.end_at else "",
        "action.type": action.get("type", "task"),
        "action.name": action.get("name", ""),
        "action.url": action.get("url", ""),
        "action.method": action.get("method", "POST"),
        "action.headers": json.dumps(action["headers"], indent=2) if action.get("headers") else "",
        "payload": json.dumps(trigger.payload or {}, indent=2),
        "overlap_policy": trigger.overlap_policy,
        "catchup_policy": trigger.catchup_policy,
        "run_as": trigger.run_as,
    }
    for name in INT_FIELDS:
        values[name] = str(getattr(trigger, name))
    return values
