"""/healthz (database, broker, tick age) and /metrics (computed from the database)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app import state
from tests.support import FakeClock


def set_tick(engine, when, stats=None):
    with engine.begin() as conn:
        assert state.record_tick(conn, release_id="test-release", now=when, stats=stats or {})


def test_healthy_when_everything_answers_and_the_tick_is_recent(client, services, engine):
    clock = FakeClock()
    services.clock = clock.now
    set_tick(engine, clock.now() - timedelta(seconds=30))

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"] == {"ok": True}
    assert body["checks"]["scheduler"]["age_seconds"] == 30.0
    assert body["checks"]["scheduler"]["max_age_seconds"] == 180.0


def test_a_tick_older_than_three_periods_is_503(client, services, engine):
    clock = FakeClock()
    services.clock = clock.now
    set_tick(engine, clock.now() - timedelta(seconds=181))

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["checks"]["scheduler"]["ok"] is False


def test_a_fresh_install_is_healthy_until_three_periods_without_a_tick(client, services):
    clock = FakeClock()
    services.clock, services.started_at = clock.now, clock.now()

    fresh = client.get("/healthz")
    clock.advance(seconds=181)
    stale = client.get("/healthz")

    assert fresh.status_code == 200
    assert fresh.get_json()["checks"]["scheduler"]["detail"] == "the scheduler has not ticked yet"
    assert stale.status_code == 503
    assert stale.get_json()["checks"]["scheduler"]["detail"] == "the scheduler has never ticked"


def test_a_broker_that_is_down_is_503_without_details(client, services, engine):
    services.settings = dataclasses.replace(services.settings, broker_url="redis://127.0.0.1:1/0")
    set_tick(engine, datetime.now(UTC))

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["checks"]["broker"] == {"ok": False, "detail": "broker unreachable"}


def test_a_database_that_is_down_is_503(client, services):
    services.settings = dataclasses.replace(
        services.settings, database_url="postgresql://nobody@127.0.0.1:1/nothing"
    )

    response = client.get("/healthz")

    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == {"ok": False, "detail": "database unreachable"}
    assert checks["scheduler"]["ok"] is False


def metrics(client) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_are_computed_from_the_database(acme, client, services, engine, add_run):
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    services.clock = clock.now
    trigger = acme.create()
    with engine.begin() as conn:
        conn.execute(text("UPDATE triggers SET next_run_at = :t"), {"t": clock.now()})
    set_tick(
        engine,
        clock.now() - timedelta(seconds=5),
        {"due": 4, "dispatched": 3, "skipped": 1, "duration_seconds": 0.25, "superseded": 0},
    )
    with engine.begin() as conn:
        state.count_superseded_tick(conn)
    now = clock.now()
    for lag, status in ((0.05, "succeeded"), (2.0, "failed"), (40.0, "pending")):
        add_run(
            trigger,
            status=status,
            kind="manual",  # several runs for one instant (scheduled ones are unique)
            scheduled_for=now - timedelta(minutes=1),
            enqueued_at=now - timedelta(minutes=1) + timedelta(seconds=lag),
            finished_at=None if status == "pending" else now,
        )
    add_run(trigger, status="running", scheduled_for=now - timedelta(hours=2),
            enqueued_at=now - timedelta(hours=2))  # fmt: skip

    found = metrics(client)

    assert found["scheduler_database_up"][()] == 1
    assert found["scheduler_due_triggers"][()] == 1
    assert found["scheduler_last_tick_duration_seconds"][()] == 0.25
    assert found["scheduler_last_tick_age_seconds"][()] == 5
    tick = found["scheduler_last_tick_triggers"]
    assert (tick[(("outcome", "due"),)], tick[(("outcome", "dispatched"),)]) == (4, 3)
    assert found["scheduler_superseded_ticks_total"][()] == 1
    active = found["scheduler_runs_active"]
    assert (active[(("status", "pending"),)], active[(("status", "running"),)]) == (1, 1)
    finished = found["scheduler_runs_finished_recent"]
    assert finished[(("status", "succeeded"),)] == 1 and finished[(("status", "failed"),)] == 1
    lag = found["scheduler_dispatch_lag_seconds_bucket"]
    assert lag[(("le", "0.1"),)] == 1
    assert lag[(("le", "2.5"),)] == 2
    assert lag[(("le", "60.0"),)] == 3 and lag[(("le", "+Inf"),)] == 3  # the 2 h old run: out
    assert found["scheduler_dispatch_lag_seconds_gcount"][()] == 3
    assert round(found["scheduler_dispatch_lag_seconds_gsum"][()], 2) == 42.05


def test_metrics_report_a_database_outage_instead_of_failing(client, services):
    services.settings = dataclasses.replace(
        services.settings, database_url="postgresql://nobody@127.0.0.1:1/nothing"
    )
    assert metrics(client)["scheduler_database_up"][()] == 0


def test_health_metrics_and_openapi_need_no_key(anonymous):
    for path in ("/healthz", "/metrics", "/openapi.json"):
        assert anonymous.get(path).status_code in (200, 503)
