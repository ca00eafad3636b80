"""The waiting room in /healthz and /metrics (docs/design.md section 12): slots in use, runs waiting
by tenant, fire-to-start lag, and a backlog that keeps growing reported as unhealthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.integration.api.test_health_metrics import metrics, set_tick


def test_a_backlog_that_keeps_waiting_is_reported_unhealthy(client, acme, engine, add_run):
    set_tick(engine, datetime.now(UTC))
    trigger = acme.create()
    add_run(trigger, kind="manual", created_at=datetime.now(UTC) - timedelta(minutes=2))

    fresh = client.get("/healthz").get_json()["checks"]["backlog"]
    assert (fresh["ok"], fresh["waiting"], fresh["max_wait_seconds"]) == (True, 1, 600.0)

    add_run(trigger, kind="manual", created_at=datetime.now(UTC) - timedelta(minutes=11))
    response = client.get("/healthz")

    assert response.status_code == 503
    backlog = response.get_json()["checks"]["backlog"]
    assert (backlog["ok"], backlog["waiting"]) == (False, 2)
    assert backlog["oldest_wait_seconds"] > 600


def test_a_retry_waiting_for_its_not_before_is_not_a_backlog(client, acme, engine, add_run):
    set_tick(engine, datetime.now(UTC))
    run_id = add_run(acme.create(), created_at=datetime.now(UTC) - timedelta(hours=1))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE runs SET not_before = now() + interval '1 minute' WHERE id = :id"),
            {"id": run_id},
        )

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json()["checks"]["backlog"]["waiting"] == 0


def test_metrics_show_slots_waiting_runs_by_tenant_and_admission_lag(
    client, acme, globex, engine, add_run
):
    mine, theirs = acme.create(), globex.create()
    for _ in range(3):
        add_run(mine, kind="manual")
    add_run(theirs, kind="manual")
    for status in ("admitted", "running"):
        add_run(theirs, kind="manual", status=status)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE runs SET started_at = scheduled_for + interval '2 s' "
                "WHERE status = 'running'"
            )
        )

    found = metrics(client)

    assert found["scheduler_slots_in_use"][()] == 2
    assert found["scheduler_slots_limit"][()] == 50
    assert found["scheduler_runs_waiting_total"][()] == 4
    waiting = found["scheduler_runs_waiting"]
    assert waiting == {(("tenant", mine["tenant_id"]),): 3, (("tenant", theirs["tenant_id"]),): 1}
    lag = found["scheduler_admission_lag_seconds_bucket"]
    assert (lag[(("le", "1.0"),)], lag[(("le", "2.5"),)]) == (0, 1)
    active = found["scheduler_runs_active"]
    assert active[(("status", "admitted"),)] == 1
