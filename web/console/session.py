"""Console sign-in: an API key pasted once, then a signed session cookie holding the key's id.

The cookie is signed (itsdangerous, SECRET_KEY), HttpOnly, SameSite=Lax and Secure when the
request came over HTTPS. It holds the key's id, display prefix and console epoch, never the
key. Every request re-reads the key (app.keys), so a revoked key ends its sessions at once;
signing out moves the key's console epoch, so a copy of the cookie is signed out too (every
console session of that key ends: the cookie alone cannot be forgotten by the server); and
a session older than SESSION_LIFETIME is refused with a page that says so.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Response, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from app import keys, logs
from web import context, transport
from web.console.blueprint import bp

logger = logging.getLogger(__name__)

SESSION_LIFETIME = timedelta(hours=12)
PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.static"})
REASONS = {
    "expired": "Your session expired. Sign in again.",
    "revoked": "The key of this session was revoked. Sign in with another key.",
    "required": "Sign in to see this page.",
    "signed_out": "You are signed out.",
}


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session: Secure when SESSION_COOKIE_SECURE says so (the default
    outside development), and whenever the request itself came over HTTPS (web.transport)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or transport.came_over_https())


def configure(app: Flask, secret_key: str, *, cookie_secure: bool) -> None:
    """Session cookie settings; `secret_key` empty means a random per-process key."""
    app.secret_key = secret_key or uuid.uuid4().hex + uuid.uuid4().hex
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_SECURE=cookie_secure,
        SESSION_COOKIE_NAME="console_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/console",
    )


def start(principal: keys.Principal, *, epoch: int, now: datetime) -> None:
    """Begin a session for `principal` (a fresh cookie: nothing of the anonymous one is kept)."""
    session.clear()
    session["key_id"] = str(principal.key_id)
    session["prefix"] = principal.prefix
    session["epoch"] = epoch
    session["signed_in_at"] = now.timestamp()


def end() -> None:
    session.clear()


@bp.before_request
def require_session() -> Response | None:
    """Load the signed-in principal into `g.principal` (as web.auth does for the API), or send
    the visitor to the sign-in page saying why."""
    g.principal = None
    if "key_id" not in session:
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        return _to_sign_in("required")
    reason = _check(session, now=context.now())
    if reason is not None:
        logger.info("console session ended", extra={"event": "console_session_ended",
                                                    "reason": reason})  # fmt: skip
        end()
        if request.endpoint == "console.static" or (
            request.endpoint == "console.sign_in"
            and (request.method == "POST" or "reason" in request.args)
        ):
            return None
        return _to_sign_in(reason)  # the sign-in page itself too: it says why
    g.log_context.enter_context(logs.bind(tenant_id=g.principal.tenant_id))
    return None


def _check(data: Any, *, now: datetime) -> str | None:
    """Why the session is no longer valid, or None after setting `g.principal`."""
    try:
        key_id = uuid.UUID(str(data["key_id"]))
        signed_in_at = float(data["signed_in_at"])
        epoch = int(data.get("epoch", 0))  # cookies made before epochs: the key's first
    except (KeyError, TypeError, ValueError):
        return "required"
    if now.timestamp() - signed_in_at > SESSION_LIFETIME.total_seconds():
        return "expired"
    with context.session() as db_session:
        found = keys.console_session(db_session, key_id)
    if found is None:
        return "revoked"
    if found[1] != epoch:
        return "signed_out"
    g.principal = found[0]
    return None


def _to_sign_in(reason: str) -> Response:
    wanted = request.method == "GET" and request.endpoint != "console.sign_in"
    target = request.full_path.rstrip("?") if wanted else None
    return redirect(url_for("console.sign_in", reason=reason, next=target))


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only (no open redirect), and never one
    with a control character (CR/LF in a Location header is a 500 or a split response)."""
    if (
        value
        and value.startswith("/console/")
        and "\\" not in value
        and "//" not in value
        and not any(ord(char) < 32 or ord(char) == 127 for char in value)
    ):
        return value
    return url_for("console.triggers_list")


@bp.after_request
def page_headers(response: Response) -> Response:
    """No framing (the action buttons cannot be clickjacked), scripts and styles from this
    origin only, no console URL (ids) leaked in a Referer to other sites, and no page kept
    in any cache (the secrets page shows secret values; every page shows a tenant's data)."""
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


@bp.route("/", methods=["GET", "POST"])
def sign_in() -> Any:
    """The sign-in form; once signed in, the triggers."""
    if request.method == "GET":
        if g.principal is not None:
            return redirect(url_for("console.triggers_list"))
        reason = request.args.get("reason", "")
        return render_template("console/sign_in.html", message=REASONS.get(reason)), 200
    key = request.form.get("key", "").strip()
    with context.session() as db_session:
        principal = keys.authenticate(db_session, key) if key else None
        found = keys.console_session(db_session, principal.key_id) if principal else None
    if principal is None or found is None:
        logger.info("console sign-in refused", extra={"event": "console_sign_in_refused"})
        error = "Paste an API key." if not key else "That key is unknown or revoked."
        return render_template("console/sign_in.html", error=error), 401
    start(principal, epoch=found[1], now=context.now())
    logger.info(
        "console signed in",
        extra={"event": "console_signed_in", "tenant_id": principal.tenant_id,
               "key_prefix": principal.prefix},
    )  # fmt: skip
    return redirect(safe_next(request.args.get("next")))


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> Response:
    """End the session, and every copy of its cookie: the key's console epoch moves on."""
    with context.session() as db_session:
        keys.end_console_sessions(db_session, g.principal.key_id)
    end()
    return redirect(url_for("console.sign_in", reason="signed_out"))
