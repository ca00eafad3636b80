"""Idempotent creates: a retry replays the first response; racing requests through a real
HTTP server make one trigger; the same key with another body is 409."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import text
from werkzeug.serving import make_server

from app import service
from tests.integration.api.conftest import assert_error, trigger_body


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_a_retry_with_the_same_key_replays_the_first_response(acme, engine):
    headers = {"Idempotency-Key": "create-1"}

    first = acme.post("/triggers", json=trigger_body(), headers=headers)
    acme.patch(f"/triggers/{first.get_json()['id']}", json={"name": "changed since"})
    again = acme.post("/triggers", json=trigger_body(), headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json()  # the first response, not the current state
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(engine, "triggers") == 1


def test_a_late_retry_of_a_one_time_create_replays_rather_than_failing_validation(
    acme, engine, services, clock
):
    services.clock = clock.now
    clock.set(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    body = trigger_body(cron=None, run_at="2026-01-05T12:00:30Z")
    headers = {"Idempotency-Key": "create-once"}

    first = acme.post("/triggers", json=body, headers=headers)
    clock.advance(minutes=2)  # run_at is now 90 s in the past: a new create would be a 422
    again = acme.post("/triggers", json=body, headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json()
    assert count(engine, "triggers") == 1
    fresh = acme.post("/triggers", json=body, headers={"Idempotency-Key": "create-twice"})
    assert set(assert_error(fresh, 422)["fields"]) == {"run_at"}


def test_key_order_in_the_body_does_not_matter(acme, engine):
    headers = {"Idempotency-Key": "create-2"}
    body = trigger_body()
    acme.post("/triggers", json=body, headers=headers)
    again = acme.post("/triggers", json=dict(reversed(list(body.items()))), headers=headers)
    assert again.status_code == 201 and count(engine, "triggers") == 1


def test_the_same_key_with_another_body_is_409_and_writes_nothing(acme, snapshot):
    headers = {"Idempotency-Key": "create-3"}
    acme.post("/triggers", json=trigger_body(), headers=headers)
    before = snapshot()

    response = acme.post("/triggers", json=trigger_body(name="other"), headers=headers)

    assert_error(response, 409, "conflict")
    assert snapshot() == before


def test_keys_are_scoped_to_the_tenant(acme, globex, engine):
    headers = {"Idempotency-Key": "shared"}
    a = acme.post("/triggers", json=trigger_body(), headers=headers).get_json()
    g = globex.post("/triggers", json=trigger_body(), headers=headers).get_json()
    assert a["id"] != g["id"] and count(engine, "triggers") == 2


def test_an_invalid_request_does_not_burn_the_key(acme, engine):
    headers = {"Idempotency-Key": "create-4"}
    assert acme.post("/triggers", json=trigger_body(cron="bad"), headers=headers).status_code == 422
    assert count(engine, "idempotency_records") == 0
    assert acme.post("/triggers", json=trigger_body(), headers=headers).status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 151, "has space", "tab\there"])
def test_a_malformed_key_is_422(acme, snapshot, key):
    before = snapshot()
    response = acme.post("/triggers", json=trigger_body(), headers={"Idempotency-Key": key})
    assert set(assert_error(response, 422)["fields"]) == {"Idempotency-Key"}
    assert snapshot() == before


@pytest.fixture()
def server(app) -> Iterator[str]:
    """The app behind a real threaded HTTP server on a free port."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=5)


def test_parallel_creates_with_one_key_make_one_trigger(server, acme, services, engine):
    # Hold each transaction open a moment after it has claimed the key, so the racers
    # really meet on the unique index instead of arriving one after the other.
    services.clock = lambda: (time.sleep(0.2), service.utcnow())[1]
    racers = 8
    barrier = threading.Barrier(racers)
    results: list[requests.Response] = []
    headers = {"Authorization": f"Bearer {acme.key}", "Idempotency-Key": "double-click"}

    def create() -> None:
        barrier.wait()
        response = requests.post(
            f"{server}/api/v1/triggers", json=trigger_body(), headers=headers, timeout=30
        )
        results.append(response)

    threads = [threading.Thread(target=create) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [r.status_code for r in results] == [201] * racers
    assert len({r.json()["id"] for r in results}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == racers - 1
    assert len({r.headers["X-Request-Id"] for r in results}) == racers
    assert count(engine, "triggers") == 1
    assert count(engine, "idempotency_records") == 1
