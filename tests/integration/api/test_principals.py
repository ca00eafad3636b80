"""Principals, roles and run_as over HTTP (docs/design.md section 18).

A `member` key writes only triggers that run as its own principal (403 naming run_as,
nothing stored); an `admin` key writes any trigger of its tenant, for any principal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.api.conftest import Caller, assert_error, trigger_body

FORBIDDEN_RUN_AS = "run_as"


@pytest.fixture()
def alice(client, make_key) -> Caller:
    """A member key of principal `alice` in tenant acme."""
    return Caller(client, make_key("acme", principal="alice", role="member"))


@pytest.fixture()
def bob(client, make_key) -> Caller:
    """A member key of principal `bob` in tenant acme."""
    return Caller(client, make_key("acme", principal="bob", role="member"))


@pytest.fixture()
def boss(client, make_key) -> Caller:
    """An admin key of principal `boss` in tenant acme."""
    return Caller(client, make_key("acme", principal="boss", role="admin"))


def assert_forbidden(response) -> None:
    error = assert_error(response, 403, "forbidden")
    assert set(error["fields"]) == {FORBIDDEN_RUN_AS}, error
    assert "run_as" in error["message"]


def test_a_trigger_runs_as_its_creator_by_default_and_records_who_made_it(alice):
    made = alice.create()

    assert (made["run_as"], made["created_by"], made["updated_by"]) == ("alice", "alice", "alice")
    assert alice.get(f"/triggers/{made['id']}").get_json()["run_as"] == "alice"


def test_a_member_may_name_itself_as_run_as(alice):
    assert alice.create(run_as="alice")["run_as"] == "alice"


@pytest.mark.parametrize("idempotency_key", [None, "create-1"])
def test_a_members_create_for_another_principal_is_403_and_stores_nothing(
    alice, snapshot, idempotency_key
):
    before = snapshot()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    response = alice.post("/triggers", json=trigger_body(run_as="bob"), headers=headers)

    assert_forbidden(response)
    assert snapshot() == before
    if idempotency_key:  # the key was not spent on the refusal: a retry as itself works
        retry = alice.post("/triggers", json=trigger_body(), headers=headers)
        assert retry.status_code == 201


def test_a_members_patch_of_run_as_to_another_principal_is_403_and_stores_nothing(alice, snapshot):
    made = alice.create()
    before = snapshot()

    response = alice.patch(f"/triggers/{made['id']}", json={"run_as": "bob", "name": "renamed"})

    assert_forbidden(response)
    assert snapshot() == before


def test_a_member_may_not_change_a_trigger_that_runs_as_someone_else(
    alice, bob, snapshot, published
):
    made = bob.create()
    trigger = f"/triggers/{made['id']}"
    before = snapshot()
    now = datetime.now(UTC)
    window = {"start": (now - timedelta(hours=1)).isoformat(), "end": now.isoformat()}

    assert_forbidden(alice.patch(trigger, json={"name": "mine now"}))
    assert_forbidden(alice.patch(trigger, json={"run_as": "alice"}))
    assert_forbidden(alice.patch(trigger, json={"enabled": False}))
    assert_forbidden(alice.delete(trigger))
    assert_forbidden(alice.post(f"{trigger}/run"))
    assert_forbidden(alice.post(f"{trigger}/backfill", json=window))

    assert snapshot() == before and published() == []


def test_a_member_may_not_cancel_a_run_of_someone_else(alice, bob, snapshot):
    made = bob.create()
    run = bob.post(f"/triggers/{made['id']}/run").get_json()
    before = snapshot()

    assert_forbidden(alice.post(f"/runs/{run['id']}/cancel"))
    assert snapshot() == before
    assert bob.post(f"/runs/{run['id']}/cancel").status_code == 202


def test_members_read_every_trigger_of_their_tenant(alice, bob):
    made = bob.create()

    assert alice.get(f"/triggers/{made['id']}").status_code == 200
    assert [t["id"] for t in alice.get("/triggers").get_json()["items"]] == [made["id"]]
    assert alice.get(f"/triggers/{made['id']}/runs").status_code == 200


def test_a_member_changes_its_own_trigger(alice):
    made = alice.create()

    response = alice.patch(f"/triggers/{made['id']}", json={"name": "renamed"})

    assert response.status_code == 200
    assert (response.get_json()["name"], response.get_json()["updated_by"]) == ("renamed", "alice")


def test_an_admin_creates_and_changes_triggers_for_any_principal(boss, alice):
    made = boss.create(run_as="alice")
    assert (made["run_as"], made["created_by"]) == ("alice", "boss")
    # The member it now runs as may change it; the admin may hand it to someone else.
    assert alice.patch(f"/triggers/{made['id']}", json={"name": "x"}).status_code == 200

    moved = boss.patch(f"/triggers/{made['id']}", json={"run_as": "carol"})

    assert moved.status_code == 200, moved.get_json()
    body = moved.get_json()
    assert (body["run_as"], body["created_by"], body["updated_by"]) == ("carol", "boss", "boss")
    assert_forbidden(alice.patch(f"/triggers/{made['id']}", json={"name": "y"}))


def test_an_operator_key_may_set_any_principal(client, make_key):
    operator = Caller(client, make_key("ops", admin=True, principal="op", role="member"))

    made = operator.create(run_as="someone")

    assert (made["run_as"], made["created_by"]) == ("someone", "op")


def test_a_run_records_the_run_as_it_fired_with(boss):
    made = boss.create(run_as="alice")
    run = boss.post(f"/triggers/{made['id']}/run").get_json()
    assert run["run_as"] == "alice"

    boss.patch(f"/triggers/{made['id']}", json={"run_as": "bob"})

    assert boss.get(f"/runs/{run['id']}").get_json()["run_as"] == "alice"
    later = boss.post(f"/triggers/{made['id']}/run").get_json()
    assert later["run_as"] == "bob"


@pytest.mark.parametrize(
    ("run_as", "message"),
    [
        ("", "must not be empty"),
        ("a" * 201, "at most 200 characters"),
        ("alice\nadmin", "control characters"),
        ("alice\x1b[31m", "control characters"),
        ("alice\u202e", "control characters"),
        ("\u2028alice", "control characters"),
        (" alice", "space"),
        (42, "Not a valid string"),
        (None, "Field may not be null"),
    ],
)
def test_a_bad_run_as_is_a_422_naming_it(boss, snapshot, run_as, message):
    made = boss.create()
    before = snapshot()

    for response in (
        boss.post("/triggers", json=trigger_body(run_as=run_as)),
        boss.patch(f"/triggers/{made['id']}", json={"run_as": run_as}),
    ):
        error = assert_error(response, 422, "validation_failed")
        assert set(error["fields"]) == {"run_as"}, error
        assert message in error["fields"]["run_as"]
    assert snapshot() == before


def test_a_principal_of_200_characters_with_spaces_and_unicode_is_accepted(boss):
    name = ("José d'Ávila <ops@example.com> " * 7)[:199] + "é"
    assert len(name) == 200

    assert boss.create(run_as=name)["run_as"] == name


def test_the_openapi_document_describes_run_as_and_the_trail(anonymous):
    doc = anonymous.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]

    trigger = schemas["TriggerOut"]["properties"]
    assert {"run_as", "created_by", "updated_by"} <= set(trigger)
    assert "member" in trigger["run_as"]["description"]
    assert "run_as" in schemas["TriggerCreate"]["properties"]
    assert "run_as" in schemas["TriggerPatch"]["properties"]
    assert "run_as" in schemas["RunOut"]["properties"]
    patch = doc["paths"]["/api/v1/triggers/{trigger_id}"]["patch"]
    assert "403" in patch["responses"]


def test_a_member_may_not_see_or_change_the_webhook_signing_secrets(alice, boss, snapshot):
    # A secret signs a delivery's run_as: a member holding it could claim to be anyone.
    boss.create(action={"type": "webhook", "url": "https://example.com/h"})  # the first secret
    [secret] = boss.get("/webhook-secrets").get_json()["items"]
    before = snapshot()

    for response in (
        alice.get("/webhook-secrets"),
        alice.post("/webhook-secrets"),
        alice.delete(f"/webhook-secrets/{secret['id']}"),
    ):
        error = assert_error(response, 403, "forbidden")
        assert set(error["fields"]) == {"role"} and secret["secret"] not in response.text
    assert snapshot() == before
    assert boss.post("/webhook-secrets").status_code == 201
