"""GET, list, PATCH and DELETE of triggers: pagination, If-Match, next_run_at recomputation,
pending runs cancelled on disable, reschedule and delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.integration.api.conftest import assert_error, iso


def run_status(engine, run_id):
    with engine.connect() as conn:
        return conn.execute(text("SELECT status FROM runs WHERE id = :id"), {"id": run_id}).scalar()


def test_get_includes_the_last_run(acme, add_run):
    trigger = acme.create()
    old = datetime.now(UTC) - timedelta(minutes=10)
    add_run(trigger, status="succeeded", created_at=old, finished_at=old, result={"ok": 1})
    newest = add_run(trigger, status="pending")

    body = acme.get(f"/triggers/{trigger['id']}").get_json()

    assert body["last_run"]["id"] == str(newest)
    assert body["last_run"]["status"] == "pending"
    assert acme.get(f"/triggers/{trigger['id']}").headers["ETag"] == '"1"'


def test_list_pages_with_an_opaque_cursor_until_it_is_null(acme):
    ids = [acme.create(name=f"t{n}")["id"] for n in range(5)]

    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = acme.get("/triggers" + query).get_json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == ids and pages == 3


def test_list_pages_through_triggers_created_at_the_same_instant(acme, services):
    frozen = datetime.now(UTC)
    services.clock = lambda: frozen
    ids = {acme.create(name=f"t{n}")["id"] for n in range(5)}

    seen, cursor = [], None
    while True:
        body = acme.get("/triggers?limit=2" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [item["id"] for item in body["items"]]
        if (cursor := body["next_cursor"]) is None:
            break

    assert len(seen) == 5 and set(seen) == ids


def test_list_filters_on_enabled(acme):
    on = acme.create()["id"]
    off = acme.create(enabled=False)["id"]

    assert [t["id"] for t in acme.get("/triggers?enabled=true").get_json()["items"]] == [on]
    assert [t["id"] for t in acme.get("/triggers?enabled=false").get_json()["items"]] == [off]


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "cursor=bogus", "enabled=2"])
def test_bad_list_parameters_are_422(acme, query):
    error = assert_error(acme.get(f"/triggers?{query}"), 422, "validation_failed")
    assert set(error["fields"]) == {query.split("=")[0]}


def test_patch_updates_bumps_the_version_and_keeps_next_run_when_the_schedule_is_untouched(
    acme, engine
):
    trigger = acme.create(cron="0 9 * * *")
    with engine.begin() as conn:  # a dispatcher-written value the PATCH must not recompute
        marker = datetime(2031, 1, 1, 9, tzinfo=UTC)
        conn.execute(
            text("UPDATE triggers SET next_run_at = :m WHERE id = :id"),
            {"m": marker, "id": trigger["id"]},
        )

    response = acme.patch(f"/triggers/{trigger['id']}", json={"name": "renamed", "max_attempts": 5})

    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["max_attempts"], body["version"]) == ("renamed", 5, 2)
    assert body["next_run_at"] == iso(marker)
    assert response.headers["ETag"] == '"2"'


def test_patch_of_the_schedule_recomputes_next_run_and_cancels_pending_runs(acme, add_run, engine):
    trigger = acme.create(cron="0 9 * * *")
    pending = add_run(trigger, status="pending")
    running = add_run(trigger, status="running")

    body = acme.patch(
        f"/triggers/{trigger['id']}", json={"cron": "15 10 * * *", "timezone": "Asia/Tokyo"}
    ).get_json()

    next_run = datetime.fromisoformat(body["next_run_at"])
    assert (next_run.hour, next_run.minute) == (1, 15)  # 10:15 in Tokyo is 01:15Z
    assert run_status(engine, pending) == "cancelled"
    assert run_status(engine, running) == "running"


def test_disabling_clears_next_run_and_cancels_pending_runs_and_enabling_recomputes(
    acme, add_run, engine, services, clock
):
    services.clock = clock.now
    clock.set(datetime(2026, 1, 5, 12, 1, 30, tzinfo=UTC))
    trigger = acme.create()  # */5 * * * *
    pending = add_run(trigger, status="pending")

    off = acme.patch(f"/triggers/{trigger['id']}", json={"enabled": False}).get_json()
    assert off["enabled"] is False and off["next_run_at"] is None
    assert run_status(engine, pending) == "cancelled"

    clock.advance(minutes=10)  # 12:11:30
    on = acme.patch(f"/triggers/{trigger['id']}", json={"enabled": True}).get_json()
    assert on["next_run_at"] == "2026-01-05T12:15:00Z"
    assert on["version"] == 3


def test_a_window_change_keeps_a_fire_that_is_due_but_not_yet_dispatched(acme, services, clock):
    services.clock = clock.now
    clock.set(datetime(2026, 1, 5, 8, 59, 30, tzinfo=UTC))
    trigger = acme.create(cron="0 9 * * *")
    assert trigger["next_run_at"] == "2026-01-05T09:00:00Z"

    clock.set(datetime(2026, 1, 5, 9, 0, 0, 500000, tzinfo=UTC))  # due; the tick is late
    body = acme.patch(
        f"/triggers/{trigger['id']}", json={"end_at": "2026-12-31T00:00:00Z"}
    ).get_json()
    assert body["next_run_at"] == "2026-01-05T09:00:00Z"

    body = acme.patch(
        f"/triggers/{trigger['id']}", json={"start_at": "2026-01-05T09:00:01Z"}
    ).get_json()
    assert body["next_run_at"] == "2026-01-06T09:00:00Z", "a fire outside the new window goes"


def test_a_window_change_recomputes_next_run_without_cancelling(acme, add_run, engine):
    trigger = acme.create()
    pending = add_run(trigger, status="pending")
    start = (datetime.now(UTC) + timedelta(days=3)).replace(minute=2, second=0, microsecond=0)

    body = acme.patch(f"/triggers/{trigger['id']}", json={"start_at": iso(start)}).get_json()

    assert body["next_run_at"] == iso(start + timedelta(minutes=3))
    assert run_status(engine, pending) == "pending"


def test_patch_can_switch_a_cron_trigger_to_one_time(acme):
    trigger = acme.create()
    run_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)

    body = acme.patch(
        f"/triggers/{trigger['id']}", json={"cron": None, "run_at": iso(run_at)}
    ).get_json()

    assert (body["cron"], body["run_at"], body["next_run_at"]) == (None, iso(run_at), iso(run_at))


def test_an_unchanged_patch_keeps_the_version(acme):
    trigger = acme.create()
    body = acme.patch(f"/triggers/{trigger['id']}", json={"name": trigger["name"]}).get_json()
    assert body["version"] == 1


def test_if_match_with_the_current_version_applies(acme):
    trigger = acme.create()
    response = acme.patch(
        f"/triggers/{trigger['id']}", json={"name": "v2"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 200 and response.get_json()["version"] == 2


@pytest.mark.parametrize("if_match", ['"7"', "0", 'W/"2"', "banana"])
def test_if_match_with_another_version_is_412_and_changes_nothing(acme, snapshot, if_match):
    trigger = acme.create()
    before = snapshot()

    response = acme.patch(
        f"/triggers/{trigger['id']}", json={"name": "v2"}, headers={"If-Match": if_match}
    )

    assert_error(response, 412, "precondition_failed")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"cron": "bad"}, {"cron"}),
        ({"run_at": "2030-01-01T00:00:00Z"}, {"cron", "run_at"}),  # both set once merged
        ({"cron": None}, {"cron", "run_at", "interval_seconds"}),  # none once merged
        ({"end_at": "2000-01-01T00:00:00Z", "start_at": "2001-01-01T00:00:00Z"}, {"end_at"}),
        ({"max_attempts": 50}, {"max_attempts"}),
        ({"id": "x"}, {"id"}),
        ({"name": None}, {"name"}),
    ],
)
def test_an_invalid_patch_is_422_and_changes_nothing(acme, snapshot, change, fields):
    trigger = acme.create()
    before = snapshot()

    error = assert_error(acme.patch(f"/triggers/{trigger['id']}", json=change), 422)

    assert set(error["fields"]) == fields
    assert snapshot() == before


def test_an_end_before_the_stored_start_is_caught_on_the_merged_trigger(acme, snapshot):
    start = datetime.now(UTC) + timedelta(days=2)
    trigger = acme.create(start_at=iso(start))
    before = snapshot()

    response = acme.patch(
        f"/triggers/{trigger['id']}", json={"end_at": iso(start - timedelta(days=1))}
    )

    assert assert_error(response, 422)["fields"] == {"end_at": "must be after start_at"}
    assert snapshot() == before


def test_patch_with_a_body_that_is_not_json_is_400(acme, snapshot):
    trigger = acme.create()
    before = snapshot()
    response = acme.patch(
        f"/triggers/{trigger['id']}", data="name=x", headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 400)
    assert snapshot() == before


def test_delete_is_204_cancels_pending_runs_and_keeps_history(acme, add_run, engine):
    trigger = acme.create()
    done = add_run(trigger, status="succeeded", finished_at=datetime.now(UTC))
    pending = add_run(trigger, status="pending")

    response = acme.delete(f"/triggers/{trigger['id']}")

    assert response.status_code == 204 and response.data == b""
    assert_error(acme.get(f"/triggers/{trigger['id']}"), 404, "not_found")
    assert run_status(engine, pending) == "cancelled"
    assert run_status(engine, done) == "succeeded"
    history = acme.get(f"/triggers/{trigger['id']}/runs").get_json()["items"]
    assert {run["id"] for run in history} == {str(done), str(pending)}


def test_delete_honours_if_match(acme, snapshot):
    trigger = acme.create()
    before = snapshot()
    assert_error(acme.delete(f"/triggers/{trigger['id']}", headers={"If-Match": "2"}), 412)
    assert snapshot() == before
    assert acme.delete(f"/triggers/{trigger['id']}", headers={"If-Match": "1"}).status_code == 204


def test_unknown_ids_are_404(acme):
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(acme.get(f"/triggers/{missing}"), 404, "not_found")
    assert_error(acme.patch(f"/triggers/{missing}", json={"name": "x"}), 404)
    assert_error(acme.delete(f"/triggers/{missing}"), 404)
    assert_error(acme.get("/triggers/not-a-uuid"), 404)
