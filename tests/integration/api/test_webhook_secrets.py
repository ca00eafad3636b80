"""Webhook URLs at create time and the webhook-secrets API (docs/design.md section 13)."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app import db, webhook_secrets
from app.models import WebhookSecret
from tests.integration.api.conftest import assert_error

T0 = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
BUG_URL = "http://127.0.0.1:6379\\@example.com/"


def webhook(url: str = "https://hooks.example.com/a") -> dict:
    return {"type": "webhook", "url": url}


@pytest.fixture()
def at_t0(services, clock):
    services.clock = clock.now
    clock.set(T0)
    return clock


@pytest.mark.parametrize(
    "url",
    [
        BUG_URL,
        "http://user:pw@hooks.example.com/",
        "http://%31%32%37.0.0.1/",
        "http://[::1%25eth0]/",
        "http://hooks.example.com\t/",
    ],
)
def test_a_url_two_parsers_could_read_differently_is_a_422_naming_action_url(
    acme, snapshot, url
) -> None:
    before = snapshot()

    error = assert_error(
        acme.post("/triggers", json={"name": "x", "cron": "* * * * *", "action": webhook(url)}),
        422,
    )

    assert set(error["fields"]) == {"action.url"}
    assert snapshot() == before


def test_an_update_to_such_a_url_is_refused_too(acme, snapshot) -> None:
    trigger = acme.create(action=webhook())
    before = snapshot()
    response = acme.patch(f"/triggers/{trigger['id']}", json={"action": webhook(BUG_URL)})

    error = assert_error(response, 422)

    assert error["fields"] == {"action.url": "must not contain backslashes"}
    assert snapshot() == before


def test_the_first_webhook_trigger_makes_the_tenants_first_secret(acme, at_t0) -> None:
    acme.create()  # a task trigger: no secret
    assert acme.get("/webhook-secrets").get_json() == {"items": [], "next_cursor": None}

    acme.create(action=webhook())
    acme.create(action=webhook())

    body = acme.get("/webhook-secrets").get_json()
    [item] = body["items"]
    assert body["next_cursor"] is None
    assert set(item) == {"id", "secret", "created_at", "expires_at"}
    assert item["secret"].startswith("whsec_") and len(item["secret"]) == 50
    assert (item["created_at"], item["expires_at"]) == ("2026-03-07T12:00:00Z", None)


def test_rotation_keeps_the_previous_secret_for_the_grace_period(acme, at_t0) -> None:
    acme.create(action=webhook())
    [first] = acme.get("/webhook-secrets").get_json()["items"]
    at_t0.advance(hours=1)

    response = acme.post("/webhook-secrets")

    assert response.status_code == 201
    new = response.get_json()
    assert new["expires_at"] is None and new["secret"] != first["secret"]
    items = acme.get("/webhook-secrets").get_json()["items"]
    assert [i["id"] for i in items] == [new["id"], first["id"]]  # newest first
    assert items[1]["expires_at"] == "2026-03-08T13:00:00Z"  # now + 24 h
    at_t0.advance(hours=24)
    assert [i["id"] for i in acme.get("/webhook-secrets").get_json()["items"]] == [new["id"]]


def test_at_most_ten_secrets_stay_active(acme, at_t0) -> None:
    for _ in range(12):
        assert acme.post("/webhook-secrets").status_code == 201
        at_t0.advance(seconds=1)
    assert len(acme.get("/webhook-secrets").get_json()["items"]) == webhook_secrets.MAX_ACTIVE


def test_revoking_is_immediate_and_only_for_the_owner(acme, globex, at_t0) -> None:
    old = acme.post("/webhook-secrets").get_json()
    new = acme.post("/webhook-secrets").get_json()

    assert_error(globex.delete(f"/webhook-secrets/{old['id']}"), 404)
    assert globex.get("/webhook-secrets").get_json()["items"] == []
    response = acme.delete(f"/webhook-secrets/{old['id']}")

    assert response.status_code == 204
    assert [i["id"] for i in acme.get("/webhook-secrets").get_json()["items"]] == [new["id"]]
    assert_error(acme.delete(f"/webhook-secrets/{old['id']}"), 404)


def test_an_admin_names_the_tenant(acme, admin, at_t0) -> None:
    mine = acme.post("/webhook-secrets").get_json()

    error = assert_error(admin.get("/webhook-secrets"), 422)
    assert error["fields"] == {"tenant": "is required with an admin key"}
    assert admin.get("/webhook-secrets?tenant=acme").get_json()["items"] == [mine]
    made = admin.post("/webhook-secrets?tenant=acme").get_json()
    assert admin.delete(f"/webhook-secrets/{made['id']}").status_code == 204
    assert [i["id"] for i in acme.get("/webhook-secrets").get_json()["items"]] == [mine["id"]]


def test_a_tenant_key_cannot_name_another_tenant(acme, globex) -> None:
    globex.post("/webhook-secrets")
    error = assert_error(acme.get("/webhook-secrets?tenant=globex"), 422)
    assert error["fields"] == {"tenant": "only admin keys may name a tenant"}
    assert_error(acme.post("/webhook-secrets?tenant=globex"), 422)
    assert acme.get("/webhook-secrets?tenant=acme").status_code == 200


def test_the_secrets_api_needs_a_key(anonymous) -> None:
    assert_error(anonymous.get("/webhook-secrets"), 401)
    assert_error(anonymous.post("/webhook-secrets"), 401)


def test_two_concurrent_first_webhook_triggers_make_one_secret(engine) -> None:
    """The first transaction holds the tenant's lock until it commits; the second waits,
    then sees the secret and makes none."""
    made: list[object] = []
    with db.session_scope(engine) as first:
        made.append(webhook_secrets.ensure_first(first, "acme", now=T0))

        def second() -> None:
            with db.session_scope(engine) as session:
                made.append(webhook_secrets.ensure_first(session, "acme", now=T0))

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the first transaction's lock
    thread.join(10)

    assert made[0] is not None and made[1] is None
    with db.session_scope(engine) as session:
        count = session.scalar(select(func.count()).select_from(WebhookSecret))
    assert count == 1


def test_a_delivery_for_a_tenant_without_secrets_makes_one(engine) -> None:
    first = webhook_secrets.signing_secrets(engine, "acme", now=T0)
    again = webhook_secrets.signing_secrets(engine, "acme", now=T0 + timedelta(days=400))
    assert len(first) == 1 and first == again


def test_secrets_are_stored_encrypted_under_the_configured_key(acme, at_t0, engine) -> None:
    from cryptography.fernet import Fernet
    from sqlalchemy import text

    acme.post("/webhook-secrets")
    [shown] = [item["secret"] for item in acme.get("/webhook-secrets").get_json()["items"]]
    with engine.connect() as conn:
        [stored] = conn.execute(text("SELECT * FROM webhook_secrets")).mappings().all()

    assert shown.startswith("whsec_")
    assert shown not in str(dict(stored)) and shown[6:30] not in str(dict(stored))
    key = os.environ["SECRETS_ENCRYPTION_KEY"].split(",")[0]
    assert Fernet(key).decrypt(stored["secret_ciphertext"].encode()).decode() == shown
