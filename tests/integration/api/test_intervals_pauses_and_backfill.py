"""Interval triggers, jitter, pause notes and backfill through the API and CLI.

docs/design.md section 11.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.schedule import jitter
from tests import factories
from tests.integration.api.conftest import assert_error, trigger_body

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture()
def at_noon(services, clock):
    services.clock = clock.now
    clock.set(NOON + timedelta(seconds=30))
    return clock


def test_an_interval_trigger_fires_from_its_anchor_and_reads_well(acme, at_noon):
    body = acme.create(cron=None, interval_seconds=5400, anchor_at="2026-01-01T00:15:00+01:00")
    # anchor 2025-12-31T23:15Z + k * 90 min: ... 11:15, 12:45 on 2026-01-05
    assert (body["interval_seconds"], body["anchor_at"]) == (5400, "2025-12-31T23:15:00Z")
    assert body["next_run_at"] == body["next_fire_at"] == "2026-01-05T12:45:00Z"
    assert body["schedule_description"] == (
        "Every 1 hour 30 minutes, counted from 2025-12-31T23:15:00Z"
    )
    preview = acme.get(f"/triggers/{body['id']}/preview?count=2").get_json()
    assert [f["utc"] for f in preview["fires"]] == ["2026-01-05T12:45:00Z", "2026-01-05T14:15:00Z"]


def test_a_jittered_trigger_is_due_after_its_nominal_fire_and_previews_show_both(acme, at_noon):
    body = acme.create(cron="0 * * * *", jitter_seconds=1800)
    fire = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
    due = fire + jitter.offset(body["id"], fire, 1800)
    assert body["next_fire_at"] == "2026-01-05T13:00:00Z"
    assert body["next_run_at"] == due.isoformat().replace("+00:00", "Z")
    [first] = acme.get(f"/triggers/{body['id']}/preview?count=1").get_json()["fires"]
    assert first["utc"] == "2026-01-05T13:00:00Z"
    assert first["jittered_utc"] == body["next_run_at"]
    assert first["jittered_local"] == due.isoformat()
    unsaved = acme.post("/schedules/preview", json={"interval_seconds": 3600}).get_json()
    assert set(unsaved["fires"][0]) == {"utc", "local"}  # no jitter: the old shape
    jittered = acme.post(
        "/schedules/preview", json={"interval_seconds": 3600, "jitter_seconds": 600}
    ).get_json()
    assert {"utc", "local", "jittered_utc", "jittered_local"} == set(jittered["fires"][0])


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"interval_seconds": 3600}, {"cron", "interval_seconds"}),
        ({"cron": None, "run_at": "2030-01-01T00:00:00Z", "interval_seconds": 3600},
         {"run_at", "interval_seconds"}),
        ({"run_at": "2030-01-01T00:00:00Z", "interval_seconds": 3600},
         {"cron", "run_at", "interval_seconds"}),
        ({"cron": None, "interval_seconds": 59}, {"interval_seconds"}),
        ({"cron": None, "interval_seconds": 366 * 86400 + 1}, {"interval_seconds"}),
        ({"cron": None, "interval_seconds": "3600"}, {"interval_seconds"}),
        ({"cron": None, "interval_seconds": 3600, "anchor_at": "2026-01-01T00:00:00"},
         {"anchor_at"}),
        ({"jitter_seconds": 3601}, {"jitter_seconds"}),
        ({"jitter_seconds": -1}, {"jitter_seconds"}),
        ({"jitter_seconds": 301}, {"jitter_seconds"}),  # every 5 minutes: at most 300
        ({"cron": None, "interval_seconds": 120, "jitter_seconds": 121}, {"jitter_seconds"}),
        ({"cron": None, "run_at": "2030-01-01T00:00:00Z", "jitter_seconds": 5},
         {"jitter_seconds"}),
        ({"paused_note": "why"}, {"paused_note"}),  # only with enabled: false
        ({"enabled": False, "paused_note": "x" * 501}, {"paused_note"}),
        ({"cron": "0 0 * * 1#6"}, {"cron"}),
        ({"cron": "0 0 L/2 * *"}, {"cron"}),
        ({"cron": "0 0 */30 * MON#2"}, {"cron"}),
    ],
)  # fmt: skip
def test_each_bad_combination_is_422_naming_the_fields_and_writes_nothing(
    acme, snapshot, at_noon, overrides, fields
):
    before = snapshot()
    error = assert_error(acme.post("/triggers", json=trigger_body(**overrides)), 422)
    assert set(error["fields"]) == fields, error
    assert snapshot() == before


def test_a_patch_to_jitter_over_the_period_is_422(acme, at_noon, snapshot):
    body = acme.create(cron=None, interval_seconds=600)
    before = snapshot()
    error = assert_error(acme.patch(f"/triggers/{body['id']}", json={"jitter_seconds": 601}), 422)
    assert set(error["fields"]) == {"jitter_seconds"}
    assert snapshot() == before


def test_the_cron_extensions_are_accepted_and_described(acme, at_noon):
    body = acme.create(cron="0 9 L * *")
    assert body["next_run_at"] == "2026-01-31T09:00:00Z"
    assert body["schedule_description"] == "At 09:00 AM, on the last day of the month, UTC"
    second_monday = acme.create(cron="0 9 * * MON#2", timezone="Europe/Paris")
    assert second_monday["next_run_at"] == "2026-01-12T08:00:00Z"


def test_pause_with_a_note_round_trip(acme, at_noon, make_key, client):
    body = acme.create()
    paused = acme.patch(
        f"/triggers/{body['id']}", json={"enabled": False, "paused_note": "vendor outage"}
    ).get_json()
    prefix = acme.key[: len(paused["paused_by"])]
    assert (paused["enabled"], paused["paused_note"], paused["paused_by"]) == (
        False, "vendor outage", prefix
    )  # fmt: skip
    assert paused["paused_by"] and paused["paused_at"] == "2026-01-05T12:00:30Z"
    assert paused["next_run_at"] is None and paused["next_fire_at"] is None
    assert acme.get(f"/triggers/{body['id']}").get_json()["paused_note"] == "vendor outage"
    # the note can be edited while paused
    edited = acme.patch(f"/triggers/{body['id']}", json={"paused_note": "still out"}).get_json()
    assert (edited["paused_note"], edited["paused_at"]) == ("still out", paused["paused_at"])
    resumed = acme.patch(f"/triggers/{body['id']}", json={"enabled": True}).get_json()
    assert (resumed["paused_note"], resumed["paused_at"], resumed["paused_by"]) == (None,) * 3
    assert resumed["next_run_at"] == "2026-01-05T12:05:00Z"


def test_the_openapi_document_has_the_new_fields_and_the_backfill_route(anonymous):
    doc = anonymous.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    trigger_out = next(v for k, v in schemas.items() if k.startswith("TriggerOut"))
    assert {"paused_note", "paused_at", "paused_by", "interval_seconds", "anchor_at",
            "jitter_seconds", "next_fire_at"} <= set(trigger_out["properties"])  # fmt: skip
    fire = next(v for k, v in schemas.items() if k.startswith("Fire"))
    assert {"jittered_utc", "jittered_local"} <= set(fire["properties"])
    assert (
        "backfill"
        in next(v for k, v in schemas.items() if k.startswith("Run"))["properties"]["kind"]["enum"]
    )
    assert "post" in doc["paths"]["/api/v1/triggers/{trigger_id}/backfill"]


# --- backfill --------------------------------------------------------------------------


def _runs(engine, trigger_id):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT kind, scheduled_for, idempotency_key, status, due_at, created_at "
                 "FROM runs "
                 "WHERE trigger_id = :id ORDER BY scheduled_for"),
            {"id": trigger_id},
        ).all()  # fmt: skip


def test_backfill_creates_a_run_per_fire_and_never_runs_a_fire_twice(
    acme, at_noon, engine, published, add_run
):
    body = acme.create(cron="0 * * * *")
    # 09:00 already ran as a scheduled fire (its key is the dispatcher's)
    with engine.begin() as conn:
        factories.make_run(
            conn, trigger_id=body["id"], tenant_id="acme", scheduled_for=NOON - timedelta(hours=3),
            kind="scheduled", idempotency_key=f"{body['id']}:2026-01-05T09:00:00Z",
            status="succeeded",
        )  # fmt: skip
    window = {"start": "2026-01-05T08:00:00Z", "end": "2026-01-05T12:00:00Z"}
    first = acme.post(f"/triggers/{body['id']}/backfill", json=window)
    assert first.status_code == 202, first.get_json()
    assert first.get_json() == {"created": 3, "existing": 1}  # 08, 10, 11; 12:00 excluded
    rows = _runs(engine, body["id"])
    assert [(r.kind, r.scheduled_for.hour) for r in rows] == [
        ("backfill", 8), ("scheduled", 9), ("backfill", 10), ("backfill", 11),
    ]  # fmt: skip
    assert rows[0].idempotency_key == f"{body['id']}:2026-01-05T08:00:00Z"
    # handed to admission like any run: admitted at once while slots are free; due when
    # asked for (its lag counts from then), not at the past fire it stands for
    assert rows[0].due_at == rows[0].created_at and rows[0].status == "admitted"
    assert len(published()) == 3  # handed to the broker like any pending run
    again = acme.post(f"/triggers/{body['id']}/backfill", json=window)
    assert again.get_json() == {"created": 0, "existing": 4}
    assert len(_runs(engine, body["id"])) == 4


def test_two_concurrent_identical_backfills_create_each_run_once(app, acme, at_noon, engine):
    body = acme.create(cron="*/5 * * * *")
    window = {"start": "2026-01-04T12:00:00Z", "end": "2026-01-05T12:00:00Z"}  # 288 fires
    answers: list[dict] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def call() -> None:
        try:
            client = app.test_client()
            barrier.wait()
            response = client.post(
                f"/api/v1/triggers/{body['id']}/backfill", json=window,
                headers={"Authorization": f"Bearer {acme.key}"},
            )  # fmt: skip
            assert response.status_code == 202, response.get_json()
            answers.append(response.get_json())
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    # each fire got exactly one run: the creations of both calls add up to 288, no more
    assert sum(a["created"] for a in answers) == 288
    assert all(a["created"] + a["existing"] == 288 for a in answers)
    rows = _runs(engine, body["id"])
    assert len(rows) == 288 and len({r.idempotency_key for r in rows}) == 288


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"start": "2026-01-05T11:00:00Z", "end": "2026-01-05T11:00:00Z"}, "end"),
        ({"start": "2026-01-05T11:00:00Z", "end": "2026-01-05T10:00:00Z"}, "end"),
        ({"start": "2026-01-05T11:00:00Z", "end": "2026-01-05T12:05:00Z"}, "end"),  # future
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-05T12:00:00Z"}, "end"),  # 1,152
        ({"start": "2026-01-05T11:00:00", "end": "2026-01-05T12:00:00Z"}, "start"),
        ({"end": "2026-01-05T12:00:00Z"}, "start"),
        # further back than BACKFILL_MAX_AGE_DAYS (30)
        ({"start": "2025-12-05T11:59:00Z", "end": "2025-12-05T12:30:00Z"}, "start"),
    ],
)
def test_a_bad_backfill_range_is_422_and_writes_nothing(acme, at_noon, snapshot, window, field):
    body = acme.create()
    before = snapshot()
    error = assert_error(acme.post(f"/triggers/{body['id']}/backfill", json=window), 422)
    assert set(error["fields"]) == {field}, error
    assert snapshot() == before


def test_backfill_of_another_tenants_trigger_is_404(acme, globex, at_noon):
    theirs = globex.create()
    window = {"start": "2026-01-05T08:00:00Z", "end": "2026-01-05T09:00:00Z"}
    assert_error(acme.post(f"/triggers/{theirs['id']}/backfill", json=window), 404)


def test_cli_pause_with_a_note_and_backfill(runner, acme, at_noon, engine, published):
    body = acme.create(cron="0 * * * *")
    paused = runner.invoke(
        args=["triggers", "pause", body["id"], "--note", "maintenance window", "--json"]
    )
    assert paused.exit_code == 0, paused.output
    shown = json.loads(paused.output)
    assert (shown["paused_note"], shown["paused_by"]) == ("maintenance window", "cli")
    window = ["--start", "2026-01-05T08:00:00Z", "--end", "2026-01-05T10:00:00Z"]
    refused = runner.invoke(args=["triggers", "backfill", body["id"], *window])
    assert (refused.exit_code, refused.output.strip()) == (1, "Error: trigger is disabled")
    runner.invoke(args=["triggers", "resume", body["id"]])
    naive_end = ["--start", "2026-01-05T08:00:00Z", "--end", "2026-01-05T10:00", "--json"]
    done = runner.invoke(args=["triggers", "backfill", body["id"], *naive_end])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"created": 2, "existing": 0}
    assert len(published()) == 2


def test_a_trigger_created_paused_records_its_note_and_who(acme, at_noon):
    body = acme.create(enabled=False, paused_note="waiting for the vendor")
    assert (body["paused_note"], body["paused_at"]) == (
        "waiting for the vendor", "2026-01-05T12:00:30Z"
    )  # fmt: skip
    assert body["paused_by"] and acme.key.startswith(body["paused_by"])
    assert body["next_run_at"] is None


def test_cli_list_shows_an_interval_schedule(runner, acme, at_noon):
    made = acme.create(cron=None, interval_seconds=3600, name="hourly")
    table = runner.invoke(args=["triggers", "list"])
    assert table.exit_code == 0, table.output
    [row] = [line for line in table.output.splitlines() if line.startswith(made["id"])]
    assert "every 3600s" in row


def test_dispatch_lag_counts_from_when_a_run_was_due(acme, client, services, engine):
    # A run delayed 20 minutes by its jitter and a backfill of a fire from yesterday, both
    # enqueued a second after they were due: neither is a 20 min or 1 day lag. A backfill is
    # due when it is made, and the product writes so (app/backfill.py).
    now = datetime.now(UTC).replace(microsecond=0)
    services.clock = lambda: now
    made = acme.create()
    with engine.begin() as conn:
        for kind, scheduled_for, due_at in (
            ("scheduled", now - timedelta(minutes=21), now - timedelta(minutes=1)),
            ("backfill", now - timedelta(days=1), now - timedelta(minutes=1)),
        ):
            factories.make_run(
                conn, trigger_id=made["id"], tenant_id="acme", scheduled_for=scheduled_for,
                due_at=due_at, kind=kind, idempotency_key=f"{made['id']}:{kind}",
                created_at=now - timedelta(minutes=1),
                enqueued_at=now - timedelta(minutes=1) + timedelta(seconds=1),
            )  # fmt: skip
    text_body = client.get("/metrics").get_data(as_text=True)
    assert 'scheduler_dispatch_lag_seconds_bucket{le="1.0"} 2.0' in text_body
