"""Run now, run history, one run, cancel; and the real Celery hand-off."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tasks.celery_app import RUNS_QUEUE, use_broker
from tests.integration.api.conftest import assert_error


def test_run_now_creates_a_manual_run_and_enqueues_it_after_commit(acme, published, engine):
    trigger = acme.create()

    response = acme.post(f"/triggers/{trigger['id']}/run")

    assert response.status_code == 202
    run = response.get_json()
    # A slot was free: admitted and published at once (docs/design.md section 12).
    assert (run["kind"], run["status"], run["trigger_id"]) == ("manual", "admitted", trigger["id"])
    assert run["idempotency_key"].startswith(f"{trigger['id']}:manual:")
    assert run["enqueued_at"] is not None
    assert published() == [uuid.UUID(run["id"])]
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT enqueued_at, scheduled_for, due_at, created_at FROM runs WHERE id = :id"),
            {"id": run["id"]},
        ).one()
    assert stored.enqueued_at is not None and stored.scheduled_for <= datetime.now(UTC)
    # Due when asked for: written with the run (migration 0016), as the API shows it.
    assert stored.due_at == stored.scheduled_for == stored.created_at
    assert datetime.fromisoformat(run["due_at"].replace("Z", "+00:00")) == stored.due_at


def test_run_now_publishes_a_celery_message_with_the_run_id_as_task_id(acme, redis_client):
    trigger = acme.create()

    run = acme.post(f"/triggers/{trigger['id']}/run").get_json()

    messages = [json.loads(m) for m in redis_client.lrange(RUNS_QUEUE, 0, -1)]
    assert [m["headers"]["id"] for m in messages] == [run["id"]]
    assert [m["headers"]["task"] for m in messages] == ["run_trigger"]


def test_run_now_with_the_broker_down_is_still_202_and_leaves_the_run_pending(
    acme, engine, celery_app, settings
):
    trigger = acme.create()

    use_broker(celery_app, "redis://127.0.0.1:1/0")  # nothing listens there
    try:
        response = acme.post(f"/triggers/{trigger['id']}/run")
    finally:
        use_broker(celery_app, settings.redis_url)

    assert response.status_code == 202
    run = response.get_json()
    assert run["status"] == "pending" and run["enqueued_at"] is None
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, enqueued_at FROM runs WHERE id = :id"), {"id": run["id"]}
        ).one()
    assert tuple(row) == ("pending", None)  # waits in PostgreSQL; a later hand-off publishes it


def test_run_now_is_idempotent_with_a_key(acme, published):
    trigger = acme.create()
    headers = {"Idempotency-Key": "click-1"}

    first = acme.post(f"/triggers/{trigger['id']}/run", headers=headers).get_json()
    second = acme.post(f"/triggers/{trigger['id']}/run", headers=headers).get_json()
    other = acme.post(f"/triggers/{trigger['id']}/run").get_json()

    assert first["id"] == second["id"] != other["id"]
    assert first["idempotency_key"] == f"{trigger['id']}:manual:click-1"
    assert published() == [uuid.UUID(first["id"]), uuid.UUID(other["id"])]


def test_run_now_on_a_disabled_trigger_is_409(acme, snapshot):
    trigger = acme.create(enabled=False)
    before = snapshot()
    assert_error(acme.post(f"/triggers/{trigger['id']}/run"), 409, "conflict")
    assert snapshot() == before


def test_history_is_newest_first_filtered_and_paginated(acme, add_run):
    trigger = acme.create()
    base = datetime.now(UTC) - timedelta(hours=1)
    ids = [
        add_run(trigger, status=status, created_at=base + timedelta(minutes=n))
        for n, status in enumerate(["succeeded", "failed", "succeeded", "pending", "succeeded"])
    ]

    page1 = acme.get(f"/triggers/{trigger['id']}/runs?limit=2").get_json()
    page2 = acme.get(
        f"/triggers/{trigger['id']}/runs?limit=2&cursor={page1['next_cursor']}"
    ).get_json()
    page3 = acme.get(
        f"/triggers/{trigger['id']}/runs?limit=2&cursor={page2['next_cursor']}"
    ).get_json()
    succeeded = acme.get(f"/triggers/{trigger['id']}/runs?status=succeeded").get_json()

    listed = [r["id"] for r in page1["items"] + page2["items"] + page3["items"]]
    assert listed == [str(i) for i in reversed(ids)]
    assert page3["next_cursor"] is None
    assert [r["id"] for r in succeeded["items"]] == [str(ids[4]), str(ids[2]), str(ids[0])]


def test_history_pages_through_runs_created_in_one_transaction(acme, add_run):
    # A catch-up dispatch writes many runs with the same created_at: the id breaks ties.
    trigger = acme.create()
    same = datetime.now(UTC) - timedelta(minutes=5)
    ids = {str(add_run(trigger, kind="manual", created_at=same)) for _ in range(5)}

    seen, cursor = [], None
    while True:
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = acme.get(f"/triggers/{trigger['id']}/runs{query}").get_json()
        seen += [run["id"] for run in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break

    assert len(seen) == 5 and set(seen) == ids


def test_history_rejects_an_unknown_status(acme):
    trigger = acme.create()
    error = assert_error(acme.get(f"/triggers/{trigger['id']}/runs?status=done"), 422)
    assert set(error["fields"]) == {"status"}


def test_get_run_has_exactly_the_documented_fields(acme, add_run):
    trigger = acme.create()
    run_id = add_run(trigger, status="succeeded", result={"echo": [1]})

    body = acme.get(f"/runs/{run_id}").get_json()

    assert set(body) == {
        "id", "trigger_id", "tenant_id", "kind", "status", "scheduled_for", "idempotency_key",
        "attempt", "generation", "enqueued_at", "started_at", "finished_at", "error", "result",
        "due_at", "run_as",
    }  # fmt: skip
    assert body["result"] == {"echo": [1]} and body["scheduled_for"].endswith("Z")


def test_cancel_a_pending_run(acme, add_run):
    run_id = add_run(acme.create(), status="pending")

    response = acme.post(f"/runs/{run_id}/cancel")

    assert response.status_code == 202
    assert response.get_json()["status"] == "cancelled"
    assert response.get_json()["finished_at"] is not None


def test_cancel_a_running_run_flags_it(acme, add_run, engine):
    run_id = add_run(acme.create(), status="running")

    assert acme.post(f"/runs/{run_id}/cancel").get_json()["status"] == "running"

    with engine.connect() as conn:
        flagged = conn.execute(
            text("SELECT cancel_requested_at FROM runs WHERE id = :id"), {"id": run_id}
        ).scalar()
    assert flagged is not None


@pytest.mark.parametrize("status", ["succeeded", "failed", "skipped"])
def test_cancel_a_finished_run_is_409(acme, add_run, snapshot, status):
    run_id = add_run(acme.create(), status=status, finished_at=datetime.now(UTC))
    before = snapshot()
    assert_error(acme.post(f"/runs/{run_id}/cancel"), 409, "conflict")
    assert snapshot() == before


def test_unknown_runs_are_404(acme):
    missing = uuid.uuid4()
    assert_error(acme.get(f"/runs/{missing}"), 404)
    assert_error(acme.post(f"/runs/{missing}/cancel"), 404)
    assert_error(acme.get(f"/triggers/{missing}/runs"), 404)
    assert_error(acme.post(f"/triggers/{missing}/run"), 404)
