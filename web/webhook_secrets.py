"""Webhook signing secrets: list the tenant's active ones, rotate, revoke.

docs/design.md section 13.

A tenant key acts on its own tenant. An admin key names the tenant with `?tenant=` to list
or rotate, and may revoke any secret by id. A tenant's `member` key gets 403 on every route:
a secret signs a delivery's `run_as` (docs/design.md section 18).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import marshmallow as ma
from flask.views import MethodView
from marshmallow import fields, validate

from app import keys, principals, webhook_secrets
from app.models import WebhookSecret
from web import auth, context
from web import fields as wf
from web.errors import Blueprint, InvalidFields

blp = Blueprint(
    "webhook_secrets",
    __name__,
    url_prefix="/api/v1",
    description="Webhook signing secrets (Standard Webhooks)",
)
blp.before_request(auth.require_key)


@blp.before_request
def admins_only() -> None:
    """After require_key: a member key may not see or change the signing secrets."""
    principals.check_manages_secrets(context.actor())


MEMBERS = "A member key may not see or change the signing secrets (they sign run_as)"


class SecretQuery(ma.Schema):
    tenant = fields.String(
        validate=validate.Regexp(keys.TENANT_PATTERN, error="is not a tenant id"),
        metadata={"description": "Admin keys only: the tenant to act on"},
    )


class SecretOut(ma.Schema):
    id = fields.UUID(required=True)
    secret = fields.String(
        required=True, metadata={"description": "`whsec_` + base64 of 32 random bytes"}
    )
    created_at = wf.Timestamp(required=True)
    expires_at = wf.Timestamp(
        allow_none=True,
        metadata={"description": "When it stops signing; null for the current secret"},
    )


class SecretPage(ma.Schema):
    items = fields.List(fields.Nested(SecretOut), required=True)
    next_cursor = fields.String(allow_none=True, metadata={"description": "Always null"})


@blp.route("/webhook-secrets")
class SecretCollection(MethodView):
    @blp.arguments(SecretQuery, location="query")
    @blp.alt_response(403, description=MEMBERS)
    @blp.response(200, SecretPage)
    def get(self, query: dict) -> dict:
        """The tenant's active signing secrets, newest first; each delivery is signed with
        every one of them."""
        with context.session() as session:
            items = webhook_secrets.list_active(session, _tenant(query), now=context.now())
        return {"items": items, "next_cursor": None}

    @blp.arguments(SecretQuery, location="query")
    @blp.alt_response(403, description=MEMBERS)
    @blp.response(201, SecretOut)
    def post(self, query: dict) -> WebhookSecret:
        """Rotate: a new current secret; the previous one keeps signing for
        WEBHOOK_SECRET_GRACE_HOURS, then expires."""
        grace = timedelta(hours=context.settings().webhook_secret_grace_hours)
        with context.session() as session:
            return webhook_secrets.create(session, _tenant(query), now=context.now(), grace=grace)


@blp.route("/webhook-secrets/<uuid:secret_id>")
class SecretItem(MethodView):
    @blp.alt_response(403, description=MEMBERS)
    @blp.response(204)
    def delete(self, secret_id: uuid.UUID) -> None:
        """Revoke a secret now: the next delivery is no longer signed with it."""
        with context.session() as session:
            webhook_secrets.revoke(session, secret_id, scope=context.scope(), now=context.now())


def _tenant(query: dict) -> str:
    """The tenant a request acts on: the key's own, or `?tenant=` for an admin key."""
    principal = context.principal()
    named = query.get("tenant")
    if not principal.is_admin:
        if named is not None and named != principal.tenant_id:
            raise InvalidFields({"tenant": "only admin keys may name a tenant"})
        return principal.tenant_id
    if named is None:
        raise InvalidFields({"tenant": "is required with an admin key"})
    return named
