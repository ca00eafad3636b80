"""Authentication: tenant and admin API keys (`Authorization: Bearer`), and the deploy secret.

A missing, malformed, unknown or revoked key gets the same 401, so a caller learns nothing
about which keys exist. A tenant key on an admin endpoint is a 404, like another tenant's
trigger: the API never confirms what a caller may not see.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, TypeVar

from flask import current_app, g, request
from werkzeug.exceptions import NotFound, Unauthorized

from app import keys, logs
from web import context, ratelimit

V = TypeVar("V")


def public(view: V) -> V:
    """Mark a view as not needing an API key (it checks its own credentials, e.g. the hook)."""
    view.public = True
    return view


def require_key() -> None:
    """Blueprint `before_request`: authenticate the bearer key or answer 401; then spend a
    request of the key's rate limit (429 past it)."""
    view = _view()
    if view is not None and getattr(view, "public", False):
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    with context.session() as session:
        principal = keys.authenticate(session, token)
    if principal is None:
        raise Unauthorized()
    g.principal = principal
    g.log_context.enter_context(logs.bind(tenant_id=principal.tenant_id))
    # Counted by key id only now that the key is known (docs/design.md section 17).
    ratelimit.charge_key()


def require_admin() -> None:
    """Blueprint `before_request` (after require_key): only admin keys; others get 404."""
    view = _view()
    if view is not None and getattr(view, "public", False):
        return
    if not context.principal().is_admin:
        raise NotFound()


def secret_matches(given: str | None, configured: str) -> bool:
    """Constant-time comparison of SHA-256 digests, so neither content nor length leaks."""
    if given is None:
        given = ""
    expected = hashlib.sha256(configured.encode("utf-8")).digest()
    actual = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    # Compare even when nothing was given, so a missing header costs the same time.
    return hmac.compare_digest(actual, expected) and bool(given)


def _view() -> Any:
    endpoint = request.endpoint
    if endpoint is None:
        return None
    view = current_app.view_functions.get(endpoint)
    return getattr(view, "view_class", view)
