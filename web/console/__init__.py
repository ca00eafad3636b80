"""The console (docs/design.md section 14): server-rendered pages for people under /console.

`init_app` sets up the signed session cookie, CSRF protection for every form (the JSON API
blueprints are exempt: they authenticate with bearer keys, which a browser never sends on
its own), the blueprint and its HTML error pages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Flask, render_template
from flask_wtf import csrf
from werkzeug.exceptions import HTTPException, NotFound

from app import errors
from web.console import (  # noqa: F401 - importing them adds their routes
    actions,
    editing,
    preview,
    runs,
    scheduler,
    session,
    triggers,
    webhook_secrets,
)
from web.console.blueprint import bp
from web.errors import InvalidFields

logger = logging.getLogger(__name__)

TITLES = {
    400: "Bad request",
    401: "Sign in required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Invalid input",
    500: "Something went wrong",
}


def init_app(
    app: Flask, *, secret_key: str, cookie_secure: bool, exempt: Iterable[Blueprint]
) -> None:
    """Register the console on `app`; `exempt` are the blueprints CSRF must not guard;
    `cookie_secure` makes the session cookie Secure even over plain HTTP."""
    session.configure(app, secret_key, cookie_secure=cookie_secure)
    if not secret_key:
        logger.warning(
            "SECRET_KEY is not set: console sessions use a per-process key and work only "
            "with one web process",
            extra={"event": "console_secret_key_missing"},
        )
    app.config.update(WTF_CSRF_TIME_LIMIT=None)  # the token lives as long as the session
    protect = csrf.CSRFProtect(app)
    for blueprint in exempt:
        protect.exempt(blueprint)
    app.register_blueprint(bp)


def _page(status: int, message: str) -> tuple[str, int]:
    title = TITLES.get(status, "Error")
    return render_template("console/error.html", status=status, title=title,
                           message=message), status  # fmt: skip


@bp.route("/<path:unknown>", methods=["GET", "POST"])
def unknown_page(unknown: str) -> str:
    """Any other /console path: the console's 404 page rather than the API's JSON."""
    raise NotFound()


@bp.errorhandler(csrf.CSRFError)
def csrf_failed(exc: csrf.CSRFError) -> tuple[str, int]:
    logger.info("csrf refused", extra={"event": "console_csrf_refused"})
    return _page(400, "This form expired or was not sent from the console. Reload the page "
                 "and try again.")  # fmt: skip


@bp.errorhandler(errors.NotFound)
def not_found(exc: errors.NotFound) -> tuple[str, int]:
    return _page(404, exc.message.capitalize() + ".")


@bp.errorhandler(InvalidFields)
def invalid_fields(exc: InvalidFields) -> tuple[str, int]:
    fields = "; ".join(f"{name} {message}" for name, message in exc.fields.items())
    return _page(422, f"Invalid input: {fields}.")


@bp.errorhandler(errors.PermissionDenied)
def forbidden(exc: errors.PermissionDenied) -> tuple[str, int]:
    return _page(403, "Your key may not do this: " + "; ".join(exc.fields.values()) + ".")


@bp.errorhandler(errors.Conflict)
def conflict(exc: errors.Conflict) -> tuple[str, int]:
    return _page(409, exc.message.capitalize() + ".")


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Any:
    status = exc.code or 500
    if status >= 500:
        return unexpected(exc)
    if status == 404:
        return _page(404, "Not found.")
    return _page(status, exc.description or TITLES.get(status, "Request failed."))


@bp.errorhandler(Exception)
def unexpected(exc: Exception) -> tuple[str, int]:
    # Details to the log only: an error page that echoes an exception leaks secrets.
    logger.error("unhandled error", exc_info=exc, extra={"event": "unhandled_error"})
    return _page(500, "Internal error. It has been logged.")
