"""Console pages for a tenant's webhook signing secrets: list, rotate, revoke, CSRF, tenancy,
and an admin choosing the tenant."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import select

from app import db, secret_box
from app.models import WebhookSecret


def secrets_of(engine, tenant: str) -> list[SimpleNamespace]:
    """Every secret row of the tenant, revoked ones too, with its value decrypted."""
    with db.session_scope(engine) as session:
        found = session.scalars(
            select(WebhookSecret)
            .where(WebhookSecret.tenant_id == tenant)
            .order_by(WebhookSecret.created_at)
        )
        return [
            SimpleNamespace(id=row.id, secret=secret_box.decrypt(row.secret_ciphertext),
                            expires_at=row.expires_at, revoked_at=row.revoked_at)
            for row in found
        ]  # fmt: skip


def test_a_tenant_lists_rotates_and_revokes_its_webhook_secrets(
    client, sign_in, engine, clock
) -> None:
    token = sign_in("acme")
    assert "No active secret" in client.get("/console/webhook-secrets").text
    response = client.post("/console/webhook-secrets/rotate", data={"csrf_token": token})
    assert response.status_code == 303
    (first,) = secrets_of(engine, "acme")
    page = client.get(response.headers["Location"]).text
    assert first.secret in page and "current" in page  # the value, as the API shows it
    clock.advance(seconds=60)
    client.post("/console/webhook-secrets/rotate", data={"csrf_token": token})
    old, new = secrets_of(engine, "acme")
    assert old.expires_at is not None and new.expires_at is None
    page = client.get("/console/webhook-secrets").text
    assert old.secret in page and new.secret in page
    confirm = client.get(f"/console/webhook-secrets/{old.id}/revoke").text
    assert "Revoke the webhook secret?" in confirm and 'name="csrf_token"' in confirm
    assert secrets_of(engine, "acme")[0].revoked_at is None  # the GET changed nothing
    client.post(f"/console/webhook-secrets/{old.id}/revoke", data={"csrf_token": token})
    assert secrets_of(engine, "acme")[0].revoked_at is not None
    page = client.get("/console/webhook-secrets").text
    assert old.secret not in page and new.secret in page


def test_webhook_secret_forms_need_the_csrf_token(client, sign_in, engine) -> None:
    sign_in("acme")
    assert client.post("/console/webhook-secrets/rotate").status_code == 400
    assert secrets_of(engine, "acme") == []


def test_a_tenant_cannot_touch_another_tenants_secret(client, sign_in, engine) -> None:
    token = sign_in("acme")
    client.post("/console/webhook-secrets/rotate", data={"csrf_token": token})
    (secret,) = secrets_of(engine, "acme")
    client.post("/console/sign-out", data={"csrf_token": token})
    token = sign_in("intruder")
    page = client.get("/console/webhook-secrets?tenant=acme").text
    assert secret.secret not in page  # a tenant key sees its own tenant, whatever it asks
    revoke = client.post(f"/console/webhook-secrets/{secret.id}/revoke", data={"csrf_token": token})
    assert revoke.status_code == 404
    assert secrets_of(engine, "acme")[0].revoked_at is None
    client.post("/console/webhook-secrets/rotate", data={"csrf_token": token, "tenant": "acme"})
    assert len(secrets_of(engine, "acme")) == 1 and len(secrets_of(engine, "intruder")) == 1


def test_an_admin_chooses_the_tenant_whose_secrets_it_manages(client, sign_in, engine) -> None:
    token = sign_in("ops", admin=True)
    assert "Choose a tenant" in client.get("/console/webhook-secrets").text
    response = client.post(
        "/console/webhook-secrets/rotate", data={"csrf_token": token, "tenant": "acme"}
    )
    assert response.headers["Location"] == "/console/webhook-secrets?tenant=acme"
    (secret,) = secrets_of(engine, "acme")
    assert secret.secret in client.get("/console/webhook-secrets?tenant=acme").text
    assert (
        client.post("/console/webhook-secrets/rotate", data={"csrf_token": token}).status_code
        == 422
    )
    for bad in ("../etc", "a\x00b", "acme\n", "x" * 200):
        response = client.get("/console/webhook-secrets", query_string={"tenant": bad})
        assert response.status_code == 422 and "tenant" in response.text
    client.post(f"/console/webhook-secrets/{secret.id}/revoke",
                data={"csrf_token": token, "tenant": "acme"})  # fmt: skip
    assert secrets_of(engine, "acme")[0].revoked_at is not None
    assert secrets_of(engine, "ops") == []
