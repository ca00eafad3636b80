"""The identity travels with the work (docs/design.md section 18): triggers made over HTTP,
run by the runner; a real receiver verifies the webhook with the `standardwebhooks` library
and trusts the run's `run_as` from it; a handler reads `ctx.run_as`."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import standardwebhooks
from flask.testing import FlaskClient
from sqlalchemy import text

from app import db, keys, webhook_secrets
from app.actions import registry
from web import create_app

PRINCIPAL = "José 42/ops%20 <j@example.com>"  # spaces, %, /, non-ASCII: the header encodes


@pytest.fixture(autouse=True)
def wall_clock(harness) -> None:
    # The library checks webhook-timestamp against the wall clock (5 minutes either way).
    harness.clock.set(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture()
def client(harness, celery_app) -> FlaskClient:
    app = create_app(harness.settings)
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture()
def key(harness) -> Any:
    """make(principal, role): a key of tenant acme, as HTTP headers."""

    def make(principal: str, role: str) -> dict[str, str]:
        with db.session_scope(harness.engine) as session:
            new = keys.create(
                session, tenant_id="acme", principal=principal, role=role,
                now=harness.clock.now(),
            )  # fmt: skip
        return {"Authorization": f"Bearer {new.key}"}

    return make


@pytest.fixture()
def whoami() -> Iterator[str]:
    """A handler that answers whom its run acts for."""

    @registry.handler("test.whoami")
    def handler(ctx: registry.RunContext) -> dict[str, str]:
        return {"run_as": ctx.run_as}

    yield "test.whoami"
    registry.unregister("test.whoami")


def run_now(client: FlaskClient, headers: dict[str, str], trigger_id: str) -> uuid.UUID:
    response = client.post(f"/api/v1/triggers/{trigger_id}/run", headers=headers)
    assert response.status_code == 202, response.get_json()
    return uuid.UUID(response.get_json()["id"])


def create(client: FlaskClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/triggers", headers=headers, json={"name": "t", "cron": "0 * * * *", **body}
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def secret_of(harness) -> str:
    with db.session_scope(harness.engine) as session:
        [secret] = webhook_secrets.list_active(session, "acme", now=harness.clock.now())
        return secret.secret


def test_the_webhook_carries_run_as_signed_and_a_receiver_verifies_it(
    harness, receiver, client, key
) -> None:
    boss = key("boss", "admin")
    action = {"type": "webhook", "url": receiver.url("/hook")}
    trigger = create(client, boss, action=action, payload={"order": 7}, run_as=PRINCIPAL)
    run_id = run_now(client, boss, trigger["id"])
    # A later change of the trigger's run_as does not change whom this run acts for.
    moved = client.patch(f"/api/v1/triggers/{trigger['id']}", headers=boss, json={"run_as": "x"})
    assert moved.status_code == 200

    assert harness.execute(run_id) == "succeeded"

    [request] = receiver.hits()
    verified = standardwebhooks.Webhook(secret_of(harness)).verify(request.body, request.headers)
    assert verified == {"order": 7, "run_as": PRINCIPAL}
    header = request.headers["webhook-run-as"]
    assert header.isascii() and " " not in header
    assert urllib.parse.unquote(header) == verified["run_as"]
    assert harness.row(run_id)["run_as"] == PRINCIPAL


def test_a_signed_run_as_cannot_be_forged_by_the_payload_or_the_body(
    harness, receiver, client, key
) -> None:
    alice = key("alice", "member")
    action = {"type": "webhook", "url": receiver.url("/hook")}
    trigger = create(client, alice, action=action, payload={"run_as": "boss", "n": 1})
    run_id = run_now(client, alice, trigger["id"])
    assert harness.execute(run_id) == "succeeded"

    [request] = receiver.hits()
    hook = standardwebhooks.Webhook(secret_of(harness))
    assert hook.verify(request.body, request.headers) == {"run_as": "alice", "n": 1}
    assert request.headers["webhook-run-as"] == "alice"
    forged = request.body.replace(b'"alice"', b'"boss"')
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        hook.verify(forged, request.headers)


def test_a_trigger_cannot_set_the_run_as_header_itself(client, key) -> None:
    alice = key("alice", "member")
    action = {"type": "webhook", "url": "https://example.com/h",
              "headers": {"Webhook-Run-As": "boss"}}  # fmt: skip

    response = client.post(
        "/api/v1/triggers", headers=alice, json={"name": "t", "cron": "0 * * * *", "action": action}
    )

    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {
        "action.headers.Webhook-Run-As": "is set by the scheduler and cannot be overridden"
    }


def test_a_handler_sees_the_run_as_of_its_run(harness, client, key, whoami) -> None:
    boss = key("boss", "admin")
    trigger = create(client, boss, action={"type": "task", "name": whoami}, run_as="carol")
    run_id = run_now(client, boss, trigger["id"])

    assert harness.execute(run_id) == "succeeded"
    assert harness.row(run_id)["result"] == {"run_as": "carol"}


def test_a_run_an_older_release_inserted_takes_its_triggers_run_as(harness, whoami) -> None:
    # harness.run inserts the row as the dispatcher of an older release would: no run_as.
    trigger_id = harness.trigger(action={"type": "task", "name": whoami})
    run_id = harness.run(trigger_id)
    assert harness.row(run_id)["run_as"] is None

    assert harness.execute(run_id) == "succeeded"

    row = harness.row(run_id)
    assert (row["result"], row["run_as"]) == ({"run_as": "legacy"}, "legacy")


def test_each_run_acts_for_the_principal_it_recorded_whether_claimed_or_kept(
    harness, whoami
) -> None:
    # The first run is the delivery's (its claim reads run_as), the next ones are kept by
    # the worker after each finish (the finish's statement reads it). The runs recorded
    # alice and bob when they fired; the trigger says `legacy` now; the last run is an
    # older release's, with none recorded.
    harness.configure(max_running=1, max_running_per_tenant=1)
    trigger_id = harness.trigger(action={"type": "task", "name": whoami})
    now = harness.clock.now()
    first = harness.run(trigger_id, scheduled_for=now)
    later = [harness.run(trigger_id, status="pending", scheduled_for=now + timedelta(minutes=n))
             for n in (1, 2)]  # fmt: skip
    with harness.engine.begin() as conn:
        for run_id, principal in zip([first, later[0]], ["alice", "bob"], strict=True):
            conn.execute(text("UPDATE runs SET run_as = :p WHERE id = :id"),
                         {"p": principal, "id": run_id})  # fmt: skip

    assert harness.execute(first, chain_seconds=60) == "succeeded"

    assert harness.published == [], "every run after the first was kept, none published"
    rows = [harness.row(run_id) for run_id in [first, *later]]
    assert [row["result"] for row in rows] == [
        {"run_as": "alice"}, {"run_as": "bob"}, {"run_as": "legacy"}
    ]  # fmt: skip
    assert [row["run_as"] for row in rows] == ["alice", "bob", "legacy"]
