"""Console page for a tenant's webhook signing secrets: list, rotate, revoke (design §13).

Each view calls the app.webhook_secrets function the API calls, with the same rules: a tenant
key acts on its own tenant; an admin key chooses the tenant (`?tenant=`) to list or rotate and
may revoke any secret. Values are shown, as the API returns them: the receiver needs them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for

from app import keys, principals, webhook_secrets
from web import context
from web.console.blueprint import bp, parse_id
from web.errors import InvalidFields


def _tenant(value: str | None) -> str | None:
    """The tenant acted on: the key's own, or for an admin key the one named (None: none
    chosen yet). A malformed name is the API's 422 naming `tenant`; a member key is refused
    (app.principals.check_manages_secrets), as by the API."""
    principals.check_manages_secrets(context.actor())
    principal = context.principal()
    if not principal.is_admin:
        return principal.tenant_id
    if not value:
        return None
    if "\x00" in value or not keys.TENANT_PATTERN.fullmatch(value):
        raise InvalidFields({"tenant": "is not a tenant id"})
    return value


@bp.route("/webhook-secrets")
def webhook_secrets_page() -> str:
    """The active secrets, newest first (every one signs each delivery)."""
    tenant = _tenant(request.args.get("tenant"))
    items = []
    if tenant is not None:
        with context.session() as session:
            items = webhook_secrets.list_active(session, tenant, now=context.now())
    return render_template(
        "console/webhook_secrets.html",
        tenant=tenant,
        items=items,
        grace_hours=context.settings().webhook_secret_grace_hours,
    )


@bp.route("/webhook-secrets/rotate", methods=["POST"])
def rotate_webhook_secret() -> Response:
    """Rotate: a new current secret; the previous one keeps signing for the grace period."""
    tenant = _tenant(request.form.get("tenant"))
    if tenant is None:
        raise InvalidFields({"tenant": "is required with an admin key"})
    grace = timedelta(hours=context.settings().webhook_secret_grace_hours)
    with context.session() as session:
        webhook_secrets.create(session, tenant, now=context.now(), grace=grace)
    flash("New signing secret created; the previous one keeps signing during the grace "
          "period.", "success")  # fmt: skip
    return redirect(_page_url(tenant), code=303)


@bp.route("/webhook-secrets/<secret_id>/revoke", methods=["GET", "POST"])
def revoke_webhook_secret(secret_id: str) -> Any:
    """GET: the confirmation page. POST: revoke now (the next delivery is not signed with it)."""
    sid = parse_id(secret_id, "webhook secret")
    tenant = _tenant(request.values.get("tenant"))
    if request.method == "GET":
        return render_template("console/revoke_secret.html", secret_id=sid, tenant=tenant)
    with context.session() as session:
        webhook_secrets.revoke(session, sid, scope=context.scope(), now=context.now())
    flash("Signing secret revoked.", "success")
    return redirect(_page_url(tenant), code=303)


def _page_url(tenant: str | None) -> str:
    admin = context.principal().is_admin
    return url_for("console.webhook_secrets_page", tenant=tenant if admin else None)
