"""The deploy hook (docs/design.md section 8) and the scheduler state endpoint."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app import state
from tests.integration.api.conftest import assert_error

HOOK = "/api/v1/admin/scheduler/restart"
SECRET = "test-restart-secret-0123456789"  # tests/conftest.py's SCHEDULER_RESTART_SECRET
RELEASE = {"release": "test-release"}  # tests/conftest.py's RELEASE_ID


def test_two_calls_bump_the_generation_twice_for_the_same_deployment(client, engine):
    first = client.post(HOOK, headers={"X-Scheduler-Secret": SECRET}, json=RELEASE)
    second = client.post(HOOK, headers={"X-Scheduler-Secret": SECRET}, json=RELEASE)

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.get_json() == {
        "generation": 1,
        "deployment_id": "test-release",
        "previous_generation": 0,
    }
    assert second.get_json() == {
        "generation": 2,
        "deployment_id": "test-release",
        "previous_generation": 1,
    }
    with engine.connect() as conn:
        current = state.get_state(conn)
    assert (current.generation, current.deployment_id) == (2, "test-release")
    assert current.restarted_at is not None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Scheduler-Secret": ""},
        {"X-Scheduler-Secret": "wrong-secret-same-len"},
        {"X-Scheduler-Secret": SECRET[:-1]},
        {"X-Scheduler-Secret": SECRET + "-and-more"},
        {"X-Scheduler-Secret": "x" * 4096},
    ],
    ids=["missing", "empty", "wrong", "shorter", "longer", "huge"],
)
def test_a_wrong_or_missing_secret_is_401_and_changes_nothing(client, snapshot, headers):
    before = snapshot()

    response = client.post(HOOK, headers=headers, json=RELEASE)

    assert_error(response, 401, "unauthorized")
    assert snapshot() == before


def test_an_api_key_is_not_a_substitute_for_the_secret(admin, snapshot):
    before = snapshot()
    assert_error(admin.post("/admin/scheduler/restart", json=RELEASE), 401)
    assert snapshot() == before


def test_the_hook_is_404_when_no_secret_is_configured(client, services, snapshot):
    services.settings = dataclasses.replace(services.settings, scheduler_restart_secret="")
    before = snapshot()

    assert_error(client.post(HOOK, headers={"X-Scheduler-Secret": ""}), 404, "not_found")
    response = client.post(HOOK, headers={"X-Scheduler-Secret": SECRET}, json=RELEASE)
    assert_error(response, 404, "not_found")
    assert snapshot() == before


def test_a_restart_naming_another_release_is_409_with_both_ids_and_changes_nothing(
    client, snapshot
):
    before = snapshot()

    response = client.post(HOOK, headers={"X-Scheduler-Secret": SECRET}, json={"release": "v43"})

    error = assert_error(response, 409, "release_mismatch")
    assert "'test-release'" in error["message"] and "'v43'" in error["message"]
    assert snapshot() == before


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({}, 422),
        ({"json": {}}, 422),
        ({"json": {"release": ""}}, 422),
        ({"json": {"release": 42}}, 422),
        ({"json": {"release": "test-release", "force": True}}, 422),
        ({"data": "release=test-release", "content_type": "text/plain"}, 400),
    ],
    ids=["no-body", "empty-object", "empty-release", "number", "unknown-field", "not-json"],
)
def test_a_restart_without_a_valid_release_names_the_field_and_changes_nothing(
    client, snapshot, kwargs, status
):
    before = snapshot()

    response = client.post(HOOK, headers={"X-Scheduler-Secret": SECRET}, **kwargs)

    error = assert_error(response, status)
    if status == 422:
        assert set(error["fields"]) & {"release", "force"}, error
    assert snapshot() == before


def test_a_wrong_secret_is_401_before_the_body_is_looked_at(client):
    response = client.post(HOOK, headers={"X-Scheduler-Secret": "nope"}, json={"release": 1})
    assert_error(response, 401, "unauthorized")


def test_a_failure_is_a_generic_500_that_echoes_nothing(client, services, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("could not connect to postgresql://admin:hunter2@db")

    monkeypatch.setattr(state, "restart", broken)

    with caplog.at_level(logging.ERROR):
        response = client.post(HOOK, headers={"X-Scheduler-Secret": SECRET}, json=RELEASE)

    assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.get_data(as_text=True)
    assert any("hunter2" in (r.exc_text or "") for r in caplog.records)


def test_the_scheduler_state_shows_generation_deployment_and_last_tick(admin, client, engine):
    client.post(HOOK, headers={"X-Scheduler-Secret": SECRET}, json=RELEASE)
    tick = datetime(2026, 1, 5, 12, 0, 30, tzinfo=UTC)
    with engine.begin() as conn:
        assert state.record_tick(
            conn, release_id="test-release", now=tick,
            stats={"due": 3, "dispatched": 3, "duration_seconds": 0.2},
        )  # fmt: skip

    body = admin.get("/admin/scheduler").get_json()

    assert body["generation"] == 1 and body["deployment_id"] == "test-release"
    assert body["last_tick_at"] == "2026-01-05T12:00:30Z"
    assert body["last_tick_stats"]["dispatched"] == 3
    assert body["release_id"] == "test-release"
    assert body["restarted_at"].endswith("Z")


def test_the_restart_cli_does_what_the_hook_does(runner, engine):
    result = runner.invoke(args=["scheduler", "restart"])
    named = runner.invoke(args=["scheduler", "restart", "--release", "test-release"])

    assert (result.exit_code, named.exit_code) == (0, 0), result.output + named.output
    assert '"generation": 1' in result.output and '"generation": 2' in named.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT generation FROM scheduler_state")).scalar_one() == 2


def test_the_restart_cli_refuses_another_release_and_changes_nothing(runner, snapshot):
    before = snapshot()

    result = runner.invoke(args=["scheduler", "restart", "--release", "v43"])

    assert result.exit_code == 1
    assert "'test-release'" in result.output and "'v43'" in result.output
    assert snapshot() == before
