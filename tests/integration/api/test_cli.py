"""`flask --app web keys create|list|revoke`."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from app import keys

CREATE = ["keys", "create", "--tenant", "acme", "--principal", "p"]


def test_create_prints_the_key_alone_on_the_last_line_and_it_works(runner, client, engine):
    result = runner.invoke(args=[*CREATE[:-1], "u-1", "--name", "ci"])

    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("tsk_") and " " not in key
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT tenant_id, name, key_hash, is_admin, principal, role FROM api_keys")
        ).one()
    assert tuple(stored) == ("acme", "ci", keys.hash_key(key), False, "u-1", "member")
    response = client.get("/api/v1/triggers", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


def test_create_admin_with_json(runner, client):
    result = runner.invoke(
        args=["keys", "create", "--tenant", "ops", "--principal", "op", "--admin", "--json"]
    )

    assert result.exit_code == 0, result.output
    body = json.loads(result.output.strip().splitlines()[-1])
    assert set(body) == {"key", "prefix", "tenant_id", "is_admin", "principal", "role"}
    assert (body["tenant_id"], body["is_admin"], body["principal"]) == ("ops", True, "op")
    assert body["key"].startswith(body["prefix"])
    headers = {"Authorization": f"Bearer {body['key']}"}
    assert client.get("/api/v1/admin/scheduler", headers=headers).status_code == 200


def test_create_rejects_a_bad_tenant(runner, engine):
    result = runner.invoke(args=["keys", "create", "--tenant", "has space", "--principal", "p"])
    assert result.exit_code != 0 and "tenant" in result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 0


def test_list_shows_prefixes_never_secrets(runner):
    key = runner.invoke(args=CREATE).output.splitlines()[-1]

    result = runner.invoke(args=["keys", "list"])

    assert result.exit_code == 0
    assert key[: keys.PREFIX_LENGTH] in result.output and key not in result.output
    assert "acme" in result.output and "active" in result.output


def test_revoke_by_prefix_then_the_key_is_401(runner, client):
    key = runner.invoke(args=CREATE).output.splitlines()[-1]

    result = runner.invoke(args=["keys", "revoke", key[: keys.PREFIX_LENGTH]])

    assert result.exit_code == 0, result.output
    response = client.get("/api/v1/triggers", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert "active" not in runner.invoke(args=["keys", "list"]).output


def test_revoke_by_id(runner):
    body = json.loads(runner.invoke(args=[*CREATE, "--json"]).output.splitlines()[-1])
    listed = runner.invoke(args=["keys", "list"]).output
    key_id = next(line.split("\t")[1] for line in listed.splitlines() if body["prefix"] in line)

    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 0
    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 1  # already revoked


def test_revoke_of_an_unknown_key_fails(runner):
    result = runner.invoke(args=["keys", "revoke", "tsk_nothing"])
    assert result.exit_code == 1 and "no active key" in result.output


def test_create_an_admin_key_of_a_principal(runner, engine):
    args = ["keys", "create", "--tenant", "acme", "--principal", "alice@example.com"]
    result = runner.invoke(args=[*args, "--role", "admin", "--json"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.output.strip().splitlines()[-1])
    assert (body["principal"], body["role"], body["is_admin"]) == (
        "alice@example.com", "admin", False
    )  # fmt: skip
    listed = runner.invoke(args=["keys", "list"]).output
    assert "'alice@example.com'\tadmin" in listed


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        (["--principal", "p", "--role", "owner"], "--role", "'owner' is not one of"),
        (["--principal", ""], "--principal", "must not be empty"),
        (["--principal", "p" * 201], "--principal", "at most 200 characters"),
        (["--principal", "bob\nadmin"], "--principal", "control characters"),
        (["--principal", "bob\u202e"], "--principal", "control characters"),
        (["--principal", " bob"], "--principal", "space"),
        ([], "--principal", "Missing option"),
    ],
)
def test_create_rejects_bad_principals_and_roles_naming_the_option(
    runner, engine, extra, field, message
):
    result = runner.invoke(args=["keys", "create", "--tenant", "acme", *extra])

    assert result.exit_code != 0
    assert field in result.output and message in result.output, result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 0
