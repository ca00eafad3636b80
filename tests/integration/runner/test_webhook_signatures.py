"""Real deliveries verified with the `standardwebhooks` library: per-tenant secrets, rotation,
revocation, replay protection (docs/design.md section 13)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from app import db, webhook_secrets
from tests.integration.runner.conftest import iso
from tests.integration.runner.receiver import Reply

GRACE = timedelta(hours=24)
SIGNED_EMPTY = {"run_as": "legacy"}  # an empty payload, and whom the run acts for


def hook(receiver, **fields) -> dict:
    return {"type": "webhook", "url": receiver.url("/hook"), **fields}


def verify(secret: str, request) -> object:
    """What a receiver does: the library's verify over the raw body and the headers."""
    return standardwebhooks.Webhook(secret).verify(request.body, request.headers)


def secrets_of(harness, tenant: str) -> list[str]:
    with db.session_scope(harness.engine) as session:
        rows = webhook_secrets.list_active(session, tenant, now=harness.clock.now())
        return [s.secret for s in rows]


def rotate(harness, tenant: str, at: datetime) -> str:
    with db.session_scope(harness.engine) as session:
        return webhook_secrets.create(session, tenant, now=at, grace=GRACE).secret


@pytest.fixture(autouse=True)
def wall_clock(harness) -> None:
    # The library checks webhook-timestamp against the wall clock (5 minutes either way).
    harness.clock.set(datetime.now(UTC).replace(microsecond=0))


def test_a_delivery_verifies_under_the_tenants_secret_only(harness, receiver) -> None:
    payload = {"order": 42, "note": "café"}
    action = hook(receiver, headers={"Authorization": "Bearer abc", "X-Run-Id": "forged"})
    trigger_id = harness.trigger(action=action, payload=payload, tenant_id="tenant-a")
    run_id = harness.run(trigger_id)
    other = rotate(harness, "tenant-b", harness.clock.now())

    assert harness.execute(run_id) == "succeeded"

    [request] = receiver.hits()
    row = harness.row(run_id)
    [secret] = secrets_of(harness, "tenant-a")  # made at the first delivery
    assert verify(secret, request) == {**payload, "run_as": "legacy"}  # the trigger's default
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify(other, request)
    assert request.headers["webhook-id"] == f"msg_{run_id}"
    assert request.headers["webhook-timestamp"] == str(int(harness.clock.now().timestamp()))
    assert request.headers["Idempotency-Key"] == row["idempotency_key"]
    assert request.headers["X-Trigger-Id"] == str(trigger_id)
    assert request.headers["X-Run-Id"] == str(run_id)  # an action cannot forge it
    assert request.headers["X-Scheduled-For"] == iso(row["scheduled_for"])
    assert request.headers["Authorization"] == "Bearer abc"
    assert "X-Signature" not in request.headers
    assert row["result"] == {"status_code": 200, "body": "ok", "body_truncated": False}


def test_a_tampered_body_or_id_does_not_verify(harness, receiver) -> None:
    run_id = harness.run(harness.trigger(action=hook(receiver), payload={"amount": 42}))
    assert harness.execute(run_id) == "succeeded"
    [request] = receiver.hits()
    [secret] = secrets_of(harness, "tenant-a")

    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(request.body.replace(b"42", b"43"), request.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(
            request.body, {**request.headers, "webhook-id": "msg_other"}
        )


def test_an_old_delivery_does_not_verify(harness, receiver) -> None:
    harness.clock.set(harness.clock.now() - timedelta(minutes=10))
    run_id = harness.run(harness.trigger(action=hook(receiver)))
    assert harness.execute(run_id) == "succeeded"
    [request] = receiver.hits()
    [secret] = secrets_of(harness, "tenant-a")

    with pytest.raises(standardwebhooks.WebhookVerificationError, match="too old"):
        verify(secret, request)


def test_during_rotation_both_secrets_verify_and_after_the_grace_only_the_new(
    harness, receiver
) -> None:
    now = harness.clock.now()
    old = rotate(harness, "tenant-a", now - timedelta(hours=30))
    new = rotate(harness, "tenant-a", now - timedelta(hours=1))  # old expires in 23 h
    run_id = harness.run(harness.trigger(action=hook(receiver)))

    assert harness.execute(run_id) == "succeeded"

    [request] = receiver.hits()
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(old, request) == verify(new, request) == SIGNED_EMPTY


def test_an_expired_secret_no_longer_signs(harness, receiver) -> None:
    now = harness.clock.now()
    old = rotate(harness, "tenant-a", now - timedelta(hours=50))
    new = rotate(harness, "tenant-a", now - timedelta(hours=25))  # old expired an hour ago
    run_id = harness.run(harness.trigger(action=hook(receiver)))

    assert harness.execute(run_id) == "succeeded"

    [request] = receiver.hits()
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert verify(new, request) == SIGNED_EMPTY
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify(old, request)


def test_a_revoked_secret_stops_signing_at_once(harness, receiver) -> None:
    now = harness.clock.now()
    old = rotate(harness, "tenant-a", now - timedelta(minutes=5))
    new = rotate(harness, "tenant-a", now - timedelta(minutes=1))
    with db.session_scope(harness.engine) as session:
        [old_row] = [
            s for s in webhook_secrets.list_active(session, "tenant-a", now=now) if s.secret == old
        ]
        webhook_secrets.revoke(session, old_row.id, scope="tenant-a", now=now)
    run_id = harness.run(harness.trigger(action=hook(receiver)))

    assert harness.execute(run_id) == "succeeded"

    [request] = receiver.hits()
    assert verify(new, request) == SIGNED_EMPTY
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify(old, request)


def test_a_retry_keeps_the_webhook_id_with_a_fresh_timestamp_and_signature(
    harness, receiver
) -> None:
    receiver.plan("/hook", Reply(503, b"busy"))
    run_id = harness.run(harness.trigger(action=hook(receiver), retry_backoff_seconds=1))
    assert harness.execute(run_id) == "retrying"
    harness.clock.set(harness.clock.now() + timedelta(seconds=30))
    harness.make_due(run_id)  # the retry waits in PostgreSQL until its not_before
    assert harness.admit() == [run_id]
    assert harness.execute(run_id) == "succeeded"

    first, second = receiver.hits()
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{run_id}"
    assert int(second.headers["webhook-timestamp"]) == int(first.headers["webhook-timestamp"]) + 30
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert first.body == second.body
    [secret] = secrets_of(harness, "tenant-a")
    assert verify(secret, second) == json.loads(second.body)
