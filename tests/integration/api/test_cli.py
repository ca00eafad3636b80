"""`flask --app web keys create|list|revoke`."""

from __future__ import annotations

import json

from sqlalchemy import text

from app import keys


def test_create_prints_the_key_alone_on_the_last_line_and_it_works(runner, client, engine):
    result = runner.invoke(args=["keys", "create", "--tenant", "acme", "--name", "ci"])

    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("tsk_") and " " not in key
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT tenant_id, name, key_hash, is_admin FROM api_keys")
        ).one()
    assert tuple(stored) == ("acme", "ci", keys.hash_key(key), False)
    response = client.get("/api/v1/triggers", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


def test_create_admin_with_json(runner, client):
    result = runner.invoke(args=["keys", "create", "--tenant", "ops", "--admin", "--json"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.output.strip().splitlines()[-1])
    assert set(body) == {"key", "prefix", "tenant_id", "is_admin"}
    assert (body["tenant_id"], body["is_admin"]) == ("ops", True)
    assert body["key"].startswith(body["prefix"])
    headers = {"Authorization": f"Bearer {body['key']}"}
    assert client.get("/api/v1/admin/scheduler", headers=headers).status_code == 200


def test_create_rejects_a_bad_tenant(runner, engine):
    result = runner.invoke(args=["keys", "create", "--tenant", "has space"])
    assert result.exit_code != 0 and "tenant" in result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 0


def test_list_shows_prefixes_never_secrets(runner):
    key = runner.invoke(args=["keys", "create", "--tenant", "acme"]).output.splitlines()[-1]

    result = runner.invoke(args=["keys", "list"])

    assert result.exit_code == 0
    assert key[: keys.PREFIX_LENGTH] in result.output and key not in result.output
    assert "acme" in result.output and "active" in result.output


def test_revoke_by_prefix_then_the_key_is_401(runner, client):
    key = runner.invoke(args=["keys", "create", "--tenant", "acme"]).output.splitlines()[-1]

    result = runner.invoke(args=["keys", "revoke", key[: keys.PREFIX_LENGTH]])

    assert result.exit_code == 0, result.output
    response = client.get("/api/v1/triggers", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert "active" not in runner.invoke(args=["keys", "list"]).output


def test_revoke_by_id(runner):
    body = json.loads(
        runner.invoke(args=["keys", "create", "--tenant", "acme", "--json"]).output.splitlines()[-1]
    )
    listed = runner.invoke(args=["keys", "list"]).output
    key_id = next(line.split("\t")[1] for line in listed.splitlines() if body["prefix"] in line)

    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 0
    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 1  # already revoked


def test_revoke_of_an_unknown_key_fails(runner):
    result = runner.invoke(args=["keys", "revoke", "tsk_nothing"])
    assert result.exit_code == 1 and "no active key" in result.output
