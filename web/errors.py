"""One error envelope for every failure: `{"error": {"code", "message", "fields"?}}`.

Werkzeug's HTTP errors, webargs' parse errors, the domain's exceptions and anything
unexpected all leave through :func:`envelope`. An unexpected exception is logged with its
traceback and answered with a generic 500 that echoes nothing (docs/design.md section 10: an error
that echoes an exception leaks connection strings).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Flask, Response, jsonify
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, HTTPException

from app import errors
from web import json_input, ratelimit

logger = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
MESSAGES = {
    401: "A valid API key is required.",
    404: "Not found.",
    413: "The request body is too large.",
    500: "Internal server error.",
}
# Where webargs found the bad input; the client only needs the field names.
LOCATIONS = ("json", "query", "querystring", "headers", "view_args", "path")


class InvalidFields(Exception):
    """Input the schemas could not catch (a bad cursor, a bad If-Match): a 422 naming fields."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__(", ".join(fields))
        self.fields = dict(fields)


class ErrorDetail(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Machine-readable code"})
    message = ma.fields.String(required=True, metadata={"description": "Human-readable text"})
    fields = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "Invalid fields (dotted paths) and what is wrong with each"},
    )


class ErrorEnvelope(ma.Schema):
    error = ma.fields.Nested(ErrorDetail, required=True)


def envelope(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The JSON error response every failure uses."""
    body: dict[str, Any] = {
        "code": code or CODES.get(status, "error"),
        "message": message or MESSAGES.get(status, "Request failed."),
    }
    if fields:
        body["fields"] = dict(fields)
    response = jsonify({"error": body})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    response.headers.update(headers or {})
    return response


def flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    """Marshmallow/webargs messages as {"dotted.path": "message; message"}."""
    if isinstance(messages, Mapping):
        flat: dict[str, str] = {}
        for key, value in messages.items():
            key = str(key)
            if not prefix and key in LOCATIONS:
                flat.update(flatten(value, prefix))
                continue
            name = "body" if key == "_schema" and not prefix else key
            flat.update(flatten(value, f"{prefix}.{name}" if prefix else name))
        return flat
    if isinstance(messages, list | tuple):
        if all(isinstance(item, str) for item in messages):
            return {prefix or "body": "; ".join(messages)}
        flat = {}
        for item in messages:
            flat.update(flatten(item, prefix))
        return flat
    return {prefix or "body": str(messages)}


def validation_failed(fields: Mapping[str, str]) -> Response:
    names = ", ".join(sorted(fields))
    return envelope(422, f"Invalid fields: {names}.", fields=fields)


class Api(flask_smorest.Api):
    """flask-smorest's Api with our envelope for its errors and in its OpenAPI document."""

    ERROR_SCHEMA = ErrorEnvelope

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        headers = {k: v for k, v in error.get_headers() if k.lower() in ("allow", "retry-after")}
        if status == 422:
            return validation_failed(flatten(data.get("messages", {})))
        if status == 400:
            return envelope(400, data.get("message") or _describe(error))
        if status >= 500:
            # Flask wraps an unhandled exception into InternalServerError: log the original.
            original = getattr(error, "original_exception", None)
            logger.error(
                "unhandled error",
                exc_info=original or error,
                extra={"event": "unhandled_error"},
            )
            return envelope(status)
        if status == 429:  # Flask-Limiter's description is the limit, e.g. "1200 per 1 minute"
            scope = getattr(getattr(error, "limit", None), "scope", None)
            message = ratelimit.message(scope, error.description or "")
            return envelope(429, message, headers=headers)
        custom = error.description if error.description != type(error).description else None
        message = data.get("message") or custom or MESSAGES.get(status) or _describe(error)
        return envelope(status, message, headers=headers)


def _describe(error: HTTPException) -> str:
    text = (error.description or error.name or "").strip()
    return text if len(text) < 300 else error.name


class JsonObjectParser(FlaskParser):
    """Reads input strictly: a body must be present, be JSON (finite numbers, at most 32
    levels deep: web.json_input) and be an object (else 400); a string PostgreSQL cannot
    store (NUL, a lone surrogate), in a body or a query parameter, is a 422 naming its
    field; unknown query parameters are rejected like unknown body fields (422)."""

    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }

    def load_json(self, req, schema: ma.Schema) -> Any:  # type: ignore[override]
        raw = req.get_data(cache=True)
        if not raw.strip():
            raise BadRequest("A JSON object request body is required.")
        if not req.is_json:
            raise BadRequest("The request body must be JSON (Content-Type: application/json).")
        try:
            body = json_input.loads(raw)
        except json_input.InvalidJson as exc:
            raise BadRequest(str(exc))
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        bad = json_input.bad_strings(body)
        if bad:
            raise InvalidFields(bad)
        return body

    def load_querystring(self, req, schema: ma.Schema) -> Any:  # type: ignore[override]
        query = super().load_querystring(req, schema)
        bad: dict[str, str] = {}
        for name, value in req.args.items(multi=True):
            if json_input.unstorable(name):  # named by where it is: the name is the problem
                bad["query"] = f"parameter names {json_input.UNSTORABLE_MESSAGE}"
            elif json_input.unstorable(value):
                bad[name] = json_input.UNSTORABLE_MESSAGE
        if bad:
            raise InvalidFields(bad)
        return query


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the strict JSON parser."""

    ARGUMENTS_PARSER = JsonObjectParser()


def register(app: Flask) -> None:
    """Map the domain's exceptions and anything unexpected to the envelope."""

    @app.errorhandler(errors.InvalidTrigger)
    @app.errorhandler(InvalidFields)
    def invalid_fields(exc: errors.InvalidTrigger | InvalidFields) -> Response:
        return validation_failed(exc.fields)

    @app.errorhandler(errors.ScheduleError)
    def invalid_schedule(exc: errors.ScheduleError) -> Response:
        return validation_failed({exc.field: exc.message})

    @app.errorhandler(errors.PermissionDenied)
    def permission_denied(exc: errors.PermissionDenied) -> Response:
        names = ", ".join(sorted(exc.fields))
        return envelope(403, f"Not allowed for this key: {names}.", fields=exc.fields)

    @app.errorhandler(errors.NotFound)
    def not_found(exc: errors.NotFound) -> Response:
        return envelope(404, exc.message)

    @app.errorhandler(errors.Conflict)
    def conflict(exc: errors.Conflict) -> Response:
        return envelope(409, exc.message)

    @app.errorhandler(errors.PreconditionFailed)
    def precondition_failed(exc: errors.PreconditionFailed) -> Response:
        return envelope(412, exc.message)

    @app.errorhandler(OverflowError)
    def out_of_range(exc: OverflowError) -> Response:
        # Only dates overflow here: an accepted instant near year 1 or 9998 whose schedule
        # reaches past datetime's range (a window before 0001-01-01, fires after 9999).
        logger.warning("date overflow", exc_info=exc, extra={"event": "date_overflow"})
        return validation_failed(
            {"body": "the schedule reaches a date outside years 1-9999; use a nearer date"}
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.error("unhandled error", exc_info=exc, extra={"event": "unhandled_error"})
        return envelope(500)
