"""Tenancy limits (docs/design.md section 15): triggers per tenant, and API requests per key."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app import db, errors, triggers
from tests import support
from tests.integration.api.conftest import Caller, assert_error, trigger_body
from web import create_app


@pytest.fixture()
def limited(settings, engine, celery_app, make_key):
    """A client of an app built with overridden settings, bound to a new key of `tenant`."""

    def build(tenant: str = "acme", **overrides) -> Caller:
        app = create_app(dataclasses.replace(settings, **overrides))
        app.config["TESTING"] = True
        return Caller(app.test_client(), make_key(tenant))

    return build


def test_creating_past_the_tenant_cap_is_409_and_stores_nothing(limited, snapshot):
    acme = limited(max_triggers_per_tenant=2)
    globex = limited("globex", max_triggers_per_tenant=2)
    first, _ = acme.create(name="one"), acme.create(name="two")
    before = snapshot()

    error = assert_error(acme.post("/triggers", json=trigger_body()), 409, "conflict")

    assert "(2)" in error["message"]
    assert snapshot() == before
    globex.create()  # another tenant has its own allowance
    assert acme.delete(f"/triggers/{first['id']}").status_code == 204
    acme.create(name="three")  # room again after a delete


def test_two_creates_at_the_cap_minus_one_do_not_both_succeed(engine):
    """The second create waits for the first's lock, then counts its trigger."""
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    values = {"name": "n", "cron": "* * * * *", "action": {"type": "task", "name": "echo"}}
    outcome: list[object] = []

    def second() -> None:
        try:
            with db.session_scope(engine) as session:
                triggers.create(
                    session, tenant_id="acme", values=values, now=now, max_triggers=1,
                    by=support.OWNER,
                )  # fmt: skip
            outcome.append("created")
        except errors.TriggerLimitReached as exc:
            outcome.append(exc)

    with db.session_scope(engine) as session:
        triggers.create(
                    session, tenant_id="acme", values=values, now=now, max_triggers=1,
                    by=support.OWNER,
                )  # fmt: skip
        racer = threading.Thread(target=second)
        racer.start()
        wait_for_a_blocked_advisory_lock(engine)  # the second create is counting under lock
    racer.join(timeout=30)

    assert len(outcome) == 1 and isinstance(outcome[0], errors.TriggerLimitReached), outcome
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM triggers")).scalar_one() == 1


def wait_for_a_blocked_advisory_lock(engine, attempts: int = 2000) -> None:
    for _ in range(attempts):
        with engine.connect() as conn:
            waiting = conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
        if waiting:
            return
    raise AssertionError("the second create never waited for the tenant lock")


def test_a_key_past_its_rate_limit_gets_429_with_retry_after(limited, make_key):
    acme = limited(api_rate_limit="3/minute")
    other = Caller(acme.client, make_key("acme"))  # the same tenant, another key

    statuses = [acme.get("/triggers").status_code for _ in range(3)]
    refused = acme.get("/triggers")

    assert statuses == [200, 200, 200]
    error = assert_error(refused, 429, "rate_limited")
    assert "3 per 1 minute" in error["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert assert_error(acme.post("/triggers", json=trigger_body()), 429)  # every endpoint
    assert other.get("/triggers").status_code == 200  # the budget is per key


def test_health_metrics_and_the_document_share_the_address_budget(limited):
    anonymous = limited(api_rate_limit="2/minute")
    assert anonymous.get("/healthz").status_code in (200, 503)
    assert anonymous.get("/metrics").status_code == 200
    error = assert_error(anonymous.get("/openapi.json"), 429, "rate_limited")
    assert error["message"] == "Too many requests from this address (limit: 2 per 1 minute)."


def test_requests_without_a_key_spend_the_address_budget_of_failed_authentications(limited):
    anonymous = limited(auth_rate_limit="2/minute")
    anonymous.key = None
    statuses = [anonymous.get("/triggers").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
