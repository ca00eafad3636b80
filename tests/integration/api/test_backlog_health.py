"""The waiting room in /api/v1/admin/backlog and /metrics (docs/design.md sections 12 and 17):
slots in use, runs waiting by tenant, fire-to-start lag, and a backlog that keeps growing
reported as unhealthy, without the tenants held back by their own cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.integration.api.conftest import assert_error
from tests.integration.api.test_health_metrics import metrics, set_tick

BACKLOG = "/api/v1/admin/backlog"


def test_a_backlog_that_keeps_waiting_is_reported_unhealthy(admin, acme, engine, add_run):
    set_tick(engine, datetime.now(UTC))
    trigger = acme.create()
    add_run(trigger, kind="manual", created_at=datetime.now(UTC) - timedelta(minutes=2))

    fresh = admin.get(BACKLOG).get_json()
    assert (fresh["status"], fresh["waiting"], fresh["max_wait_seconds"]) == ("ok", 1, 600.0)

    add_run(trigger, kind="manual", created_at=datetime.now(UTC) - timedelta(minutes=11))
    response = admin.get(BACKLOG)

    assert response.status_code == 503
    backlog = response.get_json()
    assert (backlog["status"], backlog["waiting"], backlog["held_count"]) == ("unhealthy", 2, 0)
    assert backlog["oldest_wait_seconds"] > 600
    assert admin.get("/healthz").status_code == 200  # global health is not the backlog


def test_a_tenant_at_its_running_cap_is_left_out(admin, acme, globex, engine, add_run, services):
    mine = acme.create()
    for _ in range(services.settings.max_running_per_tenant):
        add_run(mine, kind="manual", status="running")
    add_run(mine, kind="manual", created_at=datetime.now(UTC) - timedelta(minutes=11))
    add_run(globex.create(), kind="manual")

    response = admin.get(BACKLOG)

    assert response.status_code == 200
    body = response.get_json()
    assert (body["waiting"], body["slots_in_use"], body["held_count"]) == (1, 10, 1)
    assert body["held_tenants"] == [
        {"tenant_id": "acme", "cap": "MAX_RUNNING_PER_TENANT", "waiting": 1,
         "in_progress": 10, "pending": 1},
    ]  # fmt: skip


def test_the_backlog_needs_an_admin_key(acme, anonymous):
    assert_error(anonymous.get(BACKLOG), 401)
    assert_error(acme.get(BACKLOG), 404)


def test_a_retry_waiting_for_its_not_before_is_not_a_backlog(admin, acme, engine, add_run):
    set_tick(engine, datetime.now(UTC))
    run_id = add_run(acme.create(), created_at=datetime.now(UTC) - timedelta(hours=1))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE runs SET not_before = now() + interval '1 minute' WHERE id = :id"),
            {"id": run_id},
        )

    response = admin.get(BACKLOG)

    assert response.status_code == 200
    assert response.get_json()["waiting"] == 0


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
